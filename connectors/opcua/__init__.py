"""OPC UA: the device list (node maps as data) and a subscribing client per endpoint."""
