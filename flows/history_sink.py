"""Bytewax sink for the history store (connectors/history): final status intervals, final
days and periods of availability, breaches, alerts, episodes and per-minute telemetry, one
write per kind per batch. The store's writes are idempotent (keyed upserts), so an epoch
replayed after a recovery writes nothing twice."""

from __future__ import annotations

from collections import defaultdict

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.history import HistoryStore, open_history
from connectors.history.rows import AvailabilityRow, StatusIntervalRow, TelemetryRow
from connectors.settings import Settings
from contracts.events import Alert, BreachEvent, PeriodAvailability, UnavailabilityEpisode
from flows.site_state import DayAvailability, IntervalRecord, Output, TelemetryMinute

HistoryItem = (IntervalRecord | DayAvailability | PeriodAvailability | BreachEvent | Alert
               | UnavailabilityEpisode | TelemetryMinute)


def history_item(item: Output) -> HistoryItem | None:
    return item if isinstance(item, IntervalRecord | DayAvailability | PeriodAvailability
                              | BreachEvent | Alert | UnavailabilityEpisode
                              | TelemetryMinute) else None


def availability_rows(item: DayAvailability | PeriodAvailability) -> list[AvailabilityRow]:
    if isinstance(item, DayAvailability):
        return [AvailabilityRow(item.asset_id, item.site_id, "day", item.start_ms, item.end_ms,
                                item.window_h, item.excluded_h, item.lost_h,
                                item.availability_pct)]
    return [AvailabilityRow(u.asset_id, item.site_id, item.measurement_period, item.start_ms,
                            item.end_ms,
                            u.window_hours, u.excluded_hours, u.lost_hours, u.availability_pct)
            for u in item.units]


class _Partition(StatelessSinkPartition[HistoryItem]):
    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    def write_batch(self, items: list[HistoryItem]) -> None:
        by_kind: dict[type, list[object]] = defaultdict(list)
        for item in items:
            by_kind[type(item)].append(item)
        store = self._store
        if IntervalRecord in by_kind:
            store.write_status([
                StatusIntervalRow(r.asset_id, r.site_id, r.start_ms, r.end_ms, r.status.state,
                                  r.status.derate_fraction, r.status.cause)
                for r in by_kind[IntervalRecord] if isinstance(r, IntervalRecord)])
        rows = [row for kind in (DayAvailability, PeriodAvailability)
                for item in by_kind.get(kind, ())
                if isinstance(item, DayAvailability | PeriodAvailability)
                for row in availability_rows(item)]
        if rows:
            store.write_availability(rows)
        if BreachEvent in by_kind:
            store.write_breaches([b for b in by_kind[BreachEvent] if isinstance(b, BreachEvent)])
        if Alert in by_kind:
            store.write_alerts([a for a in by_kind[Alert] if isinstance(a, Alert)])
        if TelemetryMinute in by_kind:
            store.write_telemetry([
                TelemetryRow(m.asset_id, m.site_id, m.tag, m.start_ms, m.count, m.min, m.max,
                             m.mean, m.last)
                for m in by_kind[TelemetryMinute] if isinstance(m, TelemetryMinute)])
        if UnavailabilityEpisode in by_kind:
            store.write_episodes([e for e in by_kind[UnavailabilityEpisode]
                                  if isinstance(e, UnavailabilityEpisode)])

    def close(self) -> None:
        self._store.close()


class HistorySink(DynamicSink[HistoryItem]):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(open_history(self._settings))
