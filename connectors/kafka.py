"""Kafka client helpers: topic creation, a producer that checks every delivery report."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

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

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise DeliveryFailed(f"{remaining} records still unacknowledged after {timeout_s}s")
        if self.failed:
            failed, self.failed = self.failed, []
            raise DeliveryFailed(f"{len(failed)} records failed, first: {failed[0]}")


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    count: int | None = None,
    timeout_s: float = 30.0,
    idle_s: float | None = None,
) -> list[Message]:
    """Read a topic from the beginning of every partition (no consumer group): until `count`
    records arrived, `idle_s` passed without a new one, or `timeout_s` in all."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bessmon-reader",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline and (count is None or len(out) < count):
            if idle_s is not None and time.monotonic() - last > idle_s:
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            out.append(msg)
            last = time.monotonic()
        return out
    finally:
        consumer.close()
