"""The live feed, `/api/v1/ws`. Protocol (JSON text frames):

    client → {"type": "auth", "token": "..."}                 first frame, within 10 s
    server → {"type": "ready"}
    client → {"type": "subscribe", "channel": "fleet" | "site:<id>"}
    server → {"type": "snapshot", "channel": ..., "data": [site, ...] | site | null}
    server → {"type": "update", "channel": ..., "data": site}  on every change
    client → {"type": "unsubscribe", "channel": ...}
    server → {"type": "error", "message": ...}                 a bad request; the socket stays

A site is a `SiteAvailability` (contracts/events.py). Close codes: 4401 not authenticated,
4408 too slow to keep up."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from api.auth import Unauthenticated, authenticate
from api.live import LiveHub, Subscriber
from connectors.redis_store import site_key
from contracts.fleet import Fleet

router = APIRouter(tags=["live"])
AUTH_TIMEOUT_S = 10.0


class ClientMessage(BaseModel):
    type: str
    channel: str | None = None
    token: str | None = None


async def _snapshot(websocket: WebSocket, channel: str) -> Any:
    fleet: Fleet = websocket.app.state.fleet
    redis = websocket.app.state.redis
    if channel == "fleet":
        values = await redis.mget([site_key(s.id) for s in fleet.sites])
        return [json.loads(v) for v in values if v]
    value = await redis.get(site_key(channel.removeprefix("site:")))
    return json.loads(value) if value else None


def _valid_channel(fleet: Fleet, channel: str | None) -> bool:
    if channel == "fleet":
        return True
    return bool(channel and channel.startswith("site:")
                and any(s.id == channel[5:] for s in fleet.sites))


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        first = ClientMessage.model_validate_json(
            await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S))
        if first.type != "auth":
            raise Unauthenticated("the first message must be {\"type\": \"auth\", ...}")
        authenticate(first.token, websocket.app.state.token)
    except (TimeoutError, ValidationError, Unauthenticated, WebSocketDisconnect) as exc:
        reason = str(exc) if isinstance(exc, Unauthenticated) else "authentication required"
        with contextlib.suppress(Exception):
            await websocket.close(code=4401, reason=reason)
        return
    await websocket.send_json({"type": "ready"})

    hub: LiveHub = websocket.app.state.hub
    subscriber = Subscriber()
    sender = asyncio.create_task(_send(websocket, subscriber))
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                msg = ClientMessage.model_validate_json(raw)
            except ValidationError:
                await websocket.send_json({"type": "error", "message": "not a valid message"})
                continue
            if msg.type in ("subscribe", "unsubscribe") and not _valid_channel(
                    websocket.app.state.fleet, msg.channel):
                await websocket.send_json({"type": "error",
                                           "message": f"unknown channel {msg.channel!r}"})
            elif msg.type == "subscribe" and msg.channel:
                hub.subscribe(subscriber, msg.channel)  # first, so nothing falls in between
                await websocket.send_json({"type": "snapshot", "channel": msg.channel,
                                           "data": await _snapshot(websocket, msg.channel)})
            elif msg.type == "unsubscribe" and msg.channel:
                hub.unsubscribe(subscriber, msg.channel)
            else:
                await websocket.send_json({"type": "error",
                                           "message": f"unknown message type {msg.type!r}"})
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(subscriber)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


async def _send(websocket: WebSocket, subscriber: Subscriber) -> None:
    overflow = asyncio.create_task(subscriber.overflowed.wait())
    try:
        while True:
            get = asyncio.create_task(subscriber.queue.get())
            done, _ = await asyncio.wait({get, overflow}, return_when=asyncio.FIRST_COMPLETED)
            if overflow in done:
                get.cancel()
                await websocket.close(code=4408, reason="client too slow; reconnect")
                return
            channel, payload = get.result()
            await websocket.send_text(
                f'{{"type":"update","channel":{json.dumps(channel)},"data":{payload.decode()}}}')
    finally:
        overflow.cancel()
