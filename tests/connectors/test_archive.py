"""The Parquet archive (connectors/archive/) against the real embedded history store, filled
through its own write methods: closed days only, written once, read back equal — with
pyarrow, and with DuckDB through the query layer and the historian."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.archive import layout, writer
from connectors.archive.historian import Historian
from connectors.archive.query import ArchiveReader
from connectors.archive.tables import TELEMETRY, from_arrow
from connectors.archive.writer import ArchiveLocked, Archiver
from connectors.history import SqliteHistoryStore, StatusIntervalRow, TelemetryRow
from connectors.settings import EXAMPLE_FLEET, Settings
from contracts.events import UnavailabilityEpisode
from contracts.fleet import Fleet, load_fleet
from infra.cli import main

FLEET = load_fleet(EXAMPLE_FLEET)
STOCKHOLM = FLEET.site("nordvik").tz
TAGS = ("active_power_kw", "soc_pct")
MINUTE = 60_000


def local_ms(day: dt.date, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), STOCKHOLM).timestamp() * 1000)


D1, D2, D3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 4)
NOW = local_ms(D3, 12)  # D1 and D2 are over; D3 is not


def telemetry_rows(day: dt.date, *, minutes: int = 30, offset: float = 0.0
                   ) -> list[TelemetryRow]:
    """Two units' two tags, `minutes` minutes from 23:30 local (the last half hour of the
    day: a row of the next day's first minutes would show a wrong day boundary)."""
    start = local_ms(day, 23, 30)
    return [TelemetryRow(asset, "nordvik", tag, start + i * MINUTE, 60, i - 1.5 + offset,
                         i + 2.25 + offset, i + 0.125 + offset, i + 1.0 + offset)
            for asset in ("nordvik-u01", "nordvik-u02") for tag in TAGS
            for i in range(minutes)]


def status_rows(day: dt.date) -> list[StatusIntervalRow]:
    return [StatusIntervalRow("nordvik-u01", "nordvik", local_ms(day, 1), local_ms(day, 2),
                              "derated", 0.5, "grid_outage"),
            StatusIntervalRow("nordvik-u01", "nordvik", local_ms(day, 2), None, "available")]


def episode(day: dt.date) -> UnavailabilityEpisode:
    start = local_ms(day, 1)
    return UnavailabilityEpisode(episode_id=f"nordvik-u01:{start}", asset_id="nordvik-u01",
                                 site_id="nordvik", start_ms=start, end_ms=local_ms(day, 2),
                                 state="derated", cause="grid_outage", lost_hours=0.5,
                                 lost_mwh=1.25)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[SqliteHistoryStore]:
    store = SqliteHistoryStore(tmp_path / "history.db")
    for day in (D1, D2, D3):
        store.write_telemetry(telemetry_rows(day))
        store.write_status(status_rows(day))
        store.write_episodes([episode(day)])
    yield store
    store.close()


def archiver(root: Path, history: SqliteHistoryStore, final_ms: int | None = None,
             fleet: Fleet = FLEET) -> Archiver:
    return Archiver(root, history, fleet, TAGS, lambda _site: final_ms)


def run(a: Archiver, since: dt.date = D1) -> writer.RunSummary:
    return a.run(NOW, ["nordvik"], since=since)


def archived(root: Path, table: str, day: dt.date) -> list[tuple[object, ...]]:
    parts = layout.parts(layout.day_dir(root, table, "nordvik", day))
    return [r for p in parts for r in from_arrow(pq.read_table(p, partitioning=None))]


def test_closed_days_are_archived_once_and_read_back_equal(
        tmp_path: Path, history: SqliteHistoryStore) -> None:
    root = tmp_path / "archive"
    first = run(archiver(root, history))
    assert (first.days, first.written) == (2, 2)  # D1 and D2; D3 is not over
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert files == [f"{t}/site=nordvik/day={d}/part-000001.parquet"
                     for t in ("daily", "episodes", "exposure", "status_intervals", "telemetry")
                     for d in (D1, D2)]
    for day in (D1, D2):
        start, end = layout.day_bounds(day, STOCKHOLM)
        expected = sorted((r.site_id, r.asset_id, r.tag, r.start_ms, r.count, r.min, r.max,
                           r.mean, r.last) for a in ("nordvik-u01", "nordvik-u02")
                          for tag in TAGS for r in history.telemetry(a, tag, start, end, MINUTE))
        assert len(expected) == 120
        assert archived(root, "telemetry", day) == expected  # written sorted by key
        assert archived(root, "status_intervals", day) == [
            (r.site_id, r.asset_id, r.start_ms, r.end_ms, r.state, r.derate_fraction, r.cause)
            for r in status_rows(day)]
        (ep,) = archived(root, "episodes", day)
        assert UnavailabilityEpisode.model_validate_json(str(ep[-1])) == episode(day)

    again = run(archiver(root, history))
    assert (again.days, again.written) == (2, 0)
    assert all(r.part is None for r in again.results)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet")) == files


def test_a_day_the_flows_have_not_made_final_is_not_archived(
        tmp_path: Path, history: SqliteHistoryStore) -> None:
    root = tmp_path / "archive"
    # Final up to D2 13:00: D1 is closed, D2 not (though it is over by the clock).
    summary = run(archiver(root, history, final_ms=local_ms(D2, 13)))
    assert [(r.table, r.day) for r in summary.results if r.part] == \
        [("telemetry", D1), ("status_intervals", D1), ("episodes", D1)]
    assert not layout.day_dir(root, "telemetry", "nordvik", D2).exists()
    # No site snapshot yet (final_ms 0): nothing is final.
    assert run(archiver(tmp_path / "other", history, final_ms=0)).days == 0
    # Final exactly at D2's local midnight end: D2 is closed.
    a = archiver(root, history, final_ms=local_ms(D3))
    assert a.last_closed_day(FLEET.site("nordvik"), NOW) == D2


def test_late_rows_add_a_part_of_the_changes_only_and_compaction_merges(
        tmp_path: Path, history: SqliteHistoryStore) -> None:
    root = tmp_path / "archive"
    run(archiver(root, history))
    late = telemetry_rows(D1, minutes=2, offset=100.0)  # two minutes rewritten per series
    history.write_telemetry(late)
    summary = run(archiver(root, history))
    (changed,) = [r for r in summary.results if r.part is not None]
    assert (changed.table, changed.day, changed.rows) == ("telemetry", D1, len(late))
    directory = layout.day_dir(root, "telemetry", "nordvik", D1)
    assert [p.name for p in layout.parts(directory)] == ["part-000001.parquet",
                                                         "part-000002.parquet"]
    start, end = layout.day_bounds(D1, STOCKHOLM)
    reader = ArchiveReader(root)
    rows = reader.telemetry(reader.files(TELEMETRY, "nordvik", [D1]), ["nordvik-u01"],
                            ["soc_pct"], start, end)
    assert rows == history.telemetry("nordvik-u01", "soc_pct", start, end, MINUTE)
    assert rows[0].mean == 100.125  # the later part's version

    writer.compact_day(directory, TELEMETRY)
    assert [p.name for p in layout.parts(directory)] == ["part-000003.parquet"]
    assert reader.telemetry(reader.files(TELEMETRY, "nordvik", [D1]), ["nordvik-u01"],
                            ["soc_pct"], start, end) == rows
    assert len(archived(root, "telemetry", D1)) == 120
    assert run(archiver(root, history)).written == 0


def test_a_crash_while_writing_leaves_no_part(tmp_path: Path, history: SqliteHistoryStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "archive"
    real_replace = os.replace

    def crash(src: str, dst: str) -> None:
        assert Path(src).stat().st_size > 0  # the temporary file was written whole
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        run(archiver(root, history))
    assert list(root.rglob("*.parquet")) == []
    assert [p.name for p in root.rglob("*") if p.is_file()] == [".lock"]
    reader = ArchiveReader(root)
    assert reader.archived_days(TELEMETRY, "nordvik", [D1, D2]) == set()

    # A temporary file a killed process left behind is neither a part nor kept.
    stale = layout.day_dir(root, "telemetry", "nordvik", D1) / ".part-000001.parquet.1.tmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"PAR1 half")
    assert layout.parts(stale.parent) == []
    monkeypatch.setattr(os, "replace", real_replace)
    summary = run(archiver(root, history))
    assert (summary.written, summary.removed_temp_files) == (2, 1)
    assert not stale.exists()


def test_one_writer_at_a_time(tmp_path: Path, history: SqliteHistoryStore) -> None:
    a = archiver(tmp_path / "archive", history)
    with a.lock(), pytest.raises(ArchiveLocked, match="another archive run"):
        run(a)


def test_the_historian_reads_the_archive_and_the_history_beyond_it(
        tmp_path: Path, history: SqliteHistoryStore) -> None:
    root = tmp_path / "archive"
    run(archiver(root, history))  # D1, D2 archived; D3 only in the history
    # Make the archive differ from the history on D1 to see which one is read.
    history.write_telemetry(telemetry_rows(D1, offset=1000.0))
    historian = Historian(history, ArchiveReader(root), FLEET)
    start, end = local_ms(D1), local_ms(D3 + dt.timedelta(days=1))
    segments = historian.segments(FLEET.site("nordvik"), start, end)
    assert [(s.start_ms, s.end_ms, s.archived) for s in segments] == \
        [(start, local_ms(D3), True), (local_ms(D3), end, False)]
    rows = list(historian.minute_rows("nordvik-u02", "soc_pct", start, end))
    assert len(rows) == 90
    assert [r.start_ms for r in rows] == sorted(r.start_ms for r in rows)
    assert rows[0].mean == 0.125 and rows[-1].mean == 29.125  # archive (D1), history (D3)

    # Buckets of 2 hours: 23:00-01:00 local spans each archived/history boundary.
    step = 2 * 3_600_000
    buckets = historian.buckets([("nordvik-u02", "soc_pct")], start, end, step)
    (series,) = buckets.values()
    assert sum(b.count for b in series) == 90 * 60
    oracle: dict[int, list[TelemetryRow]] = {}
    for r in rows:
        oracle.setdefault(r.start_ms // step * step, []).append(r)
    assert [b.start_ms for b in series] == sorted(oracle)
    for b in series:
        minutes = oracle[b.start_ms]
        assert (b.min, b.max, b.last) == (min(r.min for r in minutes),
                                          max(r.max for r in minutes), minutes[-1].last)
        assert b.mean == pytest.approx(sum(r.mean for r in minutes) / len(minutes))


def test_partition_pruning_lists_only_the_days_asked(tmp_path: Path,
                                                     history: SqliteHistoryStore) -> None:
    root = tmp_path / "archive"
    run(archiver(root, history))
    reader = ArchiveReader(root)
    assert [p.parent.name for p in reader.files(TELEMETRY, "nordvik", [D2, D3])] == \
        [f"day={D2}"]
    assert reader.files(TELEMETRY, "elbe", [D1, D2]) == []


@pytest.fixture
def cli_settings(tmp_path: Path, history: SqliteHistoryStore,
                 monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of the `bessmon` command: the history above, no Redis (no flows to wait
    for: the history is final as it stands)."""
    s = Settings(run_dir=tmp_path / "run", history_path=history.path,
                 archive_dir=tmp_path / "archive")
    monkeypatch.setattr("infra.cli.get_settings", lambda: s)
    return s


def test_the_command_prints_a_line_per_day_written_and_nothing_twice(
        cli_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.fromtimestamp(NOW / 1000, dt.UTC).isoformat()
    assert main(["archive", "run", "--now", now, "--site", "nordvik", "--days", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"[2/3] nordvik {D1}: telemetry 120 rows (part-000001.parquet), "
                      "status_intervals 2 rows (part-000001.parquet), episodes 1 row "
                      "(part-000001.parquet)")
    assert out[1].startswith(f"[3/3] nordvik {D2}: telemetry 120 rows")
    assert out[2] == (f"archive: 3 closed site-days looked at, 2 written, 1 unchanged "
                      f"({cli_settings.archive_dir})")
    assert main(["archive", "run", "--now", now, "--since", str(D1)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"archive: 6 closed site-days looked at, 0 written, 6 unchanged "
        f"({cli_settings.archive_dir})"]  # three sites, two days each
    assert main(["archive", "compact"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"archive: 0 days compacted ({cli_settings.archive_dir})"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--site", "atlantis"], "bessmon: --site: no site 'atlantis' in "),
    (["--now", "2026-03-04T12:00:00"], "needs a UTC offset"),
    (["--since", "2026-02-30"], "not a date (YYYY-MM-DD): '2026-02-30'"),
    (["--days", "0"], "must be a whole number ≥ 1"),
])
def test_the_command_refuses_bad_input_with_status_2(
        cli_settings: Settings, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    try:
        code = main(["archive", "run", *argv])
    except SystemExit as exc:  # argparse's own refusal
        code = int(str(exc.code))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (cli_settings.archive_dir or Path("/nonexistent")).exists()


def test_a_bad_monitoring_file_is_named_with_its_problem(
        cli_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "monitoring.yaml"
    bad.write_text("tags: [soc_pct]\n", encoding="utf-8")
    monkeypatch.setattr("infra.cli.get_settings",
                        lambda: cli_settings.model_copy(update={"monitoring_file": bad}))
    assert main(["archive", "run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bessmon: {bad}") and "tags" in err


def test_the_command_says_when_another_run_holds_the_archive(
        cli_settings: Settings, history: SqliteHistoryStore,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_settings.archive_dir is not None
    with archiver(cli_settings.archive_dir, history).lock():
        assert main(["archive", "run"]) == 1
        assert main(["archive", "compact"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"bessmon: archive {cmd}: {cli_settings.archive_dir}: another archive run "
                   "is writing it" for cmd in ("run", "compact")]
