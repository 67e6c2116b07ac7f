"""One coordinator per Modbus TCP gateway (host:port): it owns the connection its devices
share, serializes their requests, reconnects with exponential backoff, retries failed reads,
and turns every pymodbus exception, timeout, exception response and malformed answer into a
`DeviceUnavailable`, a `DeviceRefused` or a `DeviceGarbled` (connectors/modbus/errors.py).

A request that got bytes back which pymodbus could not take for its answer (a frame of
another transaction or unit, a byte count beyond the frame, noise) ends as a timeout or a
lost connection inside pymodbus; the bytes received meanwhile tell it apart from silence: it
is `DeviceGarbled`, with those bytes."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from connectors.modbus.errors import (
    EXCEPTION_NAMES,
    DeviceGarbled,
    DeviceRefused,
    DeviceUnavailable,
)

log = logging.getLogger(__name__)
WRITE, POLL = 0, 1  # lock priorities: a setpoint write goes before queued polls
MAX_ADU = 260  # bytes of a Modbus TCP frame at most: what is kept of an unusable answer


class _PriorityLock:
    """A lock handed to the waiter of lowest priority, then first come: a setpoint write that
    arrives behind a burst of polls (every device of a gateway ticks at the same instant) is
    served next, not last."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._arrivals), future)
        heapq.heappush(self._waiters, entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            elif entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # ownership passes on; the lock stays held
                return
        self._held = False


class GatewayLink:
    """The gateway's connection while one caller holds it (see `GatewayCoordinator.hold`)."""

    def __init__(self, gateway: GatewayCoordinator) -> None:
        self._gateway = gateway

    async def read(self, unit_id: int, address: int, count: int, timeout_s: float) -> list[int]:
        """Read holding registers (FC3)."""
        client = self._gateway.client
        result = await self._gateway.request(
            lambda: client.read_holding_registers(address, count=count, device_id=unit_id),
            f"unit {unit_id} read {address}+{count}", timeout_s)
        where = f"{self._gateway.name} unit {unit_id} read {address}+{count}"
        function_code = getattr(result, "function_code", None)
        registers = list(getattr(result, "registers", None) or ())
        if function_code != 3:
            raise DeviceGarbled(f"{where}: answered function {function_code} "
                                f"({type(result).__name__}), not 3", answer=repr(result)[:500])
        if len(registers) != count:
            raise DeviceGarbled(f"{where}: answered {len(registers)} registers",
                                answer=str(registers))
        return registers

    async def write(self, unit_id: int, address: int, values: Sequence[int],
                    timeout_s: float) -> int:
        """Write holding registers: FC6 for one register, FC16 for more. Returns the function
        code used."""
        client = self._gateway.client
        if len(values) == 1:
            await self._gateway.request(
                lambda: client.write_register(address, values[0], device_id=unit_id),
                f"unit {unit_id} write {address}", timeout_s)
            return 6
        await self._gateway.request(
            lambda: client.write_registers(address, list(values), device_id=unit_id),
            f"unit {unit_id} write {address}+{len(values)}", timeout_s)
        return 16


class GatewayCoordinator:
    """The one TCP connection to a gateway, shared by every unit id behind it.

    Reconnecting backs off exponentially: after n consecutive connection failures (refused,
    lost, timed out) the next attempt waits `backoff_s · 2^(n-1)`, at most `backoff_max_s`;
    until then requests fail at once with `DeviceUnavailable(connection_down=True)`. A
    successful answer resets the count. pymodbus' own retries and reconnection are off: this
    class owns both."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 2.0, backoff_s: float = 0.1,
                 backoff_max_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.host, self.port = host, port
        self.name = f"{host}:{port}"
        self.timeout_s = timeout_s
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._client: AsyncModbusTcpClient | None = None  # made in the loop that uses it
        self.connect_attempts = 0
        self._monotonic = monotonic
        self._lock = _PriorityLock()
        self._failures = 0  # consecutive connection-level failures
        self._next_connect = 0.0
        self._received = b""  # bytes received since the last request was sent

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' packet hook: remembers what arrives for the request on the wire."""
        self._received = b"" if sending else bytes(data[:MAX_ADU])
        return data

    @property
    def client(self) -> AsyncModbusTcpClient:
        if self._client is None:
            self._client = AsyncModbusTcpClient(self.host, port=self.port,
                                                timeout=self.timeout_s, retries=0,
                                                reconnect_delay=0, trace_packet=self._trace)
        return self._client

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    @property
    def reconnect_delay_s(self) -> float:
        """How long after the last failure the next connection attempt waits."""
        if self._failures == 0:
            return 0.0
        return float(min(self.backoff_s * 2 ** (self._failures - 1), self.backoff_max_s))

    @contextlib.asynccontextmanager
    async def hold(self, *, priority: int = POLL,
                   connect_now: bool = False) -> AsyncIterator[GatewayLink]:
        """The connection, to this caller alone, connected. `connect_now` skips the wait of
        the reconnect backoff (a setpoint write will not wait for the next poll's turn)."""
        async with self._lock.hold(priority):
            await self._connect(force=connect_now)
            yield GatewayLink(self)

    async def read(self, unit_id: int, blocks: Sequence[tuple[int, int]], *, timeout_s: float,
                   retries: int = 0, backoff_s: float = 0.1,
                   backoff_max_s: float = 5.0) -> dict[int, int]:
        """Read every `(address, count)` block of one poll in one hold of the connection
        (one consistent snapshot); on failure try again up to `retries` times, waiting
        `backoff_s · 2^attempt` (at most `backoff_max_s`) without holding the connection."""
        attempt = 0
        while True:
            try:
                async with self.hold() as link:
                    registers: dict[int, int] = {}
                    for address, count in blocks:
                        values = await link.read(unit_id, address, count, timeout_s)
                        registers.update(zip(range(address, address + count), values,
                                             strict=True))
                    return registers
            except DeviceRefused as exc:
                if attempt >= retries or not exc.transient:
                    raise
            except (DeviceUnavailable, DeviceGarbled):
                if attempt >= retries:
                    raise
            await asyncio.sleep(min(backoff_s * 2 ** attempt, backoff_max_s))
            attempt += 1

    async def request(self, call: Callable[[], Awaitable[Any]], what: str,
                      timeout_s: float) -> Any:
        """One request on the held connection; errors of ours out, the PDU back."""
        where = f"{self.name} {what}"
        self._received = b""
        try:
            async with asyncio.timeout(timeout_s):
                result = await call()
        except TimeoutError:
            lost = not self.connected
            self._drop()
            self._garbled(where, "no answer" if lost else f"no answer within {timeout_s:g} s")
            raise DeviceUnavailable(f"{where}: " + ("connection lost" if lost else
                                                    f"no answer within {timeout_s:g} s"),
                                    connection_down=lost) from None
        except ModbusException as exc:
            lost = isinstance(exc, ConnectionException) or not self.connected
            self._drop()
            self._garbled(where, str(exc))
            raise DeviceUnavailable(f"{where}: {exc}", connection_down=lost) from None
        self._failures = 0  # an answer, even a refusal: the connection works
        if result.isError():
            code = int(getattr(result, "exception_code", 0))
            raise DeviceRefused(f"{where}: exception {code} "
                                f"({EXCEPTION_NAMES.get(code, 'unknown')})", exception_code=code)
        return result

    def _garbled(self, where: str, outcome: str) -> None:
        """Raise `DeviceGarbled` when bytes came back for a request that failed."""
        received, self._received = self._received, b""
        if received:
            raise DeviceGarbled(f"{where}: {outcome}, but {len(received)} bytes came that are no "
                                f"answer to it: {received[:32].hex(' ')}"
                                + (" …" if len(received) > 32 else ""),
                                answer=received.hex(" ")) from None

    async def _connect(self, *, force: bool) -> None:
        if self.connected:
            return
        wait = self._next_connect - self._monotonic()
        if wait > 0 and not force:
            raise DeviceUnavailable(f"{self.name}: connection down, next attempt in {wait:.2f} s",
                                    connection_down=True)
        self.connect_attempts += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                connected = await self.client.connect()
        except (TimeoutError, ModbusException, OSError):
            connected = False
        if not connected:
            self._drop()
            raise DeviceUnavailable(f"{self.name}: cannot connect (next attempt in "
                                    f"{self.reconnect_delay_s:.2f} s)", connection_down=True)
        if self._failures:
            log.info("gateway %s: connected again", self.name)

    def _drop(self) -> None:
        """Close the connection after a failure (a late answer must not be taken for the next
        request's) and push the next connection attempt back."""
        self.close()
        self._failures += 1
        self._next_connect = self._monotonic() + self.reconnect_delay_s

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None
