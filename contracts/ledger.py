"""Exact accounting of a battery unit's time (spec §3-4): a sweep over its status intervals,
its children's and the exclusion windows covering it, splitting time into window, excluded
and lost time per bucket (a measurement period, an hour, …).

Durations are integer microseconds and counted time is kept as {loss: duration}, so sums are
exact and independent of the order or the chunks in which time is swept: the batch command
and the incremental accumulators of the flows give the same numbers to the last digit."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from contracts.fleet import Asset
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.periods import US_PER_HOUR
from contracts.rules import Kind, Rules, children_loss

OVER_ALLOWANCE = "maintenance_over_allowance"
# Where an instant's time is booked: (bucket key, end of that bucket).
Locate = Callable[[int], tuple[Hashable, int]]


@dataclass
class Totals:
    """Time of one unit in one bucket. `loss_us` holds counted (not excluded) time by loss."""

    window_us: int = 0
    excluded_us: int = 0
    loss_us: dict[float, int] = field(default_factory=dict)
    # Time by the class of §3 that matched; maintenance is split into its excluded part
    # ("maintenance") and what exceeded the year's allowance ("maintenance_over_allowance").
    class_us: dict[str, int] = field(default_factory=dict)

    def add(self, other: Totals) -> None:
        self.window_us += other.window_us
        self.excluded_us += other.excluded_us
        for loss, us in other.loss_us.items():
            self.loss_us[loss] = self.loss_us.get(loss, 0) + us
        for name, us in other.class_us.items():
            self.class_us[name] = self.class_us.get(name, 0) + us

    @property
    def counted_us(self) -> int:
        return self.window_us - self.excluded_us

    @property
    def lost_us(self) -> float:
        """Σ loss × duration, summed in a fixed order (exactly reproducible)."""
        return math.fsum(loss * us for loss, us in sorted(self.loss_us.items()) if loss)

    @property
    def availability(self) -> float | None:
        """A_u = 1 − L/(T − E); None when nothing is counted."""
        counted = self.counted_us
        return None if counted == 0 else 1.0 - self.lost_us / counted

    def hours(self) -> tuple[float, float, float]:
        """(window, excluded, lost) in hours."""
        return (self.window_us / US_PER_HOUR, self.excluded_us / US_PER_HOUR,
                self.lost_us / US_PER_HOUR)


@dataclass
class UnitScope:
    """What the sweep needs to know about one unit of a contract."""

    unit_id: str
    window: tuple[int, int]  # [max(contract start, commissioned), contract end)
    assets: Mapping[str, Asset]
    rules: Rules
    allowance_us: int
    contract_year: Callable[[int], tuple[int, int]]  # instant → (year, end of that year)


# Event codes, in the order they apply at one instant: ends before starts.
_OWN_END, _CHILD_END, _WINDOW_END, _OWN_START, _CHILD_START, _WINDOW_START = range(6)


def sweep(
    scope: UnitScope,
    start_us: int,
    end_us: int,
    own: Iterable[StatusInterval],
    children: Iterable[StatusInterval],
    windows: Iterable[ExclusionWindow],
    locate: Locate,
    maintenance_used: dict[int, int],
    out: dict[Any, Totals],
) -> None:
    """Book `[start_us, end_us)` (clipped to the unit's window) into `out` by bucket.

    `own` are the unit's intervals, `children` those of its inverters and blocks, `windows`
    the exclusion windows covering it (site or unit scope). `maintenance_used` (µs of
    allowance used per contract year) carries over between calls: sweeping in chunks, in
    time order, books exactly what one sweep would."""
    lo, hi = max(start_us, scope.window[0]), min(end_us, scope.window[1])
    if hi <= lo:
        return
    rules = scope.rules
    events: list[tuple[int, int, object]] = []
    for iv in own:
        if iv.end_us > lo and iv.start_us < hi:
            events.append((max(iv.start_us, lo), _OWN_START, iv))
            events.append((min(iv.end_us, hi), _OWN_END, iv))
    for iv in children:
        if iv.end_us > lo and iv.start_us < hi:
            events.append((max(iv.start_us, lo), _CHILD_START, iv))
            events.append((min(iv.end_us, hi), _CHILD_END, iv))
    excluded_reasons = rules.excluded_causes
    for w in windows:
        if w.end_us > lo and w.start_us < hi and (
                w.reason in excluded_reasons or w.reason == "scheduled_maintenance"):
            events.append((max(w.start_us, lo), _WINDOW_START, w))
            events.append((min(w.end_us, hi), _WINDOW_END, w))
    events.sort(key=lambda e: (e[0], e[1]))

    own_now: StatusInterval | None = None
    child_losses: dict[str, float] = {}
    child_mean = 0.0
    excluded_n = maintenance_n = 0
    bucket_key: Hashable = None
    bucket_end = lo  # located lazily
    year, year_end = 0, lo
    unit_id, assets = scope.unit_id, scope.assets
    allowance = scope.allowance_us

    i, n = 0, len(events)
    t = lo
    while True:
        dirty = False
        while i < n and events[i][0] == t:
            _, code, item = events[i]
            i += 1
            if code == _OWN_START:
                own_now = cast(StatusInterval, item)
            elif code == _OWN_END:
                if own_now is item:
                    own_now = None
            elif code in (_CHILD_START, _CHILD_END):
                child = cast(StatusInterval, item)
                if code == _CHILD_START:
                    child_losses[child.asset_id] = rules.child_loss(child)
                else:
                    child_losses.pop(child.asset_id, None)
                dirty = True
            else:
                window = cast(ExclusionWindow, item)
                step = 1 if code == _WINDOW_START else -1
                if window.reason in excluded_reasons:
                    excluded_n += step
                else:
                    maintenance_n += step
        if t >= hi:
            break
        if dirty:
            child_mean = children_loss(unit_id, child_losses, assets) if child_losses else 0.0
        t_next = events[i][0] if i < n else hi
        label, kind, loss = rules.classify_unit(own_now, excluded_n > 0, maintenance_n > 0)
        if child_mean > loss and kind is not Kind.EXCLUDED:
            loss = child_mean
        # Book [t, t_next), split at bucket and contract-year ends.
        a = t
        while a < t_next:
            if a >= bucket_end:
                bucket_key, bucket_end = locate(a)
            if a >= year_end:
                year, year_end = scope.contract_year(a)
            b = min(t_next, bucket_end, year_end)
            us = b - a
            totals = out.get(bucket_key)
            if totals is None:
                totals = out[bucket_key] = Totals()
            totals.window_us += us
            classes = totals.class_us
            if kind is Kind.MAINTENANCE:
                used = maintenance_used.get(year, 0)
                take = min(us, max(0, allowance - used))
                maintenance_used[year] = used + take
                totals.excluded_us += take
                classes["maintenance"] = classes.get("maintenance", 0) + take
                if us > take:
                    totals.loss_us[1.0] = totals.loss_us.get(1.0, 0) + us - take
                    classes[OVER_ALLOWANCE] = classes.get(OVER_ALLOWANCE, 0) + us - take
            else:
                classes[label] = classes.get(label, 0) + us
                if kind is Kind.EXCLUDED:
                    totals.excluded_us += us
                else:
                    totals.loss_us[loss] = totals.loss_us.get(loss, 0) + us
            a = b
        t = t_next
