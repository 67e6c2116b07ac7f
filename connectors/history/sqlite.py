"""The embedded history store: one SQLite file, so `bessmon up` keeps history on a fresh
machine with nothing to install (docs/architecture.md, "Two ways to run").

Several flow worker processes write the same file: WAL mode lets readers run beside the one
writer, `busy_timeout` makes a writer wait for the lock instead of failing with "database is
locked", and every batch is one `BEGIN IMMEDIATE` transaction — taking the write lock up front,
so two processes never both hold a read snapshot they then try to upgrade (the one case the
busy handler cannot resolve). `synchronous=NORMAL` may lose the last commits on power loss,
never corrupt the file; Kafka is the log of record and a replay rewrites them (upserts).
The file must sit on a local disk: WAL needs shared memory between the processes.

Breaches, alerts and episodes keep their event JSON whole beside the columns they are queried
by; per-minute telemetry is packed an hour per (asset, tag) in `telemetry_hours`
(connectors/history/minute_blobs.py: 60 times fewer rows than a row per minute, which
was four fifths of a month's replay); the other tables are plain columns. The schema's
version is `PRAGMA user_version`; opening a file applies the migrations it lacks."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from connectors.history import minute_blobs
from connectors.history.minute_blobs import HOUR_MS, MINUTE_MS
from connectors.history.rows import (
    AvailabilityRow,
    Bucket,
    DeviceStatsTotal,
    StatusIntervalRow,
    TelemetryMinute,
    TelemetryRow,
)
from connectors.history.store import (
    HistoryStoreError,
    check_bucket,
    check_range,
    check_step,
    id_list,
    per_device,
)
from contracts.comms import PollTotals
from contracts.events import (
    Alert,
    BreachEvent,
    DeviceHealth,
    DeviceStats,
    UnavailabilityEpisode,
)

BUSY_TIMEOUT_MS = 30_000
log = logging.getLogger(__name__)

# MIGRATIONS[i] takes a file from user_version i to i + 1: SQL statements, or functions of
# the connection for what SQL cannot do.
Migration = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[tuple[Migration, ...], ...] = (
    (
        """CREATE TABLE status_intervals (
            asset_id TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            end_ms INTEGER,
            state TEXT NOT NULL,
            derate_fraction REAL,
            cause TEXT,
            PRIMARY KEY (asset_id, start_ms)
        ) WITHOUT ROWID""",
        """CREATE TABLE availability (
            asset_id TEXT NOT NULL,
            bucket TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            end_ms INTEGER NOT NULL,
            window_h REAL NOT NULL,
            excluded_h REAL NOT NULL,
            lost_h REAL NOT NULL,
            availability_pct REAL,
            PRIMARY KEY (asset_id, bucket, start_ms)
        ) WITHOUT ROWID""",
        """CREATE TABLE telemetry (
            asset_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            vmin REAL NOT NULL,
            vmax REAL NOT NULL,
            vmean REAL NOT NULL,
            vlast REAL NOT NULL,
            PRIMARY KEY (asset_id, tag, start_ms)
        ) WITHOUT ROWID""",
        """CREATE TABLE breaches (
            breach_id TEXT NOT NULL,
            state TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            asset_id TEXT NOT NULL,
            event TEXT NOT NULL,
            PRIMARY KEY (breach_id, state)
        ) WITHOUT ROWID""",
        "CREATE INDEX breaches_by_site_time ON breaches (site_id, ts_ms)",
        """CREATE TABLE alerts (
            alert_id TEXT NOT NULL,
            state TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            scope_id TEXT NOT NULL,
            site_id TEXT,
            event TEXT NOT NULL,
            PRIMARY KEY (alert_id, state)
        ) WITHOUT ROWID""",
        "CREATE INDEX alerts_by_time ON alerts (ts_ms)",
        "CREATE INDEX alerts_by_scope_time ON alerts (scope_id, ts_ms)",
        """CREATE TABLE episodes (
            episode_id TEXT NOT NULL PRIMARY KEY,
            asset_id TEXT NOT NULL,
            site_id TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER,
            event TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX episodes_by_asset_start ON episodes (asset_id, start_ms)",
    ),
    (  # 2: device health — connectors' state changes and poll figures (contracts/comms.py)
        """CREATE TABLE device_states (
            device_id TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            event TEXT NOT NULL,
            PRIMARY KEY (site_id, device_id, ts_ms)
        ) WITHOUT ROWID""",
        """CREATE TABLE device_stats (
            device_id TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            end_ms INTEGER NOT NULL,
            connector TEXT NOT NULL,
            gateway TEXT NOT NULL,
            polls INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            retries INTEGER NOT NULL,
            p50 REAL,
            p95 REAL,
            pmax REAL,
            PRIMARY KEY (site_id, device_id, start_ms)
        ) WITHOUT ROWID""",
    ),
    (  # 3: per-minute telemetry an hour per (asset, tag) — see `pack_telemetry`
        """CREATE TABLE telemetry_hours (
            asset_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            hour_ms INTEGER NOT NULL,
            site_id TEXT NOT NULL,
            minutes BLOB NOT NULL,
            PRIMARY KEY (asset_id, tag, hour_ms)
        ) WITHOUT ROWID""",
        lambda db: pack_telemetry(db),
        "DROP TABLE telemetry",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """`INSERT … ON CONFLICT (key) DO UPDATE` setting every other column: last write wins."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def pack_telemetry(db: sqlite3.Connection) -> None:
    """Migration 3: the rows of `telemetry` (one per asset, tag and minute) into
    `telemetry_hours`, in key order and chunks (an hour cut by a chunk is merged). A row
    that did not start on a minute fills the minute it started in. About 200,000 rows a
    second here: a file of hours of fleet-30 takes minutes, so it says what it does."""
    total = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    if total:
        log.warning("history: packing %s per-minute telemetry rows an hour per (asset, tag) "
                    "(schema 3, once); other processes opening the file wait", f"{total:,}")
    started, done = time.monotonic(), 0
    rows = db.execute("SELECT asset_id, tag, start_ms, site_id, n, vmin, vmax, vmean, vlast "
                      "FROM telemetry ORDER BY asset_id, tag, start_ms")
    while chunk := rows.fetchmany(100_000):
        db.executemany(UPSERT_TELEMETRY_HOUR, minute_blobs.blobs_of_rows(
            (asset_id, tag, start_ms - start_ms % MINUTE_MS, site_id, figures)
            for asset_id, tag, start_ms, site_id, *figures in chunk))
        done += len(chunk)
        if done % 1_000_000 < len(chunk) or done == total:
            log.warning("history: %s of %s telemetry rows packed (%.0f s)", f"{done:,}",
                        f"{total:,}", time.monotonic() - started)


UPSERT_STATUS = upsert_sql(
    "status_intervals",
    ("asset_id", "start_ms", "site_id", "end_ms", "state", "derate_fraction", "cause"),
    ("asset_id", "start_ms"),
)
UPSERT_AVAILABILITY = upsert_sql(
    "availability",
    ("asset_id", "bucket", "start_ms", "site_id", "end_ms", "window_h", "excluded_h", "lost_h",
     "availability_pct"),
    ("asset_id", "bucket", "start_ms"),
)
CACHE_KIB = 64 * 1024  # each connection's page cache

# An hour written again keeps the minutes the new write lacks (last write wins per minute).
UPSERT_TELEMETRY_HOUR = """
    INSERT INTO telemetry_hours (asset_id, tag, hour_ms, site_id, minutes) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (asset_id, tag, hour_ms) DO UPDATE
    SET site_id = excluded.site_id, minutes = merge_minutes(minutes, excluded.minutes)"""
UPSERT_BREACH = upsert_sql(
    "breaches",
    ("breach_id", "state", "ts_ms", "site_id", "asset_id", "event"),
    ("breach_id", "state"),
)
UPSERT_ALERT = upsert_sql(
    "alerts",
    ("alert_id", "state", "ts_ms", "scope_id", "site_id", "event"),
    ("alert_id", "state"),
)
# Keyed by site first: the view reads a site's devices, a primary-key range.
UPSERT_DEVICE_STATE = upsert_sql(
    "device_states", ("site_id", "device_id", "ts_ms", "event"),
    ("site_id", "device_id", "ts_ms"))
UPSERT_DEVICE_STATS = upsert_sql(
    "device_stats", ("site_id", "device_id", "start_ms", "end_ms", "connector", "gateway",
                     "polls", "failed", "retries", "p50", "p95", "pmax"),
    ("site_id", "device_id", "start_ms"))
UPSERT_EPISODE = upsert_sql(
    "episodes",
    ("episode_id", "asset_id", "site_id", "start_ms", "end_ms", "event"),
    ("episode_id",),
)

# Id lists travel as one JSON parameter, so a query for 20,000 assets stays one statement
# under SQLite's bound-parameter limit and still uses the (asset_id, …) keys.
SELECT_STATUS = """
    SELECT asset_id, site_id, start_ms, end_ms, state, derate_fraction, cause
    FROM status_intervals
    WHERE asset_id IN (SELECT value FROM json_each(?))
      AND start_ms < ? AND (end_ms IS NULL OR end_ms > ?)
    ORDER BY start_ms, asset_id"""
SELECT_AVAILABILITY = """
    SELECT asset_id, site_id, bucket, start_ms, end_ms, window_h, excluded_h, lost_h,
           availability_pct
    FROM availability
    WHERE asset_id IN (SELECT value FROM json_each(?))
      AND bucket = ? AND start_ms < ? AND end_ms > ?
    ORDER BY start_ms, asset_id"""
SELECT_TELEMETRY_HOURS = """
    SELECT hour_ms, site_id, minutes FROM telemetry_hours
    WHERE asset_id = ? AND tag = ? AND hour_ms > ? AND hour_ms < ?
    ORDER BY hour_ms"""
SELECT_BREACHES = """
    SELECT event FROM breaches
    WHERE site_id IN (SELECT value FROM json_each(?)) AND ts_ms >= ? AND ts_ms < ?
    ORDER BY ts_ms, breach_id, state"""
SELECT_ALERTS = """
    SELECT event FROM alerts
    WHERE ts_ms >= ? AND ts_ms < ?
    ORDER BY ts_ms, alert_id, state"""
SELECT_ALERTS_OF_SCOPES = """
    SELECT event FROM alerts
    WHERE scope_id IN (SELECT value FROM json_each(?)) AND ts_ms >= ? AND ts_ms < ?
    ORDER BY ts_ms, alert_id, state"""
# The changes in the range, and each device's last change before it (its state then).
SELECT_DEVICE_STATES = """
    SELECT ts_ms, device_id, event FROM device_states
    WHERE site_id IN (SELECT value FROM json_each(:sites)) AND ts_ms >= :start AND ts_ms < :end
    UNION ALL
    SELECT ts_ms, device_id, event FROM (
        SELECT ts_ms, device_id, event,
               row_number() OVER (PARTITION BY device_id ORDER BY ts_ms DESC) AS rn
        FROM device_states
        WHERE site_id IN (SELECT value FROM json_each(:sites)) AND ts_ms < :start)
    WHERE rn = 1
    ORDER BY ts_ms, device_id"""
# Each device's windows starting in the range added up (contracts/comms.py `PollTotals.of`,
# the oracle of the tests) — one pass along the primary key, no sort…
SELECT_DEVICE_STATS = """
    SELECT site_id, device_id, max(start_ms), count(*), sum(polls), sum(failed), sum(retries),
           sum(CASE WHEN p50 IS NULL THEN 0 ELSE polls - failed END),
           total(coalesce(p50, 0) * (polls - failed)), total(coalesce(p95, 0) * (polls - failed)),
           max(pmax)
    FROM device_stats
    WHERE site_id IN (SELECT value FROM json_each(:sites))
      AND start_ms >= :start AND start_ms < :end
    GROUP BY site_id, device_id"""
# … then what its newest window says, by its key.
SELECT_NEWEST_STATS = """
    SELECT end_ms, connector, gateway FROM device_stats
    WHERE site_id = ? AND device_id = ? AND start_ms = ?"""
SELECT_EPISODES = """
    SELECT event FROM episodes
    WHERE asset_id IN (SELECT value FROM json_each(?))
      AND start_ms < ? AND (end_ms IS NULL OR end_ms > ?)
    ORDER BY start_ms, asset_id"""


class SqliteHistoryStore:
    """The history store in one SQLite file. One connection per object, usable from any
    thread of its process (calls are serialized); open one object per process."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise HistoryStoreError(f"cannot open the history file {self.path}: {e}") from e
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # Switching a fresh file to WAL takes an exclusive lock for which SQLite does not
            # wait: processes opening one file at once retry here, within the busy timeout.
            deadline = time.monotonic() + busy_timeout_ms / 1000
            while True:
                try:
                    mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            if str(mode).lower() != "wal":
                raise HistoryStoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self._db.execute("PRAGMA synchronous = NORMAL")
            # Per-minute telemetry lands on the right-hand leaf of every (asset, tag) range at
            # once: a writer whose page cache holds them all writes 2-3× faster than with
            # SQLite's default 2 MiB (memory is taken as pages are used, not up front).
            self._db.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
            self._db.create_function("merge_minutes", 2, minute_blobs.merge, deterministic=True)
            self._migrate()
        except BaseException as e:
            self._db.close()
            if isinstance(e, sqlite3.Error):
                raise HistoryStoreError(f"cannot open the history file {self.path}: {e}") from e
            raise

    @property
    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    def _migrate(self) -> None:
        with self._transaction():
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise HistoryStoreError(
                    f"{self.path} has schema version {version}, newer than this bessmon's "
                    f"{SCHEMA_VERSION}: upgrade bessmon or use another file"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    if isinstance(statement, str):
                        self._db.execute(statement)
                    else:
                        statement(self._db)
            if version < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the file's write lock from its first statement."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise HistoryStoreError(f"{self.path}: cannot start a write: {e}") from e
            try:
                yield self._db
            except BaseException as e:
                self._rollback()
                if isinstance(e, sqlite3.Error):
                    raise HistoryStoreError(f"{self.path}: write failed: {e}") from e
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as e:
                    self._rollback()
                    raise HistoryStoreError(f"{self.path}: commit failed: {e}") from e

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _write(self, sql: str, params: Iterable[tuple[Any, ...]]) -> None:
        batch = list(params)
        if batch:
            with self._transaction() as db:
                db.executemany(sql, batch)

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise HistoryStoreError(f"{self.path}: query failed: {e}") from e

    # Writes

    def write_status(self, rows: Sequence[StatusIntervalRow]) -> None:
        self._write(UPSERT_STATUS, (
            (r.asset_id, r.start_ms, r.site_id, r.end_ms, r.state, r.derate_fraction, r.cause)
            for r in rows
        ))

    def write_availability(self, rows: Sequence[AvailabilityRow]) -> None:
        self._write(UPSERT_AVAILABILITY, (
            (r.asset_id, r.bucket, r.start_ms, r.site_id, r.end_ms, r.window_h, r.excluded_h,
             r.lost_h, r.availability_pct)
            for r in rows
        ))

    def write_telemetry(self, rows: Sequence[TelemetryRow]) -> None:
        self._write(UPSERT_TELEMETRY_HOUR, minute_blobs.blobs_of_rows(
            (r.asset_id, r.tag, r.start_ms, r.site_id, (r.count, r.min, r.max, r.mean, r.last))
            for r in rows))

    def write_telemetry_minutes(self, minutes: Sequence[TelemetryMinute]) -> None:
        self._write(UPSERT_TELEMETRY_HOUR, minute_blobs.blobs_of_blocks(
            (m.site_id, m.start_ms, m.series, m.values) for m in minutes))

    def write_breaches(self, events: Sequence[BreachEvent]) -> None:
        self._write(UPSERT_BREACH, (
            (e.breach_id, e.state, e.ts_ms, e.site_id, e.asset_id, e.model_dump_json())
            for e in events
        ))

    def write_alerts(self, events: Sequence[Alert]) -> None:
        self._write(UPSERT_ALERT, (
            (e.alert_id, e.state, e.ts_ms, e.scope_id, e.site_id, e.model_dump_json())
            for e in events
        ))

    def write_episodes(self, episodes: Sequence[UnavailabilityEpisode]) -> None:
        self._write(UPSERT_EPISODE, (
            (e.episode_id, e.asset_id, e.site_id, e.start_ms, e.end_ms, e.model_dump_json())
            for e in episodes
        ))

    def write_device_health(self, events: Sequence[DeviceHealth | DeviceStats]) -> None:
        states = [e for e in events if isinstance(e, DeviceHealth) and e.site_id is not None]
        stats = [e for e in events if isinstance(e, DeviceStats) and e.site_id is not None]
        self._write(UPSERT_DEVICE_STATE, (
            (e.site_id, e.device_id, e.ts_ms, e.model_dump_json()) for e in states))
        self._write(UPSERT_DEVICE_STATS, (
            (e.site_id, e.device_id, e.start_ms, e.end_ms, e.connector, e.gateway, e.polls,
             e.failed, e.retries, e.latency_p50_ms, e.latency_p95_ms, e.latency_max_ms)
            for e in stats))

    # Queries

    def status_intervals(
        self, asset_ids: Iterable[str], start_ms: int, end_ms: int
    ) -> list[StatusIntervalRow]:
        ids = id_list(asset_ids, "asset_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        return [
            StatusIntervalRow(*record)
            for record in self._query(SELECT_STATUS, (json.dumps(ids), end_ms, start_ms))
        ]

    def availability(
        self, asset_ids: Iterable[str], bucket: Bucket, start_ms: int, end_ms: int
    ) -> list[AvailabilityRow]:
        ids = id_list(asset_ids, "asset_ids")
        check_bucket(bucket)
        check_range(start_ms, end_ms)
        if not ids:
            return []
        params = (json.dumps(ids), bucket, end_ms, start_ms)
        return [AvailabilityRow(*record) for record in self._query(SELECT_AVAILABILITY, params)]

    def telemetry(
        self, asset_id: str, tag: str, start_ms: int, end_ms: int, step_ms: int
    ) -> list[TelemetryRow]:
        check_range(start_ms, end_ms)
        check_step(step_ms)
        hours = self._query(SELECT_TELEMETRY_HOURS, (asset_id, tag, start_ms - HOUR_MS, end_ms))
        try:
            buckets = minute_blobs.rebucket(hours, start_ms, end_ms, step_ms)
        except ValueError as e:
            raise HistoryStoreError(f"{self.path}: telemetry of {asset_id} {tag}: {e}") from e
        return [TelemetryRow(asset_id, site_id, tag, bucket_ms, n, vmin, vmax, vmean, vlast)
                for bucket_ms, site_id, n, vmin, vmax, vmean, vlast in buckets]

    def breaches(self, site_ids: Iterable[str], start_ms: int, end_ms: int) -> list[BreachEvent]:
        ids = id_list(site_ids, "site_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        records = self._query(SELECT_BREACHES, (json.dumps(ids), start_ms, end_ms))
        return [BreachEvent.model_validate_json(event) for (event,) in records]

    def alerts(
        self, scope_ids: Iterable[str] | None, start_ms: int, end_ms: int
    ) -> list[Alert]:
        check_range(start_ms, end_ms)
        if scope_ids is None:
            records = self._query(SELECT_ALERTS, (start_ms, end_ms))
        else:
            ids = id_list(scope_ids, "scope_ids")
            if not ids:
                return []
            records = self._query(SELECT_ALERTS_OF_SCOPES, (json.dumps(ids), start_ms, end_ms))
        return [Alert.model_validate_json(event) for (event,) in records]

    def episodes(
        self, asset_ids: Iterable[str], start_ms: int, end_ms: int
    ) -> list[UnavailabilityEpisode]:
        ids = id_list(asset_ids, "asset_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        records = self._query(SELECT_EPISODES, (json.dumps(ids), end_ms, start_ms))
        return [UnavailabilityEpisode.model_validate_json(event) for (event,) in records]

    def device_states(self, site_ids: Iterable[str], start_ms: int,
                      end_ms: int) -> list[DeviceHealth]:
        ids = id_list(site_ids, "site_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        records = self._query(SELECT_DEVICE_STATES,
                              {"sites": json.dumps(ids), "start": start_ms, "end": end_ms})
        return [DeviceHealth.model_validate_json(event) for *_, event in records]

    def device_stats(self, site_ids: Iterable[str], start_ms: int,
                     end_ms: int) -> list[DeviceStatsTotal]:
        ids = id_list(site_ids, "site_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        params = {"sites": json.dumps(ids), "start": start_ms, "end": end_ms}
        out = []
        for site, device, newest, *figures in self._query(SELECT_DEVICE_STATS, params):
            ((end, connector, gateway),) = self._query(SELECT_NEWEST_STATS,
                                                       (site, device, newest))
            out.append(DeviceStatsTotal(device, site, connector, gateway, newest, end,
                                        PollTotals(*figures)))
        return per_device(out)  # a device that moved to another site: one total

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteHistoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
