"""The history store: what charts and reports read — status intervals, availability per
asset per bucket, downsampled telemetry, breaches, alerts, unavailability episodes and the
devices' health (state changes, poll-stats windows) (docs/architecture.md, "The data path").

One interface (`HistoryStore`), two engines chosen by configuration: QuestDB when
`QUESTDB_URL` is set (scale-out), else an embedded SQLite file at `BESSMON_HISTORY_PATH`
or `<run_dir>/history.db` (the embedded default)."""

from __future__ import annotations

from connectors.history.rows import AvailabilityRow, Bucket, StatusIntervalRow, TelemetryRow
from connectors.history.sqlite import SqliteHistoryStore
from connectors.history.store import HistoryStore, HistoryStoreError
from connectors.settings import Settings

__all__ = [
    "AvailabilityRow",
    "Bucket",
    "HistoryStore",
    "HistoryStoreError",
    "SqliteHistoryStore",
    "StatusIntervalRow",
    "TelemetryRow",
    "open_history",
]


def open_history(settings: Settings) -> HistoryStore:
    """The configured history store, its schema ready. Close it when done."""
    if settings.questdb_url:
        # Imported here: the embedded default needs neither the QuestDB client nor psycopg.
        from connectors.history.questdb import QuestDBHistoryStore

        return QuestDBHistoryStore.from_url(settings.questdb_url)
    return SqliteHistoryStore(settings.history_path or settings.run_dir / "history.db")
