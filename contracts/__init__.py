"""The agreements everything else relies on: fleet model, event schemas, status and
availability rules. Pure: this package performs no I/O beyond parsing text it is given."""
