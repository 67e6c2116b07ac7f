"""The control loop as a process (control/service.py) against a real broker and Redis: what
it reads, what it sends, what it keeps — without a device (the connector's side is tested in
tests/connectors/test_modbus_commands.py, the whole loop in tests/control/test_protection.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from confluent_kafka import Message

from connectors.api_store import ApiStore
from connectors.audit import AuditLog, verify
from connectors.kafka import CheckedProducer, read_topic
from connectors.redis_store import CONTROL_ALIVE_KEY, alarms_key, control_key
from connectors.settings import Settings
from contracts.control import MODE_STOP, MODE_TAG, ControlCommand, UnitControlView
from contracts.errors import InvalidInput
from contracts.events import AssetReading, BreachEvent, DeadLetter, TelemetrySample
from contracts.fleet import Fleet
from control.service import ControlService, state_path

UNIT = "nordvik-u01"
BLOCK = "nordvik-u01-i1-b1"


class Running:
    def __init__(self, settings: Settings) -> None:
        self.service = ControlService(settings)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.service.ready.wait(30), "partitions never assigned"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def control(settings: Settings, redis_client: redis.Redis) -> Iterator[Callable[[], Running]]:
    for site in ("nordvik", "elbe", "mesa"):
        redis_client.delete(control_key(site), alarms_key(site))
    started: list[Running] = []

    def start() -> Running:
        started.append(Running(settings))
        return started[-1]

    yield start
    for r in started:
        r.close()


def produce(settings: Settings, topic: str, key: str, value: bytes) -> None:
    p = CheckedProducer(settings.require_kafka())
    p.produce(topic, key, value)
    p.flush(10)
    p.close()


def sample(ts_ms: int, mode: int = 0) -> bytes:
    s = TelemetrySample(device_id=UNIT, ts_ms=ts_ms, assets=(
        AssetReading(id=UNIT, tags={"status_code": 0, MODE_TAG: mode, "soc_pct": 50.0}),
        AssetReading(id=BLOCK, tags={"status_code": 0, "cell_temp_max_c": 30.0})))
    return s.model_dump_json().encode()


def critical(ts_ms: int, state: str = "raised") -> BreachEvent:
    return BreachEvent.model_validate({
        "breach_id": f"cell-temp-high:critical:{BLOCK}:{ts_ms}", "rule_id": "cell-temp-high",
        "kind": "limit", "asset_id": BLOCK, "site_id": "nordvik", "tag": "cell_temp_max_c",
        "severity": "critical", "state": state, "raised_ms": ts_ms, "ts_ms": ts_ms,
        "value": 56.0, "threshold": 55.0, "message": "hot"})


def until(what: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("not within the deadline")


def view(r: redis.Redis, unit: str = UNIT) -> UnitControlView | None:
    raw = r.hget(control_key("nordvik"), unit)
    return UnitControlView.model_validate_json(raw) if raw else None


def commands(settings: Settings) -> list[ControlCommand]:
    return [ControlCommand.model_validate_json(m.value() or b"")
            for m in read_topic(settings.require_kafka(), settings.topic_commands, idle_s=0.3,
                                timeout_s=5)]


def test_a_critical_breach_becomes_a_stop_command_audited_and_persisted(
        settings: Settings, redis_client: redis.Redis, control: Callable[[], Running]) -> None:
    control()
    now = int(time.time() * 1000)
    produce(settings, settings.topic_telemetry, UNIT, sample(now))
    until(lambda: (v := view(redis_client)) is not None and v.state == "RUNNING")
    assert int(redis_client.get(CONTROL_ALIVE_KEY) or 0) > now - 5000
    produce(settings, settings.topic_breaches, BLOCK,
            critical(now).model_dump_json().encode())
    stop = until(lambda: [c for c in commands(settings)
                          if {w.tag: w.value for w in c.writes}.get(MODE_TAG) == MODE_STOP])
    assert stop[0].unit_id == UNIT and "critical breach" in stop[0].reason
    v = until(lambda: (v := view(redis_client)) is not None and v.state == "ERROR" and v)
    assert [lim.severity for lim in v.limits] == ["critical"]
    assert v.last_command is not None and v.last_command.command_id == stop[0].command_id
    entries = AuditLog(ApiStore(settings.api_db_path)).store.connect().execute(
        "SELECT actor, action, target FROM audit").fetchall()
    assert ("control-loop", "control.auto.stop", UNIT) in entries
    assert verify(ApiStore(settings.api_db_path)).ok  # the chain holds
    saved = json.loads(state_path(settings).read_text())
    assert saved["units"][UNIT]["machine"]["state"] == "ERROR"
    # The stop is an alarm for people too (an alert in the breach lifecycle): in the site's
    # active alarms and on the alarms topic, which the loop itself reads and leaves alone.
    alarms = until(lambda: [b for raw in redis_client.hvals(alarms_key("nordvik"))
                            if (b := BreachEvent.model_validate_json(raw)).kind == "alert"])
    assert [(a.rule_id, a.asset_id, a.severity) for a in alarms] == [
        ("alert.control_action", UNIT, "major")]
    topic = [BreachEvent.model_validate_json(m.value() or b"") for m in read_topic(
        settings.require_kafka(), settings.topic_breaches, idle_s=0.3, timeout_s=5)]
    assert alarms[0].breach_id in {b.breach_id for b in topic}


def test_a_restart_resumes_latched_and_picks_up_active_breaches(
        settings: Settings, redis_client: redis.Redis, control: Callable[[], Running]) -> None:
    first = control()
    now = int(time.time() * 1000)
    produce(settings, settings.topic_telemetry, UNIT, sample(now))
    until(lambda: (v := view(redis_client)) is not None and v.state == "RUNNING")
    op = ControlCommand(command_id="op-1", unit_id=UNIT, kind="estop", actor="eng",
                        reason="drill", ts_ms=now)
    produce(settings, settings.topic_commands, UNIT, op.model_dump_json().encode())
    until(lambda: (v := view(redis_client)) is not None and v.state == "STOPPED")
    first.close()
    # A breach raised while the loop was away, kept active by the flows in Redis.
    elbe_unit, elbe_block = "elbe-u01", "elbe-u01-i1-b1"
    b = critical(now).model_copy(update={"asset_id": elbe_block, "site_id": "elbe",
                                         "breach_id": f"x:critical:{elbe_block}:{now}"})
    redis_client.hset(alarms_key("elbe"), b.breach_id, b.model_dump_json())
    control()
    assert until(lambda: (v := view(redis_client)) is not None and v.state == "BOOT")
    produce(settings, settings.topic_telemetry, UNIT, sample(int(time.time() * 1000)))
    assert until(lambda: (v := view(redis_client)) is not None and v.state == "STOPPED")
    elbe = TelemetrySample(device_id=elbe_unit, ts_ms=int(time.time() * 1000), assets=(
        AssetReading(id=elbe_unit, tags={"status_code": 0, MODE_TAG: 0}),))
    produce(settings, settings.topic_telemetry, elbe_unit, elbe.model_dump_json().encode())

    def elbe_view() -> UnitControlView | None:
        raw = redis_client.hget(control_key("elbe"), elbe_unit)
        return UnitControlView.model_validate_json(raw) if raw else None
    assert until(lambda: (v := elbe_view()) is not None and v.state == "ERROR")


def test_an_operator_command_is_answered(
        settings: Settings, redis_client: redis.Redis, control: Callable[[], Running]) -> None:
    control()
    now = int(time.time() * 1000)
    start = ControlCommand(command_id="op-start", unit_id=UNIT, kind="start", actor="eng",
                           reason="go", ts_ms=now)
    produce(settings, settings.topic_commands, UNIT, start.model_dump_json().encode())

    def answers() -> list[Message]:
        return [m for m in read_topic(settings.require_kafka(),
                                      settings.topic_command_results, idle_s=0.3, timeout_s=5)
                if b"op-start" in (m.value() or b"")]
    answer = json.loads(until(answers)[0].value())
    # Not seen yet: the unit is reconciling (BOOT), a start is refused with the reason.
    assert answer["outcome"] == "refused" and "reconciling" in answer["detail"]


def test_bad_records_go_to_the_dead_letter_topic_and_the_loop_goes_on(
        settings: Settings, redis_client: redis.Redis, control: Callable[[], Running]) -> None:
    running = control()
    produce(settings, settings.topic_breaches, "x", b'{"not": "a breach"}')
    produce(settings, settings.topic_commands, UNIT, b"\xff\xfe")
    letters = until(lambda: [DeadLetter.model_validate_json(m.value() or b"") for m in
                             read_topic(settings.require_kafka(), settings.topic_dlq,
                                        idle_s=0.3, timeout_s=5)
                             if b'"source":"control"' in (m.value() or b"")])
    until(lambda: len([m for m in read_topic(settings.require_kafka(), settings.topic_dlq,
                                             idle_s=0.3, timeout_s=5)
                       if b'"source":"control"' in (m.value() or b"")]) == 2)
    assert {d.topic for d in letters} <= {settings.topic_breaches, settings.topic_commands}
    assert all(d.reason == "invalid" and d.detail for d in letters)
    produce(settings, settings.topic_telemetry, UNIT, sample(int(time.time() * 1000)))
    until(lambda: (v := view(redis_client)) is not None and v.state == "RUNNING")
    assert running.thread.is_alive()


def test_an_unreadable_state_file_stops_the_start(settings: Settings,
                                                  example_fleet: Fleet) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("{broken")
    with pytest.raises(InvalidInput) as info:
        ControlService(settings)
    assert str(path) in str(info.value) and "latched" in str(info.value)
