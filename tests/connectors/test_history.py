"""The history store: the embedded SQLite file for real (round trips, replays without
duplicates, re-aggregation, filters, several writer processes, reopening), QuestDB's ILP rows
and SQL without a server, and QuestDB itself where a server can be had."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from questdb import Sender, TimestampNanos

from connectors.history import (
    AvailabilityRow,
    HistoryStore,
    HistoryStoreError,
    SqliteHistoryStore,
    StatusIntervalRow,
    TelemetryRow,
    open_history,
)
from connectors.history import questdb as qdb
from connectors.history.rows import DeviceStatsTotal
from connectors.history.sqlite import SCHEMA_VERSION
from connectors.history.store import per_device
from connectors.settings import Settings
from contracts.comms import PollTotals, totals
from contracts.events import (
    Alert,
    BreachEvent,
    DeviceHealth,
    DeviceStats,
    HealthState,
    TicketRef,
    UnavailabilityEpisode,
)

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z: a multiple of every step used below
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


# --- example rows ----------------------------------------------------------------------------

def breach(breach_id: str = "b1", state: str = "raised", site_id: str = "s1",
           raised_ms: int = T0 + 5 * MIN, ts_ms: int | None = None) -> BreachEvent:
    return BreachEvent.model_validate(dict(
        breach_id=breach_id, rule_id="cell_temp_high", kind="limit", asset_id="s1-u1",
        site_id=site_id, tag="cell_temp_max", severity="major", state=state,
        raised_ms=raised_ms, ts_ms=raised_ms if ts_ms is None else ts_ms, value=61.5,
        threshold=60.0, message="cell temperature above 60 °C"))


def alert(alert_id: str = "a1", state: str = "raised", scope_id: str = "s1",
          raised_ms: int = T0 + 10 * MIN, ts_ms: int | None = None) -> Alert:
    return Alert.model_validate(dict(
        alert_id=alert_id, kind="ld_risk", scope_id=scope_id, site_id="s1", severity="warning",
        state=state, raised_ms=raised_ms, ts_ms=raised_ms if ts_ms is None else ts_ms,
        message="projected availability below guarantee",
        details={"projected_pct": 96.5, "guaranteed_pct": 97.0, "period": "2024-01"}))


def episode(asset_id: str = "s1-u1", start_ms: int = T0 + HOUR, end_ms: int | None = None,
            lost_hours: float = 0.25, tickets: tuple[TicketRef, ...] = ()) -> UnavailabilityEpisode:
    return UnavailabilityEpisode(
        episode_id=f"{asset_id}:{start_ms}", asset_id=asset_id, site_id="s1",
        start_ms=start_ms, end_ms=end_ms, state="unavailable", cause="fault",
        lost_hours=lost_hours, lost_mwh=lost_hours * 4.0, tickets=tickets)


TICKET = TicketRef(provider="jira", ticket_id="OPS-42", status="in_progress",
                   summary="inverter trip", url="https://example.invalid/OPS-42")

STATUS = [
    StatusIntervalRow("s1-u1", "s1", T0, T0 + HOUR, "available"),
    StatusIntervalRow("s1-u1", "s1", T0 + HOUR, T0 + HOUR + 15 * MIN, "unavailable", None,
                      "fault"),
    StatusIntervalRow("s1-u1", "s1", T0 + HOUR + 15 * MIN, None, "derated", 0.5, "fault"),
    StatusIntervalRow("s1-u2", "s1", T0, None, "available"),
]
AVAILABILITY = [
    AvailabilityRow("s1-u1", "s1", "hour", T0, T0 + HOUR, 1.0, 0.0, 0.0, 100.0),
    AvailabilityRow("s1-u1", "s1", "hour", T0 + HOUR, T0 + 2 * HOUR, 1.0, 0.0, 0.375, 62.5),
    AvailabilityRow("s1-u1", "s1", "day", T0, T0 + DAY, 24.0, 2.0, 0.375, 98.29545454545455),
    AvailabilityRow("s1-u2", "s1", "hour", T0, T0 + HOUR, 1.0, 1.0, 0.0, None),
]
TELEMETRY = [
    TelemetryRow("s1-u1", "s1", "soc", T0, 60, 50.0, 51.0, 50.5, 51.0),
    TelemetryRow("s1-u1", "s1", "soc", T0 + MIN, 60, 51.0, 52.5, 51.75, 52.5),
    TelemetryRow("s1-u1", "s1", "power_kw", T0, 60, -100.0, 250.0, 120.0, 200.0),
]
BREACHES = [breach(), breach(state="cleared", ts_ms=T0 + 20 * MIN)]
ALERTS = [alert(), alert(state="cleared", ts_ms=T0 + 30 * MIN)]
EPISODES = [episode(tickets=(TICKET,)), episode("s1-u2", T0 + 2 * HOUR, T0 + 3 * HOUR, 1.0)]


def health(device: str, at_ms: int, state: HealthState, site: str | None = "s1",
           **more: Any) -> DeviceHealth:
    return DeviceHealth(device_id=device, connector="modbus", state=state, ts_ms=at_ms,
                        site_id=site, gateway=more.pop("gateway", "10.0.0.1:502"), **more)


def window(device: str, minute: int, polls: int = 60, failed: int = 0, retries: int = 0,
           latencies: tuple[float, float, float] | None = (12.0, 40.0, 95.5),
           site: str | None = "s1", gateway: str = "10.0.0.1:502") -> DeviceStats:
    p50, p95, most = latencies or (None, None, None)
    return DeviceStats(device_id=device, connector="modbus", site_id=site, gateway=gateway,
                       start_ms=T0 + minute * MIN, end_ms=T0 + (minute + 1) * MIN,
                       polls=polls, failed=failed, retries=retries, latency_p50_ms=p50,
                       latency_p95_ms=p95, latency_max_ms=most)


DEVICE_STATES = [
    health("s1-u1", T0 - 2 * DAY, "online"),  # before read_everything's range: its state then
    health("s1-u1", T0 + HOUR, "degraded", previous="online", consecutive_failures=3,
           reason="3 of the last 10 polls failed"),
    health("s1-u2", T0 + 2 * HOUR, "offline", site="s2", gateway=None),
]
DEVICE_STATS = [
    window("s1-u1", 0, failed=2, retries=3),
    window("s1-u1", 1, latencies=(10.0, 30.0, 50.25), gateway="10.0.0.2:502"),  # names it
    window("s1-u2", 0, failed=60, latencies=None),  # nothing answered: no latency
    window("s1-u3", 0, site="s2"),  # a device moved from s2 to s1: one total, named by s1
    window("s1-u3", 1, polls=30, latencies=(5.0, 6.0, 7.0)),
]
UNPLACED: list[DeviceHealth | DeviceStats] = [  # without a site: not kept
    health("x-u1", T0, "online", site=None), window("x-u1", 0, site=None)]
HEALTH: list[DeviceHealth | DeviceStats] = [*DEVICE_STATES, *DEVICE_STATS, *UNPLACED]


def write_everything(store: HistoryStore) -> None:
    store.write_status(STATUS)
    store.write_availability(AVAILABILITY)
    store.write_telemetry(TELEMETRY)
    store.write_breaches(BREACHES)
    store.write_alerts(ALERTS)
    store.write_episodes(EPISODES)
    store.write_device_health(HEALTH)


def read_everything(store: HistoryStore) -> dict[str, list[Any]]:
    """Everything above, read back through the queries over a range covering it all."""
    assets, start, end = ["s1-u1", "s1-u2"], T0 - DAY, T0 + 2 * DAY
    return {
        "status": store.status_intervals(assets, start, end),
        "hourly": store.availability(assets, "hour", start, end),
        "daily": store.availability(assets, "day", start, end),
        "soc": store.telemetry("s1-u1", "soc", start, end, MIN),
        "power": store.telemetry("s1-u1", "power_kw", start, end, MIN),
        "breaches": store.breaches(["s1"], start, end),
        "alerts": store.alerts(None, start, end),
        "episodes": store.episodes(assets, start, end),
        "device_states": store.device_states(["s1", "s2"], start, end),
        "device_stats": store.device_stats(["s1", "s2"], start, end),
    }


EXPECTED: dict[str, list[Any]] = {
    "status": sorted(STATUS, key=lambda r: (r.start_ms, r.asset_id)),
    "hourly": sorted([r for r in AVAILABILITY if r.bucket == "hour"],
                     key=lambda r: (r.start_ms, r.asset_id)),
    "daily": [r for r in AVAILABILITY if r.bucket == "day"],
    "soc": TELEMETRY[:2],
    "power": TELEMETRY[2:],
    "breaches": BREACHES,
    "alerts": ALERTS,
    "episodes": EPISODES,
    "device_states": DEVICE_STATES,
    "device_stats": [  # PollTotals.of added up (contracts/comms.py): the oracle
        DeviceStatsTotal("s1-u1", "s1", "modbus", "10.0.0.2:502", T0 + MIN, T0 + 2 * MIN,
                         totals(DEVICE_STATS[:2])),
        DeviceStatsTotal("s1-u2", "s1", "modbus", "10.0.0.1:502", T0, T0 + MIN,
                         totals(DEVICE_STATS[2:3])),
        DeviceStatsTotal("s1-u3", "s1", "modbus", "10.0.0.1:502", T0 + MIN, T0 + 2 * MIN,
                         totals(DEVICE_STATS[3:])),
    ],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHistoryStore]:
    with SqliteHistoryStore(tmp_path / "history.db") as s:
        yield s


def table_counts(path: Path) -> dict[str, int]:
    """Rows per table, counted by a connection of its own (not through the store)."""
    with closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


# --- SQLite ----------------------------------------------------------------------------------

def test_every_row_kind_round_trips(store: SqliteHistoryStore) -> None:
    write_everything(store)
    assert read_everything(store) == EXPECTED


def test_writing_the_same_batches_again_leaves_no_duplicates(store: SqliteHistoryStore) -> None:
    write_everything(store)
    once = table_counts(store.path)
    write_everything(store)  # a flow replaying an epoch after crash recovery
    assert table_counts(store.path) == once == {
        "alerts": 2, "availability": 4, "breaches": 2, "device_states": 3, "device_stats": 5,
        "episodes": 2, "status_intervals": 4,
        "telemetry_hours": 2}  # soc's two minutes and power_kw's one: an hour each
    assert read_everything(store) == EXPECTED


def test_device_states_are_the_ranges_changes_and_each_devices_state_before_it(
        store: SqliteHistoryStore) -> None:
    events = [
        health("s1-u1", T0 - 2 * HOUR, "online"), health("s1-u1", T0 - HOUR, "degraded"),
        health("s1-u1", T0 + HOUR, "offline"), health("s1-u2", T0 + 2 * HOUR, "online"),
        health("s1-u2", T0 + DAY, "offline"),  # at the range's end: not in it
        health("s2-u1", T0 + HOUR, "online", site="s2"),
        health("s1-u3", T0 - HOUR, "online", site="s1")]
    store.write_device_health(events)
    store.write_device_health(events[:3])  # a replayed epoch: no duplicate
    assert table_counts(store.path)["device_states"] == len(events)
    assert store.device_states(["s1"], T0, T0 + DAY) == [
        events[1], events[6],  # their last changes before the range (by time, device)
        events[2], events[3]]
    assert store.device_states(["s2"], T0, T0 + DAY) == [events[5]]
    assert store.device_states([], T0, T0 + DAY) == []
    with pytest.raises(TypeError):
        store.device_states("s1", T0, T0 + DAY)
    with pytest.raises(ValueError, match="empty range"):
        store.device_stats(["s1"], T0, T0 - 1)


windows = st.lists(st.tuples(
    st.sampled_from(["s1-u1", "s1-u2", "s2-u1"]), st.integers(-3, 30),  # device, minute
    st.integers(0, 60), st.integers(0, 60), st.integers(0, 90),  # polls, failed, retries
    st.lists(st.integers(0, 5_000), min_size=3, max_size=3)), max_size=40)


@hypothesis_settings(max_examples=40,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows)
def test_device_stats_are_the_windows_of_the_range_added_up(
        tmp_path: Path, drawn: list[tuple[str, int, int, int, int, list[int]]]) -> None:
    """The store's sums are `PollTotals.of` added up (contracts/comms.py): the oracle."""
    with SqliteHistoryStore(tmp_path / f"{uuid.uuid4().hex}.db") as store:
        check_stats_sums(store, drawn)


def check_stats_sums(store: SqliteHistoryStore,
                     drawn: list[tuple[str, int, int, int, int, list[int]]]) -> None:
    written: dict[tuple[str, int], DeviceStats] = {}
    for device, minute, polls, failed, retries, latencies in drawn:
        failed = min(failed, polls)
        p50, p95, most = sorted(latencies)
        answered = polls > failed
        w = DeviceStats(
            device_id=device, connector="modbus", site_id=device[:2],
            gateway=f"gw-{minute % 2}", start_ms=T0 + minute * MIN,
            end_ms=T0 + (minute + 1) * MIN, polls=polls, failed=failed, retries=retries,
            latency_p50_ms=p50 if answered else None, latency_p95_ms=p95 if answered else None,
            latency_max_ms=most if answered else None)
        written[(device, w.start_ms)] = w  # the last write wins
        store.write_device_health([w])
    start, end = T0, T0 + 30 * MIN
    got = store.device_stats(["s1"], start, end)
    mine = sorted((w for w in written.values() if w.site_id == "s1"
                   and start <= w.start_ms < end), key=lambda w: (w.device_id, w.start_ms))
    expected = []
    for device in sorted({w.device_id for w in mine}):
        of = [w for w in mine if w.device_id == device]
        expected.append(DeviceStatsTotal(device, "s1", "modbus", of[-1].gateway,
                                         of[-1].start_ms, of[-1].end_ms, totals(of)))
    assert got == expected


def test_a_later_write_fills_in_an_open_intervals_end(store: SqliteHistoryStore) -> None:
    opened = StatusIntervalRow("s1-u1", "s1", T0, None, "unavailable", None, "fault")
    store.write_status([opened])
    assert store.status_intervals(["s1-u1"], T0, T0 + DAY) == [opened]
    closed = StatusIntervalRow("s1-u1", "s1", T0, T0 + 30 * MIN, "unavailable", None, "fault")
    following = StatusIntervalRow("s1-u1", "s1", T0 + 30 * MIN, None, "available")
    store.write_status([closed, following])
    assert store.status_intervals(["s1-u1"], T0, T0 + DAY) == [closed, following]
    # Closed, the interval no longer reaches a range after its end.
    assert store.status_intervals(["s1-u1"], T0 + HOUR, T0 + DAY) == [following]


def test_an_episode_grows_with_later_writes(store: SqliteHistoryStore) -> None:
    store.write_episodes([episode(lost_hours=0.25)])
    grown = episode(end_ms=T0 + 3 * HOUR, lost_hours=2.0, tickets=(TICKET,))
    store.write_episodes([grown])
    assert store.episodes(["s1-u1"], T0, T0 + DAY) == [grown]
    # A batch holding the same key twice keeps its last row.
    store.write_episodes([episode(lost_hours=0.5), episode(lost_hours=0.75)])
    assert [e.lost_hours for e in store.episodes(["s1-u1"], T0, T0 + DAY)] == [0.75]


def test_telemetry_is_re_aggregated_to_the_step(store: SqliteHistoryStore) -> None:
    def row(minute: int, count: int, lo: float, hi: float, mean: float, last: float,
            asset: str = "s1-u1", tag: str = "soc") -> TelemetryRow:
        return TelemetryRow(asset, "s1", tag, T0 + minute * MIN, count, lo, hi, mean, last)

    store.write_telemetry([
        row(0, 60, 1.0, 5.0, 3.0, 4.0),
        row(1, 30, 0.5, 9.0, 6.0, 7.0),
        row(4, 10, 2.0, 2.0, 2.0, 2.0),
        row(5, 60, 8.0, 12.0, 10.0, 11.0),
        row(6, 20, 3.0, 6.0, 4.0, 5.0),
        row(10, 5, -1.0, -1.0, -1.0, -1.0),  # after the range
        row(2, 99, -50.0, 99.0, 0.0, 0.0, tag="power_kw"),  # another tag
        row(2, 99, -50.0, 99.0, 0.0, 0.0, asset="s1-u2"),  # another asset
    ])
    five = store.telemetry("s1-u1", "soc", T0, T0 + 10 * MIN, 5 * MIN)
    # [0, 5): 100 samples, mean (60·3 + 30·6 + 10·2) / 100 = 3.8, last of minute 4.
    # [5, 10): 80 samples, mean (60·10 + 20·4) / 80 = 8.5, last of minute 6.
    assert five == [
        TelemetryRow("s1-u1", "s1", "soc", T0, 100, 0.5, 9.0, pytest.approx(3.8), 2.0),  # type: ignore[arg-type]
        TelemetryRow("s1-u1", "s1", "soc", T0 + 5 * MIN, 80, 3.0, 12.0, pytest.approx(8.5),  # type: ignore[arg-type]
                     5.0),
    ]
    # A range starting inside a step keeps the step's epoch-aligned start and only the rows
    # in the range.
    assert store.telemetry("s1-u1", "soc", T0 + 2 * MIN, T0 + 5 * MIN, 5 * MIN) == [
        TelemetryRow("s1-u1", "s1", "soc", T0, 10, 2.0, 2.0, 2.0, 2.0)]
    # One hour: everything of soc up to minute 10 in one bucket.
    [hour] = store.telemetry("s1-u1", "soc", T0, T0 + HOUR, HOUR)
    assert (hour.count, hour.min, hour.max, hour.last) == (185, -1.0, 12.0, -1.0)
    assert hour.mean == pytest.approx((180 + 180 + 20 + 600 + 80 - 5) / 185)


def test_queries_filter_by_asset_site_scope_and_range(store: SqliteHistoryStore) -> None:
    write_everything(store)
    store.write_breaches([breach("b2", site_id="s2")])
    store.write_alerts([alert("a2", scope_id="s2-u1")])

    # Intervals overlapping [T0 + 2h, T0 + 3h): only the open ones.
    assert store.status_intervals(["s1-u1", "s1-u2"], T0 + 2 * HOUR, T0 + 3 * HOUR) == [
        STATUS[3], STATUS[2]]
    assert store.status_intervals(["s1-u2"], T0, T0 + DAY) == [STATUS[3]]
    assert store.status_intervals(["nobody"], T0, T0 + DAY) == []
    assert store.status_intervals([], T0, T0 + DAY) == []
    # Half-open ranges: an interval ending at the range's start is not in it.
    assert STATUS[0] not in store.status_intervals(["s1-u1"], T0 + HOUR, T0 + 2 * HOUR)

    assert store.availability(["s1-u1"], "hour", T0 + HOUR, T0 + 2 * HOUR) == [AVAILABILITY[1]]
    assert store.availability(["s1-u2"], "day", T0, T0 + DAY) == []

    assert store.breaches(["s2"], T0, T0 + DAY) == [breach("b2", site_id="s2")]
    assert store.breaches(["s1"], T0 + 10 * MIN, T0 + DAY) == [BREACHES[1]]  # the clearing
    assert [a.alert_id for a in store.alerts(None, T0, T0 + DAY)] == ["a1", "a2", "a1"]
    assert store.alerts(["s2-u1"], T0, T0 + DAY) == [alert("a2", scope_id="s2-u1")]
    assert store.alerts([], T0, T0 + DAY) == []

    assert store.episodes(["s1-u1", "s1-u2"], T0 + 2 * HOUR, T0 + DAY) == EPISODES  # 1st open
    assert store.episodes(["s1-u2"], T0 + 3 * HOUR, T0 + DAY) == []  # ended at the start


@pytest.mark.parametrize(("call", "error"), [
    (lambda s: s.status_intervals("s1-u1", T0, T0 + 1), TypeError),  # a bare string
    (lambda s: s.status_intervals(["a"], T0 + 1, T0), ValueError),
    (lambda s: s.availability(["a"], "week", T0, T0 + 1), ValueError),
    (lambda s: s.telemetry("a", "soc", T0, T0 + 1, 0), ValueError),
    (lambda s: s.alerts("s1", T0, T0 + 1), TypeError),
])
def test_malformed_queries_are_refused(store: SqliteHistoryStore, call: Any,
                                       error: type[Exception]) -> None:
    with pytest.raises(error):
        call(store)


def test_reopening_the_file_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.db"  # the folder is created too
    with SqliteHistoryStore(path) as first:
        write_everything(first)
    with SqliteHistoryStore(path) as again:
        assert again.schema_version == SCHEMA_VERSION
        assert read_everything(again) == EXPECTED
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryStoreError, match="newer"):
        SqliteHistoryStore(path)


WRITERS, BATCHES, ROWS_PER_BATCH, SHARED = 4, 40, 250, 50


def _writer(path: str, writer: int, start: Barrier) -> None:
    """One flow worker: its own telemetry rows, and status rows every worker also writes."""
    start.wait()  # all open (and create the schema of) the fresh file at once
    with SqliteHistoryStore(path) as store:
        for batch in range(BATCHES):
            store.write_telemetry([
                TelemetryRow(f"w{writer}", "s1", "soc", (batch * ROWS_PER_BATCH + i) * MIN,
                             1, 1.0, 1.0, 1.0, 1.0)
                for i in range(ROWS_PER_BATCH)])
            store.write_status([
                StatusIntervalRow(f"shared-{i}", "s1", T0, T0 + batch, "available")
                for i in range(SHARED)])


def test_several_processes_write_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WRITERS)
    workers = [ctx.Process(target=_writer, args=(str(path), w, start)) for w in range(WRITERS)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    assert [p.exitcode for p in workers] == [0] * WRITERS  # a "database is locked" → 1
    counts = table_counts(path)
    hours = -(-BATCHES * ROWS_PER_BATCH // 60)  # each writer's minutes, an hour per row
    assert counts["telemetry_hours"] == WRITERS * hours
    assert counts["status_intervals"] == SHARED
    with SqliteHistoryStore(path) as store:
        for w in range(WRITERS):
            rows = store.telemetry(f"w{w}", "soc", 0, BATCHES * ROWS_PER_BATCH * MIN, MIN)
            assert len(rows) == BATCHES * ROWS_PER_BATCH
        shared = store.status_intervals([f"shared-{i}" for i in range(SHARED)], 0, T0 + DAY)
        assert {r.end_ms for r in shared} == {T0 + BATCHES - 1}  # every writer's last batch


def test_open_history_picks_sqlite_without_questdb_url(tmp_path: Path) -> None:
    settings = Settings(QUESTDB_URL=None, run_dir=tmp_path / "run")
    with closing(open_history(settings)) as store:
        assert isinstance(store, SqliteHistoryStore)
        assert store.path == tmp_path / "run" / "history.db"
        store.write_status(STATUS[:1])
    chosen = Settings(QUESTDB_URL=None, run_dir=tmp_path / "run",
                      history_path=tmp_path / "elsewhere.db")
    with closing(open_history(chosen)) as store:
        assert isinstance(store, SqliteHistoryStore)
        assert store.path == tmp_path / "elsewhere.db"
        assert store.status_intervals(["s1-u1"], T0, T0 + DAY) == []


def test_open_history_picks_questdb_and_says_when_it_is_unreachable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(QUESTDB_URL=f"questdb://127.0.0.1:9000?pg_port={port}")
    with pytest.raises(HistoryStoreError, match=f"PG wire at 127.0.0.1:{port}"):
        open_history(settings)


# --- QuestDB without a server ----------------------------------------------------------------

def test_questdb_url_is_parsed() -> None:
    config = qdb.parse_questdb_url(
        "questdb://qdb.internal:9001?pg_port=8813&user=reader&password=s3cret%3Bx&prefix=p_")
    assert config == qdb.QuestDBConfig(host="qdb.internal", http_port=9001, pg_port=8813,
                                       user="reader", password="s3cret;x", prefix="p_")
    assert config.ilp_conf() == "http::addr=qdb.internal:9001;auto_flush=off;"
    assert config.pg_params() == {"host": "qdb.internal", "port": 8813, "user": "reader",
                                  "password": "s3cret;x", "dbname": "qdb"}

    defaults = qdb.parse_questdb_url("questdb://localhost")
    assert (defaults.http_port, defaults.pg_port, defaults.user, defaults.password,
            defaults.prefix) == (9000, 8812, "admin", "quest", "bessmon_")

    tls = qdb.parse_questdb_url(
        "questdbs://u:p%40ss@db:9443?ilp_user=ing;est&ilp_password=pw&pg_host=pg.db")
    assert tls.ilp_conf() == ("https::addr=db:9443;auto_flush=off;username=ing;;est;"
                              "password=pw;")
    assert tls.pg_params() == {"host": "pg.db", "port": 8812, "user": "u", "password": "p@ss",
                               "dbname": "qdb", "sslmode": "require"}
    # The client itself accepts the configuration strings (it checks them without a server).
    for conf in (config.ilp_conf(), tls.ilp_conf(),
                 qdb.parse_questdb_url("questdb://h?token=t;k").ilp_conf()):
        assert Sender.from_conf(conf).auto_flush is False


@pytest.mark.parametrize(("url", "message"), [
    ("http://localhost:9000", "questdb://"),
    ("questdb://:9000", "no host"),
    ("questdb://localhost?pg_prot=8812", "unknown parameter"),
    ("questdb://localhost?ilp_user=a", "go together"),
    ("questdb://localhost?pg_port=x", "bad port"),
    ("questdb://localhost?prefix=a;drop", "prefix"),
])
def test_bad_questdb_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qdb.parse_questdb_url(url)


def utc(ms: int) -> datetime:
    return qdb.utc(ms)


def test_ilp_rows_of_every_kind() -> None:
    t = qdb.Tables("x_")
    assert qdb.status_ilp(STATUS[2], t) == qdb.IlpRow(
        "x_status_intervals",
        {"asset_id": "s1-u1", "site_id": "s1", "state": "derated", "cause": "fault"},
        {"end_ts": None, "derate_fraction": 0.5},
        T0 + HOUR + 15 * MIN)
    assert qdb.availability_ilp(AVAILABILITY[3], t) == qdb.IlpRow(
        "x_availability", {"asset_id": "s1-u2", "site_id": "s1", "bucket": "hour"},
        {"end_ts": utc(T0 + HOUR), "window_h": 1.0, "excluded_h": 1.0, "lost_h": 0.0,
         "availability_pct": None},
        T0)
    assert qdb.telemetry_ilp(TELEMETRY[0], t) == qdb.IlpRow(
        "x_telemetry", {"asset_id": "s1-u1", "site_id": "s1", "tag": "soc"},
        {"n": 60, "vmin": 50.0, "vmax": 51.0, "vmean": 50.5, "vlast": 51.0}, T0)
    assert qdb.breach_ilp(BREACHES[1], t) == qdb.IlpRow(
        "x_breaches",
        {"state": "cleared", "rule_id": "cell_temp_high", "kind": "limit",
         "asset_id": "s1-u1", "site_id": "s1", "tag": "cell_temp_max", "severity": "major"},
        {"breach_id": "b1", "event_ts": utc(T0 + 20 * MIN), "value": 61.5, "threshold": 60.0,
         "message": "cell temperature above 60 °C"},
        T0 + 5 * MIN)  # placed at its raise time: (ts, breach_id, state) ≡ (breach_id, state)
    assert qdb.alert_ilp(ALERTS[0], t) == qdb.IlpRow(
        "x_alerts",
        {"state": "raised", "kind": "ld_risk", "scope_id": "s1", "site_id": "s1",
         "severity": "warning"},
        {"alert_id": "a1", "event_ts": utc(T0 + 10 * MIN),
         "message": "projected availability below guarantee",
         "details": '{"guaranteed_pct": 97.0, "period": "2024-01", "projected_pct": 96.5}'},
        T0 + 10 * MIN)
    assert qdb.episode_ilp(EPISODES[0], t) == qdb.IlpRow(
        "x_episodes",
        {"asset_id": "s1-u1", "site_id": "s1", "state": "unavailable", "cause": "fault"},
        {"episode_id": f"s1-u1:{T0 + HOUR}", "end_ts": None, "lost_hours": 0.25,
         "lost_mwh": 1.0,
         "tickets": '[{"provider": "jira", "ticket_id": "OPS-42", "status": "in_progress", '
                    '"summary": "inverter trip", "url": "https://example.invalid/OPS-42"}]'},
        T0 + HOUR)
    # Device health: keyed (ts, site_id, device_id) like SQLite's (site_id, device_id, ts_ms).
    assert qdb.device_state_ilp(DEVICE_STATES[1], t) == qdb.IlpRow(
        "x_device_states",
        {"site_id": "s1", "device_id": "s1-u1", "connector": "modbus", "state": "degraded",
         "previous_state": "online", "gateway": "10.0.0.1:502"},
        {"reason": "3 of the last 10 polls failed", "consecutive_failures": 3},
        T0 + HOUR)
    assert qdb.device_state_ilp(DEVICE_STATES[2], t).symbols == {  # no gateway, no previous
        "site_id": "s2", "device_id": "s1-u2", "connector": "modbus", "state": "offline",
        "previous_state": None, "gateway": None}
    assert qdb.device_stats_ilp(DEVICE_STATS[0], t) == qdb.IlpRow(
        "x_device_stats",
        {"site_id": "s1", "device_id": "s1-u1", "connector": "modbus",
         "gateway": "10.0.0.1:502"},
        {"end_ts": utc(T0 + MIN), "polls": 60, "failed": 2, "retries": 3, "p50": 12.0,
         "p95": 40.0, "pmax": 95.5},
        T0)  # placed at the window's start
    assert qdb.device_stats_ilp(DEVICE_STATS[2], t).columns == {
        "end_ts": utc(T0 + MIN), "polls": 60, "failed": 60, "retries": 0, "p50": None,
        "p95": None, "pmax": None}


@pytest.mark.parametrize("event", UNPLACED, ids=["state", "stats"])
def test_device_health_without_a_site_is_refused_by_the_ilp_rows(
        event: DeviceHealth | DeviceStats) -> None:
    with pytest.raises(ValueError, match="x-u1: an event without a site is not kept"):
        if isinstance(event, DeviceHealth):
            qdb.device_state_ilp(event)
        else:
            qdb.device_stats_ilp(event)


def test_integers_are_sent_as_doubles_where_the_column_is_double() -> None:
    row = AvailabilityRow("a", "s", "day", T0, T0 + DAY, 24, 0, 1, 95)  # ints from a caller
    line = qdb.availability_ilp(row)
    assert all(type(line.columns[c]) is float
               for c in ("window_h", "excluded_h", "lost_h", "availability_pct"))
    stats = qdb.device_stats_ilp(window("u1", 0, latencies=(1, 2, 3)))
    assert all(type(stats.columns[c]) is float for c in ("p50", "p95", "pmax"))
    assert all(type(stats.columns[c]) is int for c in ("polls", "failed", "retries"))


def test_ilp_text_built_by_the_questdb_client() -> None:
    with warnings.catch_warnings():  # Buffer is only exported by the legacy module
        warnings.simplefilter("ignore", DeprecationWarning)
        from questdb.ingress import Buffer

    buffer = Buffer(protocol_version=1)  # text ILP; servers negotiate v2 (binary doubles)
    for line in (qdb.status_ilp(STATUS[1]), qdb.status_ilp(STATUS[3]),
                 qdb.breach_ilp(BREACHES[0]), qdb.device_state_ilp(DEVICE_STATES[1]),
                 qdb.device_state_ilp(DEVICE_STATES[2]), qdb.device_stats_ilp(DEVICE_STATS[0]),
                 qdb.device_stats_ilp(DEVICE_STATS[2])):
        buffer.row(line.table, symbols=line.symbols, columns=dict(line.columns),
                   at=TimestampNanos(line.ts_ms * 1_000_000))
    ns = 1_000_000
    assert bytes(buffer).decode().splitlines() == [
        "bessmon_status_intervals,asset_id=s1-u1,site_id=s1,state=unavailable,cause=fault "
        f"end_ts={(T0 + HOUR + 15 * MIN) * 1000}t {(T0 + HOUR) * ns}",
        # open and without a cause: only symbols; NULL end and derate
        f"bessmon_status_intervals,asset_id=s1-u2,site_id=s1,state=available {T0 * ns}",
        "bessmon_breaches,state=raised,rule_id=cell_temp_high,kind=limit,asset_id=s1-u1,"
        "site_id=s1,tag=cell_temp_max,severity=major "
        f'breach_id="b1",event_ts={(T0 + 5 * MIN) * 1000}t,value=61.5,threshold=60.0,'
        f'message="cell temperature above 60 °C" {(T0 + 5 * MIN) * ns}',
        "bessmon_device_states,site_id=s1,device_id=s1-u1,connector=modbus,state=degraded,"
        "previous_state=online,gateway=10.0.0.1:502 "
        f'reason="3 of the last 10 polls failed",consecutive_failures=3i {(T0 + HOUR) * ns}',
        # no previous state, no gateway: left out (NULL)
        "bessmon_device_states,site_id=s2,device_id=s1-u2,connector=modbus,state=offline "
        f'reason="",consecutive_failures=0i {(T0 + 2 * HOUR) * ns}',
        "bessmon_device_stats,site_id=s1,device_id=s1-u1,connector=modbus,gateway=10.0.0.1:502 "
        f"end_ts={(T0 + MIN) * 1000}t,polls=60i,failed=2i,retries=3i,p50=12.0,p95=40.0,"
        f"pmax=95.5 {T0 * ns}",
        # nothing answered: NULL latencies
        "bessmon_device_stats,site_id=s1,device_id=s1-u2,connector=modbus,gateway=10.0.0.1:502 "
        f"end_ts={(T0 + MIN) * 1000}t,polls=60i,failed=60i,retries=0i {T0 * ns}",
    ]


def test_ddl_makes_wal_tables_deduplicated_on_the_store_keys() -> None:
    statements = qdb.ddl(qdb.Tables("p_"))
    keys = {s.split()[5]: s[s.index("DEDUP UPSERT KEYS"):] for s in statements}
    assert keys == {
        "p_status_intervals": "DEDUP UPSERT KEYS(ts, asset_id)",
        "p_availability": "DEDUP UPSERT KEYS(ts, asset_id, bucket)",
        "p_telemetry": "DEDUP UPSERT KEYS(ts, asset_id, tag)",
        "p_breaches": "DEDUP UPSERT KEYS(ts, breach_id, state)",
        "p_alerts": "DEDUP UPSERT KEYS(ts, alert_id, state)",
        "p_episodes": "DEDUP UPSERT KEYS(ts, episode_id)",
        "p_device_states": "DEDUP UPSERT KEYS(ts, site_id, device_id)",
        "p_device_stats": "DEDUP UPSERT KEYS(ts, site_id, device_id)",
    }
    for s in statements:
        assert s.startswith("CREATE TABLE IF NOT EXISTS p_")
        assert "TIMESTAMP(ts) PARTITION BY" in s and " WAL DEDUP" in s
        # Dedup keys must be fixed-size or VARCHAR columns (STRING is refused).
        assert "STRING" not in s
    assert "PARTITION BY DAY" in statements[2]  # telemetry: the big one
    by_table = {s.split()[5]: s for s in statements}
    assert by_table["p_device_states"] == (
        "CREATE TABLE IF NOT EXISTS p_device_states (ts TIMESTAMP, site_id SYMBOL, "
        "device_id SYMBOL CAPACITY 65536, connector SYMBOL, state SYMBOL, previous_state SYMBOL, "
        "reason VARCHAR, consecutive_failures LONG, gateway SYMBOL) TIMESTAMP(ts) "
        "PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, site_id, device_id)")
    assert by_table["p_device_stats"] == (
        "CREATE TABLE IF NOT EXISTS p_device_stats (ts TIMESTAMP, site_id SYMBOL, "
        "device_id SYMBOL CAPACITY 65536, end_ts TIMESTAMP, connector SYMBOL, gateway SYMBOL, "
        "polls LONG, failed LONG, retries LONG, p50 DOUBLE, p95 DOUBLE, pmax DOUBLE) "
        "TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, site_id, device_id)")
    assert set(by_table) == set(qdb.Tables("p_").all())  # wait_applied watches every table


def test_query_sql_and_parameters() -> None:
    t = qdb.Tables("p_")
    sql, params = qdb.status_query(t, ["u1", "u2"], T0, T0 + HOUR)
    assert sql == (
        "SELECT ts, asset_id, site_id, end_ts, state, derate_fraction, cause "
        "FROM p_status_intervals WHERE asset_id IN (%s, %s) AND ts < %s "
        "AND (end_ts IS NULL OR end_ts > %s) ORDER BY ts, asset_id")
    assert params == ["u1", "u2", datetime(2024, 1, 1, 1, 0), datetime(2024, 1, 1, 0, 0)]

    sql, params = qdb.telemetry_query(t, "u1", "soc", T0, T0 + DAY, 15 * MIN)
    assert sql == (
        "SELECT ts, last(site_id) AS site_id, sum(n) AS n, min(vmin) AS vmin, "
        "max(vmax) AS vmax, sum(vmean * n) / sum(n) AS vmean, last(vlast) AS vlast "
        "FROM p_telemetry WHERE asset_id = %s AND tag = %s AND ts >= %s AND ts < %s "
        "SAMPLE BY 15m ALIGN TO CALENDAR")
    assert params == ["u1", "soc", datetime(2024, 1, 1), datetime(2024, 1, 2)]
    with pytest.raises(ValueError):
        qdb.telemetry_query(t, "u1", "soc", T0, T0 + DAY, 0)

    sql, params = qdb.breaches_query(t, ["s1"], T0, T0 + HOUR)
    assert "WHERE site_id IN (%s) AND ts < %s AND event_ts >= %s AND event_ts < %s" in sql
    assert params == ["s1", datetime(2024, 1, 1, 1), datetime(2024, 1, 1), datetime(2024, 1, 1, 1)]

    every, params = qdb.alerts_query(t, None, T0, T0 + HOUR)
    assert "scope_id IN" not in every and len(params) == 3
    some, params = qdb.alerts_query(t, ["s1", "s2"], T0, T0 + HOUR)
    assert "WHERE scope_id IN (%s, %s) AND ts < %s" in some and params[:2] == ["s1", "s2"]

    sql, params = qdb.availability_query(t, ["u1"], "day", T0, T0 + DAY)
    assert "bucket = %s AND ts < %s AND end_ts > %s" in sql
    assert params == ["u1", "day", datetime(2024, 1, 2), datetime(2024, 1, 1)]

    sql, _ = qdb.episodes_query(t, ["u1"], T0, T0 + DAY)
    assert "FROM p_episodes WHERE asset_id IN (%s) AND ts < %s AND (end_ts IS NULL" in sql

    columns = ("ts, site_id, device_id, connector, state, previous_state, reason, "
               "consecutive_failures, gateway")
    sql, params = qdb.device_changes_query(t, ["s1", "s2"], T0, T0 + DAY)
    assert sql == (
        f"SELECT {columns} FROM p_device_states WHERE site_id IN (%s, %s) AND ts >= %s "
        "AND ts < %s ORDER BY ts, device_id")
    assert params == ["s1", "s2", datetime(2024, 1, 1), datetime(2024, 1, 2)]
    # Each device's state at the start: its latest change before it, among these sites.
    sql, params = qdb.device_states_before_query(t, ["s1"], T0)
    assert sql == (
        f"SELECT {columns} FROM p_device_states WHERE site_id IN (%s) AND ts < %s "
        "LATEST ON ts PARTITION BY device_id")
    assert params == ["s1", datetime(2024, 1, 1)]

    sql, params = qdb.device_stats_query(t, ["s1"], T0, T0 + HOUR)
    assert sql == (
        "SELECT site_id, device_id, max(ts) AS newest_ts, last(end_ts) AS newest_end_ts, "
        "last(connector) AS newest_connector, last(gateway) AS newest_gateway, "
        "count() AS windows, sum(polls) AS polls_sum, sum(failed) AS failed_sum, "
        "sum(retries) AS retries_sum, "
        "sum(CASE WHEN p50 IS NULL THEN 0 ELSE polls - failed END) AS answered, "
        "sum(coalesce(p50, 0.0) * (polls - failed)) AS p50_sum, "
        "sum(coalesce(p95, 0.0) * (polls - failed)) AS p95_sum, max(pmax) AS latency_max "
        "FROM p_device_stats WHERE site_id IN (%s) AND ts >= %s AND ts < %s "
        "GROUP BY site_id, device_id")
    assert params == ["s1", datetime(2024, 1, 1), datetime(2024, 1, 1, 1)]


@pytest.mark.parametrize(("step_ms", "stride"), [
    (MIN, "1m"), (15 * MIN, "15m"), (HOUR, "1h"), (DAY, "1d"), (90 * 1000, "90s"),
    (250, "250T"), (2 * DAY, "2d"),
])
def test_sample_by_stride(step_ms: int, stride: str) -> None:
    assert qdb.sample_by_stride(step_ms) == stride


def test_records_read_over_pg_wire_become_the_rows_written() -> None:
    """What a SELECT returns (naive UTC timestamps) turns back into the written rows."""
    def ts(ms: int | None) -> datetime | None:
        return None if ms is None else qdb.naive_utc(ms)

    record: tuple[Any, ...]
    for row in STATUS:
        record = (ts(row.start_ms), row.asset_id, row.site_id, ts(row.end_ms), row.state,
                  row.derate_fraction, row.cause)
        assert qdb.status_from(record) == row
    for b in BREACHES:
        line = qdb.breach_ilp(b)
        record = (ts(line.ts_ms), b.breach_id, b.state, ts(b.ts_ms), b.rule_id, b.kind,
                  b.asset_id, b.site_id, b.tag, b.severity, b.value, b.threshold, b.message)
        assert qdb.breach_from(record) == b
    for a in ALERTS:
        line = qdb.alert_ilp(a)
        record = (ts(a.raised_ms), a.alert_id, a.state, ts(a.ts_ms), a.kind, a.scope_id,
                  a.site_id, a.severity, a.message, line.columns["details"])
        assert qdb.alert_from(record) == a
    for e in EPISODES:
        line = qdb.episode_ilp(e)
        record = (ts(e.start_ms), e.episode_id, e.asset_id, e.site_id, ts(e.end_ms), e.state,
                  e.cause, e.lost_hours, e.lost_mwh, line.columns["tickets"])
        assert qdb.episode_from(record) == e
    assert qdb.epoch_ms(datetime(2024, 1, 1, 0, 0, 0, 123000)) == T0 + 123

    for h in DEVICE_STATES:
        record = (ts(h.ts_ms), h.site_id, h.device_id, h.connector, h.state, h.previous,
                  h.reason, h.consecutive_failures, h.gateway)
        assert qdb.device_state_from(record) == h
    # An empty VARCHAR or a missing LONG read back as NULL are the event's defaults.
    assert qdb.device_state_from(
        (ts(T0), "s1", "u1", "modbus", "online", None, None, None, None)) == health(
            "u1", T0, "online", gateway=None)


def device_stats_records(windows: list[DeviceStats]) -> list[tuple[Any, ...]]:
    """What `device_stats_query` answers for these windows, one record per site and device:
    sums as `PollTotals.of` adds them, the newest window's end, connector and gateway."""
    records = []
    for site, device in sorted({(w.site_id, w.device_id) for w in windows}):
        of = sorted((w for w in windows if (w.site_id, w.device_id) == (site, device)),
                    key=lambda w: w.start_ms)
        t = totals(of)
        records.append((site, device, qdb.naive_utc(of[-1].start_ms),
                        qdb.naive_utc(of[-1].end_ms), of[-1].connector, of[-1].gateway,
                        t.windows, t.polls, t.failed, t.retries, t.answered, t.p50_sum,
                        t.p95_sum, t.latency_max_ms))
    return records


def test_device_stats_records_become_one_total_per_device() -> None:
    records = device_stats_records(DEVICE_STATS)
    assert len(records) == 4  # s1-u3 in two sites: two records …
    assert per_device(map(qdb.device_stats_total_from, records)) == EXPECTED["device_stats"]
    # … and QuestDB's NULL DOUBLE (NaN) is no latency.
    nan = (*records[0][:-1], float("nan"))
    assert qdb.device_stats_total_from(nan).totals.latency_max_ms is None


def test_per_device_adds_a_moved_devices_totals_under_its_newest_window() -> None:
    def total(site: str, start_ms: int, polls: int) -> DeviceStatsTotal:
        return DeviceStatsTotal("u1", site, "modbus", f"gw-{site}", start_ms, start_ms + MIN,
                                PollTotals(windows=1, polls=polls))

    moved = [total("s2", T0 + MIN, 5), total("s1", T0, 7), total("s3", T0 - MIN, 11)]
    [one] = per_device(moved)
    assert (one.site_id, one.gateway, one.newest_start_ms) == ("s2", "gw-s2", T0 + MIN)
    assert (one.totals.windows, one.totals.polls) == (3, 23)
    # Newest windows starting at once (a device in two sites): the greater site id names it,
    # whatever the order the engine answered in.
    tie = [total("s1", T0, 1), total("s2", T0, 2)]
    assert per_device(tie) == per_device(tie[::-1])
    assert per_device(tie)[0].site_id == "s2"
    assert [t.device_id for t in per_device([*moved, replace(moved[0], device_id="a0")])] == [
        "a0", "u1"]


class IlpEndpoint(BaseHTTPRequestHandler):
    """QuestDB's ILP/HTTP endpoint as far as the client sees it: POST /write, 204 when taken,
    400 with QuestDB's JSON error when told to refuse. Knows no /settings (404), so the
    client falls back to text ILP (protocol 1). Speaks HTTP/1.1 with keep-alive, as QuestDB
    does: under HTTP/1.0 the server closes each connection after its answer while the client
    may already be reusing it, and a write then fails with a broken pipe."""

    protocol_version = "HTTP/1.1"
    bodies: list[bytes]
    refuse: bool

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if type(self).refuse:
            error = b'{"code":"invalid","message":"refused for the test","line":1,"errorId":"t"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        type(self).bodies.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ilp_endpoint() -> Iterator[tuple[type[IlpEndpoint], str]]:
    handler = type("Handler", (IlpEndpoint,), {"bodies": [], "refuse": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http::addr=127.0.0.1:{server.server_port};auto_flush=off;retry_timeout=0;"
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_ilp_writer_sends_rows_in_requests_of_at_most_flush_every(
        ilp_endpoint: tuple[type[IlpEndpoint], str]) -> None:
    endpoint, conf = ilp_endpoint
    writer = qdb.IlpWriter(conf, flush_every=2)
    rows = [TelemetryRow("u1", "s1", "soc", T0 + i * MIN, 60, 1.0, 2.0, 1.5, float(i))
            for i in range(5)]
    assert writer.send(qdb.telemetry_ilp(r) for r in rows) == 5
    writer.close()
    bodies = [b.decode().splitlines() for b in endpoint.bodies]
    assert [len(b) for b in bodies] == [2, 2, 1]
    assert [line for body in bodies for line in body] == [
        f"bessmon_telemetry,asset_id=u1,site_id=s1,tag=soc n=60i,vmin=1.0,vmax=2.0,vmean=1.5,"
        f"vlast={i}.0 {(T0 + i * MIN) * 1_000_000}"
        for i in range(5)]


def test_the_questdb_store_writes_device_health_it_can_place(
        ilp_endpoint: tuple[type[IlpEndpoint], str]) -> None:
    endpoint, conf = ilp_endpoint
    # Writing needs only the ILP sender: a store without its PG wire connection.
    store = qdb.QuestDBHistoryStore.__new__(qdb.QuestDBHistoryStore)
    store.tables, store._ilp = qdb.Tables("x_"), qdb.IlpWriter(conf)
    store.write_device_health(HEALTH)
    store.write_device_health([])
    store._ilp.close()
    lines = [line for body in endpoint.bodies for line in body.decode().splitlines()]
    assert [line.split(",")[0] for line in lines] == (
        ["x_device_states"] * len(DEVICE_STATES) + ["x_device_stats"] * len(DEVICE_STATS))
    assert not any("x-u1" in line for line in lines)  # without a site: not kept (as SQLite)
    assert "device_id=s1-u3,connector=modbus,gateway=10.0.0.1:502 end_ts=" in lines[-1]


def test_a_refused_ilp_write_raises_and_leaves_nothing_behind(
        ilp_endpoint: tuple[type[IlpEndpoint], str]) -> None:
    endpoint, conf = ilp_endpoint
    writer = qdb.IlpWriter(conf)
    endpoint.refuse = True
    with pytest.raises(HistoryStoreError, match="refused for the test"):
        writer.send([qdb.status_ilp(STATUS[0])])
    endpoint.refuse = False
    with pytest.raises(HistoryStoreError):  # the client refuses the second row (no table)
        writer.send([qdb.status_ilp(STATUS[1]), qdb.IlpRow("", {}, {"x": 1.0}, T0)])
    assert writer.send([qdb.status_ilp(STATUS[3])]) == 1
    writer.close()
    assert [b.decode() for b in endpoint.bodies] == [
        f"bessmon_status_intervals,asset_id=s1-u2,site_id=s1,state=available "
        f"{T0 * 1_000_000}\n"]


# --- QuestDB with a server -------------------------------------------------------------------

QUESTDB_IMAGE = "questdb/questdb:9.2.0"


def _docker_engine_reachable() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="module")
def questdb_url() -> Iterator[str]:
    """A QuestDB server: QUESTDB_URL from the environment, else a testcontainers container.
    (No local process: QuestDB's server comes in no package this suite can install.)"""
    prefix = f"t{uuid.uuid4().hex[:8]}_"  # tables of their own on a shared server
    if os.environ.get("QUESTDB_URL"):
        url = os.environ["QUESTDB_URL"]
        yield url + ("&" if "?" in url else "?") + f"prefix={prefix}"
        return
    if not _docker_engine_reachable():
        pytest.skip("no Docker engine here: QuestDB's server is in no registry this machine "
                    "reaches; its ILP rows, DDL and SQL are tested above without a server, and "
                    "this test runs where QUESTDB_URL is set or Docker is available")
    from testcontainers.core.container import DockerContainer

    with DockerContainer(QUESTDB_IMAGE).with_exposed_ports(9000, 8812) as container:
        host = container.get_container_host_ip()
        http, pg = container.get_exposed_port(9000), container.get_exposed_port(8812)
        deadline = time.monotonic() + 120
        while True:  # up once its PG wire answers
            try:
                psycopg.connect(host=host, port=int(pg), user="admin", password="quest",
                                dbname="qdb", connect_timeout=5).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield f"questdb://{host}:{http}?pg_port={pg}&prefix={prefix}"


def device_health_reads(store: HistoryStore) -> dict[str, list[Any]]:
    """Device health read back over ranges and site sets that cut through the examples:
    before, inside and after the changes and windows, a moved device seen from each site."""
    reads: dict[str, list[Any]] = {}
    for sites in (["s1"], ["s2"], ["s1", "s2"], ["nobody"]):
        for start, end in ((T0 - 3 * DAY, T0 + DAY), (T0, T0 + MIN), (T0 + MIN, T0 + HOUR),
                           (T0 + 90 * MIN, T0 + 3 * HOUR), (T0 + DAY, T0 + DAY)):
            key = f"{'+'.join(sites)} [{start - T0}, {end - T0})"
            reads[f"states {key}"] = store.device_states(sites, start, end)
            reads[f"stats {key}"] = store.device_stats(sites, start, end)
    return reads


def test_device_health_reads_cover_the_cases(store: SqliteHistoryStore) -> None:
    """The reads the QuestDB store must answer like SQLite are not trivially equal."""
    write_everything(store)
    reads = device_health_reads(store)
    assert reads["states s1 [0, 60000)"] == [DEVICE_STATES[0]]  # the state before it only
    assert reads["stats s2 [0, 60000)"][0].totals.polls == 60  # s1-u3 while in s2
    assert reads["stats s1+s2 [0, 60000)"] == [
        replace(t, newest_start_ms=T0, newest_end_ms=T0 + MIN, gateway="10.0.0.1:502",
                totals=totals([w for w in DEVICE_STATS if w.device_id == t.device_id
                               and w.start_ms == T0]))
        for t in EXPECTED["device_stats"][:2]] + [
        DeviceStatsTotal("s1-u3", "s2", "modbus", "10.0.0.1:502", T0, T0 + MIN,
                         totals(DEVICE_STATS[3:4]))]
    # An empty range still has each device's state at its start; no window starts in it.
    assert reads["states s1+s2 [86400000, 86400000)"] == DEVICE_STATES[1:]
    assert reads["stats s1+s2 [86400000, 86400000)"] == []
    assert reads["states s2 [60000, 3600000)"] == []  # s1-u2's first change is later


def test_questdb_round_trip_and_replay_without_duplicates(questdb_url: str,
                                                         tmp_path: Path) -> None:
    with qdb.QuestDBHistoryStore.from_url(questdb_url) as store, \
            SqliteHistoryStore(tmp_path / "history.db") as embedded:
        write_everything(store)
        write_everything(embedded)
        store.wait_applied()
        assert read_everything(store) == EXPECTED
        assert device_health_reads(store) == device_health_reads(embedded)

        write_everything(store)  # the replay
        closed = StatusIntervalRow("s1-u1", "s1", T0 + HOUR + 15 * MIN, T0 + 3 * HOUR,
                                   "derated", 0.5, "fault")
        store.write_status([closed])
        store.wait_applied()
        again = read_everything(store)
        assert again["status"] == [closed if r.start_ms == closed.start_ms
                                   and r.asset_id == "s1-u1" else r
                                   for r in EXPECTED["status"]]
        assert {k: v for k, v in again.items() if k != "status"} == {
            k: v for k, v in EXPECTED.items() if k != "status"}

        # A state change and a window written again with other values replace the stored.
        rewritten: list[DeviceHealth | DeviceStats] = [
            health("s1-u1", T0 + HOUR, "offline", previous="online", reason="timed out"),
            window("s1-u1", 1, polls=10, failed=4, retries=7, latencies=(1.5, 2.5, 3.5))]
        before = device_health_reads(embedded)
        for s in (store, embedded):
            s.write_device_health(rewritten)
        store.wait_applied()
        assert device_health_reads(store) == device_health_reads(embedded) != before

        with psycopg.connect(**store.config.pg_params(), autocommit=True) as db:
            counts = {table: db.execute(f"SELECT count() FROM {table}").fetchone()[0]  # type: ignore[index]
                      for table in store.tables.all()}
        assert counts == {store.tables.status: 4, store.tables.availability: 4,
                          store.tables.telemetry: 3, store.tables.breaches: 2,
                          store.tables.alerts: 2, store.tables.episodes: 2,
                          store.tables.device_states: 3, store.tables.device_stats: 5}
