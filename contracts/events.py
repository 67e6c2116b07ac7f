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
    # The device type (register map / tag map) that produced the tags; None = canonical tags.
    device_type: str | None = None
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


WarningLevel = Literal["ok", "watch", "ld_risk"]
WINDOWS = ("last_hour", "today", "month_to_date", "contract_year_to_date", "trailing_7d",
           "trailing_30d")


class UnitAvailability(_Event):
    """A battery unit now: its live status (its children rolled up) and availability %."""

    id: str
    state: State
    cause: Cause | None = None
    derate_fraction: float | None = None
    last_hour_pct: float | None
    today_pct: float | None


class ContractKpis(_Event):
    """A site's contract now (spec §4-6): the open measurement period so far, what the
    contract year has cost, and where the period is heading."""

    contract_id: str
    currency: str
    as_of_ms: EpochMs  # final time: statuses before this instant are final
    period: str
    period_start_ms: EpochMs
    period_end_ms: EpochMs
    contract_year: int
    actual_pct: float | None  # the period so far
    guaranteed_pct: float
    shortfall_pct: float | None
    # Money: LD of the contract year so far (the open period included) and projected; None
    # where the reader's role may not see contract money (the API redacts it).
    ld_year_to_date: float | None
    projected_pct: float | None
    projected_ld: float | None
    warning_level: WarningLevel


class SiteAvailability(_Event):
    """`bess.availability`, key = site id; also the Redis snapshot of a site.

    Availability is time- and capacity-weighted over the site's units (the contract's
    weights; energy for a site without a contract), each unit's loss being the larger of its
    own and its children's capacity-weighted loss (spec §3). `windows` maps each of WINDOWS
    to a percentage (None before any data): last hour and today from the live statuses, the
    others by the contract's rules over final time, up to `final_ms` (site-local days)."""

    v: Literal[2] = 2
    kind: Literal["snapshot"] = "snapshot"
    site_id: str
    name: str | None = None
    customer: str
    region: str
    ts_ms: EpochMs
    final_ms: EpochMs | None = None
    windows: dict[str, float | None]
    units_by_state: dict[State, int]
    units: tuple[UnitAvailability, ...]
    contract: ContractKpis | None = None
    # Records of the site since the flow started: polls taken, late, duplicate, refused.
    counts: dict[str, int] = Field(default_factory=dict)


class UnitPeriod(_Event):
    asset_id: str
    window_hours: float
    excluded_hours: float
    lost_hours: float
    availability_pct: float | None


class PeriodAvailability(_Event):
    """`bess.availability`, key = site id: a measurement period of a site's contract, final
    (all its time past the watermark) — the numbers of spec §7, at full precision."""

    v: Literal[1] = 1
    kind: Literal["period"] = "period"
    site_id: str
    contract_id: str
    currency: str
    measurement_period: Literal["month", "quarter", "contract_year"]
    period: str
    start_ms: EpochMs
    end_ms: EpochMs
    contract_year: int
    availability_pct: float | None
    guaranteed_pct: float
    shortfall_pct: float | None
    ld: float
    bonus: float
    units: tuple[UnitPeriod, ...]


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


Severity = Literal["critical", "major", "minor", "warning"]


class BreachEvent(_Event):
    """`bess.breaches`, key = asset id: a limit or trend breach raised, or cleared.

    `breach_id` is stable (rule, asset and the event time it was raised), so a replay or a
    recovery re-emits the same id and consumers can deduplicate. The acknowledge state
    (active-unacknowledged → active-acknowledged → cleared) is kept by the API, keyed by it."""

    v: Literal[1] = 1
    breach_id: str
    rule_id: str
    kind: Literal["limit", "trend"]
    asset_id: str
    site_id: str
    tag: str
    severity: Severity
    state: Literal["raised", "cleared"]
    raised_ms: EpochMs
    ts_ms: EpochMs  # when this event happened: raised_ms for "raised", the clearing time else
    value: float  # the tag value (limit) or rate of change per minute (trend) at ts_ms
    threshold: float
    message: str


AlertKind = Literal[
    "ld_risk",  # the contract's warning level left `ok` (watch or ld_risk)
    "telemetry_gap",  # a device stopped reporting or reports with holes
    "frozen_value",  # a tag that should move has not changed for too long
    "clock_skew",  # a device's timestamps drift from the receiving clock
    "dlq_rate",  # the share of rejected records is rising
    "data_instability",  # a status flapping faster than plausible
]


class Alert(_Event):
    """`bess.alerts`, key = scope id (asset, device or site): an early warning raised once and
    cleared once; `alert_id` is stable like a breach's."""

    v: Literal[1] = 1
    alert_id: str
    kind: AlertKind
    scope_id: str
    site_id: str | None = None
    severity: Severity
    state: Literal["raised", "cleared"]
    raised_ms: EpochMs
    ts_ms: EpochMs
    message: str
    details: dict[str, float | int | str | None] = Field(default_factory=dict)


TicketStatus = Literal["open", "in_progress", "resolved"]


class TicketEvent(_Event):
    """`bess.tickets.raw`, key = `provider:ticket_id`: a ticket as its system last described
    it, normalized (connectors/ticketing maps each vendor's payload to this)."""

    v: Literal[1] = 1
    provider: str = Field(min_length=1)  # jira | servicenow | zendesk | …
    ticket_id: str = Field(min_length=1)
    asset_id: str | None  # through the configured field / label / CI mapping
    status: TicketStatus
    priority: str | None = None
    category: str | None = None
    opened_ms: EpochMs
    updated_ms: EpochMs
    resolved_ms: EpochMs | None = None
    summary: str = ""
    url: str | None = None


class TicketRef(_Event):
    provider: str
    ticket_id: str
    status: TicketStatus
    summary: str = ""
    url: str | None = None


class UnavailabilityEpisode(_Event):
    """An asset's time not fully available (unavailable, derated or unknown), from start to end
    (None while it lasts), with what it cost and the tickets open on the asset or its parents
    during it — "why is this unit down, and who is on it"."""

    v: Literal[1] = 1
    episode_id: str  # stable: f"{asset_id}:{start_ms}"
    asset_id: str
    site_id: str
    start_ms: EpochMs
    end_ms: EpochMs | None
    state: State
    cause: Cause | None = None
    lost_hours: float  # capacity-weighted: one hour at half capacity is 0.5
    lost_mwh: float  # lost hours × rated energy (MWh)
    tickets: tuple[TicketRef, ...] = ()


class DeviceHealth(_Event):
    """`bess.device.health`, key = device id: a connector's view of one device, published
    when it changes — online (answering), degraded (some polls failing or slow), offline
    (not answering)."""

    v: Literal[1] = 1
    device_id: str
    connector: str  # modbus | opcua | …
    state: Literal["online", "degraded", "offline"]
    previous: Literal["online", "degraded", "offline"] | None = None
    ts_ms: EpochMs
    reason: str = ""
    consecutive_failures: int = 0
