"""One coordinator per Modbus TCP gateway (host:port): it owns the connection its devices
share, lets several devices' polls ride it at once (pipelined: their requests in flight
together, answers matched by transaction id, connectors/modbus/tcp.py), gives a setpoint
write the connection to itself ahead of queued polls, reconnects with exponential backoff,
retries failed reads, and turns every timeout, lost connection, exception response and
malformed answer into a `DeviceUnavailable`, a `DeviceRefused` or a `DeviceGarbled`
(connectors/modbus/errors.py).

A request that got bytes back which are no answer to it (a frame of another transaction or
unit, a byte count beyond the frame, noise) is `DeviceGarbled`, with those bytes: a frame of
its own transaction at once, stray bytes when its time runs out, bytes that cannot be framed
at once (the connection is dropped)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence

from connectors.modbus.errors import (
    EXCEPTION_NAMES,
    DeviceGarbled,
    DeviceRefused,
    DeviceUnavailable,
    ModbusError,
)
from connectors.modbus.tcp import (
    ExceptionAnswer,
    ModbusTcpClient,
    NoAnswer,
    TransportError,
    UnusableAnswer,
    read_answer,
    read_request,
    write_answer,
    write_request,
)

log = logging.getLogger(__name__)
WRITE, POLL = 0, 1  # lock priorities: a setpoint write goes before queued polls
# A unit's poll in a round (`GatewayCoordinator.poll_each`): unit id, blocks, timeout, and what
# to call with the blocks' bytes or the error of ours the poll ended with.
Polled = Callable[["list[bytes] | ModbusError"], None]


class _PriorityLock:
    """A lock handed to the waiter of lowest priority, then first come: a setpoint write that
    arrives behind a burst of polls (every device of a gateway ticks at the same instant) is
    served next, not last. Up to `capacity` *shared* holders (pipelined polls) may hold it
    together; an exclusive holder holds it alone. Waiters are served strictly in order, so
    polls arriving after a waiting write wait behind it."""

    def __init__(self, capacity: int = 1) -> None:
        self._capacity = capacity
        self._active = 0
        self._exclusive = False
        self._waiters: list[tuple[int, int, asyncio.Future[None], bool]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, priority: int, *, shared: bool = False) -> AsyncIterator[None]:
        exclusive = not shared
        await self.acquire(priority, exclusive=exclusive)
        try:
            yield
        finally:
            self.release(exclusive=exclusive)

    def _free_for(self, exclusive: bool) -> bool:
        if exclusive:
            return self._active == 0
        return not self._exclusive and self._active < self._capacity

    async def acquire(self, priority: int, *, exclusive: bool = True) -> None:
        if not self._waiters and self._free_for(exclusive):
            self._active += 1
            self._exclusive = exclusive
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._arrivals), future, exclusive)
        heapq.heappush(self._waiters, entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(exclusive=exclusive)  # handed over as we were cancelled: pass it on
            elif entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
                self._wake()
            raise

    def release(self, *, exclusive: bool = True) -> None:
        self._active -= 1
        if exclusive:
            self._exclusive = False
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            _, _, future, exclusive = waiters[0]
            if future.done():
                heapq.heappop(waiters)
                continue
            if not self._free_for(exclusive):
                return
            heapq.heappop(waiters)
            self._active += 1  # ownership passes on
            self._exclusive = exclusive
            future.set_result(None)


class GatewayLink:
    """The gateway's connection while one caller holds it alone (see
    `GatewayCoordinator.hold`)."""

    def __init__(self, gateway: GatewayCoordinator) -> None:
        self._gateway = gateway

    async def read(self, unit_id: int, address: int, count: int, timeout_s: float) -> list[int]:
        """Read holding registers (FC3)."""
        (data,) = await self._gateway.exchange(unit_id, ((address, count),), timeout_s)
        return list(struct.unpack(f">{count}H", data))

    async def write(self, unit_id: int, address: int, values: Sequence[int],
                    timeout_s: float) -> int:
        """Write holding registers: FC6 for one register, FC16 for more. Returns the function
        code used."""
        return await self._gateway.write(unit_id, address, values, timeout_s)


class GatewayCoordinator:
    """The one TCP connection to a gateway, shared by every unit id behind it.

    Polls share it: up to `pipeline` requests are in flight at once (a poll's blocks, several
    polls'), for a gateway that takes pipelined requests; with 1 (the default, what every
    gateway takes) one request follows the answer of the other. A caller of `hold` (a setpoint
    write and its read-back, SunSpec discovery) has it alone, ahead of queued polls.

    Reconnecting backs off exponentially: after n consecutive connection failures (refused,
    lost, timed out) the next attempt waits `backoff_s · 2^(n-1)`, at most `backoff_max_s`;
    until then requests fail at once with `DeviceUnavailable(connection_down=True)`. A
    successful answer resets the count. A request that times out drops the connection (and
    with it the other requests in flight): a late answer is never taken for another's, and a
    gateway that stopped answering gets a fresh connection."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 2.0, backoff_s: float = 0.1,
                 backoff_max_s: float = 5.0, pipeline: int = 1,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.host, self.port = host, port
        self.name = f"{host}:{port}"
        self.timeout_s = timeout_s
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._client: ModbusTcpClient | None = None
        self.connect_attempts = 0
        self._monotonic = monotonic
        self.pipeline = pipeline
        self._lock = _PriorityLock(pipeline)
        self._failures = 0  # consecutive connection-level failures
        self._next_connect = 0.0
        self._connecting: asyncio.Future[None] | None = None
        self._frames: dict[tuple[int, Sequence[tuple[int, int]]], list[bytes]] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

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
        """`read_blocks` as registers by address."""
        data = await self.read_blocks(unit_id, blocks, timeout_s=timeout_s, retries=retries,
                                      backoff_s=backoff_s, backoff_max_s=backoff_max_s)
        return registers_of(blocks, data)

    async def read_blocks(self, unit_id: int, blocks: Sequence[tuple[int, int]], *,
                          timeout_s: float, retries: int = 0, backoff_s: float = 0.1,
                          backoff_max_s: float = 5.0,
                          on_retry: Callable[[], None] | None = None) -> list[bytes]:
        """Read every `(address, count)` block of one poll, its requests sent together (one
        consistent snapshot), beside other polls; each block's registers as big-endian bytes.
        On failure try again up to `retries` times, waiting `backoff_s · 2^attempt` (at most
        `backoff_max_s`) without a place on the connection; `on_retry` is told of each retry."""
        attempt = 0
        lock = self._lock
        while True:
            try:
                await lock.acquire(POLL, exclusive=False)  # not `hold`: cheaper, every poll
                try:
                    if not self.connected:
                        await self._connect(force=False)
                    return await self.exchange(unit_id, blocks, timeout_s)
                finally:
                    lock.release(exclusive=False)
            except DeviceRefused as exc:
                if attempt >= retries or not exc.transient:
                    raise
            except (DeviceUnavailable, DeviceGarbled):
                if attempt >= retries:
                    raise
            await asyncio.sleep(min(backoff_s * 2 ** attempt, backoff_max_s))
            attempt += 1
            if on_retry is not None:
                on_retry()

    async def poll_each(self, polls: Sequence[tuple[int, tuple[tuple[int, int], ...], float,
                                                    Polled]]) -> None:
        """One read of every `(unit_id, blocks, timeout_s, polled)` — a round of the units
        of this gateway that poll at one instant — their requests pipelined together, each
        as `read_blocks` reads it but without retries: `polled` is called with its blocks'
        bytes or its `ModbusError` once it is over (its answers in, its time up, the
        connection lost), from inside the client. Returns once the requests are sent: an
        answer waits for nobody, and a unit that stops answering does not hold up the next
        round of the others. (On a gateway of `pipeline` 1 its requests go one after the
        other, but a unit's refused block does not keep its next block from being sent:
        the poller reads such gateways unit by unit, with `read_blocks`.)"""
        if not polls:
            return
        lock = self._lock
        await lock.acquire(POLL, exclusive=False)
        left = len(polls)

        def over() -> None:  # the round holds one place on the connection until it is over
            nonlocal left
            left -= 1
            if left == 0:
                lock.release(exclusive=False)

        try:
            if not self.connected:
                await self._connect(force=False)
        except DeviceUnavailable as exc:
            lock.release(exclusive=False)
            for *_, polled in polls:
                polled(exc)
            return
        except BaseException:  # cancelled: nothing was sent, nobody is told
            lock.release(exclusive=False)
            raise
        client = self._client
        assert client is not None

        def answered(unit_id: int, blocks: tuple[tuple[int, int], ...],
                     polled: Polled) -> Callable[[list[bytes] | TransportError], None]:
            def done(outcome: list[bytes] | TransportError) -> None:
                over()
                try:
                    if isinstance(outcome, TransportError):
                        raise self._unavailable(client, outcome, lambda i: (
                            f"unit {unit_id} read {blocks[i][0]}+{blocks[i][1]}"))
                    self._failures = 0
                    data = self._data(unit_id, blocks, outcome)
                except ModbusError as exc:
                    polled(exc)
                    return
                polled(data)
            return done

        client.send_each([(unit_id, self._frames_of(unit_id, blocks), timeout_s,
                           answered(unit_id, blocks, polled))
                          for unit_id, blocks, timeout_s, polled in polls])

    def _frames_of(self, unit_id: int, blocks: Sequence[tuple[int, int]]) -> list[bytes]:
        """The read requests of `blocks` (a poll group's, a tuple: asked again every poll,
        built once)."""
        cached = isinstance(blocks, tuple)
        frames = self._frames.get((unit_id, blocks)) if cached else None
        if frames is None:
            frames = [read_request(0, unit_id, address, count) for address, count in blocks]
            if cached and len(self._frames) < 4096:
                self._frames[(unit_id, blocks)] = frames
        return frames

    def _data(self, unit_id: int, blocks: Sequence[tuple[int, int]],
              answers: Sequence[bytes]) -> list[bytes]:
        """The registers' bytes of each block from its answer's PDU, or an error of ours."""
        data = []
        for (address, count), pdu in zip(blocks, answers, strict=True):
            try:
                data.append(read_answer(pdu, count))
            except ExceptionAnswer as exc:
                raise _refused(f"{self.name} unit {unit_id} read {address}+{count}",
                               exc) from None
            except UnusableAnswer as exc:
                raise DeviceGarbled(f"{self.name} unit {unit_id} read {address}+{count}: "
                                    f"{exc}", answer=exc.answer) from None
        return data

    async def exchange(self, unit_id: int, blocks: Sequence[tuple[int, int]],
                       timeout_s: float) -> list[bytes]:
        """FC3 reads of `blocks` on the connection (which the caller holds): the registers'
        bytes of each, or an error of ours. Pipelined, the blocks' requests go together;
        otherwise one after the answer of the other, and the first unusable answer ends the
        poll before the next request (as a serial gateway is read)."""
        if self.pipeline == 1 and len(blocks) > 1:
            return [(await self.exchange(unit_id, (block,), timeout_s))[0] for block in blocks]
        answers = await self._send(unit_id, self._frames_of(unit_id, blocks), timeout_s,
                                   lambda i: f"unit {unit_id} read {blocks[i][0]}+{blocks[i][1]}")
        return self._data(unit_id, blocks, answers)

    async def write(self, unit_id: int, address: int, values: Sequence[int],
                    timeout_s: float) -> int:
        """FC6 (one register) or FC16 on the held connection; the function code used."""
        function = 6 if len(values) == 1 else 16
        what = f"unit {unit_id} write {address}" + ("" if function == 6 else f"+{len(values)}")
        (pdu,) = await self._send(unit_id, [write_request(0, unit_id, address, values)],
                                  timeout_s, lambda _: what)
        try:
            write_answer(pdu, function)
        except ExceptionAnswer as exc:
            raise _refused(f"{self.name} {what}", exc) from None
        except UnusableAnswer as exc:
            raise DeviceGarbled(f"{self.name} {what}: {exc}", answer=exc.answer) from None
        return function

    async def _send(self, unit_id: int, frames: list[bytes], timeout_s: float,
                    what: Callable[[int], str]) -> list[bytes]:
        """A batch of requests on the connection: the answers' PDUs, or an error of ours."""
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnavailable(f"{self.name} {what(0)}: connection lost",
                                    connection_down=True)
        try:
            answers = await client.send(unit_id, frames, timeout_s)
        except TransportError as exc:
            raise self._unavailable(client, exc, what) from None
        self._failures = 0  # an answer, even a refusal: the connection works
        return answers

    def _unavailable(self, client: ModbusTcpClient, exc: TransportError,
                     what: Callable[[int], str]) -> DeviceUnavailable | DeviceGarbled:
        """What a request that failed on the wire is to its caller; a timeout drops the
        connection (see the class), a lost one is dropped if still ours."""
        where = f"{self.name} {what(exc.index)}"
        self._drop(client)  # unless an earlier connection's
        try:
            _garbled(where, str(exc), exc.received)
        except DeviceGarbled as garbled:
            return garbled
        return DeviceUnavailable(f"{where}: {exc}",
                                 connection_down=not isinstance(exc, NoAnswer))

    async def _connect(self, *, force: bool) -> None:
        """Connect unless connected; concurrent callers wait for one attempt."""
        while not self.connected:
            if self._connecting is not None:
                await asyncio.shield(self._connecting)
                continue
            wait = self._next_connect - self._monotonic()
            if wait > 0 and not force:
                raise DeviceUnavailable(f"{self.name}: connection down, next attempt in "
                                        f"{wait:.2f} s", connection_down=True)
            self._connecting = asyncio.get_running_loop().create_future()
            try:
                await self._attempt()
            finally:
                self._connecting.set_result(None)
                self._connecting = None
            return

    async def _attempt(self) -> None:
        self.connect_attempts += 1
        client = ModbusTcpClient(in_flight=self.pipeline)
        try:
            await client.connect(self.host, self.port, self.timeout_s)
        except (TimeoutError, OSError):
            client.close()
            self._drop(None)
            raise DeviceUnavailable(f"{self.name}: cannot connect (next attempt in "
                                    f"{self.reconnect_delay_s:.2f} s)",
                                    connection_down=True) from None
        self._client = client
        if self._failures:
            log.info("gateway %s: connected again", self.name)

    def _drop(self, client: ModbusTcpClient | None) -> None:
        """Close the connection after a failure (a late answer must not be taken for the next
        request's) and push the next connection attempt back — once for the requests that
        failed with it."""
        if client is not None and client is not self._client:
            return  # an earlier connection, already dropped
        self.close("dropped after a failed request")
        self._failures += 1
        self._next_connect = self._monotonic() + self.reconnect_delay_s

    def close(self, reason: str = "closed") -> None:
        """Close the connection; the next request opens a new one."""
        if self._client is not None:
            client, self._client = self._client, None
            client.close(reason)


def registers_of(blocks: Sequence[tuple[int, int]], data: Sequence[bytes]) -> dict[int, int]:
    """Blocks' bytes as registers by address."""
    registers: dict[int, int] = {}
    for (address, count), block in zip(blocks, data, strict=True):
        registers.update(zip(range(address, address + count),
                             struct.unpack(f">{count}H", block), strict=True))
    return registers


def _refused(where: str, exc: ExceptionAnswer) -> DeviceRefused:
    return DeviceRefused(f"{where}: exception {exc.code} "
                         f"({EXCEPTION_NAMES.get(exc.code, 'unknown')})", exception_code=exc.code)


def _garbled(where: str, outcome: str, received: bytes) -> None:
    """Raise `DeviceGarbled` when bytes came back for a request that failed."""
    if received:
        raise DeviceGarbled(f"{where}: {outcome}, but {len(received)} bytes came that are no "
                            f"answer to it: {received[:32].hex(' ')}"
                            + (" …" if len(received) > 32 else ""),
                            answer=received.hex(" ")) from None
