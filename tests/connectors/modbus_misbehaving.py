"""A Modbus device that misbehaves, served by a real pymodbus server on loopback: each request
is answered as its `mode` says — from the device's registers, with registers of random
contents, with an exception response, not at all, with fewer or more registers than asked,
with another function's answer, with a frame of another transaction, or with noise —
pipelined requests too (the simulator's server). What it served is counted by mode, with a
wait on it (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.simulator import DataType, SimData, SimDevice

from infra.ports import free_port
from infra.sim.pipelined import PipelinedModbusTcpServer
from tests.connectors.modbus_sim import HOST, wait_listening

Mode = Literal["ok", "random", "exception", "busy", "unknown_exception", "silent", "short",
               "long", "function", "other_transaction", "noise"]
# answers the connector cannot decode: a failed poll and a dead letter each
GARBLED: frozenset[str] = frozenset({"short", "long", "function", "other_transaction", "noise"})
# Register contents worth trying more often than 1 in 65536: the ends of every integer type,
# the halves of float NaN and ±inf (float32 and float64), scale factors just inside and just
# outside ±10, the "not implemented" values, bytes that are not UTF-8 and control characters.
SPECIAL = (0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0xFFFE, 0x7F80, 0xFF80, 0x7FC0,
           0x7FF0, 0xFFF0, 0x7FF8, 0x000A, 0xFFF6, 0x000B, 0xFFF5, 0x0190, 0x7E00, 0xC328,
           0xC3FF, 0x00FF, 0x0A0D, 0x4142, 0x0041)


class Watched:
    """Something that changes while a scenario runs, with a wait for a condition on it."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], what: str,
                    timeout_s: float = 15.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


def random_word(rng: random.Random) -> int:
    return rng.choice(SPECIAL) if rng.random() < 0.3 else rng.randrange(0x10000)


class Misbehaving(Watched):
    """Unit ids answering from `images` (unit id → address → register) as `mode` says: a
    fixed mode, or a function of the unit id drawn for every request."""

    def __init__(self, images: Mapping[int, Mapping[int, int]], *,
                 mode: Mode | Callable[[int], Mode] = "ok", seed: int = 0,
                 blocks: Sequence[tuple[int, int]] = ((0, 1000),)) -> None:
        super().__init__()
        self.images = {unit: dict(image) for unit, image in images.items()}
        self.mode = mode
        self.rng = random.Random(seed)
        self.blocks = tuple(blocks)
        self.served: Counter[Mode] = Counter()  # requests answered, by mode
        self.served_by_unit: Counter[int] = Counter()
        self._current: Mode = "ok"

    def devices(self) -> list[SimDevice]:
        return [SimDevice(id=unit, simdata=[SimData(address=a, count=n, values=0,
                                                    datatype=DataType.REGISTERS)
                                            for a, n in self.blocks],
                          action=partial(self._serve, unit))
                for unit in self.images]

    def _mode(self, unit: int) -> Mode:
        return self.mode(unit) if callable(self.mode) else self.mode

    async def _serve(self, unit: int, function_code: int, start: int, address: int, count: int,
                     registers: list[int], values: list[int] | list[bool] | None
                     ) -> ExcCodes | None:
        mode = self._current = self._mode(unit)
        self.served[mode] += 1
        self.served_by_unit[unit] += 1
        self.changed()
        if values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a read-only device
        if mode == "silent":
            raise NoSuchIdException(f"unit {unit}: silent")  # the server answers nothing
        if mode == "exception":
            return ExcCodes.DEVICE_FAILURE
        if mode == "busy":
            return ExcCodes.DEVICE_BUSY
        image = self.images[unit]
        words = [random_word(self.rng) for _ in range(count)] if mode == "random" else \
            [image.get(a, 0) for a in range(address, address + count)]
        offset = address - start
        registers[offset:offset + count] = words
        return None

    def trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if sending and hasattr(pdu, "registers"):
            if self._current == "short":
                pdu.registers = pdu.registers[:len(pdu.registers) // 2]
            elif self._current == "long":
                pdu.registers = [*pdu.registers, 0x1234, 0x5678]
        return pdu

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or len(data) < 8:
            return data
        tid, pid, _, unit = struct.unpack(">HHHB", data[:7])
        pdu = data[7:]
        if self._current == "function":
            pdu = bytes([4]) + pdu[1:]  # the answer of "read input registers"
        elif self._current == "other_transaction":
            tid ^= 0x5555
        elif self._current == "unknown_exception":
            pdu = bytes([pdu[0] | 0x80, 0x55])
        elif self._current == "noise":
            return self.rng.randbytes(len(data))
        else:
            return data
        return struct.pack(">HHHB", tid, pid, len(pdu) + 1, unit) + pdu

    @contextlib.asynccontextmanager
    async def serving(self, port: int | None = None) -> AsyncIterator[int]:
        """The server on loopback until the block ends; yields its port."""
        port = port or free_port(HOST)
        server = PipelinedModbusTcpServer(self.devices(), address=(HOST, port),
                                 ignore_missing_devices=True, trace_pdu=self.trace_pdu,
                                 trace_packet=self.trace_packet)
        task = asyncio.ensure_future(server.serve_forever())
        try:
            await wait_listening(port)
            yield port
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
