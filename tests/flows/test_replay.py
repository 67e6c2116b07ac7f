"""`bessmon replay` pushes a month of recorded telemetry through the real broker and the
telemetry flow; the month it produces equals `bessmon contracts evaluate` on the status
intervals it derived."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from connectors.api_store import ApiStore, ExclusionStore
from connectors.history.rows import StatusIntervalRow
from connectors.history.sqlite import SqliteHistoryStore
from connectors.redis_store import site_key
from connectors.settings import EXAMPLE_CONTRACTS, EXAMPLE_MONITORING, REPO_ROOT
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from infra.replay import poll_step_ms, step_warnings
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.record import PlannedFault, device_of, record, write_jsonl

TZ = ZoneInfo("Europe/Stockholm")


def bessmon(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(300)
def test_replayed_month_equals_the_batch_evaluation_of_its_intervals(
        tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> None:
    start = int(dt.datetime(2026, 10, 1, tzinfo=TZ).timestamp() * 1000)
    end = int(dt.datetime(2026, 11, 1, tzinfo=TZ).timestamp() * 1000)
    data = generate_fleet(1, units_per_site=4)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(fleet_yaml(data))
    day = 86_400_000
    faults = [PlannedFault("nordvik-u02", start + 3 * day, start + 3 * day + 7_200_000),
              PlannedFault("nordvik-u03-i1-b2", start + 10 * day, start + 11 * day),
              PlannedFault("nordvik-u04", start + 20 * day, start + 20 * day + 4 * 3_600_000,
                           code=4)]  # scheduled maintenance, 4 h of a 48 h allowance
    recording = tmp_path / "october.jsonl"
    write_jsonl(record(Fleet.model_validate(data), start, end, 1_200_000, seed=3,
                       faults=faults, fault_rate_per_day=0.3), recording)
    # Polls every 20 minutes (a month in half the suite's time of 10-minute polls): silence
    # only counts as communication loss after 30.
    monitoring = tmp_path / "monitoring.yaml"
    monitoring.write_text(EXAMPLE_MONITORING.read_text().replace("stale_after_s: 10",
                                                                 "stale_after_s: 1800"))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url,
           "BESSMON_RUN_DIR": str(tmp_path / "run")}
    # What a live stack sharing the history and Redis holds: the replay leaves it alone and
    # its status file has none of it.
    live = SqliteHistoryStore(tmp_path / "run" / "history.db")
    live.write_status([StatusIntervalRow("nordvik-u01", "nordvik", start + 86_400_000,
                                         start + 90_000_000, "unavailable", None, "fault")])
    live.close()
    client = redis.Redis.from_url(redis_url)
    client.set(site_key("nordvik"), b"live snapshot")
    # An approved exclusion (four eyes) of u03's first 6 hours of 15 October, and a proposed
    # one that must not count: the replay books the approved one, as the batch does.
    exclusions = ExclusionStore(ApiStore(tmp_path / "run" / "api.db"))
    w_start = int(dt.datetime(2026, 10, 15, tzinfo=TZ).timestamp() * 1_000_000)
    w_end = w_start + 6 * 3_600_000_000
    approved = exclusions.propose(contract_id="LTSA-NORDVIK", site_id="nordvik",
                                  scope_id="nordvik-u03", start_us=w_start, end_us=w_end,
                                  category="grid_outage", reason="feeder work",
                                  proposed_by="service", now_ms=start)
    assert exclusions.decide("LTSA-NORDVIK", approved.exclusion.id, expected="proposed",
                             new="approved", by="contracts", now_ms=start, comment=None)
    exclusions.propose(contract_id="LTSA-NORDVIK", site_id="nordvik", scope_id="nordvik",
                       start_us=w_start, end_us=w_end + 86_400_000_000, category="force_majeure",
                       reason="storm?", proposed_by="service", now_ms=start)
    exclusions.store.close()
    windows = tmp_path / "windows.csv"
    windows.write_text("scope_id,start,end,reason\nnordvik-u03,"
                       f"{dt.datetime.fromtimestamp(w_start / 1e6, TZ).isoformat()},"
                       f"{dt.datetime.fromtimestamp(w_end / 1e6, TZ).isoformat()},grid_outage\n")
    status = tmp_path / "status.csv"
    replayed = bessmon("replay", "--fleet", str(fleet_file), "--telemetry", str(recording),
                       "--monitoring", str(monitoring), "--status-out", str(status),
                       env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replaying 8,940 samples" in replayed.stderr  # 4 units × 745 h × 3 polls
    (site,) = json.loads(replayed.stdout)
    assert site["contract_id"] == "LTSA-NORDVIK"
    (month,) = [p for p in site["periods"] if p["period"] == "2026-10"]

    evaluated = bessmon("contracts", "evaluate", "--fleet", str(fleet_file), "--contract",
                        str(EXAMPLE_CONTRACTS / "nordvik.yaml"), "--status", str(status),
                        "--exclusions", str(windows), "--period", "2026-10", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    batch = json.loads(evaluated.stdout)["periods"][0]
    assert month == batch
    # Not trivially equal: the faults cost something, and maintenance was excluded.
    lost = {u["asset_id"]: u["lost_hours"] for u in month["units"]}
    # u03: a day of one of its blocks, less up to a poll at the fault's edges.
    assert lost["nordvik-u02"] >= 2.0 and lost["nordvik-u03"] >= 23 * 0.25 * 0.5
    excluded = {u["asset_id"]: u["excluded_hours"] for u in month["units"]}
    assert excluded["nordvik-u04"] >= 4.0
    assert excluded["nordvik-u03"] == pytest.approx(6.0)  # the approved window only
    assert month["availability_pct"] < 100.0
    assert client.get(site_key("nordvik")) == b"live snapshot"
    client.close()


def test_replay_refuses_a_missing_recording(tmp_path: Path) -> None:
    result = bessmon("replay", "--telemetry", str(tmp_path / "nope.jsonl"),
                     env={**os.environ, "BESSMON_RUN_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == f"bessmon: {tmp_path / 'nope.jsonl'}: cannot read: No such " \
                                     "file or directory"


def test_a_recording_polled_less_often_than_the_config_expects_is_warned_of(
        tmp_path: Path) -> None:
    """The usual poll step is each device's median gap; a line that is no sample is passed
    over (the flow refuses it with its reason). Warned: a step past stale_after_s, and past
    gap_factor (5) poll intervals of a device type."""
    recording = tmp_path / "r.jsonl"
    polls = [("u1", 0), ("u2", 0), ("u1", 60_000), ("u2", 60_000), ("u1", 120_000),
             ("u2", 200_000)]
    recording.write_text("\n".join([json.dumps({"device_id": d, "ts_ms": t, "assets": []})
                                    for d, t in polls] + ["not json", ""]))
    assert poll_step_ms(recording) == 60_000
    config = load_monitoring(EXAMPLE_MONITORING)  # 10 s stale, bess-unit-v1 polled each 1 s
    stale, gap = step_warnings(recording, config)
    assert "every 60 s but quality.stale_after_s is 10" in stale
    assert "device type bess-unit-v1 expects a poll every 1 s" in gap
    slow = config.model_copy(update={
        "quality": config.quality.model_copy(update={"stale_after_s": 60}),
        "device_types": {name: t.model_copy(update={"poll_interval_s": 12})
                         for name, t in config.device_types.items()}})
    assert step_warnings(recording, slow) == []
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps({"device_id": "u1", "ts_ms": 0, "assets": []}))
    assert poll_step_ms(single) is None and step_warnings(single, config) == []


@pytest.mark.parametrize(("line", "device"), [
    ('{"device_id": "nordvik-u01", "ts_ms": 0}', "nordvik-u01"),
    ("not json", ""), ("[1, 2]", ""), ('{"device_id": 7}', ""), ("{}", "")])
def test_each_line_is_keyed_by_its_device_or_sent_unkeyed(line: str, device: str) -> None:
    """A line that is no sample is sent all the same: the flow refuses it with its reason."""
    assert device_of(line) == device
