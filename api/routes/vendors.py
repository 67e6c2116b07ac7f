"""Vendor benchmarking — which maker's equipment to buy again, for asset owners and
procurement:

    GET /analytics/vendors  ?from=&to=[&site=][&level=unit|inverter]
                            per vendor and per vendor and model of the caller's sites:
                            installed MW and MWh, time availability, lost MWh, failures,
                            MTBF, MTTR, round-trip efficiency, cycles and fade, normalised
                            per MW or MWh, with each data source's freshness (`read`)

The figures are contracts/benchmarking.py's, over the battery units (`level=unit`, the
battery system's vendor) or the inverters (`level=inverter`, the PCS vendor) of the caller's
sites or of `site`, each counted from its unit's commissioning. Sources: the history store's
status intervals (availability) and episodes (failures, MTBF, MTTR — the same as
/analytics/faults); telemetry `active_power_kw` (efficiency, cycles) and `soh_pct` (fade)
from the analytics archive for the days archived — its daily roll-ups for the whole days,
its minutes for a window's partial first and last — and the history store for the others
(connectors/archive/historian.py). `from` and `to` as the historian's (at most 400 days)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import CtxDep, Reader, visible_site
from api.errors import ERRORS
from api.routes.faults import SiteQ, row
from api.routes.historian import FromQ, ToQ, historian, time_range
from api.views import DataSource, VendorBenchRow, VendorsAnswer
from connectors.archive.historian import Historian
from connectors.history.store import HistoryStore
from contracts.benchmarking import (
    AssetFigures,
    BenchAsset,
    BenchLevel,
    Energy,
    VendorRow,
    benchmark,
    fade_pct_per_year,
    fleet_bench_assets,
    time_availability,
)
from contracts.fleet import Fleet
from contracts.intervals import StatusInterval
from contracts.reliability import Episode

router = APIRouter(tags=["analytics"], responses=ERRORS)

VENDORS_MAX_DAYS = 400
DAY_MS = 86_400_000
US_PER_MS = 1_000
POWER_TAG = "active_power_kw"  # kW at the grid side, > 0 discharging
SOH_TAG = "soh_pct"

LevelQ = Annotated[BenchLevel, Query(description="benchmark the battery units' vendors "
                                                 "(unit) or the inverters' (inverter)")]


def bench_row(r: VendorRow) -> VendorBenchRow:
    return VendorBenchRow(
        key=list(r.key), assets=r.assets, installed_mw=r.installed_mw,
        installed_mwh=r.installed_mwh,
        availability_pct=None if r.availability is None else 100 * r.availability,
        lost_mwh=r.lost_mwh, lost_mwh_per_mwh=r.lost_mwh_per_mwh,
        failures_per_mw_year=r.failures_per_mw_year, reliability=row(r.reliability),
        charge_mwh=r.charge_mwh, discharge_mwh=r.discharge_mwh,
        efficiency_pct=None if r.efficiency is None else 100 * r.efficiency,
        cycles=r.cycles, fade_pct_per_year=r.fade_pct_per_year,
        assets_with_fade=r.assets_with_fade)


def _latest(times: list[int], end_ms: int) -> int | None:
    """The newest of these times, within the window (an interval may end after it)."""
    return min(max(times), end_ms) if times else None


def vendor_table(fleet: Fleet, history: HistoryStore, h: Historian, assets: list[BenchAsset],
                 level: BenchLevel, start_ms: int, end_ms: int) -> VendorsAnswer:
    """The reads and the computation (blocking: run in a worker thread; bench/analytics.py
    times it)."""
    owner: dict[str, str] = {}  # every asset of a benchmarked one's subtree → that one
    for a in assets:
        stack = [a.asset_id]
        while stack:
            asset_id = stack.pop()
            owner[asset_id] = a.asset_id
            stack.extend(fleet.assets[asset_id].children)
    ids = [a.asset_id for a in assets]
    statuses = history.status_intervals(list(owner), start_ms, end_ms) if owner else []
    intervals: dict[str, list[StatusInterval]] = {a: [] for a in ids}
    for s in statuses:
        intervals[owner[s.asset_id]].append(StatusInterval(
            s.asset_id, s.start_ms * US_PER_MS,
            (end_ms if s.end_ms is None else s.end_ms) * US_PER_MS, s.state,
            s.derate_fraction, s.cause))
    stored = history.episodes(ids, start_ms, end_ms) if ids else []
    energy: dict[str, tuple[Energy, int]] = {}
    soh: dict[str, list[tuple[int, float]]] = {}
    if level == "unit" and ids:
        energy = h.energy(ids, POWER_TAG, start_ms, end_ms)
        buckets = h.buckets([(a, SOH_TAG) for a in ids], start_ms, end_ms, DAY_MS)
        soh = {a: [(b.start_ms, b.mean) for b in buckets[(a, SOH_TAG)]] for a in ids}
    figures = []
    for a in assets:
        measured = energy.get(a.asset_id)
        figures.append(AssetFigures(
            a, time_availability(a.asset_id, fleet.assets, intervals[a.asset_id], start_ms,
                                 end_ms),
            None if measured is None else measured[0],
            fade_pct_per_year(soh.get(a.asset_id, []))))
    table = benchmark(figures, (Episode(e.asset_id, e.start_ms, e.end_ms, e.state, e.cause)
                                for e in stored), start_ms, end_ms)
    sources = [
        DataSource(name="history store: status intervals",
                   feeds=["availability_pct", "lost_mwh"],
                   latest_ms=_latest([s.end_ms or s.start_ms for s in statuses], end_ms)),
        DataSource(name="history store: unavailability episodes",
                   feeds=["reliability", "failures_per_mw_year"],
                   latest_ms=_latest([e.end_ms or e.start_ms for e in stored], end_ms)),
    ]
    if level == "unit":
        sources += [
            DataSource(name=f"archive and history store: telemetry {POWER_TAG}",
                       feeds=["charge_mwh", "discharge_mwh", "efficiency_pct", "cycles"],
                       latest_ms=_latest([t for _, t in energy.values()], end_ms)),
            DataSource(name=f"archive and history store: telemetry {SOH_TAG}, daily means",
                       feeds=["fade_pct_per_year"],
                       latest_ms=_latest([p[-1][0] for p in soh.values() if p], end_ms)),
        ]
    return VendorsAnswer(
        from_ms=start_ms, to_ms=end_ms, level=level,
        vendors=[bench_row(r) for r in table.vendors],
        models=[bench_row(r) for r in table.models], total=bench_row(table.total),
        sources=sources)


@router.get("/analytics/vendors")
async def vendors(ctx: CtxDep, caller: Reader, start: FromQ, end: ToQ, site: SiteQ = None,
                  level: LevelQ = "unit") -> VendorsAnswer:
    """Vendor benchmarking over `[from, to)` (at most 400 days): per vendor and per vendor
    and model of the caller's battery units (or inverters), installed MW and MWh, time
    availability (external causes and no-data time excluded), lost MWh per installed MWh,
    failures per MW-year, MTBF and MTTR, round-trip efficiency, equivalent full cycles and
    SOH fade per year — with the data sources and the newest data each had."""
    start_ms, end_ms = time_range(start, end, VENDORS_MAX_DAYS)
    sites = [visible_site(ctx.fleet, caller, site)] if site is not None \
        else caller.sites(ctx.fleet)
    assets = fleet_bench_assets(ctx.fleet, [s.id for s in sites], level)
    return await run_in_threadpool(vendor_table, ctx.fleet, ctx.history, historian(ctx),
                                   assets, level, start_ms, end_ms)
