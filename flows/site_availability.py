"""The site-availability flow: raw telemetry → per-asset status and rolling availability.

    bess.telemetry.raw ─decode─┬─ samples ─key by site─ SiteTracker ─┬─ StatusChange → bess.status
                               │                                     ├─ SiteAvailability → Redis
                               │                                     │        + bess.availability
                               └─ dead letters ──────────────────────┴─ DeadLetter → bess.dlq
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.connectors.kafka import (
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink

from connectors.settings import Settings
from contracts.events import DeadLetter, SiteAvailability, StatusChange, TelemetrySample
from contracts.fleet import Fleet
from flows.redis_sink import RedisSnapshotSink
from flows.site_tracker import Output, SiteTracker
from flows.telemetry import decode_sample

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
Out = KafkaSinkMessage[bytes, bytes]


@dataclass(frozen=True)
class Topics:
    status: str
    availability: str
    dlq: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(settings.topic_status, settings.topic_availability, settings.topic_dlq)


def to_kafka(item: Output, topics: Topics) -> Out:
    """Every output to its topic, keyed as DESIGN.md's topic table says."""
    if isinstance(item, StatusChange):
        return KafkaSinkMessage(item.asset_id.encode(), item.model_dump_json().encode(),
                                topic=topics.status)
    if isinstance(item, SiteAvailability):
        return KafkaSinkMessage(item.site_id.encode(), item.model_dump_json().encode(),
                                topic=topics.availability)
    return KafkaSinkMessage(item.source.encode(), item.model_dump_json().encode(),
                            topic=topics.dlq)


def build_flow(
    settings: Settings,
    fleet: Fleet,
    *,
    source: Source[RawMessage] | None = None,
    kafka_sink: Sink[Out] | None = None,
    redis_sink: DynamicSink[SiteAvailability] | None = None,
    tail: bool = True,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Dataflow:
    """Production reads and writes Kafka and Redis; tests pass `TestingSource`/`TestingSink`.

    `tail=False` stops at the end of the topic (replays, tests). `now_ms` only stamps dead
    letters of undecodable records (they carry no event time)."""
    topics = Topics.of(settings)
    flow = Dataflow("site_availability")
    if source is None:
        source = cast(Source[RawMessage], KafkaSource(
            [settings.require_kafka()], [settings.topic_telemetry], tail=tail))
    raw = op.input("telemetry", flow, source)

    def decode(msg: RawMessage) -> TelemetrySample | DeadLetter:
        return decode_sample(msg.key, msg.value, topic=msg.topic, partition=msg.partition,
                             offset=msg.offset, now_ms=now_ms())

    def site_of(sample: TelemetrySample) -> str:
        asset = fleet.assets.get(sample.assets[0].id)
        return asset.site_id if asset else ""

    def routable(item: TelemetrySample | DeadLetter) -> TypeGuard[TelemetrySample]:
        return isinstance(item, TelemetrySample) and site_of(item) != ""

    def unroutable(item: TelemetrySample | DeadLetter) -> DeadLetter:
        if isinstance(item, DeadLetter):
            return item
        return DeadLetter(source="flows.site_availability", reason="unknown_asset",
                          detail=f"asset {item.assets[0].id!r} is in no site of the fleet",
                          ts_ms=item.ts_ms, key=item.device_id, payload=item.model_dump_json())

    def track(tracker: SiteTracker | None, sample: TelemetrySample
              ) -> tuple[SiteTracker, list[Output]]:
        tracker = tracker or SiteTracker(
            fleet, site_of(sample), stale_after_ms=int(settings.stale_after_s * 1000),
            publish_every_ms=int(settings.publish_every_s * 1000))
        return tracker, tracker.on_sample(sample)

    routed = op.branch("route", op.map("decode", raw, decode), routable)
    rejected = op.map("rejected", routed.falses, unroutable)
    by_site = op.key_on("by_site", routed.trues, site_of)
    tracked = op.flat_map_value("emit", op.stateful_map("track", by_site, track), lambda x: x)
    results = op.merge("all_outputs", op.key_rm("unkey", tracked), rejected)

    snapshots = op.filter_map("snapshots", results,
                              lambda x: x if isinstance(x, SiteAvailability) else None)
    op.output("redis", snapshots, redis_sink or RedisSnapshotSink(settings.require_redis()))
    if kafka_sink is None:
        # topic=None: each message names its topic.
        kafka_sink = cast(Sink[Out], KafkaSink([settings.require_kafka()], topic=None))
    op.output("kafka", op.map("to_kafka", results, lambda item: to_kafka(item, topics)),
              kafka_sink)
    return flow
