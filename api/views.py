"""What the API shows of the hot state, shaped for a caller: contract money left out for
roles that may not see it, staleness judged on the wall clock, refused records tallied by
device and reason (the data-quality view); and the response models of the REST routes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from api.auth.permissions import Permission
from api.auth.principal import ANY, Principal
from contracts.control import UnitControlView
from contracts.events import (
    SEVERITY_RANK,
    Alert,
    ContractKpis,
    DeadLetterTally,
    SiteAvailability,
    TicketEvent,
    TicketRef,
    UnavailabilityEpisode,
)

STALE_AFTER_MS = 30_000  # a site snapshot older than this is shown as stale
MONEY = ("ld_year_to_date", "projected_ld")
log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def shows_money(principal: Principal) -> bool:
    return principal.can(Permission.CONTRACTS_READ)


def redact(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A site snapshot without contract money (a copy; the input stays whole)."""
    contract = snapshot.get("contract")
    if not contract:
        return snapshot
    return {**snapshot, "contract": {**contract, **dict.fromkeys(MONEY)}}


def stale(ts_ms: int | None, now_ms: int) -> bool:
    return ts_ms is None or now_ms - ts_ms > STALE_AFTER_MS


# -- data quality: who sends bad records, and why ------------------------------------------

# The alert kinds about the data rather than the contract (contracts/events.py AlertKind).
DATA_QUALITY_KINDS = frozenset({"telemetry_gap", "frozen_value", "clock_skew", "dlq_rate",
                                "data_instability", "unwritable", "store_outage"})


class DeadLetterRow(BaseModel):
    """One device's refused records of one reason (a `DeadLetterTally` as shown)."""

    device: str  # the record's key: its device id ("" for a record without one)
    reason: str  # malformed_json, schema, out_of_range, unknown_asset, key_mismatch, …
    count: int  # refused records, since the flows started
    first_ms: int  # event time of the first and the last of them
    last_ms: int
    last_detail: str  # what was wrong with the last one
    asset_id: str | None  # the fleet's asset of that id (a battery unit), for a link


class QualityTotals(BaseModel):
    records: int  # refused records of every device and reason
    pairs: int  # (device, reason) tallies in all; `tallies` holds the first `limit`
    tallies: list[DeadLetterRow]  # most frequent first, then the most recent
    alerts: list[Alert]  # active data-quality alerts, most severe first, then newest


class SiteQuality(QualityTotals):
    site_id: str
    name: str | None
    customer: str
    region: str


class DataQuality(BaseModel):
    sites: list[SiteQuality]  # the caller's sites (or the one asked for), in fleet order
    # Records that named no site of the fleet, and data-quality alerts of no site: null
    # unless the caller has `data_quality.unrouted` and sees the whole fleet, or when
    # `site=` narrows the answer to one site.
    unrouted: QualityTotals | None


def sees_unrouted(principal: Principal) -> bool:
    """Unrouted records may come from anyone's device: only a caller with the permission
    whose scope is the whole fleet sees them (the live feed's rule for alerts of no site)."""
    scope = principal.scope
    return principal.can(Permission.DATA_QUALITY_UNROUTED) and ANY in scope.customers \
        and ANY in scope.regions


def quality(tallies: Iterable[bytes | str], alerts: Iterable[bytes | str], limit: int,
            is_asset: Callable[[str], bool]) -> QualityTotals:
    """One site's (or the unrouted) dead-letter tallies and alerts from their Redis hashes'
    values; `is_asset(device)`: the device is an asset the caller may open. A value that does
    not decode is left out (logged), not a 500: this view exists for when data is bad."""
    rows = [DeadLetterRow(device=t.device, reason=t.reason, count=t.count,
                          first_ms=t.first_ms, last_ms=t.last_ms, last_detail=t.last_detail,
                          asset_id=t.device if is_asset(t.device) else None)
            for t in _decoded(DeadLetterTally, tallies)]
    rows.sort(key=lambda r: (-r.count, -r.last_ms, r.device, r.reason))
    active = [a for a in _decoded(Alert, alerts)
              if a.kind in DATA_QUALITY_KINDS and a.state == "raised"]
    active.sort(key=lambda a: (SEVERITY_RANK[a.severity], -a.raised_ms, a.alert_id))
    return QualityTotals(records=sum(r.count for r in rows), pairs=len(rows),
                         tallies=rows[:limit], alerts=active)


def _decoded(model: type[M], values: Iterable[bytes | str]) -> Iterator[M]:
    for value in values:
        try:
            yield model.model_validate_json(value)
        except ValidationError as exc:
            log.warning("left out an undecodable %s in the hot state: %s", model.__name__,
                        exc.errors()[0]["msg"])


# -- the answers of the REST routes ----------------------------------------------------------
# Every route's response model lives here (request bodies stay beside their route), so a
# shape that two routes or the live feed share has one definition.

# assets (api/routes/assets.py); `AlarmView` also for /alarms and the live `alarms` channel

class LiveStatus(BaseModel):
    state: str | None = None
    cause: str | None = None
    derate_fraction: float | None = None
    last_hour_pct: float | None = None
    today_pct: float | None = None


class AlarmView(BaseModel):
    breach_id: str
    asset_id: str
    site_id: str
    rule_id: str
    # limit / trend: a tag's value against a threshold; status / alert: an asset's status or
    # an early warning raised as an alarm (value and threshold mean little there)
    kind: Literal["limit", "trend", "status", "alert"] = "limit"
    severity: str
    state: str  # active_unacknowledged | active_acknowledged | shelved
    raised_ms: int
    value: float
    threshold: float
    message: str
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    shelved_until_ms: int | None = None
    shelve_reason: str | None = None


class AssetDetail(BaseModel):
    id: str
    kind: str
    site_id: str
    unit_id: str | None
    parent_id: str | None
    children: list[str]
    rated_power_kw: float | None
    rated_energy_kwh: float | None
    ts_ms: int | None  # of the newest values
    values: dict[str, float]
    status: LiveStatus
    windows: dict[str, float | None]  # a site's: its snapshot's; others: last hour, today
    alarms: list[AlarmView]  # active, on the asset and below
    episodes: list[UnavailabilityEpisode]  # open, on the asset and below
    tickets: list[TicketEvent]  # on the asset, above and below; open ones first


def alarm_view(alarm: Any) -> AlarmView:
    b, h = alarm.breach, alarm.handling
    return AlarmView(breach_id=b.breach_id, asset_id=b.asset_id, site_id=b.site_id,
                     rule_id=b.rule_id, kind=b.kind, severity=b.severity, state=alarm.state,
                     raised_ms=b.raised_ms, value=b.value, threshold=b.threshold,
                     message=b.message, acknowledged_by=h.acknowledged_by if h else None,
                     acknowledged_ms=h.acknowledged_ms if h else None,
                     shelved_until_ms=h.shelved_until_ms if h else None,
                     shelve_reason=h.shelve_reason if h else None)


class AvailabilityPoint(BaseModel):
    start_ms: int
    end_ms: int
    window_hours: float
    excluded_hours: float
    lost_hours: float
    availability_pct: float | None


class StatusInterval(BaseModel):
    start_ms: int
    end_ms: int | None  # null: still so
    state: str
    derate_fraction: float | None
    cause: str | None


class TelemetryPoint(BaseModel):
    start_ms: int
    count: int
    min: float
    max: float
    mean: float
    last: float


# the fleet and its sites (api/routes/sites.py)

class SiteSummary(BaseModel):
    id: str
    name: str | None
    customer: str
    region: str
    timezone: str
    units: int
    rated_power_kw: float
    rated_energy_kwh: float
    stale: bool  # no fresh snapshot (the flows or the site's data are behind)
    availability: SiteAvailability | None  # null until the flows have seen the site


class FleetKpis(BaseModel):
    sites: int
    units: int
    stale_sites: int
    units_by_state: dict[str, int]
    # Energy-weighted mean of the sites' windows (sites without a value left out).
    windows: dict[str, float | None]
    warning_levels: dict[str, int]  # sites per contract warning level
    ld_year_to_date: dict[str, float] | None  # by currency; null without contracts.read


class FleetOverview(BaseModel):
    kpis: FleetKpis
    sites: list[SiteSummary]


class AssetNode(BaseModel):
    id: str
    kind: str
    rated_power_kw: float | None
    rated_energy_kwh: float | None
    state: str | None  # live status; null before any sample
    cause: str | None
    derate_fraction: float | None
    last_hour_pct: float | None
    today_pct: float | None
    children: list[AssetNode]


# contracts (api/routes/contracts.py)

class ContractSummary(BaseModel):
    id: str
    site_id: str
    customer: str
    region: str
    measurement_period: str
    terms: dict[str, Any]  # the contract file's content


class Compliance(BaseModel):
    evaluation: dict[str, Any]  # availability rules §7
    open_period: ContractKpis | None  # live, when the range reaches the current period
    # When monitoring began, if within the range's contract years: earlier time has no data
    # (not billed; a period wholly before it has no availability and no LD).
    monitored_from_ms: int | None = None


# the audit log and API keys (api/routes/admin.py)

class AuditEntryOut(BaseModel):
    seq: int
    ts_ms: int
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any]
    hash: str


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    customers: list[str]
    regions: list[str]
    created_by: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None


class CreatedKey(KeyOut):
    key: str  # shown once


# signing in (api/routes/auth.py)

class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int  # seconds


class Me(BaseModel):
    subject: str
    role: str
    via: str
    permissions: list[str]
    customers: list[str]
    regions: list[str]
    sites: list[str]


# ticket webhooks (api/routes/webhooks.py)

class WebhookAnswer(BaseModel):
    status: Literal["published", "duplicate", "ignored"]
    key: str | None = None  # provider:ticket_id
    asset_id: str | None = None
    reason: str | None = None


# control (api/routes/control.py): what the control loop holds of units, and commands sent

class UnitControl(BaseModel):
    """A unit as the control loop holds it (`UnitControlView`), beside whether the loop is
    alive: a view is only as current as the loop that writes it, so a client must not show
    a RUNNING unit as controlled while nobody controls it."""

    control_loop_alive: bool  # the loop's last beat within CONTROL_ALIVE_S
    control_loop_beat_ms: int | None  # that beat (epoch ms); None: never seen
    unit: UnitControlView


class SiteControl(BaseModel):
    """A site's units as the control loop holds them, in fleet order."""

    site_id: str
    control_loop_alive: bool
    control_loop_beat_ms: int | None
    units: list[UnitControlView]


class CommandsAccepted(BaseModel):
    """202: the commands are on `bess.commands` (the broker acknowledged every one); what
    became of them shows in the units' views (`commands`, with outcome and read-back)."""

    command_ids: list[str]
    unit_ids: list[str]  # the unit of each command, in the same order


# notifications (api/routes/notify.py): the rules file and the delivery log

class NotifyRules(BaseModel):
    """The notification rules file as it is on disk."""

    path: str  # where the notifier reads it (BESSMON_NOTIFY_RULES)
    yaml: str  # its text; "" when there is no file yet
    rules: int
    channels: int
    updated_ms: int | None  # its modification time; None: no file yet
    sha256: str | None  # of its text; None: no file yet
    problem: str | None = None  # why the file on disk is refused (edited by hand), if it is


class NotifyRulesCheck(BaseModel):
    """A rules text that validates (a broken one is a 422 naming its line, key and
    problem)."""

    ok: Literal[True] = True
    rules: int
    channels: int
    groups: int
    rotations: int


class DeliveryOut(BaseModel):
    """One message of the notifier's outbox: what went to whom, on which channel, when, and
    how it ended. Webhook, Slack and Teams URLs are secrets: shown redacted, and such a
    message's id (which holds its URL) as a hash."""

    id: str
    created_ms: int
    sent_ms: int | None
    updated_ms: int
    channel: str
    channel_type: Literal["email", "webhook", "slack", "teams"]
    recipient: str | None
    address: str
    subject: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    detail: str | None
    sites: list[str]  # the sites its events are of; [] for fleet-wide
    severity: str | None


class NotifyPreferences(BaseModel):
    """The caller's own notification preferences as the notifier applies them, and where
    they come from: `own` (saved by the caller), `rules` (the rules file's `preferences`
    entry, set by an admin) or `default` (everything, at any hour). Quiet hours (in `tz`)
    hold everything but critical alarms; `email` replaces the users file's address (null:
    the rules file's, else the users file's)."""

    severities: list[Literal["critical", "major", "minor", "warning"]]
    channels: list[Literal["email", "webhook", "slack", "teams"]]
    quiet_hours: str | None  # HH:MM-HH:MM, may wrap midnight; null: none
    tz: str  # IANA time zone of quiet_hours
    email: str | None
    source: Literal["own", "rules", "default"]


# -- repair priority: what one more hour of each open outage costs (contracts/repair.py) ---

REPAIR_MONEY = ("marginal_ld_per_hour", "ld_now", "ld_after", "cap_left")


class RepairItem(BaseModel):
    """One open episode priced by the flows (contracts/repair.RepairPriority as JSON, in the
    hot state's `repair_key(site)`). Money is null for a role that may not see it."""

    episode_id: str
    asset_id: str
    unit_id: str
    site_id: str
    contract_id: str
    kind: Literal["ltsa", "technical"]  # technical: the site has no LTSA, no money at stake
    currency: str
    state: Literal["available", "derated", "unavailable", "unknown"]  # the asset's now
    derate_fraction: float | None
    cause: str | None
    since_ms: int  # the episode's start
    lost_hours: float  # the episode's, capacity-weighted, up to as_of_ms
    lost_mwh: float
    as_of_ms: int  # the site's final time the episode was priced at
    period: str  # the open measurement period
    contract_year: int
    hours: float  # the extra time priced: 1, or what is left of the period
    marginal_ld_per_hour: float | None  # ld_after − ld_now
    ld_now: float | None  # the period's LD if the asset is repaired now …
    ld_after: float | None  # … and if it stays as it is one more hour
    availability_now_pct: float | None  # the period-end availability of those two cases
    availability_after_pct: float | None
    guaranteed_pct: float
    cap_left: float | None  # of the contract year's LD cap, after ld_now
    # why the marginal LD is 0: technical, excluded, no_loss, no_projection,
    # above_guarantee, cap_reached, within_step (null when it is not 0)
    zero_reason: str | None


class RepairSiteList(BaseModel):
    """`repair_key(site)` as the flows write it (flows/outputs.RepairList)."""

    site_id: str
    as_of_ms: int | None
    items: list[RepairItem]


class RepairRow(RepairItem):
    rank: int  # 1-based, in the whole list (before `limit`)
    site_name: str | None
    customer: str
    region: str
    stale: bool  # the site's snapshot is older than STALE_AFTER_MS (wall clock)
    # The period's numbers as the dashboard shows them (the site's contract KPIs)
    actual_pct: float | None
    projected_pct: float | None
    projected_ld: float | None
    ld_year_to_date: float | None
    warning_level: Literal["ok", "watch", "ld_risk"] | None


class RepairPriorityList(BaseModel):
    items: list[RepairRow]  # ranked; the first `limit`
    total: int  # open episodes in all
    currencies: list[str]  # the LTSA currency groups, in the order they are listed
    money: bool  # false: the caller's role may not see contract money (amounts null)


def repair_sort_key(item: RepairItem) -> tuple[int, str, float, int, str]:
    """contracts/repair.rank_key over the fleet: LTSA episodes first, one currency group
    after the other (alphabetical: amounts in different currencies are never compared),
    each by marginal LD per hour, highest first, then the longer episode, then id; technical
    sites last by lost MWh."""
    if item.kind == "technical":
        return (1, "", -item.lost_mwh, item.since_ms, item.episode_id)
    return (0, item.currency, -(item.marginal_ld_per_hour or 0.0), item.since_ms,
            item.episode_id)


def repair_lists(values: Iterable[bytes | str | None]) -> list[RepairSiteList]:
    """The sites' lists from their Redis values; a missing or undecodable one left out
    (logged)."""
    return list(_decoded(RepairSiteList, (v for v in values if v)))


# exclusion windows (api/routes/exclusions.py, docs/exclusions.md)

class EvidenceOut(BaseModel):
    sha256: str  # the file is GET …/evidence/{sha256}
    name: str  # sanitised
    size: int  # bytes
    content_type: str
    uploaded_by: str
    uploaded_ms: int


class RevisionOut(BaseModel):
    """A closed period's numbers before and after an approval (or a revocation)."""

    period: str
    availability_pct_before: float | None
    availability_pct_after: float | None
    ld_before: float
    ld_after: float
    bonus_before: float
    bonus_after: float
    text: str  # "2026-10 revised: 97.100 % → 98.300 %, LD €12,000 → €0, exclusion #17"


class ExclusionOut(BaseModel):
    id: int  # #17
    contract_id: str
    site_id: str
    scope_id: str  # the site or one of its units
    start_ms: int
    end_ms: int | None  # null: open-ended (a ticket not resolved yet)
    category: str  # a cause of the contract (availability rules §1)
    reason: str
    state: Literal["proposed", "approved", "rejected", "withdrawn", "revoked"]
    proposed_by: str  # a user, or ticket:<provider>:<id>
    proposed_ms: int
    decided_by: str | None
    decided_ms: int | None
    decision_comment: str | None
    revoked_by: str | None
    revoked_ms: int | None
    revoke_comment: str | None
    source: str | None  # ticket:<provider>:<id> for a ticket's proposal
    evidence: list[EvidenceOut]
    revisions: list[RevisionOut]  # recorded at approval / revocation, oldest first


# the report archive (api/routes/report_archive.py)

class ArchivedFileOut(BaseModel):
    format: Literal["pdf", "xlsx", "csv"]
    sha256: str  # of the file as archived; the download's X-Content-SHA256 header
    bytes: int
    url: str  # /api/v1/reports/archive/<contract>/<period>/v<n>.<format>


class ReportDifference(BaseModel):
    """A figure that changed from the version before (values as printed: % to 3 decimals,
    money to 2, hours to 6; null: no counted time)."""

    scope: str  # "contract" or a unit's id
    field: str  # availability_pct, shortfall_pct, ld, bonus, excluded_hours, lost_hours
    before: float | None
    after: float | None
    text: str  # "availability 97.100 % → 98.300 %"


class ArchivedReport(BaseModel):
    """One version of a period's scheduled compliance report (README "Scheduled reports")."""

    contract_id: str
    site_id: str
    period: str
    version: int
    created_ms: int
    fingerprint: str  # sha256 of its inputs (contracts/reporting.py)
    availability_pct: float | None
    guaranteed_pct: float
    ld: float
    bonus: float
    currency: str
    files: list[ArchivedFileOut]
    differences: list[ReportDifference]  # from version - 1; [] for version 1
    delivered_ms: int | None  # handed to the notifier's outbox (null: not yet)
    recipients: list[str]


# the historian's downsampled series (api/routes/historian.py)

class HistorianPoint(BaseModel):
    start_ms: int  # the bucket's start; buckets are `step_ms` wide
    count: int  # samples in the bucket
    min: float
    avg: float  # count-weighted mean
    max: float


class HistorianSeries(BaseModel):
    asset_id: str
    site_id: str
    tag: str
    unit: str  # the tag's unit (the monitoring file's), "" for none
    points: list[HistorianPoint]  # oldest first; buckets without data left out


class HistorianAnswer(BaseModel):
    from_ms: int
    to_ms: int
    step_ms: int
    series: list[HistorianSeries]  # in the order asked: by asset, then tag


# the faults-and-trips timeline and its reliability table (api/routes/faults.py)

class FaultEpisode(BaseModel):
    """An unavailability episode of the timeline, with what the fleet file says of its
    asset."""

    episode_id: str
    asset_id: str
    level: str  # unit | inverter | block
    site_id: str
    vendor: str | None  # the fleet file's (a block's: its unit's); null when not given
    model: str | None
    cause: str | None
    state: str  # unavailable | derated | unknown: the worst it went through
    start_ms: int
    end_ms: int | None  # null while it lasts
    duration_hours: float | None  # end − start; null while it lasts
    lost_hours: float  # capacity-weighted, as stored
    lost_mwh: float
    tickets: list[TicketRef]  # as stored with the episode


class ReliabilityRow(BaseModel):
    """One group's reliability over the window (contracts/reliability.py defines each)."""

    key: list[str]  # [cause] | [vendor] | [vendor, model] | [level] | [site]; [] the total
    assets: int
    asset_hours: float
    operating_hours: float
    failures: int  # unavailable outages that started in the window
    downtime_hours: float
    repairs: int  # outages that ended in the window
    repair_hours: float
    mttr_hours: float | None
    mtbf_hours: float | None
    open: int  # outages not ended by `to`
    derated: int  # derated episodes that started in the window (no failures)
    derated_hours: float
    comms_hours: float  # no data (unknown): neither operating nor down


class FaultsAnswer(BaseModel):
    from_ms: int
    to_ms: int
    group_by: str
    episodes: list[FaultEpisode]  # newest first, at most `limit`
    episodes_total: int  # every episode of the window and filters
    groups: list[ReliabilityRow]  # most failures first, then most downtime
    total: ReliabilityRow


# battery health: fade, end of life, exposure (api/routes/battery_health.py)

class SohPoint(BaseModel):
    start_ms: int  # the bucket's start; buckets are `soh_step_ms` wide
    min: float
    avg: float
    max: float


class FadeRate(BaseModel):
    """Percentage points of SOH lost (> 0: a loss) per year or per 1,000 EFC, with its 95 %
    band."""

    value: float
    low: float
    high: float
    std_error: float


class FadeFitOut(BaseModel):
    """SOH = a + b·years + c·EFC by least squares (contracts/battery_health.py)."""

    method: Literal["time_and_cycles", "time_only"]  # time_only: no rate per cycle (note says)
    samples: int
    first_ms: int
    last_ms: int
    per_year: FadeRate | None  # calendar fade (time_only: all fade at the duty seen)
    per_1000_efc: FadeRate | None
    efc: float  # equivalent full cycles between the first and the last sample
    efc_per_year: float
    at_duty_per_year: FadeRate | None  # calendar + cycle fade at the duty seen
    soh_now_pct: float  # fitted, at the last sample
    rmse_pct: float
    note: str


class ProjectionOut(BaseModel):
    threshold_pct: float
    threshold_source: Literal["contract", "default"]
    reached: bool
    date: str | None  # (ISO dates) when the fitted SOH reaches the threshold at the fade measured
    earliest: str | None  # … at the band's fastest fade
    latest: str | None  # … at its slowest (null: the band includes no fade)
    note: str


class AugmentationOut(BaseModel):
    add_mwh: float
    by: str  # ISO date
    horizon: str  # ISO date: the contract's end
    text: str


class ExposureBand(BaseModel):
    label: str
    low: float | None  # inclusive; null: unbounded
    high: float | None  # exclusive; null: unbounded
    hours: float


class UnitHealth(BaseModel):
    unit_id: str
    site_id: str
    vendor: str | None
    model: str | None
    rated_energy_mwh: float
    commissioned: str  # ISO date
    soh: list[SohPoint]  # oldest first, at most `points`; buckets without data left out
    soh_step_ms: int
    fit_step_ms: int  # the buckets of the fit and of the cycles by each of its samples
    power_step_ms: int  # the power's resolution (cycles, C-rate exposure): a minute
    efc: float  # equivalent full cycles in the window (grid-side throughput / 2 × rated)
    fit: FadeFitOut | None  # null: too little data (no_fit_reason says)
    no_fit_reason: str
    projection: ProjectionOut | None
    augmentation: AugmentationOut | None  # null: no fit, no contract, or no need
    threshold_pct: float
    threshold_source: Literal["contract", "default"]
    data_to_ms: int | None  # the end of the last SOH bucket with data (null: none)
    temperature_hours: list[ExposureBand]  # the unit's hottest cell (unit, blocks), °C
    c_rate_hours: list[ExposureBand]  # |P| / rated energy, 1/h


class BatteryHealthAnswer(BaseModel):
    from_ms: int
    to_ms: int
    units: list[UnitHealth]  # by site, then unit, as in the fleet file
    data_to_ms: int | None  # the freshest unit's
# -- api/routes/vendors.py ----------------------------------------------------------------


class VendorBenchRow(BaseModel):
    """One vendor's (or one vendor and model's) figures over the window
    (contracts/benchmarking.py defines each)."""

    key: list[str]  # [vendor] | [vendor, model]; [] the total
    assets: int  # battery units or inverters (the `level`)
    installed_mw: float
    installed_mwh: float
    availability_pct: float | None  # time-based, power-weighted; None: no data
    lost_mwh: float  # rated MW × lost hours
    lost_mwh_per_mwh: float | None
    failures_per_mw_year: float | None
    reliability: ReliabilityRow  # failures, downtime, MTBF, MTTR (as /analytics/faults)
    charge_mwh: float
    discharge_mwh: float
    efficiency_pct: float | None  # round-trip, discharged / charged; None at inverter level
    cycles: float | None  # equivalent full cycles: discharged MWh / installed MWh
    fade_pct_per_year: float | None  # SOH points lost per year, energy-weighted mean
    assets_with_fade: int


class DataSource(BaseModel):
    """Where figures of a view come from, and how fresh what was found is."""

    name: str
    feeds: list[str]  # the figures it feeds
    latest_ms: int | None  # the newest time of its data in the window; None: none found


class VendorsAnswer(BaseModel):
    from_ms: int
    to_ms: int
    level: str  # "unit" (battery vendors) | "inverter" (PCS vendors)
    vendors: list[VendorBenchRow]  # by vendor
    models: list[VendorBenchRow]  # by vendor, then model
    total: VendorBenchRow
    sources: list[DataSource]
# --- api/routes/comms.py: controller health and comms ---


class CommsSource(BaseModel):
    """One data source of an analytics view and how fresh it is."""

    name: str
    what: str
    newest_ms: int | None  # its newest record the answer used; None: it had none


class CommsAbout(BaseModel):
    """An analytics view's header: who it is for, the decision it supports, its sources."""

    view: str
    audience: str
    decision: str
    sources: list[CommsSource]


class CommsFiguresView(BaseModel):
    """Poll figures over the window (contracts/comms.py `combine`): p50 and p95 are the
    stats windows' own weighted by the polls each answered, max the largest."""

    windows: int  # stats windows in the range
    polls: int
    failed: int  # dropped after their retries
    retries: int
    drop_rate: float | None  # failed / polls
    retry_rate: float | None  # retries / polls
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None


class CommsStateChange(BaseModel):
    ts_ms: int
    state: Literal["online", "degraded", "offline"]
    previous: Literal["online", "degraded", "offline"] | None
    reason: str
    consecutive_failures: int


class CommsDevice(BaseModel):
    device_id: str
    site_id: str
    connector: str
    gateway: str | None
    state: Literal["online", "degraded", "offline"] | None  # now (None: none reported)
    since_ms: int | None  # when it took that state
    reason: str | None  # of the last change
    hours: dict[str, float]  # online / degraded / offline within [from, min(to, now))
    figures: CommsFiguresView
    changes: list[CommsStateChange]  # in [from, to), oldest first


class CommsGateway(BaseModel):
    gateway: str  # host:port, or an OPC UA endpoint; "unknown" for devices that named none
    site_ids: list[str]
    state: Literal["online", "degraded", "offline"] | None  # from its devices' states now
    devices_by_state: dict[str, int]
    figures: CommsFiguresView  # all its devices' windows together
    devices: list[CommsDevice]


class CommsAnswer(BaseModel):
    about: CommsAbout
    from_ms: int
    to_ms: int
    newest_ms: int | None  # the newest device-health event the answer used: its freshness
    gateways: list[CommsGateway]  # worst state first, then by name
