"""The Modbus connector executes its units' commands and enforces the hard limits: commands on
the real broker, executed by `run_modbus_connector` against the simulator's controllers
served over real Modbus TCP; every outcome is read from the results topic and checked in the
simulator's models."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from pydantic import ValidationError

from connectors.kafka import CheckedProducer, ensure_topics
from connectors.modbus.commands import (
    ESTOP_WRITES,
    INVALID_COMMAND,
    HardLimitGuard,
    applicable_limits,
    hard_limit_reason,
    ignored_because,
    validation_problem,
    writes_of,
)
from connectors.modbus.devices import DeviceList, dump_devices
from connectors.modbus.poller import DeviceMap
from connectors.modbus.profile import load_profiles
from connectors.modbus.service import run_modbus_connector
from connectors.settings import EXAMPLE_CONTROL, EXAMPLE_PROFILES, Settings
from contracts.control import (
    MODE_STOP,
    CommandResult,
    ControlCommand,
    DeviceWrite,
    HardLimit,
    UnitReading,
    parse_control,
)
from contracts.errors import InvalidInput
from contracts.events import AssetReading, DeadLetter, TelemetrySample
from contracts.fleet import Fleet, Unit
from infra.ports import free_port
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import HOST, device, wait_listening

log = logging.getLogger(__name__)
PROFILES = load_profiles(EXAMPLE_PROFILES)
CONTROL = parse_control(EXAMPLE_CONTROL.read_text(), str(EXAMPLE_CONTROL))


# --- the running connector ------------------------------------------------------------------


class Reader:
    """A topic read from its start while the test runs."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.records: list[Message] = []

    async def until(self, wanted: Callable[[list[Message]], bool], what: str,
                    timeout_s: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while True:
            batch = await asyncio.to_thread(self.consumer.consume, 500, 0.05)
            self.records += [m for m in batch if m.error() is None]
            if wanted(self.records):
                return self.records
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} on {self.topic} within {timeout_s:.0f} s "
                                     f"({len(self.records)} records)")


@dataclass
class Rig:
    """The connector of a site's first two units, running, and what a test needs of it."""

    settings: Settings
    sim: Simulator
    units: tuple[Unit, ...]  # polled
    other: Unit  # served by the gateway, not polled by this connector
    results: Reader
    producer: CheckedProducer

    def send(self, command: ControlCommand | bytes, key: str | None = None) -> None:
        value = command if isinstance(command, bytes) else command.model_dump_json().encode()
        unit = key or (command.unit_id if isinstance(command, ControlCommand) else "")
        self.producer.produce(self.settings.topic_commands, unit, value)
        self.producer.flush(5)

    def of(self) -> list[CommandResult]:
        return [CommandResult.model_validate_json(m.value() or b"")
                for m in self.results.records]

    async def result(self, command_id: str, timeout_s: float = 10.0) -> CommandResult:
        await self.results.until(lambda _: any(r.command_id == command_id for r in self.of()),
                                 f"result of {command_id}", timeout_s)
        return next(r for r in self.of() if r.command_id == command_id)


def command(unit_id: str, kind: str, *writes: tuple[str, float],
            age_s: float = 0.0) -> ControlCommand:
    return ControlCommand.model_validate({
        "command_id": f"c-{uuid.uuid4().hex[:12]}", "unit_id": unit_id, "kind": kind,
        "actor": "control-loop", "reason": f"test {kind}",
        "ts_ms": int((time.time() - age_s) * 1000),
        "writes": [{"tag": t, "value": v} for t, v in writes]})


@contextlib.asynccontextmanager
async def rig(settings: Settings, example_fleet: Fleet, tmp_path: Path,
              sim: Simulator) -> AsyncIterator[Rig]:
    bootstrap = settings.require_kafka()
    suffix = uuid.uuid4().hex[:8]  # topics of its own, whatever the fixture gives
    settings = settings.model_copy(update={"topic_commands": f"t-{suffix}.commands",
                                           "topic_command_results": f"t-{suffix}.results"})
    ensure_topics(bootstrap, [settings.topic_commands, settings.topic_command_results],
                  settings.topic_partitions)
    site = example_fleet.sites[0]
    port = free_port(HOST)
    units = site.units[:2]
    devices_file = tmp_path / "devices.yaml"
    devices_file.write_text(dump_devices(DeviceList(devices=tuple(
        device(u, port, k + 1) for k, u in enumerate(units)))))
    server = sim.modbus_server(site.units, (HOST, port))
    serving = asyncio.ensure_future(server.serve_forever())
    stop, ready = asyncio.Event(), asyncio.Event()
    producer = CheckedProducer(bootstrap, **{"linger.ms": 0})
    results = Reader(bootstrap, settings.topic_command_results)
    connector: asyncio.Future[None] | None = None
    try:
        await wait_listening(port)
        connector = asyncio.ensure_future(run_modbus_connector(settings, devices_file, stop,
                                                               commands_ready=ready))
        ready_or_dead = asyncio.ensure_future(ready.wait())
        await asyncio.wait([ready_or_dead, connector], timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)
        if connector.done():
            connector.result()  # raises what stopped it
        assert ready.is_set(), "the connector did not read its commands within 10 s"
        yield Rig(settings, sim, units, site.units[2], results, producer)
    finally:
        stop.set()
        if connector is not None:
            await asyncio.wait_for(connector, 15)
        results.consumer.close()
        producer.close()
        await server.shutdown()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


async def samples_after(reader: Reader, device_id: str, after_ms: float, n: int,
                        timeout_s: float = 10.0) -> list[TelemetrySample]:
    """Wait for `n` samples of the device stamped after `after_ms`; returns them."""
    def of(records: list[Message]) -> list[TelemetrySample]:
        return [s for s in (TelemetrySample.model_validate_json(m.value() or b"")
                            for m in records if m.key() == device_id.encode())
                if s.ts_ms > after_ms]

    await reader.until(lambda rs: len(of(rs)) >= n, f"{n} samples of {device_id}", timeout_s)
    return of(reader.records)


# --- commands -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_commands_are_written_verified_and_answered(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=3)

    async def scenario() -> None:
        async with rig(settings, example_fleet, tmp_path, sim) as r:
            first, second = r.units
            model = sim.models[first.id]
            sim.models[first.id].apply_control("active_power_setpoint_kw", 800.0)

            estop = command(first.id, "estop")
            r.send(estop)
            done = await r.result(estop.command_id)
            assert (model.control_mode, model.setpoint_kw) == (MODE_STOP, 0.0)
            assert (done.outcome, done.by, done.kind, done.attempts) == (
                "written", "connector", "estop", 2)
            assert done.read_back == {"active_power_setpoint_kw": 0.0, "control_mode": 2.0}
            assert (done.actor, done.reason) == ("control-loop", "test estop")
            assert done.detail.startswith("emergency stop: wrote active_power_setpoint_kw = 0, "
                                          "control_mode = 2, each read back equal")
            assert 0 < done.latency_ms < 5000

            write = command(second.id, "write", ("active_power_limit_kw", 1200.0),
                            ("control_mode", 1))
            r.send(write)
            done = await r.result(write.command_id)
            assert (done.outcome, done.attempts) == ("written", 2), done.detail
            assert done.read_back == {"active_power_limit_kw": 1200.0, "control_mode": 1.0}
            assert (sim.models[second.id].limit_kw, sim.models[second.id].control_mode) == (
                1200.0, 1)

            # The device clamps to its rated power: read back different, tried 1 + 2 times.
            clamped = command(second.id, "write", ("active_power_limit_kw", 99_999.0),
                              ("control_mode", 0))
            r.send(clamped)
            done = await r.result(clamped.command_id)
            assert (done.outcome, done.attempts) == ("mismatch", 1 + CONTROL.write_retries)
            assert done.read_back == {"active_power_limit_kw": second.rated_power_kw}
            assert f"wrote 99999.0, the device holds {second.rated_power_kw}" in done.detail
            assert done.detail.endswith("(3 attempts); not attempted: control_mode = 0")
            assert sim.models[second.id].control_mode == 1  # the rest was not written

            # What the profile forbids is refused before anything is sent, and not retried.
            invalid = command(second.id, "write", ("control_mode", 3))
            r.send(invalid)
            done = await r.result(invalid.command_id)
            assert (done.outcome, done.attempts, done.read_back) == ("refused", 1, {})
            assert done.detail.endswith("control_mode at 10: 3.0 is outside [0.0, 2.0]")

            # Commands are read from the end only: the latency of one write, 20 times.
            latencies = []
            for k in range(20):
                c = command(second.id, "write", ("active_power_limit_kw", 1000.0 + k))
                r.send(c)
                latencies.append((await r.result(c.command_id)).latency_ms)
            latencies.sort()
            log.warning("command → read-back latency over 20 writes: median %.1f ms, max "
                        "%.1f ms", statistics.median(latencies), latencies[-1])
            assert statistics.median(latencies) < 500

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_what_is_not_a_command_of_this_connector_is_not_executed(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=3)

    async def scenario() -> None:
        async with rig(settings, example_fleet, tmp_path, sim) as r:
            first = r.units[0]
            dlq = Reader(settings.require_kafka(), settings.topic_dlq)
            try:
                r.send(b'{"command_id": "x", "kind": "launch"', key=first.id)
                await dlq.until(lambda rs: bool(rs), "dead letter")
                dead = DeadLetter.model_validate_json(dlq.records[0].value() or b"")
            finally:
                dlq.consumer.close()
            assert (dead.reason, dead.key, dead.source) == (INVALID_COMMAND, first.id,
                                                            "connectors.modbus")
            assert f"{r.settings.topic_commands}[" in dead.detail
            assert "not a command" in dead.detail and '\\"kind\\": \\"launch\\"' in \
                dead.payload

            old = command(first.id, "estop", age_s=60)  # a restarted connector must not
            foreign = command(r.other.id, "estop")  # another connector's unit
            operator = command(first.id, "stop")  # the control loop's
            for c in (old, foreign, operator):
                r.send(c)
            after = command(first.id, "write", ("active_power_limit_kw", 700.0))
            r.send(after)  # the connector still executes the next command
            done = await r.result(after.command_id)
            assert done.outcome == "written"
            ids = {x.command_id for x in r.of()}
            assert not ids & {old.command_id, foreign.command_id, operator.command_id}
            assert sim.models[first.id].control_mode == 0
            assert sim.models[r.other.id].control_mode == 0

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_unit_that_does_not_answer_is_a_timeout(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=3)

    async def scenario() -> None:
        async with rig(settings, example_fleet, tmp_path, sim) as r:
            first, second = r.units
            sim.inject_fault(second.id, 60, kind="comms_drop")
            write = command(second.id, "write", ("active_power_limit_kw", 900.0))
            estop = command(first.id, "estop")  # another unit is not held up
            r.send(write)
            r.send(estop)
            assert (await r.result(estop.command_id)).outcome == "written"
            done = await r.result(write.command_id)
            assert (done.outcome, done.attempts, done.read_back) == (
                "timeout", 1 + CONTROL.write_retries, {})
            assert "got no answer; whether the device holds 900.0 is unknown" in done.detail
            assert sim.models[second.id].limit_kw is None
            assert done.latency_ms > 3 * 300  # three attempts of the 0.3 s timeout

            # While one write waits for its answer, an emergency stop drops the writes queued
            # behind it: a setpoint sent before the stop must not run after it.
            slow = command(second.id, "write", ("active_power_limit_kw", 800.0))
            queued = command(second.id, "write", ("control_mode", 1))
            estop = command(second.id, "estop")
            for c in (slow, queued, estop):
                r.send(c)
            dropped = await r.result(queued.command_id)
            assert (dropped.outcome, dropped.attempts) == ("failed", 0)
            assert dropped.detail == (f"not executed: superseded by the emergency stop "
                                      f"{estop.command_id} (test estop)")
            sim.clear_fault(second.id)  # the stop gets through once the unit answers again
            stopped = await r.result(estop.command_id)
            assert stopped.outcome == "written", stopped.detail
            assert sim.models[second.id].control_mode == MODE_STOP
            # The write under way when the stop came went on (or had not started: dropped).
            assert (await r.result(slow.command_id)).outcome in ("written", "failed")

    asyncio.run(scenario())


# --- hard limits ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_unit_beyond_a_hard_limit_is_stopped_once_and_again_when_restarted(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=3)
    unit = example_fleet.sites[0].units[0]
    block = unit.inverters[1].blocks[2]

    async def scenario() -> None:
        async with rig(settings, example_fleet, tmp_path, sim) as r:
            telemetry = Reader(settings.require_kafka(), settings.topic_telemetry)
            try:
                sim.set_value(block.id, "cell_temp_max_c", 61.5)
                await r.results.until(lambda _: len(r.of()) == 1, "a hard-limit stop")
                trip = r.of()[0]
                assert sim.models[unit.id].control_mode == MODE_STOP
                assert (trip.unit_id, trip.kind, trip.by, trip.actor, trip.outcome) == (
                    unit.id, "estop", "connector", "connector", "written")
                assert trip.reason == "hard limit cell-overtemp: cell_temp_max_c 61.5 above 57"
                assert trip.command_id.startswith("hard-limit-")
                # Polls go on, the unit reports itself stopped: no second stop.
                await samples_after(telemetry, unit.id, trip.ts_ms, 5)
                # The control loop starts it again; still too hot: stopped again.
                restart = command(unit.id, "write", ("control_mode", 0))
                r.send(restart)
                assert (await r.result(restart.command_id)).outcome == "written"
                await r.results.until(lambda _: len(r.of()) == 3, "a second stop")
                again = r.of()[2]
                assert (again.kind, again.actor, again.outcome) == (
                    "estop", "connector", "written")
                assert sim.models[unit.id].control_mode == MODE_STOP
                await samples_after(telemetry, unit.id, again.ts_ms, 5)
                assert len(r.of()) == 3
            finally:
                telemetry.consumer.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_passive_unit_is_observed_not_stopped(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    control = tmp_path / "control.yaml"
    control.write_text(EXAMPLE_CONTROL.read_text().replace("nordvik: normal",
                                                           "nordvik: passive"))
    settings = settings.model_copy(update={"control_file": control})
    sim = Simulator(example_fleet, PROFILES, seed=3)
    unit = example_fleet.sites[0].units[0]
    block = unit.inverters[0].blocks[0]

    async def scenario() -> None:
        async with rig(settings, example_fleet, tmp_path, sim) as r:
            telemetry = Reader(settings.require_kafka(), settings.topic_telemetry)
            try:
                pinned_at = time.time() * 1000
                sim.set_value(block.id, "cell_temp_max_c", 70.0)
                await samples_after(telemetry, unit.id, pinned_at, 8)
            finally:
                telemetry.consumer.close()
            assert sim.models[unit.id].control_mode == 0
            await r.results.until(lambda _: True, "nothing")
            assert r.of() == []

    asyncio.run(scenario())


def test_a_broken_control_file_stops_the_connector_before_it_starts(
        settings: Settings, tmp_path: Path) -> None:
    control = tmp_path / "control.yaml"
    control.write_text("hard_limits:\n  - {id: hot, tag: cell_temp_max_c}\n")
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - {id: d, asset: nordvik-u01, host: 127.0.0.1, port: 1, "
                       "unit_id: 1, profile: bess-unit-v1}\n")
    settings = settings.model_copy(update={"control_file": control})
    with pytest.raises(InvalidInput) as caught:
        asyncio.run(run_modbus_connector(settings, devices))
    assert str(caught.value).startswith(f"{control}:2: hard_limits[0]")
    assert "exactly one of above and below" in str(caught.value)


# --- pure rules -----------------------------------------------------------------------------


def test_which_commands_are_executed() -> None:
    now = time.time() * 1000
    estop = command("u1", "estop")
    assert ignored_because(estop, {"u1"}, now) is None
    assert ignored_because(estop, {"u2"}, now) == "unit u1 is not polled here"
    assert ignored_because(command("u1", "reset"), {"u1"}, now) == \
        "kind reset is the control loop's"
    old = command("u1", "write", ("control_mode", 1), age_s=31)
    why = ignored_because(old, {"u1"}, now)
    assert why is not None and why.endswith("more than 30 s: not replayed")
    assert ignored_because(old, {"u1"}, now, max_age_s=60) is None
    assert writes_of(estop) == ESTOP_WRITES == (
        DeviceWrite(tag="active_power_setpoint_kw", value=0.0),
        DeviceWrite(tag="control_mode", value=2))
    assert writes_of(old) == (DeviceWrite(tag="control_mode", value=1),)


def test_hard_limit_helpers() -> None:
    hot = HardLimit(id="hot", tag="cell_temp_max_c", of="any_block", above=57)
    low = HardLimit(id="low", tag="soc_pct", below=1)
    reading = UnitReading(0, {"soc_pct": 0.5}, (), ({"cell_temp_max_c": 58.25},
                                                   {"cell_temp_max_c": 20.0}))
    assert hard_limit_reason(hot, reading) == "hard limit hot: cell_temp_max_c 58.25 above 57"
    assert hard_limit_reason(low, reading) == "hard limit low: soc_pct 0.5 below 1"
    assert applicable_limits((hot, low), {"unit": {"soc_pct"}}) == (low,)
    assert applicable_limits((hot, low), {"block": {"cell_temp_max_c"}}) == (hot,)
    with pytest.raises(ValidationError) as caught:
        ControlCommand.model_validate_json(b'{"kind": "write", "unit_id": "u"}')
    problem = validation_problem(caught.value, limit=2)
    assert problem.startswith("command_id: Field required; actor: Field required; and ")


def test_the_guard_stops_once_per_crossing(example_fleet: Fleet) -> None:
    unit = example_fleet.sites[0].units[0]
    block = unit.inverters[0].blocks[0]
    m = DeviceMap.build(device(unit, 1, 1), example_fleet, PROFILES)
    trips: list[tuple[str, str]] = []
    guard = HardLimitGuard(CONTROL, example_fleet,
                           lambda u, h, r: trips.append((u, hard_limit_reason(h, r))))

    def sample(ts_ms: int, temp: float, mode: int) -> TelemetrySample:
        return TelemetrySample(device_id=unit.id, ts_ms=ts_ms, assets=(
            AssetReading(id=unit.id, tags={"control_mode": mode, "soc_pct": 50.0}),
            AssetReading(id=block.id, tags={"cell_temp_max_c": temp})))

    def result(ts_ms: int, mode: float | None) -> CommandResult:
        return CommandResult(command_id="c", unit_id=unit.id, kind="estop", by="connector",
                             outcome="written" if mode is not None else "timeout",
                             ts_ms=ts_ms, read_back={} if mode is None else {
                                 "control_mode": mode})

    t = 1_800_000_000_000
    guard.on_sample(m, sample(t, 40.0, 0))
    assert trips == [] and guard.guarded(unit.id)
    guard.on_sample(m, sample(t + 100, 58.0, 0))
    assert trips == [(unit.id, "hard limit cell-overtemp: cell_temp_max_c 58 above 57")]
    guard.on_sample(m, sample(t + 200, 58.0, 0))  # the stop is under way
    guard.stopped(unit.id, result(t + 250, 2.0))
    guard.on_sample(m, sample(t + 200, 58.0, 0))  # read before the stop ended
    guard.on_sample(m, sample(t + 300, 58.0, 2))  # stopped
    assert len(trips) == 1
    guard.on_sample(m, sample(t + 400, 58.0, 0))  # started again, still hot
    assert len(trips) == 2
    guard.stopped(unit.id, result(t + 450, None))  # the stop did not take: try again
    guard.on_sample(m, sample(t + 500, 58.0, 0))
    assert len(trips) == 3

    passive = CONTROL.model_copy(update={"sites": {}})  # default_mode: passive
    quiet = HardLimitGuard(passive, example_fleet, lambda u, h, r: trips.append(("", "")))
    quiet.on_sample(m, sample(t, 99.0, 0))
    assert len(trips) == 3 and not quiet.guarded(unit.id)
