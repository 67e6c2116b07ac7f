"""The telemetry flow: raw device polls → statuses, availability and contract KPIs per site.

    bess.telemetry.raw ─key by site─ SiteRuntime (decode, normalize, status, availability)
        ├─ StatusChange      → bess.status
        ├─ SiteAvailability  → bess.availability, Redis (snapshot + pub/sub)
        ├─ LatestValues      → Redis (newest tag values per unit)
        ├─ BreachEvent       → bess.breaches, Redis (active alarms per site)
        └─ DeadLetter        → bess.dlq

Records are keyed by site before they are decoded (the device id on the record's key names
its battery unit), and decoded inside the stateful step: the fewer items cross the dataflow,
the faster it runs (DESIGN.md, "Numbers")."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink

from connectors.settings import Settings
from contracts.contract import Contract
from contracts.events import (
    BreachEvent,
    DeadLetter,
    SiteAvailability,
    StatusChange,
    TelemetrySample,
)
from contracts.fleet import Fleet
from contracts.monitoring import MonitoringConfig
from flows.redis_sink import HotState, RedisSink
from flows.site_state import LatestValues, Output, SiteSettings, SiteState
from flows.telemetry import Normalizer, RawRecord, decode_sample

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
Out = KafkaSinkMessage[bytes, bytes]
UNROUTED = "?"  # records naming no known battery unit: decoded only to say why they are refused


@dataclass(frozen=True)
class Topics:
    status: str
    availability: str
    dlq: str
    breaches: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(settings.topic_status, settings.topic_availability, settings.topic_dlq,
                   settings.topic_breaches)


def to_kafka(item: Output, topics: Topics) -> Out | None:
    """Every output bound for a topic, keyed as DESIGN.md's topic table says."""
    if isinstance(item, StatusChange):
        return KafkaSinkMessage(item.asset_id.encode(), item.model_dump_json().encode(),
                                topic=topics.status)
    if isinstance(item, SiteAvailability):
        return KafkaSinkMessage(item.site_id.encode(), item.model_dump_json().encode(),
                                topic=topics.availability)
    if isinstance(item, DeadLetter):
        return KafkaSinkMessage(item.source.encode(), item.model_dump_json().encode(),
                                topic=topics.dlq)
    if isinstance(item, BreachEvent):
        return KafkaSinkMessage(item.asset_id.encode(), item.model_dump_json().encode(),
                                topic=topics.breaches)
    return None


def hot_state(item: Output) -> HotState | None:
    return item if isinstance(item, SiteAvailability | LatestValues | BreachEvent) else None


class SiteRuntime:
    """One site's state plus what it needs to read records (the stateful step's value).

    Pickled for recovery without the normalizer (fleet-wide, rebuilt by the flow)."""

    def __init__(self, site_id: str, normalizer: Normalizer | None,
                 state: SiteState | None) -> None:
        self.site_id = site_id
        self.normalizer = normalizer
        self.state = state

    def __getstate__(self) -> dict[str, object]:
        return {"site_id": self.site_id, "normalizer": None, "state": self.state}

    def on_record(self, record: RawRecord, now_ms: int | None) -> list[Output]:
        assert self.normalizer is not None, "bind a normalizer after a recovery"
        stamp = now_ms if now_ms is not None else 0
        sample = decode_sample(record, stamp)
        if isinstance(sample, DeadLetter):
            return [sample]
        poll, dead = self.normalizer.normalize(sample, record, now_ms)
        if poll is None or self.state is None or poll.site_id != self.site_id:
            if dead is None:  # routed here but names another site's assets
                dead = record.dead("flows.telemetry", "unknown_asset",
                                   f"device {sample.device_id!r} is no battery unit of the "
                                   "fleet", sample.ts_ms)
            return [dead]
        return self.state.on_poll(poll, dead)


def routing(fleet: Fleet) -> Callable[[RawMessage], str]:
    """Record → site id by the device id on its key (a battery unit's id); failing that by
    the first asset the record names; failing that UNROUTED."""
    by_device = {a.id: a.site_id for a in fleet.assets.values() if a.kind == "unit"}
    assets = fleet.assets

    def site_of(msg: RawMessage) -> str:
        key = msg.key.decode("utf-8", "replace") if msg.key else ""
        site = by_device.get(key)
        if site is not None:
            return site
        sample = decode_sample(RawRecord(msg.key, msg.value), 0)
        if isinstance(sample, TelemetrySample):
            asset = assets.get(sample.assets[0].id)
            if asset is not None:
                return asset.site_id
        return UNROUTED

    return site_of


def build_flow(
    settings: Settings,
    fleet: Fleet,
    config: MonitoringConfig,
    contracts: Mapping[str, Contract],
    *,
    source: Source[RawMessage] | None = None,
    kafka_sink: Sink[Out] | None = None,
    hot_sink: DynamicSink[HotState] | None = None,
    tail: bool = True,
    now_ms: Callable[[], int] | None = lambda: int(time.time() * 1000),
    site_settings: SiteSettings | None = None,
) -> Dataflow:
    """Production reads and writes Kafka and Redis; tests pass `TestingSource`/`TestingSink`.

    `contracts` maps a site id to its LTSA (a site without one gets technical availability).
    `now_ms` is the receiving clock for the clock-skew check; None in replays (old data is
    expected). `tail=False` stops at the end of the topic."""
    topics = Topics.of(settings)
    normalizer = Normalizer(config, fleet)
    site_settings = site_settings or SiteSettings.of(config)
    flow = Dataflow("telemetry")
    if source is None:
        source = cast(Source[RawMessage], KafkaSource(
            [settings.require_kafka()], [settings.topic_telemetry], tail=tail))
    raw = op.input("telemetry", flow, source)
    site_of = routing(fleet)
    routed = op.map("route", raw, lambda msg: (site_of(msg), msg))
    keyed = op.key_on("by_site", routed, lambda item: item[0])

    def step(runtime: SiteRuntime | None, item: tuple[str, RawMessage]
             ) -> tuple[SiteRuntime, list[Output]]:
        site_id, msg = item
        if runtime is None:
            state = None if site_id == UNROUTED else SiteState(
                fleet, site_id, config, contracts.get(site_id), site_settings)
            runtime = SiteRuntime(site_id, normalizer, state)
        runtime.normalizer = normalizer  # also after a recovery, which pickled it out
        record = RawRecord(msg.key, msg.value, msg.topic, msg.partition, msg.offset)
        return runtime, runtime.on_record(record, now_ms() if now_ms else None)

    outputs = op.flat_map_value("outputs", op.stateful_map("site", keyed, step), lambda x: x)
    results = op.key_rm("unkey", outputs)
    hot = cast(Stream[HotState], op.filter_map("hot", results, hot_state))
    op.output("redis", hot, hot_sink if hot_sink is not None else RedisSink(
        settings.require_redis()))
    messages = op.filter_map("to_kafka", results, lambda item: to_kafka(item, topics))
    if kafka_sink is None:
        # topic=None: each message names its topic.
        kafka_sink = cast(Sink[Out], KafkaSink([settings.require_kafka()], topic=None))
    op.output("kafka", messages, kafka_sink)
    return flow

