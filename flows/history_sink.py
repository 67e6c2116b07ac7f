"""Bytewax sink for the history store (connectors/history): final status intervals, final
days and periods of availability, breaches, alerts, episodes and per-minute telemetry, one
write per kind per batch. The store's writes are idempotent (keyed upserts), so an epoch
replayed after a recovery writes nothing twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors import metrics
from connectors.history import HistoryStore, open_history
from connectors.history.rows import AvailabilityRow, StatusIntervalRow, TelemetryRow
from connectors.settings import Settings
from contracts.events import Alert, BreachEvent, PeriodAvailability, UnavailabilityEpisode
from flows.outputs import Output
from flows.sink_errors import Reporter, SinkGuard, describe_json

HistoryItem = (StatusIntervalRow | AvailabilityRow | TelemetryRow | PeriodAvailability
               | BreachEvent | Alert | UnavailabilityEpisode)


def history_item(item: Output) -> HistoryItem | None:
    return item if isinstance(item, StatusIntervalRow | AvailabilityRow | TelemetryRow
                              | PeriodAvailability | BreachEvent | Alert
                              | UnavailabilityEpisode) else None


def period_rows(item: PeriodAvailability) -> list[AvailabilityRow]:
    """A final measurement period: one row per unit."""
    return [AvailabilityRow(u.asset_id, item.site_id, item.measurement_period, item.start_ms,
                            item.end_ms, u.window_hours, u.excluded_hours, u.lost_hours,
                            u.availability_pct) for u in item.units]


def timed(write: Callable[[Sequence[Any]], None]) -> Callable[[Sequence[Any]], None]:
    """A store write that reports its time (bessmon_history_write_duration_seconds, by the
    table the write method is named for: write_status → status)."""
    seconds = metrics.HISTORY_WRITE_SECONDS.labels(write.__name__.removeprefix("write_"))

    def run(rows: Sequence[Any]) -> None:
        started = time.monotonic()
        try:
            write(rows)
        finally:
            seconds.observe(time.monotonic() - started)

    return run


class _Partition(StatelessSinkPartition[HistoryItem]):
    """One write per kind per batch, each through the sink's guard: an item the store
    refuses goes to the dead-letter topic, an outage is retried (flows/sink_errors.py)."""

    def __init__(self, store: HistoryStore, guard: SinkGuard) -> None:
        self._store = store
        self._guard = guard

    def write_batch(self, items: list[HistoryItem]) -> None:
        status: list[StatusIntervalRow] = []
        availability: list[AvailabilityRow] = []
        telemetry: list[TelemetryRow] = []
        breaches: list[BreachEvent] = []
        alerts: list[Alert] = []
        episodes: list[UnavailabilityEpisode] = []
        for item in items:
            if isinstance(item, StatusIntervalRow):
                status.append(item)
            elif isinstance(item, AvailabilityRow):
                availability.append(item)
            elif isinstance(item, PeriodAvailability):
                availability.extend(period_rows(item))
            elif isinstance(item, TelemetryRow):
                telemetry.append(item)
            elif isinstance(item, BreachEvent):
                breaches.append(item)
            elif isinstance(item, Alert):
                alerts.append(item)
            else:
                episodes.append(item)
        store = self._store
        writes: list[tuple[Sequence[Any], Callable[[Sequence[Any]], None]]] = [
            (status, store.write_status), (availability, store.write_availability),
            (telemetry, store.write_telemetry), (breaches, store.write_breaches),
            (alerts, store.write_alerts), (episodes, store.write_episodes)]
        for rows, write in writes:
            self._guard.write(rows, timed(write))

    def close(self) -> None:
        self._store.close()


class HistorySink(DynamicSink[HistoryItem]):
    def __init__(self, settings: Settings, reporter: Reporter) -> None:
        self._settings = settings
        self._reporter = reporter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(open_history(self._settings),
                          SinkGuard("history", self._reporter, describe_json))
