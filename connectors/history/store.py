"""The one interface charts, reports and flows use to reach history, whichever engine is behind
it (docs/architecture.md, "The data path").

Writes take a batch and are idempotent: each table has a dedup key and a later row with the
same key replaces the earlier one, so a flow that replays an epoch after crash recovery writes
nothing twice. Queries take half-open ranges `[start_ms, end_ms)` and return rows ordered by
time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from connectors.history.rows import (
    BUCKETS,
    AvailabilityRow,
    Bucket,
    DeviceStatsTotal,
    StatusIntervalRow,
    TelemetryMinute,
    TelemetryRow,
)
from contracts.events import Alert, BreachEvent, DeviceHealth, DeviceStats, UnavailabilityEpisode


class HistoryStoreError(RuntimeError):
    """The history store could not be reached, or refused a write or a query."""


class HistoryStore(Protocol):
    # Writes — dedup key of each table in brackets; last write wins.
    def write_status(self, rows: Sequence[StatusIntervalRow]) -> None:
        """[asset_id, start_ms]"""

    def write_availability(self, rows: Sequence[AvailabilityRow]) -> None:
        """[asset_id, bucket, start_ms]"""

    def write_telemetry(self, rows: Sequence[TelemetryRow]) -> None:
        """[asset_id, tag, start_ms]"""

    def write_telemetry_minutes(self, minutes: Sequence[TelemetryMinute]) -> None:
        """Each minute's rows, as `write_telemetry` would ([asset_id, tag, start_ms])."""

    def write_breaches(self, events: Sequence[BreachEvent]) -> None:
        """[breach_id, state]"""

    def write_alerts(self, events: Sequence[Alert]) -> None:
        """[alert_id, state]"""

    def write_episodes(self, episodes: Sequence[UnavailabilityEpisode]) -> None:
        """[episode_id]"""

    def write_device_health(self, events: Sequence[DeviceHealth | DeviceStats]) -> None:
        """State changes [site_id, device_id, ts_ms], stats windows [site_id, device_id,
        start_ms]; events without a site are not kept (the flows place every event before
        it gets here)."""

    # Queries
    def status_intervals(
        self, asset_ids: Iterable[str], start_ms: int, end_ms: int
    ) -> list[StatusIntervalRow]:
        """Intervals of these assets overlapping the range (open ones included), by start."""

    def availability(
        self, asset_ids: Iterable[str], bucket: Bucket, start_ms: int, end_ms: int
    ) -> list[AvailabilityRow]:
        """Availability rows of one bucket kind overlapping the range, by start."""

    def telemetry(
        self, asset_id: str, tag: str, start_ms: int, end_ms: int, step_ms: int
    ) -> list[TelemetryRow]:
        """Stored buckets starting in the range, re-aggregated to `step_ms` (buckets aligned
        on multiples of it since the epoch): count summed, min of mins, max of maxes,
        count-weighted mean, last of the latest stored bucket."""

    def breaches(self, site_ids: Iterable[str], start_ms: int, end_ms: int) -> list[BreachEvent]:
        """Breach events (raised and cleared) of these sites whose `ts_ms` is in the range."""

    def alerts(
        self, scope_ids: Iterable[str] | None, start_ms: int, end_ms: int
    ) -> list[Alert]:
        """Alert events of these scopes (all scopes for None) whose `ts_ms` is in the range."""

    def episodes(
        self, asset_ids: Iterable[str], start_ms: int, end_ms: int
    ) -> list[UnavailabilityEpisode]:
        """Episodes of these assets overlapping the range (ongoing ones included), by start."""

    def device_states(self, site_ids: Iterable[str], start_ms: int,
                      end_ms: int) -> list[DeviceHealth]:
        """State changes of these sites' devices in the range and each device's last one
        before it, by time (then device)."""

    def device_stats(self, site_ids: Iterable[str], start_ms: int,
                     end_ms: int) -> list[DeviceStatsTotal]:
        """Per device of these sites, its stats windows starting in the range added up, by
        device id."""

    def close(self) -> None: ...


def id_list(ids: Iterable[str], what: str = "ids") -> list[str]:
    """The ids of a query, deduplicated in order; a bare string is refused because iterating
    it would silently query one-letter ids."""
    if isinstance(ids, str):
        raise TypeError(f"{what} must be a collection of strings, not one string")
    return list(dict.fromkeys(ids))


def per_device(totals: Iterable[DeviceStatsTotal]) -> list[DeviceStatsTotal]:
    """Totals per (site, device) → one per device, by device id: a device that moved to
    another site has one per site, added up and named by its newest window (on a tie of
    start, the greater site id's)."""
    merged: dict[str, DeviceStatsTotal] = {}
    for t in sorted(totals, key=lambda t: (t.newest_start_ms, t.site_id)):
        before = merged.get(t.device_id)
        merged[t.device_id] = t if before is None else replace(
            t, totals=before.totals + t.totals)
    return [merged[d] for d in sorted(merged)]


def check_range(start_ms: int, end_ms: int) -> None:
    if end_ms < start_ms:
        raise ValueError(f"empty range: end_ms {end_ms} is before start_ms {start_ms}")


def check_step(step_ms: int) -> int:
    if isinstance(step_ms, bool) or not isinstance(step_ms, int) or step_ms <= 0:
        raise ValueError(f"step_ms must be a positive integer, not {step_ms!r}")
    return step_ms


def check_bucket(bucket: str) -> None:
    if bucket not in BUCKETS:
        raise ValueError(f"bucket {bucket!r} is not one of {sorted(BUCKETS)}")
