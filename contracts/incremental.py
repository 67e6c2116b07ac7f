"""The contract engine in incremental form, for the flows: status intervals and exclusion
windows are taken as they arrive — in any order within the allowed lateness — and time is
booked exactly as the batch evaluation books it (same sweep, same exact sums), so finalized
periods give the batch numbers to the last digit.

Time before the watermark (newest status interval start seen, minus the allowed lateness) is
final: every interval that could still cover it has arrived. An interval or window starting
before the watermark is late and refused (`LateInput`), never silently booked. Time is booked
per site-local day within each measurement period, so rolling windows of whole days (today,
trailing 7 and 30 days) can be summed too. The early warning's trailing week (availability rules §6)
is exactly the last 7 × 24 hours, not whole days: the day it starts in is booked again from the
inputs kept for the last days (`KEEP_INPUTS_US`), from that day's start to the week's."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mypy_extensions import mypyc_attr

from contracts.contract import Contract
from contracts.engine import (
    ContractContext,
    PeriodResult,
    UnitResult,
    contract_availability,
    settle,
    unit_weight,
)
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.ledger import Totals, UnitSweep
from contracts.money import YearLedger
from contracts.native import restore, state_of
from contracts.periods import US_PER_HOUR, LocalDays, Period

# A bucket: (measurement period label, start of the site-local day), both inside the period.
Bucket = tuple[str, int]
Input = StatusInterval | ExclusionWindow

WEEK_US = 7 * 24 * US_PER_HOUR  # the early warning's trailing window (availability rules §6)
# Inputs kept behind the final watermark, to book part of a day again: the trailing week, the
# day it starts in (25 hours at most), and a day's margin for a clock ahead of event time.
KEEP_INPUTS_US = 9 * 24 * US_PER_HOUR


class LateInput(ValueError):
    """An interval or window that starts in time already booked as final."""


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class ContractAccumulator:
    """All units of one contract's site. Feed `add` / `add_window`; read `evaluate` for
    finalized periods and `totals` / `project` for open ones."""

    def __init__(self, fleet: Fleet, contract: Contract, *, allowed_lateness_us: int,
                 start_us: int | None = None) -> None:
        self.ctx = ContractContext(fleet, contract)
        self.lateness = allowed_lateness_us
        start = self.ctx.calendar.start_us if start_us is None else start_us
        self.units = {uid: UnitSweep(scope, self.locate, start, keep_inputs=True)
                      for uid, scope in self.ctx.scopes.items()}
        self.booked: dict[str, dict[Bucket, Totals]] = {uid: {} for uid in self.units}
        self.newest_start_us: int | None = None
        self.start_us = self.frontier_us = start
        # Each unit's inputs of the last days (to book part of a day again, `_rebook`); every
        # input covering time from `kept_from_us` on is among them.
        self.kept: dict[str, list[Input]] = {}
        for uid, unit in self.units.items():
            assert unit.inputs is not None
            self.kept[uid] = unit.inputs
        self.kept_from_us = start
        self._prune_at = 4096
        # Days before this were summed into one bucket per period (`forget_before`).
        self.forgotten_before_us: int | None = None
        self._route = self._routes()
        self._days = LocalDays(self.ctx.site.tz)
        # locate's caches: the current period and site-local day
        self._period = Period("", self.ctx.contract.measurement_period, 0, 0)
        self._day = (0, 0)

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        if "_days" not in restore(self, state):  # a recovery snapshot from before them
            self._days = LocalDays(self.ctx.site.tz)
        self._route = self._routes()  # (older snapshots held bound methods)

    def _routes(self) -> dict[str, tuple[UnitSweep, bool]]:
        """Where each asset's intervals go: its unit, and whether as the unit's own."""
        return {asset.id: (self.units[asset.unit_id], asset.kind == "unit")
                for asset in self.ctx.fleet.assets.values()
                if asset.site_id == self.ctx.site.id and asset.unit_id is not None}

    # -- input -------------------------------------------------------------------------

    def add(self, interval: StatusInterval) -> None:
        """Take a status interval of any asset (others' sites are ignored,
        availability rules §2)."""
        route = self._route.get(interval.asset_id)
        if route is None:
            return
        start = interval.start_us
        if start < self.frontier_us:  # the frontier is never before the start: the rare case
            if interval.end_us <= self.start_us:
                return
            self._check_on_time(start, f"interval of {interval.asset_id}")
        unit, own = route
        if own:
            unit.add_own(interval)
        else:
            unit.add_child(interval)
        newest = self.newest_start_us
        if newest is None or start > newest:
            self.newest_start_us = start

    def add_window(self, window: ExclusionWindow) -> None:
        site = self.ctx.site.id
        if ((window.scope_id != site and window.scope_id not in self.units)
                or window.end_us <= self.start_us):
            return
        self._check_on_time(window.start_us, f"exclusion window of {window.scope_id}")
        for uid, unit in self.units.items():
            if window.scope_id in (site, uid):
                unit.add_window(window)
        # Windows are planned ahead (maintenance, curtailment): they do not move event time.

    def _check_on_time(self, start_us: int, what: str) -> None:
        """Late: it covers time already booked as final (before the accumulator's start is
        out of scope, not late)."""
        if max(start_us, self.start_us) < self.frontier_us:
            raise LateInput(f"{what} starts {start_us} µs, before the final watermark "
                            f"{self.frontier_us} µs")

    @property
    def watermark_us(self) -> int:
        if self.newest_start_us is None:
            return self.frontier_us
        return max(self.frontier_us, self.newest_start_us - self.lateness)

    def advance(self, to_us: int | None = None) -> None:
        """Book final time up to the watermark (or `to_us`, when a caller knows more, e.g.
        at the end of a replay)."""
        target = self.watermark_us if to_us is None else max(to_us, self.frontier_us)
        for uid, unit in self.units.items():
            unit.run(target, self.booked[uid])
        self.frontier_us = target
        self._prune_kept()

    def _prune_kept(self) -> None:
        """Drop kept inputs that ended `KEEP_INPUTS_US` before the frontier — once their
        number doubled, so that pruning costs O(1) per input."""
        kept = self.kept
        if sum(len(items) for items in kept.values()) < self._prune_at:
            return
        horizon = self.frontier_us - KEEP_INPUTS_US
        for items in kept.values():
            items[:] = [x for x in items if x.end_us > horizon]  # in place: the sweep's list
        self.kept_from_us = max(self.kept_from_us, horizon)
        self._prune_at = max(4096, 2 * sum(len(items) for items in kept.values()))

    # -- buckets -----------------------------------------------------------------------

    def locate(self, us: int) -> tuple[Bucket, int]:
        """The bucket of an instant: its period and its site-local day."""
        period = self._period
        if not period.start_us <= us < period.end_us:
            period = self._period = self.ctx.calendar.containing(
                us, self.ctx.contract.measurement_period)
        day_start, day_end = self._day
        if not day_start <= us < day_end:
            day_start, day_end = self._day = self._day_bounds(us)
        return (period.label, day_start), min(period.end_us, day_end)

    def _day_bounds(self, us: int) -> tuple[int, int]:
        """The site-local day containing the instant (23, 24 or 25 hours long)."""
        return self._days.bounds(us)

    # -- output ------------------------------------------------------------------------

    def view(self, until_us: int | None = None) -> View:
        """Every unit's booked days: final, plus provisional up to `until_us`."""
        buckets: dict[str, list[dict[Bucket, Totals]]] = {}
        used: dict[str, dict[int, int]] = {}
        for uid, unit in self.units.items():
            sources = [self.booked[uid]]
            used[uid] = dict(unit.maintenance_used)
            if until_us is not None and until_us > unit.booked_to:
                provisional: dict[Bucket, Totals] = {}  # not final: inputs may still arrive
                twin = unit.clone()
                twin.run(until_us, provisional)
                sources.append(provisional)
                used[uid] = twin.maintenance_used
            buckets[uid] = sources
        booked_to = self.frontier_us if until_us is None else max(until_us, self.frontier_us)
        return View(buckets, until_us, booked_to, used, self.forgotten_before_us)

    def totals(self, label: str | None, *, until_us: int | None = None,
               since_us: int | None = None) -> dict[str, Totals]:
        """Each unit's time in period `label` (any period: None): final, plus provisional
        up to `until_us`; only the site-local days starting at or after `since_us`."""
        return self.view(until_us).totals(label, since_us)

    def forget_before(self, us: int) -> None:
        """Memory of a long-running flow: the final days before `us` are summed into one
        bucket per measurement period. Periods keep their exact totals — so LD caps, which
        need every earlier period of the contract year, and `evaluate` stay as the batch
        gives them — but single days before `us` can no longer be read: reads that need one
        (a window of days starting before `us`, the day a trailing week starts in) refuse."""
        if us > self.frontier_us:
            raise ValueError(f"cannot forget before {us} µs: time is final only up to "
                             f"{self.frontier_us} µs")
        cal, kind = self.ctx.calendar, self.ctx.contract.measurement_period
        starts: dict[str, int] = {}
        for booked in self.booked.values():
            for bucket in [b for b in booked if b[1] < us]:
                label = bucket[0]
                if label not in starts:
                    starts[label] = cal.parse(label, kind).start_us
                merged = (label, starts[label])
                totals = booked.pop(bucket)
                if merged in booked:
                    booked[merged].add(totals)
                else:
                    booked[merged] = totals
        self.forgotten_before_us = max(us, self.forgotten_before_us or us)

    def evaluate(self, labels: Sequence[str]) -> list[PeriodResult]:
        """Periods whose time is final, as the batch evaluation gives them, in the order
        asked. Labels need not be consecutive nor of one contract year: LD caps are settled
        over every period from the start of each one's contract year, asked or not (settling
        only the asked ones would let a skipped period's LD escape the cap)."""
        cal = self.ctx.calendar
        kind = self.ctx.contract.measurement_period
        wanted = [cal.parse(label, kind) for label in labels]
        for period in wanted:
            if period.end_us > self.frontier_us:
                raise ValueError(f"period {period.label} is not final yet")
        needed = {p.label: p for w in wanted for p in (*cal.preceding_in_year(w), w)}
        sequence = sorted(needed.values(), key=lambda p: p.start_us)
        view = self.view()
        cache = {p.label: view.totals(p.label) for p in sequence}
        results = {r.period.label: r for r in settle(
            self.ctx, sequence, lambda uid, label: cache[label][uid])}
        return [results[p.label] for p in wanted]

    def project(self, period: Period, now_us: int, view: View | None = None) -> Projection:
        """Availability rules §6 for an open period: period-end availability if the rest of the
        period runs at the loss rate of the trailing week — exactly [now − 7 × 24 h, now), clipped
        to the period's start ("or of the period so far, if shorter") — the warning level,
        and the LD that would cost given what the contract year has already charged.

        Without data the projection does not guess. A trailing week with no counted time
        (all excluded) takes the loss rate of the period so far. A period with no counted
        time at all (its first instant; everything excluded) has no projection: `None`,
        level `ok` and no LD — a contract manager is warned of LD a trend makes likely, and
        with no trend there is none; the data-quality alerts report missing data. `view`,
        when given, must be `self.view(now_us)`."""
        ctx = self.ctx
        contract = ctx.contract
        weights = {u.id: unit_weight(contract, u) for u in ctx.site.units}

        def units(totals: dict[str, Totals]) -> list[UnitResult]:
            return [UnitResult(uid, weights[uid], t) for uid, t in totals.items()]

        view = view or self.view(now_us)
        if view.until_us != now_us:
            raise ValueError(f"the view shows time up to {view.until_us}, not now ({now_us})")
        so_far = units(view.totals(period.label))
        lo, hi = max(period.start_us, now_us - WEEK_US), min(now_us, period.end_us)
        trailing = contract_availability(units(self.window_totals(period.label, lo, hi, view)))
        if trailing is None:
            trailing = contract_availability(so_far)
        rate = None if trailing is None else 1.0 - trailing
        # The rest of the period: each unit's remaining window, weighted, at that rate.
        rest = math.fsum(
            weights[u.id] * max(0, min(ctx.scopes[u.id].window[1], period.end_us)
                                - max(ctx.scopes[u.id].window[0], now_us))
            for u in ctx.site.units)
        counted = math.fsum(u.weight * u.totals.counted_us for u in so_far)
        lost = math.fsum(u.weight * u.totals.lost_us for u in so_far)
        projected = None
        if rate is not None and counted + rest > 0:
            projected = 1.0 - (lost + rate * rest) / (counted + rest)

        year = ctx.calendar.period_year(period)
        ledger = YearLedger(contract)
        for earlier in ctx.calendar.preceding_in_year(period):
            ledger.settle(year, contract_availability(units(view.totals(earlier.label))))
        ld, _ = ledger.settle(year, projected)
        guaranteed = contract.guaranteed_pct(year)
        return Projection(period.label, now_us, contract_availability(so_far), rate, projected,
                          guaranteed, warning_level(projected, guaranteed,
                                                    contract.early_warning_margin_pct),
                          ld.amount)

    def window_totals(self, label: str, lo_us: int, hi_us: int, view: View
                      ) -> dict[str, Totals]:
        """Each unit's time in `[lo_us, hi_us)` of period `label`, exact to the microsecond
        (`view` must reach `hi_us`)."""
        if hi_us > view.booked_to:
            raise ValueError(f"the view ends at {view.booked_to} µs, before {hi_us} µs")
        return {uid: self._exact(uid, label, lo_us, hi_us, view) for uid in self.units}

    def _exact(self, uid: str, label: str, lo: int, hi: int, view: View) -> Totals:
        """A unit's time in `[lo, hi)` of period `label`, to the microsecond: the days it
        covers whole from their buckets, a day it covers in part booked again."""
        total = Totals()
        if hi <= lo:
            return total
        day_start, day_end = self._day_bounds(lo)
        if self.forgotten_before_us is not None and day_start < self.forgotten_before_us:
            raise ValueError(f"the days from {day_start} µs on are needed, but the days "
                             f"before {self.forgotten_before_us} µs were forgotten "
                             "(forget_before)")
        while day_start < hi:
            a, b = max(day_start, lo), min(day_end, hi, view.booked_to)
            # What the bucket holds: the day's time that was booked at all.
            held = (max(day_start, self.start_us), min(day_end, view.booked_to))
            if a <= held[0] and b >= held[1]:
                for source in view.sources[uid]:
                    found = source.get((label, day_start))
                    if found is not None:
                        total.add(found)
            elif b > a:
                total.add(self._rebook(uid, day_start, a, b, view))
            day_start, day_end = self._day_bounds(day_end)
        return total

    def _rebook(self, uid: str, day_start: int, lo: int, hi: int, view: View) -> Totals:
        """`[lo, hi)`, part of the day starting at `day_start`, booked again from the kept
        inputs by a sweep from the day's start. The sweep starts with the maintenance
        allowance the unit had used by the day's start — what it has used by the end of
        the view less what the view's days from `day_start` on took of it — so
        maintenance is excluded or lost exactly as it was."""
        start = max(day_start, self.start_us)
        if start < self.kept_from_us:
            raise ValueError(f"the day starting {day_start} µs can no longer be booked again: "
                             f"inputs are kept from {self.kept_from_us} µs (KEEP_INPUTS_US)")
        cal = self.ctx.calendar
        year = cal.contract_year(day_start)
        if year is None:  # outside the term: no unit's window
            return Totals()
        used_since = sum(t.allowance_used_us.get(year, 0) for source in view.sources[uid]
                         for (_, day), t in source.items() if day >= day_start)
        sweep = UnitSweep(self.ctx.scopes[uid], _one_bucket, start)
        sweep.maintenance_used[year] = view.maintenance_used[uid].get(year, 0) - used_since
        for item in self.kept[uid]:
            if item.end_us > start and item.start_us < hi:
                sweep.add(item)
        sweep.run(lo, {})
        out: dict[Hashable, Totals] = {}
        sweep.run(hi, out)
        return out.get(None, Totals())


def _one_bucket(_: int) -> tuple[Hashable, int]:
    """Every instant in one bucket (a sweep over part of a day)."""
    return None, 1 << 62


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(frozen=True)
class View:
    """Booked days of every unit at one moment, to sum any window of whole days from:
    final time, plus provisional time up to `until_us` (None: final only). `booked_to` is
    where booked time ends; `maintenance_used` is each unit's allowance used there, per
    contract year."""

    sources: dict[str, list[dict[Bucket, Totals]]]
    until_us: int | None
    booked_to: int
    maintenance_used: dict[str, dict[int, int]]
    forgotten_before_us: int | None

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)

    def _check(self, since_us: int | None) -> None:
        """Days before `forget_before`'s horizon are summed per period: no window of days
        may start before it."""
        horizon = self.forgotten_before_us
        if horizon is not None and since_us is not None and since_us < horizon:
            raise ValueError(f"days before {horizon} µs were forgotten (forget_before); "
                             f"a window from {since_us} µs cannot be summed")

    def totals(self, label: str | None = None, since_us: int | None = None
               ) -> dict[str, Totals]:
        """Each unit's time in period `label` (any: None), in the site-local days starting
        at or after `since_us`."""
        self._check(since_us)
        out = {}
        for uid, sources in self.sources.items():
            total = Totals()
            for source in sources:
                for (period_label, day), t in source.items():
                    if ((label is None or period_label == label)
                            and (since_us is None or day >= since_us)):
                        total.add(t)
            out[uid] = total
        return out

    def day(self, day_start_us: int) -> dict[str, Totals]:
        """Each unit's time in one site-local day (of whatever periods it belongs to)."""
        self._check(day_start_us)
        out = {}
        for uid, sources in self.sources.items():
            total = Totals()
            for source in sources:
                for (_, day), t in source.items():
                    if day == day_start_us:
                        total.add(t)
            out[uid] = total
        return out


def warning_level(projected: float | None, guaranteed_pct: float, margin_pct: float) -> str:
    """ok when projected ≥ G + margin, watch when G ≤ projected < G + margin, ld_risk below G
    (availability rules §6). No projection yet: ok."""
    if projected is None:
        return "ok"
    pct = 100.0 * projected
    if pct >= guaranteed_pct + margin_pct:
        return "ok"
    return "watch" if pct >= guaranteed_pct else "ld_risk"


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(frozen=True)
class Projection:
    period: str
    now_us: int
    availability_so_far: float | None
    trailing_loss_rate: float | None
    projected_availability: float | None
    guaranteed_pct: float
    level: str  # ok | watch | ld_risk
    projected_ld: Decimal

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)
