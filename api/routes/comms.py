"""Controller health and comms — are our controllers and links healthy, for engineers and the
NOC:

    GET /analytics/comms  ?from=&to=[&site=]   per gateway, and per device under it: the
                          state now (online / degraded / offline), since when and why, and
                          over `[from, to)` the poll latency (p50, p95, max), drop and retry
                          rates, hours in each state and every state change (`read`)

The data are the connectors' device-health events (`bess.device.health`: state changes, and
one poll-figures window per device every `stats_every_s`), placed at their sites by the
flows: each device's current state and last window in Redis (`comms_state_key`,
`comms_stats_key`), every change and window in the history store (`device_health`). The
answer's `newest_ms` is its newest event: a connector that stopped publishing shows as an
old `newest_ms` (and its devices' last windows long past), not as offline devices.

`from` and `to` as the historian's (ISO-8601 with a UTC offset, `[from, to)`), at most 31
days: the history is read window by window (one row per device per `stats_every_s`). A site
the caller may not see is 404 alike with one that does not exist (as everywhere)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import CtxDep, Reader, visible_site
from api.errors import ERRORS
from api.routes.historian import FromQ, ToQ, time_range
from api.views import (
    CommsAbout,
    CommsAnswer,
    CommsDevice,
    CommsFiguresView,
    CommsGateway,
    CommsSource,
    CommsStateChange,
)
from connectors.redis_store import comms_state_key, comms_stats_key
from contracts.comms import CommsFigures, combine, gateway_state, state_hours
from contracts.events import DeviceHealth, DeviceStats, device_health_event

router = APIRouter(tags=["analytics"], responses=ERRORS)

COMMS_MAX_DAYS = 31
UNKNOWN_GATEWAY = "unknown"
WORST_FIRST = {"offline": 0, "degraded": 1, "online": 2, None: 3}

SiteQ = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="only this site (404 if the caller has none "
                                                "of that id)")]

ABOUT = ("Engineers and NOC operators",
         "Which controllers and links to fix first: a gateway or controller that is offline, "
         "flapping, slow or dropping polls — before its data gaps cost availability")


def figures(f: CommsFigures) -> CommsFiguresView:
    return CommsFiguresView(
        windows=f.windows, polls=f.polls, failed=f.failed, retries=f.retries,
        drop_rate=f.drop_rate, retry_rate=f.retry_rate, latency_p50_ms=f.latency_p50_ms,
        latency_p95_ms=f.latency_p95_ms, latency_max_ms=f.latency_max_ms)


def _events(values: Iterable[bytes]) -> list[DeviceHealth | DeviceStats]:
    out = []
    for value in values:
        try:
            out.append(device_health_event(value))
        except ValueError:  # written by the flows, validated there: never expected
            continue
    return out


def _time(e: DeviceHealth | DeviceStats) -> int:
    return e.ts_ms if isinstance(e, DeviceHealth) else e.end_ms


@router.get("/analytics/comms")
async def comms(ctx: CtxDep, caller: Reader, start: FromQ, end: ToQ,
                site: SiteQ = None) -> CommsAnswer:
    """Controller health and comms of the caller's sites (or of `site`) over `[from, to)`
    (at most 31 days): per gateway and device the state now, since when and why, poll
    latency p50 / p95 / max, drop and retry rates, hours online / degraded / offline and
    the state changes; worst gateways first."""
    start_ms, end_ms = time_range(start, end, COMMS_MAX_DAYS)
    sites = [visible_site(ctx.fleet, caller, site)] if site is not None \
        else caller.sites(ctx.fleet)
    site_ids = [s.id for s in sites]
    redis = ctx.redis
    assert redis is not None, "the app's lifespan sets it"
    pipe = redis.pipeline(transaction=False)
    for s in site_ids:
        pipe.hvals(comms_state_key(s))
        pipe.hvals(comms_stats_key(s))
    hot: list[list[bytes]] = await pipe.execute() if site_ids else []
    current = [e for values in hot[0::2] for e in _events(values)
               if isinstance(e, DeviceHealth)]
    last_windows = [e for values in hot[1::2] for e in _events(values)
                    if isinstance(e, DeviceStats)]
    stored = await run_in_threadpool(ctx.history.device_health, site_ids, start_ms,
                                     end_ms) if site_ids else []
    now_ms = int(time.time() * 1000)

    changes: dict[str, list[DeviceHealth]] = defaultdict(list)
    windows: dict[str, list[DeviceStats]] = defaultdict(list)
    latest: dict[str, DeviceHealth | DeviceStats] = {}  # the newest event naming a gateway
    for e in (*stored, *last_windows, *current):
        if isinstance(e, DeviceHealth):
            changes[e.device_id].append(e)
        elif start_ms <= e.start_ms < end_ms:
            windows[e.device_id].append(e)
        before = latest.get(e.device_id)
        if before is None or (e.gateway is not None and _time(e) >= _time(before)):
            latest[e.device_id] = e
    now_of = {e.device_id: e for e in current}
    devices: list[CommsDevice] = []
    for device_id, named in sorted(latest.items()):
        # The last window is in Redis and in the history: once each (by its start).
        mine = list({w.start_ms: w for w in windows.get(device_id, [])}.values())
        told = sorted({e.ts_ms: e for e in changes.get(device_id, [])}.values(),
                      key=lambda e: e.ts_ms)
        state_now = now_of.get(device_id) or (told[-1] if told else None)
        devices.append(CommsDevice(
            device_id=device_id, site_id=named.site_id or "", connector=named.connector,
            gateway=named.gateway,
            state=state_now.state if state_now else None,
            since_ms=state_now.ts_ms if state_now else None,
            reason=state_now.reason if state_now else None,
            hours=dict(state_hours(((e.ts_ms, e.state) for e in told), start_ms,
                                   min(end_ms, now_ms))),
            figures=figures(combine(mine)),
            changes=[CommsStateChange(ts_ms=e.ts_ms, state=e.state, previous=e.previous,
                                      reason=e.reason,
                                      consecutive_failures=e.consecutive_failures)
                     for e in told if start_ms <= e.ts_ms < end_ms]))
    by_gateway: dict[str, list[CommsDevice]] = defaultdict(list)
    for d in devices:
        by_gateway[d.gateway or UNKNOWN_GATEWAY].append(d)
    gateways = []
    for name, members in by_gateway.items():
        counts: dict[str, int] = defaultdict(int)
        for d in members:
            counts[d.state or "unknown"] += 1
        gateways.append(CommsGateway(
            gateway=name, site_ids=sorted({d.site_id for d in members}),
            state=gateway_state(d.state for d in members), devices_by_state=dict(counts),
            figures=figures(combine(w for d in members for w in
                                    {x.start_ms: x for x in windows.get(d.device_id, [])
                                     }.values())),
            devices=members))
    gateways.sort(key=lambda g: (WORST_FIRST[g.state], g.gateway))
    hot_events: list[DeviceHealth | DeviceStats] = [*current, *last_windows]
    newest_hot = max(map(_time, hot_events), default=None)
    newest_stored = max(map(_time, stored), default=None)
    newest = max((t for t in (newest_hot, newest_stored) if t is not None), default=None)
    return CommsAnswer(
        about=CommsAbout(view="controller health and comms", audience=ABOUT[0],
                         decision=ABOUT[1], sources=[
                             CommsSource(name="redis", what="each device's current state and "
                                         "last stats window (the connectors' device-health "
                                         "events, through the flows)", newest_ms=newest_hot),
                             CommsSource(name="history", what="state changes and stats "
                                         "windows of the range (history store, device_health)",
                                         newest_ms=newest_stored)]),
        from_ms=start_ms, to_ms=end_ms, newest_ms=newest, gateways=gateways)
