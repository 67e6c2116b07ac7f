"""Per-device health: a device whose gateway goes away turns offline, reconnection backs off
exponentially, and the device comes back degraded, then online; every change is one
`DeviceHealth` event, on the health topic when the connector runs as a service."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path

import pytest

from connectors.kafka import read_topic
from connectors.modbus.devices import DeviceList, dump_devices
from connectors.modbus.health import HealthTracker
from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.modbus.profile import load_profiles
from connectors.modbus.service import run_modbus_connector
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.events import DeviceHealth, TelemetrySample, device_health_event
from contracts.fleet import Fleet
from infra.ports import free_port
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import HOST, collector, device, gateway, running, until
from tests.waiting import until_on_topic

PROFILES = load_profiles(EXAMPLE_PROFILES)


@pytest.mark.parametrize(("outcomes", "states"), [
    # ok: answered in 0.01 s; slow: answered after 0.9 s; fail; down: connection down
    (["ok", "ok"], ["online", None]),
    (["ok", "slow", "ok", "ok", "ok", "ok"], ["online", "degraded", None, None, None, "online"]),
    (["ok", "fail", "fail", "ok", "ok", "ok", "ok"],
     ["online", "degraded", "offline", "degraded", None, None, "online"]),
    (["ok", "down", "ok"], ["online", "offline", "degraded"]),
    (["fail", "fail", "fail"], ["degraded", "offline", None]),
])
def test_health_follows_the_last_polls(outcomes: list[str], states: list[str | None]) -> None:
    tracker = HealthTracker("d1", window=4, offline_after=2, latency_budget_s=0.5)
    seen: list[str | None] = []
    previous: str | None = None
    for ts, outcome in enumerate(outcomes):
        if outcome in ("ok", "slow"):
            event = tracker.success(ts, 0.9 if outcome == "slow" else 0.01)
        else:
            event = tracker.failure(ts, "no answer", connection_down=outcome == "down")
        seen.append(None if event is None else event.state)
        if event is not None:
            assert event.previous == previous and event.ts_ms == ts
            assert event.consecutive_failures == tracker.consecutive_failures
            previous = event.state
    assert seen == states


@pytest.mark.timeout(30)
def test_a_gateway_going_away_and_coming_back(example_fleet: Fleet) -> None:
    site = example_fleet.sites[0]
    units = site.units[:2]
    sim = Simulator(example_fleet, PROFILES, seed=5)
    port = free_port(HOST)
    maps = [DeviceMap.build(device(u, port, k + 1, poll_interval_s=0.05), example_fleet,
                            PROFILES) for k, u in enumerate(units)]
    out, sinks = collector()
    connector = ModbusConnector(maps, **sinks)
    gw = connector.gateways[(HOST, port)]
    ids = [u.id for u in units]

    def all_in(state: str) -> bool:
        return all(out.states(i)[-1:] == [state] for i in ids)

    async def scenario() -> tuple[int, float, dict[str, list[str]]]:
        async with running(connector):
            async with gateway(sim, site.units, port):
                await until(lambda: all_in("online"), what="online")
                assert gw.connect_attempts == 1  # one connection for both unit ids
            await until(lambda: all_in("offline"), what="offline")
            before, started = gw.connect_attempts, time.monotonic()
            # Reconnect attempts while the gateway is away: wait for a few, then see how long
            # they took (a lower bound: a loaded machine only makes them slower).
            await until(lambda: gw.connect_attempts - before >= 3, what="3 reconnect attempts")
            took = time.monotonic() - started
            attempts = gw.connect_attempts - before
            async with gateway(sim, site.units, port):
                samples_before = len(out.samples)
                await until(lambda: all_in("online") and len(out.states(ids[0])) > 3,
                            what="online again")
                assert len(out.samples) > samples_before
                # Taken while the gateway is up: once it stops, before the connector does,
                # a poll or two may fail again.
                states = {i: out.states(i) for i in ids}
            return attempts, took, states

    attempts, took, states = asyncio.run(scenario())
    for i in ids:
        assert states[i] == ["online", "offline", "degraded", "online"], out.health
        offline = next(e for e in out.health if e.device_id == i and e.state == "offline")
        assert offline.previous == "online" and offline.reason
    # Polls every 0.05 s from 2 devices (one each 0.025 s) would try ~4 times in 0.1 s;
    # backed off (0.05 s doubling to 0.2 s after each failure) 3 attempts take ≥ 0.15 s
    assert attempts >= 3 and took >= 0.15, (attempts, took)


@pytest.mark.timeout(30)
def test_reconnect_attempts_back_off_exponentially(example_fleet: Fleet) -> None:
    """A listener that accepts and hangs up at once: every attempt fails, and the time
    between attempts doubles up to its bound — seen from the server's side."""
    unit = example_fleet.sites[0].units[0]
    accepted: list[float] = []
    out, sinks = collector()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(time.monotonic())
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(hang_up, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        m = DeviceMap.build(device(unit, port, 1, poll_interval_s=0.02, timeout_s=0.1,
                                   backoff_s=0.05, backoff_max_s=0.8), example_fleet, PROFILES)
        async with server, running(ModbusConnector([m], **sinks)):
            # 6 attempts: the backoff grows 0.05 → 0.1 → 0.2 → 0.4 → 0.8 (its bound)
            await until(lambda: len(accepted) >= 6, timeout_s=10, what="6 connection attempts")

    asyncio.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(accepted)]
    # without backoff: one attempt per poll (~0.1 s timeout + 0.02 s), gaps of ~0.12 s
    assert len(accepted) >= 6, gaps
    assert gaps[0] < 0.35 and max(gaps) >= 0.7 and max(gaps) < 1.5, gaps
    assert all(later >= earlier * 0.8 for earlier, later in itertools.pairwise(gaps))
    assert out.states(unit.id) == ["offline"]
    assert not out.samples


@pytest.mark.timeout(60)
def test_the_service_publishes_health_changes(settings: Settings, example_fleet: Fleet,
                                              tmp_path: Path) -> None:
    settings = settings.model_copy(
        update={"topic_device_health": f"t-{uuid.uuid4().hex[:8]}.device.health"})
    site = example_fleet.sites[0]
    sim = Simulator(example_fleet, PROFILES, seed=2)
    closed = free_port(HOST)
    devices_file = tmp_path / "devices.yaml"

    async def scenario() -> None:
        async with gateway(sim, site.units) as port:
            good = [device(u, port, k + 1, poll_interval_s=0.2) for k, u in
                    enumerate(site.units[:2])]
            bad = device(example_fleet.sites[1].units[0], closed, 1, poll_interval_s=0.2)
            devices_file.write_text(dump_devices(DeviceList(devices=(*good, bad))))
            stop = asyncio.Event()
            task = asyncio.ensure_future(run_modbus_connector(settings, devices_file, stop))
            await until_on_topic(settings.require_kafka(), settings.topic_device_health,
                                 lambda ms: len({m.key() for m in ms}) >= 3)  # each device
            stop.set()
            await task

    asyncio.run(scenario())
    bootstrap = settings.require_kafka()
    # The state changes; a comms window (every minute, on the same topic) may be among them.
    events = [e for m in read_topic(bootstrap, settings.topic_device_health, to_end=True,
                                    timeout_s=15)
              if isinstance(e := device_health_event(m.value()), DeviceHealth)]
    by_device: dict[str, DeviceHealth] = {}
    for e in events:  # each device's first
        by_device.setdefault(e.device_id, e)
    assert {k: (e.state, e.previous, e.connector) for k, e in by_device.items()} == {
        site.units[0].id: ("online", None, "modbus"),
        site.units[1].id: ("online", None, "modbus"),
        example_fleet.sites[1].units[0].id: ("offline", None, "modbus"),
    }
    assert "cannot connect" in by_device[example_fleet.sites[1].units[0].id].reason
    samples = [TelemetrySample.model_validate_json(m.value() or b"") for m in
               read_topic(bootstrap, settings.topic_telemetry, idle_s=2, timeout_s=15)]
    assert {s.device_id for s in samples} == {u.id for u in site.units[:2]}
