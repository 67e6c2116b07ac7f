"""The control loop (issue 13). Built so far: `control.state_machine`, the pure safety state
machine of one battery unit (BOOT → IDLE → RUNNING → ERROR / STOPPED, validated transitions,
one handler per state, commands as values, a persisted form that always restarts in BOOT).
Still to come: breach reactions per limit, interlocks, the device safety wrapper, the
watchdog and the `bessmon control` service that consumes `bess.breaches` and writes
setpoints through connectors.modbus."""
