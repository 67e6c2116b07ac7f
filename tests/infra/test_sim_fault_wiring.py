"""Random faults reach what the simulator serves: each kind shows in the register images with
its status code (or, for a comms drop, as a controller that stops answering) from its start
to its end; injected faults of every kind work over HTTP; a comms drop turns the Modbus
connector's device health offline and back online, and OPC UA nodes bad."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest
from fastapi.testclient import TestClient
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.modbus.profile import load_profiles
from connectors.settings import EXAMPLE_FLEET, EXAMPLE_PROFILES
from contracts.fleet import Fleet, load_fleet
from infra.ports import free_port
from infra.sim.faults import FaultEvent, FaultProcess, FaultRates
from infra.sim.model import DERATED, FAULT, HVAC_FAILURE_DERATE, MAINTENANCE
from infra.sim.opcua_server import OpcUaSimServer
from infra.sim.server import Simulator, control_app
from tests.connectors.modbus_sim import (
    HOST,
    collector,
    device,
    running,
    ticking,
    until,
    wait_listening,
)

FLEET = load_fleet(EXAMPLE_FLEET)
PROFILES = load_profiles(EXAMPLE_PROFILES)
SITE = Fleet(sites=(FLEET.sites[0],))  # nordvik: 6 units
START = 1_800_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def served(sim: Simulator, asset_id: str) -> dict[str, object]:
    """The asset's tags as a connector decodes them from the unit's register image."""
    unit_id = SITE.assets[asset_id].unit_id
    assert unit_id is not None
    m = DeviceMap.build(device(SITE.unit(unit_id), 502, 1), SITE, PROFILES)
    image = sim.images[unit_id]
    group = m.group()
    registers = {a: image[a] for start, count in group.blocks for a in range(start, start + count)}
    sample = m.decode(group, registers, 0)
    return dict(next(a.tags for a in sample.assets if a.id == asset_id))


def test_random_faults_show_with_their_codes_from_start_to_end() -> None:
    # Frequent and short (HVAC failures, rare at realistic rates, even more frequent).
    rates = dataclasses.replace(FaultRates().scaled(300).with_durations(0.05),
                                hvac_failure=(5.0, 360, 2_160))
    clock = Clock(START)
    speed = 600.0
    sim = Simulator(SITE, PROFILES, seed=11, speed=speed, clock=clock, fault_rates=rates)
    events = FaultProcess(SITE, START, rates, seed=11).due(START + 2 * 86_400)

    def unit_of(e: FaultEvent) -> str:
        unit = SITE.assets[e.asset_id].unit_id
        assert unit is not None
        return unit

    def alone(e: FaultEvent) -> bool:  # nothing else on its unit around it
        return not any(o is not e and unit_of(o) == unit_of(e) and o.start_s < e.end_s + 5
                       and e.start_s - 5 < o.end_s for o in events)

    checks: list[tuple[float, FaultEvent, bool]] = []  # (sim time, event, should show)
    for e in filter(alone, events):
        if e.end_s > START + 86_400:
            continue  # (a day checked; the next day's events count as neighbours)
        checks += [((e.start_s + e.end_s) / 2, e, True), (e.end_s - 0.5, e, True),
                   (e.end_s + 0.5, e, False)]
    checks.sort(key=lambda c: c[0])
    seen: dict[str, int] = {}
    for at, e, active in checks:
        clock.t = START + (at - START) / speed
        sim.tick()
        assert abs(sim.now() - at) < 1e-3
        unit = SITE.unit(unit_of(e))
        tags = served(sim, unit.id)
        rated = unit.rated_power_kw
        if not active:
            assert not sim.silent(unit.id)
            assert tags["status_code"] in (0, 1) and tags["available_power_kw"] == rated, e
            assert served(sim, e.asset_id)["status_code"] in (0, 1), e
            continue
        seen[e.kind] = seen.get(e.kind, 0) + 1
        if e.kind == "inverter_trip":
            assert served(sim, e.asset_id)["status_code"] == FAULT, e
            assert (tags["status_code"], tags["available_power_kw"]) == (DERATED, rated / 2)
        elif e.kind == "block_isolation":
            block = served(sim, e.asset_id)
            assert (block["status_code"], block["available_energy_kwh"]) == (FAULT, 0.0), e
        elif e.kind == "maintenance":
            assert (tags["status_code"], tags["available_power_kw"]) == (MAINTENANCE, 0.0), e
        elif e.kind == "derate":
            assert tags["status_code"] == DERATED, e
            assert tags["available_power_kw"] == pytest.approx(rated * e.severity, abs=0.1)
        elif e.kind == "hvac_failure":
            assert tags["status_code"] == DERATED, e
            assert tags["available_power_kw"] == pytest.approx(rated * HVAC_FAILURE_DERATE,
                                                               abs=0.1)
            assert not sim.models[unit.id].hvac_working(sim.now())
            assert tags["alarm_word"] == 4  # bit 2: HVAC fault, as the register map says
        else:
            assert e.kind == "comms_drop"
            assert sim.silent(unit.id), e
            assert tags["status_code"] in (0, 1)  # the unit runs; only its link is down
    assert {k: n >= 2 for k, n in seen.items()} == {
        k: True for k in ("inverter_trip", "block_isolation", "maintenance", "derate",
                          "hvac_failure", "comms_drop")}, seen


def test_the_same_seed_gives_the_same_faults_whatever_the_tick_rate() -> None:
    rates = FaultRates().scaled(300).with_durations(0.05)

    def history(ticks_per_hour: int) -> list[tuple[str, str, float, float]]:
        clock = Clock(START)
        sim = Simulator(SITE, PROFILES, seed=3, speed=3600, clock=clock, fault_rates=rates)
        seen = set()
        for _ in range(6 * ticks_per_hour):
            clock.t += 1 / ticks_per_hour
            sim.tick()
            seen |= {(f.kind, f.asset_id, f.start_s, f.end_s) for f in sim.active.values()}
        return sorted(seen)

    assert history(60) == history(60)
    # A coarser tick misses nothing that lasts longer than a tick.
    coarse, fine = set(history(6)), set(history(60))
    assert {f for f in fine if f[3] - f[2] > 600} <= coarse | {
        f for f in fine if f[3] > START + 6 * 3600 - 600}


def test_every_kind_can_be_injected_over_http() -> None:
    sim = Simulator(FLEET, PROFILES, seed=2)
    headers = {"Authorization": "Bearer t0ken-t0ken-t0ken"}
    with TestClient(control_app(sim, "t0ken-t0ken-t0ken")) as client:
        unit = FLEET.sites[0].units[2]

        def post(asset: str, kind: str, **extra: object) -> int:
            return int(client.post("/faults", headers=headers, json={
                "asset_id": asset, "duration_s": 600, "kind": kind, **extra}).status_code)

        assert post(unit.id, "hvac_failure") == 201
        assert served_unit(sim, unit.id)["status_code"] == DERATED
        assert post(unit.id, "derate", severity=0.3) == 201
        assert sim.models[unit.id].available_power_kw(sim.now()) == pytest.approx(
            unit.rated_power_kw * 0.3 * HVAC_FAILURE_DERATE)
        assert post(unit.id, "comms_drop") == 201 and sim.silent(unit.id)
        assert post(unit.id, "maintenance") == 201
        assert served_unit(sim, unit.id)["status_code"] == MAINTENANCE
        answer = client.post("/faults", headers=headers, json={
            "asset_id": unit.inverters[0].id, "kind": "comms_drop"})
        assert (answer.status_code, answer.json()["detail"]) == (
            422, f"comms_drop applies to battery units or sites, not {unit.inverters[0].id!r}")
        assert set(client.get("/faults", headers=headers).json()) == {unit.id}
        cleared = client.delete(f"/faults/{unit.id}", headers=headers).json()
        assert cleared == {"asset_id": unit.id, "cleared": True}
        assert not sim.silent(unit.id)
        assert served_unit(sim, unit.id)["status_code"] in (0, 1)
        assert served_unit(sim, unit.id)["available_power_kw"] == unit.rated_power_kw
        assert client.get("/faults", headers=headers).json() == {}


def served_unit(sim: Simulator, unit_id: str) -> dict[str, float]:
    return sim.models[unit_id].readings(sim.now())[unit_id]


@pytest.mark.timeout(30)
def test_a_comms_drop_silences_one_unit_id_and_its_health_goes_offline_and_back() -> None:
    site = FLEET.sites[0]
    unit, neighbour = site.units[0], site.units[1]
    sim = Simulator(FLEET, PROFILES, seed=5)
    port = free_port(HOST)
    m = DeviceMap.build(device(unit, port, 1, poll_interval_s=0.1), FLEET, PROFILES)
    out, _ = collector()
    connector = ModbusConnector([m], publish=out.samples.append,
                                publish_health=out.health.append)

    async def scenario() -> tuple[int, int, int]:
        server = sim.modbus_server(site.units, (HOST, port))
        task = asyncio.ensure_future(server.serve_forever())
        try:
            await wait_listening(port)
            async with ticking(sim), running(connector):
                await until(lambda: out.states(unit.id) == ["online"], what="online")
                sim.inject_fault(unit.id, 4.0, kind="comms_drop")
                before = len(out.of(unit.id))
                await until(lambda: out.states(unit.id)[-1:] == ["offline"], what="offline")
                during = len(out.of(unit.id)) - before
                # The gateway still answers the unit's neighbour, and the silent unit id
                # gets no answer at all (no exception response): the request times out.
                client = AsyncModbusTcpClient(HOST, port=port, timeout=0.5, retries=0)
                await client.connect()
                try:
                    answer = await client.read_holding_registers(0, count=5, device_id=2)
                    assert not answer.isError() and len(answer.registers) == 5
                    with pytest.raises(ModbusException):
                        await client.read_holding_registers(0, count=5, device_id=1)
                finally:
                    client.close()
                await until(lambda: out.states(unit.id)[-1:] == ["online"], 10, "online again")
                return before, during, len(out.of(unit.id))
        finally:
            await server.shutdown()
            task.cancel()

    before, during, after = asyncio.run(scenario())
    # A poll without answer (degraded), a second one (offline: `offline_after` 2), then
    # answers again: degraded until its window of polls is clean.
    assert out.states(unit.id) == ["online", "degraded", "offline", "degraded", "online"]
    offline = next(e for e in out.health if e.state == "offline")
    assert "no answer within" in offline.reason  # a timeout, not a refusal
    assert before > 0 and during <= 1 and after > before + during
    assert not sim.silent(neighbour.id)


def test_a_comms_drop_turns_the_units_opc_ua_nodes_bad_until_it_ends() -> None:
    clock = Clock(START)
    sim = Simulator(FLEET, PROFILES, seed=5, clock=clock)
    unit = FLEET.site("mesa").units[1]
    server = OpcUaSimServer(sim, "mesa")
    server._update_values()
    name = f"{unit.id}.soc_pct"
    other = f"{FLEET.site('mesa').units[0].id}.soc_pct"
    assert server._data_value(name, False).StatusCode_.is_good()
    sim.inject_fault(unit.id, 60, kind="comms_drop")
    clock.t += 10
    sim.tick()
    changed = server._update_values()
    assert name in changed
    bad = server._data_value(name, False)
    assert bad.StatusCode_.name == "BadNoCommunication"
    assert bad.SourceTimestamp == dt.datetime.fromtimestamp(START + 10, dt.UTC)
    assert server._data_value(other, False).StatusCode_.is_good()
    clock.t += 60
    sim.tick()
    assert name in server._update_values()  # fresh values, good again
    good = server._data_value(name, False)
    assert good.StatusCode_.is_good()
    assert good.SourceTimestamp == dt.datetime.fromtimestamp(START + 70, dt.UTC)
