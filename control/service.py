"""`bessmon control run`: the control loop as a process. It reads the telemetry, the
breaches, the operators' commands and the connectors' results from Kafka, hands them to the
pure `ControlLoop` (control/loop.py) and carries out what it returns: setpoint commands and
answers on Kafka, alerts on Kafka and in Redis, audit entries in the hash-chained audit log,
each unit's view in Redis (`control_key`, read by the API), its own heartbeat
(`CONTROL_ALIVE_KEY`), and the units' states in `<run dir>/control/state.json` (written
atomically on every change: a restart resumes them in BOOT, never running before the device
is seen again).

Every topic is read from its end: old telemetry says nothing about now, and an old command
replayed could start a unit nobody wants running. Breaches raised while the loop was down
are not lost: the active ones are read from Redis (the flows keep them there) at start.
A record that does not validate goes to the dead-letter topic with its reason; no record
stops the loop. A state file that cannot be read stops the start with its path and problem:
starting without it would forget the units latched in ERROR or STOPPED."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, Message, TopicPartition
from pydantic import ValidationError

from connectors import metrics
from connectors.alarm_store import write_alarm
from connectors.api_store import ApiStore
from connectors.audit import AuditLog
from connectors.kafka import CheckedProducer, ensure_topics
from connectors.live_log import publish
from connectors.redis_store import CONTROL_ALIVE_KEY, alarms_key, alerts_key, control_key
from connectors.settings import Settings
from contracts.alarm_sources import alert_alarm
from contracts.control import CommandResult, ControlCommand, load_control
from contracts.errors import InvalidInput
from contracts.events import BreachEvent, TelemetrySample, dead_letter
from contracts.fleet import load_fleet
from contracts.monitoring import load_monitoring
from control.loop import Action, Answer, Audit, ControlLoop, Raise, Send
from control.state_machine import State

log = logging.getLogger(__name__)
SOURCE = "control"
TICK_S = 0.1  # staleness, ramps, heartbeats and restarts move this often
VIEW_S = 0.25  # the views in Redis at most this stale
LAG_S = 5.0  # the consumer lag figures (metrics) this often


def state_path(settings: Settings) -> Path:
    return settings.run_dir / "control" / "state.json"


def read_state(path: Path) -> dict[str, Any]:
    """The persisted units ({} when there is no file); InvalidInput when it is unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(str(path), "(file)", f"the control loop's state cannot be read "
                           f"({exc}); starting without it would forget latched units — "
                           "repair or remove it") from None
    units = data.get("units") if isinstance(data, dict) else None
    if not isinstance(units, dict):
        raise InvalidInput(str(path), "units", "missing or not a mapping")
    return units


def write_state(path: Path, units: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"v": 1, "units": units}, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class ControlService:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.fleet = load_fleet(settings.fleet_file)
        self.config = load_control(settings.control_file)
        self.monitoring = load_monitoring(settings.monitoring_file)
        self.state_file = state_path(settings)
        self.loop = ControlLoop(self.fleet, self.config, self.monitoring,
                                restored=read_state(self.state_file))
        bootstrap = settings.require_kafka()
        self.topics = {settings.topic_telemetry: self._sample,
                       settings.topic_breaches: self._breach,
                       settings.topic_commands: self._command,
                       settings.topic_command_results: self._result}
        ensure_topics(bootstrap, [*self.topics, settings.topic_alerts, settings.topic_dlq],
                      settings.topic_partitions)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"bessmon-control-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "latest",
            "fetch.wait.max.ms": 10, "fetch.min.bytes": 1,
        })
        self.producer = CheckedProducer(bootstrap, **{"linger.ms": 0})
        self.redis = redis.Redis.from_url(settings.require_redis())
        self.audit = AuditLog(ApiStore(settings.api_db_path))
        self._persisted = json.dumps(self.loop.persisted(), sort_keys=True)
        self.ready = threading.Event()  # set once every partition is assigned
        self.handled = 0

    # -- inputs --------------------------------------------------------------------------

    def _sample(self, value: bytes, now_ms: int) -> list[Action]:
        return self.loop.on_sample(TelemetrySample.model_validate_json(value), now_ms)

    def _breach(self, value: bytes, now_ms: int) -> list[Action]:
        return self.loop.on_breach(BreachEvent.model_validate_json(value), now_ms)

    def _command(self, value: bytes, now_ms: int) -> list[Action]:
        return self.loop.on_command(ControlCommand.model_validate_json(value), now_ms)

    def _result(self, value: bytes, now_ms: int) -> list[Action]:
        result = CommandResult.model_validate_json(value)
        metrics.CONTROL_RESULTS.labels(result.by, result.outcome).inc()
        return self.loop.on_result(result, now_ms)

    def _handle(self, msg: Message, now_ms: int) -> list[Action]:
        topic, value = msg.topic() or "", msg.value() or b""
        try:
            return self.topics[topic](value, now_ms)
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}"
                                for e in exc.errors()[:5])
            self._dead(msg, "invalid", problem, now_ms)
        except Exception as exc:  # a bug of ours on one record: say so, go on
            log.exception("record of %s refused", topic)
            self._dead(msg, "unprocessable", repr(exc)[:500], now_ms)
        return []

    def _dead(self, msg: Message, reason: str, detail: str, now_ms: int) -> None:
        metrics.CONTROL_DEAD_LETTERS.labels(reason).inc()
        key = msg.key()
        letter = dead_letter(source=SOURCE, reason=reason, detail=detail, ts_ms=now_ms,
                             payload=(msg.value() or b"").decode("utf-8", "replace"),
                             key=key.decode("utf-8", "replace") if key else None,
                             topic=msg.topic(), partition=msg.partition(), offset=msg.offset())
        self.producer.produce(self.settings.topic_dlq, SOURCE,
                              letter.model_dump_json().encode())

    # -- outputs -------------------------------------------------------------------------

    def _carry_out(self, actions: list[Action]) -> None:
        s = self.settings
        for a in actions:
            if isinstance(a, Send):
                self.producer.produce(s.topic_commands, a.command.unit_id,
                                      a.command.model_dump_json().encode())
                metrics.CONTROL_COMMANDS.labels(a.command.kind).inc()
            elif isinstance(a, Answer):
                self.producer.produce(s.topic_command_results, a.result.unit_id,
                                      a.result.model_dump_json().encode())
        for a in actions:  # the slower writes after every command is on its way
            if isinstance(a, Audit):
                self.audit.append(a.actor, a.action, target=a.target, outcome=a.outcome,
                                  details=a.details, now_ms=self._now_ms())
            elif isinstance(a, Raise):
                alert = a.alert
                payload = alert.model_dump_json()
                self.producer.produce(s.topic_alerts, alert.scope_id, payload.encode())
                pipe = self.redis.pipeline(transaction=False)
                key = alerts_key(alert.site_id or "fleet")
                if alert.state == "raised":
                    pipe.hset(key, alert.alert_id, payload)
                else:
                    pipe.hdel(key, alert.alert_id)
                publish(pipe, "alerts", payload)
                alarm = alert_alarm(self.monitoring.alarms, alert)
                if alarm is not None:  # an alarm too, in the breach lifecycle
                    self.producer.produce(s.topic_breaches, alarm.asset_id,
                                          alarm.model_dump_json().encode())
                    write_alarm(pipe, alarm)
                pipe.execute()
        if self.producer.failed:
            failed, self.producer.failed = self.producer.failed, []
            log.error("%d records refused by the broker, first: %s", len(failed), failed[0])

    def _publish_views(self, now_ms: int, *, every: bool = False) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for uc in self.loop.units.values():
            if uc.changed or every:
                uc.changed = False
                pipe.hset(control_key(uc.site_id), uc.unit.id,
                          self.loop.view(uc, now_ms).model_dump_json())
        pipe.set(CONTROL_ALIVE_KEY, now_ms)
        pipe.execute()
        states = Counter(uc.state.value for uc in self.loop.units.values())
        for state in State:
            metrics.CONTROL_UNITS.labels(state.value).set(states.get(state.value, 0))
        persisted = json.dumps(self.loop.persisted(), sort_keys=True)
        if persisted != self._persisted:
            write_state(self.state_file, self.loop.persisted())
            self._persisted = persisted

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _active_breaches(self) -> None:
        """Breaches raised while the loop was away: the active ones the flows keep."""
        now_ms = self._now_ms()
        actions: list[Action] = []
        for site in self.fleet.sites:
            for raw in self.redis.hvals(alarms_key(site.id)):
                try:
                    actions += self.loop.on_breach(BreachEvent.model_validate_json(raw), now_ms)
                except ValidationError:
                    log.warning("an active breach in Redis does not validate: skipped")
        self._carry_out(actions)

    def _assign(self) -> None:
        """Every partition of every input topic, from its end (its high watermark now, so
        that whatever is produced once `ready` is set is read). Assigned, not subscribed:
        no group to join (a join takes seconds; one loop reads everything anyway)."""
        metadata = self.consumer.list_topics(timeout=10)
        assignment = []
        for t in self.topics:
            for p in metadata.topics[t].partitions:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(t, p),
                                                              timeout=10)
                assignment.append(TopicPartition(t, p, high))
        self.consumer.assign(assignment)
        self.ready.set()

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._assign()
        self._active_breaches()
        self._publish_views(self._now_ms(), every=True)
        units = self.loop.units.values()
        log.info("control loop: %d units (%s)", len(self.loop.units), ", ".join(
            f"{m}: {sum(1 for u in units if self.loop.mode(u) == m)}"
            for m in sorted({self.loop.mode(u) for u in units})))
        last_tick = last_view = last_lag = 0.0
        read = {t: metrics.CONSUMER_RECORDS.labels(SOURCE, t) for t in self.topics}
        try:
            while not stop.is_set():
                for msg in self.consumer.consume(500, timeout=0.02):
                    if msg.error() is not None:
                        log.warning("consumer: %s", msg.error())
                        continue
                    self.handled += 1
                    if (counter := read.get(msg.topic() or "")) is not None:
                        counter.inc()
                    self._carry_out(self._handle(msg, self._now_ms()))
                now = self.clock()
                if now - last_tick >= TICK_S:
                    last_tick = now
                    with metrics.CONTROL_TICK_SECONDS.time():
                        self._carry_out(self.loop.tick(int(now * 1000)))
                if now - last_view >= VIEW_S:
                    last_view = now
                    self._publish_views(int(now * 1000))
                if now - last_lag >= LAG_S:
                    last_lag = now
                    metrics.record_lag(self.consumer, SOURCE)
        finally:
            self._publish_views(self._now_ms(), every=True)
            self.consumer.close()
            self.producer.flush(10)
            self.producer.close()


def run_control(settings: Settings) -> int:
    """`bessmon control run`: until SIGINT or SIGTERM."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service = ControlService(settings)
    service.run(stop)
    return 0
