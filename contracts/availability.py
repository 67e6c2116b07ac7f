"""Rolling, time-weighted availability over exact loss segments (the live view of the flows;
contract availability is computed by contracts.engine).

A `Timeline` holds an asset's loss as piecewise-constant segments in event time (ms); equal
neighbours are merged, so a steady asset costs one segment however long it runs."""

from __future__ import annotations

import datetime as dt
from collections import deque
from zoneinfo import ZoneInfo


class Timeline:
    """Loss segments `[start, end)` appended in time order."""

    __slots__ = ("_segments",)

    def __init__(self) -> None:
        self._segments: deque[list[float]] = deque()  # [start_ms, end_ms, loss]

    def add(self, start_ms: int, end_ms: int, loss: float) -> None:
        if end_ms <= start_ms:
            return
        if self._segments:
            last = self._segments[-1]
            if start_ms < last[1]:
                raise ValueError(f"segment starting {start_ms} overlaps the one ending {last[1]}")
            if start_ms == last[1] and loss == last[2]:
                last[1] = end_ms
                return
        self._segments.append([start_ms, end_ms, loss])

    def trim(self, before_ms: int) -> None:
        """Forget everything before `before_ms`."""
        segments = self._segments
        while segments and segments[0][1] <= before_ms:
            segments.popleft()
        if segments and segments[0][0] < before_ms:
            segments[0][0] = before_ms

    def totals(self, start_ms: int, end_ms: int) -> tuple[float, float]:
        """(observed ms, lost ms) within `[start_ms, end_ms)`."""
        observed = lost = 0.0
        for seg_start, seg_end, loss in self._segments:
            lo, hi = max(seg_start, start_ms), min(seg_end, end_ms)
            if hi > lo:
                observed += hi - lo
                lost += (hi - lo) * loss
        return observed, lost

    def availability_pct(self, start_ms: int, end_ms: int) -> float | None:
        """100·(1 − lost/observed) over the observed part of the window; None if nothing seen."""
        observed, lost = self.totals(start_ms, end_ms)
        return None if observed == 0 else 100.0 * (1.0 - lost / observed)

    def __len__(self) -> int:
        return len(self._segments)


def local_midnight_ms(ts_ms: int, tz: ZoneInfo) -> int:
    """Start of the site-local day containing `ts_ms` (correct across DST changes)."""
    local = dt.datetime.fromtimestamp(ts_ms / 1000, tz)
    midnight = dt.datetime.combine(local.date(), dt.time(), tzinfo=tz)
    return int(midnight.timestamp() * 1000)
