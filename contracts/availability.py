"""Rolling, time-weighted availability over exact loss segments (the live view of the flows;
contract availability is computed by contracts.engine).

A `Timeline` holds an asset's loss as piecewise-constant segments in event time (ms); equal
neighbours are merged, so a steady asset costs one segment however long it runs."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from zoneinfo import ZoneInfo


class Timeline:
    """Loss segments `[start, end)` appended in time order, with running totals: a window's
    figures cost two binary searches, not a walk over the segments (a unit heard once a
    minute makes two segments a minute, fresh then communication loss, for a whole day)."""

    __slots__ = ("_ends", "_floor", "_losses", "_lost", "_observed", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._losses: list[float] = []
        self._observed: list[int] = []  # observed ms of the segments up to this one
        self._lost: list[float] = []  # lost ms of the segments up to this one
        self._floor: int | None = None  # nothing before it counts (trimmed)

    def add(self, start_ms: int, end_ms: int, loss: float) -> None:
        if end_ms <= start_ms:
            return
        if self._ends:
            last_end = self._ends[-1]
            if start_ms < last_end:
                raise ValueError(f"segment starting {start_ms} overlaps the one ending "
                                 f"{last_end}")
            if start_ms == last_end and loss == self._losses[-1]:
                self._ends[-1] = end_ms
                self._observed[-1] += end_ms - start_ms
                self._lost[-1] += (end_ms - start_ms) * loss
                return
        observed = self._observed[-1] if self._observed else 0
        lost = self._lost[-1] if self._lost else 0.0
        self._starts.append(start_ms)
        self._ends.append(end_ms)
        self._losses.append(loss)
        self._observed.append(observed + end_ms - start_ms)
        self._lost.append(lost + (end_ms - start_ms) * loss)

    def trim(self, before_ms: int) -> None:
        """Forget everything before `before_ms`."""
        if self._floor is None or before_ms > self._floor:
            self._floor = before_ms
        gone = bisect_right(self._ends, before_ms)  # segments wholly before it
        if gone > 64 and 2 * gone > len(self._ends):  # drop them now and then: amortized
            observed, lost = self._observed[gone - 1], self._lost[gone - 1]
            del self._starts[:gone], self._ends[:gone], self._losses[:gone]
            self._observed = [x - observed for x in self._observed[gone:]]
            self._lost = [x - lost for x in self._lost[gone:]]

    def _before(self, t_ms: int) -> tuple[int, float]:
        """(observed ms, lost ms) before `t_ms`."""
        i = bisect_right(self._starts, t_ms) - 1  # the last segment starting by then
        if i < 0:
            return 0, 0.0
        part = min(self._ends[i], t_ms) - self._starts[i]
        if i == 0:
            return part, part * self._losses[0]
        return self._observed[i - 1] + part, self._lost[i - 1] + part * self._losses[i]

    def totals(self, start_ms: int, end_ms: int) -> tuple[float, float]:
        """(observed ms, lost ms) within `[start_ms, end_ms)`."""
        if self._floor is not None and start_ms < self._floor:
            start_ms = self._floor
        if end_ms <= start_ms:
            return 0.0, 0.0
        ends = self._ends
        if ends and self._lost[-1] == 0.0 and self._observed[-1] == ends[-1] - self._starts[0]:
            # Nothing lost and no gap between the segments (a unit's usual live timeline).
            observed = min(end_ms, ends[-1]) - max(start_ms, self._starts[0])
            return (float(observed) if observed > 0 else 0.0), 0.0
        observed_to, lost_to = self._before(end_ms)
        observed_from, lost_from = self._before(start_ms)
        return float(observed_to - observed_from), lost_to - lost_from

    def availability_pct(self, start_ms: int, end_ms: int) -> float | None:
        """100·(1 − lost/observed) over the observed part of the window; None if nothing seen."""
        ends = self._ends
        if self._floor is not None and start_ms < self._floor:
            start_ms = self._floor
        if ends and self._lost[-1] == 0.0 and start_ms < end_ms and \
                self._starts[-1] < end_ms and ends[-1] > start_ms:
            return 100.0  # nothing ever lost and the newest segment is in the window (usual)
        observed, lost = self.totals(start_ms, end_ms)
        return None if observed == 0 else 100.0 * (1.0 - lost / observed)

    def __len__(self) -> int:
        """Segments not wholly forgotten."""
        floor = self._floor
        return len(self._ends) - (0 if floor is None else bisect_right(self._ends, floor))


def local_midnight_ms(ts_ms: int, tz: ZoneInfo) -> int:
    """Start of the site-local day containing `ts_ms` (correct across DST changes)."""
    local = dt.datetime.fromtimestamp(ts_ms / 1000, tz)
    midnight = dt.datetime.combine(local.date(), dt.time(), tzinfo=tz)
    return int(midnight.timestamp() * 1000)
