"""Recovery and scale-out of `bessmon flows` over the real broker, Redis and history: a flow
killed with SIGKILL mid-stream and restarted from its snapshots gives an uninterrupted run's
final outputs, with nothing twice in Redis or the history (Kafka topics are at-least-once: a
replayed epoch may repeat messages there); two worker processes give one process's outputs."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from connectors.history.sqlite import SqliteHistoryStore
from connectors.kafka import CheckedProducer, ensure_topics, read_topic
from connectors.settings import REPO_ROOT
from contracts.fleet import Fleet
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.record import PlannedFault, record
from tests.flows.harness import telemetry_rows

TZ = ZoneInfo("Europe/Stockholm")
# Records that stopped the whole stack before they were refused at the boundary: an integer
# too large for the history's columns, a timestamp past any calendar, NaN, a key of another.
BIG = "1" + "0" * 30
POISON = (lambda t: re.sub(r'"status_code":\d+', f'"status_code":{BIG}', t, count=1),
          lambda t: re.sub(r'"ts_ms":\d+', f'"ts_ms":{BIG}', t),
          lambda t: t.replace('"soc_pct":', '"soc_pct":NaN,"x":', 1),
          lambda t: t.replace('"device_id":"', '"device_id":"ghost-', 1))
OUTPUTS = ("status", "availability", "dlq", "breaches", "alerts")


def flow_env(base: dict[str, str], tmp: Path, run: str, redis_url: str, db: int,
             topic_in: str) -> dict[str, str]:
    env = {**base, "REDIS_URL": f"{redis_url.rsplit('/', 1)[0]}/{db}",
           "BESSMON_RUN_DIR": str(tmp / run), "BESSMON_TOPIC_TELEMETRY": topic_in,
           "BESSMON_TOPIC_TICKETS": f"{topic_in}.tickets", "BESSMON_TOPIC_PARTITIONS": "1"}
    for name in OUTPUTS:
        env[f"BESSMON_TOPIC_{name.upper()}"] = f"{run}.{name}"
    return env


def start_flow(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "infra.cli", "flows", "--to-end", *extra],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def outputs(kafka: str, run: str) -> dict[str, list[bytes]]:
    return {name: [m.value() or b"" for m in read_topic(kafka, f"{run}.{name}", to_end=True,
                                                       timeout_s=60)] for name in OUTPUTS}


def redis_state(url: str, db: int) -> dict[str, Any]:
    client = redis.Redis.from_url(f"{url.rsplit('/', 1)[0]}/{db}")
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter("bessmon:*")):
        if key.startswith((b"bessmon:seq:", b"bessmon:log:", b"bessmon:hot-state:")):
            continue  # the live channels (a feed, at least once) and the sinks' markers
        kind = client.type(key)
        out[key.decode()] = (client.get(key) if kind == b"string"
                             else dict(sorted(client.hgetall(key).items())))
    client.close()
    return out


def history(path: Path) -> dict[str, list[str]]:
    """Every row of every table (the store's primary keys already refuse duplicates)."""
    SqliteHistoryStore(path).close()  # the schema exists even if nothing was written
    with sqlite3.connect(path) as conn:
        tables = {table: sorted(map(repr, conn.execute(f"SELECT * FROM {table}")))
                  for table in ("status_intervals", "availability", "breaches", "alerts",
                                "episodes")}
        tables["telemetry"] = sorted(map(repr, telemetry_rows(conn)))
        return tables


@dataclass(frozen=True)
class Reference:
    """The recorded input on its topic and an uninterrupted one-process run over it ("a")."""

    tmp: Path
    kafka: str
    redis_url: str
    base_env: dict[str, str]
    topic_in: str
    a: dict[str, list[bytes]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str,
              redis_url: str) -> Reference:
    tmp_path = tmp_path_factory.mktemp("flows-runs")
    data = generate_fleet(2, units_per_site=3)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(fleet_yaml(data))
    start = int(dt.datetime(2026, 10, 12, 8, tzinfo=TZ).timestamp() * 1000)
    samples = list(record(Fleet.model_validate(data), start, start + 40 * 60_000, 1_000,
                          seed=5, faults=[PlannedFault("nordvik-u02", start + 600_000,
                                                       start + 900_000),
                                          PlannedFault("elbe-u01-i2", start + 1_200_000,
                                                       start + 1_500_000)]))
    topic_in = f"recovery-{os.getpid()}.telemetry"
    ensure_topics(kafka_bootstrap, [topic_in, f"{topic_in}.tickets"], partitions=1)
    producer = CheckedProducer(kafka_bootstrap)
    for i, sample in enumerate(samples):
        text = sample.model_dump_json()
        if sample.device_id == "elbe-u02" and 300 <= (sample.ts_ms - start) // 1000 < 420:
            text = text.replace('"cell_temp_max_c":', '"cell_temp_max_c":47.0,"x":', 1)
        if i % 5000 == 2500:
            text = "{broken"  # a few dead letters too
        producer.produce(topic_in, sample.device_id, text.encode())
        if i % 1000 == 500:  # and poison that once crashed the flow, read again on a resume
            producer.produce(topic_in, sample.device_id, POISON[(i // 1000) % len(POISON)](
                text).encode())
    producer.flush()
    del producer

    base = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "BESSMON_FLEET_FILE": str(fleet_file)}
    env_a = flow_env(base, tmp_path, "a", redis_url, 1, topic_in)
    redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/1").flushdb()
    uninterrupted = start_flow(env_a)
    assert uninterrupted.wait(240) == 0, uninterrupted.stderr.read() if \
        uninterrupted.stderr else ""
    a = outputs(kafka_bootstrap, "a")
    assert any(json.loads(m)["state"] == "unavailable" for m in a["status"])
    assert any(json.loads(m)["rule_id"] == "cell-temp-high" for m in a["breaches"])
    assert {json.loads(m)["reason"] for m in a["dlq"]} >= {
        "malformed_json", "impossible_value", "schema", "key_mismatch"}
    assert any(json.loads(m).get("kind") == "period" for m in a["availability"])
    return Reference(tmp_path, kafka_bootstrap, redis_url, base, topic_in, a)


@pytest.mark.timeout(300)
def test_a_killed_flow_resumes_to_the_same_final_outputs(reference: Reference) -> None:
    r = reference
    env_b = flow_env(r.base_env, r.tmp, "b", r.redis_url, 2, r.topic_in)
    redis.Redis.from_url(f"{r.redis_url.rsplit('/', 1)[0]}/2").flushdb()
    recovery = r.tmp / "recovery"
    killed = start_flow(env_b, "--recovery-dir", str(recovery), "--epoch-interval", "0.5")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once it is well under way
        done = read_topic(r.kafka, "b.status", to_end=True, timeout_s=5)
        if len(done) >= 30:
            break
        time.sleep(0.3)
    assert killed.poll() is None, "the flow finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(30) == -signal.SIGKILL
    partial = len(read_topic(r.kafka, "b.status", to_end=True, timeout_s=10))
    resumed = start_flow(env_b, "--recovery-dir", str(recovery), "--epoch-interval", "0.5")
    assert resumed.wait(240) == 0, resumed.stderr.read() if resumed.stderr else ""

    a, b = r.a, outputs(r.kafka, "b")
    assert 30 <= partial < len(b["status"]) or partial == len(a["status"])
    for name in OUTPUTS:
        assert set(b[name]) == set(a[name]), name  # duplicates allowed, nothing missing/extra
    assert redis_state(r.redis_url, 2) == redis_state(r.redis_url, 1)
    history_a, history_b = history(r.tmp / "a" / "history.db"), \
        history(r.tmp / "b" / "history.db")
    assert history_b == history_a
    assert history_a["status_intervals"] and history_a["breaches"] and history_a["telemetry"]


@pytest.mark.timeout(300)
def test_two_worker_processes_give_the_outputs_of_one(reference: Reference) -> None:
    """`bessmon flows --processes 2`: the sites are spread over two processes of one cluster
    (keying bugs show only there, STYLE.md); every output equals the one-process run's —
    each topic message for message, Redis key for key, the history row for row."""
    r = reference
    env_c = flow_env(r.base_env, r.tmp, "c", r.redis_url, 3, r.topic_in)
    redis.Redis.from_url(f"{r.redis_url.rsplit('/', 1)[0]}/3").flushdb()
    two = start_flow(env_c, "--processes", "2")
    assert two.wait(240) == 0, two.stderr.read() if two.stderr else ""
    c = outputs(r.kafka, "c")
    for name in OUTPUTS:
        assert sorted(c[name]) == sorted(r.a[name]), name
    assert redis_state(r.redis_url, 3) == redis_state(r.redis_url, 1)
    assert history(r.tmp / "c" / "history.db") == history(r.tmp / "a" / "history.db")
