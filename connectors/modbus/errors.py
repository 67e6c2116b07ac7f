"""The errors of the Modbus connector. The Modbus TCP client's own errors (tcp.py), timeouts,
exception responses and malformed answers never leave `gateway.py`: callers see one of these,
named for what went wrong."""

from __future__ import annotations

# Exception codes worth another try: acknowledge, server busy, gateway path unavailable,
# gateway target failed to respond. The others (illegal function, address, value) will not
# change by asking again.
TRANSIENT_EXCEPTION_CODES = frozenset({5, 6, 10, 11})
EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    10: "gateway path unavailable", 11: "gateway target device failed to respond",
}


class ModbusError(RuntimeError):
    """Base of the connector's errors."""


class DeviceUnavailable(ModbusError):
    """The device did not answer: the connection is down (refused, lost, waiting to
    reconnect) or a request timed out."""

    def __init__(self, message: str, *, connection_down: bool) -> None:
        super().__init__(message)
        self.connection_down = connection_down


class DeviceGarbled(ModbusError):
    """The device answered, but not what was asked: fewer or more registers than requested,
    the answer of another function, or bytes that are no Modbus answer to the request.
    `answer` is what came, as text (registers, or the bytes in hex)."""

    def __init__(self, message: str, *, answer: str) -> None:
        super().__init__(message)
        self.answer = answer


class DeviceRefused(ModbusError):
    """The device answered with a Modbus exception response."""

    def __init__(self, message: str, *, exception_code: int) -> None:
        super().__init__(message)
        self.exception_code = exception_code

    @property
    def transient(self) -> bool:
        return self.exception_code in TRANSIENT_EXCEPTION_CODES


class SunSpecNotFound(ModbusError):
    """No "SunS" marker at any of the SunSpec base addresses."""


class SetpointError(ModbusError):
    """A setpoint write that did not take; the subclass says why."""


class SetpointInvalid(SetpointError):
    """Refused before anything was sent: no such point, not writable, outside its limits,
    or not representable in its registers."""


class SetpointRejected(SetpointError):
    """The device answered the write with an exception response."""


class SetpointTimeout(SetpointError):
    """The write or its read-back got no usable answer (timeout, connection down, a garbled
    answer): whether the device took the value is unknown."""


class SetpointMismatch(SetpointError):
    """The registers read back are not those written (the device clamped, ignored or
    changed the value)."""

    def __init__(self, message: str, *, requested: object, read_back: object) -> None:
        super().__init__(message)
        self.requested = requested
        self.read_back = read_back
