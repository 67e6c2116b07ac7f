"""Producing without loss: the broker stops answering for more than 10 s under load (its
process suspended with SIGSTOP — the embedded broker keeps data in memory only, so it is not
restarted), and every record arrives exactly once, in order; a spool left on disk by a
stopped producer is sent first by the next one."""

from __future__ import annotations

import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.kafka import DeliveryFailed, SpoolingProducer, ensure_topics, read_topic
from connectors.spool import Record, Spool, SpoolFull
from infra.services import Service, start_broker

SEQ = struct.Struct(">Q")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Service]:
    """A broker of this test's own: it will be suspended."""
    service = start_broker(tmp_path / "logs")
    yield service
    os.kill(service.process.pid, signal.SIGCONT)
    service.stop()


def sequence(messages: list) -> list[int]:  # type: ignore[type-arg]
    return [SEQ.unpack(m.value()[:8])[0] for m in messages]


@pytest.mark.timeout(180)
def test_a_broker_gone_for_12_seconds_under_load_loses_nothing(broker: Service,
                                                               tmp_path: Path) -> None:
    ensure_topics(broker.address, ["no-loss"], partitions=1)
    producer = SpoolingProducer(broker.address, tmp_path / "spool", max_in_memory=500)
    rate, seconds = 400, 22
    stop_at, resume_at = 4.0, 16.0
    started = time.monotonic()
    sent = 0
    stopped = resumed = False
    max_spooled = 0
    while (elapsed := time.monotonic() - started) < seconds:
        if not stopped and elapsed >= stop_at:
            os.kill(broker.process.pid, signal.SIGSTOP)
            stopped = True
        if stopped and not resumed and elapsed >= resume_at:
            os.kill(broker.process.pid, signal.SIGCONT)
            resumed = True
        while sent < elapsed * rate:
            producer.produce("no-loss", f"dev-{sent % 7}", SEQ.pack(sent) + b"x" * 200)
            sent += 1
        max_spooled = max(max_spooled, producer.spool.waiting_bytes)
        producer.pump()
        time.sleep(0.01)
    producer.flush(120)
    producer.close()
    assert max_spooled > 0 and producer.spooled > 1000  # the spool was really used
    assert producer.spool.empty
    got = sequence(read_topic(broker.address, "no-loss", count=sent, timeout_s=60))
    assert len(got) == sent  # every record …
    assert got == list(range(sent))  # … exactly once, in the order produced


@pytest.mark.timeout(120)
def test_a_producer_stopped_while_the_broker_is_away_leaves_everything_for_the_next(
        broker: Service, tmp_path: Path) -> None:
    ensure_topics(broker.address, ["restart"], partitions=1)
    spool_dir = tmp_path / "spool"
    os.kill(broker.process.pid, signal.SIGSTOP)
    first = SpoolingProducer(broker.address, spool_dir, max_in_memory=10)
    for i in range(300):
        first.produce("restart", "k", SEQ.pack(i))
    assert first.spooled >= 280
    first.close(timeout_s=1)  # what librdkafka held goes back in front of the spool …
    assert first.spooled == 300
    del first
    os.kill(broker.process.pid, signal.SIGCONT)
    second = SpoolingProducer(broker.address, spool_dir)
    for i in range(300, 310):
        second.produce("restart", "k", SEQ.pack(i))
    second.flush(60)
    got = sequence(read_topic(broker.address, "restart", idle_s=2, timeout_s=30))
    # … so the next producer sends it all first, in order, then its own records. Records
    # that were already on the suspended broker's socket may land twice (the flows drop
    # repeated samples), never more than librdkafka held.
    assert list(dict.fromkeys(got)) == list(range(310))
    assert len(got) - 310 <= 10


def test_a_spool_prepend_keeps_records_in_front_and_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", 1 << 20)
    for i in range(5, 10):
        spool.append(Record("t", b"k", SEQ.pack(i)))
    first = list(spool.peek(2))
    spool.commit(sum(size for _, size in first))  # 5, 6 handed on
    spool.prepend([Record("t", b"k", SEQ.pack(i)) for i in range(5)])
    spool.close()
    reopened = Spool(tmp_path / "s", 1 << 20)
    assert [SEQ.unpack(r.value)[0] for r, _ in reopened.peek(100)] == [0, 1, 2, 3, 4, 7, 8, 9]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_the_spool_is_bounded_and_keeps_order_across_segments(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    import connectors.spool as spool_module

    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 1000)
    spool = Spool(tmp_path / "s", max_bytes=5000)
    frames = [Record("t", b"k", SEQ.pack(i) + b"." * 50) for i in range(70)]
    with pytest.raises(SpoolFull):
        for frame in frames:
            spool.append(frame)
    taken = [r for r, _ in spool.peek(1000)]
    assert len(taken) > 50 and len(list((tmp_path / "s").glob("*.seg"))) > 3
    assert [SEQ.unpack(r.value[:8])[0] for r in taken] == list(range(len(taken)))
    first = list(spool.peek(10))
    spool.commit(sum(size for _, size in first))
    again = Spool(tmp_path / "s", max_bytes=5000)  # reopened: resumes after the commit
    assert SEQ.unpack(next(again.peek(1))[0].value[:8])[0] == 10


def test_flush_says_what_is_still_waiting(tmp_path: Path) -> None:
    producer = SpoolingProducer("127.0.0.1:9", tmp_path / "spool", max_in_memory=5)
    for i in range(20):
        producer.produce("nowhere", "k", SEQ.pack(i))
    with pytest.raises(DeliveryFailed, match=r"unacknowledged and .* still spooled"):
        producer.flush(1)
    producer.close(timeout_s=0)  # nothing lost: all 20 wait in the spool, in order
    assert [SEQ.unpack(r.value)[0] for r, _ in Spool(tmp_path / "spool", 1 << 20).peek(99)] \
        == list(range(20))
