"""Per-minute telemetry packed an hour per (asset, tag) (connectors/history/minute_blobs.py)
and the embedded store that keeps it so: what goes in comes out bit for bit, a write again
replaces minutes and keeps the others, and the store's re-aggregated telemetry is what the
row-per-minute table of schema 2 answered — its own query, run on SQLite, is the oracle."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors.history import minute_blobs
from connectors.history.minute_blobs import HOUR_MS, MINUTE_MS, decode, encode, merge
from connectors.history.rows import TelemetryMinute, TelemetryRow
from connectors.history.sqlite import MIGRATIONS, SqliteHistoryStore

T0 = 1_790_002_800_000  # 2026-09-21T14:00:00Z, on an hour
FINITE = st.floats(-1e12, 1e12, allow_nan=False, width=64)


@st.composite
def hours(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """An hour's minutes (ascending, distinct) and their values, often one sample a minute
    (min, max, mean and last one value) as replays of 1-minute polls write."""
    slots = np.array(draw(st.lists(st.integers(0, 59), min_size=1, max_size=60, unique=True)
                          .map(sorted)), dtype=np.int64)
    single = draw(st.booleans())
    values = np.empty((slots.size, 5))
    for i in range(slots.size):
        last = draw(FINITE)
        if single:
            values[i] = (1, last, last, last, last)
        else:  # each often the last, or its negative (0.0 and -0.0 differ in bits only)
            near = st.one_of(st.just(last), st.just(-last), FINITE)
            values[i] = (draw(st.integers(0, 2**32 - 1)), draw(near), draw(near), draw(near),
                         last)
    return slots, values


NEGATIVE_ZERO_MEAN = (np.array([0, 1]), np.array([[1, 0.0, 0.0, 0.0, 0.0],
                                                 [1, 0.0, 0.0, -0.0, 0.0]]))


@given(hours())
@example(NEGATIVE_ZERO_MEAN)  # equal to the last as a number, not bit for bit
def test_an_hour_comes_back_bit_for_bit(hour: tuple[np.ndarray, np.ndarray]) -> None:
    slots, values = hour
    back_slots, back_values = decode(encode(slots, values))
    assert back_slots.tolist() == slots.tolist()
    assert back_values.tobytes() == values.tobytes()


def test_one_sample_a_minute_takes_a_third_of_the_bytes() -> None:
    slots = np.arange(60)
    one = np.repeat(np.linspace(0, 1, 60)[:, np.newaxis], 5, axis=1)
    one[:, 0] = 1
    assert len(encode(slots, one)) == 9 + 60 * 12  # counts and last only
    many = one.copy()
    many[:, 1] -= 1  # min below last
    assert len(encode(slots, many)) == 9 + 60 * 20


@given(hours(), hours())
def test_a_write_again_replaces_its_minutes_and_keeps_the_others(
        old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray]) -> None:
    expected = {**dict(zip(old[0].tolist(), old[1].tolist(), strict=True)),
                **dict(zip(new[0].tolist(), new[1].tolist(), strict=True))}
    merged = merge(encode(*old), encode(*new))
    slots, values = decode(merged)
    assert dict(zip(slots.tolist(), values.tolist(), strict=True)) == expected
    assert slots.tolist() == sorted(expected)
    assert merged == encode(slots, values)  # the one blob of these minutes


@given(hours(), hours())
@example((np.array([0, 1, 2]), np.array([[0.0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]])),
         (np.array([0, 1, 30]), np.array([[0.0, 0, 0, 0, 0], [0, 0, 0, 0, 0],
                                          [0, 0, 0, -0.0, 0]])))  # found by CI
def test_later_minutes_are_appended_as_encode_would_write_them(
        old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray]) -> None:
    """The usual write of a live hour: minutes after those stored (appended byte-wise)."""
    old_slots = old[0][old[0] < 30]
    new_slots = new[0][new[0] >= 30]
    if old_slots.size and new_slots.size:
        a = (old_slots, old[1][old[0] < 30])
        b = (new_slots, new[1][new[0] >= 30])
        assert merge(encode(*a), encode(*b)) == encode(
            np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))


def test_bad_minutes_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="whole minute: start_ms 1790002830000 is 30000 ms"):
        list(minute_blobs.blobs_of_rows([("a", "soc", T0 + 30_000, "s", (1, 1, 1, 1, 1))]))
    with pytest.raises(OverflowError, match="sample count must be 0 to 4294967295, not"):
        encode(np.array([0]), np.array([[2.0**32, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="telemetry hour of 12 bytes"):
        decode(encode(np.array([0]), np.array([[1.0, 1, 1, 1, 1]]))[:12])


# -- the store against the row-per-minute table of schema 2 ----------------------------------

OLD_TABLE = """CREATE TABLE telemetry (
    asset_id TEXT NOT NULL, tag TEXT NOT NULL, start_ms INTEGER NOT NULL,
    site_id TEXT NOT NULL, n INTEGER NOT NULL, vmin REAL NOT NULL, vmax REAL NOT NULL,
    vmean REAL NOT NULL, vlast REAL NOT NULL, PRIMARY KEY (asset_id, tag, start_ms)
) WITHOUT ROWID"""
OLD_UPSERT = """INSERT OR REPLACE INTO telemetry VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# The query of schema 2, word for word: within each step, the latest row gives `last`.
OLD_SELECT = """
    WITH picked AS (
        SELECT (start_ms / :step) * :step AS bucket_ms, start_ms, site_id, n, vmin, vmax,
               vmean, vlast,
               row_number() OVER (PARTITION BY start_ms / :step ORDER BY start_ms DESC) AS rn
        FROM telemetry
        WHERE asset_id = :asset_id AND tag = :tag AND start_ms >= :start AND start_ms < :end
    )
    SELECT bucket_ms,
           max(CASE WHEN rn = 1 THEN site_id END),
           sum(n), min(vmin), max(vmax),
           CASE WHEN sum(n) > 0 THEN sum(vmean * n) / sum(n) ELSE avg(vmean) END,
           max(CASE WHEN rn = 1 THEN vlast END)
    FROM picked
    GROUP BY bucket_ms
    ORDER BY bucket_ms"""

SERIES = [("s1-u1", "soc"), ("s1-u1", "power_kw"), ("s1-u2", "soc")]
ROW = st.builds(
    lambda series, minute, n, a, b, c, d: TelemetryRow(
        series[0], "s1", series[1], T0 + minute * MINUTE_MS, n, min(a, b), max(a, b), c, d),
    st.sampled_from(SERIES), st.integers(0, 4 * 60 - 1), st.integers(0, 120),
    FINITE, FINITE, FINITE, FINITE)


def old_answer(rows: list[TelemetryRow], asset: str, tag: str, start: int, end: int,
               step: int) -> list[TelemetryRow]:
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute(OLD_TABLE)
        db.executemany(OLD_UPSERT, [(r.asset_id, r.tag, r.start_ms, r.site_id, r.count, r.min,
                                     r.max, r.mean, r.last) for r in rows])
        found = db.execute(OLD_SELECT, {"step": step, "asset_id": asset, "tag": tag,
                                        "start": start, "end": end}).fetchall()
    return [TelemetryRow(asset, site, tag, bucket, n, lo, hi, mean, last)
            for bucket, site, n, lo, hi, mean, last in found]


def same(got: list[TelemetryRow], expected: list[TelemetryRow]) -> None:
    """Equal; the means summed in another order, so within rounding (values up to 1e12)."""
    def exact(r: TelemetryRow) -> tuple[object, ...]:
        return (r.asset_id, r.site_id, r.tag, r.start_ms, r.count, r.min, r.max, r.last)

    assert [exact(r) for r in got] == [exact(r) for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.mean == pytest.approx(e.mean, rel=1e-9, abs=1e-3)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=80), cuts=st.lists(st.integers(0, 80), max_size=4),
       start=st.integers(-90, 4 * 60), span=st.integers(1, 5 * 60),
       step=st.sampled_from([MINUTE_MS, 5 * MINUTE_MS, 7 * MINUTE_MS, 90_000, HOUR_MS,
                             86_400_000]))
@example(rows=[TelemetryRow("s1-u1", "s1", "soc", T0, 1, 0.1, 0.1, 0.1, 0.1)], cuts=[],
         start=0, span=1, step=MINUTE_MS)  # one minute: mean·n/n exactly as SQL had it
def test_the_store_answers_as_the_row_per_minute_table_did(
        tmp_path: Path, rows: list[TelemetryRow], cuts: list[int], start: int, span: int,
        step: int) -> None:
    """Written in several batches (an hour told again is merged), read at any step and range
    (cut anywhere, even mid-minute): what the old table and query gave."""
    path = tmp_path / f"h{len(list(tmp_path.iterdir()))}.db"
    with SqliteHistoryStore(path) as store:
        edges = [0, *sorted(cuts), len(rows)]
        for a, b in itertools.pairwise(edges):
            store.write_telemetry(rows[a:b])
        start_ms = T0 + start * MINUTE_MS + (7_000 if start % 3 == 0 else 0)
        end_ms = start_ms + span * MINUTE_MS
        for asset, tag in SERIES:
            same(store.telemetry(asset, tag, start_ms, end_ms, step),
                 old_answer(rows, asset, tag, start_ms, end_ms, step))


def test_minutes_of_the_flow_are_stored_as_their_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    series = (("u1", "soc"), ("u1", "power_kw"), ("u1-i1", "temp_c"))
    minutes = [TelemetryMinute("s1", T0 + m * MINUTE_MS, series, np.column_stack(
        [rng.integers(1, 60, 3), rng.normal(size=(3, 4))])) for m in range(0, 150, 2)]
    with SqliteHistoryStore(tmp_path / "a.db") as by_minutes, \
            SqliteHistoryStore(tmp_path / "b.db") as by_rows:
        by_minutes.write_telemetry_minutes(minutes[:40])
        by_minutes.write_telemetry_minutes(minutes[30:])  # a replayed batch overlaps
        by_rows.write_telemetry([r for m in minutes for r in m.rows()])
        for asset, tag in series:
            got = by_minutes.telemetry(asset, tag, T0, T0 + 3 * HOUR_MS, MINUTE_MS)
            assert got == by_rows.telemetry(asset, tag, T0, T0 + 3 * HOUR_MS, MINUTE_MS)
            assert len(got) == 75


def test_a_file_of_schema_2_keeps_its_telemetry(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Opening a file of the row-per-minute schema packs its rows into hours, saying so, and
    drops the old table; a row that did not start on a minute fills the minute it started
    in."""
    path = tmp_path / "old.db"
    rows = [TelemetryRow("u1", "s1", "soc", T0 + m * MINUTE_MS, 1, m, m, m, m)
            for m in range(0, 200, 3)]
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statements in MIGRATIONS[:2]:
            for statement in statements:
                assert isinstance(statement, str)
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.executemany(OLD_UPSERT, [(r.asset_id, r.tag, r.start_ms, r.site_id, r.count, r.min,
                                     r.max, r.mean, r.last) for r in rows])
        db.execute(OLD_UPSERT, ("u1", "power_kw", T0 + 90_500, "s1", 4, 1.0, 2.0, 1.5, 2.0))
    with SqliteHistoryStore(path) as store:
        assert "packing 68 per-minute telemetry rows" in caplog.text
        assert "68 of 68 telemetry rows packed" in caplog.text
        assert store.schema_version == len(MIGRATIONS)
        assert store.telemetry("u1", "soc", T0, T0 + 4 * HOUR_MS, MINUTE_MS) == rows
        assert store.telemetry("u1", "power_kw", T0, T0 + HOUR_MS, MINUTE_MS) == [
            TelemetryRow("u1", "s1", "power_kw", T0 + MINUTE_MS, 4, 1.0, 2.0, 1.5, 2.0)]
    with closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "telemetry" not in tables
        assert db.execute("SELECT count(*) FROM telemetry_hours").fetchone() == (5,)
