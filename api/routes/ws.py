"""The live feed, `/api/v1/ws` — the protocol integrators build on (docs/websocket.md has it
with a client example that the tests run). JSON text frames:

    client → {"type": "auth", "token": "…", "batch": true?}   first, within 10 s (again at
                                                      any time to hand over a new token)
    server → {"type": "ready", "heartbeat_s": 15, "batch": …}
    client → {"type": "subscribe", "channel": "fleet" | "site:<id>" | "asset:<id>" |
              "alarms" | "alerts", "since": <seq>?}
    server → {"type": "snapshot", "channel", "seq", "data"}   the whole state, then …
             {"type": "resume", "channel", "seq"}             … or, with `since` still in the
                                                              log, the missed updates follow
    server → {"type": "update", "channel", "seq", "data"}     every change, seq rising
    server → {"type": "batch", "frames": [update, …]}  instead, with "batch": true: the
                                                      updates of a tick (0.1 s) together
    client → {"type": "unsubscribe", "channel"}    server → {"type": "unsubscribed", …}
    client → {"type": "ping"}                      server → {"type": "pong"}
    server → {"type": "heartbeat", "ts_ms"}        every heartbeat_s
    server → {"type": "error", "message"}          a bad request; the socket stays open

Sequence numbers are per channel and shared by every API process: a client that reconnects
(to any of them) subscribes with `since` = the last seq it saw and misses nothing and gets
nothing twice; when the log no longer reaches back that far it gets a fresh snapshot. A
client that cannot keep up gets coalesced updates (the newest state of each thing; skipped
seqs were superseded) and is disconnected only when even those pile up.

The credential is checked again at every heartbeat: a revoked key or an expired token
closes the socket. Close codes: 4401 not authenticated (or no longer), 4408 too slow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.context import ApiContext
from api.live import LiveHub, Message, Subscriber, Subscription
from api.views import redact, shows_money
from connectors import metrics
from connectors.alarm_store import active_alarms
from connectors.live_log import current_seq, since
from connectors.redis_store import alerts_key, latest_key, site_key
from contracts.live import ClientFrame as ClientMessage
from contracts.live import (
    ErrorFrame,
    HeartbeatFrame,
    PongFrame,
    ReadyFrame,
    ResumeFrame,
    SnapshotFrame,
    UnitLatest,
    UnsubscribedFrame,
    batch_frame,
    fleet_site,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])
AUTH_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 10.0


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def source_of(ctx: ApiContext, subscriber: Subscriber, channel: str) -> Subscription | None:
    """The subscription a channel name stands for, if the caller may have it (None: to them
    it does not exist)."""
    fleet = ctx.fleet
    if channel in ("fleet", "alarms", "alerts"):
        return Subscription(channel, channel)
    kind, _, ident = channel.partition(":")
    if kind == "site" and ident in subscriber.sites:
        return Subscription(channel, channel)
    if kind == "asset":
        asset = fleet.assets.get(ident)
        if asset is not None and asset.site_id in subscriber.sites:
            if asset.kind == "site":
                return Subscription(channel, f"site:{asset.id}")
            return Subscription(channel, f"asset:{asset.unit_id}", asset_id=asset.id)
    return None


async def snapshot(ctx: ApiContext, subscriber: Subscriber, sub: Subscription) -> Any:
    redis = ctx.redis
    assert redis is not None
    money = subscriber.money

    def shaped(raw: bytes | str | None) -> Any:
        if not raw:
            return None
        data = json.loads(raw)
        return data if money else redact(data)

    if sub.source == "fleet":
        sites = sorted(subscriber.sites)
        values = await redis.mget([site_key(s) for s in sites]) if sites else []
        return [fleet_site(shaped(v)) for v in values if v]
    if sub.source.startswith("site:"):
        return shaped(await redis.get(site_key(sub.source.removeprefix("site:"))))
    if sub.source.startswith("asset:"):
        raw = await redis.get(latest_key(sub.source.removeprefix("asset:")))
        assert sub.asset_id is not None
        part = UnitLatest.model_validate_json(raw).part(sub.asset_id) if raw else None
        return None if part is None else part.model_dump(mode="json")
    if sub.source == "alarms":
        from api.views import alarm_view

        alarms = await active_alarms(redis, sorted(subscriber.sites), int(time.time() * 1000))
        return [alarm_view(a).model_dump() for a in alarms]
    pipe = redis.pipeline(transaction=False)
    for s in sorted(subscriber.sites):
        pipe.hvals(alerts_key(s))
    return [json.loads(v) for values in await pipe.execute() for v in values]


async def send_frame(ws: WebSocket, frame: BaseModel) -> None:
    """A server frame (contracts/live.py) as a JSON text frame."""
    await ws.send_text(frame.model_dump_json())
    metrics.WS_FRAMES.labels(str(getattr(frame, "type", "other"))).inc()


async def close(ws: WebSocket, code: int, reason: str) -> None:
    """Close the socket (it may be gone already), counted by code."""
    metrics.WS_CLOSED.labels(str(code)).inc()
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)


async def start(ctx: ApiContext, hub: LiveHub, ws: WebSocket, subscriber: Subscriber,
                sub: Subscription, since_seq: int | None) -> None:
    redis = ctx.redis
    assert redis is not None
    hub.subscribe(subscriber, sub)  # first: nothing published meanwhile is lost (held)
    replay = await since(redis, sub.source, since_seq) if since_seq is not None else None
    if replay is not None:
        sub.last_seq = since_seq or 0
        await send_frame(ws, ResumeFrame(channel=sub.name,
                                         seq=replay[-1][0] if replay else sub.last_seq))
        for seq, payload in replay:
            subscriber.deliver(sub, Message(sub.source, seq, payload))
    else:
        sub.last_seq = await current_seq(redis, sub.source)
        await send_frame(ws, SnapshotFrame(channel=sub.name, seq=sub.last_seq,
                                           data=await snapshot(ctx, subscriber, sub)))
    subscriber.start_live(sub)


async def authenticate(ctx: ApiContext, token: str | None) -> Principal:
    try:
        return await run_in_threadpool(ctx.auth.authenticate, token)
    except InvalidToken as exc:
        raise Closed(4401, str(exc)) from None


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    ctx: ApiContext = websocket.app.state.ctx
    hub = ctx.hub
    assert hub is not None
    await websocket.accept()
    try:
        first = ClientMessage.model_validate_json(
            await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S))
        if first.type != "auth":
            raise Closed(4401, 'the first message must be {"type": "auth", "token": ...}')
        principal = await authenticate(ctx, first.token)
    except (TimeoutError, ValidationError, WebSocketDisconnect):
        await close(websocket, 4401, "authentication required")
        return
    except Closed as closed:
        await close(websocket, closed.code, closed.reason)
        return
    credential = first.token
    heartbeat_s = ctx.settings.ws_heartbeat_s
    subscriber = Subscriber(principal, ctx.fleet, shows_money(principal), batch=first.batch)
    await send_frame(websocket, ReadyFrame(heartbeat_s=heartbeat_s, subject=principal.subject,
                                           role=principal.role, batch=subscriber.batch))

    async def receive() -> None:
        nonlocal credential
        while True:
            raw = await websocket.receive_text()
            try:
                msg = ClientMessage.model_validate_json(raw)
            except ValidationError:
                await send_frame(websocket, ErrorFrame(message="not a valid message"))
                continue
            if msg.type == "ping":
                await send_frame(websocket, PongFrame())
            elif msg.type == "auth":
                renewed = await authenticate(ctx, msg.token)
                if renewed.subject != principal.subject:
                    await send_frame(websocket, ErrorFrame(
                        message="a new token must be for the same subject"))
                    continue
                credential = msg.token
                await send_frame(websocket, ReadyFrame(heartbeat_s=heartbeat_s,
                                                       subject=renewed.subject,
                                                       role=renewed.role,
                                                       batch=subscriber.batch))
            elif msg.type in ("subscribe", "unsubscribe"):
                sub = source_of(ctx, subscriber, msg.channel or "")
                if sub is None:
                    await send_frame(websocket, ErrorFrame(
                        message=f"unknown channel {msg.channel!r}"))
                elif msg.type == "subscribe":
                    await start(ctx, hub, websocket, subscriber, sub, msg.since)
                else:
                    hub.unsubscribe(subscriber, sub.name)
                    await send_frame(websocket, UnsubscribedFrame(channel=sub.name))
            else:
                await send_frame(websocket, ErrorFrame(
                    message=f"unknown message type {msg.type!r}"))

    async def send() -> None:
        while True:
            await subscriber.wake.wait()
            if subscriber.overflowed:
                raise Closed(4408, "too slow to keep up: reconnect and resume")
            frames = subscriber.take()
            if not frames:
                continue
            try:  # what is waiting goes within SEND_TIMEOUT_S, or the client is too slow
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    if subscriber.batch:
                        await websocket.send_text(batch_frame(frames))
                    else:
                        for frame in frames:
                            await websocket.send_text(frame)
            except TimeoutError:
                raise Closed(4408, "too slow to keep up: reconnect and resume") from None
            updates_sent.inc(len(frames))

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(heartbeat_s)
            await authenticate(ctx, credential)  # revoked or expired: Closed(4401)
            await send_frame(websocket, HeartbeatFrame(ts_ms=int(time.time() * 1000)))

    updates_sent = metrics.WS_FRAMES.labels("update")
    tasks = [asyncio.create_task(t()) for t in (receive, send, heartbeat)]
    metrics.WS_CLIENTS.inc()
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, Closed):
                await close(websocket, exc.code, exc.reason)
            elif exc is not None and not isinstance(exc, WebSocketDisconnect):
                # Redis gone, a bug: closed with a code the client reconnects on, never left
                # open with nothing serving it.
                log.error("live feed of %s failed: %r", principal.subject, exc)
                await close(websocket, 1011, "internal error: reconnect")
    finally:
        metrics.WS_CLIENTS.dec()
        hub.unsubscribe(subscriber)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
