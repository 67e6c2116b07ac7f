"""`bessmon backfill`: exports in CSV (wide), JSON Lines (long) and Parquet round-trip into
the real broker with their original timestamps; status exports go to bess.status and the
history; a bad row refuses the file, naming file, row and column, before anything is sent."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.history.sqlite import SqliteHistoryStore
from connectors.kafka import read_topic
from connectors.settings import REPO_ROOT, Settings
from contracts.events import StatusChange, TelemetrySample
from contracts.fleet import Fleet
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.record import record

TZ = ZoneInfo("Europe/Stockholm")
START = int(dt.datetime(2026, 9, 1, tzinfo=TZ).timestamp() * 1000)
TAGS = {"SOC": "soc_pct", "P_kW": "active_power_kw", "State": "status_code"}


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(generate_fleet(1, units_per_site=2, inverters_per_unit=1,
                                              blocks_per_inverter=1)))
    return path


def recorded(fleet_file: Path) -> list[TelemetrySample]:
    import yaml

    fleet = Fleet.model_validate(yaml.safe_load(fleet_file.read_text()))
    return list(record(fleet, START, START + 10 * 60_000, 60_000, seed=4, device_type=None))


def rows_of(samples: list[TelemetrySample]) -> list[dict[str, object]]:
    """Wide rows, one per asset and minute, interleaved across units as exports are."""
    out = []
    for s in samples:
        for a in s.assets:
            row: dict[str, object] = {"time": dt.datetime.fromtimestamp(
                s.ts_ms / 1000, TZ).strftime("%Y-%m-%d %H:%M:%S"), "asset": a.id}
            for column, tag in TAGS.items():
                row[column] = a.tags.get(tag, "")
            out.append(row)
    return out


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def expected(samples: list[TelemetrySample]) -> list[tuple[str, int, dict[str, dict[str, float]]]]:
    return [(s.device_id, s.ts_ms, {a.id: {t: float(v) for t, v in a.tags.items()
                                           if t in TAGS.values()} for a in s.assets})
            for s in samples]


@pytest.mark.parametrize("form", ["csv", "jsonl", "parquet"])
def test_an_export_round_trips_with_its_timestamps(form: str, tmp_path: Path, fleet_file: Path,
                                                   settings: Settings) -> None:
    samples = recorded(fleet_file)
    rows = rows_of(samples)
    mapping = tmp_path / "mapping.yaml"
    if form == "csv":
        source = tmp_path / "export.csv"
        with source.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        mapping.write_text("kind: telemetry\ntimestamp: {column: time, format: '%Y-%m-%d "
                           "%H:%M:%S', timezone: Europe/Stockholm}\nasset: {column: asset}\n"
                           f"columns: {json.dumps(TAGS)}\n")
    elif form == "jsonl":  # long: one signal per line, epoch ms, vendor names for assets
        source = tmp_path / "export.jsonl"
        names = {"Unit A": "nordvik-u01", "Unit B": "nordvik-u02"}
        back = {v: k for k, v in names.items()}
        with source.open("w") as f:
            for s in samples:
                for a in s.assets:
                    for column, tag in TAGS.items():
                        if tag in a.tags:
                            f.write(json.dumps({"t": s.ts_ms, "asset": back.get(a.id, a.id),
                                                "signal": column, "value": a.tags[tag]}) + "\n")
        mapping.write_text("kind: telemetry\ntimestamp: {column: t, format: epoch_ms}\n"
                           f"asset: {{column: asset, names: {json.dumps(names)}}}\n"
                           "tag_column: signal\nvalue_column: value\n"
                           f"tag_names: {json.dumps(TAGS)}\n")
    else:
        source = tmp_path / "export.parquet"
        table = pa.Table.from_pylist([{**r, "time": dt.datetime.strptime(
            str(r["time"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=TZ)} | {
            c: (None if r[c] == "" else float(r[c])) for c in TAGS}  # type: ignore[arg-type]
            for r in rows])
        pq.write_table(table, source)
        mapping.write_text("kind: telemetry\ntimestamp: {column: time}\nasset: {column: asset}\n"
                           f"columns: {json.dumps(TAGS)}\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.require_kafka(),
           "BESSMON_TOPIC_TELEMETRY": settings.topic_telemetry,
           "BESSMON_RUN_DIR": str(tmp_path / "run")}
    result = run(["backfill", "--source", str(source), "--mapping", str(mapping), "--fleet",
                  str(fleet_file)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sent {len(samples)} records from {source}"
    assert "sending: 100%" in result.stderr  # the progress bar
    got = [TelemetrySample.model_validate_json(m.value() or b"")
           for m in read_topic(settings.require_kafka(), settings.topic_telemetry,
                               count=len(samples), timeout_s=30)]
    got_key = sorted((g.device_id, g.ts_ms, {a.id: dict(a.tags) for a in g.assets})
                     for g in got)
    assert got_key == sorted(expected(samples))


def test_a_status_export_goes_to_bess_status_and_the_history(tmp_path: Path, fleet_file: Path,
                                                              settings: Settings) -> None:
    source = tmp_path / "status.csv"
    source.write_text("unit,from,to,st,frac,why\n"
                      "nordvik-u01,2026-09-01T00:00:00+02:00,2026-09-02T00:00:00+02:00,"
                      "available,,\n"
                      "nordvik-u01,2026-09-02T00:00:00+02:00,2026-09-02T06:00:00+02:00,"
                      "derated,0.5,fault\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("kind: status\ntimestamp: {column: from}\nasset: {column: unit}\n"
                       "status: {state: st, end: to, derate_fraction: frac, cause: why}\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.require_kafka(),
           "BESSMON_TOPIC_STATUS": settings.topic_status, "BESSMON_RUN_DIR": str(tmp_path / "r")}
    result = run(["backfill", "--source", str(source), "--mapping", str(mapping), "--fleet",
                  str(fleet_file)], env)
    assert result.returncode == 0, result.stderr
    changes = [StatusChange.model_validate_json(m.value() or b"") for m in read_topic(
        settings.require_kafka(), settings.topic_status, count=2, timeout_s=30)]
    assert [(c.state, c.derate_fraction, c.cause) for c in changes] == [
        ("available", None, None), ("derated", 0.5, "fault")]
    with SqliteHistoryStore(tmp_path / "r" / "history.db") as store:
        rows = store.status_intervals(["nordvik-u01"], 0, 2**50)
    assert [(r.state, (r.end_ms or 0) - r.start_ms) for r in rows] == [
        ("available", 86_400_000), ("derated", 6 * 3_600_000)]


@pytest.mark.parametrize(("row", "message"), [
    ("2026-09-01 00:00:00,ghost,50,0,0", "{src}:3: asset: 'ghost' is no unit, inverter or "
                                         "block of the fleet"),
    ("yesterday,nordvik-u01,50,0,0", "{src}:3: time: 'yesterday' does not match format "
                                     "'%Y-%m-%d %H:%M:%S'"),
    ("2026-09-01 00:00:00,nordvik-u01,full,0,0", "{src}:3: SOC: 'full' is not a number"),
])
def test_a_bad_row_refuses_the_file_before_anything_is_sent(
        row: str, message: str, tmp_path: Path, fleet_file: Path, settings: Settings) -> None:
    source = tmp_path / "export.csv"
    source.write_text("time,asset,SOC,P_kW,State\n2026-09-01 00:00:00,nordvik-u02,50,0,0\n"
                      + row + "\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("kind: telemetry\ntimestamp: {column: time, format: '%Y-%m-%d "
                       "%H:%M:%S', timezone: Europe/Stockholm}\nasset: {column: asset}\n"
                       f"columns: {json.dumps(TAGS)}\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.require_kafka(),
           "BESSMON_TOPIC_TELEMETRY": settings.topic_telemetry,
           "BESSMON_RUN_DIR": str(tmp_path / "run")}
    result = run(["backfill", "--source", str(source), "--mapping", str(mapping), "--fleet",
                  str(fleet_file)], env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "bessmon: " + message.format(src=source)
    assert read_topic(settings.require_kafka(), settings.topic_telemetry, to_end=True,
                      timeout_s=5) == []


def test_an_invalid_mapping_is_refused(tmp_path: Path, fleet_file: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("a\n1\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("kind: telemetry\ntimestamp: {column: t}\nasset: {column: a}\n")
    result = run(["backfill", "--source", str(source), "--mapping", str(mapping), "--fleet",
                  str(fleet_file)], {**os.environ, "BESSMON_RUN_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"bessmon: {mapping}:1: telemetry needs either "
                                     "`columns` (wide) or `tag_column` and `value_column` "
                                     "(long)")
