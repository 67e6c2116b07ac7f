"""Where the device connectors (Modbus, OPC UA) put what they read: samples on the telemetry
topic and device-health changes and poll figures on the device-health topic, both keyed by
device id, and
what they refuse on the dead-letter topic (connectors/refusals.py; keyed by source, the
device id in the dead letter's `key`), through a spooling producer — nothing is lost while
the broker is away, or when the connector stops while it is (the spool is sent first by the
next run)."""

from __future__ import annotations

import contextlib
import logging
import time

from prometheus_client import Counter

from connectors import metrics
from connectors.kafka import SpoolingProducer, ensure_topics
from connectors.settings import Settings
from connectors.spool import SpoolFull
from contracts.events import (
    DeadLetter,
    DeviceHealth,
    DeviceStats,
    TelemetrySample,
    telemetry_json,
)

log = logging.getLogger(__name__)


class DevicePublisher:
    def __init__(self, settings: Settings, connector: str) -> None:
        bootstrap = settings.require_kafka()
        ensure_topics(bootstrap, [settings.topic_telemetry, settings.topic_device_health,
                                  settings.topic_dlq], settings.topic_partitions)
        self.settings = settings
        self.connector = connector
        self.producer = SpoolingProducer(bootstrap, settings.spool_for(connector),
                                         max_spool_bytes=settings.spool_max_bytes)
        self.refused = 0  # records refused because memory and spool were both full
        self._warned_at = 0.0
        # Queue depths, read when scraped (the producer's own counters: nothing per record).
        producer = self.producer
        metrics.CONNECTOR_SPOOL_BYTES.labels(connector).set_function(
            lambda: producer.spool.waiting_bytes)
        metrics.CONNECTOR_QUEUE_RECORDS.labels(connector).set_function(
            lambda: producer.waiting)
        self._samples = metrics.CONNECTOR_PUBLISHED.labels("sample")
        self._health = metrics.CONNECTOR_PUBLISHED.labels("health")
        self._dead = metrics.CONNECTOR_PUBLISHED.labels("dead_letter")
        if not self.producer.spool.empty:
            log.info("sending %s spooled by the previous run first",
                     f"{self.producer.spool.waiting_bytes:,} bytes")

    def sample(self, sample: TelemetrySample) -> None:
        self._produce(self.settings.topic_telemetry, sample.device_id,
                      telemetry_json(sample), self._samples)

    def health(self, event: DeviceHealth) -> None:
        self._produce(self.settings.topic_device_health, event.device_id,
                      event.model_dump_json().encode(), self._health)

    def stats(self, stats: DeviceStats) -> None:
        """A device's poll figures of one window, on the health topic beside its changes."""
        self._produce(self.settings.topic_device_health, stats.device_id,
                      stats.model_dump_json().encode(), self._health)

    def dead(self, letter: DeadLetter) -> None:
        """A refused value or answer; its `key` names the device that sent it, the message
        key is its source (the topic's convention, as the flows write it)."""
        self._produce(self.settings.topic_dlq, letter.source,
                      letter.model_dump_json().encode(), self._dead)
        metrics.CONNECTOR_DEAD_LETTERS.labels(letter.reason).inc()

    def _produce(self, topic: str, key: str, value: bytes, counter: Counter) -> None:
        try:
            self.producer.produce(topic, key, value)
            counter.inc()
        except SpoolFull as exc:
            self.refused += 1
            metrics.CONNECTOR_SPOOL_FULL.inc()
            if time.monotonic() - self._warned_at > 10:
                self._warned_at = time.monotonic()
                log.error("%s; %d records refused so far", exc, self.refused)
        if self.producer.failed:  # a record the broker refused for good: say so, go on
            failed, self.producer.failed = self.producer.failed, []
            log.error("%d records refused by the broker, first: %s", len(failed), failed[0])

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for the acknowledgements; what the broker has not taken stays spooled."""
        self.producer.close(timeout_s)
        for gauge in (metrics.CONNECTOR_SPOOL_BYTES, metrics.CONNECTOR_QUEUE_RECORDS):
            with contextlib.suppress(KeyError):  # another publisher of the name removed it
                gauge.remove(self.connector)
