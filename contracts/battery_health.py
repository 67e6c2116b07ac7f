"""Battery health: how fast a unit's state of health (SOH) fades, when it reaches its
warranty's end-of-life threshold, what to add to keep its energy, and the stress it lived
through. Pure: the caller brings the SOH samples, the power and temperature buckets (the
historian's, connectors/archive/historian.py), the rated energy and the threshold.

- **Equivalent full cycles** (EFC) = energy throughput / (2 × rated energy): one full charge
  and one full discharge is one cycle. The throughput of a bucket is |mean power| × its
  width (the historian sums it minute by minute: a bucket's mean is the power that moves
  those minutes' energy either way) — exact while the power keeps one sign within a minute
  (a duty that flips sign within seconds is undercounted, and its fade per cycle
  overstated) and measured at the grid side (the cells see 1/η more when discharging
  and η less when charging: over balanced cycles of η = 0.94 the two differ by 0.2 %).
- **The fit**: SOH (% of rated energy) against calendar time (years) and cumulative EFC by
  least squares with both regressors, SOH = a + b·t + c·EFC. Calendar fade is −b
  (percentage points a year), cycle fade −1000·c (points per 1,000 EFC). Each has a 95 %
  confidence band from its standard error and Student's t with n − 3 degrees of freedom.
  The band assumes independent residuals; SOH estimates drift slowly, so real bands are
  wider than stated — read them as a lower bound of the uncertainty.
- **Too little data** is said, never divided by: fewer than `MIN_SAMPLES` samples or less
  than `MIN_SPAN_DAYS` of them → no fit. No cycling (EFC constant), or cycles that grew in
  exact step with time (the two regressors one line: calendar and cycle fade cannot be told
  apart) → a fit against time alone, the total fade a year at the duty seen, and no rate per
  EFC, with the reason. When cycles grew *almost* in step with time (steady duty) the two
  rates are uncertain each — their bands say so — but their sum at that duty is not.
- **Projection**: the fade a year at the duty seen (EFC a year of the samples) is
  R = −(b + c·EFC_per_year), with its standard error from the fit's covariance. From the
  fitted SOH at the last sample, the threshold is reached after (SOH − threshold) / R years;
  the band uses R ± its 95 % half-width (a late end of "never" when the band includes no
  fade). The fitted SOH's own uncertainty is left out (small beside the rate's).
- **Augmentation hint**: to keep threshold × rated energy usable until a horizon (the
  contract's end), add rated × (threshold − projected SOH at the horizon) / 100 MWh of new
  modules by the projected end-of-life date — the new modules' own fade left out (add a
  margin). None when the unit stays above the threshold until the horizon.
- **Exposure**: hours per temperature band (the hottest cell of the unit's blocks) and per
  C-rate band (|P| / rated energy, per hour) — from buckets (`exposure`), or from the
  minutes counted per band where the history is (`temperature_bands`, `c_rate_bands`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.fleet import Unit

DEFAULT_END_OF_LIFE_SOH_PCT = 70.0  # when the contract file names no warranty threshold
MIN_SAMPLES = 4  # three coefficients and one degree of freedom
MIN_SPAN_DAYS = 1.0
COLLINEAR = 1e-9  # 1 − r² of time and EFC below this: one line, no separate rates
CONFIDENCE = 0.95
YEAR_MS = 365.25 * 86_400_000
HOUR_MS = 3_600_000
TEMPERATURE_EDGES_C = (0.0, 15.0, 25.0, 35.0, 45.0)
C_RATE_EDGES = (0.05, 0.25, 0.5, 1.0)
# Student's t, two-sided 95 %, by degrees of freedom 1…30; beyond, the Cornish–Fisher series.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Method = Literal["time_and_cycles", "time_only"]


def t95(dof: int) -> float:
    """The two-sided 95 % quantile of Student's t with `dof` ≥ 1 degrees of freedom (to 3
    decimals; beyond 30 the Cornish–Fisher expansion, within 0.001)."""
    if dof < 1:
        raise ValueError("at least one degree of freedom")
    if dof <= len(_T95):
        return _T95[dof - 1]
    z, v = 1.959964, float(dof)
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))


@dataclass(frozen=True, slots=True)
class Sample:
    """SOH at an instant, with the cycles done by then (from any origin: only differences
    count)."""

    t_ms: int
    soh_pct: float
    efc: float


@dataclass(frozen=True, slots=True)
class Rate:
    """A fade rate (percentage points of SOH lost per year or per 1,000 EFC; > 0 is a loss)
    with its 95 % band."""

    value: float
    low: float
    high: float
    std_error: float


@dataclass(frozen=True, slots=True)
class FadeFit:
    method: Method
    samples: int
    first_ms: int
    last_ms: int
    per_year: Rate | None  # calendar fade (time_and_cycles) or all fade (time_only)
    per_1000_efc: Rate | None  # None: time_only
    efc: float  # cycles between the first and the last sample
    efc_per_year: float
    at_duty_per_year: Rate  # calendar + cycle fade at the duty seen: what the projection uses
    soh_now_pct: float  # fitted, at the last sample
    rmse_pct: float
    note: str  # why a rate is missing or what limits it; "" when nothing does


@dataclass(frozen=True, slots=True)
class NoFit:
    samples: int
    reason: str


@dataclass(frozen=True, slots=True)
class Projection:
    threshold_pct: float
    reached: bool  # the fitted SOH is at or below the threshold already
    date: dt.date | None  # None: reached, or no fade at the duty seen
    earliest: dt.date | None
    latest: dt.date | None  # None: the band includes no fade (or beyond the year 9999)
    note: str


@dataclass(frozen=True, slots=True)
class Augmentation:
    add_mwh: float
    by: dt.date
    horizon: dt.date
    text: str


@dataclass(frozen=True, slots=True)
class Band:
    label: str
    low: float | None  # inclusive; None: unbounded
    high: float | None  # exclusive; None: unbounded
    hours: float


@dataclass(frozen=True, slots=True)
class Bucket:
    """A span of the history with data: its mean value (power kW, or temperature °C)."""

    start_ms: int
    width_ms: int
    mean: float


def equivalent_full_cycles(throughput_kwh: float, rated_energy_kwh: float) -> float:
    if rated_energy_kwh <= 0:
        raise ValueError("the rated energy must be positive")
    return throughput_kwh / (2.0 * rated_energy_kwh)


def efc_at(power: Sequence[Bucket], rated_energy_kwh: float, times_ms: Sequence[int]
           ) -> list[float]:
    """The cycles done by each of `times_ms`, from 0 at the first power bucket's start: the
    buckets' throughput (sorted by start, not overlapping) summed up to the instant, a
    bucket's spread evenly over its width; a gap between buckets adds nothing."""
    starts = [b.start_ms for b in power]
    before: list[float] = []  # cycles done before each bucket
    done = 0.0
    for b in power:
        before.append(done)
        done += equivalent_full_cycles(abs(b.mean) * b.width_ms / HOUR_MS, rated_energy_kwh)
    out: list[float] = []
    for t in times_ms:
        i = bisect.bisect_right(starts, t) - 1
        if i < 0:
            out.append(0.0)
            continue
        b = power[i]
        share = min(1.0, (t - b.start_ms) / b.width_ms) if b.width_ms > 0 else 1.0
        out.append(before[i] + share * equivalent_full_cycles(
            abs(b.mean) * b.width_ms / HOUR_MS, rated_energy_kwh))
    return out


def _rate(value: float, se: float, q: float) -> Rate:
    return Rate(value, value - q * se, value + q * se, se)


def fit_fade(samples: Sequence[Sample]) -> FadeFit | NoFit:
    """SOH = a + b·t + c·EFC by least squares (see the module's docstring)."""
    n = len(samples)
    if n < MIN_SAMPLES:
        return NoFit(n, f"{n} SOH sample{'s' if n != 1 else ''}: a fit needs at least "
                     f"{MIN_SAMPLES}")
    first, last = min(s.t_ms for s in samples), max(s.t_ms for s in samples)
    if last - first < MIN_SPAN_DAYS * 86_400_000:
        return NoFit(n, f"the SOH samples span less than {MIN_SPAN_DAYS:g} day")
    t = [(s.t_ms - first) / YEAR_MS for s in samples]
    e = [s.efc for s in samples]
    y = [s.soh_pct for s in samples]
    mt, me, my = sum(t) / n, sum(e) / n, sum(y) / n
    tc, ec, yc = [v - mt for v in t], [v - me for v in e], [v - my for v in y]
    stt = sum(a * a for a in tc)
    see = sum(a * a for a in ec)
    ste = sum(a * b for a, b in zip(tc, ec, strict=True))
    sty = sum(a * b for a, b in zip(tc, yc, strict=True))
    sey = sum(a * b for a, b in zip(ec, yc, strict=True))
    span_years = (last - first) / YEAR_MS
    i_first = min(range(n), key=lambda i: (samples[i].t_ms, i))
    i_last = max(range(n), key=lambda i: (samples[i].t_ms, -i))
    efc = e[i_last] - e[i_first]
    efc_per_year = efc / span_years
    det = stt * see - ste * ste
    if see <= 0 or det <= COLLINEAR * stt * see:
        b = sty / stt
        fitted = [my + b * a for a in tc]
        rss = sum((v - f) ** 2 for v, f in zip(y, fitted, strict=True))
        dof = n - 2
        s2 = rss / dof
        q = t95(dof)
        total = _rate(-b, math.sqrt(s2 / stt), q)
        note = ("no cycling in the samples: the fade a year is calendar fade alone; no rate "
                "per cycle" if see <= 0 else
                "cycles grew in step with time: calendar and cycle fade cannot be told apart;"
                " the fade a year is both at the duty seen, with no rate per cycle")
        return FadeFit("time_only", n, first, last, total, None, efc, efc_per_year, total,
                       fitted[i_last], math.sqrt(rss / n), note)
    b = (see * sty - ste * sey) / det
    c = (stt * sey - ste * sty) / det
    fitted = [my + b * a + c * d for a, d in zip(tc, ec, strict=True)]
    rss = sum((v - f) ** 2 for v, f in zip(y, fitted, strict=True))
    dof = n - 3
    s2 = rss / dof
    q = t95(dof)
    var_b, var_c, cov = s2 * see / det, s2 * stt / det, -s2 * ste / det
    per_year = _rate(-b, math.sqrt(var_b), q)
    per_efc = _rate(-1000 * c, 1000 * math.sqrt(var_c), q)
    var_duty = max(0.0, var_b + efc_per_year ** 2 * var_c + 2 * efc_per_year * cov)
    at_duty = _rate(-(b + c * efc_per_year), math.sqrt(var_duty), q)
    # Uncertain apart: either rate's band (a year's worth at the duty seen) wider than half
    # the total fade.
    apart = max(q * math.sqrt(var_b), q * math.sqrt(var_c) * abs(efc_per_year))
    note = ("cycles grew almost in step with time: calendar and cycle fade are uncertain "
            "each (wide bands), their sum at the duty seen is not"
            if apart > 0.5 * abs(at_duty.value) else "")
    return FadeFit("time_and_cycles", n, first, last, per_year, per_efc, efc, efc_per_year,
                   at_duty, fitted[i_last], math.sqrt(rss / n), note)


def _date_after(t_ms: int, years: float) -> dt.date | None:
    """The UTC date `years` after `t_ms`; None beyond the year 9999."""
    if not math.isfinite(years) or years > 7000:
        return None
    try:
        return (dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC)
                + dt.timedelta(days=years * 365.25)).date()
    except OverflowError:
        return None


def project(fit: FadeFit, threshold_pct: float) -> Projection:
    """When the fitted SOH reaches `threshold_pct` at the fade a year at the duty seen."""
    soh, rate = fit.soh_now_pct, fit.at_duty_per_year
    if soh <= threshold_pct:
        return Projection(threshold_pct, True, None, None, None,
                          f"the fitted SOH ({soh:.2f} %) is at or below the threshold")
    margin = soh - threshold_pct
    if rate.value <= 0:
        return Projection(threshold_pct, False, None,
                          _date_after(fit.last_ms, margin / rate.high) if rate.high > 0
                          else None, None, "no fade measured at the duty seen")
    latest = _date_after(fit.last_ms, margin / rate.low) if rate.low > 0 else None
    return Projection(threshold_pct, False, _date_after(fit.last_ms, margin / rate.value),
                      _date_after(fit.last_ms, margin / rate.high), latest,
                      "" if rate.low > 0 else
                      "the band includes no fade: the latest date is open")


def augmentation(fit: FadeFit, projection: Projection, rated_energy_kwh: float,
                 horizon: dt.date | None) -> Augmentation | None:
    """What to add to keep threshold × rated energy usable until `horizon` (see the module's
    docstring); None without a horizon, or when the unit stays above the threshold until
    then at the fade measured."""
    if horizon is None or fit.at_duty_per_year.value <= 0:
        return None
    last = dt.datetime.fromtimestamp(fit.last_ms / 1000, dt.UTC).date()
    years = max(0.0, (horizon - last).days / 365.25)
    soh_at_horizon = fit.soh_now_pct - fit.at_duty_per_year.value * years
    short_pct = projection.threshold_pct - soh_at_horizon
    if short_pct <= 0:
        return None
    add_mwh = rated_energy_kwh / 1000 * short_pct / 100
    by = projection.date if projection.date is not None and not projection.reached else last
    return Augmentation(add_mwh, by, horizon, (
        f"add {add_mwh:.2f} MWh by {by.isoformat()} to keep {projection.threshold_pct:g} % of "
        f"the rated {rated_energy_kwh / 1000:g} MWh usable until {horizon.isoformat()}: at "
        f"{fit.at_duty_per_year.value:.2f} points a year the SOH would be "
        f"{soh_at_horizon:.1f} % then (the new modules' own fade not counted)"))


def _label(low: float | None, high: float | None, unit: str) -> str:
    if low is None:
        return f"< {high:g}{unit}"
    if high is None:
        return f"≥ {low:g}{unit}"
    return f"{low:g}–{high:g}{unit}"


def band_of(value: float, edges: Sequence[float]) -> int:
    """The band of `value`: i when i of the (ascending) `edges` lie at or below it — 0
    below the first edge, len(edges) from the last up."""
    return sum(1 for edge in edges if value >= edge)


def banded(hours: Sequence[float], edges: Sequence[float], unit: str = "") -> list[Band]:
    """The bands of `edges` (one below the first, one between each two, one from the last
    up) with the hours spent in each (`hours[i]`: band i, as `band_of`)."""
    bounds: list[tuple[float | None, float | None]] = [
        (None, edges[0]), *itertools.pairwise(edges), (edges[-1], None)]
    return [Band(_label(low, high, unit), low, high, h)
            for (low, high), h in zip(bounds, hours, strict=True)]


def exposure(values: Sequence[Bucket], edges: Sequence[float], unit: str = "",
             scale: float = 1.0) -> list[Band]:
    """Hours per band of `mean × scale` (`banded`); each bucket counts its whole width."""
    hours = [0.0] * (len(edges) + 1)
    for b in values:
        hours[band_of(b.mean * scale, edges)] += b.width_ms / HOUR_MS
    return banded(hours, edges, unit)


def temperature_exposure(values: Sequence[Bucket]) -> list[Band]:
    return exposure(values, TEMPERATURE_EDGES_C, " °C")


def c_rate_exposure(power: Sequence[Bucket], rated_energy_kwh: float) -> list[Band]:
    """|P| / rated energy (1/h): a C-rate of 0.5 empties the unit in two hours."""
    return exposure([Bucket(b.start_ms, b.width_ms, abs(b.mean)) for b in power],
                    C_RATE_EDGES, " C", 1.0 / rated_energy_kwh)


POWER_TAG, CELL_TEMP_TAG = "active_power_kw", "cell_temp_max_c"


@dataclass(frozen=True, slots=True)
class BandSpec:
    """What to count minutes of, per band of `edges` (`band_of`): at each minute the
    largest of the `assets`' `tag` — of its magnitude with `magnitude` — times `scale`."""

    tag: str
    edges: tuple[float, ...]
    assets: tuple[str, ...]
    scale: float = 1.0
    magnitude: bool = False

    @property
    def key(self) -> str:
        """The spec in a short exact text — its tag and a digest of all of it (floats by
        repr): the archive's exposure roll-ups are used for a spec only where they were made
        for this very one."""
        whole = json.dumps([self.tag, [repr(e) for e in self.edges], list(self.assets),
                            repr(self.scale), self.magnitude])
        return f"{self.tag}:{hashlib.sha256(whole.encode()).hexdigest()[:32]}"


def c_rate_spec(unit: Unit) -> BandSpec:
    """A unit's C-rate: |P| / rated energy."""
    return BandSpec(POWER_TAG, C_RATE_EDGES, (unit.id,), 1.0 / unit.rated_energy_kwh,
                    magnitude=True)


def temperature_spec(unit: Unit) -> BandSpec:
    """A unit's hottest cell: the largest `cell_temp_max_c` of the unit (as its BMS reports
    it, if it does) and its blocks."""
    return BandSpec(CELL_TEMP_TAG, TEMPERATURE_EDGES_C,
                    (unit.id, *(b.id for inv in unit.inverters for b in inv.blocks)))


def unit_band_specs(unit: Unit) -> tuple[BandSpec, ...]:
    """What the battery-health view counts of a unit: what the archive rolls up per day."""
    return (c_rate_spec(unit), temperature_spec(unit))


def temperature_bands(minutes: Sequence[int]) -> list[Band]:
    """`temperature_exposure` from the minutes counted in each band of `TEMPERATURE_EDGES_C`
    (the hottest block's mean at each minute, `band_of`)."""
    return banded([m / 60 for m in minutes], TEMPERATURE_EDGES_C, " °C")


def c_rate_bands(minutes: Sequence[int]) -> list[Band]:
    """`c_rate_exposure` from the minutes counted in each band of `C_RATE_EDGES` (each
    minute's |P| / rated energy, `band_of`)."""
    return banded([m / 60 for m in minutes], C_RATE_EDGES, " C")


def throughput_buckets(kwh: Mapping[int, float], step_ms: int, start_ms: int, end_ms: int
                       ) -> list[Bucket]:
    """Buckets of `step_ms` (keyed by start, aligned on its multiples) of the energy moved
    either way in each, as power buckets for `efc_at`: each clipped to `[start_ms, end_ms)`,
    its mean the power that moves its energy over its width."""
    out: list[Bucket] = []
    for bucket_ms in sorted(kwh):
        s, e = max(bucket_ms, start_ms), min(bucket_ms + step_ms, end_ms)
        if e > s:
            out.append(Bucket(s, e - s, kwh[bucket_ms] * HOUR_MS / (e - s)))
    return out
