"""SunSpec discovery and mapping against real pymodbus servers: the simulator's SunSpec
controllers (models 1, 103, 124 at 40000) and a hand-built map at 50000."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus.devices import DeviceConfig
from connectors.modbus.errors import SunSpecNotFound
from connectors.modbus.gateway import GatewayCoordinator
from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.modbus.profile import MappedAsset, load_profiles
from connectors.modbus.sunspec import ModelHeader, discover, sunspec_profile
from connectors.settings import EXAMPLE_PROFILES
from contracts.events import TagValue
from contracts.fleet import Fleet
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import HOST, collector, device, gateway, modbus_server, until

PROFILES = load_profiles(EXAMPLE_PROFILES)


async def _discover_and_read(port: int, unit_id: int, asset: str) -> dict[str, TagValue]:
    gw = GatewayCoordinator(HOST, port)
    try:
        found = await discover(gw, unit_id, timeout_s=1)
        profile = sunspec_profile(found)
        m = DeviceMap.for_assets(device_config(asset, port, unit_id), profile,
                                 (MappedAsset(asset, "unit", 0),))
        registers = await gw.read(unit_id, m.group().blocks, timeout_s=1)
        return dict(m.decode(m.group(), registers, 0).assets[0].tags)
    finally:
        gw.close()


def device_config(asset: str, port: int, unit_id: int) -> DeviceConfig:
    return DeviceConfig(id=f"{asset}-sunspec", asset=asset, host=HOST, port=port,
                        unit_id=unit_id, profile="sunspec")


def test_sunspec_models_are_discovered_and_mapped(example_fleet: Fleet) -> None:
    site = example_fleet.sites[0]
    unit = site.units[2]
    sim = Simulator(example_fleet, PROFILES, seed=8, sunspec=[site.id])
    sim.set_value(unit.id, "active_power_kw", -1234.5)  # charging
    sim.set_value(unit.id, "soc_pct", 42.42)
    sim.set_value(unit.inverters[0].id, "temperature_c", 27.3)
    sim.inject_fault(unit.inverters[1].id, 600)  # one inverter down: derated

    async def scenario() -> tuple[dict[str, TagValue], tuple[ModelHeader, ...], int]:
        async with gateway(sim, site.units) as port:
            gw = GatewayCoordinator(HOST, port)
            try:
                found = await discover(gw, 3, timeout_s=1)
            finally:
                gw.close()
            return await _discover_and_read(port, 3, unit.id), found.models, found.base

    tags, models, base = asyncio.run(scenario())
    assert base == 40000
    assert models == (ModelHeader(1, 40002, 66), ModelHeader(103, 40070, 50),
                      ModelHeader(124, 40122, 24))
    assert tags == {
        "manufacturer": "bessmon-sim", "model": "BESS-2500", "firmware_version": "2.1.0",
        "serial_number": unit.id,
        "active_power_kw": -1234.5, "frequency_hz": 50.0, "temperature_c": 27.3,
        "status_code": 2.0,  # THROTTLED → derated
        **{f"event_{e}": False for e in (
            "ground_fault", "dc_over_volt", "ac_disconnect", "dc_disconnect", "grid_disconnect",
            "cabinet_open", "manual_shutdown", "over_temp")},
        "max_charge_power_kw": 2500.0, "soc_pct": 42.42, "charge_status": 4.0,  # charging
        "charge_limit_active": False, "discharge_limit_active": False,
        # not implemented by the device (0xFFFF / 0x8000 / an accumulator of 0): left out —
        # ac_current_a, reactive_power_kvar, energy_total_kwh, battery_voltage_v
    }


def test_a_faulted_unit_maps_to_fault_with_its_event_bit(example_fleet: Fleet) -> None:
    site = example_fleet.sites[0]
    unit = site.units[0]
    sim = Simulator(example_fleet, PROFILES, seed=8, sunspec=[unit.id])
    sim.inject_fault(unit.id, 600)

    async def scenario() -> dict[str, TagValue]:
        async with gateway(sim, site.units) as port:
            return await _discover_and_read(port, 1, unit.id)

    tags = asyncio.run(scenario())
    assert tags["status_code"] == 3.0 and tags["event_ac_disconnect"] is True
    assert tags["active_power_kw"] == 0.0 and tags["charge_status"] == 6.0  # holding


def test_a_controller_without_sunspec_is_told_apart(example_fleet: Fleet) -> None:
    site = example_fleet.sites[0]
    sim = Simulator(example_fleet, PROFILES, seed=8, sunspec=[site.units[0].id])

    async def scenario() -> None:
        async with gateway(sim, site.units) as port:
            gw = GatewayCoordinator(HOST, port)
            try:
                with pytest.raises(SunSpecNotFound, match=r"unit 2: no SunSpec marker at "
                                                          r"40000, 0, 50000"):
                    await discover(gw, 2, timeout_s=1)
            finally:
                gw.close()

    asyncio.run(scenario())


def _registers(text: str, count: int) -> list[int]:
    data = text.encode().ljust(2 * count, b"\0")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def test_a_map_at_50000_with_a_short_model_and_no_end_marker() -> None:
    """Another vendor: nothing at 40000, no marker at 0, the map at 50000; model 1 without its
    pad register (65), an unknown model 64001 to skip, single-phase inverter model 101 — and
    the registers simply end where the end marker should be."""
    common = (_registers("Acme", 16) + _registers("PCS-1", 16) + _registers("", 8)
              + _registers("0.9", 8) + _registers("SN-77", 16) + [1])
    vendor = [0] * 10
    inverter = [0xFFFF] * 50
    inverter[12], inverter[13] = 1500, 0  # W = 1500 W, W_SF 0
    inverter[14], inverter[15] = 4998, 0xFFFE  # Hz 49.98
    for offset in (4, 11, 16, 17, 18, 19, 20, 21, 24, 29, 31, 35):  # int16, sunssf
        inverter[offset] = 0x8000  # not implemented (temperature among them)
    inverter[22:24] = [0, 0]  # WH: not accumulated
    inverter[36] = 8  # standby
    inverter[38:40] = [0, 0b1001_0000]  # Evt1: grid disconnect, over temperature
    image = [0x5375, 0x6E53, 1, 65, *common, 64001, 10, *vendor, 101, 50, *inverter]
    server_device = SimDevice(id=7, simdata=[
        SimData(address=0, count=10, values=0, datatype=DataType.REGISTERS),
        SimData(address=50000, values=image, datatype=DataType.REGISTERS)])

    async def scenario() -> tuple[dict[str, TagValue], tuple[int, ...]]:
        async with modbus_server([server_device]) as port:
            gw = GatewayCoordinator(HOST, port)
            try:
                found = await discover(gw, 7, timeout_s=1)
            finally:
                gw.close()
            return await _discover_and_read(port, 7, "acme-1"), found.model_ids

    tags, model_ids = asyncio.run(scenario())
    assert model_ids == (1, 64001, 101)
    assert {k: v for k, v in tags.items() if not k.startswith("event_")} == {
        "manufacturer": "Acme", "model": "PCS-1", "firmware_version": "0.9",
        "serial_number": "SN-77", "active_power_kw": 1.5, "frequency_hz": 49.98,
        "status_code": 1.0}
    assert [k for k, v in tags.items() if v is True] == ["event_grid_disconnect",
                                                         "event_over_temp"]


@pytest.mark.timeout(30)
def test_the_connector_polls_a_sunspec_device_after_discovery(example_fleet: Fleet) -> None:
    site = example_fleet.sites[1]
    unit = site.units[0]
    sim = Simulator(example_fleet, PROFILES, seed=8, sunspec=[unit.id])
    sim.set_value(unit.id, "soc_pct", 61.5)

    async def scenario() -> None:
        out, sinks = collector()
        async with gateway(sim, site.units) as port:
            devices = [device(unit, port, 1, id=f"{unit.id}-sunspec", profile="sunspec",
                              poll_interval_s=0.1),
                       device(unit, port, 1, poll_interval_s=0.1)]
            connector = ModbusConnector.from_devices(devices, example_fleet, PROFILES, **sinks)
            stop = asyncio.Event()
            task = asyncio.ensure_future(connector.run(stop))
            await until(lambda: len(out.of(f"{unit.id}-sunspec")) >= 3, what="SunSpec samples")
            stop.set()
            await task
        sample = out.of(f"{unit.id}-sunspec")[-1]
        assert [a.id for a in sample.assets] == [unit.id]
        assert sample.assets[0].tags["soc_pct"] == 61.5
        assert sample.assets[0].tags["serial_number"] == unit.id
        assert not any(t.startswith("sunspec_") for t in sample.assets[0].tags)  # internals
        assert connector.device_map(f"{unit.id}-sunspec").profile.description == \
            "SunSpec models 1, 103, 124"
        assert out.states(f"{unit.id}-sunspec") == ["online"]
        # the device's own map keeps working beside it, on the same connection
        assert out.of(unit.id)[-1].assets[0].tags["soc_pct"] == 61.5
        assert len(connector.gateways) == 1

    asyncio.run(scenario())
