"""Controller health and comms — are our controllers and links healthy, for engineers and the
NOC:

    GET /analytics/comms  ?from=&to=[&site=]   per gateway, and per device under it: the
                          state now (online / degraded / offline), since when and why, and
                          over `[from, to)` the poll latency (p50, p95, max), drop and retry
                          rates, hours in each state and every state change (`read`)

The data are the connectors' device-health events (`bess.device.health`: state changes, and
one poll-figures window per device every `stats_every_s`), placed at their sites by the
flows: each device's current state and last window in Redis (`comms_state_key`,
`comms_stats_key`), every change and window in the history store (`device_states`,
`device_stats`, in SQLite or QuestDB alike). The
answer's `newest_ms` is its newest event: a connector that stopped publishing shows as an
old `newest_ms` (and its devices' last windows long past), not as offline devices.

`from` and `to` as the historian's (ISO-8601 with a UTC offset, `[from, to)`), at most 31
days (one window per device per `stats_every_s`, added up by the store's query). A site the
caller may not see is 404 alike with one that does not exist (as everywhere)."""

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
from connectors.history import HistoryStore
from connectors.history.rows import DeviceStatsTotal
from connectors.redis_store import comms_state_key, comms_stats_key
from contracts.comms import CommsFigures, PollTotals, gateway_state, state_hours
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


def _history(history: HistoryStore, site_ids: list[str], start_ms: int,
             end_ms: int) -> tuple[list[DeviceHealth], list[DeviceStatsTotal]]:
    """The range's state changes (and each device's before it) and its windows added up
    by the store: a month of one-minute windows is ~43,000 rows per device."""
    return (history.device_states(site_ids, start_ms, end_ms),
            history.device_stats(site_ids, start_ms, end_ms))


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
    states, sums = await run_in_threadpool(_history, ctx.history, site_ids, start_ms,
                                           end_ms) if site_ids else ([], [])
    now_ms = int(time.time() * 1000)

    changes: dict[str, list[DeviceHealth]] = defaultdict(list)
    for e in (*states, *current):
        changes[e.device_id].append(e)
    polled: dict[str, PollTotals] = {t.device_id: t.totals for t in sums}
    stored_until = {t.device_id: t.newest_start_ms for t in sums}
    for w in last_windows:  # not in the history yet: counted here
        if start_ms <= w.start_ms < end_ms and w.start_ms > stored_until.get(w.device_id, -1):
            polled[w.device_id] = polled.get(w.device_id, PollTotals()) + PollTotals.of(w)
    # Where each device is: what its newest event naming a gateway says (else its newest).
    seen: dict[str, list[tuple[bool, int, str, str, str | None]]] = defaultdict(list)
    told_all: list[DeviceHealth | DeviceStats] = [*states, *current, *last_windows]
    for event in told_all:
        seen[event.device_id].append((event.gateway is not None, _time(event),
                                      event.site_id or "", event.connector, event.gateway))
    for t in sums:
        seen[t.device_id].append((True, t.newest_end_ms, t.site_id, t.connector, t.gateway))
    now_of = {e.device_id: e for e in current}
    devices: list[CommsDevice] = []
    for device_id, candidates in sorted(seen.items()):
        _, _, site_id, connector, gateway = max(candidates)
        told = sorted({e.ts_ms: e for e in changes.get(device_id, [])}.values(),
                      key=lambda e: e.ts_ms)
        state_now = now_of.get(device_id) or (told[-1] if told else None)
        devices.append(CommsDevice(
            device_id=device_id, site_id=site_id, connector=connector, gateway=gateway,
            state=state_now.state if state_now else None,
            since_ms=state_now.ts_ms if state_now else None,
            reason=state_now.reason if state_now else None,
            hours=dict(state_hours(((e.ts_ms, e.state) for e in told), start_ms,
                                   min(end_ms, now_ms))),
            figures=figures(polled.get(device_id, PollTotals()).figures()),
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
        together = sum((polled.get(d.device_id, PollTotals()) for d in members), PollTotals())
        gateways.append(CommsGateway(
            gateway=name, site_ids=sorted({d.site_id for d in members}),
            state=gateway_state(d.state for d in members), devices_by_state=dict(counts),
            figures=figures(together.figures()), devices=members))
    gateways.sort(key=lambda g: (WORST_FIRST[g.state], g.gateway))
    hot_events: list[DeviceHealth | DeviceStats] = [*current, *last_windows]
    newest_hot = max(map(_time, hot_events), default=None)
    newest_stored = max((*(e.ts_ms for e in states), *(t.newest_end_ms for t in sums)),
                        default=None)
    newest = max((t for t in (newest_hot, newest_stored) if t is not None), default=None)
    return CommsAnswer(
        about=CommsAbout(view="controller health and comms", audience=ABOUT[0],
                         decision=ABOUT[1], sources=[
                             CommsSource(name="redis", what="each device's current state and "
                                         "last stats window (the connectors' device-health "
                                         "events, through the flows)", newest_ms=newest_hot),
                             CommsSource(name="history", what="state changes and stats "
                                         "windows of the range (history store: "
                                         "device_states, device_stats)",
                                         newest_ms=newest_stored)]),
        from_ms=start_ms, to_ms=end_ms, newest_ms=newest, gateways=gateways)
