"""Faults and trips — where reliability work pays, for service managers:

    GET /analytics/faults  ?from=&to=[&site=][&vendor=][&cause=][&level=][&group_by=][&limit=]
                           every unavailability episode of the window (the timeline), and
                           failures, downtime, MTTR and MTBF per cause, vendor, vendor and
                           model, asset level or site, with the totals (`read`)

The episodes are the history store's (its `episodes` read: every episode overlapping the
window, ongoing ones included, with its tickets as stored); the archive's `episodes` table
is a copy of closed days of the same rows, partitioned by the day an episode *started*, so it
cannot say which episodes of earlier days overlap a window and is not read here. The numbers
are contracts/reliability.py's, over the battery units, inverters and DC blocks of the
caller's sites (or of `site`) that match `vendor` and `level`, each counted from its unit's
commissioning; `cause` narrows the episodes counted (operating time stays net of every
cause's downtime).

`from` and `to` as the historian's (ISO-8601 with a UTC offset, `[from, to)`, at most 400
days). A site the caller may not see is 404 alike with one that does not exist (as
everywhere); a vendor that no asset of the caller's sites has is 422, naming theirs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import CtxDep, Reader, visible_site
from api.errors import ERRORS, BadInput
from api.routes.historian import FromQ, ToQ, time_range
from api.views import FaultEpisode, FaultsAnswer, ReliabilityRow
from contracts.events import Cause, UnavailabilityEpisode
from contracts.reliability import (
    UNKNOWN,
    AssetInfo,
    Episode,
    GroupBy,
    Level,
    Reliability,
    fleet_population,
    reliability,
)

router = APIRouter(tags=["analytics"], responses=ERRORS)

FAULTS_MAX_DAYS = 400
MS_PER_HOUR = 3_600_000
CauseKey = Literal[Cause, "unknown"]  # "unknown": episodes without a cause

SiteQ = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="only this site (404 if the caller has none "
                                                "of that id)")]
VendorQ = Annotated[str | None, Query(min_length=1, max_length=64,
                                      description="only assets of this vendor (\"unknown\": "
                                                  "of none given)")]
CauseQ = Annotated[CauseKey | None, Query(description="only episodes of this cause "
                                                      "(\"unknown\": of none)")]
LevelQ = Annotated[Level | None, Query(description="only assets of this level")]
GroupByQ = Annotated[GroupBy, Query(description="the reliability table's groups")]
LimitQ = Annotated[int, Query(ge=1, le=10_000, description="episodes of the timeline at "
                                                           "most, newest first")]


def row(r: Reliability) -> ReliabilityRow:
    return ReliabilityRow(
        key=list(r.key), assets=r.assets, asset_hours=r.asset_hours,
        operating_hours=r.operating_hours, failures=r.failures,
        downtime_hours=r.downtime_hours, repairs=r.repairs, repair_hours=r.repair_hours,
        mttr_hours=r.mttr_hours, mtbf_hours=r.mtbf_hours, open=r.open, derated=r.derated,
        derated_hours=r.derated_hours, comms_hours=r.comms_hours)


def timeline_item(e: UnavailabilityEpisode, asset: AssetInfo) -> FaultEpisode:
    return FaultEpisode(
        episode_id=e.episode_id, asset_id=e.asset_id, level=asset.level,
        site_id=asset.site_id, vendor=asset.vendor, model=asset.model, cause=e.cause,
        state=e.state, start_ms=e.start_ms, end_ms=e.end_ms,
        duration_hours=None if e.end_ms is None else (e.end_ms - e.start_ms) / MS_PER_HOUR,
        lost_hours=e.lost_hours, lost_mwh=e.lost_mwh, tickets=list(e.tickets))


@router.get("/analytics/faults")
async def faults(
        ctx: CtxDep, caller: Reader, start: FromQ, end: ToQ, site: SiteQ = None,
        vendor: VendorQ = None, cause: CauseQ = None, level: LevelQ = None,
        group_by: GroupByQ = "cause", limit: LimitQ = 1_000) -> FaultsAnswer:
    """The faults-and-trips timeline of `[from, to)` (at most 400 days): every
    unavailability episode overlapping it of the caller's battery units, inverters and DC
    blocks — filtered by site, vendor, cause and level — newest first, with the reliability
    table by `group_by` (default cause) and the totals: failures (unavailable episodes
    starting in the window; derated ones counted apart, unknown ones as comms time),
    downtime, MTTR and MTBF in hours."""
    start_ms, end_ms = time_range(start, end, FAULTS_MAX_DAYS)
    sites = [visible_site(ctx.fleet, caller, site)] if site is not None \
        else caller.sites(ctx.fleet)
    everyone = fleet_population(ctx.fleet, [s.id for s in caller.sites(ctx.fleet)])
    if vendor is not None:
        known = sorted({a.vendor or UNKNOWN for a in everyone})
        if vendor not in known:
            raise BadInput("query.vendor", f"no asset of your sites has vendor {vendor!r} "
                           f"(yours: {', '.join(known) or 'none'})")
    in_sites = {s.id for s in sites}
    population = {a.asset_id: a for a in everyone
                  if a.site_id in in_sites
                  and (vendor is None or (a.vendor or UNKNOWN) == vendor)
                  and (level is None or a.level == level)}
    stored: list[UnavailabilityEpisode] = await run_in_threadpool(
        ctx.history.episodes, list(population), start_ms, end_ms) if population else []
    table = reliability((Episode(e.asset_id, e.start_ms, e.end_ms, e.state, e.cause)
                         for e in stored), population.values(), start_ms, end_ms, group_by,
                        only_cause=cause)
    shown = [e for e in stored if cause is None or (e.cause or UNKNOWN) == cause]
    shown.sort(key=lambda e: (-e.start_ms, e.asset_id))
    return FaultsAnswer(
        from_ms=start_ms, to_ms=end_ms, group_by=group_by,
        episodes=[timeline_item(e, population[e.asset_id]) for e in shown[:limit]],
        episodes_total=len(shown), groups=[row(g) for g in table.groups],
        total=row(table.total))
