"""Several unit ids behind each of two gateways: one TCP connection per gateway, every
device's answer reaches that device's samples."""

from __future__ import annotations

import asyncio

import pytest

from connectors.modbus.errors import DeviceRefused
from connectors.modbus.gateway import POLL, WRITE, GatewayCoordinator, _PriorityLock
from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.modbus.profile import load_profiles
from connectors.settings import EXAMPLE_PROFILES
from contracts.fleet import Fleet
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import (
    HOST,
    collector,
    connections,
    device,
    gateway,
    running,
    until,
)

PROFILES = load_profiles(EXAMPLE_PROFILES)


@pytest.mark.timeout(30)
def test_two_gateways_several_unit_ids_one_connection_each(example_fleet: Fleet) -> None:
    nordvik, elbe = example_fleet.sites[0], example_fleet.sites[1]
    sim = Simulator(example_fleet, PROFILES, seed=11)
    chosen = [(nordvik, k) for k in (0, 2, 5)] + [(elbe, k) for k in (1, 4)]
    for n, (site, k) in enumerate(chosen):
        sim.set_value(site.units[k].id, "soc_pct", 10.0 + n)  # tells the units apart

    async def scenario() -> None:
        out, sinks = collector()
        async with gateway(sim, nordvik.units) as port_a, gateway(sim, elbe.units) as port_b:
            ports = {nordvik.id: port_a, elbe.id: port_b}
            maps = [DeviceMap.build(device(site.units[k], ports[site.id], k + 1,
                                           poll_interval_s=0.05), example_fleet, PROFILES)
                    for site, k in chosen]
            connector = ModbusConnector(maps, **sinks)
            async with running(connector):
                await until(lambda: all(len(out.of(m.device.id)) >= 5 for m in maps),
                            what="five samples of every device")
                assert (connections(port_a), connections(port_b)) == (1, 1)
                # Counted while running: stopping closes the connections, and a poll that
                # was under way may try once more before it is cancelled.
                assert len(connector.gateways) == 2
                assert [g.connect_attempts for g in connector.gateways.values()] == [1, 1]
        for n, (site, k) in enumerate(chosen):
            unit = site.units[k]
            samples = out.of(unit.id)
            assert all(s.assets[0].id == unit.id for s in samples)
            assert {a.id for a in samples[-1].assets} == {
                unit.id, *(i.id for i in unit.inverters),
                *(b.id for i in unit.inverters for b in i.blocks)}
            assert samples[-1].assets[0].tags["soc_pct"] == pytest.approx(10.0 + n)
        assert {e.state for e in out.health} == {"online"}

    asyncio.run(scenario())


def test_a_unit_id_the_gateway_does_not_serve_is_refused(example_fleet: Fleet) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=1)

    async def scenario() -> None:
        async with gateway(sim, example_fleet.sites[2].units) as port:
            gw = GatewayCoordinator(HOST, port)
            try:
                with pytest.raises(DeviceRefused, match=r"exception 2 \(illegal data address\)"):
                    await gw.read(1, [(990, 20)], timeout_s=1)  # past the image
                assert len(await gw.read(4, [(0, 5)], timeout_s=1)) == 5
            finally:
                gw.close()

    asyncio.run(scenario())


def test_a_write_overtakes_queued_polls() -> None:
    """Every device of a gateway polls at the same instant; a setpoint write queued behind
    them is served next, not last."""
    order: list[str] = []

    async def scenario() -> None:
        lock = _PriorityLock()

        async def use(name: str, priority: int) -> None:
            async with lock.hold(priority):
                order.append(name)
                await asyncio.sleep(0.01)

        async with lock.hold(POLL):
            tasks = [asyncio.ensure_future(use(f"poll{i}", POLL)) for i in range(3)]
            await asyncio.sleep(0.01)
            tasks.append(asyncio.ensure_future(use("write", WRITE)))
            cancelled = asyncio.ensure_future(use("cancelled", POLL))
            await asyncio.sleep(0.01)
            cancelled.cancel()
        await asyncio.gather(*tasks)
        assert cancelled.cancelled()

    asyncio.run(scenario())
    assert order == ["write", "poll0", "poll1", "poll2"]
