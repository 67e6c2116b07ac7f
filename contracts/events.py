"""Versioned JSON values of every topic, defined once: producers, flows, the API and the tests
all encode and decode through these models (docs/architecture.md, "Topics").

Times are integer milliseconds since the Unix epoch (UTC): unambiguous and cheap to compare.
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
# Every time is bounded: an integer beyond 2100 is no timestamp but a broken record, and it
# would overflow the history store's 64-bit columns or a Redis score further down the line.
MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
EpochMs = Annotated[int, Field(ge=0, le=MAX_MS)]
# A time a device or a vendor's system reports: no device of a fleet commissioned this
# century reports the 1970s or 1990s (a clock reset to its epoch does).
MIN_DEVICE_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
DeviceMs = Annotated[int, Field(ge=MIN_DEVICE_MS, le=MAX_MS)]
# Ids and tag names: printable, bounded (they become Redis keys, history columns, log lines).
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
# Asset ids and tag names of a poll only look things up (an unknown one is refused or
# ignored), never become a key: bounded, and not pattern-checked on the hot path.
LookupName = Annotated[str, Field(min_length=1, max_length=200)]
TagValue = float | int | Annotated[str, Field(max_length=1_000)] | bool


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssetReading(_Event):
    """The tag values one device reported for one asset in one poll."""

    id: LookupName
    tags: dict[LookupName, TagValue] = Field(max_length=10_000)


class TelemetrySample(_Event):
    """`bess.telemetry.raw`, key = device id: one poll of one device."""

    v: Literal[1] = 1
    device_id: Name
    # The device type (register map / tag map) that produced the tags; None = canonical tags.
    device_type: Name | None = None
    ts_ms: DeviceMs
    assets: tuple[AssetReading, ...] = Field(min_length=1, max_length=10_000)


_new, _set = object.__new__, object.__setattr__


def asset_reading(asset_id: str, tags: dict[str, TagValue]) -> AssetReading:
    """`AssetReading.model_construct(id=…, tags=…)` at a third of its cost: a Modbus
    connector builds ~20 of them per device poll, from its device map (valid by
    construction). tests/contracts/test_events.py checks that both make the same reading."""
    reading: AssetReading = _new(AssetReading)
    _set(reading, "__dict__", {"id": asset_id, "tags": tags})
    _set(reading, "__pydantic_fields_set__", {"id", "tags"})
    _set(reading, "__pydantic_extra__", None)
    _set(reading, "__pydantic_private__", None)
    return reading


def telemetry_json(sample: TelemetrySample) -> bytes:
    """The sample as `sample.model_dump_json()` gives it — the same JSON value, fields in
    the same order — at a tenth of the cost (orjson): a connector publishes every poll of
    every device. tests/contracts/test_events.py checks that both give equal values."""
    return orjson.dumps({"v": sample.v, "device_id": sample.device_id,
                         "device_type": sample.device_type, "ts_ms": sample.ts_ms,
                         "assets": [{"id": a.id, "tags": a.tags} for a in sample.assets]})


def telemetry_sample(device_id: str, ts_ms: int,
                     assets: tuple[AssetReading, ...]) -> TelemetrySample:
    """`TelemetrySample.model_construct(device_id=…, ts_ms=…, assets=…)`, cheaper (see
    `asset_reading`)."""
    sample: TelemetrySample = _new(TelemetrySample)
    _set(sample, "__dict__", {"v": 1, "device_id": device_id, "device_type": None,
                              "ts_ms": ts_ms, "assets": assets})
    _set(sample, "__pydantic_fields_set__", {"device_id", "ts_ms", "assets"})
    _set(sample, "__pydantic_extra__", None)
    _set(sample, "__pydantic_private__", None)
    return sample


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
    """A site's contract now (availability rules §4-6): the open measurement period so far, what the
    contract year has cost, and where the period is heading."""

    contract_id: str
    # "ltsa": the site's service agreement; "technical": the site has none, and these are
    # plain technical availability figures (no guarantee, no money, no warning level).
    kind: Literal["ltsa", "technical"] = "ltsa"
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
    own and its children's capacity-weighted loss (availability rules §3). `windows` maps each of
    WINDOWS to a percentage (None before any data): last hour and today from the live statuses, the
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
    (all its time past the watermark) — the numbers of availability rules §7, at full precision."""

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


PAYLOAD_MAX_CHARS = 100_000  # a dead letter must itself fit in a topic message (1 MB)


class DeadLetter(_Event):
    """`bess.dlq`, key = source: a record refused by a flow or connector, kept whole (up to
    PAYLOAD_MAX_CHARS; `dead_letter` cuts a longer one and says so in `truncated`)."""

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
    truncated: bool = False  # the payload is the record's first PAYLOAD_MAX_CHARS only


def dead_letter(*, source: str, reason: str, detail: str, ts_ms: int, payload: str,
                key: str | None = None, topic: str | None = None, partition: int | None = None,
                offset: int | None = None) -> DeadLetter:
    """A dead letter that can always be written: the time clamped into range, the detail and
    payload cut to size, and text that no encoder refuses (lone surrogates escaped)."""
    def text(value: str, limit: int) -> str:
        return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")

    return DeadLetter(source=source, reason=reason, detail=text(detail, 2000),
                      ts_ms=min(max(ts_ms, 0), MAX_MS),
                      key=None if key is None else text(key, 1000), topic=topic,
                      partition=partition, offset=offset,
                      payload=text(payload, PAYLOAD_MAX_CHARS),
                      truncated=len(payload) > PAYLOAD_MAX_CHARS)


class DeadLetterTally(_Event):
    """One source's refused records of one reason, counted by the flows since they started:
    which device sends bad records, and why (Redis hash `dead_letters_key(site)`, field
    `[device, reason]` as JSON). `device` is the record's key (its device id, "" for none);
    `site_id` None for records that named no site of the fleet."""

    v: Literal[1] = 1
    site_id: str | None
    device: str
    reason: str
    count: int = Field(ge=1)
    first_ms: EpochMs  # event time of the first and the last of them
    last_ms: EpochMs
    last_detail: str


Severity = Literal["critical", "major", "minor", "warning"]
# The one severity ranking: 0 is the most severe. Sorting by it puts the worst first.
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "warning")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


class BreachEvent(_Event):
    """`bess.breaches`, key = asset id: an alarm raised, or cleared — a limit or trend
    breach, or a status or alert raised as an alarm (contracts/alarm_sources.py).

    `breach_id` is stable (rule, asset and the event time it was raised), so a replay or a
    recovery re-emits the same id and consumers can deduplicate. The acknowledge state
    (active-unacknowledged → active-acknowledged → cleared) is kept by the API, keyed by it."""

    v: Literal[1] = 1
    breach_id: str
    rule_id: str
    # limit / trend: a breach of a tag; status / alert: an asset's status or an early
    # warning raised as an alarm (contracts/alarm_sources.py)
    kind: Literal["limit", "trend", "status", "alert"]
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
    "unwritable",  # a sink of the flows refused an item: it went to the dead-letter topic
    "store_outage",  # a sink of the flows cannot write at all: retrying, nothing dropped
    "control_action",  # the control loop (or a connector's hard limit) stopped or derated
    "control_command_failed",  # a setpoint not verified by read-back: not assumed done
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
    provider: Name  # jira | servicenow | zendesk | …
    ticket_id: Name
    asset_id: Name | None  # through the configured field / label / CI mapping
    status: TicketStatus
    priority: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    opened_ms: DeviceMs
    updated_ms: DeviceMs
    resolved_ms: DeviceMs | None = None
    summary: str = Field(default="", max_length=10_000)
    url: str | None = Field(default=None, max_length=2_000)


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


HealthState = Literal["online", "degraded", "offline"]


class DeviceHealth(_Event):
    """`bess.device.health`, key = device id, kind "state": a connector's view of one device,
    published when it changes — online (answering), degraded (some polls failing or slow),
    offline (not answering). `site_id` and `gateway` (host:port, or an OPC UA endpoint) were
    added later: an event without them is still valid, its device then placed by the fleet
    (its id as a battery unit's)."""

    v: Literal[1] = 1
    kind: Literal["state"] = "state"
    device_id: Name
    connector: Name  # modbus | opcua | …
    state: HealthState
    previous: HealthState | None = None
    ts_ms: EpochMs
    reason: str = Field(default="", max_length=2_000)
    consecutive_failures: int = Field(default=0, ge=0)
    site_id: Name | None = None
    gateway: Name | None = None


Millis = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DeviceStats(_Event):
    """`bess.device.health`, key = device id, kind "stats": one device's polls over one
    window `[start_ms, end_ms)` (a connector's `stats_every_s`): polls attempted, polls failed
    (dropped after their retries), retries, and the latency of the polls answered — p50 and
    p95 by nearest rank, and the longest — in milliseconds (None when none was answered)."""

    v: Literal[1] = 1
    kind: Literal["stats"] = "stats"
    device_id: Name
    connector: Name
    site_id: Name | None = None  # None: the device placed by the fleet, as for DeviceHealth
    gateway: Name
    start_ms: EpochMs
    end_ms: EpochMs
    polls: int = Field(ge=0)
    failed: int = Field(ge=0)
    retries: int = Field(ge=0)
    latency_p50_ms: Millis | None = None
    latency_p95_ms: Millis | None = None
    latency_max_ms: Millis | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeviceStats:
        if self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        if self.failed > self.polls:
            raise ValueError(f"{self.failed} polls failed of {self.polls} attempted")
        latencies = (self.latency_p50_ms, self.latency_p95_ms, self.latency_max_ms)
        answered = self.polls - self.failed
        if answered and None in latencies:
            raise ValueError(f"{answered} polls answered: their latencies are required")
        if not answered and latencies != (None, None, None):
            raise ValueError("no poll answered: no latency")
        if answered and not (self.latency_p50_ms or 0) <= (self.latency_p95_ms or 0) \
                <= (self.latency_max_ms or 0):
            raise ValueError("latencies must be p50 <= p95 <= max")
        return self


def device_health_event(value: bytes | str | None) -> DeviceHealth | DeviceStats:
    """A record of `bess.device.health`: a state change (kind "state", or no kind: the
    first version) or a stats window (kind "stats"). Raises ValueError (pydantic's
    ValidationError is one) for anything else."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("kind") == "stats":
        return DeviceStats.model_validate(data)
    return DeviceHealth.model_validate(data)
