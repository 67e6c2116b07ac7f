"""Where hot state lives in Redis: one place for key names, used by the flows (writers) and
the API (readers). The live channels and their logs are in connectors/live_log.py."""

from __future__ import annotations

PREFIX = "bessmon"


def site_key(site_id: str) -> str:
    """The latest `SiteAvailability` snapshot of a site (JSON string)."""
    return f"{PREFIX}:site:{site_id}"


def latest_key(unit_id: str) -> str:
    """A battery unit's newest values: {"ts_ms", "assets": {asset: {tag: value}}, "status":
    {asset: {state, derate_fraction, cause, last_hour_pct, today_pct}}}."""
    return f"{PREFIX}:latest:{unit_id}"


def alarms_key(site_id: str) -> str:
    """A site's active breaches: hash breach id → BreachEvent JSON (written by the flows)."""
    return f"{PREFIX}:alarms:{site_id}"


def alarm_handling_key(site_id: str) -> str:
    """What operators did to a site's active alarms: hash breach id → AlarmHandling JSON
    (written by the API, dropped by the flows when the breach clears)."""
    return f"{PREFIX}:alarm-handling:{site_id}"


def alerts_key(scope: str) -> str:
    """A site's active early warnings: hash alert id → Alert JSON."""
    return f"{PREFIX}:alerts:{scope}"


def episodes_key(site_id: str) -> str:
    """A site's open unavailability episodes: hash episode id → UnavailabilityEpisode JSON."""
    return f"{PREFIX}:episodes:{site_id}"


def repair_key(site_id: str) -> str:
    """A site's open episodes ranked by repair priority: JSON {"site_id", "as_of_ms",
    "items": [RepairPriority as JSON, …]} (contracts/repair.py), written whole by the flows
    at each KPI step."""
    return f"{PREFIX}:repair:{site_id}"


def tickets_key(site_id: str) -> str:
    """The newest version of every ticket on a site's assets: hash `provider:ticket_id` →
    TicketEvent JSON."""
    return f"{PREFIX}:tickets:{site_id}"


def dead_letters_key(site_id: str | None) -> str:
    """Refused records by source and reason: hash `["device", "reason"]` (JSON) →
    DeadLetterTally JSON; `unrouted` for records that named no site of the fleet."""
    return f"{PREFIX}:dead-letters:{site_id or 'unrouted'}"


def comms_state_key(site_id: str) -> str:
    """Each device's current health at a site: hash device id → its last `DeviceHealth`
    (state change) JSON, written by the flows' device-health input."""
    return f"{PREFIX}:comms-state:{site_id}"


def comms_stats_key(site_id: str) -> str:
    """Each device's last poll-figures window at a site: hash device id → `DeviceStats`
    JSON."""
    return f"{PREFIX}:comms-stats:{site_id}"


def control_key(site_id: str) -> str:
    """What the control loop holds of a site's units: hash unit id → UnitControlView JSON
    (contracts/control.py; written by the control loop, read by the API)."""
    return f"{PREFIX}:control:{site_id}"


def hot_state_marker(step_id: str, worker: int) -> str:
    """Set by each of the flows' Redis sink partitions once its hot state is in this Redis:
    gone, Redis restarted empty and the partition writes what it holds again."""
    return f"{PREFIX}:hot-state:{step_id}:{worker}"


CONTROL_ALIVE_KEY = f"{PREFIX}:control:alive"  # the control loop's last beat (epoch ms)
