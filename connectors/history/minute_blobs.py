"""Per-minute telemetry packed an hour per (asset, tag) — the embedded history store's layout
(connectors/history/sqlite.py `telemetry_hours`). Pure: bytes in, arrays out.

A row per (asset, tag, minute) made a replay of 30 days of one 6-unit site write 23 million
rows, four fifths of its time; an hour per row writes 60 times fewer, and the values stay
bit for bit what the flow computed (float64). One hour's blob:

    mask   u64   bit i set: minute i of the hour is present (m bits set)
    same   u8    bit 0: every present minute's min equals its last, bit 1 max, bit 2 mean
    count  u32 × m
    last   f64 × m
    min    f64 × m   (absent when `same` bit 0 is set: the `last` values)
    max    f64 × m   (likewise, bit 1)
    mean   f64 × m   (likewise, bit 2)

all little-endian, minutes in ascending order. At one poll a minute (replays of 1-minute
recordings) a minute's min, max, mean and last are one value, so an hour takes 729 bytes
instead of 2,400; at 1 s polls the hour is whole (2,169 bytes).

`values` arrays are float64 `(m, 5)`: count, min, max, mean, last per minute."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
COUNT_LIMIT = 2**32  # a minute's sample count must be below this

_HEADER = struct.Struct("<QB")
_BITS = np.uint64(1) << np.arange(60, dtype=np.uint64)
_SAME = ((1, 0b001), (2, 0b010), (3, 0b100))  # (column, its `same` bit)


def hour_of(start_ms: int) -> int:
    return start_ms - start_ms % HOUR_MS


def minute_slot(start_ms: int) -> int:
    """The minute of its hour a row starting at `start_ms` fills (ValueError when it does
    not start on a minute)."""
    if start_ms % MINUTE_MS:
        raise ValueError(f"per-minute telemetry must start on a whole minute: start_ms "
                         f"{start_ms} is {start_ms % MINUTE_MS} ms into one")
    return (start_ms % HOUR_MS) // MINUTE_MS


def encode(slots: np.ndarray, values: np.ndarray) -> bytes:
    """An hour's blob from `slots` (ascending, distinct minutes 0-59) and their `values`."""
    (blob,) = encode_many(slots, values[np.newaxis])
    return blob


def encode_many(slots: np.ndarray, values: np.ndarray) -> list[bytes]:
    """The blobs of several series over the same minutes at once: `values` is
    `(series, m, 5)`, one blob per series. Built as one byte matrix per set of sections
    left out — a row a blob — so a series costs one `tobytes`, not one per section."""
    counts = values[:, :, 0]
    if counts.size and not (counts.min() >= 0 and counts.max() < COUNT_LIMIT):
        bad = counts.min() if counts.min() < 0 else counts.max()
        raise OverflowError(f"a minute's sample count must be 0 to {COUNT_LIMIT - 1}, "
                            f"not {bad}")
    k, m = counts.shape
    columns = np.ascontiguousarray(values.transpose(2, 0, 1))  # (5, series, m)
    # Equal bit for bit, not as numbers: -0.0 is not 0.0 here (nor is one NaN another).
    bits = columns.view(np.uint64)
    same = np.zeros(k, dtype=np.int64)
    for column, bit in _SAME:
        same |= np.where((bits[column] == bits[4]).all(axis=1), bit, 0)
    mask = int(_BITS[slots].sum())
    as_bytes = [counts.astype("<u4").view(np.uint8).reshape(k, 4 * m),
                columns.view(np.uint8).reshape(5, k, 8 * m)]
    out: list[bytes] = [b""] * k
    for flags in np.unique(same).tolist():
        rows = np.flatnonzero(same == flags)
        header = np.frombuffer(_HEADER.pack(mask, flags), np.uint8)
        sections = [np.broadcast_to(header, (rows.size, header.size)), as_bytes[0][rows],
                    as_bytes[1][4][rows]]
        sections.extend(as_bytes[1][column][rows] for column, bit in _SAME
                        if not flags & bit)
        matrix = np.concatenate(sections, axis=1)
        for j, row in zip(rows.tolist(), matrix, strict=True):
            out[j] = row.tobytes()
    return out


def decode(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(slots, values) of an hour's blob: the present minutes, ascending, and their values."""
    if len(blob) < _HEADER.size:
        raise ValueError(f"a telemetry hour of {len(blob)} bytes, under its header's 9")
    mask, same = _HEADER.unpack_from(blob)
    slots = np.flatnonzero(np.uint64(mask) & _BITS)
    m = slots.size
    size = _HEADER.size + 12 * m + 8 * m * sum(1 for _, bit in _SAME if not same & bit)
    if len(blob) != size:
        raise ValueError(f"a telemetry hour of {len(blob)} bytes, {size} expected")
    values = np.empty((m, 5))
    offset = _HEADER.size
    values[:, 0] = np.frombuffer(blob, "<u4", m, offset)
    offset += 4 * m
    values[:, 4] = np.frombuffer(blob, "<f8", m, offset)
    offset += 8 * m
    for column, bit in _SAME:
        if same & bit:
            values[:, column] = values[:, 4]
        else:
            values[:, column] = np.frombuffer(blob, "<f8", m, offset)
            offset += 8 * m
    return slots, values


def merge(old: bytes, new: bytes) -> bytes:
    """`old` with the minutes `new` holds replaced by `new`'s (the store's upsert: last
    write wins, per minute, as a row per minute would) — the blob `encode` gives of them."""
    old_mask, old_same = _HEADER.unpack_from(old)
    new_mask, new_same = _HEADER.unpack_from(new)
    if old_mask and new_mask & -new_mask > old_mask:  # the usual case: later minutes
        appended = _append(old, old_mask, old_same, new, new_mask, new_same)
        if appended is not None:
            return appended
    old_slots, old_values = decode(old)
    new_slots, new_values = decode(new)
    keep = ~np.isin(old_slots, new_slots)
    slots = np.concatenate([old_slots[keep], new_slots])
    order = np.argsort(slots, kind="stable")
    return encode(slots[order], np.concatenate([old_values[keep], new_values])[order])


def _sections(blob: bytes, mask: int, same: int) -> tuple[bytes, bytes, list[bytes | None]
                                                          ] | None:
    """A blob's counts, lasts and min/max/mean (None: the lasts), by bytes; None when its
    length does not match its header."""
    m = mask.bit_count()
    offset = _HEADER.size + 12 * m
    counts, last = blob[_HEADER.size:_HEADER.size + 4 * m], blob[_HEADER.size + 4 * m:offset]
    optional: list[bytes | None] = []
    for _, bit in _SAME:
        if same & bit:
            optional.append(None)
        else:
            optional.append(blob[offset:offset + 8 * m])
            offset += 8 * m
    return (counts, last, optional) if offset == len(blob) else None


def _append(old: bytes, old_mask: int, old_same: int, new: bytes, new_mask: int,
            new_same: int) -> bytes | None:
    """`new`'s minutes, all after `old`'s, appended section by section (no arrays)."""
    a, b = _sections(old, old_mask, old_same), _sections(new, new_mask, new_same)
    if a is None or b is None:
        return None  # decode says what is wrong
    same = old_same & new_same
    parts = [_HEADER.pack(old_mask | new_mask, same), a[0], b[0], a[1], b[1]]
    for i, (_, bit) in enumerate(_SAME):
        if not same & bit:
            parts.append(a[2][i] or a[1])
            parts.append(b[2][i] or b[1])
    return b"".join(parts)


HourBlob = tuple[str, str, int, str, bytes]  # asset_id, tag, hour_ms, site_id, blob


def blobs_of_blocks(blocks: Iterable[tuple[str, int, Sequence[tuple[str, str]], np.ndarray]]
                    ) -> Iterator[HourBlob]:
    """Hour blobs of minute blocks — (site_id, start_ms, series, values) with `values[i]`
    series i's — taking together, per hour, the blocks of one site and one series tuple
    (a unit's minutes, usually in one shape): each series' minutes of the hour are a column
    of one array. A minute told twice: its last."""
    groups: dict[tuple[str, int, int], tuple[Sequence[tuple[str, str]], dict[int, np.ndarray]]]
    groups = {}
    for site_id, start_ms, series, values in blocks:
        key = (site_id, id(series), hour_of(start_ms))
        group = groups.get(key)
        if group is None:
            group = groups[key] = (series, {})
        group[1][minute_slot(start_ms)] = values
    for (site_id, _, hour_ms), (series, minutes) in groups.items():
        slots = np.array(sorted(minutes), dtype=np.int64)
        stacked = np.stack([minutes[s] for s in slots.tolist()], axis=1)  # (series, m, 5)
        for (asset_id, tag), blob in zip(series, encode_many(slots, stacked), strict=True):
            yield asset_id, tag, hour_ms, site_id, blob


def blobs_of_rows(rows: Iterable[tuple[str, str, int, str, Sequence[float]]]
                  ) -> Iterator[HourBlob]:
    """Hour blobs of single rows — (asset_id, tag, start_ms, site_id, [count, min, max,
    mean, last]) — grouped per (asset, tag, hour); the hour's site is its last row's."""
    groups: dict[tuple[str, str, int], tuple[list[str], dict[int, Sequence[float]]]] = {}
    for asset_id, tag, start_ms, site_id, values in rows:
        key = (asset_id, tag, hour_of(start_ms))
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([site_id], {})
        group[0][0] = site_id
        group[1][minute_slot(start_ms)] = values
    for (asset_id, tag, hour_ms), ((site_id,), minutes) in groups.items():
        slots = np.array(sorted(minutes), dtype=np.int64)
        yield asset_id, tag, hour_ms, site_id, encode(
            slots, np.array([minutes[s] for s in slots.tolist()], dtype=np.float64))


Bucketed = tuple[int, str, int, float, float, float, float]  # start, site, n, min, max, mean, last


def rebucket(hours: Iterable[tuple[int, str, bytes]], start_ms: int, end_ms: int,
             step_ms: int) -> list[Bucketed]:
    """The minutes in `[start_ms, end_ms)` of a series' hours (ascending `hour_ms`, site,
    blob), re-aggregated to `step_ms` (buckets aligned on its multiples since the epoch):
    counts summed, min of mins, max of maxes, count-weighted mean (the plain mean of the
    means when no minute counts a sample), last and site of the latest minute."""
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    site_of: list[np.ndarray] = []
    sites: list[str] = []
    for hour_ms, site_id, blob in hours:
        slots, minute_values = decode(blob)
        t = hour_ms + slots * MINUTE_MS
        keep = (t >= start_ms) & (t < end_ms)
        if keep.any():
            times.append(t[keep])
            values.append(minute_values[keep])
            site_of.append(np.full(int(keep.sum()), len(sites)))
            sites.append(site_id)
    if not times:
        return []
    t = np.concatenate(times)
    v = np.concatenate(values)
    bucket = t // step_ms * step_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t)] - 1
    n = v[:, 0]
    total = np.add.reduceat(n, starts)
    weighted = np.add.reduceat(v[:, 3] * n, starts)
    plain = np.add.reduceat(v[:, 3], starts) / (ends - starts + 1)
    counted = total > 0
    mean = np.where(counted, weighted / np.where(counted, total, 1.0), plain)
    site_index = np.concatenate(site_of)[ends].tolist()
    return list(zip(bucket[starts].tolist(), [sites[i] for i in site_index],
                    total.astype(np.int64).tolist(),
                    np.minimum.reduceat(v[:, 1], starts).tolist(),
                    np.maximum.reduceat(v[:, 2], starts).tolist(),
                    mean.tolist(), v[ends, 4].tolist(), strict=True))


MinuteRow = tuple[str, str, int, str, int, float, float, float, float]


def minute_rows(asset_id: str, tag: str, hour_ms: int, site_id: str, blob: bytes
                ) -> list[MinuteRow]:
    """An hour's minutes as rows: asset, tag, start_ms, site, count, min, max, mean, last."""
    slots, values = decode(blob)
    return [(asset_id, tag, hour_ms + slot * MINUTE_MS, site_id, int(n), low, high, mean, last)
            for slot, (n, low, high, mean, last) in zip(slots.tolist(), values.tolist(),
                                                        strict=True)]
