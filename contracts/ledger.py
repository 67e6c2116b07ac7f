"""Exact accounting of a battery unit's time (spec §3-4): a sweep over its status intervals,
its children's and the exclusion windows covering it, splitting time into window, excluded
and lost time per bucket (a measurement period, an hour, …).

Durations are integer microseconds and counted time is kept as {loss: duration}, so sums are
exact and independent of the order or the chunks in which time is swept: the batch command
and the incremental accumulators of the flows give the same numbers to the last digit."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.fleet import Asset
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.periods import US_PER_HOUR
from contracts.rules import Kind, Rollup, Rules

OVER_ALLOWANCE = "maintenance_over_allowance"
# Where an instant's time is booked: (bucket key, end of that bucket).
Locate = Callable[[int], tuple[Hashable, int]]


@dataclass(slots=True)
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
    rollup: Rollup = field(init=False)

    def __post_init__(self) -> None:
        self.rollup = Rollup(self.unit_id, self.assets)


# Event codes, in the order they apply at one instant: ends before starts.
_OWN_END, _CHILD_END, _WINDOW_END, _OWN_START, _CHILD_START, _WINDOW_START = range(6)
Event = tuple[int, int, int, Any]  # (time, code, tie-breaker, interval or window)


class UnitSweep:
    """A resumable sweep of one unit's time: inputs are added as boundary events, and
    `run(to)` books `[booked_to, to)` into buckets, carrying every piece of state (the active
    intervals, the children's losses, the maintenance allowance used) to the next run. One
    run or many, the buckets receive exactly the same time — the batch evaluation runs it
    once, the incremental accumulators as the watermark moves."""

    def __init__(self, scope: UnitScope, locate: Locate, start_us: int) -> None:
        self.scope = scope
        self.locate = locate
        self.booked_to = max(start_us, scope.window[0])
        self._events: list[Event] = []  # sorted once `_sorted`
        self._sorted = True
        self._seq = 0
        self._own: StatusInterval | None = None
        self._child_losses: dict[str, float] = {}
        self._child_mean = 0.0
        self._excluded_n = self._maintenance_n = 0
        self.maintenance_used: dict[int, int] = {}  # µs of allowance used per contract year
        self._class = scope.rules.classify_unit(None, False, False)

    # -- input -------------------------------------------------------------------------

    def _push(self, start_us: int, end_us: int, start_code: int, end_code: int,
              item: object) -> None:
        """A start and an end event for the part of `item` not booked yet."""
        lo = start_us if start_us > self.booked_to else self.booked_to
        window_end = self.scope.window[1]
        hi = end_us if end_us < window_end else window_end
        if hi <= lo:
            return
        self._seq += 1
        self._events.append((lo, start_code, self._seq, item))
        self._events.append((hi, end_code, self._seq, item))
        self._sorted = False

    def add_own(self, interval: StatusInterval) -> None:
        self._push(interval.start_us, interval.end_us, _OWN_START, _OWN_END, interval)

    def add_child(self, interval: StatusInterval) -> None:
        self._push(interval.start_us, interval.end_us, _CHILD_START, _CHILD_END, interval)

    def add_window(self, window: ExclusionWindow) -> None:
        if (window.reason in self.scope.rules.excluded_causes
                or window.reason == "scheduled_maintenance"):  # others have no effect
            self._push(window.start_us, window.end_us, _WINDOW_START, _WINDOW_END, window)

    def clone(self) -> UnitSweep:
        """An independent copy (for provisional totals that must not advance this one)."""
        twin = copy.copy(self)
        twin._events = list(self._events)
        twin._child_losses = dict(self._child_losses)
        twin.maintenance_used = dict(self.maintenance_used)
        return twin

    # -- booking -----------------------------------------------------------------------

    def run(self, to_us: int, out: dict[Any, Totals]) -> None:
        """Book `[booked_to, to_us)` (within the unit's window) into `out`."""
        hi = min(to_us, self.scope.window[1])
        t = self.booked_to
        if hi <= t:
            return
        events = self._events
        if not self._sorted:
            events.sort()  # mostly sorted already: timsort makes this cheap
            self._sorted = True
        i, n = 0, len(events)
        rules, rollup, scope = self.scope.rules, self.scope.rollup, self.scope
        excluded_reasons = rules.excluded_causes
        allowance = scope.allowance_us
        maintenance_used = self.maintenance_used
        label, kind, own_loss = self._class
        counted, maintenance = Kind.COUNTED, Kind.MAINTENANCE
        totals = Totals()
        bucket_end = year_end = t  # located on the first piece
        year = 0
        while True:  # t < hi here: events at `hi` belong to the next run
            own_changed = False
            children_before: dict[str, float] | None = None
            while i < n and events[i][0] <= t:
                _, code, _, item = events[i]
                i += 1
                if code == _OWN_START:
                    self._own = item
                    own_changed = True
                elif code == _OWN_END:
                    if self._own is item:
                        self._own = None
                        own_changed = True
                elif code in (_CHILD_START, _CHILD_END):
                    asset_id = item.asset_id
                    losses = self._child_losses
                    if children_before is None:
                        children_before = {}
                    if asset_id not in children_before:
                        children_before[asset_id] = losses.get(asset_id, 0.0)
                    if code == _CHILD_START:
                        losses[asset_id] = rules.child_loss(item)
                    else:
                        losses.pop(asset_id, None)
                else:
                    step = 1 if code == _WINDOW_START else -1
                    if item.reason in excluded_reasons:
                        self._excluded_n += step
                    else:
                        self._maintenance_n += step
                    own_changed = True
            if children_before:
                losses = self._child_losses
                for asset_id, before in children_before.items():
                    if losses.get(asset_id, 0.0) != before:
                        self._child_mean = rollup.children_loss(losses) if losses else 0.0
                        break
            if own_changed:
                label, kind, own_loss = self._class = rules.classify_unit(
                    self._own, self._excluded_n > 0, self._maintenance_n > 0)
            child_mean = self._child_mean
            loss = child_mean if child_mean > own_loss and kind is counted else own_loss
            # Book [t, t_next), split at bucket and contract-year ends.
            t_next = events[i][0] if i < n and events[i][0] < hi else hi
            a = t
            while a < t_next:
                if a >= bucket_end:
                    key, bucket_end = self.locate(a)
                    found = out.get(key)
                    if found is None:
                        found = out[key] = Totals()
                    totals = found
                if a >= year_end:
                    year, year_end = scope.contract_year(a)
                b = t_next if t_next < bucket_end else bucket_end
                if year_end < b:
                    b = year_end
                us = b - a
                totals.window_us += us
                classes = totals.class_us
                if kind is counted:
                    classes[label] = classes.get(label, 0) + us
                    totals.loss_us[loss] = totals.loss_us.get(loss, 0) + us
                elif kind is maintenance:
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
                    totals.excluded_us += us
                a = b
            t = t_next
            if t >= hi:
                break
        del events[:i]  # what is left stays sorted
        self.booked_to = hi


def sweep(
    scope: UnitScope,
    start_us: int,
    end_us: int,
    own: Iterable[StatusInterval],
    children: Iterable[StatusInterval],
    windows: Iterable[ExclusionWindow],
    locate: Locate,
    out: dict[Any, Totals],
) -> None:
    """Book `[start_us, end_us)` of one unit into `out` in one run (the batch form)."""
    unit = UnitSweep(scope, locate, start_us)
    for interval in own:
        unit.add_own(interval)
    for interval in children:
        unit.add_child(interval)
    for window in windows:
        unit.add_window(window)
    unit.run(end_us, out)
