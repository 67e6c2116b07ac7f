"""The contract engine in incremental form, for the flows: status intervals and exclusion
windows are taken as they arrive — in any order within the allowed lateness — and time is
booked exactly as the batch evaluation books it (same sweep, same exact sums), so finalized
periods give the batch numbers to the last digit.

Time before the watermark (newest status interval start seen, minus the allowed lateness) is
final: every interval that could still cover it has arrived. An interval or window starting before
the watermark is late and refused (`LateInput`), never silently booked. Time is booked per
site-local day within each measurement period, so rolling windows of whole days (today,
trailing 7 and 30 days) can be summed too."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

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
from contracts.periods import Period, from_us, local_midnight_us

# A bucket: (measurement period label, start of the site-local day), both inside the period.
Bucket = tuple[str, int]


class LateInput(ValueError):
    """An interval or window that starts in time already booked as final."""


class ContractAccumulator:
    """All units of one contract's site. Feed `add` / `add_window`; read `evaluate` for
    finalized periods and `so_far` / `project` for open ones."""

    def __init__(self, fleet: Fleet, contract: Contract, *, allowed_lateness_us: int,
                 start_us: int | None = None) -> None:
        self.ctx = ContractContext(fleet, contract)
        self.lateness = allowed_lateness_us
        start = self.ctx.calendar.start_us if start_us is None else start_us
        self.units = {uid: UnitSweep(scope, self.locate, start)
                      for uid, scope in self.ctx.scopes.items()}
        self.booked: dict[str, dict[Bucket, Totals]] = {uid: {} for uid in self.units}
        self.newest_start_us: int | None = None
        self.start_us = self.frontier_us = start
        # Where each asset's intervals go: to its unit as its own, or as a child's.
        self._route: dict[str, Callable[[StatusInterval], None]] = {}
        for asset in self.ctx.fleet.assets.values():
            if asset.site_id == self.ctx.site.id and asset.unit_id is not None:
                unit = self.units[asset.unit_id]
                self._route[asset.id] = unit.add_own if asset.kind == "unit" else unit.add_child
        self._tz = self.ctx.site.tz
        # locate's caches: the current period and site-local day
        self._period = Period("", self.ctx.contract.measurement_period, 0, 0)
        self._day = (0, 0)

    # -- input -------------------------------------------------------------------------

    def add(self, interval: StatusInterval) -> None:
        """Take a status interval of any asset (others' sites are ignored, spec §2)."""
        route = self._route.get(interval.asset_id)
        if route is None or interval.end_us <= self.start_us:
            return
        start = interval.start_us
        if start < self.frontier_us:
            self._check_on_time(start, f"interval of {interval.asset_id}")
        route(interval)
        if self.newest_start_us is None or start > self.newest_start_us:
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

    # -- buckets -----------------------------------------------------------------------

    def locate(self, us: int) -> tuple[Bucket, int]:
        """The bucket of an instant: its period and its site-local day."""
        period = self._period
        if not period.start_us <= us < period.end_us:
            period = self._period = self.ctx.calendar.containing(
                us, self.ctx.contract.measurement_period)
        day_start, day_end = self._day
        if not day_start <= us < day_end:
            today = from_us(us, self._tz).date()
            day_start = local_midnight_us(today, self._tz)
            day_end = local_midnight_us(today + dt.timedelta(days=1), self._tz)
            self._day = day_start, day_end
        return (period.label, day_start), min(period.end_us, day_end)

    # -- output ------------------------------------------------------------------------

    def view(self, until_us: int | None = None) -> View:
        """Every unit's booked days: final, plus provisional up to `until_us`."""
        buckets: dict[str, list[dict[Bucket, Totals]]] = {}
        for uid, unit in self.units.items():
            sources = [self.booked[uid]]
            if until_us is not None and until_us > unit.booked_to:
                provisional: dict[Bucket, Totals] = {}  # not final: inputs may still arrive
                unit.clone().run(until_us, provisional)
                sources.append(provisional)
            buckets[uid] = sources
        return View(buckets)

    def totals(self, label: str | None, *, until_us: int | None = None,
               since_us: int | None = None) -> dict[str, Totals]:
        """Each unit's time in period `label` (any period: None): final, plus provisional
        up to `until_us`; only the site-local days starting at or after `since_us`."""
        return self.view(until_us).totals(label, since_us)

    def forget_before(self, us: int) -> None:
        """Drop final day buckets that start before `us` (memory of a long-running flow;
        keep at least the contract year and 30 days that the windows read)."""
        for booked in self.booked.values():
            for bucket in [b for b in booked if b[1] < us]:
                del booked[bucket]

    def evaluate(self, labels: Sequence[str]) -> list[PeriodResult]:
        """Periods whose time is final, as the batch evaluation gives them (LD caps settled
        from the first period of each one's contract year)."""
        cal = self.ctx.calendar
        kind = self.ctx.contract.measurement_period
        wanted = [cal.parse(label, kind) for label in labels]
        for period in wanted:
            if period.end_us > self.frontier_us:
                raise ValueError(f"period {period.label} is not final yet")
        sequence = _with_preceding(cal.preceding_in_year(wanted[0]), wanted)
        cache = {p.label: self.totals(p.label) for p in sequence}
        results = settle(self.ctx, sequence, lambda uid, label: cache[label][uid])
        keep = {p.label for p in wanted}
        return [r for r in results if r.period.label in keep]

    def project(self, period: Period, now_us: int, view: View | None = None) -> Projection:
        """Spec §6 for an open period: period-end availability if the rest runs at the loss
        rate of the trailing 7 days (whole site-local days, plus today so far; or the period
        so far, if shorter), the warning level, and the LD that would cost given what the
        contract year has already charged."""
        ctx = self.ctx
        contract = ctx.contract
        weights = {u.id: unit_weight(contract, u) for u in ctx.site.units}

        def units(totals: dict[str, Totals]) -> list[UnitResult]:
            return [UnitResult(uid, weights[uid], t) for uid, t in totals.items()]

        view = view or self.view(now_us)
        so_far = units(view.totals(period.label))
        # The trailing 7 days in whole site-local days: the 7 days before today, and today.
        week_ago = from_us(now_us, self._tz).date() - dt.timedelta(days=7)
        since = max(period.start_us, local_midnight_us(week_ago, self._tz))
        trailing = contract_availability(
            units(view.totals(period.label, since)))
        rate = None if trailing is None else 1.0 - trailing
        # The rest of the period: each unit's remaining window, weighted, at that rate.
        rest = math.fsum(
            weights[u.id] * max(0, min(ctx.scopes[u.id].window[1], period.end_us)
                                - max(ctx.scopes[u.id].window[0], now_us))
            for u in ctx.site.units)
        counted = math.fsum(u.weight * u.totals.counted_us for u in so_far)
        lost = math.fsum(u.weight * u.totals.lost_us for u in so_far)
        projected = None
        if counted + rest > 0:
            projected = 1.0 - (lost + (rate or 0.0) * rest) / (counted + rest)

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


@dataclass(frozen=True)
class View:
    """Booked days of every unit at one moment, to sum any window of whole days from."""

    sources: dict[str, list[dict[Bucket, Totals]]]

    def totals(self, label: str | None = None, since_us: int | None = None
               ) -> dict[str, Totals]:
        """Each unit's time in period `label` (any: None), in the site-local days starting
        at or after `since_us`."""
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
        out = {}
        for uid, sources in self.sources.items():
            total = Totals()
            for source in sources:
                for (_, day), t in source.items():
                    if day == day_start_us:
                        total.add(t)
            out[uid] = total
        return out


def _with_preceding(preceding: Iterable[Period], wanted: Sequence[Period]) -> list[Period]:
    seen = {p.label for p in wanted}
    return [*(p for p in preceding if p.label not in seen), *wanted]


def warning_level(projected: float | None, guaranteed_pct: float, margin_pct: float) -> str:
    """ok when projected ≥ G + margin, watch when G ≤ projected < G + margin, ld_risk below G
    (spec §6). No projection yet: ok."""
    if projected is None:
        return "ok"
    pct = 100.0 * projected
    if pct >= guaranteed_pct + margin_pct:
        return "ok"
    return "watch" if pct >= guaranteed_pct else "ld_risk"


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
