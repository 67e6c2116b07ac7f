"""Setpoint writes with read-back, against the simulator's controllers: what is written is
verified and changes the unit's power; whatever does not take raises an error that says why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from connectors.modbus.errors import (
    DeviceRefused,
    SetpointInvalid,
    SetpointMismatch,
    SetpointRejected,
    SetpointTimeout,
)
from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.modbus.profile import DeviceProfile, Point, load_profiles
from connectors.settings import EXAMPLE_PROFILES
from contracts.events import TagValue
from contracts.fleet import Fleet
from infra.ports import free_port
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import HOST, device, gateway

PROFILES = load_profiles(EXAMPLE_PROFILES)
BESS = PROFILES["bess-unit-v1"]


def _loosened(**changes: dict[str, object]) -> DeviceProfile:
    """bess-unit-v1 as a careless integrator might have written it: `changes` per unit tag."""
    points = tuple(p.model_copy(update=changes.get(p.tag, {})) for p in BESS.points["unit"])
    return BESS.model_copy(update={"id": "loose", "points": {**BESS.points, "unit": points}})


def _with_connector(example_fleet: Fleet, sim: Simulator,
                    body: Callable[[ModbusConnector, DeviceMap], Awaitable[None]],
                    profiles: dict[str, DeviceProfile] | None = None,
                    port: int | None = None) -> None:
    site = example_fleet.sites[0]
    unit = site.units[1]

    async def scenario() -> None:
        async def run(at: int) -> None:
            m = DeviceMap.build(device(unit, at, 2, profile=next(iter(profiles or PROFILES))),
                                example_fleet, profiles or PROFILES)
            connector = ModbusConnector([m], publish=lambda s: None)
            try:
                await body(connector, m)
            finally:
                connector.close()

        if port is not None:
            await run(port)
        else:
            async with gateway(sim, site.units) as served:
                await run(served)

    asyncio.run(scenario())


async def _read(connector: ModbusConnector, m: DeviceMap) -> dict[str, TagValue]:
    registers = await connector.gateway(m.device).read(
        m.device.unit_id, m.group().blocks, timeout_s=1)
    return dict(m.decode(m.group(), registers, 0).assets[0].tags)


def test_written_setpoints_are_verified_and_drive_the_unit(example_fleet: Fleet) -> None:
    unit = example_fleet.sites[0].units[1]
    sim = Simulator(example_fleet, PROFILES, seed=4)
    model = sim.models[unit.id]

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        write = connector.write_setpoint
        limited = await write(unit.id, "active_power_limit_kw", 500.0)
        assert (limited.function_code, limited.address, limited.read_back) == (16, 13, 500.0)
        assert limited.registers == (0, 5000) and limited.asset_id == unit.id
        follow = await write(unit.id, "control_mode", 1)
        assert (follow.function_code, follow.registers) == (6, (1,))
        await write(unit.id, "active_power_setpoint_kw", -1000.0, asset_id=unit.id)
        assert (model.control_mode, model.setpoint_kw, model.limit_kw) == (1, -1000.0, 500.0)
        sim.tick()
        tags = await _read(connector, m)
        assert tags["active_power_kw"] == -500.0  # charging at 1000 kW, capped at 500
        assert (tags["control_mode"], tags["active_power_setpoint_kw"],
                tags["active_power_limit_kw"]) == (1.0, -1000.0, 500.0)
        await write(unit.id, "active_power_limit_kw", 2500.0)
        sim.tick()
        assert (await _read(connector, m))["active_power_kw"] == -1000.0
        await write(unit.id, "control_mode", 2)  # stop
        sim.tick()
        tags = await _read(connector, m)
        assert (tags["active_power_kw"], tags["status_code"]) == (0.0, 1.0)  # standby

    _with_connector(example_fleet, sim, body)


def test_a_clamped_or_ignored_value_is_a_mismatch(example_fleet: Fleet) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=4)
    unit = example_fleet.sites[0].units[1]
    loose = _loosened(control_mode={"max": None})

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        with pytest.raises(SetpointMismatch) as caught:
            await connector.write_setpoint(unit.id, "active_power_limit_kw", 99_999.0)
        assert (caught.value.requested, caught.value.read_back) == (99_999.0, 2500.0)
        assert str(caught.value) == (
            f"device {unit.id} ({HOST}:{m.device.port} unit 2) {unit.id}.active_power_limit_kw "
            "at 13: wrote 99999.0, the device holds 2500.0 (registers [15, 16950] read back as "
            "[0, 25000])")
        with pytest.raises(SetpointMismatch, match=r"wrote 7, the device holds 0\.0"):
            await connector.write_setpoint(unit.id, "control_mode", 7)  # no such mode

    _with_connector(example_fleet, sim, body, {"loose": loose})


@pytest.mark.parametrize(("tag", "value", "asset", "problem"), [
    ("soc_pct", 50.0, None, "soc_pct at 5: not writable (profile bess-unit-v1 does not mark it "
                            "writable: true)"),
    ("control_mode", 3, None, "control_mode at 10: 3 is outside [0.0, 2.0]"),
    ("active_power_limit_kw", -1.0, None, "active_power_limit_kw at 13: -1.0 is outside "
                                          "[0.0, None]"),
    ("active_power_setpoint_kw", 1e12, None, "active_power_setpoint_kw at 11: "
                                             "active_power_setpoint_kw: 10000000000000 does not "
                                             "fit a int32"),
    ("active_power_setpoint_kw", float("inf"), None, "inf is not a number"),
    ("active_power_setpoint_kw", "full", None, "takes a number, not 'full'"),
    ("no_such_tag", 1.0, None, "has no point 'no_such_tag' in profile bess-unit-v1"),
    ("control_mode", 1, "elbe-u01", "does not report asset 'elbe-u01'"),
])
def test_invalid_setpoints_are_refused_before_anything_is_sent(
        example_fleet: Fleet, tag: str, value: TagValue, asset: str | None,
        problem: str) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=4)
    closed = free_port(HOST)  # nothing listens: any request would be a timeout instead

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        with pytest.raises(SetpointInvalid) as caught:
            await connector.write_setpoint(m.device.id, tag, value, asset_id=asset)
        assert str(caught.value).endswith(problem)
        assert connector.gateway(m.device).connect_attempts == 0

    _with_connector(example_fleet, sim, body, port=closed)


def test_a_register_the_device_will_not_write_is_rejected(example_fleet: Fleet) -> None:
    """The profile says writable, the device does not: an exception response, named."""
    sim = Simulator(example_fleet, PROFILES, seed=4)
    loose = _loosened(soc_pct={"writable": True})

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        with pytest.raises(SetpointRejected, match=r"refused the write: .* exception 2 "
                                                   r"\(illegal data address\)"):
            await connector.write_setpoint(m.device.id, "soc_pct", 50.0)

    _with_connector(example_fleet, sim, body, {"loose": loose})


def test_a_device_that_does_not_answer_is_a_timeout(example_fleet: Fleet) -> None:
    sim = Simulator(example_fleet, PROFILES, seed=4)

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        with pytest.raises(SetpointTimeout, match=r"the write got no answer; whether the device "
                                                  r"holds 500\.0 is unknown: .*cannot connect"):
            await connector.write_setpoint(m.device.id, "active_power_limit_kw", 500.0)

    _with_connector(example_fleet, sim, body, port=free_port(HOST))


def test_the_simulator_refuses_writes_beside_setpoints(example_fleet: Fleet) -> None:
    """A write over a setpoint and a neighbouring register, or half of a 32-bit setpoint, is
    refused as a whole: nothing changes."""
    sim = Simulator(example_fleet, PROFILES, seed=4)
    unit = example_fleet.sites[0].units[1]
    model = sim.models[unit.id]

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        gateway = connector.gateway(m.device)
        for address, values in ((9, [0, 1]), (13, [0]), (14, [7]), (500, [1])):
            with pytest.raises(DeviceRefused) as refused:
                async with gateway.hold(connect_now=True) as link:
                    await link.write(2, address, values, timeout_s=1.0)
            assert refused.value.exception_code == 2, (address, values)
        assert (model.control_mode, model.limit_kw) == (0, None)

    _with_connector(example_fleet, sim, body)


def _point(profile: DeviceProfile, tag: str) -> Point:
    return profile.by_tag["unit"][tag]


def test_bess_unit_v1_marks_exactly_its_setpoints_writable() -> None:
    writable = {p.tag: (p.offset, p.datatype) for p in BESS.points["unit"] if p.writable}
    assert writable == {"control_mode": (10, "uint16"),
                        "active_power_setpoint_kw": (11, "int32"),
                        "active_power_limit_kw": (13, "uint32"),
                        "charge_limit_kw": (15, "uint32"),
                        "discharge_limit_kw": (17, "uint32"),
                        "heartbeat": (19, "uint16")}
    assert not any(p.writable for kind in ("inverter", "block") for p in BESS.points[kind])
    assert _point(BESS, "soc_pct").offset == 5  # the old map is where it was
