"""The compliance report of a contract's measurement periods: availability, hours by class per
unit, the exclusion windows and the liquidated damages (and bonus) computed step by step, so a
customer can check every number by hand (docs/availability-rules.md §3-5).

`build_report` turns an engine `Evaluation` into plain data, already rounded as printed
(half-up: percentages and hours to 3 decimals in the tables, money to 2). The computation of
availability and LD shows its hours and percentages to 6 decimals, every step from the same
full-precision values, so that `floor(shortfall / step)` can be redone by hand: at 3
decimals a shortfall of 0.5099996 would read 0.510 and floor to a step more than was
charged. The writers — `to_csv` (api/reports/csv.py), `to_xlsx` (xlsx.py) and `to_pdf`
(pdf.py) — only lay that data out, each table from the same column list below, so the formats
cannot disagree on a number. No generation time is written: the same input gives the same
report.

Every excluded hour is accounted for: the exclusion windows (site or unit, each with its
reason and effect), the time excluded per unit and why (through a window, through the cause
of a status row, or as missing data under `data_gap_policy: excluded`), and the maintenance
allowance per unit — used before the period in its contract year, used in the period, left."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from contracts.contract import Contract
from contracts.engine import Evaluation, PeriodResult
from contracts.intervals import ExclusionWindow
from contracts.ledger import OVER_ALLOWANCE
from contracts.money import Charge, round_half_up
from contracts.periods import US_PER_HOUR, from_us

# Hours by class of availability rules §3, in the order its rules apply; maintenance is split at the
# contract year's allowance (the part within it is excluded, the rest is lost).
CLASSES: tuple[tuple[str, str], ...] = (
    ("excluded", "Excluded"),
    ("maintenance", "Maintenance within allowance"),
    (OVER_ALLOWANCE, "Maintenance over allowance"),
    ("unknown", "Unknown (no data)"),
    ("unavailable", "Unavailable"),
    ("derated", "Derated"),
    ("available", "Available"),
)

EFFECT_EXCLUDED = "excluded (reason in excluded_causes)"
EFFECT_MAINTENANCE = "maintenance (counts against the allowance)"
EFFECT_NONE = "no effect (reason neither excluded nor scheduled_maintenance)"

WEIGHT_BASIS = {"equal": "equal (1 per unit)", "power": "rated power (kW)",
                "energy": "rated energy (kWh)"}
WEIGHTED_HOURS = "w·h"  # unit of w·L and w·(T − E)

NOTE = ("T = window hours, E = excluded hours, L = lost hours, w = unit weight. Computed at "
        "full precision; shown rounded half-up (in the tables percentages and hours to 3 "
        "decimals, in the computation to 6, money to 2), so a sum of shown figures may differ "
        "from the shown total in its last digit. The floor of the shortfall is taken of the "
        "unrounded value.")

THROUGH = {"window": "exclusion window", "status": "status row",
           "data_gap": "no data or unknown (data_gap_policy: excluded)"}


# -- the report as data ----------------------------------------------------------------------

@dataclass(frozen=True)
class ReportHeader:
    contract_id: str
    site_id: str
    site_name: str | None
    customer: str
    region: str
    timezone: str
    currency: str
    measurement_period: str
    unit_weight: str
    ld_terms: str
    bonus_terms: str
    periods: str  # the periods asked, as labels: `2026-10` or `2026-09..2026-10`

    def fields(self) -> tuple[tuple[str, str, str], ...]:
        """(CSV name, title, value) of each field, in the order every format shows them."""
        return (
            ("contract_id", "Contract", self.contract_id),
            ("site_id", "Site", self.site_id),
            ("site_name", "Site name", self.site_name or ""),
            ("customer", "Customer", self.customer),
            ("region", "Region", self.region),
            ("timezone", "Time zone", self.timezone),
            ("currency", "Currency", self.currency),
            ("measurement_period", "Measurement period", self.measurement_period),
            ("unit_weight", "Unit weight w", self.unit_weight),
            ("ld_terms", "Liquidated damages", self.ld_terms),
            ("bonus_terms", "Bonus", self.bonus_terms),
            ("periods", "Periods", self.periods),
        )


@dataclass(frozen=True)
class Summary:
    availability_pct: float | None  # None when no time of the period counts
    guaranteed_pct: float
    shortfall_pct: float | None
    ld: float
    bonus: float
    currency: str
    early_warning_margin_pct: float


@dataclass(frozen=True)
class UnitLine:
    asset_id: str
    weight: float
    window_hours: float
    class_hours: tuple[float, ...]  # in the order of CLASSES
    excluded_hours: float
    lost_hours: float
    availability_pct: float | None


@dataclass(frozen=True)
class ExclusionLine:
    scope_id: str
    start: str  # site-local ISO 8601
    end: str
    reason: str
    hours_in_period: float
    effect: str


Part = Literal["Availability", "LD", "Bonus"]


@dataclass(frozen=True)
class Step:
    """One line of the computation: what it is, its formula, the formula with the period's
    numbers written in, and the result."""

    part: Part
    quantity: str
    formula: str
    numbers: str
    value: float | None
    unit: str  # "%", "w·h" or the currency (money has 2 places, the rest 6)


@dataclass(frozen=True)
class ExcludedLine:
    """A unit's excluded time of one why (maintenance within the allowance is not here: it
    is in the allowance lines)."""

    asset_id: str
    through: str  # a THROUGH text
    cause: str  # the window's reason or the row's cause ("" for a gap)
    hours: float


@dataclass(frozen=True)
class AllowanceLine:
    asset_id: str
    contract_year: int
    allowance_hours: float
    used_before_hours: float  # in this contract year, before the period
    used_in_period_hours: float
    remaining_hours: float  # after the period


@dataclass(frozen=True)
class PeriodReport:
    label: str
    start: str  # site-local ISO 8601
    end: str
    contract_year: int
    summary: Summary
    units: tuple[UnitLine, ...]
    exclusions: tuple[ExclusionLine, ...]
    excluded: tuple[ExcludedLine, ...]
    allowance: tuple[AllowanceLine, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class ComplianceReport:
    header: ReportHeader
    periods: tuple[PeriodReport, ...]


# -- building it -----------------------------------------------------------------------------

P = 6  # decimals of hours and percentages in the computation


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else round_half_up(100.0 * fraction, 3)


def _pct6(fraction: float | None) -> float | None:
    return None if fraction is None else round_half_up(100.0 * fraction, P)


def _r3(value: float | Decimal) -> float:
    return round_half_up(value, 3)


def _r6(value: float | Decimal) -> float:
    return round_half_up(value, 6)


def _hours(us: float) -> float:
    return round_half_up(us / US_PER_HOUR, 3)


def _money(value: Decimal) -> float:
    return round_half_up(value, 2)


def fmt(value: float | Decimal | None, places: int) -> str:
    return "n/a" if value is None else f"{value:,.{places}f}"


def plain(value: float | Decimal) -> str:
    """A contract figure as written in the contract: 5000 → `5,000`, 0.01 → `0.01`."""
    text = f"{Decimal(repr(value)) if isinstance(value, float) else value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def build_report(evaluation: Evaluation, exclusions: Sequence[ExclusionWindow]
                 ) -> ComplianceReport:
    """The report of every period of `evaluation`; `exclusions` are the windows it was
    evaluated with (those of other sites, or outside a period, are left out)."""
    contract, site = evaluation.contract, evaluation.site
    labels = [p.period.label for p in evaluation.periods]
    header = ReportHeader(
        contract_id=contract.id, site_id=site.id, site_name=site.name,
        customer=site.customer, region=site.region, timezone=site.timezone,
        currency=contract.ld.currency,
        measurement_period=contract.measurement_period.replace("_", " "),
        unit_weight=WEIGHT_BASIS[contract.availability.weight],
        ld_terms=_ld_terms(contract), bonus_terms=_bonus_terms(contract),
        periods=labels[0] if len(labels) == 1 else f"{labels[0]}..{labels[-1]}")
    covering = {site.id, *(u.id for u in site.units)}
    windows = sorted((w for w in exclusions if w.scope_id in covering),
                     key=lambda w: (w.start_us, w.end_us, w.scope_id, w.reason))
    return ComplianceReport(header, tuple(_period(evaluation, p, windows)
                                          for p in evaluation.periods))


def _ld_terms(c: Contract) -> str:
    ld = c.ld
    return (f"{plain(ld.rate_per_pct)} {ld.currency} per % below the guarantee, in steps of "
            f"{plain(ld.step_pct)} %; cap {plain(ld.cap_per_contract_year)} {ld.currency} "
            "per contract year")


def _bonus_terms(c: Contract) -> str:
    if c.bonus is None:
        return "none"
    b = c.bonus
    return (f"{plain(b.rate_per_pct)} {c.ld.currency} per % above {plain(b.threshold_pct)} %,"
            f" in steps of {plain(c.ld.step_pct)} %; cap {plain(b.cap_per_contract_year)} "
            f"{c.ld.currency} per contract year")


def _period(ev: Evaluation, p: PeriodResult, windows: Sequence[ExclusionWindow]
            ) -> PeriodReport:
    tz = ev.calendar.tz
    contract = ev.contract
    shortfall = p.shortfall_pct
    summary = Summary(
        availability_pct=_pct(p.availability), guaranteed_pct=p.guaranteed_pct,
        shortfall_pct=None if shortfall is None else _r3(shortfall),
        ld=_money(p.ld.amount), bonus=_money(p.bonus.amount), currency=contract.ld.currency,
        early_warning_margin_pct=contract.early_warning_margin_pct)
    units = tuple(
        UnitLine(u.asset_id, u.weight, _hours(u.totals.window_us),
                 tuple(_hours(u.totals.class_us.get(key, 0)) for key, _ in CLASSES),
                 _hours(u.totals.excluded_us), _hours(u.totals.lost_us), _pct(u.availability))
        for u in p.units)
    excluded_causes = set(contract.availability.excluded_causes)
    lines: list[ExclusionLine] = []
    lo, hi = p.period.start_us, p.period.end_us
    for w in windows:
        if w.end_us <= lo or w.start_us >= hi:
            continue
        effect = (EFFECT_EXCLUDED if w.reason in excluded_causes else
                  EFFECT_MAINTENANCE if w.reason == "scheduled_maintenance" else EFFECT_NONE)
        lines.append(ExclusionLine(
            w.scope_id, from_us(w.start_us, tz).isoformat(), from_us(w.end_us, tz).isoformat(),
            w.reason, _hours(min(w.end_us, hi) - max(w.start_us, lo)), effect))
    order = {key: i for i, key in enumerate(THROUGH)}
    excluded = tuple(
        ExcludedLine(u.asset_id, THROUGH[through], cause, _hours(us))
        for u in p.units
        for (through, cause), us in sorted(u.totals.excluded_by.items(),
                                           key=lambda item: (order[item[0][0]], item[0][1]))
        if us)
    allowance = tuple(
        AllowanceLine(u.asset_id, use.contract_year, _hours(use.allowance_us),
                      _hours(use.before_us), _hours(use.in_period_us), _hours(use.remaining_us))
        for u in p.units for use in ev.allowance.get((p.period.label, u.asset_id), ()))
    steps = [*_availability_steps(p), *_ld_steps(contract, p)]
    if contract.bonus is not None:
        steps += _bonus_steps(contract, p)
    return PeriodReport(p.period.label, from_us(lo, tz).isoformat(), from_us(hi, tz).isoformat(),
                        p.contract_year, summary, units, tuple(lines), excluded, allowance,
                        tuple(steps))


def _sum_text(values: Sequence[float]) -> str:
    if not values:
        return "0"
    if len(values) > 4:
        return f"sum of the {len(values)} values above"
    return " + ".join(fmt(_r6(v), P) for v in values)


def _availability_steps(p: PeriodResult) -> list[Step]:
    """A = 1 − ∑ w·L / ∑ w·(T − E) (availability rules §4), with each unit's terms and both sums,
    every figure to 6 decimals."""
    steps: list[Step] = []
    lost: list[float] = []
    counted: list[float] = []
    for u in p.units:
        t, e, lost_h = u.totals.hours()
        w = plain(u.weight)
        lost.append(u.weight * lost_h)
        counted.append(u.weight * (t - e))
        steps.append(Step("Availability", f"w·L of {u.asset_id}", "weight × lost hours",
                          f"{w} × {fmt(_r6(lost_h), P)}", _r6(lost[-1]), WEIGHTED_HOURS))
        steps.append(Step("Availability", f"w·(T − E) of {u.asset_id}",
                          "weight × (window − excluded hours)",
                          f"{w} × ({fmt(_r6(t), P)} − {fmt(_r6(e), P)})", _r6(counted[-1]),
                          WEIGHTED_HOURS))
    sum_lost, sum_counted = math.fsum(lost), math.fsum(counted)
    steps.append(Step("Availability", "∑ w·L", "sum over the units", _sum_text(lost),
                      _r6(sum_lost), WEIGHTED_HOURS))
    steps.append(Step("Availability", "∑ w·(T − E)", "sum over the units", _sum_text(counted),
                      _r6(sum_counted), WEIGHTED_HOURS))
    numbers = (f"100 × (1 − {fmt(_r6(sum_lost), P)} / {fmt(_r6(sum_counted), P)})"
               if p.availability is not None else
               "∑ w·(T − E) = 0: no time counts, A is undefined")
    steps.append(Step("Availability", "A", "100 × (1 − ∑ w·L / ∑ w·(T − E))", numbers,
                      _pct6(p.availability), "%"))
    return steps


def _charge_steps(part: Part, charge: Charge, currency: str, step_pct: float, rate: Decimal,
                  cap: Decimal, year: int, points: tuple[str, str, str]) -> list[Step]:
    """points → billable → uncapped → cap left → amount (availability rules §5); `points` is the
    name, formula and numbers of the shortfall (LD) or excess (bonus)."""
    name = "LD" if part == "LD" else "bonus"
    billable = plain(charge.billable_pct)
    uncapped = _money(charge.uncapped)
    left = _money(charge.cap_left_before)
    already = _money(cap - charge.cap_left_before)
    points_value = _r6(charge.points_pct)
    step = plain(step_pct)
    return [
        Step(part, points[0], points[1], points[2], points_value, "%"),
        Step(part, "billable", f"floor({points[0]} / step) · step",
             f"floor({fmt(points_value, P)} / {step}) · {step}", float(charge.billable_pct),
             "%"),
        Step(part, f"uncapped {name}", "billable × rate per %",
             f"{billable} × {fmt(rate, 2)}", uncapped, currency),
        Step(part, "cap left", f"cap per contract year − {name} already in contract year {year}",
             f"{fmt(cap, 2)} − {fmt(already, 2)}", left, currency),
        Step(part, name, f"min(uncapped {name}, cap left)",
             f"min({fmt(uncapped, 2)}, {fmt(left, 2)})", _money(charge.amount), currency),
    ]


def _undefined(part: Part, quantities: Sequence[str], currency: str) -> list[Step]:
    """A period in which no time counts charges nothing (availability rules §5)."""
    name = "LD" if part == "LD" else "bonus"
    steps = [Step(part, q, "", "A is undefined: nothing is charged", None,
                  "%" if q in ("shortfall", "excess", "billable") else currency)
             for q in quantities]
    return [*steps, Step(part, name, "nothing is charged when A is undefined", "", 0.0,
                         currency)]


def _ld_steps(c: Contract, p: PeriodResult) -> list[Step]:
    year, currency = p.contract_year, c.ld.currency
    source = (f"by_contract_year[{year}]" if year in c.guarantee.by_contract_year
              else "default_pct")
    guarantee = Step("LD", "G", f"guaranteed availability of contract year {year}",
                     f"contract: guarantee {source}", p.guaranteed_pct, "%")
    a = _pct6(p.availability)
    if a is None:
        return [guarantee, *_undefined("LD", ("shortfall", "billable", "uncapped LD",
                                              "cap left"), currency)]
    shortfall = ("shortfall", "max(0, G − A)", f"max(0, {fmt(p.guaranteed_pct, P)} − "
                 f"{fmt(a, P)})")
    return [guarantee, *_charge_steps("LD", p.ld, currency, c.ld.step_pct, c.ld.rate_per_pct,
                                      c.ld.cap_per_contract_year, year, shortfall)]


def _bonus_steps(c: Contract, p: PeriodResult) -> list[Step]:
    assert c.bonus is not None
    currency = c.ld.currency
    a = _pct6(p.availability)
    if a is None:
        return _undefined("Bonus", ("excess", "billable", "uncapped bonus", "cap left"),
                          currency)
    excess = ("excess", "max(0, A − threshold)",
              f"max(0, {fmt(a, P)} − {fmt(c.bonus.threshold_pct, P)})")
    return _charge_steps("Bonus", p.bonus, currency, c.ld.step_pct, c.bonus.rate_per_pct,
                         c.bonus.cap_per_contract_year, p.contract_year, excess)


# -- tables: the columns every format lays out -----------------------------------------------

# number: 3 places; money: 2; value: places from the row's unit; weight: as in the contract
Kind = Literal["text", "int", "number", "money", "value", "weight"]
Cell = str | int | float | None


@dataclass(frozen=True)
class Column:
    name: str  # CSV column
    title: str  # header in xlsx and PDF
    kind: Kind
    width: float  # relative width in xlsx (characters) and PDF


@dataclass(frozen=True)
class Table:
    section: str  # CSV section name
    columns: tuple[Column, ...]
    rows: Callable[[PeriodReport], list[tuple[Cell, ...]]]


def decimal_places(column: Column, row: tuple[Cell, ...], columns: Sequence[Column]) -> int:
    if column.kind == "money":
        return 2
    if column.kind == "value":
        unit = row[[c.name for c in columns].index("unit")]
        return P if unit in ("%", WEIGHTED_HOURS) else 2
    return 3


SUMMARY = Table("summary", (
    Column("availability_pct", "Availability %", "number", 13),
    Column("guaranteed_pct", "Guaranteed %", "number", 13),
    Column("shortfall_pct", "Shortfall %", "number", 12),
    Column("ld", "LD", "money", 14),
    Column("bonus", "Bonus", "money", 14),
    Column("currency", "Currency", "text", 9),
    Column("early_warning_margin_pct", "Early-warning margin %", "number", 13),
), lambda p: [(p.summary.availability_pct, p.summary.guaranteed_pct, p.summary.shortfall_pct,
               p.summary.ld, p.summary.bonus, p.summary.currency,
               p.summary.early_warning_margin_pct)])

# Wide enough for the longest word of each title on A4 landscape.
_CLASS_WIDTHS = {"maintenance": 12.5, OVER_ALLOWANCE: 12.5, "unknown": 10, "unavailable": 11.5,
                 "available": 10.5}

UNITS = Table("unit", (
    Column("asset_id", "Unit", "text", 20),
    Column("weight", "Weight w", "weight", 8),
    Column("window_hours", "Window h (T)", "number", 10.5),
    *(Column(f"class_{key}_hours", f"{title} h", "number", _CLASS_WIDTHS.get(key, 9.5))
      for key, title in CLASSES),
    Column("excluded_hours", "Excluded h (E)", "number", 10),
    Column("lost_hours", "Lost h (L)", "number", 9.5),
    Column("availability_pct", "Availability %", "number", 10.5),
), lambda p: [(u.asset_id, u.weight, u.window_hours, *u.class_hours, u.excluded_hours,
               u.lost_hours, u.availability_pct) for u in p.units])

EXCLUSIONS = Table("exclusion", (
    Column("scope_id", "Scope", "text", 16),
    Column("start", "Start (local)", "text", 26),
    Column("end", "End (local)", "text", 26),
    Column("reason", "Reason", "text", 20),
    Column("hours_in_period", "Hours in period", "number", 10),
    Column("effect", "Effect", "text", 40),
), lambda p: [(e.scope_id, e.start, e.end, e.reason, e.hours_in_period, e.effect)
              for e in p.exclusions])

EXCLUDED_TIME = Table("excluded_time", (
    Column("asset_id", "Unit", "text", 20),
    Column("through", "Excluded through", "text", 34),
    Column("cause", "Reason or cause", "text", 20),
    Column("hours", "Hours", "number", 10),
), lambda p: [(e.asset_id, e.through, e.cause, e.hours) for e in p.excluded])

ALLOWANCE = Table("allowance", (
    Column("asset_id", "Unit", "text", 20),
    Column("contract_year", "Contract year", "int", 9),
    Column("allowance_hours", "Allowance h", "number", 11),
    Column("used_before_hours", "Used before the period h", "number", 13),
    Column("used_in_period_hours", "Used in the period h", "number", 12),
    Column("remaining_hours", "Left after the period h", "number", 12),
), lambda p: [(a.asset_id, a.contract_year, a.allowance_hours, a.used_before_hours,
               a.used_in_period_hours, a.remaining_hours) for a in p.allowance])

COMPUTATION = Table("computation", (
    Column("part", "Part", "text", 12),
    Column("quantity", "Quantity", "text", 30),
    Column("formula", "Formula", "text", 36),
    Column("numbers", "With this period's numbers", "text", 40),
    Column("value", "Value", "value", 16),
    Column("unit", "Unit", "text", 8),
), lambda p: [(s.part, s.quantity, s.formula, s.numbers, s.value, s.unit) for s in p.steps])

PERIOD_COLUMNS = (
    Column("period", "Period", "text", 10),
    Column("start", "Start (local)", "text", 26),
    Column("end", "End (local)", "text", 26),
    Column("contract_year", "Contract year", "int", 9),
)


def period_cells(p: PeriodReport) -> tuple[Cell, ...]:
    return (p.label, p.start, p.end, p.contract_year)
