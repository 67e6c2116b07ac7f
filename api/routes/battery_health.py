"""Battery health — how fast the batteries age, for asset owners and service managers
planning warranty claims and augmentation:

    GET /analytics/battery-health  ?from=&to=[&site=][&unit=][&points=]   per battery unit of
                                   the caller's sites (or of `site`, or one `unit`): its SOH
                                   series, the fade fit (per year and per 1,000 equivalent
                                   full cycles, 95 % bands), the projected end-of-life date,
                                   an augmentation hint, temperature and C-rate exposure
                                   (`read`)

The numbers are contracts/battery_health.py's, from the historian
(connectors/archive/historian.py: the archive's closed days, the history store's others) of
each unit's `soh_pct` and `active_power_kw` and its blocks' `cell_temp_max_c`:

- the fit's samples are the SOH's means in buckets of `FIT_STEP_MS` — or of whole days when
  the window holds more than `FIT_BUCKETS` of those (about 21 days): read from the archive's
  daily roll-ups then, so a year costs no more than a month;
- the cycles by each sample are the energy the unit's power moved either way, summed minute
  by minute, per bucket of the same width (the roll-ups' charged and discharged energy for
  whole days);
- the exposure is counted minute by minute in the store that holds the minutes (DuckDB for
  the archive), or read from the archive's exposure roll-ups for whole days: the C-rate of
  each minute's |P|; the temperature of the unit's hottest cell (the largest
  `cell_temp_max_c` of the unit, if its BMS reports one, and its blocks at each minute);
- the SOH series shown is in buckets of the fit's width or wider, at most `points`.

The end-of-life threshold is the site contract's `warranty.end_of_life_soh_pct`, else 70 %;
the augmentation's horizon is the contract's end (no contract: no hint).

`from` and `to` as the historian's (ISO-8601 with a UTC offset, `[from, to)`, at most 400
days). A site or unit the caller may not see is 404 alike with one that does not exist; an
asset that is not a battery unit, or a unit outside `site`, is 422."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
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
from connectors.archive.historian import DAY_MS, MINUTE_MS, Historian
from connectors.history.rows import TelemetryRow
from contracts.battery_health import (
    C_RATE_EDGES,
    DEFAULT_END_OF_LIFE_SOH_PCT,
    TEMPERATURE_EDGES_C,
    Band,
    Bucket,
    FadeFit,
    Rate,
    Sample,
    augmentation,
    c_rate_bands,
    c_rate_spec,
    efc_at,
    equivalent_full_cycles,
    fit_fade,
    project,
    temperature_bands,
    temperature_spec,
    throughput_buckets,
)
from contracts.contract import Contract
from contracts.fleet import Site, Unit

router = APIRouter(tags=["analytics"], responses=ERRORS)

HEALTH_MAX_DAYS = 400
FIT_STEP_MS = 15 * 60_000  # the fit's buckets: 15 minutes …
FIT_BUCKETS = 2_000  # … while the window holds at most this many of them; whole days beyond
SOH, POWER, CELL_TEMP = "soh_pct", "active_power_kw", "cell_temp_max_c"

UnitQ = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="only this battery unit (404 if the caller "
                                                "has none of that id)")]
PointsQ = Annotated[int, Query(ge=2, le=5_000, description="at most this many points in each "
                                                           "unit's SOH series")]


def fit_step(start_ms: int, end_ms: int) -> int:
    step = max(FIT_STEP_MS, bucket_step(start_ms, end_ms, FIT_BUCKETS))
    return step if step == FIT_STEP_MS else -(-step // DAY_MS) * DAY_MS


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


@dataclass(frozen=True)
class Steps:
    fit: int
    shown: int


@dataclass(frozen=True)
class Inputs:
    """What the historian gave for one unit (`Historian` methods, `fleet_health`)."""

    soh: list[TelemetryRow]  # buckets of the fit's step
    shown: list[TelemetryRow]  # buckets of the series' step
    throughput: dict[int, float]  # kWh moved either way per bucket of the fit's step
    c_rate: list[int]  # minutes per band of C_RATE_EDGES
    temperature: list[int]  # minutes per band of TEMPERATURE_EDGES_C


def unit_health(site: Site, unit: Unit, contract: Contract | None, data: Inputs,
                start_ms: int, end_ms: int, steps: Steps) -> UnitHealth:
    """One unit's answer from what the historian gave for it."""
    step = steps.fit
    power = throughput_buckets(data.throughput, step, start_ms, end_ms)
    rated = unit.rated_energy_kwh
    found = fit_fade(samples(data.soh, power, rated, start_ms, end_ms, step))
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
    latest = max((r.start_ms + step for r in data.soh), default=None)
    return UnitHealth(
        unit_id=unit.id, site_id=site.id, vendor=unit.vendor, model=unit.model,
        rated_energy_mwh=rated / 1000, commissioned=unit.commissioned.isoformat(),
        soh=[SohPoint.model_construct(start_ms=r.start_ms, min=r.min, avg=r.mean, max=r.max)
             for r in data.shown],
        soh_step_ms=steps.shown, fit_step_ms=step, power_step_ms=MINUTE_MS,
        efc=equivalent_full_cycles(sum(data.throughput.values()), rated),
        fit=fit, no_fit_reason=reason, projection=projection, augmentation=hint,
        threshold_pct=threshold, threshold_source=source,
        data_to_ms=None if latest is None else min(latest, end_ms),
        temperature_hours=bands_out(temperature_bands(data.temperature)),
        c_rate_hours=bands_out(c_rate_bands(data.c_rate)))


def fleet_health(h: Historian, units: list[tuple[Site, Unit]],
                 contracts: dict[str, Contract], start_ms: int, end_ms: int, points: int
                 ) -> list[UnitHealth]:
    """Every unit's answer; what it needs read for all of them at once (one archive query
    per site, segment and kind)."""
    fit = fit_step(start_ms, end_ms)
    steps = Steps(fit, max(fit, bucket_step(start_ms, end_ms, points)))
    ids = [u.id for _, u in units]
    with ThreadPoolExecutor(3) as pool:  # three reads at once: mostly waiting on files
        soh_read = pool.submit(h.buckets, [(i, SOH) for i in ids], start_ms, end_ms, fit)
        moved_read = pool.submit(h.throughput, ids, POWER, start_ms, end_ms, fit)
        bands_read = pool.submit(h.band_minutes, [
            {u.id: c_rate_spec(u) for _, u in units},
            {u.id: temperature_spec(u) for _, u in units}], start_ms, end_ms)
        soh = soh_read.result()
        shown = soh if steps.shown == fit else h.buckets(
            [(i, SOH) for i in ids], start_ms, end_ms, steps.shown)
        moved = moved_read.result()
        c_rate, temperature = bands_read.result()
    none_c, none_t = [0] * (len(C_RATE_EDGES) + 1), [0] * (len(TEMPERATURE_EDGES_C) + 1)
    return [unit_health(site, u, contracts.get(site.id), Inputs(
        soh[(u.id, SOH)], shown[(u.id, SOH)], moved.get(u.id, {}), c_rate.get(u.id, none_c),
        temperature.get(u.id, none_t)), start_ms, end_ms, steps) for site, u in units]


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
