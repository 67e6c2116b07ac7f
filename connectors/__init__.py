"""Edges to the outside world: devices (Modbus), the broker (Kafka), hot state (Redis)."""
