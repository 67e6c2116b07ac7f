"""The scale-out history store: QuestDB, written over ILP/HTTP with the official `questdb`
client and read over the PostgreSQL wire protocol with psycopg 3.

`QUESTDB_URL` says where it is:

    questdb://[user:password@]host[:http_port][?param=value&…]
    questdbs://…   — the same over TLS (ILP over HTTPS, PG wire with sslmode=require)

    e.g. questdb://questdb.internal:9000?pg_port=8812&user=admin&password=quest

- `http_port` (default 9000): ILP over HTTP.
- `pg_port` (default 8812), `pg_host` (default the same host): the PG wire endpoint.
- `user`, `password` (default admin / quest, QuestDB's own defaults): PG wire credentials;
  `user:password@` in the URL does the same.
- `ilp_user` + `ilp_password` (HTTP basic auth) or `token` (bearer): ILP credentials, for a
  server that requires them (QuestDB Enterprise, or `http.user` set). None by default.
- `prefix` (default `bessmon_`): table names start with it, so one server can hold several
  deployments (and tests).
Any other parameter is refused, so a typo cannot pass unnoticed.

Tables are created up front over PG wire (`CREATE TABLE IF NOT EXISTS`) as WAL tables with
`DEDUP UPSERT KEYS`: a row whose keys match a stored one replaces it, so replaying an epoch
after a flow's crash recovery writes nothing twice. The designated timestamp (`ts`) must be
one of the keys; each table's `ts` is a time fixed by the rest of its key (an interval's
start, an event's raise time), so the keys mean exactly the store's dedup keys
(`connectors.history.store`). Breaches and alerts are therefore placed at their `raised_ms`
and carry their own event time in `event_ts`; devices' state changes at their time and their
stats windows at their start, keyed by site and device like the SQLite tables.

The ILP rows are built by small pure functions (`status_ilp`, …) and the SQL by `ddl()` and
the `*_query` functions, so both are tested without a server. ILP/HTTP answers once rows are
committed to the table's WAL; they become visible to queries when the WAL is applied, a few
milliseconds later (`wait_applied` waits for it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from questdb import QuestDBError, Sender, TimestampNanos

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
    TicketRef,
    UnavailabilityEpisode,
)

DEFAULT_HTTP_PORT = 9000
DEFAULT_PG_PORT = 8812
DEFAULT_PREFIX = "bessmon_"
FLUSH_EVERY_ROWS = 50_000  # one ILP/HTTP request per this many rows of a large batch

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class QuestDBConfig:
    host: str
    http_port: int = DEFAULT_HTTP_PORT
    pg_host: str | None = None
    pg_port: int = DEFAULT_PG_PORT
    user: str = "admin"
    password: str = "quest"
    tls: bool = False
    ilp_user: str | None = None
    ilp_password: str | None = None
    token: str | None = None
    prefix: str = DEFAULT_PREFIX

    def ilp_conf(self) -> str:
        """The `questdb` client's configuration string (ILP over HTTP, flushed by us)."""

        def esc(value: str) -> str:
            return value.replace(";", ";;")

        parts = [f"{'https' if self.tls else 'http'}::addr={self.host}:{self.http_port}",
                 "auto_flush=off"]
        if self.ilp_user is not None:
            parts += [f"username={esc(self.ilp_user)}", f"password={esc(self.ilp_password or '')}"]
        if self.token is not None:
            parts.append(f"token={esc(self.token)}")
        return ";".join(parts) + ";"

    def pg_params(self) -> dict[str, Any]:
        """Keyword arguments of `psycopg.connect` (QuestDB ignores the database name)."""
        params: dict[str, Any] = {
            "host": self.pg_host or self.host,
            "port": self.pg_port,
            "user": self.user,
            "password": self.password,
            "dbname": "qdb",
        }
        if self.tls:
            params["sslmode"] = "require"
        return params


_URL_PARAMS = {"pg_port", "pg_host", "user", "password", "ilp_user", "ilp_password", "token",
               "prefix"}


def parse_questdb_url(url: str) -> QuestDBConfig:
    """`QUESTDB_URL` → `QuestDBConfig` (format in the module docstring)."""
    parts = urlsplit(url)
    if parts.scheme not in ("questdb", "questdbs"):
        raise ValueError(f"QUESTDB_URL must start with questdb:// or questdbs://, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"QUESTDB_URL has no host: {url!r}")
    params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(params) - _URL_PARAMS)
    if unknown:
        raise ValueError(f"QUESTDB_URL: unknown parameter(s) {unknown}; known: "
                         f"{sorted(_URL_PARAMS)}")
    if ("ilp_user" in params) != ("ilp_password" in params):
        raise ValueError("QUESTDB_URL: ilp_user and ilp_password go together")
    prefix = params.get("prefix", DEFAULT_PREFIX)
    if not all(c.isalnum() or c == "_" for c in prefix):
        raise ValueError(f"QUESTDB_URL: prefix {prefix!r} may hold letters, digits and _ only")
    try:
        http_port = parts.port or DEFAULT_HTTP_PORT
        pg_port = int(params.get("pg_port", DEFAULT_PG_PORT))
    except ValueError as e:
        raise ValueError(f"QUESTDB_URL: bad port in {url!r}: {e}") from e
    return QuestDBConfig(
        host=parts.hostname,
        http_port=http_port,
        pg_host=params.get("pg_host"),
        pg_port=pg_port,
        user=unquote(parts.username) if parts.username else params.get("user", "admin"),
        password=(unquote(parts.password) if parts.password is not None
                  else params.get("password", "quest")),
        tls=parts.scheme == "questdbs",
        ilp_user=params.get("ilp_user"),
        ilp_password=params.get("ilp_password"),
        token=params.get("token"),
        prefix=prefix,
    )


# --- tables and DDL ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    """Table names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def status(self) -> str:
        return f"{self.prefix}status_intervals"

    @property
    def availability(self) -> str:
        return f"{self.prefix}availability"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}telemetry"

    @property
    def breaches(self) -> str:
        return f"{self.prefix}breaches"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def episodes(self) -> str:
        return f"{self.prefix}episodes"

    @property
    def device_states(self) -> str:
        return f"{self.prefix}device_states"

    @property
    def device_stats(self) -> str:
        return f"{self.prefix}device_stats"

    def all(self) -> tuple[str, ...]:
        return (self.status, self.availability, self.telemetry, self.breaches, self.alerts,
                self.episodes, self.device_states, self.device_stats)


TABLES = Tables()

# Per table (without prefix): columns, partitioning, dedup keys. `ts` is the designated
# timestamp; strings that are ids of single events are VARCHAR (SYMBOL is for values that
# repeat), and VARCHAR can be a dedup key where STRING cannot.
SCHEMA: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "status_intervals": (
        "ts TIMESTAMP, asset_id SYMBOL CAPACITY 65536, site_id SYMBOL, end_ts TIMESTAMP, "
        "state SYMBOL, derate_fraction DOUBLE, cause SYMBOL",
        "MONTH",
        ("ts", "asset_id"),
    ),
    "availability": (
        "ts TIMESTAMP, asset_id SYMBOL CAPACITY 65536, site_id SYMBOL, bucket SYMBOL, "
        "end_ts TIMESTAMP, window_h DOUBLE, excluded_h DOUBLE, lost_h DOUBLE, "
        "availability_pct DOUBLE",
        "DAY",
        ("ts", "asset_id", "bucket"),
    ),
    "telemetry": (
        "ts TIMESTAMP, asset_id SYMBOL CAPACITY 65536, site_id SYMBOL, tag SYMBOL, n LONG, "
        "vmin DOUBLE, vmax DOUBLE, vmean DOUBLE, vlast DOUBLE",
        "DAY",
        ("ts", "asset_id", "tag"),
    ),
    "breaches": (
        "ts TIMESTAMP, breach_id VARCHAR, state SYMBOL, event_ts TIMESTAMP, rule_id SYMBOL, "
        "kind SYMBOL, asset_id SYMBOL CAPACITY 65536, site_id SYMBOL, tag SYMBOL, "
        "severity SYMBOL, value DOUBLE, threshold DOUBLE, message VARCHAR",
        "MONTH",
        ("ts", "breach_id", "state"),
    ),
    "alerts": (
        "ts TIMESTAMP, alert_id VARCHAR, state SYMBOL, event_ts TIMESTAMP, kind SYMBOL, "
        "scope_id SYMBOL CAPACITY 65536, site_id SYMBOL, severity SYMBOL, message VARCHAR, "
        "details VARCHAR",
        "MONTH",
        ("ts", "alert_id", "state"),
    ),
    "episodes": (
        "ts TIMESTAMP, episode_id VARCHAR, asset_id SYMBOL CAPACITY 65536, site_id SYMBOL, "
        "end_ts TIMESTAMP, state SYMBOL, cause SYMBOL, lost_hours DOUBLE, lost_mwh DOUBLE, "
        "tickets VARCHAR",
        "MONTH",
        ("ts", "episode_id"),
    ),
    # Device health (contracts/comms.py): a state change at its time, a stats window at its
    # start; keyed by site first like the SQLite tables, so a device that moved keeps both.
    "device_states": (
        "ts TIMESTAMP, site_id SYMBOL, device_id SYMBOL CAPACITY 65536, connector SYMBOL, "
        "state SYMBOL, previous_state SYMBOL, reason VARCHAR, consecutive_failures LONG, "
        "gateway SYMBOL",
        "DAY",
        ("ts", "site_id", "device_id"),
    ),
    "device_stats": (
        "ts TIMESTAMP, site_id SYMBOL, device_id SYMBOL CAPACITY 65536, end_ts TIMESTAMP, "
        "connector SYMBOL, gateway SYMBOL, polls LONG, failed LONG, retries LONG, "
        "p50 DOUBLE, p95 DOUBLE, pmax DOUBLE",
        "DAY",
        ("ts", "site_id", "device_id"),
    ),
}


def ddl(tables: Tables = TABLES) -> list[str]:
    """`CREATE TABLE IF NOT EXISTS` of every table: WAL, partitioned, deduplicated."""
    return [
        f"CREATE TABLE IF NOT EXISTS {tables.prefix}{name} ({columns}) "
        f"TIMESTAMP(ts) PARTITION BY {partition} WAL DEDUP UPSERT KEYS({', '.join(keys)})"
        for name, (columns, partition, keys) in SCHEMA.items()
    ]


# --- ILP rows (pure) -----------------------------------------------------------------------

ColumnValue = bool | int | float | str | datetime | None


@dataclass(frozen=True, slots=True)
class IlpRow:
    """One ILP line: table, symbols, columns (None = left out, stored as NULL) and the
    designated timestamp in ms."""

    table: str
    symbols: dict[str, str | None]
    columns: dict[str, ColumnValue]
    ts_ms: int


def utc(ms: int) -> datetime:
    """Epoch ms → aware UTC datetime (a TIMESTAMP column in ILP)."""
    return _EPOCH + ms * _MS


def utc_or_none(ms: int | None) -> datetime | None:
    return None if ms is None else utc(ms)


def naive_utc(ms: int) -> datetime:
    """Epoch ms → the naive UTC datetime bound as a PG `timestamp` parameter."""
    return utc(ms).replace(tzinfo=None)


def epoch_ms(moment: datetime) -> int:
    """A TIMESTAMP read over PG wire (naive, UTC) → epoch ms."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def _f(value: float | None) -> float | None:
    # ILP types a Python int as LONG: a DOUBLE column must get a float.
    return None if value is None else float(value)


def status_ilp(row: StatusIntervalRow, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.status,
        {"asset_id": row.asset_id, "site_id": row.site_id, "state": row.state,
         "cause": row.cause},
        {"end_ts": utc_or_none(row.end_ms), "derate_fraction": _f(row.derate_fraction)},
        row.start_ms,
    )


def availability_ilp(row: AvailabilityRow, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.availability,
        {"asset_id": row.asset_id, "site_id": row.site_id, "bucket": row.bucket},
        {"end_ts": utc(row.end_ms), "window_h": float(row.window_h),
         "excluded_h": float(row.excluded_h), "lost_h": float(row.lost_h),
         "availability_pct": _f(row.availability_pct)},
        row.start_ms,
    )


def telemetry_ilp(row: TelemetryRow, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.telemetry,
        {"asset_id": row.asset_id, "site_id": row.site_id, "tag": row.tag},
        {"n": int(row.count), "vmin": float(row.min), "vmax": float(row.max),
         "vmean": float(row.mean), "vlast": float(row.last)},
        row.start_ms,
    )


def breach_ilp(event: BreachEvent, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.breaches,
        {"state": event.state, "rule_id": event.rule_id, "kind": event.kind,
         "asset_id": event.asset_id, "site_id": event.site_id, "tag": event.tag,
         "severity": event.severity},
        {"breach_id": event.breach_id, "event_ts": utc(event.ts_ms),
         "value": float(event.value), "threshold": float(event.threshold),
         "message": event.message},
        event.raised_ms,
    )


def alert_ilp(event: Alert, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.alerts,
        {"state": event.state, "kind": event.kind, "scope_id": event.scope_id,
         "site_id": event.site_id, "severity": event.severity},
        {"alert_id": event.alert_id, "event_ts": utc(event.ts_ms), "message": event.message,
         "details": json.dumps(event.details, sort_keys=True)},
        event.raised_ms,
    )


def episode_ilp(episode: UnavailabilityEpisode, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.episodes,
        {"asset_id": episode.asset_id, "site_id": episode.site_id, "state": episode.state,
         "cause": episode.cause},
        {"episode_id": episode.episode_id, "end_ts": utc_or_none(episode.end_ms),
         "lost_hours": float(episode.lost_hours), "lost_mwh": float(episode.lost_mwh),
         "tickets": json.dumps([t.model_dump(mode="json") for t in episode.tickets])},
        episode.start_ms,
    )


def _placed(event: DeviceHealth | DeviceStats) -> str:
    if event.site_id is None:
        raise ValueError(f"device {event.device_id}: an event without a site is not kept "
                         "(the flows place every event before it is stored)")
    return event.site_id


def device_state_ilp(event: DeviceHealth, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.device_states,
        {"site_id": _placed(event), "device_id": event.device_id,
         "connector": event.connector, "state": event.state, "previous_state": event.previous,
         "gateway": event.gateway},
        {"reason": event.reason, "consecutive_failures": int(event.consecutive_failures)},
        event.ts_ms,
    )


def device_stats_ilp(event: DeviceStats, tables: Tables = TABLES) -> IlpRow:
    return IlpRow(
        tables.device_stats,
        {"site_id": _placed(event), "device_id": event.device_id,
         "connector": event.connector, "gateway": event.gateway},
        {"end_ts": utc(event.end_ms), "polls": int(event.polls), "failed": int(event.failed),
         "retries": int(event.retries), "p50": _f(event.latency_p50_ms),
         "p95": _f(event.latency_p95_ms), "pmax": _f(event.latency_max_ms)},
        event.start_ms,
    )


# --- queries (pure) ----------------------------------------------------------------------

Query = tuple[str, list[Any]]


def _in(column: str, ids: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(['%s'] * len(ids))})"


def status_query(tables: Tables, asset_ids: Sequence[str], start_ms: int, end_ms: int) -> Query:
    sql = (
        "SELECT ts, asset_id, site_id, end_ts, state, derate_fraction, cause "
        f"FROM {tables.status} "
        f"WHERE {_in('asset_id', asset_ids)} AND ts < %s AND (end_ts IS NULL OR end_ts > %s) "
        "ORDER BY ts, asset_id"
    )
    return sql, [*asset_ids, naive_utc(end_ms), naive_utc(start_ms)]


def availability_query(
    tables: Tables, asset_ids: Sequence[str], bucket: str, start_ms: int, end_ms: int
) -> Query:
    sql = (
        "SELECT ts, asset_id, site_id, bucket, end_ts, window_h, excluded_h, lost_h, "
        f"availability_pct FROM {tables.availability} "
        f"WHERE {_in('asset_id', asset_ids)} AND bucket = %s AND ts < %s AND end_ts > %s "
        "ORDER BY ts, asset_id"
    )
    return sql, [*asset_ids, bucket, naive_utc(end_ms), naive_utc(start_ms)]


def sample_by_stride(step_ms: int) -> str:
    """`step_ms` in SAMPLE BY's largest exact unit; fixed-size units align on the epoch."""
    for unit_ms, unit in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")):
        if step_ms % unit_ms == 0:
            return f"{step_ms // unit_ms}{unit}"
    return f"{step_ms}T"


def telemetry_query(
    tables: Tables, asset_id: str, tag: str, start_ms: int, end_ms: int, step_ms: int
) -> Query:
    # The stride is part of the statement (SAMPLE BY takes no parameter); check_step makes
    # it a positive int before it gets there.
    stride = sample_by_stride(check_step(step_ms))
    sql = (
        "SELECT ts, last(site_id) AS site_id, sum(n) AS n, min(vmin) AS vmin, "
        "max(vmax) AS vmax, sum(vmean * n) / sum(n) AS vmean, last(vlast) AS vlast "
        f"FROM {tables.telemetry} "
        "WHERE asset_id = %s AND tag = %s AND ts >= %s AND ts < %s "
        f"SAMPLE BY {stride} ALIGN TO CALENDAR"
    )
    return sql, [asset_id, tag, naive_utc(start_ms), naive_utc(end_ms)]


_BREACH_COLUMNS = ("ts, breach_id, state, event_ts, rule_id, kind, asset_id, site_id, tag, "
                   "severity, value, threshold, message")
_ALERT_COLUMNS = ("ts, alert_id, state, event_ts, kind, scope_id, site_id, severity, message, "
                  "details")


def breaches_query(tables: Tables, site_ids: Sequence[str], start_ms: int, end_ms: int) -> Query:
    # Raised before the range's end (interval scan on ts), happened in the range.
    sql = (
        f"SELECT {_BREACH_COLUMNS} FROM {tables.breaches} "
        f"WHERE {_in('site_id', site_ids)} AND ts < %s AND event_ts >= %s AND event_ts < %s "
        "ORDER BY event_ts, breach_id, state"
    )
    return sql, [*site_ids, naive_utc(end_ms), naive_utc(start_ms), naive_utc(end_ms)]


def alerts_query(
    tables: Tables, scope_ids: Sequence[str] | None, start_ms: int, end_ms: int
) -> Query:
    scopes = "" if scope_ids is None else f"{_in('scope_id', scope_ids)} AND "
    sql = (
        f"SELECT {_ALERT_COLUMNS} FROM {tables.alerts} "
        f"WHERE {scopes}ts < %s AND event_ts >= %s AND event_ts < %s "
        "ORDER BY event_ts, alert_id, state"
    )
    return sql, [*(scope_ids or ()), naive_utc(end_ms), naive_utc(start_ms), naive_utc(end_ms)]


def episodes_query(tables: Tables, asset_ids: Sequence[str], start_ms: int, end_ms: int) -> Query:
    sql = (
        "SELECT ts, episode_id, asset_id, site_id, end_ts, state, cause, lost_hours, lost_mwh, "
        f"tickets FROM {tables.episodes} "
        f"WHERE {_in('asset_id', asset_ids)} AND ts < %s AND (end_ts IS NULL OR end_ts > %s) "
        "ORDER BY ts, asset_id"
    )
    return sql, [*asset_ids, naive_utc(end_ms), naive_utc(start_ms)]


_DEVICE_STATE_COLUMNS = ("ts, site_id, device_id, connector, state, previous_state, reason, "
                         "consecutive_failures, gateway")


def device_changes_query(tables: Tables, site_ids: Sequence[str], start_ms: int,
                         end_ms: int) -> Query:
    """The state changes of these sites' devices in the range."""
    sql = (
        f"SELECT {_DEVICE_STATE_COLUMNS} FROM {tables.device_states} "
        f"WHERE {_in('site_id', site_ids)} AND ts >= %s AND ts < %s "
        "ORDER BY ts, device_id"
    )
    return sql, [*site_ids, naive_utc(start_ms), naive_utc(end_ms)]


def device_states_before_query(tables: Tables, site_ids: Sequence[str],
                               start_ms: int) -> Query:
    """Each device's last change before the range among these sites (its state at the
    start). The WHERE applies before LATEST ON: the latest of the rows it keeps."""
    sql = (
        f"SELECT {_DEVICE_STATE_COLUMNS} FROM {tables.device_states} "
        f"WHERE {_in('site_id', site_ids)} AND ts < %s "
        "LATEST ON ts PARTITION BY device_id"
    )
    return sql, [*site_ids, naive_utc(start_ms)]


def device_stats_query(tables: Tables, site_ids: Sequence[str], start_ms: int,
                       end_ms: int) -> Query:
    """Per site and device, its windows starting in the range added up as
    `contracts.comms.PollTotals.of` adds them (the SQLite store's sums), and what its newest
    window says: `last()` is the row with the latest designated timestamp."""
    sql = (
        "SELECT site_id, device_id, max(ts) AS newest_ts, last(end_ts) AS newest_end_ts, "
        "last(connector) AS newest_connector, last(gateway) AS newest_gateway, "
        "count() AS windows, sum(polls) AS polls_sum, sum(failed) AS failed_sum, "
        "sum(retries) AS retries_sum, "
        "sum(CASE WHEN p50 IS NULL THEN 0 ELSE polls - failed END) AS answered, "
        "sum(coalesce(p50, 0.0) * (polls - failed)) AS p50_sum, "
        "sum(coalesce(p95, 0.0) * (polls - failed)) AS p95_sum, max(pmax) AS latency_max "
        f"FROM {tables.device_stats} "
        f"WHERE {_in('site_id', site_ids)} AND ts >= %s AND ts < %s "
        "GROUP BY site_id, device_id"
    )
    return sql, [*site_ids, naive_utc(start_ms), naive_utc(end_ms)]


WAL_STATUS_SQL = "SELECT name, suspended, writerTxn, sequencerTxn FROM wal_tables()"


# --- records read back (pure) ------------------------------------------------------------


def status_from(r: Sequence[Any]) -> StatusIntervalRow:
    ts, asset_id, site_id, end_ts, state, derate, cause = r
    return StatusIntervalRow(asset_id, site_id, epoch_ms(ts),
                             None if end_ts is None else epoch_ms(end_ts), state, derate, cause)


def availability_from(r: Sequence[Any]) -> AvailabilityRow:
    ts, asset_id, site_id, bucket, end_ts, window_h, excluded_h, lost_h, pct = r
    return AvailabilityRow(asset_id, site_id, bucket, epoch_ms(ts), epoch_ms(end_ts),
                           window_h, excluded_h, lost_h, pct)


def breach_from(r: Sequence[Any]) -> BreachEvent:
    (ts, breach_id, state, event_ts, rule_id, kind, asset_id, site_id, tag, severity, value,
     threshold, message) = r
    return BreachEvent(
        breach_id=breach_id, rule_id=rule_id, kind=kind, asset_id=asset_id, site_id=site_id,
        tag=tag, severity=severity, state=state, raised_ms=epoch_ms(ts),
        ts_ms=epoch_ms(event_ts), value=value, threshold=threshold, message=message,
    )


def alert_from(r: Sequence[Any]) -> Alert:
    ts, alert_id, state, event_ts, kind, scope_id, site_id, severity, message, details = r
    return Alert(
        alert_id=alert_id, kind=kind, scope_id=scope_id, site_id=site_id, severity=severity,
        state=state, raised_ms=epoch_ms(ts), ts_ms=epoch_ms(event_ts), message=message,
        details=json.loads(details) if details else {},
    )


def episode_from(r: Sequence[Any]) -> UnavailabilityEpisode:
    ts, episode_id, asset_id, site_id, end_ts, state, cause, lost_hours, lost_mwh, tickets = r
    return UnavailabilityEpisode(
        episode_id=episode_id, asset_id=asset_id, site_id=site_id, start_ms=epoch_ms(ts),
        end_ms=None if end_ts is None else epoch_ms(end_ts), state=state, cause=cause,
        lost_hours=lost_hours, lost_mwh=lost_mwh,
        tickets=tuple(TicketRef.model_validate(t) for t in json.loads(tickets or "[]")),
    )


def _double(value: float | None) -> float | None:
    # QuestDB's DOUBLE NULL is NaN; over PG wire it is NULL, but never trust a NaN through.
    return None if value is None or value != value else float(value)


def device_state_from(r: Sequence[Any]) -> DeviceHealth:
    ts, site_id, device_id, connector, state, previous, reason, failures, gateway = r
    return DeviceHealth(
        device_id=device_id, connector=connector, state=state, previous=previous,
        ts_ms=epoch_ms(ts), reason=reason or "", consecutive_failures=failures or 0,
        site_id=site_id, gateway=gateway,
    )


def device_stats_total_from(r: Sequence[Any]) -> DeviceStatsTotal:
    (site_id, device_id, newest, newest_end, connector, gateway, windows, polls, failed,
     retries, answered, p50_sum, p95_sum, pmax) = r
    return DeviceStatsTotal(
        device_id, site_id, connector, gateway, epoch_ms(newest), epoch_ms(newest_end),
        PollTotals(int(windows), int(polls), int(failed), int(retries), int(answered),
                   float(p50_sum or 0.0), float(p95_sum or 0.0), _double(pmax)),
    )


# --- the store ---------------------------------------------------------------------------


class IlpWriter:
    """One ILP/HTTP sender, its calls serialized. Each `send` builds its rows in a buffer of
    its own and sends them in requests of at most `flush_every` rows, so a row refused half-way
    leaves nothing behind for the next send. ILP/HTTP answers once the rows are committed."""

    def __init__(self, conf: str, *, flush_every: int = FLUSH_EVERY_ROWS) -> None:
        self.flush_every = flush_every
        self._lock = threading.Lock()
        try:
            self._sender = Sender.from_conf(conf)
            self._sender.establish()  # type: ignore[no-untyped-call]  # unannotated in the stub
        except QuestDBError as e:
            raise HistoryStoreError(f"cannot start the ILP sender: {e}") from e

    def send(self, rows: Iterable[IlpRow]) -> int:
        """Send the rows; returns how many."""
        sent = 0
        with self._lock:
            try:
                buffer = self._sender.new_buffer()
                pending = 0
                for line in rows:
                    columns: dict[str, Any] = dict(line.columns)
                    buffer.row(line.table, symbols=line.symbols, columns=columns,
                               at=TimestampNanos(line.ts_ms * 1_000_000))
                    pending += 1
                    if pending == self.flush_every:
                        self._sender.flush(buffer)
                        sent, pending = sent + pending, 0
                if pending:
                    self._sender.flush(buffer)
                    sent += pending
            except QuestDBError as e:
                raise HistoryStoreError(f"QuestDB refused a write: {e}") from e
        return sent

    def close(self) -> None:
        with self._lock:
            self._sender.close()


class QuestDBHistoryStore:
    """The history store in QuestDB: one ILP/HTTP sender and one PG wire connection per
    object, usable from any thread of its process (calls on each are serialized)."""

    def __init__(self, config: QuestDBConfig, *, connect_timeout_s: int = 10) -> None:
        self.config = config
        self.tables = Tables(config.prefix)
        self._lock = threading.Lock()
        try:
            self._pg = psycopg.connect(**config.pg_params(), autocommit=True,
                                       connect_timeout=connect_timeout_s)
        except psycopg.Error as e:
            raise HistoryStoreError(f"cannot reach QuestDB's PG wire at "
                                    f"{config.pg_host or config.host}:{config.pg_port}: {e}") from e
        try:
            for statement in ddl(self.tables):
                self._pg.execute(statement)
            self._ilp = IlpWriter(config.ilp_conf())
        except (psycopg.Error, HistoryStoreError) as e:
            self._pg.close()
            raise HistoryStoreError(f"cannot set QuestDB up at {config.host}: {e}") from e

    @classmethod
    def from_url(cls, url: str) -> QuestDBHistoryStore:
        return cls(parse_questdb_url(url))

    def _fetch(self, query: Query) -> list[tuple[Any, ...]]:
        sql, params = query
        with self._lock:
            try:
                with self._pg.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall()
            except psycopg.Error as e:
                raise HistoryStoreError(f"QuestDB query failed: {e}") from e

    def _read(self, query: Query, convert: Callable[[Sequence[Any]], T]) -> list[T]:
        return [convert(record) for record in self._fetch(query)]

    def wait_applied(self, timeout_s: float = 30.0) -> None:
        """Wait until every committed write is visible to queries (WAL applied)."""
        names = set(self.tables.all())
        deadline = time.monotonic() + timeout_s
        while True:
            lagging = []
            for name, suspended, writer_txn, sequencer_txn in self._fetch((WAL_STATUS_SQL, [])):
                if name not in names:
                    continue
                if suspended:
                    raise HistoryStoreError(f"QuestDB suspended WAL table {name}")
                if writer_txn < sequencer_txn:
                    lagging.append(name)
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise HistoryStoreError(f"QuestDB did not apply the WAL of {lagging} in "
                                        f"{timeout_s} s")
            time.sleep(0.05)

    # Writes

    def write_status(self, rows: Sequence[StatusIntervalRow]) -> None:
        self._ilp.send(status_ilp(r, self.tables) for r in rows)

    def write_availability(self, rows: Sequence[AvailabilityRow]) -> None:
        self._ilp.send(availability_ilp(r, self.tables) for r in rows)

    def write_telemetry(self, rows: Sequence[TelemetryRow]) -> None:
        self._ilp.send(telemetry_ilp(r, self.tables) for r in rows)

    def write_telemetry_minutes(self, minutes: Sequence[TelemetryMinute]) -> None:
        self.write_telemetry([r for m in minutes for r in m.rows()])

    def write_breaches(self, events: Sequence[BreachEvent]) -> None:
        self._ilp.send(breach_ilp(e, self.tables) for e in events)

    def write_alerts(self, events: Sequence[Alert]) -> None:
        self._ilp.send(alert_ilp(e, self.tables) for e in events)

    def write_episodes(self, episodes: Sequence[UnavailabilityEpisode]) -> None:
        self._ilp.send(episode_ilp(e, self.tables) for e in episodes)

    def write_device_health(self, events: Sequence[DeviceHealth | DeviceStats]) -> None:
        self._ilp.send(
            device_state_ilp(e, self.tables) if isinstance(e, DeviceHealth)
            else device_stats_ilp(e, self.tables)
            for e in events if e.site_id is not None)

    # Queries

    def status_intervals(
        self, asset_ids: Iterable[str], start_ms: int, end_ms: int
    ) -> list[StatusIntervalRow]:
        ids = id_list(asset_ids, "asset_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        return self._read(status_query(self.tables, ids, start_ms, end_ms), status_from)

    def availability(
        self, asset_ids: Iterable[str], bucket: Bucket, start_ms: int, end_ms: int
    ) -> list[AvailabilityRow]:
        ids = id_list(asset_ids, "asset_ids")
        check_bucket(bucket)
        check_range(start_ms, end_ms)
        if not ids:
            return []
        query = availability_query(self.tables, ids, bucket, start_ms, end_ms)
        return self._read(query, availability_from)

    def telemetry(
        self, asset_id: str, tag: str, start_ms: int, end_ms: int, step_ms: int
    ) -> list[TelemetryRow]:
        check_range(start_ms, end_ms)
        query = telemetry_query(self.tables, asset_id, tag, start_ms, end_ms, step_ms)
        rows = [
            TelemetryRow(asset_id, site_id, tag, epoch_ms(ts), n, vmin, vmax, vmean, vlast)
            for ts, site_id, n, vmin, vmax, vmean, vlast in self._fetch(query)
        ]
        return sorted(rows, key=lambda r: r.start_ms)

    def breaches(self, site_ids: Iterable[str], start_ms: int, end_ms: int) -> list[BreachEvent]:
        ids = id_list(site_ids, "site_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        return self._read(breaches_query(self.tables, ids, start_ms, end_ms), breach_from)

    def alerts(
        self, scope_ids: Iterable[str] | None, start_ms: int, end_ms: int
    ) -> list[Alert]:
        check_range(start_ms, end_ms)
        ids = None if scope_ids is None else id_list(scope_ids, "scope_ids")
        if ids is not None and not ids:
            return []
        return self._read(alerts_query(self.tables, ids, start_ms, end_ms), alert_from)

    def episodes(
        self, asset_ids: Iterable[str], start_ms: int, end_ms: int
    ) -> list[UnavailabilityEpisode]:
        ids = id_list(asset_ids, "asset_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        return self._read(episodes_query(self.tables, ids, start_ms, end_ms), episode_from)

    def device_states(self, site_ids: Iterable[str], start_ms: int,
                      end_ms: int) -> list[DeviceHealth]:
        ids = id_list(site_ids, "site_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        before = self._read(device_states_before_query(self.tables, ids, start_ms),
                            device_state_from)
        changes = self._read(device_changes_query(self.tables, ids, start_ms, end_ms),
                             device_state_from)
        return sorted([*before, *changes], key=lambda e: (e.ts_ms, e.device_id))

    def device_stats(self, site_ids: Iterable[str], start_ms: int,
                     end_ms: int) -> list[DeviceStatsTotal]:
        ids = id_list(site_ids, "site_ids")
        check_range(start_ms, end_ms)
        if not ids:
            return []
        return per_device(self._read(device_stats_query(self.tables, ids, start_ms, end_ms),
                                     device_stats_total_from))

    def close(self) -> None:
        try:
            self._ilp.close()
        finally:
            with self._lock:
                self._pg.close()

    def __enter__(self) -> QuestDBHistoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
