"""The sinks of the flows facing what they cannot write (flows/sink_errors.py), on the real
history store, Redis and broker: an unwritable item goes to the dead-letter topic with the
reason `unwritable: <sink>` and the rest of the batch is written; an outage is retried until
the store is back, with a `store_outage` alert raised at the first failure and cleared at
the first success — nothing dropped."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from bytewax.connectors.kafka import KafkaSinkMessage

from connectors.history.rows import TelemetryRow
from connectors.history.sqlite import SqliteHistoryStore
from connectors.kafka import ensure_topics, read_topic
from connectors.redis_store import alarms_key, alerts_key, comms_state_key, site_key
from connectors.settings import Settings
from contracts.events import Alert, DeadLetter, DeviceHealth, SiteAvailability
from flows.history_sink import HistoryItem, HistorySink
from flows.history_sink import _Partition as _HistoryPartition
from flows.kafka_sink import KafkaOutSink
from flows.redis_sink import RedisSink
from flows.sink_errors import KafkaReporter, ListReporter, SinkGuard, describe_json
from infra.services import Service, start_redis
from tests.flows.harness import telemetry_rows
from tests.flows.timelines import T0


def empty_snapshot() -> SiteAvailability:
    """Site s9's snapshot with nothing in it: a batch that tells a Redis sink it owns s9."""
    return SiteAvailability(site_id="s9", customer="c", region="r", ts_ms=T0, windows={},
                            units_by_state={}, units=())


def restarted(service: Service, log_dir: Path) -> Service:
    """Redis stopped and started again, empty, on the same port."""
    port = int(service.address.rsplit(":", 1)[1].split("/")[0])
    service.stop()
    return start_redis(log_dir, port=port)


def row(asset: str, minute: int, last: float, count: int = 1) -> TelemetryRow:
    start = T0 - T0 % 60_000 + minute * 60_000  # per-minute telemetry starts on a minute
    return TelemetryRow(asset, "s1", "soc_pct", start, count, 1.0, 2.0, 1.5,
                        last)


def written(path: Path) -> list[str]:
    """The asset of each minute of telemetry in the history, sorted."""
    with sqlite3.connect(path) as conn:
        return sorted(row[0] for row in telemetry_rows(conn))


def test_an_unwritable_row_is_dead_lettered_and_the_rest_written(tmp_path: Path) -> None:
    reporter = ListReporter()
    settings = Settings(run_dir=tmp_path)
    sink = HistorySink(settings, reporter).build("history", 0, 1)
    # 10**30 samples in a minute overflow the store's counts (the crash of the
    # poison-record report was such a number overflowing SQLite's 64-bit integers).
    sink.write_batch([row("a", 0, 1.0), row("b", 0, 2.0, count=10**30), row("c", 0, 3.0)])
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
    sink = _HistoryPartition(lambda: SqliteHistoryStore(path, busy_timeout_ms=200),
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


@contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """A filesystem of its own (tmpfs) at `where`, to fill up or make read-only."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:  # not root, or in a container that may not mount
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.mark.parametrize("fault", ["full", "read-only"])
@pytest.mark.timeout(120)
def test_a_full_or_read_only_disk_is_an_outage_and_nothing_is_lost(tmp_path: Path,
                                                                     fault: str) -> None:
    """The history's disk fills up, or turns read-only, under a running sink: the batch waits
    and is retried, `store_outage` (critical) is raised — and no row is taken as written that
    was not: once the disk is writable again every row is in the database."""
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "history.db"
        reporter = ListReporter()

        def opened() -> _HistoryPartition:
            return _HistoryPartition(lambda: SqliteHistoryStore(path),
                                     SinkGuard("history", reporter, describe_json))
        sink = opened()
        sink.write_batch([row("a", 0, 1.0)])
        filler = disk / "filler"
        if fault == "full":
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):  # ENOSPC: full
                while os.write(fd, b"\0" * 4096):
                    pass
            os.close(fd)
        else:  # as after a disk error (a file open for writing keeps Linux from it: reopen)
            sink.close()
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            sink = opened()
        batch: list[HistoryItem] = [row(f"b{i:03}", 1, float(i)) for i in range(200)]
        done = threading.Event()

        def write() -> None:
            sink.write_batch(batch)
            done.set()
        writer = threading.Thread(target=write)
        writer.start()
        deadline = time.monotonic() + 60
        while not reporter.alerts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(a.kind, a.state, a.severity) for a in reporter.alerts] == [
            ("store_outage", "raised", "critical")]
        time.sleep(1.5)  # retried meanwhile, still failing
        assert not done.is_set()
        if fault == "full":
            filler.unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert done.wait(60)
        writer.join()
        sink.close()
        assert [(a.kind, a.state) for a in reporter.alerts] == [("store_outage", "raised"),
                                                                 ("store_outage", "cleared")]
        assert not reporter.letters
        assert written(path) == ["a", *(f"b{i:03}" for i in range(200))]


@pytest.mark.timeout(120)
def test_redis_down_and_back_loses_nothing(tmp_path: Path) -> None:
    """Redis stopped under the sink and started again on the same port: the batch waits and
    is written once it is back; the outage alert goes out and clears."""
    service = start_redis(tmp_path / "one")
    port = int(service.address.rsplit(":", 1)[1].split("/")[0])
    reporter = ListReporter()
    sink = RedisSink(service.address, reporter).build("redis", 0, 1)
    snapshot = empty_snapshot()
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
def test_a_redis_restarted_empty_gets_the_hot_state_back(tmp_path: Path) -> None:
    """Alarms, alerts (written only when they change) are in Redis again at the next batch
    after it restarted empty; one cleared meanwhile is not; nothing else comes back."""
    from tests.api.hot_state import alert, breach

    service = start_redis(tmp_path / "one")
    sink = RedisSink(service.address, ListReporter()).build("redis", 0, 1)
    kept, gone = breach("s9", "s9-u01"), breach("s9", "s9-u02")
    warning = alert("s9", "s9-u03")
    sink.write_batch([kept, gone, warning])
    sink.write_batch([gone.model_copy(update={"state": "cleared"})])
    again = restarted(service, tmp_path / "two")
    try:
        client = redis.Redis.from_url(again.address)
        assert client.hgetall(alarms_key("s9")) == {}
        snapshot = empty_snapshot()
        sink.write_batch([snapshot])
        assert client.hgetall(alarms_key("s9")) == {
            kept.breach_id.encode(): kept.model_dump_json().encode()}
        assert client.hgetall(alerts_key("s9")) == {
            warning.alert_id.encode(): warning.model_dump_json().encode()}
        assert client.get(site_key("s9")) == snapshot.model_dump_json().encode()
        # Once: the next batch writes only itself.
        client.hdel(alarms_key("s9"), kept.breach_id)
        sink.write_batch([snapshot])
        assert client.hgetall(alarms_key("s9")) == {}
        client.close()
    finally:
        sink.close()
        again.stop()


@pytest.mark.timeout(120)
def test_flows_restarted_then_redis_restarted_the_hot_state_still_comes_back(
        tmp_path: Path) -> None:
    """A flows process started again takes over what Redis holds of its sites' hashes (the
    alarms it raised before, a device's comms state: written only when they change); a
    control-loop alert in the same hash is the loop's own."""
    from tests.api.hot_state import alert, breach

    service = start_redis(tmp_path / "one")
    before = RedisSink(service.address, ListReporter()).build("redis", 0, 1)
    kept = breach("s9", "s9-u01")
    device = DeviceHealth(device_id="s9-u01", connector="modbus", state="offline",
                          previous="online", ts_ms=1_000, site_id="s9", gateway="gw:502")
    before.write_batch([kept, device])
    before.close()  # the flows die; Redis keeps the alarm
    control = alert("s9", "s9-u02").model_copy(update={"kind": "control_action"})
    client = redis.Redis.from_url(service.address)
    client.hset(alerts_key("s9"), control.alert_id, control.model_dump_json())
    client.close()
    sink = RedisSink(service.address, ListReporter()).build("redis", 0, 1)
    snapshot = empty_snapshot()
    sink.write_batch([snapshot])  # this worker computes s9
    again = restarted(service, tmp_path / "two")
    try:
        sink.write_batch([snapshot])
        client = redis.Redis.from_url(again.address)
        assert client.hgetall(alarms_key("s9")) == {
            kept.breach_id.encode(): kept.model_dump_json().encode()}
        assert client.hgetall(alerts_key("s9")) == {}  # the control loop's, not the flows'
        assert client.hgetall(comms_state_key("s9")) == {
            b"s9-u01": device.model_dump_json().encode()}
        client.close()
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
