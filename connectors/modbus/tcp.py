"""A lean Modbus TCP client: an `asyncio.Protocol` speaking MBAP frames (`>HHHB`: transaction
id, protocol 0, length, unit id, then the PDU), with several requests in flight on one
connection, each answer matched to its request by transaction id.

Why not pymodbus' client: it serialises requests (one lock per request, one round trip after
another) and builds a Python object per answer; a connector polling a thousand devices a
second spends most of its CPU there. Here up to `in_flight` requests are on the wire at once
(1, the default, for a gateway that takes one request at a time: each is sent when the one
before is answered, and has its own timeout), those sent in one loop iteration in one write,
and answers come back as PDU bytes, to be checked by the pure functions below and decoded by
the caller.

Requests travel in batches (`ModbusTcpClient.send`): a batch is one future, resolved when
every one of its requests is answered, or failed as a whole. `send_each` sends many batches at
once without a future each: each batch's callback is called with its answers or its error (a
connector polling a gateway's units every second: a future per unit poll, and a task to wait
for it, cost more than its decoding). Nothing that arrives is taken for
an answer unless its transaction id and unit id are those of a request in flight; a frame of no
such request (a late answer, another transaction's) is kept as *stray* bytes, and a batch that
times out with stray or partial bytes received since it was sent says so (`NoAnswer.received`):
its answer came garbled. Bytes that cannot be framed (protocol id not 0, a length no frame has)
end the connection: the oldest batch in flight is blamed with those bytes (a gateway answers in
order), the others fail as lost."""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit id + PDU), unit
READ_REQUEST = struct.Struct(">HHHBBHH")  # MBAP + function 3, address, count
WRITE_ONE = struct.Struct(">HHHBBHH")  # MBAP + function 6, address, value
WRITE_MANY = struct.Struct(">HHHBBHHB")  # MBAP + function 16, address, count, byte count
MAX_PDU = 253
MAX_ADU = 260  # bytes of a Modbus TCP frame at most: what is kept of an unusable answer
MAX_READ = 125  # registers one FC3 request may ask for
MAX_WRITE = 123  # registers one FC16 request may carry
# Function codes by the names pymodbus gives their answers (what an error message says).
FUNCTION_NAMES = {
    1: "ReadCoilsResponse", 2: "ReadDiscreteInputsResponse",
    3: "ReadHoldingRegistersResponse", 4: "ReadInputRegistersResponse",
    5: "WriteSingleCoilResponse", 6: "WriteSingleRegisterResponse",
    15: "WriteMultipleCoilsResponse", 16: "WriteMultipleRegistersResponse",
    23: "ReadWriteMultipleRegistersResponse",
}


class TransportError(Exception):
    """A batch got no answer: `received` holds bytes that came meanwhile and were no answer
    to it (empty: silence). `index` is its first request left unanswered."""

    def __init__(self, message: str, *, received: bytes = b"", index: int = 0) -> None:
        super().__init__(message)
        self.received = received
        self.index = index


class NoAnswer(TransportError):
    """The batch's time ran out."""


class ConnectionLost(TransportError):
    """The connection closed (by the peer, by us, or because its bytes could not be framed)
    with the batch in flight, or was not open."""


class ExceptionAnswer(Exception):
    """A Modbus exception response (function | 0x80, exception code)."""

    def __init__(self, function: int, code: int) -> None:
        super().__init__(f"function {function}: exception {code}")
        self.function, self.code = function, code


class UnusableAnswer(Exception):
    """A frame of the request's transaction and unit that is no answer to it: another
    function's, a byte count beyond the frame, a wrong number of registers. `answer` is what
    came, as text."""

    def __init__(self, message: str, *, answer: str) -> None:
        super().__init__(message)
        self.answer = answer


# -- frames: pure functions ----------------------------------------------------------------

def read_request(tid: int, unit: int, address: int, count: int) -> bytes:
    """The ADU of an FC3 read."""
    return READ_REQUEST.pack(tid, 0, 6, unit, 3, address, count)


def write_request(tid: int, unit: int, address: int, values: Sequence[int]) -> bytes:
    """The ADU of an FC6 write (one register) or an FC16 write (more)."""
    if len(values) == 1:
        return WRITE_ONE.pack(tid, 0, 6, unit, 6, address, values[0])
    data = struct.pack(f">{len(values)}H", *values)
    return WRITE_MANY.pack(tid, 0, 7 + len(data), unit, 16, address, len(values),
                           len(data)) + data


def pdu_request(tid: int, unit: int, pdu: bytes) -> bytes:
    """Any PDU in an MBAP frame."""
    return MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu


def check_exception(pdu: bytes) -> None:
    """Raise `ExceptionAnswer` for an exception response."""
    if pdu and pdu[0] & 0x80:
        raise ExceptionAnswer(pdu[0] & 0x7F, pdu[1] if len(pdu) > 1 else 0)


def read_answer(pdu: bytes, count: int) -> bytes:
    """The register bytes (2 · count, big-endian words) of an FC3 answer, or
    `ExceptionAnswer` / `UnusableAnswer`."""
    check_exception(pdu)
    function = pdu[0] if pdu else 0
    if function != 3:
        raise UnusableAnswer(f"answered function {function} "
                             f"({FUNCTION_NAMES.get(function, 'unknown function')}), not 3",
                             answer=pdu.hex(" "))
    if len(pdu) < 2 or pdu[1] != len(pdu) - 2 or pdu[1] % 2:
        told = pdu[1] if len(pdu) > 1 else None
        raise UnusableAnswer(f"answered a byte count of {told} in a frame of {len(pdu) - 2} "
                             "data bytes", answer=pdu.hex(" "))
    if pdu[1] != 2 * count:
        registers = list(struct.unpack(f">{pdu[1] // 2}H", pdu[2:]))
        raise UnusableAnswer(f"answered {len(registers)} registers", answer=str(registers))
    return pdu[2:]


def write_answer(pdu: bytes, function: int) -> None:
    """Check the answer of an FC6 or FC16 write: `ExceptionAnswer` / `UnusableAnswer`. Its
    echo of the value is not compared: a device may echo what it stores (clamped), which the
    read-back that verifies a setpoint tells plainly."""
    check_exception(pdu)
    got = pdu[0] if pdu else 0
    if got != function or len(pdu) != 5:
        raise UnusableAnswer(f"answered function {got} "
                             f"({FUNCTION_NAMES.get(got, 'unknown function')}) in "
                             f"{len(pdu)} bytes, not the 5 of function {function}",
                             answer=pdu.hex(" "))


# -- the connection --------------------------------------------------------------------------

Answered = Callable[["list[bytes] | TransportError"], None]  # a batch's callback


class _Batch:
    """Requests sent together, answered together: the answers (or the error) go to its future,
    or to its callback (`send_each`)."""

    __slots__ = ("answered", "answers", "done", "future", "left", "seq", "stray_mark", "tids",
                 "timeout_s", "timer")

    def __init__(self, future: asyncio.Future[list[bytes]] | None, answered: Answered | None,
                 size: int, seq: int, stray_mark: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.future = future
        self.answered = answered
        self.done = False
        self.answers: list[bytes] = [b""] * size
        self.left = size
        self.tids: list[int] = []  # of its requests sent
        self.stray_mark = stray_mark
        self.timer: asyncio.TimerHandle | None = None
        self.seq = seq


class ModbusTcpClient(asyncio.Protocol):
    """One TCP connection to a Modbus TCP server (gateway): `connect`, then `send` batches of
    requests from any number of tasks; `close` fails what is in flight."""

    def __init__(self, in_flight: int = 1) -> None:
        self.in_flight = in_flight  # requests sent and not answered, at most
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, tuple[_Batch, int, int]] = {}  # tid → batch, index, unit
        self._batches: dict[int, _Batch] = {}  # in flight, by seq (oldest first)
        self._buffer = bytearray()
        self._queued: deque[tuple[_Batch, int, int, bytes]] = deque()  # batch, index, unit
        self._outgoing: list[bytes] = []  # frames to write at the end of this loop iteration
        self._tid = 0
        self._seq = 0
        self._stray = b""  # the last stray bytes (≤ MAX_ADU)
        self._stray_count = 0  # stray frames and bytes received so far
        self.closed_reason = ""

    async def connect(self, host: str, port: int, timeout_s: float) -> None:
        """Open the connection (OSError, TimeoutError when it cannot be)."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            await self._loop.create_connection(lambda: self, host, port)

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def send(self, unit: int, frames: Sequence[bytes],
             timeout_s: float) -> asyncio.Future[list[bytes]]:
        """Send a batch: each request an ADU from `read_request`/`write_request` with a
        transaction id of 0 (replaced here). The future gives the answers' PDUs in request
        order, or fails with a `TransportError`."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[bytes]] = loop.create_future()
        if self._transport is None:
            future.set_exception(ConnectionLost(self.closed_reason or "not connected"))
            return future
        if not frames:
            future.set_result([])
            return future
        self._queue(unit, frames, timeout_s, future, None)
        self._pump()
        return future

    def send_each(self, batches: Sequence[tuple[int, Sequence[bytes], float, Answered]]) -> None:
        """Send batches `(unit, frames, timeout_s, answered)` together (as `send` does each):
        `answered` is called once per batch, with the answers' PDUs in request order or the
        `TransportError` it failed with — from inside this client (an answer's arrival, a
        timer, `close`), so it must not block. Not connected: each is called at once."""
        if self._transport is None:
            for _, _, _, answered in batches:
                answered(ConnectionLost(self.closed_reason or "not connected"))
            return
        for unit, frames, timeout_s, answered in batches:
            if frames:
                self._queue(unit, frames, timeout_s, None, answered)
            else:
                answered([])
        self._pump()

    def _queue(self, unit: int, frames: Sequence[bytes], timeout_s: float,
               future: asyncio.Future[list[bytes]] | None, answered: Answered | None) -> None:
        self._seq += 1
        batch = _Batch(future, answered, len(frames), self._seq, self._stray_count, timeout_s)
        self._batches[batch.seq] = batch
        queued = self._queued
        for index, frame in enumerate(frames):
            queued.append((batch, index, unit, frame))

    def close(self, reason: str = "closed") -> None:
        """Close the connection; every batch in flight fails as lost."""
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
            self._fail_all(reason)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._transport = None
            received = bytes(self._buffer[:MAX_ADU])
            self._fail_all(f"connection lost ({exc})" if exc else "connection lost", received)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pending = self._pending
        unpack = MBAP.unpack_from
        start, size = 0, len(buffer)
        while size - start >= 8:
            tid, protocol, length, unit = unpack(buffer, start)
            if protocol != 0 or length < 2 or length > MAX_PDU + 1:
                self._desync(bytes(buffer[start:start + MAX_ADU]))
                return
            end = start + 6 + length
            if end > size:
                break
            entry = pending.get(tid)
            if entry is None or entry[2] != unit:
                self._stray = bytes(buffer[start:end])
                self._stray_count += 1
            else:
                del pending[tid]
                batch, index, _ = entry
                batch.answers[index] = bytes(buffer[start + 7:end])
                batch.left -= 1
                if batch.left == 0:
                    self._finish(batch)
            start = end
        if start:
            del buffer[:start]
        if self._queued:
            self._pump()

    # inside

    def _pump(self) -> None:
        """Send queued requests while fewer than `in_flight` are unanswered; a batch's time
        runs from its last request sent (one after another, each has its own)."""
        queued, pending = self._queued, self._pending
        if not queued or len(pending) >= self.in_flight:
            return
        loop = self._loop or asyncio.get_running_loop()
        outgoing = self._outgoing
        if not outgoing:
            loop.call_soon(self._flush)
        started = None
        while queued and len(pending) < self.in_flight:
            batch, index, unit, frame = queued.popleft()
            if batch.done or (batch.future is not None and batch.future.done()):
                continue  # timed out or cancelled before it was sent
            tid = self._tid = (self._tid + 1) & 0xFFFF
            while tid in pending:  # 65536 requests in flight: not on any gateway
                tid = self._tid = (self._tid + 1) & 0xFFFF
            pending[tid] = (batch, index, unit)
            if not batch.tids:
                batch.stray_mark = self._stray_count
            batch.tids.append(tid)
            outgoing.append(tid.to_bytes(2, "big") + frame[2:])
            if batch is not started:
                started = batch
                if batch.timer is not None:
                    batch.timer.cancel()
                batch.timer = loop.call_later(batch.timeout_s, self._expire, batch)

    def _flush(self) -> None:
        if self._outgoing:
            frames, self._outgoing = self._outgoing, []
            if self._transport is not None:
                self._transport.write(b"".join(frames))

    def _finish(self, batch: _Batch) -> None:
        del self._batches[batch.seq]
        if batch.timer is not None:
            batch.timer.cancel()
        self._settle(batch, batch.answers)

    @staticmethod
    def _settle(batch: _Batch, outcome: list[bytes] | TransportError) -> None:
        """A batch's end, told once: to its callback, or to its future (unless cancelled)."""
        if batch.done:
            return
        batch.done = True
        if batch.answered is not None:
            batch.answered(outcome)
        elif batch.future is not None and not batch.future.done():
            if isinstance(outcome, TransportError):
                batch.future.set_exception(outcome)
            else:
                batch.future.set_result(outcome)

    def _forget(self, batch: _Batch) -> None:
        self._batches.pop(batch.seq, None)
        if batch.timer is not None:
            batch.timer.cancel()
        for tid in batch.tids:
            entry = self._pending.get(tid)
            if entry is not None and entry[0] is batch:
                del self._pending[tid]

    def _first_unanswered(self, batch: _Batch) -> int:
        """Its first request sent and not answered, else its first not sent."""
        pending = self._pending
        return next((i for i, tid in enumerate(batch.tids)
                     if tid in pending and pending[tid][0] is batch), len(batch.tids))

    def _expire(self, batch: _Batch) -> None:
        index = self._first_unanswered(batch)
        received = b""
        if self._stray_count > batch.stray_mark:
            received = self._stray
        elif self._buffer:  # part of a frame
            received = bytes(self._buffer[:MAX_ADU])
        self._forget(batch)
        self._settle(batch, NoAnswer(f"no answer within {batch.timeout_s:g} s",
                                     received=received, index=index))
        self._pump()

    def _desync(self, received: bytes) -> None:
        """Bytes that no frame starts with: the stream cannot be followed any more."""
        self._buffer.clear()
        if self._batches:
            oldest = self._batches[min(self._batches)]
            index = self._first_unanswered(oldest)
            self._forget(oldest)
            self._settle(oldest, ConnectionLost("an answer that is no Modbus TCP frame",
                                                received=received, index=index))
        self.close("connection dropped after bytes that are no Modbus TCP frame")

    def _fail_all(self, reason: str, received: bytes = b"") -> None:
        self.closed_reason = reason
        self._buffer.clear()
        self._outgoing.clear()
        self._queued.clear()
        batches = sorted(self._batches.values(), key=lambda b: b.seq)
        for n, batch in enumerate(batches):
            index = self._first_unanswered(batch)
            self._forget(batch)
            self._settle(batch, ConnectionLost(reason, received=received if n == 0 else b"",
                                               index=index))
        self._pending.clear()

    def __repr__(self) -> str:
        state: Any = "connected" if self.connected else self.closed_reason or "not connected"
        return f"<ModbusTcpClient {state}, {len(self._pending)} requests in flight>"
