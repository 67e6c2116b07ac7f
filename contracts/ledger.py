"""Exact accounting of a battery unit's time (availability rules §3-4): a sweep over its status
intervals, its children's and the exclusion windows covering it, splitting time into window,
excluded and lost time per bucket (a measurement period, an hour, …).

Durations are integer microseconds and counted time is kept as {loss: duration}, so sums are
exact and independent of the order or the chunks in which time is swept: the batch command
and the incremental accumulators of the flows give the same numbers to the last digit."""

from __future__ import annotations

import copy
import heapq
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mypy_extensions import mypyc_attr

from contracts.fleet import Asset
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.native import restore, state_of
from contracts.periods import US_PER_HOUR
from contracts.rules import Class, Kind, Rollup, Rules, Why

OVER_ALLOWANCE = "maintenance_over_allowance"
# Where an instant's time is booked: (bucket key, end of that bucket) — the same for every
# instant from it to that end (a sweep keeps using a bucket from one run to the next).
Locate = Callable[[int], tuple[Hashable, int]]


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class Totals:
    """Time of one unit in one bucket. `loss_us` holds counted (not excluded) time by loss."""

    window_us: int = 0
    excluded_us: int = 0
    loss_us: dict[float, int] = field(default_factory=dict)
    # Time by the class of §3 that matched; maintenance is split into its excluded part
    # ("maintenance") and what exceeded the year's allowance ("maintenance_over_allowance").
    class_us: dict[str, int] = field(default_factory=dict)
    # Excluded time other than maintenance, by why (rules.Why): reports list it.
    excluded_by: dict[Why, int] = field(default_factory=dict)
    # The maintenance allowance used, by contract year (a period may span two).
    allowance_used_us: dict[int, int] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)

    def add(self, other: Totals) -> None:
        self.window_us += other.window_us
        self.excluded_us += other.excluded_us
        for loss, us in other.loss_us.items():
            self.loss_us[loss] = self.loss_us.get(loss, 0) + us
        for name, us in other.class_us.items():
            self.class_us[name] = self.class_us.get(name, 0) + us
        for why, us in other.excluded_by.items():
            self.excluded_by[why] = self.excluded_by.get(why, 0) + us
        for year, us in other.allowance_used_us.items():
            self.allowance_used_us[year] = self.allowance_used_us.get(year, 0) + us

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


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
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
    # The class of the unit's own status while no window is in force, by (state, cause,
    # derate fraction): all `Rules.classify_unit` reads of it then. Filled as statuses come.
    status_classes: dict[tuple[str, str | None, float | None], Class] = field(
        init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rollup = Rollup(self.unit_id, self.assets)

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        if "status_classes" not in restore(self, state):
            # A recovery snapshot from before the memo: it fills again.
            self.status_classes = {}


# Event codes, in the order they apply at one instant: ends before starts. The unit's own
# intervals have no end event: they come one after another, so nearly every end is the next
# start, and the sweep ends the current one itself (`own_end`) — half the events of a flow.
_CHILD_END, _WINDOW_END, _OWN_START, _CHILD_START, _WINDOW_START = range(5)
Event = tuple[int, int, int, Any]  # (time, code, tie-breaker, interval or window)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class UnitSweep:
    """A resumable sweep of one unit's time: inputs are added as boundary events, and
    `run(to)` books `[booked_to, to)` into buckets, carrying every piece of state (the active
    intervals, the children's losses, the maintenance allowance used) to the next run. One
    run or many, the buckets receive exactly the same time — the batch evaluation runs it
    once, the incremental accumulators as the watermark moves."""

    def __init__(self, scope: UnitScope, locate: Locate, start_us: int, *,
                 keep_inputs: bool = False) -> None:
        self.scope = scope
        # Every input added, when kept (the incremental form books parts of days again).
        self.inputs: list[StatusInterval | ExclusionWindow] | None = (
            [] if keep_inputs else None)
        self.locate = locate
        self.booked_to = max(start_us, scope.window[0])
        self._window_end = scope.window[1]
        self._events: list[Event] = []  # sorted once `_sorted`
        self._sorted = True
        self._seq = 0
        self._own: StatusInterval | None = None
        self._own_end = 0  # where `_own` ends
        self._child_losses: dict[str, float] = {}
        # Each child's latest interval whose end event is held back: when the child's next
        # interval starts where it ends (as they do), that start replaces it, so the end is
        # pushed only for a gap — or when booking reaches it (`_release_ends`).
        self._child_ends: dict[str, StatusInterval] = {}
        # (end, seq, held interval) of every interval held, earliest end first; an entry
        # whose interval was replaced in `_child_ends` since is skipped.
        self._held_by_end: list[tuple[int, int, StatusInterval]] = []
        self._child_mean = 0.0
        # Each child's rolled-up loss, kept for the next roll-up (`Rollup.children_loss`).
        self._rolled: dict[str, float] = {}
        self._excluding: dict[str, int] = {}  # exclusion windows in force, by reason
        self._excluding_reason: str | None = None  # the one listed first in the contract
        self._maintenance_n = 0
        self.maintenance_used: dict[int, int] = {}  # µs of allowance used per contract year
        self._class = scope.rules.classify_unit(None, None, False)
        # The bucket and contract year booking reached: (key, end) and (year, end). Booking
        # only moves forward, so while it is before their ends they hold; an end at
        # `booked_to` has the first run locate its own.
        self._bucket: tuple[Hashable, int] = (None, self.booked_to)
        self._year: tuple[int, int] = (0, self.booked_to)

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        if "_bucket" not in restore(self, state):
            # A recovery snapshot from before the carried bucket and roll-up: the next run
            # locates its bucket and rolls the children up afresh.
            self._bucket, self._year = (None, self.booked_to), (0, self.booked_to)
            self._rolled = {}

    # -- input -------------------------------------------------------------------------

    def _push(self, start_us: int, end_us: int, start_code: int, end_code: int,
              item: ExclusionWindow) -> None:
        """A start and an end event for the part of `item` not booked yet."""
        booked_to = self.booked_to
        lo = start_us if start_us > booked_to else booked_to
        window_end = self._window_end
        hi = end_us if end_us < window_end else window_end
        if hi <= lo:
            return
        seq = self._seq = self._seq + 1
        events = self._events
        events.append((lo, start_code, seq, item))
        events.append((hi, end_code, seq, item))
        self._sorted = False

    def add(self, item: StatusInterval | ExclusionWindow) -> None:
        """An input of any kind: an exclusion window, the unit's own interval, a child's."""
        if isinstance(item, ExclusionWindow):
            self.add_window(item)
        elif item.asset_id == self.scope.unit_id:
            self.add_own(item)
        else:
            self.add_child(item)

    def add_own(self, interval: StatusInterval) -> None:
        # _push written out: this runs for every status interval of a flow.
        if self.inputs is not None:
            self.inputs.append(interval)
        booked_to = self.booked_to
        start, end = interval.start_us, interval.end_us
        lo = start if start > booked_to else booked_to
        hi = end if end < self._window_end else self._window_end
        if hi > lo:
            seq = self._seq = self._seq + 1
            events = self._events
            events.append((lo, _OWN_START, seq, interval))
            self._sorted = False

    def add_child(self, interval: StatusInterval) -> None:
        if self.inputs is not None:
            self.inputs.append(interval)
        booked_to = self.booked_to
        start, end = interval.start_us, interval.end_us
        lo = start if start > booked_to else booked_to
        hi = end if end < self._window_end else self._window_end
        if hi <= lo:
            return
        events = self._events
        held = self._child_ends.get(interval.asset_id)
        if held is not None and held.end_us != lo:  # not followed at once: its end counts
            self._seq += 1
            events.append((min(held.end_us, self._window_end), _CHILD_END, self._seq, held))
        seq = self._seq = self._seq + 1
        events.append((lo, _CHILD_START, seq, interval))
        self._child_ends[interval.asset_id] = interval
        heapq.heappush(self._held_by_end, (end, seq, interval))
        self._sorted = False

    def _release_ends(self, hi: int) -> None:
        """Push the held end events that booking up to `hi` passes (an end at `hi` belongs to
        the next run, which may yet see the interval that follows it)."""
        ends, by_end = self._child_ends, self._held_by_end
        while by_end and by_end[0][0] < hi:
            end, _, held = heapq.heappop(by_end)
            if ends.get(held.asset_id) is held:
                del ends[held.asset_id]
                self._seq += 1
                self._events.append((end, _CHILD_END, self._seq, held))
                self._sorted = False

    def add_window(self, window: ExclusionWindow) -> None:
        if self.inputs is not None:
            self.inputs.append(window)
        if (window.reason in self.scope.rules.excluded_causes
                or window.reason == "scheduled_maintenance"):  # others have no effect
            self._push(window.start_us, window.end_us, _WINDOW_START, _WINDOW_END, window)

    def clone(self) -> UnitSweep:
        """An independent copy (for provisional totals that must not advance this one)."""
        twin = copy.copy(self)
        twin.inputs = None  # a provisional twin adds nothing
        twin._events = list(self._events)
        twin._child_losses = dict(self._child_losses)
        twin._rolled = dict(self._rolled)
        twin._excluding = dict(self._excluding)
        twin._child_ends = dict(self._child_ends)
        twin._held_by_end = list(self._held_by_end)
        twin.maintenance_used = dict(self.maintenance_used)
        return twin

    # -- booking -----------------------------------------------------------------------

    def run(self, to_us: int, out: dict[Any, Totals]) -> None:
        """Book `[booked_to, to_us)` (within the unit's window) into `out`.

        The hot loop of the flows and the batch command: state lives in locals while it runs
        (written back at the end) and each event is indexed once."""
        hi = min(to_us, self._window_end)
        t = self.booked_to
        if hi <= t:
            return
        if self._held_by_end and self._held_by_end[0][0] < hi:
            self._release_ends(hi)
        events = self._events
        if not self._sorted:
            events.sort()  # mostly sorted already: timsort makes this cheap
            self._sorted = True
        i, n = 0, len(events)
        scope = self.scope
        rules, rollup = scope.rules, scope.rollup
        rolled, under = self._rolled, rollup.under
        classify, child_loss = rules.classify_unit, rules.child_loss
        status_classes = scope.status_classes
        excluded_reasons = rules.excluded_causes
        allowance = scope.allowance_us
        maintenance_used = self.maintenance_used
        contract_year, locate = scope.contract_year, self.locate
        own, own_end = self._own, self._own_end
        losses = self._child_losses
        child_mean = self._child_mean
        excluding, excluding_reason = self._excluding, self._excluding_reason
        maintenance_n = self._maintenance_n
        label, kind, own_loss, why = self._class
        counted, maintenance = Kind.COUNTED, Kind.MAINTENANCE
        key, bucket_end = self._bucket
        year, year_end = self._year
        if t < bucket_end:  # still in the last run's bucket
            found = out.get(key)
            if found is None:
                found = out[key] = Totals()
            totals = found
        else:
            totals = Totals()  # never booked to: the first piece locates its bucket
        classes, by_loss = totals.class_us, totals.loss_us
        # Counted time of one class and loss, not yet added to `classes` and `by_loss`:
        # consecutive pieces (split by children's changes, or statuses of one class) add up
        # here first — two dict updates a piece were a sixth of the accumulator's time.
        run_label, run_loss, run_us = label, 0.0, 0
        next_at = events[0][0] if n else hi  # time of events[i]
        while True:  # t < hi here: events at `hi` belong to the next run
            own_changed = False
            if own is not None and own_end <= t:  # before the starts at t
                own = None
                own_changed = True
            if next_at <= t:  # then events[i] is one at t (next_at is `hi` past the last)
                children_before: dict[str, float] | None = None
                next_at = hi
                while i < n:
                    event = events[i]
                    if event[0] > t:
                        next_at = event[0]
                        break
                    i += 1
                    code, item = event[1], event[3]
                    if code == _OWN_START:
                        own, own_end = item, item.end_us
                        own_changed = True
                    elif code in (_CHILD_START, _CHILD_END):
                        asset_id = item.asset_id
                        if children_before is None:
                            children_before = {}
                        if asset_id not in children_before:
                            children_before[asset_id] = losses.get(asset_id, 0.0)
                        if code == _CHILD_START:
                            losses[asset_id] = child_loss(item)
                        else:
                            losses.pop(asset_id, None)
                    else:
                        step = 1 if code == _WINDOW_START else -1
                        reason = item.reason
                        if reason in excluded_reasons:
                            excluding[reason] = excluding.get(reason, 0) + step
                            excluding_reason = rules.first_excluding(excluding)
                        else:
                            maintenance_n += step
                        own_changed = True
                if children_before:
                    changed = False
                    for asset_id, before in children_before.items():
                        if losses.get(asset_id, 0.0) != before and asset_id in under:
                            rolled.pop(under[asset_id], None)
                            changed = True
                    if changed:
                        child_mean = rollup.children_loss(losses, rolled) if losses else 0.0
            if own_changed:
                if own is not None and excluding_reason is None and maintenance_n <= 0:
                    # The usual case: a status alone decides (memoised by its fields).
                    status = (own.state, own.cause, own.derate_fraction)
                    memo = status_classes.get(status)
                    if memo is None:
                        memo = status_classes[status] = classify(own, None, False)
                    label, kind, own_loss, why = memo
                else:
                    label, kind, own_loss, why = classify(own, excluding_reason,
                                                          maintenance_n > 0)
            loss = child_mean if child_mean > own_loss and kind is counted else own_loss
            # Book [t, t_next), split at bucket and contract-year ends.
            t_next = next_at if next_at < hi else hi
            if own is not None and own_end < t_next:
                t_next = own_end
            if kind is counted and t_next <= bucket_end and t_next <= year_end:
                # One piece of counted time inside the bucket and year (the usual case).
                us = t_next - t
                totals.window_us += us
                if label != run_label or loss != run_loss:
                    _book_counted(classes, by_loss, run_label, run_loss, run_us)
                    run_label, run_loss, run_us = label, loss, 0
                run_us += us
                t = t_next
                if t >= hi:
                    break
                continue
            _book_counted(classes, by_loss, run_label, run_loss, run_us)  # before any switch
            run_us = 0
            a = t
            while a < t_next:
                if a >= bucket_end:
                    key, bucket_end = locate(a)
                    found = out.get(key)
                    if found is None:
                        found = out[key] = Totals()
                    totals = found
                    classes, by_loss = totals.class_us, totals.loss_us
                if a >= year_end:
                    year, year_end = contract_year(a)
                b = t_next if t_next < bucket_end else bucket_end
                if year_end < b:
                    b = year_end
                us = b - a
                totals.window_us += us
                if kind is counted:
                    classes[label] = classes.get(label, 0) + us
                    by_loss[loss] = by_loss.get(loss, 0) + us
                elif kind is maintenance:
                    used = maintenance_used.get(year, 0)
                    take = min(us, max(0, allowance - used))
                    maintenance_used[year] = used + take
                    totals.excluded_us += take
                    classes["maintenance"] = classes.get("maintenance", 0) + take
                    if take:
                        by_year = totals.allowance_used_us
                        by_year[year] = by_year.get(year, 0) + take
                    if us > take:
                        by_loss[1.0] = by_loss.get(1.0, 0) + us - take
                        classes[OVER_ALLOWANCE] = classes.get(OVER_ALLOWANCE, 0) + us - take
                else:
                    classes[label] = classes.get(label, 0) + us
                    totals.excluded_us += us
                    excluded_by = totals.excluded_by
                    excluded_by[why] = excluded_by.get(why, 0) + us
                a = b
            t = t_next
            if t >= hi:
                break
        _book_counted(classes, by_loss, run_label, run_loss, run_us)
        del events[:i]  # what is left stays sorted
        self._own, self._own_end, self._child_mean = own, own_end, child_mean
        self._excluding_reason, self._maintenance_n = excluding_reason, maintenance_n
        self._class = (label, kind, own_loss, why)
        self._bucket, self._year = (key, bucket_end), (year, year_end)
        self.booked_to = hi


def _book_counted(classes: dict[str, int], by_loss: dict[float, int], label: str,
                  loss: float, us: int) -> None:
    if us:
        classes[label] = classes.get(label, 0) + us
        by_loss[loss] = by_loss.get(loss, 0) + us


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
