"""OPC UA values that cannot be true — not finite, out of the node's range, text where a number
is due, arrays and other types, text with control characters, times outside 2000..2100 — are
left out of the samples, dead-lettered under the device's id and counted, the device's health
says degraded while they last, and nothing of it stops the connector: first on the sample
builder, then against a real asyncua server and the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua

from connectors.kafka import read_topic
from connectors.opcua.client import Backoff, EndpointCoordinator, SampleBuilder, epoch_ms
from connectors.opcua.config import (
    OpcUaDevice,
    OpcUaDeviceList,
    dump_devices,
    parse_devices,
)
from connectors.opcua.service import run_opcua_connector
from connectors.publish import DevicePublisher
from connectors.settings import Settings
from contracts.errors import InvalidInput
from contracts.events import DeadLetter, DeviceHealth, TelemetrySample
from contracts.fleet import Fleet
from infra.ports import free_port
from tests.connectors.modbus_misbehaving import Watched

FAST = Backoff(first_s=0.2, most_s=1.0)
NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
DEVICES = parse_devices("""
devices:
- id: u1
  endpoint: opc.tcp://127.0.0.1:4840
  nodes:
    "ns=2;s=soc": {asset: u1, tag: soc_pct, min: 0, max: 100}
    "ns=2;s=power": {asset: u1, tag: active_power_kw, scale: 0.001}
    "ns=2;s=status": {asset: u1, tag: status_code, min: 0, max: 5}
    "ns=2;s=serial": {asset: u1, tag: serial_number}
    "ns=2;s=door": {asset: u1, tag: door_open}
    "ns=2;s=count": {asset: u1, tag: cycles}
    "ns=2;s=energy": {asset: u1, tag: energy_total_kwh, scale: 1000}
""", "t.yaml").devices


def value(v: object, source: dt.datetime | None = NOW, server: dt.datetime | None = None,
          variant: ua.VariantType | None = None) -> ua.DataValue:
    return ua.DataValue(ua.Variant(v, variant), SourceTimestamp=source, ServerTimestamp=server)


GOOD = {"soc": value(55.5), "power": value(-1234500.0), "status": value(2),
        "serial": value("SN-1"), "door": value(False), "count": value(12),
        "energy": value(1.5)}


@pytest.mark.parametrize(("node", "data", "reason", "problem"), [
    ("soc", value(math.nan), "impossible_value", "nan is not finite"),
    ("soc", value(math.inf), "impossible_value", "inf is not finite"),
    ("power", value(-math.inf), "impossible_value", "-inf is not finite"),
    ("energy", value(1e308), "impossible_value", "1e+308 × 1000 + 0 is not finite"),
    ("soc", value(100.5), "impossible_value", "100.5 is outside [0, 100]"),
    ("soc", value(-0.1), "impossible_value", "-0.1 is outside [0, 100]"),
    ("status", value(9), "impossible_value", "9.0 is outside [0, 5]"),
    ("status", value("RUN"), "impossible_value", "'RUN' is not a number"),
    ("status", value(True), "impossible_value", "True is not a number"),
    ("power", value("-1234"), "impossible_value", "'-1234' is not a number"),
    ("serial", value("SN\x07-1"), "impossible_value", "text 'SN\\x07-1' holds control "
                                                       "characters"),
    ("serial", value("x" * 1001), "impossible_value", "text of 1001 characters (at most 1000)"),
    ("door", value([True, False]), "impossible_value", "a value of type list is not a number, "
                                                       "string or boolean"),
    ("door", value(None), "impossible_value", "a value of type NoneType is not a number, "
                                              "string or boolean"),
    ("count", value(b"\x00\x01"), "impossible_value", "a value of type bytes is not a number, "
                                                      "string or boolean"),
    ("count", value(NOW), "impossible_value", "a value of type datetime is not a number, "
                                              "string or boolean"),
    ("count", value(ua.LocalizedText("7")), "impossible_value", "a value of type "
                                                              "LocalizedText is not a number,"
                                                              " string or boolean"),
    ("soc", value(50.0, dt.datetime(1601, 1, 1, tzinfo=dt.UTC)), "impossible_timestamp",
     "source timestamp -11644473600000 ms is outside 2000-01-01..2100-01-01"),
    ("soc", value(50.0, dt.datetime(1970, 1, 1)), "impossible_timestamp",
     "source timestamp 0 ms is outside 2000-01-01..2100-01-01"),
    ("soc", value(50.0, None, server=dt.datetime(9999, 1, 1, tzinfo=dt.UTC)),
     "impossible_timestamp", "server timestamp 253370764800000 ms is outside "
                             "2000-01-01..2100-01-01"),
])
def test_a_value_that_cannot_be_true_is_refused_and_the_rest_published(
        node: str, data: ua.DataValue, reason: str, problem: str) -> None:
    builder = SampleBuilder(DEVICES)
    earlier = NOW - dt.timedelta(seconds=1)
    for key, good in GOOD.items():
        builder.add("u1", f"ns=2;s={key}", value(good.Value.Value, earlier))
    builder.flush()
    for key, good in GOOD.items():  # one publish cycle: the bad value among good ones
        builder.add("u1", f"ns=2;s={key}", data if key == node else good)
    [sample] = builder.flush()
    mapping = DEVICES[0].nodes[f"ns=2;s={node}"]
    tags = sample.assets[0].tags
    assert mapping.tag not in tags
    assert len(tags) == len(GOOD) - 1  # the rest of the cycle is published
    refused = builder.take_refused()
    assert list(refused) == ["u1"] and len(refused["u1"]) == 1
    rejection = refused["u1"][0]
    assert rejection.reason == reason
    assert rejection.detail == f"u1.{mapping.tag} (node ns=2;s={node}): {problem}"
    assert rejection.record["node"] == f"ns=2;s={node}"
    assert builder.unusable_nodes("u1") == [f"ns=2;s={node} ({problem})"]
    json.dumps(rejection.record)  # the payload is JSON, whatever the value was
    assert builder.take_refused() == {}


def test_a_time_far_ahead_does_not_block_the_values_after_it() -> None:
    """A node stamped in 9999 once (refused) still gives its next honest value: the refused
    time is not remembered as the node's last (it was, and hid every value after it)."""
    builder = SampleBuilder(DEVICES)
    builder.add("u1", "ns=2;s=soc", value(50.0, dt.datetime(9999, 1, 1, tzinfo=dt.UTC)))
    assert builder.flush() == []
    builder.add("u1", "ns=2;s=soc", value(51.0))
    [sample] = builder.flush()
    assert sample.assets[0].tags == {"soc_pct": 51.0} and sample.ts_ms == epoch_ms(NOW)
    assert builder.repeats_dropped == 0 and builder.unusable_nodes("u1") == []


def test_a_snapshot_device_drops_the_held_value_of_a_node_turned_impossible() -> None:
    devices = [DEVICES[0].model_copy(update={"snapshots": True})]
    builder = SampleBuilder(devices)
    builder.add("u1", "ns=2;s=soc", value(50.0))
    builder.add("u1", "ns=2;s=count", value(3))
    builder.flush()
    later = NOW + dt.timedelta(seconds=1)
    builder.add("u1", "ns=2;s=soc", value(math.nan, later))
    builder.add("u1", "ns=2;s=count", value(4, later))
    [sample] = builder.flush()
    assert sample.assets[0].tags == {"cycles": 4}  # not the old 50.0 as if it were current


@pytest.mark.parametrize(("node", "message"), [
    ("{asset: mesa-u01, tag: soc_pct, min: 10, max: 5}",
     "o.yaml:5: devices[0].nodes.ns=2;s=a: min 10 is above max 5"),
    ("{asset: mesa-u01, tag: soc_pct, max: .nan}",
     "o.yaml:5: devices[0].nodes.ns=2;s=a.max: must be a finite number (got nan)"),
])
def test_node_ranges_are_validated(node: str, message: str) -> None:
    text = ("devices:\n- id: mesa-u01\n  endpoint: opc.tcp://127.0.0.1:4840\n  nodes:\n"
            f'    "ns=2;s=a": {node}\n')
    with pytest.raises(InvalidInput) as caught:
        parse_devices(text, "o.yaml")
    assert str(caught.value) == message


# -- against a real server and the real broker -----------------------------------------------

class Sink(Watched):
    def __init__(self) -> None:
        super().__init__()
        self.samples: list[TelemetrySample] = []
        self.health: list[DeviceHealth] = []
        self.dead: list[DeadLetter] = []

    def adder(self, into: list[Any], then: Callable[[Any], None]) -> Callable[[Any], None]:
        def add(item: Any) -> None:
            into.append(item)
            then(item)
            self.changed()
        return add

    def state(self) -> str | None:
        return self.health[-1].state if self.health else None

    def refused_tags(self) -> set[str]:
        return {r["tag"] for d in self.dead for r in json.loads(d.payload)["refused"]}

    def has(self, tag: str, wanted: object) -> bool:
        return any(a.tags.get(tag) == wanted for s in self.samples for a in s.assets)


class Served:
    """An asyncua server with one variable per node, whose values (any type, any time) the
    test writes."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.port = free_port("127.0.0.1")
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/values"
        self.server = Server()
        self.ids: dict[str, ua.NodeId] = {}
        self.types: dict[str, ua.VariantType] = {}
        self.index = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Served]:
        await self.server.init()
        self.server.disable_clock()
        self.server.set_endpoint(self.endpoint)
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.index = await self.server.register_namespace("urn:bessmon:test:values")
        number = ua.NodeId(ua.ObjectIds.Number)  # any type: the first value written decides
        for name in self.names:
            var = await self.server.nodes.objects.add_variable(
                ua.NodeId(name, self.index), name, ua.Variant(None), datatype=number)
            self.ids[name] = var.nodeid
        await self.server.start()
        try:
            yield self
        finally:
            await self.server.stop()

    async def write(self, name: str, v: object, source: dt.datetime | None = None,
                    variant: ua.VariantType | None = None) -> None:
        data = ua.Variant(v, variant)
        if self.types.get(name, data.VariantType) != data.VariantType:
            # A server keeps a node's type; a bad status clears the value, then any type goes.
            await self.server.write_attribute_value(self.ids[name], ua.DataValue(
                ua.Variant(None), StatusCode_=ua.StatusCode(ua.StatusCodes.BadOutOfService)))
        self.types[name] = data.VariantType
        status = await self.server.iserver.aspace.write_attribute_value(
            self.ids[name], ua.AttributeIds.Value, ua.DataValue(
                data, SourceTimestamp=source or dt.datetime.now(dt.UTC),
                ServerTimestamp=dt.datetime.now(dt.UTC)))
        assert status.is_good(), (name, v, status)

    def device(self, unit: str, block: str) -> OpcUaDevice:
        nodes = {
            "soc": {"asset": unit, "tag": "soc_pct", "min": 0, "max": 100},
            "power_w": {"asset": unit, "tag": "active_power_kw", "scale": 0.001},
            "status": {"asset": unit, "tag": "status_code", "min": 0, "max": 5},
            "serial": {"asset": unit, "tag": "serial_number"},
            "temp_k": {"asset": block, "tag": "cell_temp_max_c", "offset": -273.15},
            "door": {"asset": unit, "tag": "door_open"},
        }
        return OpcUaDevice.model_validate({
            "id": unit, "endpoint": self.endpoint, "sampling_interval_ms": 20,
            "nodes": {f"ns={self.index};s={n}": nodes[n] for n in self.names}})


NAMES = ["soc", "power_w", "status", "serial", "temp_k", "door"]
EXPECTED_REASONS = {"soc_pct": "impossible_value", "active_power_kw": "impossible_value",
                    "status_code": "impossible_value", "serial_number": "impossible_value",
                    "door_open": "impossible_value", "cell_temp_max_c": "impossible_timestamp"}


@pytest.mark.timeout(90)
def test_impossible_values_from_a_real_server_reach_the_broker_as_dead_letters_only(
        settings: Settings, example_fleet: Fleet) -> None:
    """Good values, then one impossible value on every node, then good values again: the
    impossible ones are dead letters on the broker (key = device id), never samples; the
    device is online, degraded, online; the connector never stops."""
    settings = settings.model_copy(update={
        "topic_device_health": f"t-{uuid.uuid4().hex[:8]}.device.health"})
    unit = example_fleet.site("mesa").units[0]
    block = unit.inverters[0].blocks[0]
    served = Served(NAMES)
    out = Sink()

    async def write_good(soc: float) -> None:
        await served.write("soc", soc)
        await served.write("power_w", -1234500.0)
        await served.write("status", 1, variant=ua.VariantType.UInt16)
        await served.write("serial", "SN-1")
        await served.write("temp_k", 300.15)
        await served.write("door", False)

    async def scenario() -> EndpointCoordinator:
        async with served.running():
            await write_good(55.5)
            publisher = DevicePublisher(settings, f"opcua-values-{uuid.uuid4().hex[:6]}")
            try:
                coordinator = EndpointCoordinator(
                    [served.device(unit.id, block.id)], backoff=FAST, watchdog_s=0.5,
                    on_sample=out.adder(out.samples, publisher.sample),
                    on_health=out.adder(out.health, publisher.health),
                    on_dead=out.adder(out.dead, publisher.dead))
                stop = asyncio.Event()
                task = asyncio.create_task(coordinator.run(stop))
                try:
                    await out.until(lambda: out.state() == "online" and out.has("soc_pct", 55.5),
                                    "online with the first values")
                    await served.write("soc", 150.0)
                    await served.write("power_w", math.nan)
                    await served.write("status", "RUN")
                    await served.write("serial", "SN\x00\x07")
                    await served.write("temp_k", 301.15, dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
                    await served.write("door", [True, False])
                    await out.until(lambda: out.refused_tags() == set(EXPECTED_REASONS),
                                    "every impossible value refused")
                    await out.until(lambda: out.state() == "degraded", "degraded")
                    await write_good(57.0)
                    await out.until(lambda: out.state() == "online" and out.has("soc_pct", 57.0),
                                    "online again with good values")
                    assert not task.done(), "the connector stopped by itself"
                finally:
                    stop.set()
                    await task
            finally:
                publisher.close()
            return coordinator

    coordinator = asyncio.run(scenario())
    bootstrap = settings.require_kafka()
    samples = [TelemetrySample.model_validate_json(m.value() or b"") for m in
               read_topic(bootstrap, settings.topic_telemetry, count=len(out.samples))]
    letters = [(m.key(), DeadLetter.model_validate_json(m.value() or b"")) for m in
               read_topic(bootstrap, settings.topic_dlq, count=len(out.dead))]
    health = [DeviceHealth.model_validate_json(m.value() or b"") for m in
              read_topic(bootstrap, settings.topic_device_health, count=len(out.health))]
    assert (len(samples), len(letters), len(health)) == (
        len(out.samples), len(out.dead), len(out.health))
    assert len(letters) == coordinator.refusals.dead_letters
    published = [(t, v) for s in samples for a in s.assets for t, v in a.tags.items()]
    assert ("soc_pct", 150.0) not in published and ("status_code", "RUN") not in published
    assert all(math.isfinite(v) for _, v in published if isinstance(v, float))
    assert all(t != "door_open" or isinstance(v, bool) for t, v in published)
    assert all(t != "serial_number" or v == "SN-1" for t, v in published)
    assert all(t != "cell_temp_max_c" or v in (27.0, 28.0) for t, v in published)  # not 9999's
    for key, dead in letters:
        assert key == b"connectors.opcua" and dead.key == unit.id
        assert dead.source == "connectors.opcua"
        for refused in json.loads(dead.payload)["refused"]:
            assert dead.reason == EXPECTED_REASONS[refused["tag"]], (dead.reason, refused)
    details = " ".join(d.detail for _, d in letters)
    assert f"{unit.id}.soc_pct (node ns={served.index};s=soc): 150.0 is outside [0, 100]" \
        in details
    assert "source timestamp 253370764800000 ms is outside 2000-01-01..2100-01-01" in details
    assert [h.state for h in health] == ["online", "degraded", "online"]
    assert "nodes without good values" in health[1].reason
    assert coordinator.refusals.of(unit.id) == {"impossible_value": 5, "impossible_timestamp": 1}


@pytest.mark.timeout(60)
def test_the_service_sends_refused_values_to_the_dead_letter_topic(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    """`bessmon connect opcua`: a node's impossible value is on the dead-letter topic."""
    settings = settings.model_copy(update={
        "topic_device_health": f"t-{uuid.uuid4().hex[:8]}.device.health"})
    unit = example_fleet.site("mesa").units[1]
    served = Served(["soc", "power_w"])
    devices_file = tmp_path / "opcua.yaml"

    async def scenario() -> None:
        async with served.running():
            await served.write("soc", 120.0)
            await served.write("power_w", 5000.0)
            devices_file.write_text(dump_devices(OpcUaDeviceList(
                devices=(served.device(unit.id, unit.id),))))
            stop = asyncio.Event()
            task = asyncio.create_task(run_opcua_connector(settings, devices_file, stop,
                                                           backoff=FAST))
            try:
                await asyncio.to_thread(read_topic, settings.require_kafka(),
                                        settings.topic_dlq, count=1, timeout_s=30)
            finally:
                stop.set()
                await task

    asyncio.run(scenario())
    bootstrap = settings.require_kafka()
    [letter] = [DeadLetter.model_validate_json(m.value() or b"")
                for m in read_topic(bootstrap, settings.topic_dlq, count=1)]
    assert (letter.source, letter.reason, letter.key) == ("connectors.opcua",
                                                          "impossible_value", unit.id)
    assert "soc_pct" in letter.detail and "120.0 is outside [0, 100]" in letter.detail
    samples = [TelemetrySample.model_validate_json(m.value() or b"")
               for m in read_topic(bootstrap, settings.topic_telemetry, count=1)]
    assert samples[0].assets[0].tags == {"active_power_kw": 5.0}
