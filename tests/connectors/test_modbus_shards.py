"""`bessmon connect modbus --shard I/N`: N connector processes share one device list, whole
gateways each (one TCP connection per gateway stays one), every device polled by exactly one
of them — the rule (pure, every split of many lists), then two connectors against the
simulator's real gateways, every unit's samples arriving once per poll, from one of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.kafka import read_topic
from connectors.modbus.devices import DeviceConfig, load_devices, shard
from connectors.modbus.profile import load_profiles
from connectors.modbus.service import run_modbus_connector
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.errors import InvalidInput
from contracts.events import TelemetrySample
from contracts.fleet import Fleet
from infra.sim.server import Simulator, serve
from tests.waiting import until_on_topic


def device(n: int, port: int) -> DeviceConfig:
    return DeviceConfig(id=f"d{n}", asset=f"u{n}", host="127.0.0.1", port=port, unit_id=n % 250,
                        profile="bess-unit-v1")


@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=60),
       st.integers(min_value=1, max_value=8))
def test_every_device_in_exactly_one_shard_and_gateways_whole(ports: list[int],
                                                               count: int) -> None:
    devices = tuple(device(n, 5000 + p) for n, p in enumerate(ports))
    shards = [shard(devices, i, count) for i in range(count)]
    assert Counter(d.id for s in shards for d in s) == Counter(d.id for d in devices)  # once
    owner = {(d.host, d.port): i for i, s in enumerate(shards) for d in s}
    assert all(owner[(d.host, d.port)] == i for i, s in enumerate(shards) for d in s)
    per_shard = [len({(d.host, d.port) for d in s}) for s in shards]
    assert max(per_shard) - min(per_shard) <= 1  # gateways dealt out evenly
    assert shard(devices, 0, 1) == devices


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_outside_its_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="must be I/N"):
        shard((device(1, 5020),), index, count)


@pytest.mark.timeout(90)
def test_two_connectors_share_the_gateways_and_deliver_every_unit(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    devices_file = tmp_path / "devices.yaml"
    sim = Simulator(example_fleet, load_profiles(EXAMPLE_PROFILES), seed=3)
    units = {u.id for s in example_fleet.sites for u in s.units}

    async def scenario() -> None:
        server = asyncio.ensure_future(serve(sim, devices_out=devices_file, token="t" * 20,
                                             poll_interval_s=0.2))
        try:
            while not devices_file.exists():
                await asyncio.sleep(0.05)
            stop = asyncio.Event()
            connectors = [asyncio.ensure_future(run_modbus_connector(
                settings, devices_file, stop, part=(k, 2))) for k in range(2)]
            await until_on_topic(settings.require_kafka(), settings.topic_telemetry,
                                 lambda ms: {(m.key() or b"").decode() for m in ms} >= units)
            stop.set()
            await asyncio.gather(*connectors)
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    asyncio.run(scenario())
    samples = [TelemetrySample.model_validate_json(m.value() or b"") for m in read_topic(
        settings.require_kafka(), settings.topic_telemetry, to_end=True, timeout_s=30)]
    assert {s.device_id for s in samples} == units
    # One connector per gateway: no poll of a unit was made twice (one sample per timestamp).
    per_poll = Counter((s.device_id, s.ts_ms) for s in samples)
    assert max(per_poll.values()) == 1, per_poll.most_common(3)
    gateways = {(d.host, d.port) for d in load_devices(devices_file).devices}
    assert len(gateways) == len(example_fleet.sites)


def test_a_shard_with_no_gateway_is_refused_with_the_file(settings: Settings,
                                                          tmp_path: Path) -> None:
    devices_file = tmp_path / "devices.yaml"
    devices_file.write_text("devices:\n- {id: nordvik-u01, asset: nordvik-u01, "
                            "host: 127.0.0.1, port: 5020, unit_id: 1, profile: bess-unit-v1}\n")
    with pytest.raises(InvalidInput, match=r"devices.yaml: shard 1/2 has no device: the list "
                                           r"has 1 gateway\(s\)"):
        asyncio.run(run_modbus_connector(settings, devices_file, asyncio.Event(), part=(1, 2)))
