"""`read_topic(…, to_end=True)`, which tests use to see what a synchronous publisher (the
webhooks, the ticket poller, backfill, the command API: each flushes before it answers) has
written: every record there when the call began, across partitions, and no waiting for more."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer

from connectors.kafka import ensure_topics, read_topic


def test_to_end_reads_every_partition_up_to_its_end(kafka_bootstrap: str) -> None:
    topic = f"read-to-end-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    assert read_topic(kafka_bootstrap, topic, to_end=True, timeout_s=30) == []

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    sent = {f"k{n}": f"v{n}" for n in range(40)}  # keys spread over the three partitions
    for key, value in sent.items():
        producer.produce(topic, value.encode(), key.encode())
    assert producer.flush(10) == 0
    got = read_topic(kafka_bootstrap, topic, to_end=True, timeout_s=30)
    assert {(m.key() or b"").decode(): (m.value() or b"").decode() for m in got} == sent
    assert len(got) == len(sent)
    assert len({m.partition() for m in got}) > 1

    producer.produce(topic, b"one more", b"k-late")
    assert producer.flush(10) == 0
    again = read_topic(kafka_bootstrap, topic, to_end=True, timeout_s=30)
    assert [m.value() for m in again].count(b"one more") == 1 and len(again) == 41
