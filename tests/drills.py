"""The failure drills' harness: counts every sample of a running stack end to end.

A sample is one poll of one device on the telemetry topic (`TelemetrySample`, device id and
time). The flows take each one once into the history's per-minute summaries
(`telemetry.n`: how many samples of each asset and tag the minute had), or refuse it to the
dead-letter topic with a reason (`late`: beyond the allowed lateness). So for every asset and
every minute the flows have closed:

    history n (the asset's most reported tag) == distinct samples on the topic − dead letters

Fewer in the history is a sample lost; more is one counted twice. A sample the broker got
twice (a connector resending what it had spooled) is one sample: the flows drop the twin.
What the harness cannot see is a poll that never reached the topic; the poll gaps say how
long each device was not heard from."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.settings import Settings
from contracts.events import DeadLetter, TelemetrySample
from tests.flows.harness import telemetry_rows

MINUTE_MS = 60_000
SETTLED_MS = 112_000  # a minute is written 60 s + up to 50 s after it starts (site_state)


@dataclass
class TopicCount:
    """What the telemetry and dead-letter topics hold."""

    samples: int = 0  # records on the telemetry topic
    twins: int = 0  # … of which the same device and time again
    dead: set[tuple[str, int]] = field(default_factory=set)  # (device, ts) refused as late
    # (asset, minute) → distinct (device, ts) samples holding the asset
    per_minute: dict[tuple[str, int], set[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(set))
    times: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    newest: dict[str, int] = field(default_factory=dict)  # asset → newest sample time

    def expected(self, asset: str, minute: int) -> int:
        return len(self.per_minute[(asset, minute)] - self.dead)

    def longest_gap_s(self, since_ms: int, until_ms: int) -> float:
        """The longest time any device went unheard between `since_ms` and `until_ms`."""
        gaps = [0.0]
        for stamps in self.times.values():
            inside = sorted({t for t in stamps if since_ms <= t <= until_ms})
            gaps += [(b - a) / 1000 for a, b in pairwise(inside)]
        return max(gaps)


def read_until(bootstrap: str, topic: str, stop_ms: int, timeout_s: float = 240) -> list[bytes]:
    """Every record of `topic` from the beginning up to `stop_ms` (the producers' clock) —
    and a few after: each partition is read until a record stamped at or after `stop_ms`,
    or, once that time is 10 s past, until it has been quiet for 5 s (a partition nobody
    writes to). Not `read_topic(to_end=True)`: Tansu's high watermark (the last batch's
    base offset + 1) ends a long partition early."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bessmon-drills",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[bytes] = []
        done: set[int] = set()
        heard = {p: time.monotonic() for p in partitions}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: not read up to {stop_ms} in time"
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg.value() or b"")
                partition = int(msg.partition() or 0)
                heard[partition] = time.monotonic()
                if msg.timestamp()[1] >= stop_ms:
                    done.add(partition)
            if time.time() * 1000 > stop_ms + 10_000:
                done |= {p for p, t in heard.items() if time.monotonic() - t > 5}
        return out
    finally:
        consumer.close()


def count_topics(bootstrap: str, settings: Settings, stop_ms: int) -> TopicCount:
    """The telemetry and dead-letter topics up to `stop_ms` (waits until then)."""
    count = TopicCount()
    seen: set[tuple[str, int]] = set()
    for value in read_until(bootstrap, settings.topic_telemetry, stop_ms):
        sample = TelemetrySample.model_validate_json(value)
        count.samples += 1
        key = (sample.device_id, sample.ts_ms)
        if key in seen:
            count.twins += 1
            continue
        seen.add(key)
        count.times[sample.device_id].append(sample.ts_ms)
        minute = sample.ts_ms - sample.ts_ms % MINUTE_MS
        for reading in sample.assets:
            count.per_minute[(reading.id, minute)].add(key)
            count.newest[reading.id] = max(count.newest.get(reading.id, 0), sample.ts_ms)
    for value in read_until(bootstrap, settings.topic_dlq, stop_ms):
        dead = DeadLetter.model_validate_json(value)
        if dead.reason == "late" and dead.key is not None:
            count.dead.add((dead.key, dead.ts_ms))
    return count


def history_counts(history_db: Path) -> dict[tuple[str, int], int]:
    """(asset, minute) → samples the history's minute summary counted (its fullest tag)."""
    with sqlite3.connect(f"file:{history_db}?mode=ro", uri=True, timeout=30) as db:
        rows = telemetry_rows(db)
    counts: dict[tuple[str, int], int] = {}
    for asset, _, start, _, n, *_ in rows:
        counts[(asset, start)] = max(counts.get((asset, start), 0), n)
    return counts


@dataclass(frozen=True)
class Tally:
    minutes: int  # (asset, minute) pairs compared
    samples: int  # asset-samples they hold
    lost: dict[tuple[str, int], int]  # (asset, minute) → samples missing from the history
    doubled: dict[tuple[str, int], int]  # (asset, minute) → samples counted more than once
    dead_letters: int
    twins: int

    @property
    def exact(self) -> bool:
        return not self.lost and not self.doubled


def tally(topics: TopicCount, history: dict[tuple[str, int], int],
          since_ms: int, until_ms: int) -> Tally:
    """Compare every settled minute in [since_ms, until_ms) (the first minute the stack
    heard of may be partial on either side, so callers start after it)."""
    lost: dict[tuple[str, int], int] = {}
    doubled: dict[tuple[str, int], int] = {}
    minutes = samples = 0
    for (asset, minute), _ in sorted(topics.per_minute.items()):
        if not since_ms <= minute < until_ms or minute + SETTLED_MS > topics.newest[asset]:
            continue
        want, got = topics.expected(asset, minute), history.get((asset, minute), 0)
        minutes += 1
        samples += want
        if got < want:
            lost[(asset, minute)] = want - got
        elif got > want:
            doubled[(asset, minute)] = got - want
    return Tally(minutes, samples, lost, doubled, len(topics.dead), topics.twins)


def settled_tally(bootstrap: str, settings: Settings, history_db: Path, since_ms: int,
                  until_ms: int, timeout_s: float = 120) -> tuple[Tally, TopicCount]:
    """The tally of every minute in [since_ms, until_ms), once they are settled (the topics
    read until the last minute's SETTLED_MS: waits until then) and written (the flows may
    lag: retried until exact or `timeout_s`, the last one returned)."""
    topics = count_topics(bootstrap, settings, until_ms - MINUTE_MS + SETTLED_MS + 1000)
    deadline = time.monotonic() + timeout_s
    while True:
        result = tally(topics, history_counts(history_db), since_ms, until_ms)
        if result.exact or time.monotonic() > deadline:
            return result, topics
        time.sleep(5)


def describe(result: Tally) -> str:
    def first(d: dict[tuple[str, int], int]) -> str:
        return ", ".join(f"{a}@{time.strftime('%H:%M', time.gmtime(m / 1000))}: {n}"
                         for (a, m), n in list(d.items())[:8])
    return (f"{result.minutes} asset-minutes, {result.samples} asset-samples, "
            f"{sum(result.lost.values())} lost ({first(result.lost)}), "
            f"{sum(result.doubled.values())} doubled ({first(result.doubled)}), "
            f"{result.dead_letters} late, {result.twins} twins on the topic")

