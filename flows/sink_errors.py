"""What a sink of the flows does when it cannot write — one item, or anything at all.

A Bytewax sink that raises stops the worker, and with it `bessmon up`; with recovery the same
batch is written again after the restart and fails again: a crash loop. So every sink writes
through `SinkGuard`, which tells two kinds of failure apart:

- **unwritable item** — the store refuses one item, and would refuse it again: a number out
  of a column's range (`OverflowError`), text it cannot encode (`UnicodeError`), a value of
  the wrong type (`TypeError`, `ValueError`), a constraint (`sqlite3.IntegrityError`,
  `sqlite3.DataError`, `sqlite3.InterfaceError`), a message larger than the broker takes.
  The batch is written again item by item; each item that still fails goes to `bess.dlq`
  as a dead letter with the reason `unwritable: <sink>: <error>`, an alert `unwritable`
  (major) is raised for the sink, and the rest of the batch is written. The alert clears once
  the sink has written for `UNWRITABLE_CLEARS_AFTER_S` without refusing anything.
- **outage** — anything else: the store is gone, full, read-only or slow (connection
  refused, `database or disk is full`, `attempt to write a readonly database`, timeouts).
  Nothing is dropped: the batch is retried with backoff (0.5 s doubling to 30 s) until it
  is written, the worker waits meanwhile, and an alert `store_outage` (critical) is raised at
  the first failure and cleared by the first write that succeeds.

Dead letters and alerts leave through a `Reporter` (`KafkaReporter` in production: the
dead-letter and alerts topics, and the alert into Redis's fleet-wide alerts); a reporter that
cannot report logs instead — it never raises into the sink."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import redis
from confluent_kafka import KafkaError, KafkaException, Producer

from connectors import metrics
from connectors.live_log import publish
from connectors.redis_store import alerts_key
from contracts.events import Alert, DeadLetter, Severity, dead_letter

log = logging.getLogger("bessmon.flows.sinks")

T = TypeVar("T")

ITEM_ERRORS: tuple[type[BaseException], ...] = (
    OverflowError, UnicodeError, TypeError, ValueError,
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, redis.DataError)
UNWRITABLE_CLEARS_AFTER_S = 600.0
BACKOFF_S = (0.5, 30.0)


class UnwritableItem(Exception):
    """A store's refusal of one item (e.g. a message the broker will never take)."""


def is_item_error(exc: BaseException) -> bool:
    """True when `exc`, or what caused it, says the item cannot be written (not the store)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (UnwritableItem, *ITEM_ERRORS)):
            return True
        if isinstance(seen, KafkaException) and seen.args and isinstance(
                seen.args[0], KafkaError) and seen.args[0].code() in ITEM_KAFKA_CODES:
            return True
        seen = seen.__cause__
    return False


ITEM_KAFKA_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                              KafkaError.INVALID_MSG})


class Reporter(Protocol):
    def dead(self, letters: Sequence[DeadLetter]) -> None: ...

    def alert(self, alert: Alert) -> None: ...


class ListReporter:
    """Keeps what is reported (tests, and flows run without Kafka)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.alerts: list[Alert] = []

    def dead(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)

    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


class KafkaReporter:
    """Dead letters to the DLQ topic, alerts to the alerts topic and Redis's fleet-wide
    alerts (published on the `alerts` channel) — each on its own, so that the store that is
    out does not silence the report of its outage."""

    def __init__(self, bootstrap: str | None, dlq_topic: str, alerts_topic: str,
                 redis_url: str | None) -> None:
        self._bootstrap = bootstrap
        self._redis_url = redis_url
        self._dlq_topic = dlq_topic
        self._alerts_topic = alerts_topic
        self._producer: Producer | None = None  # made when first needed (sinks are built
        self._redis: redis.Redis | None = None  # in each worker process)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_producer": None, "_redis": None}

    def dead(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            log.warning("dead letter %s: %s", letter.reason, letter.detail)
            self._produce(self._dlq_topic, letter.source, letter.model_dump_json())

    def alert(self, alert: Alert) -> None:
        log.error("alert %s %s: %s", alert.kind, alert.state, alert.message)
        payload = alert.model_dump_json()
        self._produce(self._alerts_topic, alert.scope_id, payload)
        if self._redis_url is None:
            return
        if self._redis is None:
            self._redis = redis.Redis.from_url(self._redis_url, socket_timeout=5)
        try:
            pipe = self._redis.pipeline(transaction=False)
            if alert.state == "raised":
                pipe.hset(alerts_key("fleet"), alert.alert_id, payload)
            else:
                pipe.hdel(alerts_key("fleet"), alert.alert_id)
            publish(pipe, "alerts", payload)
            pipe.execute()
        except redis.RedisError as e:
            log.error("alert %s not written to Redis: %s", alert.alert_id, e)

    def _produce(self, topic: str, key: str, value: str) -> None:
        if self._bootstrap is None:
            return
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self._bootstrap, "acks": "all",
                                       "linger.ms": 5})
        try:
            self._producer.produce(topic, key=key.encode(), value=value.encode())
            self._producer.flush(10)
        except (KafkaException, BufferError) as e:
            log.error("could not report to %s: %s", topic, e)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
        if self._redis is not None:
            self._redis.close()


class SinkGuard:
    """Writes batches for one sink; see the module docstring for what it does on failure.
    `describe(item)` gives an item's key and text for its dead letter."""

    def __init__(self, sink: str, reporter: Reporter,
                 describe: Callable[[object], tuple[str, str]], *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.sink = sink
        self.reporter = reporter
        self.describe = describe
        self.clock = clock
        self.sleep = sleep
        self.outage_alert: Alert | None = None
        self.unwritable_alert: Alert | None = None
        self.last_refusal_s = 0.0
        self.refused = 0  # items sent to the DLQ since the sink started
        self._seconds = metrics.FLOW_SINK_SECONDS.labels(sink)
        self._outages = metrics.FLOW_SINK_OUTAGES.labels(sink)

    def write(self, items: Sequence[T], write: Callable[[Sequence[T]], None]) -> None:
        """Write `items` with `write` (one call for the batch when it can): returns once
        every item is written or dead-lettered."""
        if not items:
            return
        started = time.monotonic()
        try:
            self._until_written(items, write)
        except _ItemRefused:
            for item in items:
                try:
                    self._until_written([item], write)
                except _ItemRefused as refused:
                    self.refuse(item, refused.error)
        self._seconds.observe(time.monotonic() - started)
        self.written()

    def _until_written(self, items: Sequence[T], write: Callable[[Sequence[T]], None]) -> None:
        delay = BACKOFF_S[0]
        while True:
            try:
                write(items)
            except Exception as e:  # sorted below: nothing may stop the worker
                if is_item_error(e):
                    raise _ItemRefused(e) from e
                self.outage(e)
                self.sleep(delay)
                delay = min(delay * 2, BACKOFF_S[1])
            else:
                return

    def refuse(self, item: object, error: BaseException) -> None:
        """`item` cannot be written: to the DLQ, and the sink's `unwritable` alert."""
        key, payload = self.describe(item)
        reason = f"unwritable: {self.sink}: {type(error).__name__}: {error}"
        self.refused += 1
        metrics.FLOW_DEAD_LETTERS.labels(f"flows.{self.sink}", f"unwritable: {self.sink}").inc()
        self.last_refusal_s = self.clock()
        self.reporter.dead([dead_letter(
            source=f"flows.{self.sink}", reason=f"unwritable: {self.sink}", detail=reason,
            ts_ms=int(self.last_refusal_s * 1000), key=key, payload=payload)])
        if self.unwritable_alert is None:
            self.unwritable_alert = self._alert("unwritable", "major",
                                          f"{self.sink}: an item could not be written and "
                                          f"went to the dead-letter topic ({reason})")
            self.reporter.alert(self.unwritable_alert)

    def outage(self, error: BaseException) -> None:
        """The store failed as a whole (the caller retries): the `store_outage` alert."""
        log.error("%s: write failed, retrying: %s", self.sink, error)
        self._outages.inc()
        if self.outage_alert is None:
            self.outage_alert = self._alert("store_outage", "critical",
                                      f"{self.sink}: cannot write ({type(error).__name__}: "
                                      f"{str(error)[:300]}); retrying, nothing dropped")
            self.reporter.alert(self.outage_alert)

    def written(self) -> None:
        """A write succeeded: clears the outage alert, and in time the unwritable one."""
        now = self.clock()
        if self.outage_alert is not None:
            self.reporter.alert(self._clear(self.outage_alert, f"{self.sink}: writing again"))
            self.outage_alert = None
        if self.unwritable_alert is not None and now - self.last_refusal_s >= \
                UNWRITABLE_CLEARS_AFTER_S:
            self.reporter.alert(self._clear(self.unwritable_alert, f"{self.sink}: no item refused "
                                            f"for {UNWRITABLE_CLEARS_AFTER_S:.0f} s "
                                            f"({self.refused} since the start)"))
            self.unwritable_alert = None

    def _alert(self, kind: str, severity: Severity, message: str) -> Alert:
        now_ms = int(self.clock() * 1000)
        scope = f"sink:{self.sink}"
        return Alert.model_validate({
            "alert_id": f"{kind}:{scope}:{now_ms}", "kind": kind, "scope_id": scope,
            "severity": severity, "state": "raised", "raised_ms": now_ms, "ts_ms": now_ms,
            "message": message, "details": {"sink": self.sink}})

    def _clear(self, alert: Alert, message: str) -> Alert:
        return alert.model_copy(update={"state": "cleared", "message": message,
                                        "ts_ms": max(int(self.clock() * 1000),
                                                     alert.raised_ms)})


class _ItemRefused(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def describe_json(item: object) -> tuple[str, str]:
    """An item's key and text for its dead letter: pydantic events as their JSON, anything
    else by its repr (never raising)."""
    key = str(getattr(item, "site_id", None) or getattr(item, "asset_id", None) or "")
    try:
        dump = getattr(item, "model_dump_json", None)
        text = dump() if callable(dump) else repr(item)
    except Exception:  # an item that cannot even be shown is still reported
        text = object.__repr__(item)
    return key, str(text)
