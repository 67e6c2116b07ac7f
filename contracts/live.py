"""The live payloads, defined once: what the flows and the API's alarm actions put in Redis
(`latest:<unit>` and the live channels, connectors/live_log.py), what the API reads back, and
what the WebSocket sends to the browser (api/live.py, api/routes/ws.py). The dashboard's
TypeScript types are generated from these models' JSON Schemas (infra/gen_types.py →
web/src/generated/), so a field changed here is a compile error there.

Channel payloads (the `data` of an update frame):

    fleet              FleetSite: a SiteAvailability with its units as rows (`fleet_site`)
    site:<id>          SiteAvailability (contracts/events.py)
    asset:<unit>       UnitLatest in Redis; a client of asset:<id> gets its AssetLive part
    alarms             AlarmMessage: BreachMessage | HandlingMessage
    alerts             Alert (contracts/events.py)"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.alarms import AlarmHandling
from contracts.events import BreachEvent, Cause, EpochMs, SiteAvailability, State


class _Live(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


UnitRow = tuple[str, State, Cause | None, float | None, float | None, float | None]
UNIT_ROW = ("id", "state", "cause", "derate_fraction", "last_hour_pct", "today_pct")


class FleetSite(SiteAvailability):
    """A site's snapshot as the `fleet` channel carries it: every field of SiteAvailability,
    its units as rows `[id, state, cause, derate_fraction, last_hour_pct, today_pct]` with the
    percentages to 3 decimals. Every dashboard takes this channel, every site's snapshot each
    second: rows are under half the bytes of the unit objects, for the API to send and for
    each browser to parse. The `site:<id>` channel keeps the objects."""

    units: tuple[UnitRow, ...]  # type: ignore[assignment]


def fleet_site(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A site snapshot's JSON data (SiteAvailability) → the fleet channel's (FleetSite)."""
    return {**snapshot, "units": [
        [u["id"], u["state"], u.get("cause"), u.get("derate_fraction"),
         _pct(u.get("last_hour_pct")), _pct(u.get("today_pct"))]
        for u in snapshot.get("units", ())]}


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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
    batch: bool = False  # updates come in BatchFrames (the client asked for them)


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


class BatchFrame(_Live):
    """Several update frames in one WebSocket message, for a client that asked for batches
    (`"batch": true` in its auth message): one message per client per tick instead of one
    per update — what a thousand dashboards cost the API is mostly messages, not bytes."""

    type: Literal["batch"] = "batch"
    frames: tuple[UpdateFrame, ...]


def batch_frame(frames: list[str]) -> str:
    """A BatchFrame's JSON text around update frames already JSON (never re-encoded)."""
    return '{"type":"batch","frames":[' + ",".join(frames) + "]}"


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


ServerFrame = Annotated[ReadyFrame | SnapshotFrame | ResumeFrame | UpdateFrame | BatchFrame
                        | UnsubscribedFrame | PongFrame | HeartbeatFrame | ErrorFrame,
                        Field(discriminator="type")]


class ClientFrame(BaseModel):
    """client → server: auth, subscribe, unsubscribe, ping."""

    type: str
    channel: str | None = None
    token: str | None = None
    since: int | None = Field(None, ge=0)  # negative: no sequence number (and a Redis error)
    batch: bool = False  # auth: send updates in BatchFrames, one message per tick
