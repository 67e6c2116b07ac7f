"""Modbus TCP: device profiles (register maps as data) and the poller."""
