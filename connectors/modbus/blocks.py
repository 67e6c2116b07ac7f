"""A poll group's register blocks → its points' raw values, with one precompiled `struct.Struct`
per block: the hot path of a connector that decodes every point of every device each second.

Each block's struct picks the plain numbers (big word and byte order, every integer and float
type, bit fields) straight out of the block's bytes at their offsets, gaps skipped; the points
it cannot hold (strings, other orders, registers shared with a point already taken) are
unpacked by their own unpacker, from their registers. `DeviceMap.decode_poll` over registers
by address stays the obvious version, the oracle of the tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectors.modbus.codec import NUMBERS, RawValue

if TYPE_CHECKING:
    from connectors.modbus.poller import PointRead
    from connectors.modbus.profile import DeviceProfile

_FORMATS = {datatype: fmt[1:] for datatype, (fmt, _) in NUMBERS.items()}
_BITFIELDS = {1: "H", 2: "I"}
_WORD = struct.Struct(">H")


class BlockPlan:
    """How to unpack one poll group's blocks (`(address, count)` each, in read order) into
    the raw values of `reads`: `raws(data)[slots[i]]` is the raw value of `reads[i]`."""

    def __init__(self, blocks: Sequence[tuple[int, int]], reads: Sequence[PointRead],
                 profile: DeviceProfile) -> None:
        self.blocks = tuple(blocks)
        where: dict[int, tuple[int, int]] = {}  # address → block, byte offset
        for b, (start, count) in enumerate(self.blocks):
            for address in range(start, start + count):
                where.setdefault(address, (b, 2 * (address - start)))
        self._where = where
        by_block: list[list[int]] = [[] for _ in self.blocks]
        rest: list[int] = []
        for i in sorted(range(len(reads)), key=lambda i: reads[i].address):
            r = reads[i]
            fmt = _format(r, profile)
            first, last = where.get(r.address), where.get(r.address + r.size - 1)
            if fmt is None or first is None or last is None or last[0] != first[0]:
                rest.append(i)
            else:
                by_block[first[0]].append(i)
        slots = [0] * len(reads)
        structs, slot = [], 0
        for taken in by_block:
            fmt, end = ">", 0  # end: first byte not yet in the format
            for i in taken:
                r = reads[i]
                offset = where[r.address][1]
                if offset < end:  # shares registers with the point before: not in the struct
                    rest.append(i)
                    continue
                fmt += (f"{offset - end}x" if offset > end else "") + str(_format(r, profile))
                end = offset + 2 * r.size
                slots[i] = slot
                slot += 1
            structs.append(struct.Struct(fmt))
        for i in rest:
            slots[i] = slot
            slot += 1
        self.slots = tuple(slots)
        self._structs = tuple(structs)
        self._rest = tuple(reads[i] for i in rest)

    def raws(self, data: Sequence[bytes]) -> list[RawValue]:
        """Every point's raw value, by its slot: one `unpack_from` per block, then the points
        no struct took. KeyError for a point whose registers were not read."""
        raws: list[RawValue] = []
        for s, block in zip(self._structs, data, strict=True):
            raws.extend(s.unpack_from(block))
        for r in self._rest:
            raws.append(r.unpack(self.words(data, r.address, r.size)))
        return raws

    def words(self, data: Sequence[bytes], address: int, size: int) -> list[int]:
        """The registers of `size` from `address` (KeyError when not read)."""
        where = self._where
        return [self.word(data, a) if a in where else _missing(a)
                for a in range(address, address + size)]

    def word(self, data: Sequence[bytes], address: int) -> int:
        """One register (KeyError when not read)."""
        b, offset = self._where[address]
        value: int = _WORD.unpack_from(data[b], offset)[0]
        return value


def _missing(address: int) -> int:
    raise KeyError(address)


def _format(r: PointRead, profile: DeviceProfile) -> str | None:
    """The struct format of a point's raw value straight from its bytes, or None."""
    point = r.point
    if profile.orders(point) != ("big", "big"):
        return None
    if point.datatype == "bitfield":
        return _BITFIELDS.get(r.size)
    fmt = _FORMATS.get(point.datatype)
    return fmt if fmt is not None and NUMBERS[point.datatype][1] == r.size else None
