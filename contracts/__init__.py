"""The agreements everything else relies on: fleet model, event schemas, status and
availability rules. Pure: this package performs no I/O beyond parsing text it is given
(and, on import, finding its compiled hot modules: contracts/native.py)."""

from contracts.native import search_path

__path__ = search_path(__path__)
