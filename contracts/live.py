"""The live payloads, defined once: what the flows and the API's alarm actions put in Redis
(`latest:<unit>` and the live channels, connectors/live_log.py), what the API reads back, and
what the WebSocket sends to the browser (api/live.py, api/routes/ws.py). The dashboard's
TypeScript types are generated from these models' JSON Schemas (infra/gen_types.py →
web/src/generated/), so a field changed here is a compile error there.

Channel payloads (the `data` of an update frame):

    fleet, site:<id>   SiteAvailability (contracts/events.py)
    asset:<unit>       UnitLatest in Redis; a client of asset:<id> gets its AssetLive part
    alarms             AlarmMessage: BreachMessage | HandlingMessage
    alerts             Alert (contracts/events.py)"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.alarms import AlarmHandling
from contracts.events import BreachEvent, Cause, EpochMs, State


class _Live(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LiveStatus(_Live):
    """An asset's live status and its availability over the last hour and today."""

    state: State | None
    cause: Cause | None = None
    derate_fraction: float | None = None
    last_hour_pct: float | None = None
    today_pct: float | None = None


class UnitLatest(_Live):
    """`latest:<unit>` in Redis and the `asset:<unit>` channel: a battery unit's newest tag
    values per asset, and every asset's live status."""

    unit_id: str
    site_id: str
    ts_ms: EpochMs
    assets: dict[str, dict[str, float]]  # asset id → tag → value
    status: dict[str, LiveStatus]  # asset id → its status

    def part(self, asset_id: str) -> AssetLive | None:
        """One asset's part of this message (None: the unit has no such asset)."""
        if asset_id not in self.status and asset_id not in self.assets:
            return None
        return AssetLive(asset_id=asset_id, unit_id=self.unit_id, site_id=self.site_id,
                         ts_ms=self.ts_ms, values=self.assets.get(asset_id, {}),
                         status=self.status.get(asset_id))


class AssetLive(_Live):
    """One asset's part of its unit's newest-values message (a client's `asset:<id>`)."""

    asset_id: str
    unit_id: str
    site_id: str
    ts_ms: EpochMs
    values: dict[str, float]
    status: LiveStatus | None


class BreachMessage(_Live):
    """On the `alarms` channel: a breach raised or cleared (by the flows)."""

    kind: Literal["breach"] = "breach"
    breach: BreachEvent


class HandlingMessage(_Live):
    """On the `alarms` channel: what an operator did to an alarm (by the API)."""

    kind: Literal["handling"] = "handling"
    site_id: str
    handling: AlarmHandling


AlarmMessage = Annotated[BreachMessage | HandlingMessage, Field(discriminator="kind")]
ALARM_MESSAGE: TypeAdapter[BreachMessage | HandlingMessage] = TypeAdapter(AlarmMessage)


def alarm_key(msg: BreachMessage | HandlingMessage) -> tuple[str, str]:
    """(site id, breach id) of an alarms-channel message."""
    if isinstance(msg, BreachMessage):
        return msg.breach.site_id, msg.breach.breach_id
    return msg.site_id, msg.handling.breach_id


# -- WebSocket frames, server → client (api/routes/ws.py; docs/websocket.md) ---------------


class ReadyFrame(_Live):
    type: Literal["ready"] = "ready"
    heartbeat_s: float
    subject: str
    role: str


class SnapshotFrame(_Live):
    type: Literal["snapshot"] = "snapshot"
    channel: str
    seq: int
    data: object  # the channel's whole state: a list or one payload (see above), or null


class ResumeFrame(_Live):
    type: Literal["resume"] = "resume"
    channel: str
    seq: int


class UpdateFrame(_Live):
    type: Literal["update"] = "update"
    channel: str
    seq: int
    data: object  # one payload of the channel (see above)


def update_frame(channel: str, seq: int, data: str) -> str:
    """An UpdateFrame's JSON text around `data`, a payload already JSON: the API builds it
    once per message and shares it by every client (api/live.py), never re-encoding data."""
    return f'{{"type":"update","channel":{json.dumps(channel)},"seq":{seq},"data":{data}}}'


class UnsubscribedFrame(_Live):
    type: Literal["unsubscribed"] = "unsubscribed"
    channel: str


class PongFrame(_Live):
    type: Literal["pong"] = "pong"


class HeartbeatFrame(_Live):
    type: Literal["heartbeat"] = "heartbeat"
    ts_ms: int


class ErrorFrame(_Live):
    type: Literal["error"] = "error"
    message: str


ServerFrame = Annotated[ReadyFrame | SnapshotFrame | ResumeFrame | UpdateFrame
                        | UnsubscribedFrame | PongFrame | HeartbeatFrame | ErrorFrame,
                        Field(discriminator="type")]


class ClientFrame(BaseModel):
    """client → server: auth, subscribe, unsubscribe, ping."""

    type: str
    channel: str | None = None
    token: str | None = None
    since: int | None = Field(None, ge=0)  # negative: no sequence number (and a Redis error)
