"""Where hot state lives in Redis: one place for key and channel names, used by the flows
(writers) and the API (readers)."""

from __future__ import annotations

PREFIX = "bessmon"
SITE_CHANNEL_PATTERN = f"{PREFIX}:live:site:*"


def site_key(site_id: str) -> str:
    """The latest `SiteAvailability` snapshot of a site (JSON string)."""
    return f"{PREFIX}:site:{site_id}"


def site_channel(site_id: str) -> str:
    """Pub/sub channel carrying every new `SiteAvailability` of a site."""
    return f"{PREFIX}:live:site:{site_id}"


def site_id_of_channel(channel: str) -> str:
    return channel.removeprefix(f"{PREFIX}:live:site:")


def latest_key(unit_id: str) -> str:
    """A battery unit's newest values: {"ts_ms", "assets": {asset: {tag: value}}, "status":
    {asset: {state, derate_fraction, cause, last_hour_pct, today_pct}}}."""
    return f"{PREFIX}:latest:{unit_id}"


ALARMS_CHANNEL = f"{PREFIX}:live:alarms"  # every breach raised or cleared


def alarms_key(site_id: str) -> str:
    """A site's active breaches: hash breach id → BreachEvent JSON (written by the flows)."""
    return f"{PREFIX}:alarms:{site_id}"


ALARM_HANDLING_CHANNEL = f"{PREFIX}:live:alarm-handling"  # every acknowledge / shelve


def alarm_handling_key(site_id: str) -> str:
    """What operators did to a site's active alarms: hash breach id → AlarmHandling JSON
    (written by the API, dropped by the flows when the breach clears)."""
    return f"{PREFIX}:alarm-handling:{site_id}"


ALERTS_CHANNEL = f"{PREFIX}:live:alerts"  # every early warning raised or cleared


def alerts_key(scope: str) -> str:
    """A site's active early warnings: hash alert id → Alert JSON."""
    return f"{PREFIX}:alerts:{scope}"


def episodes_key(site_id: str) -> str:
    """A site's open unavailability episodes: hash episode id → UnavailabilityEpisode JSON."""
    return f"{PREFIX}:episodes:{site_id}"
