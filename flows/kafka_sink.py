"""Bytewax sink for the output topics (`bess.status`, `bess.availability`, `bess.breaches`,
`bess.alerts`, `bess.dlq`): each message names its topic.

Unlike Bytewax's own KafkaSink, every delivery is checked: a message the broker will never
take (larger than it accepts) goes to the dead-letter topic as `unwritable` instead of
stopping the worker; while the broker is away the producer keeps retrying (no message
timeout) and the batch waits, with a `store_outage` alert (flows/sink_errors.py)."""

from __future__ import annotations

import time
from functools import partial

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors import metrics
from flows.sink_errors import Reporter, SinkGuard, is_item_error

Out = KafkaSinkMessage[bytes, bytes]
FLUSH_WAIT_S = 5.0


def describe(item: object) -> tuple[str, str]:
    msg = item if isinstance(item, KafkaSinkMessage) else None
    if msg is None:
        return "", repr(item)[:1000]
    key = msg.key.decode("utf-8", "backslashreplace") if isinstance(msg.key, bytes) else ""
    value = msg.value.decode("utf-8", "backslashreplace") if isinstance(msg.value, bytes) \
        else ""
    return key, f"topic {msg.topic}: {value}"


class _Partition(StatelessSinkPartition[Out]):
    def __init__(self, bootstrap: str, guard: SinkGuard) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                   "enable.idempotence": True, "linger.ms": 5,
                                   "compression.type": "lz4",
                                   "message.timeout.ms": 0})  # never give up: wait
        self._guard = guard
        self._failed: list[tuple[Out, KafkaError]] = []
        self._seconds = metrics.FLOW_SINK_SECONDS.labels("kafka")

    def write_batch(self, items: list[Out]) -> None:
        started = time.monotonic()
        self._write(items)
        self._seconds.observe(time.monotonic() - started)

    def _write(self, items: list[Out]) -> None:
        guard = self._guard
        for msg in items:
            while True:
                try:
                    self._producer.produce(
                        msg.topic or "", key=msg.key, value=msg.value,
                        on_delivery=partial(self._delivered, msg))
                    break
                except BufferError:  # local queue full: serve delivery reports, retry
                    self._producer.poll(0.1)
                except KafkaException as e:
                    if not is_item_error(e):
                        raise
                    guard.refuse(msg, e)
                    break
        while (remaining := self._producer.flush(FLUSH_WAIT_S)) > 0:
            guard.outage(RuntimeError(f"{remaining} messages not acknowledged by the broker "
                                      f"after {FLUSH_WAIT_S:.0f} s"))
        failed, self._failed = self._failed, []
        for msg, err in failed:
            guard.refuse(msg, KafkaException(err))
        guard.written()

    def _delivered(self, msg: Out, err: KafkaError | None, _: Message) -> None:
        if err is not None:
            self._failed.append((msg, err))

    def close(self) -> None:
        self._producer.flush(FLUSH_WAIT_S)


class KafkaOutSink(DynamicSink[Out]):
    def __init__(self, bootstrap: str, reporter: Reporter) -> None:
        self._bootstrap = bootstrap
        self._reporter = reporter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self._bootstrap, SinkGuard("kafka", self._reporter, describe))
