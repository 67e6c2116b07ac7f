"""The simulator serves registers over real Modbus TCP; the connector polls them onto the
real broker. What is set in the simulator arrives scaled, with the poll's timestamp."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.kafka import read_topic
from connectors.modbus.devices import load_devices
from connectors.modbus.profile import load_profiles, parse_profile, read_blocks
from connectors.modbus.service import run_modbus_connector
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.errors import InvalidInput
from contracts.events import TelemetrySample
from contracts.fleet import Fleet
from infra.sim.server import Simulator, serve
from tests.waiting import until_on_topic

PROFILE = load_profiles(EXAMPLE_PROFILES)["bess-unit-v1"]


@pytest.mark.parametrize(("datatype", "value"), [
    ("int16", -1234), ("uint16", 65535), ("int32", -2_000_000), ("uint32", 4_000_000_000),
    ("float32", 0.5), ("float64", -1234.56789)])
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_codec_round_trips_every_datatype_and_word_order(datatype: str, value: float,
                                                         word_order: str) -> None:
    text = f"""
id: t
word_order: {word_order}
layout: {{unit: {{base: 0}}}}
points: {{unit: [{{tag: x, offset: 0, datatype: {datatype}}}]}}
"""
    profile = parse_profile(text, "t.yaml")
    point = profile.points["unit"][0]
    registers = profile.encode(point, value)
    assert len(registers) == point.size and all(0 <= r <= 0xFFFF for r in registers)
    assert profile.decode(point, registers) == pytest.approx(value)


def test_word_order_little_swaps_words() -> None:
    big = parse_profile("id: a\nlayout: {unit: {base: 0}}\n"
                        "points: {unit: [{tag: x, offset: 0, datatype: uint32}]}", "a.yaml")
    little = big.model_copy(update={"word_order": "little"})
    point = big.points["unit"][0]
    assert big.encode(point, 0x00010002) == [0x0001, 0x0002]
    assert little.encode(point, 0x00010002) == [0x0002, 0x0001]


def test_reads_are_coalesced_into_blocks_of_at_most_125(example_fleet: Fleet) -> None:
    from connectors.modbus.profile import map_assets

    assets = map_assets(PROFILE, example_fleet.sites[0].units[0])
    groups = read_blocks(PROFILE, assets)
    assert all(count <= 125 for _, count in groups)
    covered = {a for start, count in groups for a in range(start, start + count)}
    needed = {a.base + p.offset + i for a in assets for p in PROFILE.points[a.kind]
              for i in range(p.size)}
    assert needed <= covered
    assert len(groups) == 4  # unit, inverters, blocks (165 registers → 2 reads)


@pytest.mark.parametrize(("text", "message"), [
    ("id: a\nlayout: {unit: {base: 0}}\npoints: {unit: [{tag: x, offset: 0, datatype: int8}]}",
     "p.yaml:3: points.unit[0].datatype: must be 'int16', 'uint16', 'int32', 'uint32', "
     "'int64', 'uint64', 'float32', 'float64', 'string' or 'bitfield' (got 'int8')"),
    ("id: a\nlayout: {unit: {base: 0}}\npoints: {block: [{tag: x, offset: 0, datatype: int16}]}",
     "p.yaml:3: points: 'block' has points but no slot in layout"),
    ("id: a\nlayout: {unit: {base: 0}, block: {base: 10, stride: 2, max: 4}}\n"
     "points: {unit: [{tag: x, offset: 0, datatype: int16}], "
     "block: [{tag: y, offset: 1, datatype: int32}]}",
     "p.yaml:3: points: 'block' points span 3 registers, more than its layout stride 2"),
])
def test_invalid_profiles_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_profile(text, "p.yaml")
    assert str(caught.value) == message


@contextlib.asynccontextmanager
async def running(task: asyncio.Future[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.timeout(90)
def test_a_value_set_in_the_simulator_arrives_scaled_with_its_timestamp(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    devices_file = tmp_path / "devices.yaml"
    unit = example_fleet.sites[0].units[1]
    block = unit.inverters[1].blocks[3]
    sim = Simulator(example_fleet, load_profiles(EXAMPLE_PROFILES), seed=7)
    sim.set_value(unit.id, "soc_pct", 42.42)  # uint16, scale 0.01
    sim.set_value(unit.id, "active_power_kw", -1234.5)  # int32, scale 0.1
    sim.set_value(block.id, "cell_temp_max_c", -7.3)  # int16, scale 0.1
    sim.inject_fault(unit.inverters[0].id, 600)

    async def scenario() -> float:
        stop = asyncio.Event()
        server = asyncio.ensure_future(serve(sim, devices_out=devices_file, token="t" * 20,
                                             poll_interval_s=0.2))
        async with running(server):
            while not devices_file.exists():
                await asyncio.sleep(0.05)
            devices = load_devices(devices_file)
            assert len(devices.devices) == len(example_fleet.sites[0].units) + len(
                example_fleet.sites[1].units) + len(example_fleet.sites[2].units)
            started = time.time()
            connector = asyncio.ensure_future(run_modbus_connector(settings, devices_file, stop))
            await until_on_topic(settings.require_kafka(), settings.topic_telemetry,
                                 lambda ms: any(m.key() == unit.id.encode() for m in ms))
            stop.set()
            await connector
            return started

    started = asyncio.run(scenario())
    messages = read_topic(settings.require_kafka(), settings.topic_telemetry, idle_s=3)
    samples = [TelemetrySample.model_validate_json(m.value() or b"") for m in messages
               if m.key() == unit.id.encode()]
    assert samples, "no telemetry from the unit arrived"
    s = samples[-1]
    tags = {a.id: a.tags for a in s.assets}
    assert len(tags) == 1 + 2 + 16
    assert tags[unit.id]["soc_pct"] == pytest.approx(42.42)
    assert tags[unit.id]["active_power_kw"] == pytest.approx(-1234.5)
    assert tags[block.id]["cell_temp_max_c"] == pytest.approx(-7.3)
    assert tags[unit.inverters[0].id]["status_code"] == 3  # the injected fault
    assert tags[unit.id]["status_code"] == 2  # derated: one inverter down
    assert tags[unit.id]["available_power_kw"] == pytest.approx(1250.0)
    # Timestamps are the poll instants: on the 0.2 s grid, within the run, increasing.
    stamps = [x.ts_ms for x in samples]
    assert stamps == sorted(set(stamps))
    assert all(t % 200 == 0 for t in stamps)
    assert started * 1000 - 200 <= stamps[0] and stamps[-1] <= time.time() * 1000
