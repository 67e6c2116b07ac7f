"""The site-availability flow wired in Bytewax: with TestingSource/TestingSink on 1 and 2
workers (identical results), and against the real broker and Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.kafka import CheckedProducer, read_topic
from connectors.redis_store import site_channel, site_key
from connectors.settings import Settings
from contracts.events import DeadLetter, SiteAvailability, StatusChange
from flows.site_availability import build_flow
from infra.ports import free_port
from tests.flows.timelines import FLEET, T0, sample

SETTINGS = Settings(stale_after_s=5, publish_every_s=1)


def records() -> list[bytes]:
    out = []
    for t in range(6):
        out.append(sample("u1", t, code=3 if t == 2 else 0).model_dump_json().encode())
        out.append(sample("v1", t).model_dump_json().encode())
    out.insert(3, b"{not json")
    out.insert(5, b'{"v": 1, "device_id": "x", "ts_ms": 5, "assets": []}')
    out.insert(7, sample("u1", 0).model_dump_json().replace("u1", "ghost").encode())
    return out


def run(workers: int) -> tuple[list[Any], list[SiteAvailability]]:
    source = TestingSource([KafkaSourceMessage(b"dev", value, topic="raw", partition=0, offset=i)
                            for i, value in enumerate(records())])
    kafka_out: list[KafkaSinkMessage[bytes, bytes]] = []
    redis_out: list[SiteAvailability] = []
    flow = build_flow(SETTINGS, FLEET, source=source, kafka_sink=TestingSink(kafka_out),
                      redis_sink=TestingSink(redis_out), now_ms=lambda: T0)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [f"127.0.0.1:{free_port()}"], 0, worker_count_per_proc=workers)
    return kafka_out, redis_out


def by_topic(out: list[KafkaSinkMessage[bytes, bytes]], topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in out if m.topic == topic]


def test_flow_outputs_status_availability_and_dead_letters() -> None:
    kafka_out, redis_out = run(1)
    dlq = [DeadLetter.model_validate(d) for d in by_topic(kafka_out, SETTINGS.topic_dlq)]
    assert sorted(d.reason for d in dlq) == ["malformed_json", "schema", "unknown_asset"]
    assert next(d for d in dlq if d.reason == "malformed_json").payload == "{not json"
    assert next(d for d in dlq if d.reason == "schema").offset == 5
    status = [StatusChange.model_validate(d) for d in by_topic(kafka_out, SETTINGS.topic_status)]
    assert [(s.ts_ms - T0, s.state) for s in status if s.asset_id == "u1"] == [
        (0, "available"), (2000, "unavailable"), (3000, "available")]
    availability = by_topic(kafka_out, SETTINGS.topic_availability)
    assert [SiteAvailability.model_validate(a) for a in availability] == redis_out
    final = {s.site_id: s for s in redis_out}
    assert final["s1"].ts_ms == T0 + 5000
    # u1 lost [2 s, 3 s) of 5 s; u2 never reported, so it is not in the window at all.
    assert final["s1"].units[0].last_15m_pct == pytest.approx(80.0)
    assert final["s1"].units[1].state == "unknown"
    assert final["s2"].last_15m_pct == pytest.approx(100.0)


def test_one_and_two_workers_give_identical_results() -> None:
    def canonical(result: tuple[list[Any], list[SiteAvailability]]) -> list[str]:
        kafka_out, redis_out = result
        return sorted([f"{m.topic} {m.key!r} {m.value!r}" for m in kafka_out]
                      + [s.model_dump_json() for s in redis_out])

    assert canonical(run(1)) == canonical(run(2))


@pytest.mark.timeout(120)
def test_flow_against_the_real_broker_and_redis(settings: Settings, redis_url: str) -> None:
    settings = settings.model_copy(update={"stale_after_s": 5.0})
    producer = CheckedProducer(settings.require_kafka())
    for value in records():
        producer.produce(settings.topic_telemetry, "dev", value)
    producer.flush()

    client: redis.Redis = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(site_channel("s1"))
    # The production wiring, stopping at the end of the topic instead of tailing it.
    run_main(build_flow(settings, FLEET, tail=False))

    dlq = read_topic(settings.require_kafka(), settings.topic_dlq, count=3, timeout_s=30)
    assert sorted(json.loads(m.value())["reason"] for m in dlq) == [
        "malformed_json", "schema", "unknown_asset"]
    status = read_topic(settings.require_kafka(), settings.topic_status, count=7, timeout_s=30)
    u1 = [json.loads(m.value()) for m in status if m.key() == b"u1"]
    assert [(s["ts_ms"] - T0, s["state"]) for s in u1] == [
        (0, "available"), (2000, "unavailable"), (3000, "available")]

    snapshot = SiteAvailability.model_validate_json(client.get(site_key("s1")) or b"")
    assert snapshot.ts_ms == T0 + 5000
    assert snapshot.units[0].last_15m_pct == pytest.approx(80.0)
    published = []
    while (msg := pubsub.get_message(timeout=0.5)) is not None:
        if msg["type"] == "message":
            published.append(SiteAvailability.model_validate_json(msg["data"]))
    assert published and published[-1] == snapshot
    pubsub.close()
    client.close()
