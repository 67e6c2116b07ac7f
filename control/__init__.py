"""The control loop: safety state machine, local limits, setpoint dispatch (to be built; it
will consume `bess.breaches` and write setpoints through connectors.modbus)."""
