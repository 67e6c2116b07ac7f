"""Kafka client helpers: topic creation, a producer that checks every delivery report."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connectors.spool import Record, Spool

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """At least one record was not acknowledged by the broker."""


def wait_for_broker(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until the broker accepts connections and answers a metadata request."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    while time.monotonic() < deadline:  # TCP first: keeps librdkafka from logging refusals
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=2)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"Kafka broker at {bootstrap} did not answer within {timeout_s}s: {last}")


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=1)
              for t in topics if t not in existing]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic %s", name)


class CheckedProducer:
    """Idempotent, acks=all producer that counts every failed delivery and reports it."""

    def __init__(self, bootstrap: str, **config: str | int | bool) -> None:
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            **config,
        })
        self.delivered = 0
        self.failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}[{msg.key()!r}]: {err.str()}")
        else:
            self.delivered += 1

    def produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def close(self) -> None:
        """Stop the client's threads (what was produced and not flushed is dropped)."""
        self._producer.close()

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise DeliveryFailed(f"{remaining} records still unacknowledged after {timeout_s}s")
        if self.failed:
            failed, self.failed = self.failed, []
            raise DeliveryFailed(f"{len(failed)} records failed, first: {failed[0]}")


class SpoolingProducer:
    """A producer that loses nothing while the broker is away.

    Idempotent, acks=all, no message timeout: librdkafka keeps retrying what it holds, in
    order, for as long as the broker is gone. What does not fit its bounded in-memory queue
    goes to a bounded spool on disk (connectors/spool.py), and once anything is spooled,
    everything after it is too, until the spool has been handed back in order — so records
    leave in the order they were produced, and a spool left by a stopped process is sent
    first by the next one. Every delivery report is checked."""

    def __init__(self, bootstrap: str, spool_dir: Path, *, max_spool_bytes: int = 1 << 30,
                 max_in_memory: int = 100_000, **config: str | int | bool) -> None:
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 0,  # never give up on a record: the spool is the bound
            "queue.buffering.max.messages": max_in_memory,
            # Many records per produce request: at 5 ms the embedded broker spent 69 % of a
            # core on fleet-30's polls, at 50 ms 12 % (bench.connectors), for ≤ 50 ms more.
            "linger.ms": 50,
            "compression.type": "lz4",
            **config,
        })
        self.spool = Spool(spool_dir, max_spool_bytes)
        self.refill_below = max(1, max_in_memory // 2)
        self.delivered = 0
        self.spooled = 0
        self.failed: list[str] = []
        self._taken_back: list[tuple[int, Record]] = []  # (order handed on, record)
        self._handed = 0

    def _on_delivery(self, seq: int, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        elif err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self._taken_back.append((seq, Record(msg.topic() or "", msg.key() or b"",
                                                 msg.value() or b"")))
        else:
            self.failed.append(f"{msg.topic()}[{msg.key()!r}]: {err.str()}")

    def produce(self, topic: str, key: str | bytes, value: bytes) -> None:
        """Hand a record on (or spool it); raises `SpoolFull` only when memory and the
        spool are both full."""
        raw_key = key.encode() if isinstance(key, str) else key
        if self.spool.empty:
            try:
                self._hand_on(topic, raw_key, value)
            except BufferError:
                self._to_spool(topic, raw_key, value)
        else:
            self._to_spool(topic, raw_key, value)
        self.pump()

    def _hand_on(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.produce(topic, key=key, value=value,
                               on_delivery=partial(self._on_delivery, self._handed))
        self._handed += 1

    def _to_spool(self, topic: str, key: bytes, value: bytes) -> None:
        self.spool.append(Record(topic, key, value))
        self.spooled += 1

    def pump(self) -> None:
        """Serve delivery reports, and move spooled records back (oldest first) while
        librdkafka's queue has room."""
        self._producer.poll(0)
        if self.spool.empty or len(self._producer) >= self.refill_below:
            return
        freed = 0
        for record, size in self.spool.peek(self.refill_below):
            try:
                self._hand_on(record.topic, record.key, record.value)
            except BufferError:
                break
            freed += size
        if freed:
            self.spool.commit(freed)

    @property
    def waiting(self) -> int:
        """Records not yet acknowledged that librdkafka holds (the spool aside)."""
        return len(self._producer)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Hand everything on, spool included, and wait for the acknowledgements."""
        deadline = time.monotonic() + timeout_s
        while not self.spool.empty and time.monotonic() < deadline:
            self.pump()
            self._producer.poll(0.05)
        remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining or not self.spool.empty:
            raise DeliveryFailed(f"{remaining} records unacknowledged and "
                                 f"{self.spool.waiting_bytes:,} bytes still spooled after "
                                 f"{timeout_s}s")
        if self.failed:
            failed, self.failed = self.failed, []
            raise DeliveryFailed(f"{len(failed)} records failed, first: {failed[0]}")

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop without losing anything: wait up to `timeout_s` for the acknowledgements, then
        take back from librdkafka what is still unacknowledged and put it in front of the
        spool, where the next producer on this directory starts. A record that was on the
        wire may then reach the broker twice (the flows drop repeated samples); none is
        lost."""
        deadline = time.monotonic() + timeout_s
        while not self.spool.empty and time.monotonic() < deadline:
            self.pump()
            self._producer.poll(0.05)
        if self._producer.flush(max(0.0, deadline - time.monotonic())):
            self._producer.purge(in_queue=True, in_flight=True, blocking=True)
            self._producer.poll(0)
            self._producer.flush(0)
            taken = [record for _, record in sorted(self._taken_back, key=lambda t: t[0])]
            self._taken_back = []
            self.spooled += len(taken)
            self.spool.prepend(taken)
            log.warning("broker unreachable at shutdown: %d unacknowledged records put back "
                        "in the spool %s", len(taken), self.spool.directory)
        self.spool.close()


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    count: int | None = None,
    timeout_s: float = 30.0,
    idle_s: float | None = None,
    to_end: bool = False,
) -> list[Message]:
    """Read a topic from the beginning of every partition (no consumer group): until `count`
    records arrived, `idle_s` passed without a new one, every partition has been read to its
    end once (`to_end`: all that producers which flushed before the call wrote, without
    waiting for more), or `timeout_s` in all."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bessmon-reader",
                         "enable.auto.commit": False, "enable.partition.eof": to_end})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        unread = set(partitions) if to_end else set()  # (`to_end`) not at their end yet
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline and (count is None or len(out) < count):
            if idle_s is not None and time.monotonic() - last > idle_s:
                break
            if to_end and not unread:
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    unread.discard(msg.partition() or 0)
                    continue
                raise KafkaException(error)
            out.append(msg)
            last = time.monotonic()
        return out
    finally:
        consumer.close()
