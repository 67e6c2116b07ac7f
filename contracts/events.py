"""Versioned JSON values of every topic, defined once: producers, flows, the API and the tests
all encode and decode through these models (DESIGN.md, "Topics").

Times are integer milliseconds since the Unix epoch (UTC): unambiguous and cheap to compare.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

State = Literal["available", "derated", "unavailable", "unknown"]
Cause = Literal[
    "fault",
    "forced_outage",
    "planned_corrective",
    "scheduled_maintenance",
    "grid_outage",
    "force_majeure",
    "customer_request",
    "environmental",
    "comms_loss",
]
EpochMs = Annotated[int, Field(ge=0)]
TagValue = float | int | str | bool


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssetReading(_Event):
    """The tag values one device reported for one asset in one poll."""

    id: str = Field(min_length=1)
    tags: dict[str, TagValue]


class TelemetrySample(_Event):
    """`bess.telemetry.raw`, key = device id: one poll of one device."""

    v: Literal[1] = 1
    device_id: str = Field(min_length=1)
    ts_ms: EpochMs
    assets: tuple[AssetReading, ...] = Field(min_length=1)


class StatusChange(_Event):
    """`bess.status`, key = asset id: the asset's status from `ts_ms` on."""

    v: Literal[1] = 1
    asset_id: str
    site_id: str
    ts_ms: EpochMs
    state: State
    derate_fraction: float | None = None
    cause: Cause | None = None
    previous_state: State | None = None


class UnitAvailability(_Event):
    id: str
    state: State
    cause: Cause | None = None
    derate_fraction: float | None = None
    last_15m_pct: float | None
    today_pct: float | None


class SiteAvailability(_Event):
    """`bess.availability`, key = site id; also the Redis snapshot of a site.

    Availability is time- and energy-weighted over the site's units, each unit's loss being
    the larger of its own and its children's capacity-weighted loss (spec §3)."""

    v: Literal[1] = 1
    site_id: str
    name: str | None = None
    customer: str
    region: str
    ts_ms: EpochMs
    last_15m_pct: float | None
    today_pct: float | None
    units_by_state: dict[State, int]
    units: tuple[UnitAvailability, ...]


class DeadLetter(_Event):
    """`bess.dlq`, key = source: a record refused by a flow or connector, kept whole."""

    v: Literal[1] = 1
    source: str
    reason: str
    detail: str
    ts_ms: EpochMs
    key: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    payload: str = Field(description="the refused record as text (undecodable bytes escaped)")
