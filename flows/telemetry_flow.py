"""The telemetry flow: device polls and ticket events → everything bessmon knows per site.

    bess.telemetry.raw ┐                   ┌ StatusChange        → bess.status
    bess.tickets.raw  ─┴ key by site ─ SiteLogic (decode, normalize, status, availability,
                                       │          breaches, quality, episodes)
                                       ├ SiteAvailability    → bess.availability, Redis
                                       ├ PeriodAvailability  → bess.availability, history
                                       ├ BreachEvent         → bess.breaches, Redis, history
                                       ├ Alert               → bess.alerts, Redis, history
                                       ├ UnavailabilityEpisode → Redis, history
                                       ├ status intervals, days, minutes → history
                                       ├ LatestValues        → Redis
                                       └ DeadLetter          → bess.dlq
    bess.device.health ─ check, place at its site (flows/device_health.py, not keyed)
                                       ├ DeviceHealth, DeviceStats → Redis, history
                                       └ DeadLetter          → bess.dlq

Records are keyed by site before they are decoded (the device id on a record's key names its
battery unit) and decoded inside the stateful step: the fewer items cross the dataflow, the
faster it runs. For the same reason every step around it works on Bytewax's batches rather
than item by item (`flat_map_batch`, `stateful_batch`): an input's records are counted, keyed
and tagged with their kind in one call per batch, each site's records of an activation go to
its step in one call, and each sink's outputs are picked from a batch in one. Each site's
state is snapshotted for recovery."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import pickle
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.operators import KeyedStream, StatefulBatchLogic
from bytewax.outputs import DynamicSink, Sink
from confluent_kafka import TIMESTAMP_CREATE_TIME
from prometheus_client import Counter
from pydantic import ValidationError

from connectors import metrics
from connectors.api_store import read_approved_windows
from connectors.history import HistoryStoreError, open_history
from connectors.history.rows import StatusIntervalRow
from connectors.settings import Settings
from contracts.contract import Contract
from contracts.events import (
    Alert,
    BreachEvent,
    DeadLetter,
    PeriodAvailability,
    SiteAvailability,
    StatusChange,
    TelemetrySample,
    TicketEvent,
)
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow
from contracts.monitoring import MonitoringConfig
from flows.dead_letters import FLUSH_EVERY_MS, DeadLetterCounts
from flows.device_health import HealthOut, health_decoder
from flows.episodes import ticket_site
from flows.history_sink import HistoryItem, HistorySink, history_item
from flows.kafka_sink import KafkaOutSink
from flows.outputs import Output
from flows.redis_sink import HotState, RedisSink, hot_state
from flows.sink_errors import KafkaReporter
from flows.site_state import SiteSettings, SiteState
from flows.telemetry import Normalizer, RawRecord, decode_sample

log = logging.getLogger(__name__)
RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
# The history's status intervals of some assets over [start_ms, end_ms) (HistoryStore's).
StatusReader = Callable[[list[str], int, int], list[StatusIntervalRow]]
WindowReader = Callable[[], list[ExclusionWindow]]  # a contract's approved windows
WINDOWS_EVERY_MS = 30_000
Out = KafkaSinkMessage[bytes, bytes]
Kind = Literal["telemetry", "ticket", "dead_letter"]
UNROUTED = "?"  # records naming no known asset: decoded only to say why they are refused
T = TypeVar("T")


@dataclass(frozen=True)
class Topics:
    status: str
    availability: str
    dlq: str
    breaches: str
    alerts: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(settings.topic_status, settings.topic_availability, settings.topic_dlq,
                   settings.topic_breaches, settings.topic_alerts)


def to_kafka(item: Output, topics: Topics) -> Out | None:
    """Every output bound for a topic, keyed as the topics table of docs/architecture.md says."""
    if isinstance(item, StatusChange):
        key, topic = item.asset_id, topics.status
    elif isinstance(item, SiteAvailability | PeriodAvailability):
        key, topic = item.site_id, topics.availability
    elif isinstance(item, BreachEvent):
        key, topic = item.asset_id, topics.breaches
    elif isinstance(item, Alert):
        key, topic = item.scope_id, topics.alerts
    elif isinstance(item, DeadLetter):
        key, topic = item.source, topics.dlq
    else:
        return None
    return KafkaSinkMessage(key.encode(), item.model_dump_json().encode(), topic=topic)


class SiteRuntime:
    """One site's state plus what it needs to read records. Pickled for recovery without
    the normalizer (fleet-wide; the flow binds it again)."""

    # Live only: when the site's last telemetry record arrived (the receiving clock), and
    # whether its silence since was looked at (a site whose every device went quiet has no
    # poll left to notice it: the step's timer does, `on_silence`).
    last_wall_ms: int | None = None
    silence_checked: bool = True
    # Live runs: the history's final statuses of the site, read before its first poll when
    # it starts afresh (`SiteState.resume`) and when its approved exclusion windows change
    # (`SiteState.rebook`); the windows, read every `WINDOWS_EVERY_MS` (receiving clock).
    # Not pickled: the flow binds them again after a recovery.
    history: StatusReader | None = None
    windows: WindowReader | None = None
    windows_read_ms: int | None = None

    def __init__(self, site_id: str, normalizer: Normalizer | None,
                 state: SiteState | None, history: StatusReader | None = None,
                 windows: WindowReader | None = None) -> None:
        self.site_id = site_id
        self.normalizer = normalizer
        self.state = state
        self.history = history
        self.windows = windows
        self.dead_letters = DeadLetterCounts(None if site_id == UNROUTED else site_id)

    def __getstate__(self) -> dict[str, object]:
        return {"site_id": self.site_id, "normalizer": None, "state": self.state,
                "dead_letters": self.dead_letters, "last_wall_ms": self.last_wall_ms,
                "silence_checked": self.silence_checked}

    def silence_due_ms(self) -> int | None:
        """When (receiving clock) the site's silence is worth a look: once per quiet spell,
        a little after its devices would be stale."""
        if self.last_wall_ms is None or self.silence_checked or self.state is None:
            return None
        return self.last_wall_ms + self.state.settings.stale_after_ms + 1_000

    def on_silence(self, now_ms: int) -> list[Output]:
        """No record for a while: its units' comms-loss alarms, at the event time the site
        would be at now (its newest sample's time plus the time since it arrived)."""
        self.silence_checked = True
        state = self.state
        if state is None or state.newest_ms is None or self.last_wall_ms is None:
            return []
        return state.silent(state.newest_ms + max(0, now_ms - self.last_wall_ms))

    def on_record(self, kind: Kind, record: RawRecord, now_ms: int | None,
                  produced_ms: int | None = None) -> list[Output]:
        """`now_ms`: the receiving clock (None in replays); `produced_ms`: when the connector
        produced the record (its Kafka create time), what a device's clock is judged by
        (live) and what no sample can be ahead of (live and replays)."""
        out = self._record(kind, record, now_ms, produced_ms)
        if kind == "telemetry" and now_ms is not None:
            self.last_wall_ms, self.silence_checked = now_ms, False
        if not out:  # most records: no alert to raise alarms of, no dead letter to tally
            return out if kind == "dead_letter" else list(self.dead_letters.flush(now_ms))
        if self.state is not None:
            out += self.state.alarms_of_alerts(out)  # alerts that are alarms too
        if kind == "dead_letter":
            return out  # counted, not refused again
        tallies: list[Output] = []
        for item in out:
            if isinstance(item, DeadLetter):
                tallies += self.dead_letters.observe(item, now_ms)
        if not tallies:
            tallies += self.dead_letters.flush(now_ms)
        return out + tallies if tallies else out

    def _record(self, kind: Kind, record: RawRecord, now_ms: int | None,
                produced_ms: int | None) -> list[Output]:
        if kind == "dead_letter":
            letter = connector_dead_letter(record.value)
            return [] if letter is None else list(self.dead_letters.observe(letter, now_ms))
        if kind == "ticket":
            return self._ticket(record, now_ms)
        assert self.normalizer is not None, "bind a normalizer after a recovery"
        poll, dead = self.normalizer.read(
            record, now_ms or 0, now_ms if produced_ms is None else produced_ms)
        if poll is None or self.state is None or poll.site_id != self.site_id:
            if dead is None:  # routed here but names another site's assets
                assert poll is not None  # (a record refused always says why)
                dead = record.dead("flows.telemetry", "unknown_asset",
                                   f"device {poll.device_id!r} is no battery unit of the "
                                   "fleet", poll.ts_ms)
            return self.state.on_dead(dead) if self.state else [dead]
        received = None if now_ms is None else (now_ms if produced_ms is None else produced_ms)
        if now_ms is not None:  # (before resuming: a new site starts with its windows)
            self._windows(now_ms)
        resumed: list[Output] = []
        if self.history is not None and self.state.newest_ms is None:
            try:
                rows = self.history(*self.state.resume_from(poll.ts_ms))
            except HistoryStoreError as exc:  # unreadable: accounted from this poll on
                log.warning("site %s starts without the history's statuses: %s",
                            self.site_id, exc)
                rows = []
            resumed = self.state.resume(rows, poll.ts_ms)
        return resumed + self.state.on_poll(poll, dead, received)

    def _windows(self, now_ms: int) -> None:
        """Live: the contract's approved exclusion windows read again every
        `WINDOWS_EVERY_MS`; when they changed, the accounting is made again with them."""
        state, read = self.state, self.windows
        if state is None or read is None or (self.windows_read_ms is not None and
                                             now_ms - self.windows_read_ms < WINDOWS_EVERY_MS):
            return
        self.windows_read_ms = now_ms
        try:
            windows = tuple(read())
            if windows == state.windows:
                return
            ask = state.rebook_from()
            rows = self.history(*ask) if ask is not None and self.history is not None else []
        except (HistoryStoreError, sqlite3.Error, OSError) as exc:  # tried again later
            log.warning("site %s: approved exclusion windows not read: %s", self.site_id, exc)
            return
        log.info("site %s: %d approved exclusion windows, accounted again", self.site_id,
                 len(windows))
        state.rebook(windows, rows)

    def _ticket(self, record: RawRecord, now_ms: int | None) -> list[Output]:
        try:
            ticket = TicketEvent.model_validate_json(record.value or b"")
        except ValidationError as exc:
            return [record.dead("flows.tickets", "schema", str(exc.errors()[0]["msg"]),
                                now_ms or 0)]
        if self.state is None:
            return [record.dead("flows.tickets", "unknown_asset",
                                f"ticket {ticket.provider}:{ticket.ticket_id} names asset "
                                f"{ticket.asset_id!r}, which is in no site of the fleet",
                                ticket.updated_ms)]
        return self.state.on_ticket(ticket)


# What the step is fed: (site id, kind, key, value, topic, partition, offset, produced_ms)
# — a plain tuple: with several workers it is pickled to the site's worker, a record
# object costs 4× as much (µs per record) to pickle and unpickle.
SiteItem = tuple[str, Kind, bytes | None, bytes | None, str | None, int | None, int | None,
                 int | None]


class SiteLogic(StatefulBatchLogic[SiteItem, Output, bytes]):
    """The stateful step: one per site, its state snapshotted (pickled) for recovery. Bytewax
    hands it the site's records of an activation as one batch (`StatefulLogic` would add a
    call per record)."""

    def __init__(self, runtime: SiteRuntime | None, make: Callable[[str], SiteRuntime],
                 now_ms: Callable[[], int] | None, finish_at_eof: bool,
                 snapshots: bool) -> None:
        self.runtime = runtime
        self.make = make  # a new site's runtime (Bytewax builders are not told the key)
        self.now_ms = now_ms
        self.finish_at_eof = finish_at_eof
        self.snapshots = snapshots

    def on_batch(self, values: list[SiteItem]) -> tuple[Iterable[Output], bool]:
        runtime, now_ms = self.runtime, self.now_ms
        out: list[Output] = []
        for site_id, kind, key, value, topic, partition, offset, produced in values:
            if runtime is None:
                runtime = self.runtime = self.make(site_id)
            out += runtime.on_record(kind, RawRecord(key, value, topic, partition, offset),
                                     now_ms() if now_ms else None, produced)
        return counted(out), StatefulBatchLogic.RETAIN

    def notify_at(self) -> dt.datetime | None:
        """Live, when the step must act with no record coming: dead-letter tallies waiting
        for their once-a-second write, or a site gone silent (its comms-loss alarms)."""
        runtime = self.runtime
        if runtime is None or self.now_ms is None:
            return None
        tallies = runtime.dead_letters
        due = [(tallies.flushed_ms or 0) + FLUSH_EVERY_MS] if tallies.dirty else []
        silence = runtime.silence_due_ms()
        if silence is not None:
            due.append(silence)
        return dt.datetime.fromtimestamp(min(due) / 1000, dt.UTC) if due else None

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        runtime = self.runtime
        if runtime is None or self.now_ms is None:
            return [], StatefulBatchLogic.RETAIN
        now = self.now_ms()
        out: list[Output] = list(runtime.dead_letters.flush(now))
        silence = runtime.silence_due_ms()
        if silence is not None and now >= silence:
            out += runtime.on_silence(now)
        return counted(out), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        if self.runtime is None:
            return [], StatefulBatchLogic.RETAIN
        out: list[Output] = list(self.runtime.dead_letters.flush(None, force=True))
        state = self.runtime.state
        if self.finish_at_eof and state is not None:
            finished = state.finish()
            out += finished
            out += state.alarms_of_alerts(finished)
        return counted(out), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # Bytewax asks at every epoch, recovery or not: pickling a site is not free.
        if not self.snapshots:
            return b""
        return pickle.dumps(self.runtime, protocol=pickle.HIGHEST_PROTOCOL)


@operator
def site_step(step_id: str, up: KeyedStream[SiteItem],
              builder: Callable[[bytes | None], SiteLogic]) -> KeyedStream[Output]:
    """The stateful step, batched, under the step id `op.stateful` gave it before
    (`<step_id>.stateful_batch`): sites snapshotted by an earlier version resume."""
    return op.stateful_batch("stateful_batch", up, builder)


_OUTPUTS: dict[type, Counter] = {}  # FLOW_OUTPUTS' child per output class, bound once


def counted(out: list[Output]) -> list[Output]:
    """The step's outputs, counted by kind (and its dead letters by source and reason):
    a dictionary look-up and an increment each, nothing per asset."""
    for item in out:
        cls = type(item)
        counter = _OUTPUTS.get(cls)
        if counter is None:
            counter = _OUTPUTS[cls] = metrics.FLOW_OUTPUTS.labels(cls.__name__)
        counter.inc()
        if cls is DeadLetter:
            letter = cast(DeadLetter, item)
            metrics.FLOW_DEAD_LETTERS.labels(letter.source, letter.reason).inc()
    return out


def keyed_as(kind: Kind, route: Callable[[tuple[Kind, RawMessage]], str]) -> Callable[
        [list[RawMessage]], list[tuple[str, SiteItem]]]:
    """An input's records keyed by site, with the site id and their kind in the value too
    (the step's builder is not told its key), and counted (where they are read): one call
    per batch of the source, not three steps' calls per record. What the step needs of a
    record travels as a plain tuple (`SiteItem`)."""
    records_in = metrics.FLOW_RECORDS_IN.labels(kind)

    def key(batch: list[RawMessage]) -> list[tuple[str, SiteItem]]:
        records_in.inc(len(batch))
        out: list[tuple[str, SiteItem]] = []
        for msg in batch:
            site_id = route((kind, msg))
            # Live, a device's clock is judged against the time its record was produced,
            # not read: a flow catching up after a restart reads old records, from clocks
            # that were right.
            stamp = msg.timestamp
            produced = stamp[1] if stamp is not None and stamp[0] == TIMESTAMP_CREATE_TIME \
                and stamp[1] > 0 else None
            out.append((site_id, (site_id, kind, msg.key, msg.value, msg.topic, msg.partition,
                                  msg.offset, produced)))
        return out

    return key


def selected(pick: Callable[[Output], T | None]) -> Callable[[list[Output]], list[T]]:
    """A sink's items of a batch of outputs (`pick`: the item, or None for another sink's)."""
    def select(batch: list[Output]) -> list[T]:
        return [x for x in map(pick, batch) if x is not None]

    return select


def connector_dead_letter(value: bytes | None) -> DeadLetter | None:
    """A connector's dead letter read back from `bess.dlq` (the flows' own are counted where
    they are made; anything unreadable on the dead-letter topic is left there)."""
    try:
        letter = DeadLetter.model_validate_json(value or b"")
    except ValidationError:
        return None
    return letter if letter.source.startswith("connectors.") else None


def routing(fleet: Fleet) -> Callable[[tuple[Kind, RawMessage]], str]:
    """Record → site id. Telemetry by the device id on its key (a battery unit's id), failing
    that by the first asset it names; a ticket by its asset; a connector's dead letter by
    the device it names; UNROUTED otherwise."""
    by_device = {a.id: a.site_id for a in fleet.assets.values() if a.kind == "unit"}
    assets = fleet.assets

    def site_of(item: tuple[Kind, RawMessage]) -> str:
        kind, msg = item
        if kind == "dead_letter":
            letter = connector_dead_letter(msg.value)
            asset = assets.get(letter.key or "") if letter else None
            return asset.site_id if asset is not None else UNROUTED
        if kind == "ticket":
            try:
                ticket = TicketEvent.model_validate_json(msg.value or b"")
            except ValidationError:
                return UNROUTED
            return ticket_site(fleet, ticket) or UNROUTED
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
    ticket_source: Source[RawMessage] | None = None,
    health_source: Source[RawMessage] | None = None,
    kafka_sink: Sink[Out] | None = None,
    hot_sink: DynamicSink[HotState] | None = None,
    history_sink: DynamicSink[HistoryItem] | None = None,
    tail: bool = True,
    now_ms: Callable[[], int] | None,
    site_settings: SiteSettings | None = None,
    finish_at_eof: bool = False,
    snapshots: bool = True,
    hot: bool = True,
    resume: bool = False,
    windows: Mapping[str, Sequence[ExclusionWindow]] | None = None,
    batch_size: int = 1000,
) -> Dataflow:
    """Production reads and writes Kafka, Redis and the history store; tests pass
    `TestingSource`/`TestingSink` (no ticket or device-health input unless `ticket_source`
    or `health_source` is given; live, the device-health topic is read unless given).

    `contracts` maps a site id to its LTSA (a site without one gets technical availability).
    `now_ms` is the receiving clock for the clock-skew check; None in replays (old data is
    expected). `tail=False` stops at the end of the topics; with `finish_at_eof` everything
    up to the end of the last measurement period then becomes final (replays).
    `snapshots=False` (no recovery configured) skips pickling the state at every epoch;
    `hot=False` leaves the hot state in Redis alone (replays: it is the live stack's);
    `resume=True` (live runs) starts each site not recovered from a snapshot over the final
    statuses the history store holds of it (`SiteState.resume`) and reads its contract's
    approved exclusion windows itself, at its first poll and every `WINDOWS_EVERY_MS`.
    `windows` (replays): each site's approved exclusion windows by site id, booked when its
    accounting starts. `batch_size`: the most records the telemetry topic's source hands on
    at once (replays take more: fewer, larger writes to the history)."""
    windows = windows or {}
    topics = Topics.of(settings)
    normalizer = Normalizer(config, fleet)
    site_settings = site_settings or SiteSettings.of(config)
    flow = Dataflow("telemetry")
    production = source is None
    if source is None:
        source = _kafka(settings, settings.topic_telemetry, tail, batch_size)
    if ticket_source is None and production:
        ticket_source = _kafka(settings, settings.topic_tickets, tail)
    route = routing(fleet)
    keyed: KeyedStream[SiteItem] = op.flat_map_batch(
        "telemetry_in", op.input("telemetry", flow, source), keyed_as("telemetry", route))
    if ticket_source is not None:
        tickets = op.flat_map_batch("tickets_in", op.input("tickets", flow, ticket_source),
                                    keyed_as("ticket", route))
        keyed = op.merge("inputs", keyed, tickets)
    if production and tail:
        # Live: the connectors' dead letters counted with the site's (data-quality view).
        letters = op.flat_map_batch("dead_letters_in", op.input(
            "dead_letters", flow, _kafka(settings, settings.topic_dlq, tail)),
            keyed_as("dead_letter", route))
        keyed = op.merge("with_dead_letters", keyed, letters)

    def make(site_id: str) -> SiteRuntime:
        return SiteRuntime(site_id, normalizer, None if site_id == UNROUTED else SiteState(
            fleet, site_id, config, contracts.get(site_id), site_settings,
            windows.get(site_id, ())),
            *readers(site_id))

    def readers(site_id: str) -> tuple[StatusReader | None, WindowReader | None]:
        contract = contracts.get(site_id)
        return (history_reader(settings) if resume else None,
                window_reader(settings, contract.id) if resume and contract else None)

    def builder(snapshot: bytes | None) -> SiteLogic:
        runtime: SiteRuntime | None = pickle.loads(snapshot) if snapshot else None
        if runtime is not None:
            runtime.normalizer = normalizer  # pickled out with the snapshot
            runtime.history, runtime.windows = readers(runtime.site_id)
        return SiteLogic(runtime, make, now_ms, finish_at_eof, snapshots)

    outputs = site_step("site", keyed, builder)
    results: Stream[Output] = op.flat_map_batch(
        "unkey", outputs, lambda batch: [item for _, item in batch])
    if health_source is None and production and tail:
        # Live, as the connectors' dead letters: a replay leaves device health alone.
        health_source = _kafka(settings, settings.topic_device_health, tail)
    if health_source is not None:
        # Not keyed: each record is checked and placed on its own (flows/device_health.py).
        decode = health_decoder(fleet, now_ms)
        health_in = metrics.FLOW_RECORDS_IN.labels("device_health")

        def health(msg: RawMessage) -> HealthOut:
            health_in.inc()
            out = decode(RawRecord(msg.key, msg.value, msg.topic, msg.partition, msg.offset))
            counted([out])
            return out

        health_items = op.map("device_health_in", op.input(
            "device_health", flow, health_source), health)
        results = op.merge("with_device_health", results, health_items)
    # What a sink cannot write goes to the dead-letter topic; an outage raises an alert.
    reporter = KafkaReporter(settings.kafka_bootstrap_servers, topics.dlq, topics.alerts,
                             settings.redis_url)
    if hot:
        hot_items: Stream[HotState] = op.flat_map_batch("to_redis", results, selected(hot_state))
        op.output("redis", hot_items, hot_sink if hot_sink is not None else RedisSink(
            settings.require_redis(), reporter))
    history: Stream[HistoryItem] = op.flat_map_batch("to_history", results, selected(history_item))
    op.output("history", history, history_sink if history_sink is not None else
              HistorySink(settings, reporter))
    messages = op.flat_map_batch("to_kafka", results,
                                 selected(lambda item: to_kafka(item, topics)))
    if kafka_sink is None:
        kafka_sink = KafkaOutSink(settings.require_kafka(), reporter)
    op.output("kafka", messages, kafka_sink)
    return flow


def history_reader(settings: Settings) -> StatusReader:
    """Reads status intervals from the history store, opened for the one read and closed."""
    def read(asset_ids: list[str], start_ms: int, end_ms: int) -> list[StatusIntervalRow]:
        store = open_history(settings)
        try:
            return store.status_intervals(asset_ids, start_ms, end_ms)
        finally:
            store.close()

    return read


def window_reader(settings: Settings, contract_id: str) -> WindowReader:
    """Reads a contract's approved exclusion windows from the API's store, read-only (none
    before the store exists)."""
    def read() -> list[ExclusionWindow]:
        if not settings.api_db_path.exists():
            return []
        return read_approved_windows(settings.api_db_path, contract_id)

    return read


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run a built flow inside this. The step makes many short-lived objects and next to no
    reference cycles, while the state it keeps (fleet model, timelines, accumulators) is
    large and long-lived: the collector walked it again and again. What exists when the run
    starts is frozen out of the collector and the youngest generation is collected 30× less
    often (measured in-process on fleet-shaped polls: ~35k → ~47k asset-samples/s); both
    are undone afterwards."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _kafka(settings: Settings, topic: str, tail: bool,
           batch_size: int = 1000) -> Source[RawMessage]:
    """The topic's every partition from its beginning, or from the offsets of the recovery
    snapshot. An offset the broker no longer has (a broker that restarted empty, or records
    deleted by retention) starts the partition again from what it has, never from its end:
    records written meanwhile are read, not skipped."""
    return cast(Source[RawMessage], KafkaSource([settings.require_kafka()], [topic],
                                                tail=tail, batch_size=batch_size,
                                                add_config={
                                                    "auto.offset.reset": "earliest"}))
