"""The Modbus connector's poll figures on the device-health topic: against the simulator's
gateways — one answering, one made slow, one made silent — the service publishes, per device
and window, what its polls did (attempted, dropped, retried, their latency) beside its state
changes, each naming the device's site and gateway; polled one request at a time and in
pipelined rounds alike."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from connectors.kafka import read_topic
from connectors.modbus.devices import DeviceList, dump_devices
from connectors.modbus.profile import load_profiles
from connectors.modbus.service import run_modbus_connector
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.events import DeviceHealth, DeviceStats, device_health_event
from contracts.fleet import Fleet, Unit
from infra.ports import free_port
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import HOST, device, wait_listening
from tests.waiting import until_on_topic

PROFILES = load_profiles(EXAMPLE_PROFILES)
SLOW_S = 0.15  # every answer of the slow gateway waits this long


@contextlib.asynccontextmanager
async def served(sim: Simulator, units: tuple[Unit, ...]) -> AsyncIterator[int]:
    """The simulator's own gateway (it takes pipelined requests) for `units`, on loopback."""
    port = free_port(HOST)
    server = sim.modbus_server(units, (HOST, port))
    task = asyncio.ensure_future(server.serve_forever())
    try:
        await wait_listening(port)
        yield port
    finally:
        await server.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def slowed(sim: Simulator, unit_id: str) -> None:
    """Every read of the unit answered SLOW_S late (the simulator's action, wrapped)."""
    serve = sim._serve_read

    async def slow(unit: str, *args: Any) -> ExcCodes | None:
        if unit == unit_id:
            await asyncio.sleep(SLOW_S)
        return await serve(unit, *args)

    setattr(sim, "_serve_read", slow)  # noqa: B010  (a method replaced on this instance)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pipeline", [1, 4])
def test_the_service_publishes_poll_figures_and_changes(
        settings: Settings, example_fleet: Fleet, tmp_path: Path, pipeline: int) -> None:
    settings = settings.model_copy(update={
        "topic_device_health": f"t-{uuid.uuid4().hex[:8]}.device.health",
        "stats_every_s": 1.0})
    site = example_fleet.sites[0]
    good, slow, silent = site.units[:3]
    sim = Simulator(example_fleet, PROFILES, seed=3)
    slowed(sim, slow.id)
    sim.comms_down[silent.id] = math.inf  # it never answers
    devices_file = tmp_path / "devices.yaml"
    options = {"poll_interval_s": 0.2, "retries": 1,
               "latency_budget_s": 0.1, "pipeline": pipeline}
    ports: dict[str, int] = {}

    def windows(messages: list[Any]) -> bool:
        events = [device_health_event(m.value()) for m in messages]
        return all(sum(isinstance(e, DeviceStats) and e.device_id == u.id for e in events) >= 2
                   for u in (good, slow, silent))

    async def scenario() -> None:
        async with served(sim, (good,)) as p1, served(sim, (slow,)) as p2, \
                served(sim, (silent,)) as p3:
            ports.update({good.id: p1, slow.id: p2, silent.id: p3})
            # A slow answer takes SLOW_S per block (a poll reads a few): well within 1.5 s.
            listed = [device(u, ports[u.id], 1, **options,
                             timeout_s=0.3 if u is silent else 1.5)
                      for u in (good, slow, silent)]
            devices_file.write_text(dump_devices(DeviceList(devices=tuple(listed))))
            stop = asyncio.Event()
            task = asyncio.ensure_future(run_modbus_connector(settings, devices_file, stop))
            try:
                await until_on_topic(settings.require_kafka(), settings.topic_device_health,
                                     windows)
            finally:
                stop.set()
                await task

    asyncio.run(scenario())
    events = [device_health_event(m.value()) for m in read_topic(
        settings.require_kafka(), settings.topic_device_health, idle_s=1, timeout_s=15)]
    for unit in (good, slow, silent):
        mine = [e for e in events if e.device_id == unit.id]
        assert {(e.site_id, e.gateway) for e in mine} == {(site.id, f"{HOST}:{ports[unit.id]}")}
    stats = {u.id: [e for e in events if isinstance(e, DeviceStats) and e.device_id == u.id]
             for u in (good, slow, silent)}
    states = {u.id: [e.state for e in events if isinstance(e, DeviceHealth)
                     and e.device_id == u.id] for u in (good, slow, silent)}
    for windows_of in stats.values():
        assert all(w.end_ms - w.start_ms == 1000 and w.start_ms % 1000 == 0 and w.polls > 0
                   for w in windows_of)
        starts = [w.start_ms for w in windows_of]
        assert starts == sorted(set(starts))  # one window each, in order
    # Answering: nothing dropped or retried, a latency for the polls answered.
    assert all(w.failed == 0 and w.retries == 0 and w.latency_p50_ms is not None
               for w in stats[good.id])
    assert states[good.id][0] == "online"
    # Slow: answered, each poll at least SLOW_S late, so past its budget: degraded.
    assert all(w.failed == 0 and w.latency_p50_ms is not None
               and w.latency_p50_ms >= SLOW_S * 1000 for w in stats[slow.id])
    assert states[slow.id][0] == "degraded" and "offline" not in states[slow.id]
    # Silent: every poll dropped after its one retry, no latency; offline.
    assert all(w.failed == w.polls and w.retries == w.polls and w.latency_max_ms is None
               for w in stats[silent.id])
    assert states[silent.id][-1] == "offline"
