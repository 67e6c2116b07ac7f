"""Battery health — how fast the batteries age, for asset owners and service managers
planning warranty claims and augmentation:

    GET /analytics/battery-health  ?from=&to=[&site=][&unit=][&points=]   per battery unit of
                                   the caller's sites (or of `site`, or one `unit`): its SOH
                                   series, the fade fit (per year and per 1,000 equivalent
                                   full cycles, 95 % bands), the projected end-of-life date,
                                   an augmentation hint, temperature and C-rate exposure
                                   (`read`)

The numbers are contracts/battery_health.py's, on the historian's buckets
(connectors/archive/historian.py: the archive's closed days, the history store's others) of
each unit's `soh_pct` and `active_power_kw` and its blocks' `cell_temp_max_c` (the unit's
temperature: the hottest block's mean in each bucket). The fit and the temperatures use
buckets of `FIT_STEP_MS` or wider (at most `FIT_BUCKETS` over the window); the power — the
cycles and the C-rate — finer ones (at most `POWER_BUCKETS`: a sign change inside a bucket
loses throughput, and a long bucket smooths the C-rate's peaks); the SOH series shown is
downsampled to at most `points`. The end-of-life threshold is the site contract's
`warranty.end_of_life_soh_pct`, else 70 %; the augmentation's horizon is the contract's
end (no contract: no hint).

`from` and `to` as the historian's (ISO-8601 with a UTC offset, `[from, to)`, at most 400
days). A site or unit the caller may not see is 404 alike with one that does not exist; an
asset that is not a battery unit, or a unit outside `site`, is 422."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import CtxDep, Reader, visible_asset, visible_site
from api.errors import ERRORS, BadInput
from api.routes.faults import SiteQ
from api.routes.historian import FromQ, ToQ, bucket_step, historian, time_range
from api.views import (
    AugmentationOut,
    BatteryHealthAnswer,
    ExposureBand,
    FadeFitOut,
    FadeRate,
    ProjectionOut,
    SohPoint,
    UnitHealth,
)
from connectors.archive.historian import Historian, Series
from connectors.history.rows import TelemetryRow
from contracts.battery_health import (
    DEFAULT_END_OF_LIFE_SOH_PCT,
    Band,
    Bucket,
    FadeFit,
    Rate,
    Sample,
    augmentation,
    c_rate_exposure,
    efc_at,
    fit_fade,
    project,
    temperature_exposure,
)
from contracts.contract import Contract
from contracts.fleet import Site, Unit

router = APIRouter(tags=["analytics"], responses=ERRORS)

HEALTH_MAX_DAYS = 400
FIT_STEP_MS = 15 * 60_000  # the fit's and the temperatures' buckets: at least 15 minutes …
FIT_BUCKETS = 2_000  # … and at most this many over the window (400 days: 5 h)
POWER_BUCKETS = 20_000  # the power's: whole minutes, at most this many (a year: 27 min)
SOH, POWER, CELL_TEMP = "soh_pct", "active_power_kw", "cell_temp_max_c"

UnitQ = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="only this battery unit (404 if the caller "
                                                "has none of that id)")]
PointsQ = Annotated[int, Query(ge=2, le=5_000, description="at most this many points in each "
                                                           "unit's SOH series")]


def fit_step(start_ms: int, end_ms: int) -> int:
    return max(FIT_STEP_MS, bucket_step(start_ms, end_ms, FIT_BUCKETS))


def clipped(rows: list[TelemetryRow], start_ms: int, end_ms: int, step: int) -> list[Bucket]:
    """Each bucket as the part of it inside the window."""
    return [Bucket(max(r.start_ms, start_ms), min(r.start_ms + step, end_ms)
                   - max(r.start_ms, start_ms), r.mean) for r in rows]


def hottest(block_rows: list[list[TelemetryRow]], start_ms: int, end_ms: int, step: int
            ) -> list[Bucket]:
    """The unit's temperature per bucket: the hottest of its blocks' means."""
    by_start: dict[int, float] = {}
    for rows in block_rows:
        for r in rows:
            by_start[r.start_ms] = max(r.mean, by_start.get(r.start_ms, r.mean))
    return clipped([TelemetryRow("", "", CELL_TEMP, s, 1, v, v, v, v)
                    for s, v in sorted(by_start.items())], start_ms, end_ms, step)


def samples(soh: list[TelemetryRow], power: list[Bucket], rated_energy_kwh: float,
            start_ms: int, end_ms: int, step: int) -> list[Sample]:
    """Each SOH bucket's mean at the middle of its part of the window, with the cycles done
    by then (the power buckets' throughput, from the window's start)."""
    buckets = clipped(soh, start_ms, end_ms, step)
    middles = [b.start_ms + b.width_ms // 2 for b in buckets]
    return [Sample(t, b.mean, efc) for t, b, efc in zip(
        middles, buckets, efc_at(power, rated_energy_kwh, middles), strict=True)]


def rate_out(r: Rate | None) -> FadeRate | None:
    return None if r is None else FadeRate(value=r.value, low=r.low, high=r.high,
                                           std_error=r.std_error)


def bands_out(bands: list[Band]) -> list[ExposureBand]:
    return [ExposureBand(label=b.label, low=b.low, high=b.high, hours=b.hours) for b in bands]


def iso_date(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def threshold_of(contract: Contract | None) -> tuple[float, str]:
    if contract is not None and contract.warranty is not None \
            and contract.warranty.end_of_life_soh_pct is not None:
        return contract.warranty.end_of_life_soh_pct, "contract"
    return DEFAULT_END_OF_LIFE_SOH_PCT, "default"


def horizon_of(contract: Contract | None) -> dt.date | None:
    if contract is None:
        return None
    start = contract.start
    return start.replace(year=start.year + contract.term_years) \
        if not (start.month == 2 and start.day == 29) \
        else dt.date(start.year + contract.term_years, 3, 1)


def series_of(unit: Unit) -> list[Series]:
    blocks = [b.id for inv in unit.inverters for b in inv.blocks]
    return [(unit.id, SOH), *((b, CELL_TEMP) for b in blocks)]


@dataclass(frozen=True)
class Steps:
    fit: int
    power: int
    shown: int


def unit_health(site: Site, unit: Unit, contract: Contract | None,
                rows: dict[Series, list[TelemetryRow]], power_rows: list[TelemetryRow],
                shown: list[TelemetryRow], start_ms: int, end_ms: int, steps: Steps
                ) -> UnitHealth:
    """One unit's answer from its buckets: `rows` (SOH, cell temperatures) at the fit's
    step, `power_rows` at the power's, `shown` (its SOH) at the series'."""
    step = steps.fit
    blocks = [b.id for inv in unit.inverters for b in inv.blocks]
    power = clipped(power_rows, start_ms, end_ms, steps.power)
    rated = unit.rated_energy_kwh
    found = fit_fade(samples(rows[(unit.id, SOH)], power, rated, start_ms, end_ms, step))
    threshold, source = threshold_of(contract)
    fit = projection = hint = None
    reason = ""
    if isinstance(found, FadeFit):
        p = project(found, threshold)
        a = augmentation(found, p, rated, horizon_of(contract))
        fit = FadeFitOut(
            method=found.method, samples=found.samples, first_ms=found.first_ms,
            last_ms=found.last_ms, per_year=rate_out(found.per_year),
            per_1000_efc=rate_out(found.per_1000_efc), efc=found.efc,
            efc_per_year=found.efc_per_year, at_duty_per_year=rate_out(found.at_duty_per_year),
            soh_now_pct=found.soh_now_pct, rmse_pct=found.rmse_pct, note=found.note)
        projection = ProjectionOut(threshold_pct=p.threshold_pct, threshold_source=source,
                                   reached=p.reached, date=iso_date(p.date),
                                   earliest=iso_date(p.earliest), latest=iso_date(p.latest),
                                   note=p.note)
        hint = None if a is None else AugmentationOut(add_mwh=a.add_mwh, by=a.by.isoformat(),
                                                      horizon=a.horizon.isoformat(),
                                                      text=a.text)
    else:
        reason = found.reason
    latest = max((r.start_ms + step for r in rows[(unit.id, SOH)]), default=None)
    return UnitHealth(
        unit_id=unit.id, site_id=site.id, vendor=unit.vendor, model=unit.model,
        rated_energy_mwh=rated / 1000, commissioned=unit.commissioned.isoformat(),
        soh=[SohPoint(start_ms=r.start_ms, min=r.min, avg=r.mean, max=r.max) for r in shown],
        soh_step_ms=steps.shown, fit_step_ms=step, power_step_ms=steps.power,
        efc=sum(abs(b.mean) * b.width_ms / 3_600_000 for b in power) / (2 * rated),
        fit=fit, no_fit_reason=reason, projection=projection, augmentation=hint,
        threshold_pct=threshold, threshold_source=source,
        data_to_ms=None if latest is None else min(latest, end_ms),
        temperature_hours=bands_out(temperature_exposure(hottest(
            [rows[(b, CELL_TEMP)] for b in blocks], start_ms, end_ms, step))),
        c_rate_hours=bands_out(c_rate_exposure(power, rated)))


def fleet_health(h: Historian, units: list[tuple[Site, Unit]],
                 contracts: dict[str, Contract], start_ms: int, end_ms: int, points: int
                 ) -> list[UnitHealth]:
    """Every unit's answer; the buckets of all of them read at once (one archive query per
    site and segment)."""
    steps = Steps(fit_step(start_ms, end_ms), bucket_step(start_ms, end_ms, POWER_BUCKETS),
                  bucket_step(start_ms, end_ms, points))
    rows = h.buckets([s for _, u in units for s in series_of(u)], start_ms, end_ms, steps.fit)
    power = h.buckets([(u.id, POWER) for _, u in units], start_ms, end_ms, steps.power)
    shown = h.buckets([(u.id, SOH) for _, u in units], start_ms, end_ms, steps.shown)
    return [unit_health(site, u, contracts.get(site.id), rows, power[(u.id, POWER)],
                        shown[(u.id, SOH)], start_ms, end_ms, steps) for site, u in units]


@router.get("/analytics/battery-health")
async def battery_health(
        ctx: CtxDep, caller: Reader, start: FromQ, end: ToQ, site: SiteQ = None,
        unit: UnitQ = None, points: PointsQ = 500) -> BatteryHealthAnswer:
    """Per battery unit of the caller's sites (or of `site`, or the one `unit`) over
    `[from, to)` (at most 400 days): its SOH series (at most `points` buckets), the fade fit
    of SOH against calendar time and equivalent full cycles with 95 % bands, the projected
    date of reaching the warranty's end-of-life SOH, an augmentation hint, and hours per
    temperature and C-rate band. A unit with too little data has no fit, and says why."""
    start_ms, end_ms = time_range(start, end, HEALTH_MAX_DAYS)
    sites = [visible_site(ctx.fleet, caller, site)] if site is not None \
        else caller.sites(ctx.fleet)
    units = [(s, u) for s in sites for u in s.units]
    if unit is not None:
        asset = visible_asset(ctx.fleet, caller, unit)
        if asset.kind != "unit":
            raise BadInput("query.unit", f"{unit!r} is a {asset.kind}, not a battery unit")
        if site is not None and asset.site_id != site:
            raise BadInput("query.unit", f"{unit!r} is not a unit of site {site!r}")
        units = [(s, u) for s, u in units if u.id == unit]
    out = await run_in_threadpool(fleet_health, historian(ctx), units, ctx.contracts,
                                  start_ms, end_ms, points)
    return BatteryHealthAnswer(
        from_ms=start_ms, to_ms=end_ms, units=out,
        data_to_ms=max((u.data_to_ms for u in out if u.data_to_ms is not None), default=None))
