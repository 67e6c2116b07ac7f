"""Raw values ⇄ 16-bit registers: how a number, a bit field or a string is laid out in holding
registers, in either word order and either byte order.

Conventions (those of most device manuals):
- `byte_order: big` — a register's high byte comes first (the Modbus standard); `little`
  swaps the two bytes of every register.
- `word_order: big` — the most significant register comes first; `little` reverses the
  registers of a multi-register value (the "CDAB" layout of many PLCs and meters).
- Strings are bytes in address order: the word order does not apply to them, the byte order
  does (some devices swap the characters of each register).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Literal

Datatype = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
                   "string", "bitfield"]
Order = Literal["big", "little"]
RawValue = int | float | str

# struct format and size in registers of every fixed-size number
NUMBERS: dict[str, tuple[str, int]] = {
    "int16": (">h", 1), "uint16": (">H", 1), "int32": (">i", 2), "uint32": (">I", 2),
    "int64": (">q", 4), "uint64": (">Q", 4), "float32": (">f", 2), "float64": (">d", 4),
}
INTEGERS = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})
_BITFIELDS = {1: ">H", 2: ">I"}


class EncodeError(ValueError):
    """A value that the point's datatype cannot hold (out of range, too long, wrong kind)."""


def natural_size(datatype: Datatype) -> int | None:
    """Registers a datatype takes, or None when the point says (strings, bit fields)."""
    return NUMBERS[datatype][1] if datatype in NUMBERS else None


@lru_cache(maxsize=64)
def _registers(count: int, byte_order: Order) -> struct.Struct:
    """`count` 16-bit registers as bytes: each register's high byte first, or swapped."""
    return struct.Struct(f"{'<' if byte_order == 'little' else '>'}{count}H")


def _to_words(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    words = list(_registers(len(data) // 2, byte_order).unpack(data))
    if word_order == "little":
        words.reverse()
    return words


def _to_bytes(registers: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    words = registers[::-1] if word_order == "little" else registers
    return _registers(len(words), byte_order).pack(*words)


def pack(datatype: Datatype, raw: RawValue, count: int, word_order: Order = "big",
         byte_order: Order = "big") -> list[int]:
    """A raw value (what the device holds, before scaling) → `count` registers."""
    if datatype == "string":
        if not isinstance(raw, str):
            raise EncodeError(f"a string point takes text, not {raw!r}")
        data = raw.encode("utf-8")
        if len(data) > 2 * count:
            raise EncodeError(f"{raw!r} is {len(data)} bytes; the point holds {2 * count}")
        return _to_words(data.ljust(2 * count, b"\0"), "big", byte_order)
    if isinstance(raw, str):
        raise EncodeError(f"a {datatype} point takes a number, not {raw!r}")
    fmt = _BITFIELDS[count] if datatype == "bitfield" else NUMBERS[datatype][0]
    try:
        if datatype in ("float32", "float64"):
            data = struct.pack(fmt, raw)
        else:
            if not math.isfinite(raw) or raw != round(raw):
                raise EncodeError(f"{raw!r} is not a whole number ({datatype})")
            data = struct.pack(fmt, round(raw))
    except (struct.error, OverflowError):
        raise EncodeError(f"{raw!r} does not fit a {datatype}"
                          + (f" of {count} registers" if datatype == "bitfield" else "")) from None
    return _to_words(data, word_order, byte_order)


def unpack(datatype: Datatype, registers: Sequence[int], word_order: Order = "big",
           byte_order: Order = "big") -> RawValue:
    """Registers → the raw value (a string up to its first NUL)."""
    if datatype == "string":
        data = _to_bytes(registers, "big", byte_order)
        return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    fmt = _BITFIELDS[len(registers)] if datatype == "bitfield" else NUMBERS[datatype][0]
    value: int | float = struct.unpack(fmt, _to_bytes(registers, word_order, byte_order))[0]
    return value


@lru_cache(maxsize=256)
def unpacker(datatype: Datatype, size: int, word_order: Order = "big",
             byte_order: Order = "big") -> Callable[[Sequence[int]], RawValue]:
    """`unpack` for one layout, its structs built once: what the poller calls per point."""
    if datatype == "string":
        return partial(unpack, datatype, word_order=word_order, byte_order=byte_order)
    words = _registers(size, byte_order)
    value = struct.Struct(_BITFIELDS[size] if datatype == "bitfield" else NUMBERS[datatype][0])
    if word_order == "little":
        def read(registers: Sequence[int]) -> RawValue:
            raw: RawValue = value.unpack(words.pack(*registers[::-1]))[0]
            return raw
    else:
        def read(registers: Sequence[int]) -> RawValue:
            raw: RawValue = value.unpack(words.pack(*registers))[0]
            return raw
    return read


@lru_cache(maxsize=256)
def packer(datatype: Datatype, size: int, word_order: Order = "big",
           byte_order: Order = "big") -> Callable[[int | float], list[int]]:
    """`pack` of a number for one layout, its structs built once: what a simulator calls
    per point and tick. Whole-number types take whole numbers only (EncodeError otherwise)."""
    if datatype == "string":
        raise ValueError("strings have no packer; use pack")
    words = _registers(size, byte_order)
    value = struct.Struct(_BITFIELDS[size] if datatype == "bitfield" else NUMBERS[datatype][0])
    floating = datatype in ("float32", "float64")
    reverse = word_order == "little"

    def write(raw: int | float) -> list[int]:
        try:
            if floating:
                data = value.pack(raw)
            else:
                if not math.isfinite(raw) or raw != round(raw):
                    raise EncodeError(f"{raw!r} is not a whole number ({datatype})")
                data = value.pack(round(raw))
        except (struct.error, OverflowError):
            raise EncodeError(f"{raw!r} does not fit a {datatype}") from None
        registers = list(words.unpack(data))
        if reverse:
            registers.reverse()
        return registers

    return write


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: 0.1 read from a float32 register is
    0.10000000149011612 as a double, and nobody wrote that."""
    exact = struct.pack(">f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == exact:
            return candidate
    return value
