"""The sinks of the flows facing what they cannot write (flows/sink_errors.py), on the real
history store, Redis and broker: an unwritable item goes to the dead-letter topic with the
reason `unwritable: <sink>` and the rest of the batch is written; an outage is retried until
the store is back, with a `store_outage` alert raised at the first failure and cleared at
the first success — nothing dropped."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import redis
from bytewax.connectors.kafka import KafkaSinkMessage

from connectors.history.rows import TelemetryRow
from connectors.history.sqlite import SqliteHistoryStore
from connectors.kafka import ensure_topics, read_topic
from connectors.redis_store import alerts_key, site_key
from connectors.settings import Settings
from contracts.events import Alert, DeadLetter
from flows.history_sink import HistorySink
from flows.history_sink import _Partition as _HistoryPartition
from flows.kafka_sink import KafkaOutSink
from flows.redis_sink import RedisSink
from flows.sink_errors import KafkaReporter, ListReporter, SinkGuard, describe_json
from infra.services import start_redis
from tests.flows.timelines import T0


def row(asset: str, minute: int, last: float | int) -> TelemetryRow:
    return TelemetryRow(asset, "s1", "soc_pct", T0 + minute * 60_000, 1, 1.0, 2.0, 1.5, last)


def written(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [a for (a,) in conn.execute("SELECT asset_id FROM telemetry ORDER BY asset_id")]


def test_an_unwritable_row_is_dead_lettered_and_the_rest_written(tmp_path: Path) -> None:
    reporter = ListReporter()
    settings = Settings(run_dir=tmp_path)
    sink = HistorySink(settings, reporter).build("history", 0, 1)
    # 10**30 overflows SQLite's 64-bit integers: the crash of the poison-record report.
    sink.write_batch([row("a", 0, 1.0), row("b", 0, 10**30), row("c", 0, 3.0)])
    sink.close()
    assert written(tmp_path / "history.db") == ["a", "c"]
    [letter] = reporter.letters
    assert letter.reason == "unwritable: history" and "OverflowError" in letter.detail
    assert '"b"' in letter.payload or "'b'" in letter.payload
    [alert] = reporter.alerts
    assert (alert.kind, alert.state, alert.severity) == ("unwritable", "raised", "major")


def test_the_unwritable_alert_clears_after_a_quiet_while() -> None:
    reporter = ListReporter()
    now = [1_790_000_000.0]
    guard = SinkGuard("test", reporter, describe_json, clock=lambda: now[0])

    def write(items: object) -> None:
        if any(i == "bad" for i in items):  # type: ignore[attr-defined]
            raise OverflowError("too large")

    guard.write(["ok", "bad"], write)
    assert [a.state for a in reporter.alerts] == ["raised"]
    now[0] += 599
    guard.write(["ok"], write)
    assert [a.state for a in reporter.alerts] == ["raised"]
    now[0] += 2
    guard.write(["ok"], write)
    assert [a.state for a in reporter.alerts] == ["raised", "cleared"]
    assert reporter.alerts[0].alert_id == reporter.alerts[1].alert_id


def test_a_locked_history_is_an_outage_retried_until_it_is_free(tmp_path: Path) -> None:
    """A second connection holds the database's write lock: the sink waits and retries (the
    worker waits), raises `store_outage`, writes everything once the lock goes, clears."""
    path = tmp_path / "history.db"
    reporter = ListReporter()
    sink = _HistoryPartition(SqliteHistoryStore(path, busy_timeout_ms=200),
                             SinkGuard("history", reporter, describe_json))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    done = threading.Event()

    def write() -> None:
        sink.write_batch([row("a", 0, 1.0), row("b", 0, 2.0)])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 60
    while not reporter.alerts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(a.kind, a.state) for a in reporter.alerts] == [("store_outage", "raised")]
    assert not done.is_set()
    blocker.execute("ROLLBACK")
    blocker.close()
    assert done.wait(60)
    writer.join()
    sink.close()
    assert [(a.kind, a.state) for a in reporter.alerts] == [("store_outage", "raised"),
                                                             ("store_outage", "cleared")]
    assert not reporter.letters
    assert written(path) == ["a", "b"]


@pytest.mark.timeout(120)
def test_redis_down_and_back_loses_nothing(tmp_path: Path) -> None:
    """Redis stopped under the sink and started again on the same port: the batch waits and
    is written once it is back; the outage alert goes out and clears."""
    from contracts.events import SiteAvailability

    service = start_redis(tmp_path / "one")
    port = int(service.address.rsplit(":", 1)[1].split("/")[0])
    reporter = ListReporter()
    sink = RedisSink(service.address, reporter).build("redis", 0, 1)
    snapshot = SiteAvailability(site_id="s9", customer="c", region="r", ts_ms=T0,
                                windows={}, units_by_state={}, units=())
    service.stop()
    done = threading.Event()

    def write() -> None:
        sink.write_batch([snapshot])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 60
    while not reporter.alerts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(a.kind, a.state) for a in reporter.alerts] == [("store_outage", "raised")]
    again = start_redis(tmp_path / "two", port=port)
    try:
        assert done.wait(60)
        writer.join()
        client = redis.Redis.from_url(again.address)
        assert client.get(site_key("s9")) == snapshot.model_dump_json().encode()
        client.close()
        assert [a.state for a in reporter.alerts] == ["raised", "cleared"]
    finally:
        sink.close()
        again.stop()


@pytest.mark.timeout(120)
def test_a_message_the_broker_refuses_goes_to_the_dlq_and_the_rest_out(
        kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    """A message larger than the broker takes (a dead letter of a huge record, say) is
    reported through the real reporter: the dead letter (payload cut to size) on the DLQ
    topic, the alert on the alerts topic and in Redis's fleet-wide alerts."""
    name = f"sink-{tmp_path.name[-12:]}"
    ensure_topics(kafka_bootstrap, [f"{name}.out", f"{name}.dlq", f"{name}.alerts"])
    reporter = KafkaReporter(kafka_bootstrap, f"{name}.dlq", f"{name}.alerts", redis_url)
    sink = KafkaOutSink(kafka_bootstrap, reporter).build("kafka", 0, 1)
    messages = [KafkaSinkMessage(b"k1", b"small", topic=f"{name}.out"),
                KafkaSinkMessage(b"k2", b"x" * 3_000_000, topic=f"{name}.out"),
                KafkaSinkMessage(b"k3", b"small too", topic=f"{name}.out")]
    sink.write_batch(messages)
    sink.close()
    out = read_topic(kafka_bootstrap, f"{name}.out", count=2, timeout_s=30)
    assert [m.value() for m in out] == [b"small", b"small too"]
    [dlq] = read_topic(kafka_bootstrap, f"{name}.dlq", count=1, timeout_s=30)
    letter = DeadLetter.model_validate_json(dlq.value() or b"")
    assert letter.reason == "unwritable: kafka" and letter.truncated and letter.key == "k2"
    [raised] = read_topic(kafka_bootstrap, f"{name}.alerts", count=1, timeout_s=30)
    alert = Alert.model_validate_json(raised.value() or b"")
    assert alert.kind == "unwritable" and alert.scope_id == "sink:kafka"
    client = redis.Redis.from_url(redis_url)
    assert alert.alert_id.encode() in client.hkeys(alerts_key("fleet"))
    client.hdel(alerts_key("fleet"), alert.alert_id)
    client.close()
    reporter.close()
