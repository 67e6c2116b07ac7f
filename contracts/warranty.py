"""The warranty evidence pack's figures: what one battery unit did over a period, each figure
set against its term in the contract file's `warranty:` section (contracts/contract.py), with
a verdict. Pure: the caller brings the unit's buckets (the historian's,
connectors/archive/historian.py) and its status intervals; availability is the contract
engine's own accounting (contracts/ledger.py `sweep`, the rules of availability rules §3-4),
booked into one bucket for the period instead of the contract's measurement periods.

- **Availability**: A = 1 − L / (T − E) of the unit over the period, by the contract's rules
  (exclusions, maintenance allowance of the contract year — booked from the start of that
  year so the allowance used before the period counts — and the data-gap policy). Its term
  is the contract's guarantee of the contract year holding the period's start. Time before
  the unit's first status row is no data (neither counted nor lost), as in the engine.
- **Throughput**: Σ |mean power| × width of the power buckets (grid side; a sign change
  inside a bucket loses throughput — see contracts/battery_health.py), split into energy
  discharged (P > 0) and charged (P < 0). **Cycles** EFC = throughput / (2 × rated energy);
  **EFC a year** annualises them over the time with power data (a short period annualised
  magnifies a busy week: read it with the period's length).
- **Average C-rate**: the time-weighted mean of |P| / rated energy over the buckets where the
  unit operated (C-rate ≥ `IDLE_C_RATE`: idle time would dilute it).
- **SOH**: the first and the last SOH bucket of the period; the last is held against the
  guaranteed minimum of its year of service (year 1 starts at the unit's commissioning).
- **Excursions** (hottest cell temperature, SOC): a bucket whose mean lies outside the
  allowed range counts its whole width; adjacent buckets outside on the same side are one
  excursion. An excursion shorter than a bucket, or one that the bucket's mean hides, is not
  seen: the bucket width bounds the resolution (the pack states it).

Verdicts: `within` (the term holds), `exceeded` (the figure is on the wrong side of its term:
above a maximum, below a minimum, outside a range), `no_term` (the contract file states
none), `no_data` (nothing to measure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from contracts.battery_health import C_RATE_EDGES, HOUR_MS, YEAR_MS, Bucket
from contracts.contract import Contract, Range, Warranty
from contracts.engine import ContractContext
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.ledger import Totals, sweep

Verdict = Literal["within", "exceeded", "no_term", "no_data"]
Side = Literal["below", "above"]
IDLE_C_RATE = C_RATE_EDGES[0]  # below it the unit is idle (battery_health's lowest band)
NO_WARRANTY = Warranty()


@dataclass(frozen=True, slots=True)
class Excursion:
    start_ms: int
    end_ms: int
    side: Side
    extreme: float  # the lowest (below) or highest (above) bucket mean of the excursion

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / HOUR_MS


@dataclass(frozen=True, slots=True)
class Excursions:
    low: float
    high: float
    hours_with_data: float
    episodes: tuple[Excursion, ...]

    @property
    def hours_outside(self) -> float:
        return sum(e.hours for e in self.episodes)

    @property
    def count(self) -> int:
        return len(self.episodes)

    @property
    def longest_hours(self) -> float:
        return max((e.hours for e in self.episodes), default=0.0)


def excursions(values: Sequence[Bucket], allowed: Range) -> Excursions:
    """The episodes of `values` (buckets, any order, not overlapping) outside
    `[allowed.min, allowed.max]`: a bucket's mean outside counts its whole width; one that
    starts where the previous episode ends, on the same side, extends it."""
    episodes: list[Excursion] = []
    for b in sorted(values, key=lambda b: b.start_ms):
        side: Side | None = "below" if b.mean < allowed.min else \
            "above" if b.mean > allowed.max else None
        if side is None or b.width_ms <= 0:
            continue
        last = episodes[-1] if episodes else None
        if last is not None and last.side == side and last.end_ms == b.start_ms:
            extreme = min(last.extreme, b.mean) if side == "below" else max(last.extreme,
                                                                            b.mean)
            episodes[-1] = Excursion(last.start_ms, b.start_ms + b.width_ms, side, extreme)
        else:
            episodes.append(Excursion(b.start_ms, b.start_ms + b.width_ms, side, b.mean))
    return Excursions(allowed.min, allowed.max, sum(b.width_ms for b in values) / HOUR_MS,
                      tuple(episodes))


@dataclass(frozen=True, slots=True)
class UnitAvailability:
    """The engine's accounting of the unit over the period."""

    totals: Totals
    guaranteed_pct: float | None  # the contract year's guarantee; None outside the term
    contract_year: int | None

    @property
    def availability_pct(self) -> float | None:
        a = self.totals.availability
        return None if a is None else 100.0 * a


def booking_from_us(ctx: ContractContext, start_us: int) -> int:
    """Where the sweep for a period from `start_us` begins: the start of the contract year
    holding it (the nearest year when the period starts outside the term), or `start_us`
    if earlier."""
    cal = ctx.calendar
    year = cal.contract_year(min(max(start_us, cal.start_us), cal.end_us - 1))
    return start_us if year is None else min(start_us, cal.year_bounds(year)[0])


def unit_availability(fleet: Fleet, contract: Contract, unit_id: str,
                      intervals: Sequence[StatusInterval],
                      windows: Sequence[ExclusionWindow], start_us: int, end_us: int,
                      monitored_from_us: int | None) -> UnitAvailability:
    """The unit's time in `[start_us, end_us)` by the contract's rules: the engine's sweep
    (contracts/ledger.py) from the start of the contract year holding `start_us` (so the
    maintenance allowance used before the period is used), everything before `start_us`
    booked apart. `intervals`: the unit's and its children's (others are ignored);
    `monitored_from_us`: the first status row (time before it is no data; None: every gap
    counts by the data-gap policy)."""
    ctx = ContractContext(fleet, contract)
    cal = ctx.calendar
    sweep_from = booking_from_us(ctx, start_us)
    if monitored_from_us is not None:
        sweep_from = min(max(sweep_from, monitored_from_us), end_us)
    own, children, unit_windows = ctx.split(intervals, windows)[unit_id]

    def locate(us: int) -> tuple[Hashable, int]:
        return ("before", start_us) if us < start_us else ("period", end_us)

    out: dict[Hashable, Totals] = {}
    sweep(ctx.scopes[unit_id], sweep_from, end_us, own, children, unit_windows, locate, out)
    in_term = cal.contract_year(start_us) if cal.start_us <= start_us < cal.end_us else None
    return UnitAvailability(out.get("period", Totals()),
                            None if in_term is None else contract.guaranteed_pct(in_term),
                            in_term)


@dataclass(frozen=True, slots=True)
class UnitPeriod:
    """One unit's data over `[start_ms, end_ms)`: buckets clipped to the period."""

    start_ms: int
    end_ms: int
    rated_energy_kwh: float
    commissioned: dt.date
    power: Sequence[Bucket] = ()  # kW, > 0 discharging
    soh: Sequence[Bucket] = ()  # %
    temperature: Sequence[Bucket] = ()  # the hottest cell, °C
    soc: Sequence[Bucket] = ()  # %
    availability: UnitAvailability | None = None  # None: the site has no contract


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    title: str
    value: float | None
    unit: str
    term: str  # the term as the contract file states it; "" without one
    verdict: Verdict
    detail: str = ""  # how it was measured, the data behind it


@dataclass(frozen=True, slots=True)
class Assessment:
    figures: tuple[Figure, ...]
    temperature: Excursions | None  # None: no temperature range in the warranty
    soc: Excursions | None  # None: no SOC window in the warranty
    efc_cumulative: tuple[float, ...] = field(default=())  # after each power bucket

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)


def _verdict(value: float | None, limit: float | None, kind: Literal["max", "min"]
             ) -> Verdict:
    if limit is None:
        return "no_term"
    if value is None:
        return "no_data"
    return "within" if (value <= limit if kind == "max" else value >= limit) else "exceeded"


def service_year(commissioned: dt.date, t_ms: int) -> int:
    """1 in the first year after commissioning (UTC days; 365.25 days a year)."""
    day = dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC).date()
    return max(1, int((day - commissioned).days / 365.25) + 1)


def _g(value: float) -> str:
    return f"{value:g}"


def _excursion_figures(key: str, title: str, unit: str, values: Sequence[Bucket],
                       allowed: Range | None) -> tuple[list[Figure], Excursions | None]:
    if allowed is None:
        return [Figure(f"{key}_outside_h", f"{title}: time outside the allowed range", None,
                       "h", "", "no_term", "the warranty states no range")], None
    found = excursions(values, allowed)
    term = f"{_g(allowed.min)}–{_g(allowed.max)} {unit}"
    verdict: Verdict = "no_data" if not values else \
        "within" if not found.episodes else "exceeded"
    below = [e.extreme for e in found.episodes if e.side == "below"]
    above = [e.extreme for e in found.episodes if e.side == "above"]
    detail = "; ".join([f"{found.hours_with_data:g} h with data",
                        *([f"lowest {min(below):.1f} {unit}"] if below else []),
                        *([f"highest {max(above):.1f} {unit}"] if above else [])])
    return [
        Figure(f"{key}_outside_h", f"{title}: time outside the allowed range",
               found.hours_outside if values else None, "h", term, verdict, detail),
        Figure(f"{key}_excursions", f"{title}: excursions", found.count if values else None,
               "", term, verdict),
        Figure(f"{key}_longest_h", f"{title}: longest excursion",
               found.longest_hours if values else None, "h", term, verdict),
    ], found


def assess(data: UnitPeriod, warranty: Warranty | None) -> Assessment:
    """Every figure of the pack against its term (see the module's docstring)."""
    w = warranty or NO_WARRANTY
    rated = data.rated_energy_kwh
    figures: list[Figure] = []

    av = data.availability
    if av is None:
        figures.append(Figure("availability_pct", "Availability", None, "%", "", "no_term",
                              "the site has no contract: no availability rules"))
    else:
        t = av.totals
        window_h, excluded_h, lost_h = t.hours()
        term = "" if av.guaranteed_pct is None else \
            f"≥ {_g(av.guaranteed_pct)} % (contract year {av.contract_year})"
        figures.append(Figure(
            "availability_pct", "Availability", av.availability_pct, "%", term,
            _verdict(av.availability_pct, av.guaranteed_pct, "min"),
            f"T = {window_h:.3f} h, E = {excluded_h:.3f} h excluded, L = {lost_h:.3f} h lost: "
            "1 − L / (T − E)"))

    discharged = sum(b.mean * b.width_ms for b in data.power if b.mean > 0) / HOUR_MS
    charged = -sum(b.mean * b.width_ms for b in data.power if b.mean < 0) / HOUR_MS
    throughput = discharged + charged
    covered_ms = sum(b.width_ms for b in data.power)
    has_power = covered_ms > 0
    efc = throughput / (2 * rated)
    cumulative: list[float] = []
    done = 0.0
    for b in data.power:
        done += abs(b.mean) * b.width_ms / HOUR_MS / (2 * rated)
        cumulative.append(done)
    power_detail = f"{covered_ms / HOUR_MS:g} h of power data"
    figures += [
        Figure("throughput_mwh", "Energy throughput (charged + discharged)",
               throughput / 1000 if has_power else None, "MWh", "",
               "no_term" if has_power else "no_data", power_detail),
        Figure("discharged_mwh", "Energy discharged", discharged / 1000 if has_power else None,
               "MWh", "", "no_term" if has_power else "no_data"),
        Figure("charged_mwh", "Energy charged", charged / 1000 if has_power else None, "MWh",
               "", "no_term" if has_power else "no_data"),
        Figure("efc", "Equivalent full cycles", efc if has_power else None, "", "",
               "no_term" if has_power else "no_data",
               f"throughput / (2 × {rated / 1000:g} MWh rated)"),
    ]
    per_year = efc * YEAR_MS / covered_ms if has_power else None
    figures.append(Figure(
        "efc_per_year", "Equivalent full cycles a year (annualised)", per_year, "/year",
        "" if w.max_efc_per_year is None else f"≤ {_g(w.max_efc_per_year)} /year",
        _verdict(per_year, w.max_efc_per_year, "max"),
        f"cycles × 365.25 days / {power_detail}"))
    operating = [b for b in data.power if abs(b.mean) / rated >= IDLE_C_RATE]
    operating_ms = sum(b.width_ms for b in operating)
    c_rate = (sum(abs(b.mean) / rated * b.width_ms for b in operating) / operating_ms
              if operating_ms > 0 else None)
    figures.append(Figure(
        "average_c_rate", "Average C-rate while operating", c_rate, "C",
        "" if w.max_average_c_rate is None else f"≤ {_g(w.max_average_c_rate)} C",
        _verdict(c_rate, w.max_average_c_rate, "max"),
        f"{operating_ms / HOUR_MS:g} h at ≥ {_g(IDLE_C_RATE)} C"))

    soh = sorted(data.soh, key=lambda b: b.start_ms)
    first, last = (soh[0], soh[-1]) if soh else (None, None)
    figures.append(Figure("soh_start_pct", "State of health at the start", None if first is None
                          else first.mean, "%", "", "no_term" if first else "no_data"))
    guarantee = None
    year = None
    if last is not None:
        year = service_year(data.commissioned, last.start_ms + last.width_ms - 1)
        guarantee = w.min_soh_pct(year)
    term = "" if guarantee is None else \
        f"≥ {_g(guarantee[1])} % (year of service {year}, listed year {guarantee[0]})"
    figures.append(Figure(
        "soh_end_pct", "State of health at the end", None if last is None else last.mean, "%",
        term, ("no_data" if last is None and w.min_soh_pct_by_year else
               _verdict(None if last is None else last.mean,
                        None if guarantee is None else guarantee[1], "min")),
        "" if year is None else f"year of service {year}"))

    temperature, t_found = _excursion_figures("temperature", "Hottest cell", "°C",
                                              data.temperature, w.operating_temperature_c)
    soc, s_found = _excursion_figures("soc", "State of charge", "%", data.soc,
                                      w.soc_window_pct)
    return Assessment(tuple(figures + temperature + soc), t_found, s_found, tuple(cumulative))
