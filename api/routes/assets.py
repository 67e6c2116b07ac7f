"""Any asset — site, battery unit, inverter or DC block — in detail, and its history:

    GET /assets/{id}                 live values, status, availability, active alarms, open
                                     unavailability episodes and linked tickets
    GET /assets/{id}/availability    per day / hour / measurement period, from the history
    GET /assets/{id}/status          status intervals, from the history
    GET /assets/{id}/telemetry       one tag downsampled to `step`, from the history
    GET /assets/{id}/tickets         the tickets on the asset, above it and below it
    GET /assets/{id}/episodes        unavailability episodes with their tickets, history

Time ranges are `start` and `end` in epoch milliseconds, `[start, end)`, at most 400 days."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import MAX_EPOCH_MS, CtxDep, FleetDep, Reader, RedisDep, visible_asset
from api.errors import ERRORS, BadInput
from api.pagination import CursorQ, LimitQ, Page, page
from api.views import (
    AssetDetail,
    AvailabilityPoint,
    LiveStatus,
    StatusInterval,
    TelemetryPoint,
    alarm_view,
)
from connectors.alarm_store import active_alarms
from connectors.history.rows import AvailabilityRow, Bucket, StatusIntervalRow, TelemetryRow
from connectors.redis_store import episodes_key, latest_key, site_key, tickets_key
from contracts.events import TicketEvent, UnavailabilityEpisode
from contracts.fleet import Asset, Fleet

router = APIRouter(prefix="/assets", tags=["assets"], responses=ERRORS)
MAX_RANGE_MS = 400 * 86_400_000
MAX_POINTS = 5_000
StartQ = Annotated[int, Query(ge=0, le=MAX_EPOCH_MS, description="epoch ms, inclusive")]
EndQ = Annotated[int, Query(gt=0, le=MAX_EPOCH_MS, description="epoch ms, exclusive")]


def time_range(start: int, end: int) -> tuple[int, int]:
    """The range, if it is one this API answers (422 otherwise)."""
    if not start < end:
        raise BadInput("query.end", "must be after start")
    if end - start > MAX_RANGE_MS:
        raise BadInput("query.end", "the range is at most 400 days")
    return start, end


def lineage(fleet: Fleet, asset: Asset) -> set[str]:
    """The asset, everything above it and everything below it."""
    out = {asset.id}
    parent = asset.parent_id
    while parent is not None:
        out.add(parent)
        parent = fleet.assets[parent].parent_id
    stack = list(asset.children)
    while stack:
        child = stack.pop()
        out.add(child)
        stack.extend(fleet.assets[child].children)
    return out


def subtree(fleet: Fleet, asset: Asset) -> set[str]:
    out, stack = {asset.id}, list(asset.children)
    while stack:
        child = stack.pop()
        out.add(child)
        stack.extend(fleet.assets[child].children)
    return out


async def site_tickets(redis: RedisDep, site_id: str) -> list[TicketEvent]:
    raw = await redis.hgetall(tickets_key(site_id))
    return [TicketEvent.model_validate_json(v) for v in raw.values()]


def ticket_order(t: TicketEvent) -> tuple[int, int]:
    rank = {"open": 0, "in_progress": 0, "resolved": 1}
    return rank.get(t.status, 1), -t.updated_ms


@router.get("/{asset_id}")
async def get_asset(asset_id: str, fleet: FleetDep, redis: RedisDep,
                    caller: Reader) -> AssetDetail:
    asset = visible_asset(fleet, caller, asset_id)
    below = subtree(fleet, asset)
    values: dict[str, float] = {}
    live = LiveStatus()
    windows: dict[str, float | None] = {}
    ts_ms = None
    if asset.kind == "site":
        raw = await redis.get(site_key(asset.id))
        if raw:
            snapshot = json.loads(raw)
            windows, ts_ms = snapshot["windows"], snapshot["ts_ms"]
            live = LiveStatus(last_hour_pct=windows.get("last_hour"),
                              today_pct=windows.get("today"))
    else:
        assert asset.unit_id is not None
        raw = await redis.get(latest_key(asset.unit_id))
        if raw:
            latest = json.loads(raw)
            ts_ms = latest["ts_ms"]
            values = latest["assets"].get(asset.id, {})
            own = latest["status"].get(asset.id)
            if own is not None:
                live = LiveStatus(**own)
                windows = {"last_hour": own.get("last_hour_pct"),
                           "today": own.get("today_pct")}
        if asset.kind == "unit":  # the effective status, children rolled up
            snap = await redis.get(site_key(asset.site_id))
            if snap:
                unit = next((u for u in json.loads(snap)["units"] if u["id"] == asset.id), None)
                if unit is not None:
                    live = live.model_copy(update={k: unit[k] for k in
                                                   ("state", "cause", "derate_fraction")})
    now_ms = int(time.time() * 1000)
    alarms = [alarm_view(a) for a in await active_alarms(redis, [asset.site_id], now_ms)
              if a.breach.asset_id in below]
    episodes_raw = await redis.hgetall(episodes_key(asset.site_id))
    episodes = sorted((e for e in (UnavailabilityEpisode.model_validate_json(v)
                                   for v in episodes_raw.values()) if e.asset_id in below),
                      key=lambda e: (e.start_ms, e.asset_id))
    related = lineage(fleet, asset)
    tickets = sorted((t for t in await site_tickets(redis, asset.site_id)
                      if t.asset_id in related), key=ticket_order)
    return AssetDetail(id=asset.id, kind=asset.kind, site_id=asset.site_id,
                       unit_id=asset.unit_id, parent_id=asset.parent_id,
                       children=list(asset.children), rated_power_kw=asset.rated_power_kw,
                       rated_energy_kwh=asset.rated_energy_kwh, ts_ms=ts_ms, values=values,
                       status=live, windows=windows, alarms=alarms, episodes=episodes,
                       tickets=tickets)


@router.get("/{asset_id}/tickets")
async def asset_tickets(asset_id: str, fleet: FleetDep, redis: RedisDep, caller: Reader,
                        ticket_status: Annotated[str | None, Query(
                            alias="status", pattern="^(open|in_progress|resolved)$")] = None,
                        limit: LimitQ = 100, cursor: CursorQ = None) -> Page[TicketEvent]:
    """Tickets on the asset, its parents and its children: open and in progress first,
    newest change first."""
    asset = visible_asset(fleet, caller, asset_id)
    related = lineage(fleet, asset)
    tickets = sorted((t for t in await site_tickets(redis, asset.site_id)
                      if t.asset_id in related
                      and (ticket_status is None or t.status == ticket_status)),
                     key=ticket_order)
    return page(tickets, cursor, limit)


def _point(r: AvailabilityRow) -> AvailabilityPoint:
    return AvailabilityPoint(start_ms=r.start_ms, end_ms=r.end_ms, window_hours=r.window_h,
                             excluded_hours=r.excluded_h, lost_hours=r.lost_h,
                             availability_pct=r.availability_pct)


@router.get("/{asset_id}/availability")
async def availability_history(
        asset_id: str, ctx: CtxDep, caller: Reader,
        start: StartQ, end: EndQ,
        interval: Bucket = "day") -> list[AvailabilityPoint]:
    """A battery unit's availability per site-local day (or hour, or the contract's
    measurement periods: month, quarter, contract_year), oldest first."""
    asset = visible_asset(ctx.fleet, caller, asset_id)
    span = time_range(start, end)
    rows = await run_in_threadpool(ctx.history.availability, [asset.id], interval,
                                   *span)
    return [_point(r) for r in rows]


@router.get("/{asset_id}/status")
async def status_history(
        asset_id: str, ctx: CtxDep, caller: Reader,
        start: StartQ, end: EndQ,
        limit: LimitQ = 100, cursor: CursorQ = None) -> Page[StatusInterval]:
    """The asset's final status intervals overlapping the range, oldest first (the status
    timeline)."""
    asset = visible_asset(ctx.fleet, caller, asset_id)
    span = time_range(start, end)
    rows: list[StatusIntervalRow] = await run_in_threadpool(
        ctx.history.status_intervals, [asset.id], *span)
    items = [StatusInterval(start_ms=r.start_ms, end_ms=r.end_ms, state=r.state,
                            derate_fraction=r.derate_fraction, cause=r.cause) for r in rows]
    return page(items, cursor, limit)


@router.get("/{asset_id}/telemetry")
async def telemetry_history(
        asset_id: str, ctx: CtxDep, caller: Reader,
        tag: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
        start: StartQ, end: EndQ,
        step: Annotated[int, Query(ge=60_000, le=MAX_RANGE_MS,
                                   description="bucket width, ms (≥ 1 min)")] = 60_000,
) -> list[TelemetryPoint]:
    """One tag of the asset per `step` (count, min, max, mean, last), oldest first; at most
    5,000 buckets — choose a wider step for a longer range."""
    asset = visible_asset(ctx.fleet, caller, asset_id)
    span = time_range(start, end)
    if (span[1] - span[0]) // step > MAX_POINTS:
        raise BadInput("query.step", f"the range holds more than {MAX_POINTS} steps of "
                       f"{step} ms; choose a wider step")
    rows: list[TelemetryRow] = await run_in_threadpool(
        ctx.history.telemetry, asset.id, tag, *span, step)
    return [TelemetryPoint(start_ms=r.start_ms, count=r.count, min=r.min, max=r.max,
                           mean=r.mean, last=r.last) for r in rows]


@router.get("/{asset_id}/episodes")
async def episode_history(
        asset_id: str, ctx: CtxDep, caller: Reader,
        start: StartQ, end: EndQ,
        limit: LimitQ = 100, cursor: CursorQ = None) -> Page[UnavailabilityEpisode]:
    """Unavailability episodes of the asset and everything below it overlapping the range,
    each with the tickets linked to it: why it was down, and who was on it."""
    asset = visible_asset(ctx.fleet, caller, asset_id)
    span = time_range(start, end)
    rows = await run_in_threadpool(ctx.history.episodes, sorted(subtree(ctx.fleet, asset)),
                                   *span)
    return page(rows, cursor, limit)
