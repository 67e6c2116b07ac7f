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
from infra.ports import free_port
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import (
    HOST,
    collector,
    connections,
    device,
    gateway,
    running,
    until,
    wait_listening,
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


@pytest.mark.timeout(30)
def test_a_pipelined_gateway_serves_every_unit_and_a_write_among_the_polls(
        example_fleet: Fleet) -> None:
    """The simulator's gateway takes pipelined requests (infra/sim/pipelined.py): with
    `pipeline: 8` the units' polls are in flight together on one connection, every answer
    reaches its own unit, and a setpoint write with its read-back goes through among them."""
    site = example_fleet.sites[0]
    units = site.units[:5]
    sim = Simulator(example_fleet, PROFILES, seed=12)
    for n, unit in enumerate(units):
        sim.set_value(unit.id, "soc_pct", 20.0 + n)
    port = free_port(HOST)

    async def scenario() -> None:
        out, sinks = collector()
        server = sim.modbus_server(site.units, (HOST, port))
        serving = asyncio.ensure_future(server.serve_forever())
        try:
            await wait_listening(port)
            maps = [DeviceMap.build(device(u, port, k + 1, poll_interval_s=0.05, pipeline=8),
                                    example_fleet, PROFILES) for k, u in enumerate(units)]
            connector = ModbusConnector(maps, **sinks)
            gw = connector.gateways[(HOST, port)]
            assert gw.pipeline == 8
            async with running(connector):
                await until(lambda: all(len(out.of(u.id)) >= 5 for u in units),
                            what="five samples of every unit")
                written = await connector.write_setpoint(units[1].id, "active_power_limit_kw",
                                                         1200.0)
                assert written.read_back == 1200.0
                await until(lambda: all(len(out.of(u.id)) >= 10 for u in units),
                            what="ten samples of every unit")
                assert gw.connect_attempts == 1  # one connection all along
        finally:
            await server.shutdown()
            serving.cancel()
        for n, unit in enumerate(units):
            assert all(s.assets[0].tags["soc_pct"] == pytest.approx(20.0 + n)
                       for s in out.of(unit.id))
        assert {e.state for e in out.health} == {"online"}

    asyncio.run(scenario())
