"""Poll groups: each group's points are read in their own coalesced requests at their own
interval, and each group poll is one sample carrying that group's tags and instant."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter

import pytest

from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.modbus.profile import DeviceProfile, load_profiles, parse_profile, read_blocks
from connectors.settings import EXAMPLE_PROFILES
from contracts.events import TelemetrySample
from contracts.fleet import Fleet
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import collector, device, gateway, running, ticking, until

GROUPED = """
id: grouped
description: bess-unit-v1's registers, read in three groups
poll_groups: {status: 0.1, thermal: 0.5}
layout:
  unit: {base: 0}
  inverter: {base: 100, stride: 20, max: 4}
  block: {base: 200, stride: 10, max: 32}
points:
  unit:
    - {tag: status_code, offset: 0, datatype: uint16, group: status}
    - {tag: active_power_kw, offset: 1, datatype: int32, scale: 0.1, group: status}
    - {tag: soc_pct, offset: 5, datatype: uint16, scale: 0.01}
  inverter:
    - {tag: status_code, offset: 0, datatype: uint16, group: status}
    - {tag: temperature_c, offset: 5, datatype: int16, scale: 0.1, group: thermal}
  block:
    - {tag: soc_pct, offset: 1, datatype: uint16, scale: 0.01}
    - {tag: cell_temp_max_c, offset: 2, datatype: int16, scale: 0.1, group: thermal}
"""


@pytest.fixture(scope="module")
def grouped() -> DeviceProfile:
    return parse_profile(GROUPED, "grouped.yaml")


def test_each_group_is_coalesced_on_its_own(grouped: DeviceProfile,
                                            example_fleet: Fleet) -> None:
    unit = example_fleet.sites[0].units[0]
    m = DeviceMap.build(device(unit, 502, 1, profile="grouped", poll_interval_s=0.25),
                        example_fleet, {"grouped": grouped})
    blocks = {g.name: g.blocks for g in m.groups}
    assert blocks == {
        # unit 0..2, then inverter status at 100 and 120 (97 unused registers later: another
        # request; 100 → 120 is a gap of 19, read along)
        "status": ((0, 3), (100, 21)),
        # inverter temperatures 105, 125 and block maxima 202 … 352: 105 → 202 is a gap of
        # 76 → separate; 16 blocks × 10 registers = 151 registers → two requests ≤ 125
        "thermal": ((105, 21), (202, 121), (332, 21)),
        "default": ((5, 1), (201, 121), (331, 21)),
    }
    assert {g.name: g.interval_s for g in m.groups} == {
        "default": 0.25, "status": 0.1, "thermal": 0.5}
    for g in m.groups:
        wanted = {a.base + p.offset for a in m.assets for p in grouped.points[a.kind]
                  if p.poll_group == g.name}
        covered = {a for start, count in g.blocks for a in range(start, start + count)}
        assert wanted <= covered and all(count <= 125 for _, count in g.blocks)


def test_a_device_may_set_its_own_group_intervals(grouped: DeviceProfile,
                                                  example_fleet: Fleet) -> None:
    unit = example_fleet.sites[0].units[0]
    m = DeviceMap.build(device(unit, 502, 1, profile="grouped", poll_groups={"thermal": 30}),
                        example_fleet, {"grouped": grouped})
    assert m.group("thermal").interval_s == 30
    with pytest.raises(ValueError, match=r"poll_groups \['fast'\] are not groups of profile "
                                         r"grouped \(\['status', 'thermal'\]\)"):
        DeviceMap.build(device(unit, 502, 1, profile="grouped", poll_groups={"fast": 1}),
                        example_fleet, {"grouped": grouped})


def test_the_example_profile_keeps_one_group_and_four_requests(example_fleet: Fleet) -> None:
    """bess-unit-v1 (with its setpoints at 10-19 and its grid and DC values at 20-30, and its
    inverters' efficiency) still reads in 4 requests, one sample per poll."""
    profile = load_profiles(EXAMPLE_PROFILES)["bess-unit-v1"]
    unit = example_fleet.sites[0].units[0]
    m = DeviceMap.build(device(unit, 502, 1), example_fleet, {"bess-unit-v1": profile})
    assert [g.name for g in m.groups] == ["default"]
    assert m.group().blocks == ((0, 31), (100, 27), (200, 125), (330, 25))
    assert list(m.group().blocks) == read_blocks(profile, m.assets)


@pytest.mark.timeout(30)
def test_groups_poll_at_their_intervals_one_sample_each(grouped: DeviceProfile,
                                                        example_fleet: Fleet) -> None:
    site = example_fleet.sites[0]
    unit = site.units[0]
    sim = Simulator(example_fleet, {"bess-unit-v1": grouped}, seed=3)
    sim.set_value(unit.inverters[0].id, "temperature_c", 31.4)
    wanted = {"status": 8, "default": 5, "thermal": 4}  # samples of each group to look at

    async def scenario() -> list[TelemetrySample]:
        out, sinks = collector()
        async with gateway(sim, site.units) as port, ticking(sim):
            m = DeviceMap.build(device(unit, port, 1, profile="grouped", poll_interval_s=0.25),
                                example_fleet, {"grouped": grouped})
            async with running(ModbusConnector([m], **sinks)):
                await until(lambda: all(Counter(map(group_of, out.samples))[g] >= n
                                        for g, n in wanted.items()),
                            timeout_s=20, what=f"samples of every group {wanted}")
        return out.samples

    def group_of(s: TelemetrySample) -> str:
        tags = {t for a in s.assets for t in a.tags}
        if tags == {"status_code", "active_power_kw"}:
            return "status"
        if tags == {"temperature_c", "cell_temp_max_c"}:
            return "thermal"
        assert tags == {"soc_pct"}, tags
        return "default"

    samples = asyncio.run(scenario())
    # Each group on its own grid (the poll instants): every 0.1, 0.25 and 0.5 s. A poll the
    # loaded machine ran late may skip an instant, so the usual step, not a count in a time
    # window, is what shows the interval.
    for name, interval_ms in (("status", 100), ("default", 250), ("thermal", 500)):
        stamps = [s.ts_ms for s in samples if group_of(s) == name]
        assert stamps == sorted(set(stamps)) and all(t % interval_ms == 0 for t in stamps)
        steps = [b - a for a, b in itertools.pairwise(stamps)]
        assert statistics.median(steps) == interval_ms, (name, steps)
    thermal = next(s for s in samples if group_of(s) == "thermal")
    # assets without a point in a group are not in its samples: the unit reports no temperature
    assert [a.id for a in thermal.assets][:2] == [unit.inverters[0].id, unit.inverters[1].id]
    assert unit.id not in {a.id for a in thermal.assets}
    assert thermal.assets[0].tags["temperature_c"] == pytest.approx(31.4)
    status = next(s for s in samples if group_of(s) == "status")
    assert [a.id for a in status.assets] == [unit.id, *(i.id for i in unit.inverters)]
