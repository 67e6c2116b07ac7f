"""Run the real telemetry flow with the real sinks on given input records and collect every
output: the output topics, the hot state in Redis and the history tables in SQLite.

The input records go onto a Kafka topic of the run's own (and the ticket records onto its
ticket topic), the flow reads both to their end (`tail=False`, `finish_at_eof=True`, no
receiving clock: a replay-like run that ends), and what it wrote is read back:

- `topics`: every message of each output topic (`Topics` of flows/telemetry_flow.py), as
  JSON, in the order of the topic;
- `redis`: every `bessmon:*` key of the run's Redis database — strings as bytes, hashes as
  sorted dicts of bytes — less the live channels (`bessmon:seq:*`, `bessmon:log:*`: a feed,
  published at least once, connectors/live_log.py);
- `history`: every row of every history table, sorted.

Two ways to run it: `run_flow` builds the flow in this process and runs it with one worker
(`bytewax.testing.run_main`); `run_cli_flow` runs `bessmon flows --to-end` as a process, with
as many worker processes as asked (`--processes`), configured through the environment as
production is (tests/flows/test_recovery.py). Every run has topics of its own (names from a
random prefix) and flushes the Redis database it is given first."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from bytewax.testing import run_main
from confluent_kafka import Producer

from connectors.history.minute_blobs import minute_rows
from connectors.history.sqlite import SqliteHistoryStore
from connectors.kafka import ensure_topics, read_topic
from connectors.settings import REPO_ROOT, Settings
from contracts.contract import Contract
from contracts.fleet import Fleet
from contracts.monitoring import MonitoringConfig
from flows.site_state import SiteSettings
from flows.telemetry_flow import build_flow

OUTPUTS = ("status", "availability", "dlq", "breaches", "alerts")  # every field of Topics
HISTORY_TABLES = ("status_intervals", "availability", "breaches", "alerts", "episodes")
Record = tuple[bytes | None, bytes]  # a Kafka record's key and value


@dataclass
class Run:
    topics: dict[str, list[dict[str, Any]]]
    redis: dict[str, Any]
    history: dict[str, list[tuple[Any, ...]]]
    offsets: list[int]  # offset of each input record, in order
    input_topics: tuple[str, str] = ("", "")  # the run's telemetry and ticket topics


@dataclass(frozen=True)
class Topics:
    """The topic names of one run: `<prefix>.raw`, `<prefix>.tickets`, `<prefix>.<output>`."""

    prefix: str

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}.raw"

    @property
    def tickets(self) -> str:
        return f"{self.prefix}.tickets"

    def output(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def all(self) -> list[str]:
        return [self.telemetry, self.tickets, *(self.output(o) for o in OUTPUTS)]


def redis_db_url(redis_url: str, db: int) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"


def produce(kafka: str, topic: str, records: Sequence[Record]) -> None:
    """Every record onto the topic, in order; raw bytes keys (a plain producer), every
    delivery checked."""
    producer = Producer({"bootstrap.servers": kafka, "acks": "all", "linger.ms": 20})
    failed: list[str] = []
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=lambda e,
                                 m: failed.append(str(e)) if e is not None else None)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0 and not failed, failed[:3]


def prepare(kafka: str, redis_url: str, db: int, prefix: str, records: Sequence[Record],
            tickets: Sequence[Record]) -> Topics:
    """The run's topics with its input on them, and its Redis database empty."""
    topics = Topics(f"{prefix}-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka, topics.all(), partitions=1)
    produce(kafka, topics.telemetry, records)
    if tickets:
        produce(kafka, topics.tickets, tickets)
    client = redis.Redis.from_url(redis_db_url(redis_url, db))
    client.flushdb()
    client.close()
    return topics


def telemetry_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The history's per-minute telemetry, a row per (asset, tag, minute) in key order —
    (asset_id, tag, start_ms, site_id, n, min, max, mean, last), whatever the file's layout
    (connectors/history/minute_blobs.py)."""
    return sorted(row for hour in conn.execute("SELECT * FROM telemetry_hours")
                  for row in minute_rows(*hour))


def collect(kafka: str, redis_url: str, db: int, history_db: Path, topics: Topics,
            n_records: int) -> Run:
    """What a run wrote: its output topics, its Redis database and its history store."""
    out = {o: [json.loads(m.value() or b"") for m in
               read_topic(kafka, topics.output(o), to_end=True, timeout_s=120)]
           for o in OUTPUTS}
    client = redis.Redis.from_url(redis_db_url(redis_url, db))
    state: dict[str, Any] = {}
    for key in sorted(client.scan_iter("bessmon:*")):
        if key.startswith((b"bessmon:seq:", b"bessmon:log:", b"bessmon:hot-state:")):
            continue  # the live channels (a feed) and the sinks' markers
        kind = client.type(key)
        state[key.decode()] = (client.get(key) if kind == b"string"
                               else dict(sorted(client.hgetall(key).items())))
    client.close()
    SqliteHistoryStore(history_db).close()  # the schema exists even if nothing was written
    with sqlite3.connect(history_db) as conn:
        history = {t: sorted(conn.execute(f"SELECT * FROM {t}")) for t in HISTORY_TABLES}
        history["telemetry"] = telemetry_rows(conn)
    return Run(out, state, history, list(range(n_records)),
               (topics.telemetry, topics.tickets))


def run_flow(kafka: str, redis_url: str, db: int, tmp: Path, records: Sequence[Record], *,
             fleet: Fleet, config: MonitoringConfig,
             contracts: Mapping[str, Contract] | None = None,
             site_settings: SiteSettings | None = None,
             tickets: Sequence[Record] = (), prefix: str = "flow") -> Run:
    """The flow in this process, one worker, on `records` (and `tickets`, the ticket topic's
    records): `contracts` by site (none: technical availability everywhere),
    `site_settings` (None: the monitoring config's, `SiteSettings.of`)."""
    topics = prepare(kafka, redis_url, db, prefix, records, tickets)
    s = Settings.model_validate({
        "KAFKA_BOOTSTRAP_SERVERS": kafka, "REDIS_URL": redis_db_url(redis_url, db),
        "run_dir": tmp / topics.prefix, "topic_telemetry": topics.telemetry,
        "topic_tickets": topics.tickets,
        **{f"topic_{o}": topics.output(o) for o in OUTPUTS}})
    run_main(build_flow(s, fleet, config, contracts or {}, tail=False, now_ms=None,
                        site_settings=site_settings, finish_at_eof=True, snapshots=False))
    return collect(kafka, redis_url, db, s.run_dir / "history.db", topics, len(records))


def run_cli_flow(kafka: str, redis_url: str, db: int, tmp: Path, records: Sequence[Record], *,
                 fleet_file: Path, monitoring_file: Path | None = None,
                 contracts_dir: Path | None = None, tickets: Sequence[Record] = (),
                 processes: int = 2, prefix: str = "cli", timeout_s: float = 240) -> Run:
    """`bessmon flows --to-end --processes N` on `records` (and `tickets`), configured by the
    environment as production is: the fleet file, the monitoring file and the contracts
    directory (None: the example ones), `SiteSettings.of(config,
    account_from_contract_year=True)` as the command does."""
    topics = prepare(kafka, redis_url, db, prefix, records, tickets)
    run_dir = tmp / topics.prefix
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka,
           "REDIS_URL": redis_db_url(redis_url, db), "BESSMON_RUN_DIR": str(run_dir),
           "BESSMON_FLEET_FILE": str(fleet_file), "BESSMON_TOPIC_PARTITIONS": "1",
           "BESSMON_TOPIC_TELEMETRY": topics.telemetry, "BESSMON_TOPIC_TICKETS": topics.tickets,
           **{f"BESSMON_TOPIC_{o.upper()}": topics.output(o) for o in OUTPUTS}}
    env.pop("BESSMON_HISTORY_PATH", None)
    if monitoring_file is not None:
        env["BESSMON_MONITORING_FILE"] = str(monitoring_file)
    if contracts_dir is not None:
        env["BESSMON_CONTRACTS_DIR"] = str(contracts_dir)
    done = subprocess.run([sys.executable, "-m", "infra.cli", "flows", "--to-end",
                           "--processes", str(processes)], env=env, cwd=REPO_ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s,
                          check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return collect(kafka, redis_url, db, run_dir / "history.db", topics, len(records))
