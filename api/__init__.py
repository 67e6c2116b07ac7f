"""The FastAPI service: REST and WebSocket feeds over the hot state in Redis."""
