"""Bytewax sink for the history store (connectors/history): final status intervals, final
days and periods of availability, breaches, alerts, episodes and per-minute telemetry, one
write per kind per batch (an episode told several times in one batch: its last). The store's
writes are idempotent (keyed upserts), so an epoch replayed after a recovery writes nothing
twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors import metrics
from connectors.history import HistoryStore, open_history
from connectors.history.rows import AvailabilityRow, StatusIntervalRow, TelemetryRow
from connectors.settings import Settings
from contracts.events import (
    Alert,
    BreachEvent,
    DeviceHealth,
    DeviceStats,
    PeriodAvailability,
    UnavailabilityEpisode,
)
from flows.outputs import Output, UnitMinute
from flows.sink_errors import Reporter, SinkGuard, describe_json

HistoryItem = (StatusIntervalRow | AvailabilityRow | TelemetryRow | UnitMinute
               | PeriodAvailability | BreachEvent | Alert | UnavailabilityEpisode | DeviceHealth
               | DeviceStats)


def history_item(item: Output) -> HistoryItem | None:
    return item if isinstance(item, StatusIntervalRow | AvailabilityRow | TelemetryRow
                              | UnitMinute | PeriodAvailability | BreachEvent | Alert
                              | UnavailabilityEpisode | DeviceHealth | DeviceStats) else None


def period_rows(item: PeriodAvailability) -> list[AvailabilityRow]:
    """A final measurement period: one row per unit."""
    return [AvailabilityRow(u.asset_id, item.site_id, item.measurement_period, item.start_ms,
                            item.end_ms, u.window_hours, u.excluded_hours, u.lost_hours,
                            u.availability_pct) for u in item.units]


def timed(table: str, write: Callable[[Sequence[Any]], None]) -> Callable[[Sequence[Any]], None]:
    """A store write that reports its time (bessmon_history_write_duration_seconds{table})."""
    seconds = metrics.HISTORY_WRITE_SECONDS.labels(table)

    def run(rows: Sequence[Any]) -> None:
        started = time.monotonic()
        try:
            write(rows)
        finally:
            seconds.observe(time.monotonic() - started)

    return run


class _Partition(StatelessSinkPartition[HistoryItem]):
    """One write per kind per batch, each through the sink's guard: an item the store
    refuses goes to the dead-letter topic, an outage is retried (flows/sink_errors.py).
    The store is opened at the first write, through the guard too: a history that cannot
    be opened (its disk read-only or full, QuestDB down) is an outage like any other —
    alerted and retried — not a flows process that dies at every start."""

    def __init__(self, open_store: Callable[[], HistoryStore], guard: SinkGuard) -> None:
        self._open_store = open_store
        self._opened: HistoryStore | None = None
        self._guard = guard

    @property
    def _store(self) -> HistoryStore:
        if self._opened is None:
            self._opened = self._open_store()
        return self._opened

    def write_batch(self, items: list[HistoryItem]) -> None:
        status: list[StatusIntervalRow] = []
        availability: list[AvailabilityRow] = []
        telemetry: list[TelemetryRow] = []
        minutes: list[UnitMinute] = []
        breaches: list[BreachEvent] = []
        alerts: list[Alert] = []
        episodes: list[UnavailabilityEpisode] = []
        device_health: list[DeviceHealth | DeviceStats] = []
        for item in items:
            if isinstance(item, StatusIntervalRow):
                status.append(item)
            elif isinstance(item, AvailabilityRow):
                availability.append(item)
            elif isinstance(item, PeriodAvailability):
                availability.extend(period_rows(item))
            elif isinstance(item, UnitMinute):
                minutes.append(item)
            elif isinstance(item, TelemetryRow):
                telemetry.append(item)
            elif isinstance(item, BreachEvent):
                breaches.append(item)
            elif isinstance(item, Alert):
                alerts.append(item)
            elif isinstance(item, DeviceHealth | DeviceStats):
                device_health.append(item)
            else:
                episodes.append(item)
        # An open episode is told again at each step (its lost hours grow): the store keeps
        # the last of each (keyed upserts), so a batch writes only the last.
        episodes = list({e.episode_id: e for e in episodes}.values())
        writes: list[tuple[str, Sequence[Any], Callable[[Sequence[Any]], None]]] = [
            ("status", status, lambda rows: self._store.write_status(rows)),
            ("availability", availability, lambda rows: self._store.write_availability(rows)),
            ("telemetry", telemetry, lambda rows: self._store.write_telemetry(rows)),
            ("telemetry", minutes, lambda rows: self._store.write_telemetry_minutes(rows)),
            ("breaches", breaches, lambda rows: self._store.write_breaches(rows)),
            ("alerts", alerts, lambda rows: self._store.write_alerts(rows)),
            ("episodes", episodes, lambda rows: self._store.write_episodes(rows)),
            ("device_health", device_health,
             lambda rows: self._store.write_device_health(rows))]
        for table, rows, write in writes:
            self._guard.write(rows, timed(table, write))

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()


class HistorySink(DynamicSink[HistoryItem]):
    def __init__(self, settings: Settings, reporter: Reporter) -> None:
        self._settings = settings
        self._reporter = reporter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(lambda: open_history(self._settings),
                          SinkGuard("history", self._reporter, describe_json))
