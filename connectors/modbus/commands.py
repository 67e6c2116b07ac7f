"""The Modbus connector executes the commands of its units: it owns their connection, so it
is the one to write setpoints — ahead of its queued polls, each verified by reading it back —
and the one to stop a unit that crosses a hard limit, whatever else is down (docs/control.md,
contracts/control.py).

- **Commands** (`settings.topic_commands`, key = unit id): a thread reads the topic from its
  end and hands each record to the event loop (`call_soon_threadsafe` into an asyncio queue).
  A record that is no `ControlCommand` goes to the dead-letter topic through the connector's
  refusals (reason `invalid_command`), never stopping anything. Only `estop` and `write` are
  executed here (`stop`, `start`, `reset`, `mode` are the control loop's); commands for units
  this process does not poll are not its own; a command older than `max_age_s` (its `ts_ms`
  against this host's clock) is logged and dropped — a restarted connector never replays
  old setpoints.
- **Execution**: `estop` writes `active_power_setpoint_kw` 0 then `control_mode` 2 (stop);
  `write` its writes in order, stopping at the first that does not take. A write read back
  different (`SetpointMismatch`) or unanswered (`SetpointTimeout`) is tried again up to
  `ControlConfig.write_retries` times after a short backoff; a write the device refuses or
  that is invalid is not. Each command gets one `CommandResult` (`by: connector`) on
  `settings.topic_command_results`, keyed by unit id, with what was read back and the
  latency from the command's `ts_ms` to the end of the last read-back. A unit's commands run
  one at a time in arrival order (units run concurrently), except that an `estop` drops the
  unit's commands still waiting (each answered `failed`, "superseded"): a setpoint queued
  before an emergency stop must not run after it.
- **Hard limits** (`ControlConfig.hard_limits`): `HardLimitGuard` sees every sample of the
  poller (`ModbusConnector.on_sample`); for a unit not in passive mode whose values cross a
  hard limit while the unit does not report `control_mode` 2 it issues an `estop` (actor
  `connector`, reason "hard limit <id>: …") through the same lanes, and publishes its result
  like any command's. Samples read before the stop's read-back ended are not judged again,
  so a stopped unit is not stopped again on every poll; a unit started again that crosses
  again is stopped again. Passive units, and devices with no point any hard limit reads, are
  decided once, on their first sample, and cost nothing after.

Why the topic is *assigned* rather than subscribed: every connector must see every command
(each keeps the ones of its own units), and none may replay old ones, so each process reads
as a group of its own (`connector-<name>-<uuid>`) from the end (what `auto.offset.reset:
latest` means), committing nothing. Joining a consumer group took the embedded broker (Tansu)
23 s; assigning every partition at its high watermark takes milliseconds and reads a command
within ~10 ms (`fetch.wait.max.ms` 10). Partitions added to the topic later are not seen
until the connector restarts.

The connector speaks Modbus; the consumer, the filters and the results are protocol-neutral
and would move to connectors/ when the OPC UA connector executes commands too."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from connectors.kafka import SpoolingProducer
from connectors.modbus.errors import (
    SetpointInvalid,
    SetpointMismatch,
    SetpointRejected,
    SetpointTimeout,
)
from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.refusals import Rejection
from connectors.settings import Settings
from connectors.spool import SpoolFull
from contracts.control import (
    MODE_STOP,
    MODE_TAG,
    SETPOINT_TAG,
    CommandResult,
    ControlCommand,
    ControlConfig,
    DeviceWrite,
    HardLimit,
    Outcome,
    UnitReading,
    crossed_hard_limit,
    reading_from_assets,
)
from contracts.events import TagValue, TelemetrySample
from contracts.fleet import Fleet

log = logging.getLogger(__name__)

INVALID_COMMAND = "invalid_command"  # the dead letter's reason
EXECUTED_KINDS = frozenset({"estop", "write"})
ESTOP_WRITES = (DeviceWrite(tag=SETPOINT_TAG, value=0.0),
                DeviceWrite(tag=MODE_TAG, value=MODE_STOP))
ACTOR = "connector"  # the actor of the connector's own stops (hard limits)
MAX_AGE_S = 30.0
RETRY_BACKOFF_S = (0.05, 0.1)  # before the 2nd and 3rd attempt; the last one after that
SCOPE_KINDS = {"unit": "unit", "any_block": "block", "any_inverter": "inverter"}


# --- pure rules -----------------------------------------------------------------------------


def ignored_because(command: ControlCommand, units: Collection[str], now_ms: float,
                    max_age_s: float = MAX_AGE_S) -> str | None:
    """Why this connector does not execute `command` (None: it does)."""
    if command.kind not in EXECUTED_KINDS:
        return f"kind {command.kind} is the control loop's"
    if command.unit_id not in units:
        return f"unit {command.unit_id} is not polled here"
    age_s = (now_ms - command.ts_ms) / 1000
    if age_s > max_age_s:
        return f"issued {age_s:.1f} s ago, more than {max_age_s:g} s: not replayed"
    return None


def writes_of(command: ControlCommand) -> tuple[DeviceWrite, ...]:
    """What the device is told, in order: an emergency stop's setpoint 0 and stop mode, or a
    write command's writes."""
    return ESTOP_WRITES if command.kind == "estop" else command.writes


def hard_limit_reason(limit: HardLimit, reading: UnitReading) -> str:
    """"hard limit cell-overtemp: cell_temp_max_c 60 above 57" (the extreme value)."""
    values = reading.values(limit.tag, limit.of)
    if limit.above is not None:
        return f"hard limit {limit.id}: {limit.tag} {max(values, default=float('nan')):g} " \
               f"above {limit.above:g}"
    return f"hard limit {limit.id}: {limit.tag} {min(values, default=float('nan')):g} " \
           f"below {limit.below:g}"


def applicable_limits(limits: Sequence[HardLimit],
                      tags_by_kind: dict[str, set[str]]) -> tuple[HardLimit, ...]:
    """The hard limits a device can see at all: an asset of the limit's scope with its tag."""
    return tuple(h for h in limits if h.tag in tags_by_kind.get(SCOPE_KINDS[h.of], set()))


def validation_problem(exc: ValidationError, limit: int = 5) -> str:
    """A validation error in one line: `writes: …; ts_ms: …`."""
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'record'}: {e['msg']}"
             for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _number(value: TagValue | object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


# --- hard limits ----------------------------------------------------------------------------


@dataclass
class _Watch:
    """A guarded unit: what its samples say and whether a stop is under way."""

    unit_id: str
    kinds: dict[str, str]  # asset id → unit | inverter | block
    limits: tuple[HardLimit, ...]
    mode: float | None = None  # the control_mode it last reported
    busy: bool = False  # a stop is queued or running
    quiet_until_ms: float = -1.0  # samples stamped up to here were read before the stop


class HardLimitGuard:
    """Stops a unit not in passive mode whose values cross a hard limit (`on_sample`, every
    poll); `trip` is called at most once per crossing (then `stopped` when done)."""

    def __init__(self, config: ControlConfig, fleet: Fleet,
                 trip: Callable[[str, HardLimit, UnitReading], None]) -> None:
        self._config = config
        self._fleet = fleet
        self._trip = trip
        self._by_device: dict[str, _Watch | None] = {}  # None: nothing to guard
        self._by_unit: dict[str, _Watch] = {}
        self.trips = 0

    def on_sample(self, m: DeviceMap, sample: TelemetrySample) -> None:
        watch = self._by_device.get(m.device.id, _UNSEEN)
        if watch is _UNSEEN:
            watch = self._by_device[m.device.id] = self._watch(m)
        if watch is None or watch.busy or sample.ts_ms <= watch.quiet_until_ms:
            return
        reading = reading_from_assets(sample.ts_ms, watch.unit_id, watch.kinds,
                                      ((a.id, a.tags) for a in sample.assets))
        mode = reading.unit.get(MODE_TAG)
        if mode is not None:
            watch.mode = mode
        limit = crossed_hard_limit(watch.limits, reading)
        if limit is None or watch.mode == MODE_STOP:
            return
        watch.busy = True
        self.trips += 1
        self._trip(watch.unit_id, limit, reading)

    def stopped(self, unit_id: str, result: CommandResult) -> None:
        """The stop of `unit_id` is over (whatever its outcome): judge samples read after it."""
        watch = self._by_unit[unit_id]
        watch.busy = False
        watch.quiet_until_ms = result.ts_ms
        if MODE_TAG in result.read_back:
            watch.mode = result.read_back[MODE_TAG]

    def guarded(self, unit_id: str) -> bool:
        return unit_id in self._by_unit

    def _watch(self, m: DeviceMap) -> _Watch | None:
        unit_id = m.device.asset
        asset = self._fleet.assets.get(unit_id)
        mode = self._config.mode_of(unit_id, asset.site_id if asset else "")
        if mode == "passive" or not self._config.hard_limits:
            log.info("device %s: unit %s is %s: no hard limits enforced", m.device.id, unit_id,
                     mode if mode == "passive" else "without hard limits")
            return None
        tags: dict[str, set[str]] = {}
        for a in m.assets:
            tags.setdefault(a.kind, set()).update(p.tag for p in m.profile.points.get(a.kind, ()))
        limits = applicable_limits(self._config.hard_limits, tags)
        if not limits:
            log.info("device %s: reports no value any hard limit reads", m.device.id)
            return None
        watch = self._by_unit.get(unit_id)
        kinds: dict[str, str] = {a.asset_id: a.kind for a in m.assets}
        if watch is None:
            watch = self._by_unit[unit_id] = _Watch(unit_id, kinds, limits)
        else:  # a second device of the same unit
            watch.kinds.update(kinds)
            watch.limits = watch.limits + tuple(h for h in limits if h not in watch.limits)
        log.info("device %s: unit %s (%s): enforcing hard limits %s", m.device.id, unit_id,
                 mode, ", ".join(h.id for h in limits))
        return watch


_UNSEEN: _Watch | None = _Watch("", {}, ())


# --- the topic ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A record of the commands topic, as it came."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


class CommandConsumer:
    """Reads `topic` from its end (every partition assigned at its high watermark) in a
    thread of its own, handing each record to `deliver` (from that thread); `on_ready` once
    the positions are fixed — a record produced after it is delivered."""

    def __init__(self, bootstrap: str, topic: str, *, group_id: str,
                 deliver: Callable[[CommandRecord], object],
                 on_ready: Callable[[], object] | None = None, fetch_wait_ms: int = 10) -> None:
        self.topic = topic
        self._config: dict[str, str | int | bool] = {
            "bootstrap.servers": bootstrap, "group.id": group_id,
            "auto.offset.reset": "latest", "enable.auto.commit": False,
            "enable.partition.eof": False, "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.error.backoff.ms": 50, "socket.nagle.disable": True}
        self._deliver = deliver
        self._on_ready = on_ready
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"commands:{topic}", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            while not self._stopping.is_set():
                try:
                    consumer.assign(self._at_end(consumer))
                    break
                except (KafkaException, KeyError) as exc:
                    log.warning("%s: cannot read it yet (%s); trying again", self.topic, exc)
                    self._stopping.wait(1.0)
            else:
                return
            self.ready.set()
            if self._on_ready is not None:
                self._on_ready()
            while not self._stopping.is_set():
                try:
                    msg = consumer.poll(0.1)
                except KafkaException as exc:  # librdkafka retries on its own: say so, go on
                    log.warning("%s: %s", self.topic, exc)
                    self._stopping.wait(0.1)
                    continue
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s: %s", self.topic, error.str())
                    continue
                self._deliver(CommandRecord(msg.key(), msg.value(), msg.topic() or self.topic,
                                            msg.partition() or 0, msg.offset() or 0))
        except RuntimeError:  # `deliver`'s event loop is closed: the connector is stopping
            log.debug("%s: no event loop to hand commands to; stopping", self.topic)
        except Exception:  # never silently: commands would no longer be executed
            log.exception("%s: commands are no longer read", self.topic)
            raise
        finally:
            consumer.close()

    def _at_end(self, consumer: Consumer) -> list[TopicPartition]:
        meta = consumer.list_topics(self.topic, timeout=5).topics[self.topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        out = []
        for p in sorted(meta.partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)
            out.append(TopicPartition(self.topic, p, high))
        return out


class ResultPublisher:
    """`CommandResult`s onto `settings.topic_command_results`, keyed by unit id, through a
    spooling producer of their own that lingers 1 ms (the telemetry's lingers 50 ms: a
    result waits for no batch)."""

    def __init__(self, settings: Settings, connector: str) -> None:
        self.topic = settings.topic_command_results
        self.producer = SpoolingProducer(settings.require_kafka(),
                                         settings.spool_for(f"{connector}-results"),
                                         max_spool_bytes=settings.spool_max_bytes,
                                         **{"linger.ms": 1})

    def __call__(self, result: CommandResult) -> None:
        try:
            self.producer.produce(self.topic, result.unit_id, result.model_dump_json().encode())
        except SpoolFull as exc:
            log.error("command result %s of %s lost: %s", result.command_id, result.unit_id, exc)
        if self.producer.failed:
            failed, self.producer.failed = self.producer.failed, []
            log.error("%d command results refused by the broker, first: %s", len(failed),
                      failed[0])

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.close(timeout_s)


# --- execution ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    command: ControlCommand
    done: Callable[[CommandResult], None] | None = None


@dataclass
class _Lane:
    """One unit's commands, executed one at a time in arrival order."""

    pending: deque[_Job] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class CommandExecutor:
    """Executes the `estop` and `write` commands of the connector's units and enforces the
    hard limits of `config` on its polls (it hooks `HardLimitGuard.on_sample` into
    `connector.on_sample` itself: a connector with an executor is always guarded).
    `publish_result` gets every `CommandResult`; `run` reads the commands topic."""

    def __init__(self, connector: ModbusConnector, config: ControlConfig, fleet: Fleet, *,
                 publish_result: Callable[[CommandResult], None],
                 max_age_s: float = MAX_AGE_S,
                 backoff_s: Sequence[float] = RETRY_BACKOFF_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._connector = connector
        self._config = config
        self._publish_result = publish_result
        self.max_age_s = max_age_s
        self._backoff_s = tuple(backoff_s) or (0.0,)
        self._clock = clock
        self._devices: dict[str, list[str]] = {}  # unit id → its devices
        for d in connector.devices:
            self._devices.setdefault(d.asset, []).append(d.id)
        self.units = frozenset(self._devices)
        self.guard = HardLimitGuard(config, fleet, self._trip)
        connector.on_sample = self.guard.on_sample
        self._lanes: dict[str, _Lane] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self.executed = 0
        self.ignored = 0
        self.invalid = 0

    async def run(self, stop: asyncio.Event, *, bootstrap: str | None = None,
                  topic: str = "", group_id: str = "",
                  ready: asyncio.Event | None = None) -> None:
        """Execute commands until `stop` is set: those of `topic` (when `bootstrap` is
        given; `ready` is set once it is read), those `submit`ted, and the guard's stops."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[CommandRecord] = asyncio.Queue()
        consumer = None
        if bootstrap:
            consumer = CommandConsumer(
                bootstrap, topic, group_id=group_id or f"connector-{uuid.uuid4().hex}",
                deliver=lambda r: loop.call_soon_threadsafe(queue.put_nowait, r),
                on_ready=None if ready is None else
                lambda: loop.call_soon_threadsafe(ready.set))
            consumer.start()
            log.info("executing the commands of %d units from %s", len(self.units), topic)
        elif ready is not None:
            ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                dispatcher = tasks.create_task(self._dispatch(queue))
                await stop.wait()
                dispatcher.cancel()
                for lane in self._lanes.values():
                    if lane.task is not None:
                        lane.task.cancel()
        finally:
            self._tasks = None
            self._lanes.clear()
            if consumer is not None:
                await asyncio.to_thread(consumer.stop)

    def submit(self, command: ControlCommand,
               done: Callable[[CommandResult], None] | None = None) -> None:
        """Queue `command` on its unit's lane (the executor must be running). An `estop`
        drops the unit's commands still waiting, answering each."""
        if self._tasks is None:
            raise RuntimeError("the command executor is not running")
        lane = self._lanes.setdefault(command.unit_id, _Lane())
        if command.kind == "estop":
            while lane.pending:
                job = lane.pending.popleft()
                self._finish(job, self._result(
                    job.command, "failed", f"not executed: superseded by the emergency stop "
                    f"{command.command_id} ({command.reason})", {}, 0))
        lane.pending.append(_Job(command, done))
        lane.wake.set()
        if lane.task is None:
            lane.task = self._tasks.create_task(self._work(lane))

    async def execute(self, command: ControlCommand) -> CommandResult:
        """Write what `command` says, verified, retried; its result (not published)."""
        writes = writes_of(command)
        read_back: dict[str, float] = {}
        attempts = 0
        failure: tuple[Outcome, str] | None = None
        for i, w in enumerate(writes):
            outcome, problem, tries = await self._write(command.unit_id, w, read_back)
            attempts += tries
            if outcome == "written":
                continue
            if failure is None:
                failure = (outcome, problem)
            if command.kind != "estop":  # later writes build on this one
                rest = writes[i + 1:]
                if rest:
                    failure = (failure[0], failure[1] + "; not attempted: " +
                               ", ".join(f"{x.tag} = {x.value:g}" for x in rest))
                break
        said = ", ".join(f"{w.tag} = {w.value:g}" for w in writes)
        if failure is None:
            what = "emergency stop: " if command.kind == "estop" else ""
            return self._result(command, "written", f"{what}wrote {said}, each read back "
                                f"equal ({_attempts(attempts)})", read_back, attempts)
        outcome, problem = failure
        if command.kind == "estop":
            problem = f"emergency stop ({said}) incomplete: {problem}"
        return self._result(command, outcome, problem, read_back, attempts)

    # --- internals ----------------------------------------------------------------------

    async def _dispatch(self, queue: asyncio.Queue[CommandRecord]) -> None:
        while True:
            record = await queue.get()
            try:
                self._accept(record)
            except Exception:  # a bug of ours: say so, go on with the next command
                log.exception("%s[%d]@%d: cannot handle the record", record.topic,
                              record.partition, record.offset)

    def _accept(self, record: CommandRecord) -> None:
        try:
            command = ControlCommand.model_validate_json(record.value or b"")
        except ValidationError as exc:
            self._refuse(record, validation_problem(exc))
            return
        why = ignored_because(command, self.units, self._clock() * 1000, self.max_age_s)
        if why is not None:
            self.ignored += 1
            ours = command.kind in EXECUTED_KINDS and command.unit_id in self.units
            log.log(logging.WARNING if ours else logging.DEBUG, "command %s (%s of %s by %s) "
                    "ignored: %s", command.command_id, command.kind, command.unit_id,
                    command.actor, why)
            return
        self.submit(command)

    def _refuse(self, record: CommandRecord, problem: str) -> None:
        self.invalid += 1
        key = (record.key or b"").decode("utf-8", "backslashreplace") or "(no key)"
        text = (record.value or b"").decode("utf-8", "backslashreplace")
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        self._connector.refusals.report(key, [Rejection(
            INVALID_COMMAND, f"{where}: not a command: {problem}",
            {"topic": record.topic, "partition": record.partition, "offset": record.offset,
             "key": key, "record": text, "problem": problem},
            int(self._clock() * 1000))])

    async def _work(self, lane: _Lane) -> None:
        while True:
            while not lane.pending:
                lane.wake.clear()
                await lane.wake.wait()
            job = lane.pending.popleft()
            try:
                result = await self.execute(job.command)
            except Exception as exc:  # a bug of ours: the command failed, say why
                log.exception("command %s: cannot execute it", job.command.command_id)
                result = self._result(job.command, "failed", f"cannot execute: {exc!r}", {}, 0)
            self._finish(job, result)

    def _finish(self, job: _Job, result: CommandResult) -> None:
        self.executed += 1
        level = logging.INFO if result.outcome == "written" else logging.WARNING
        log.log(level, "command %s (%s of %s by %s): %s in %.0f ms: %s", result.command_id,
                result.kind, result.unit_id, result.actor, result.outcome, result.latency_ms,
                result.detail)
        try:
            self._publish_result(result)
        except Exception:
            log.exception("command %s: cannot publish its result", result.command_id)
        if job.done is not None:
            try:
                job.done(result)
            except Exception:
                log.exception("command %s: cannot hand its result on", result.command_id)

    async def _write(self, unit_id: str, w: DeviceWrite,
                     read_back: dict[str, float]) -> tuple[Outcome, str, int]:
        """One write, tried again while the device answers something else or nothing:
        (outcome, problem, attempts)."""
        device_id = self._device_for(unit_id, w.tag)
        tries = 1 + self._config.write_retries
        last: tuple[Outcome, str] = ("failed", "not attempted")
        for attempt in range(tries):
            try:
                written = await self._connector.write_setpoint(device_id, w.tag, w.value)
            except SetpointMismatch as exc:
                back = _number(exc.read_back)
                if back is not None:
                    read_back[w.tag] = back
                last = ("mismatch", str(exc))
            except SetpointTimeout as exc:
                last = ("timeout", str(exc))
            except (SetpointInvalid, SetpointRejected) as exc:
                return "refused", str(exc), attempt + 1
            except Exception as exc:
                log.exception("unit %s: writing %s", unit_id, w.tag)
                return "failed", f"{w.tag}: {exc!r}", attempt + 1
            else:
                back = _number(written.read_back)
                if back is not None:
                    read_back[w.tag] = back
                return "written", "", attempt + 1
            if attempt + 1 < tries:
                await asyncio.sleep(self._backoff_s[min(attempt, len(self._backoff_s) - 1)])
        return last[0], f"{last[1]} ({_attempts(tries)})", tries

    def _device_for(self, unit_id: str, tag: str) -> str:
        """The unit's first device that has the point (its first device when none has)."""
        devices = self._devices[unit_id]
        if len(devices) > 1:
            for device_id in devices:
                try:
                    self._connector.device_map(device_id).locate(tag)
                except SetpointInvalid:
                    continue
                return device_id
        return devices[0]

    def _result(self, command: ControlCommand, outcome: Outcome, detail: str,
                read_back: dict[str, float], attempts: int) -> CommandResult:
        now_ms = self._clock() * 1000
        return CommandResult(
            command_id=command.command_id, unit_id=command.unit_id, kind=command.kind,
            by="connector", outcome=outcome, detail=detail[:2000], read_back=read_back,
            attempts=attempts, latency_ms=max(0.0, now_ms - command.ts_ms),
            ts_ms=int(now_ms), actor=command.actor, reason=command.reason)

    def _trip(self, unit_id: str, limit: HardLimit, reading: UnitReading) -> None:
        reason = hard_limit_reason(limit, reading)
        command = ControlCommand(command_id=f"hard-limit-{uuid.uuid4().hex}", unit_id=unit_id,
                                 kind="estop", actor=ACTOR, reason=reason,
                                 ts_ms=int(self._clock() * 1000))
        log.warning("unit %s: %s: stopping it (%s)", unit_id, reason, command.command_id)
        try:
            self.submit(command, done=lambda r: self.guard.stopped(unit_id, r))
        except RuntimeError as exc:
            log.error("unit %s: %s, and it cannot be stopped: %s", unit_id, reason, exc)
            self.guard.stopped(unit_id, self._result(command, "failed", str(exc), {}, 0))
