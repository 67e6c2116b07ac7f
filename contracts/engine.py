"""Batch evaluation of a contract over periods (availability rules §2-5, §7): status intervals and
exclusion windows in, availability, LD and bonus per measurement period out."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from contracts.contract import Contract
from contracts.errors import InvalidInput
from contracts.fleet import Fleet, Site, Unit
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.ledger import Totals, UnitScope, sweep
from contracts.money import Charge, YearLedger
from contracts.periods import ContractCalendar, Period, PeriodError, local_midnight_us
from contracts.rules import Rules


@dataclass(frozen=True)
class UnitResult:
    asset_id: str
    weight: float
    totals: Totals

    @property
    def availability(self) -> float | None:
        return self.totals.availability


@dataclass(frozen=True)
class PeriodResult:
    period: Period
    contract_year: int
    availability: float | None  # A, 0..1, full precision
    guaranteed_pct: float
    ld: Charge
    bonus: Charge
    units: tuple[UnitResult, ...]

    @property
    def shortfall_pct(self) -> float | None:
        if self.availability is None:
            return None
        return max(0.0, self.guaranteed_pct - 100.0 * self.availability)


@dataclass(frozen=True)
class AllowanceUse:
    """A unit's maintenance allowance in one contract year a period touches (availability rules §3
    rule 2), for reports: used in that year before the period, used in the period, and left —
    so a customer can see why maintenance was excluded or lost."""

    contract_year: int
    allowance_us: int
    before_us: int
    in_period_us: int

    @property
    def remaining_us(self) -> int:
        return self.allowance_us - self.before_us - self.in_period_us


@dataclass(frozen=True)
class Evaluation:
    contract: Contract
    site: Site
    calendar: ContractCalendar
    periods: tuple[PeriodResult, ...]
    # (period label, unit id) → the allowance in each contract year the period touches
    allowance: Mapping[tuple[str, str], tuple[AllowanceUse, ...]]
    # When monitoring began, if after the start of the first period's contract year: time
    # before it is no data — neither counted nor lost (`evaluate`'s `monitored_from_us`).
    monitored_from_us: int | None = None


def unit_weight(contract: Contract, unit: Unit) -> float:
    weight = contract.availability.weight
    return 1.0 if weight == "equal" else (
        unit.rated_power_kw if weight == "power" else unit.rated_energy_kwh)


def contract_availability(units: Sequence[UnitResult]) -> float | None:
    """A = 1 − Σ w·L / Σ w·(T − E) over the units (availability rules §4); None when nothing
    counts."""
    counted = math.fsum(u.weight * u.totals.counted_us for u in units)
    if counted == 0:
        return None
    return 1.0 - math.fsum(u.weight * u.totals.lost_us for u in units) / counted


class ContractContext:
    """A contract bound to its site: calendar, rules and each unit's window and scope."""

    def __init__(self, fleet: Fleet, contract: Contract, source: str = "<contract>") -> None:
        try:
            self.site = fleet.site(contract.site)
        except KeyError:
            raise InvalidInput(source, "site", f"site {contract.site!r} is not in the fleet"
                               ) from None
        self.fleet = fleet
        self.contract = contract
        self.calendar = ContractCalendar(contract.start, contract.term_years, self.site.tz)
        self.rules = Rules.of(contract)
        self.scopes = {u.id: self._scope(u) for u in self.site.units}

    def _scope(self, unit: Unit) -> UnitScope:
        cal = self.calendar
        start = max(cal.start_us, local_midnight_us(unit.commissioned, self.site.tz))
        return UnitScope(unit.id, (start, cal.end_us), self.fleet.assets, self.rules,
                         self.contract.maintenance_allowance_us, self._year_of)

    def _year_of(self, us: int) -> tuple[int, int]:
        year = self.calendar.contract_year(us)
        if year is None:  # never: units' windows lie within the term
            raise ValueError("instant outside the contract term")
        return year, self.calendar.year_bounds(year)[1]

    def split(self, intervals: Sequence[StatusInterval], exclusions: Sequence[ExclusionWindow]
              ) -> dict[str, tuple[list[StatusInterval], list[StatusInterval],
                                   list[ExclusionWindow]]]:
        """Per unit of the site: (own intervals, children's intervals, windows covering it).
        Rows of other sites' assets are ignored (availability rules §2)."""
        assets = self.fleet.assets
        parts: dict[str, tuple[list[StatusInterval], list[StatusInterval],
                               list[ExclusionWindow]]] = {
            u.id: ([], [], []) for u in self.site.units}
        for iv in intervals:
            asset = assets[iv.asset_id]
            if asset.site_id != self.site.id or asset.unit_id is None:
                continue
            own, children, _ = parts[asset.unit_id]
            (own if asset.kind == "unit" else children).append(iv)
        for w in exclusions:
            if w.scope_id == self.site.id:
                for _, _, windows in parts.values():
                    windows.append(w)
            elif w.scope_id in parts:
                parts[w.scope_id][2].append(w)
        return parts


def evaluate(
    fleet: Fleet,
    contract: Contract,
    intervals: Sequence[StatusInterval],
    exclusions: Sequence[ExclusionWindow],
    period_text: str,
    *,
    contract_source: str = "<contract>",
    monitored_from_us: int | None = None,
    until_us: int | None = None,
) -> Evaluation:
    """Evaluate the periods of `period_text` (`2026-10`, `2026-01..2026-12`, `CY3`).

    Earlier periods of the first period's contract year are evaluated too (LD caps and the
    maintenance allowance run from the start of the contract year) but not returned.

    `monitored_from_us`: when the monitoring began (a live system's first record). Time
    before it is not booked at all — no data, neither available nor a data gap — so a
    period wholly before it has no availability and no LD ("no data"), and one it cuts
    counts from then on: what the live flows' accumulator does from its first poll. None
    (a batch evaluation of given intervals): every gap counts by the data-gap policy.
    `until_us`: the end of what is known (a live system's final time): a period it cuts is
    evaluated so far — its later part is the future, not a data gap."""
    ctx = ContractContext(fleet, contract, contract_source)
    cal = ctx.calendar
    try:
        asked = cal.parse_range(period_text, contract.measurement_period)
    except PeriodError as exc:
        raise InvalidInput("--period", "", str(exc)) from None
    first_year = cal.period_year(asked[0])
    periods = [*cal.preceding_in_year(asked[0]), *asked]
    sweep_from = min(cal.year_bounds(first_year)[0], periods[0].start_us)
    sweep_to = periods[-1].end_us if until_us is None else \
        max(min(periods[-1].end_us, until_us), sweep_from)
    monitored = monitored_from_us is not None and monitored_from_us > sweep_from
    if monitored_from_us is not None:
        sweep_from = min(max(sweep_from, monitored_from_us), sweep_to)

    booked: dict[str, dict[str, Totals]] = defaultdict(dict)  # unit → period label → totals
    starts: dict[str, int] = {}  # period label → start, of every period booked

    def locate(us: int) -> tuple[str, int]:
        period = cal.containing(us, contract.measurement_period)
        starts[period.label] = period.start_us
        return period.label, period.end_us

    for unit_id, (own, children, windows) in ctx.split(intervals, exclusions).items():
        sweep(ctx.scopes[unit_id], sweep_from, sweep_to, own, children, windows, locate,
              booked[unit_id])

    results = settle(ctx, periods, lambda unit_id, label: booked[unit_id].get(label, Totals()))
    allowance = {(p.label, u.id): _allowance_use(ctx, p, booked[u.id], starts)
                 for p in asked for u in ctx.site.units}
    return Evaluation(contract, ctx.site, cal, tuple(results[len(periods) - len(asked):]),
                      allowance, sweep_from if monitored else None)


def _allowance_use(ctx: ContractContext, period: Period, booked: Mapping[str, Totals],
                   starts: Mapping[str, int]) -> tuple[AllowanceUse, ...]:
    """The allowance of each contract year the period touches. Time is booked from the
    start of the first period's contract year, so every earlier use in these years is in
    `booked`: a later year of a range, or the second year of a period that spans two,
    starts inside the booked time."""
    cal = ctx.calendar
    first = cal.contract_year(max(period.start_us, cal.start_us))
    last = cal.contract_year(min(period.end_us, cal.end_us) - 1)
    if first is None or last is None:
        return ()
    this = booked.get(period.label, Totals())
    return tuple(
        AllowanceUse(year, ctx.contract.maintenance_allowance_us,
                     sum(t.allowance_used_us.get(year, 0) for label, t in booked.items()
                         if starts[label] < period.start_us),
                     this.allowance_used_us.get(year, 0))
        for year in range(first, last + 1))


def settle(ctx: ContractContext, periods: Sequence[Period],
           totals_of: Callable[[str, str], Totals]) -> list[PeriodResult]:
    """Availability, LD and bonus of consecutive periods that start a contract year's
    sequence (caps carry from one to the next), from each unit's booked time."""
    contract = ctx.contract
    ledger = YearLedger(contract)
    results: list[PeriodResult] = []
    for period in periods:
        year = ctx.calendar.period_year(period)
        units = tuple(UnitResult(u.id, unit_weight(contract, u), totals_of(u.id, period.label))
                      for u in ctx.site.units)
        availability = contract_availability(units)
        ld, bonus = ledger.settle(year, availability)
        results.append(PeriodResult(period, year, availability, contract.guaranteed_pct(year),
                                    ld, bonus, units))
    return results
