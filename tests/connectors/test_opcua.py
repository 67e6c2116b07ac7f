"""OPC UA ingestion against a real asyncua server on loopback: the simulator's OPC UA vendor
(one site's units, power in W and temperatures in kelvin) and the connector subscribing to it.
What is set in the simulator arrives scaled, at its source timestamp, on the real broker; a
server restart is survived without repeating a value; each session's liveness checks are
published as its devices' comms figures, dropped and retried while the server is stopped;
credentials and certificates are enforced; bad device lists are refused with their line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from asyncua import ua
from confluent_kafka import Message

from connectors.kafka import read_topic
from connectors.modbus.profile import load_profiles
from connectors.opcua import cli
from connectors.opcua.client import (
    AuthenticationRefused,
    Backoff,
    EndpointCoordinator,
    SampleBuilder,
    SecurityRefused,
    epoch_ms,
)
from connectors.opcua.config import (
    OpcUaDevice,
    OpcUaDeviceList,
    Security,
    dump_devices,
    load_devices,
    parse_devices,
    passwords,
)
from connectors.opcua.service import run_opcua_connector
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.errors import InvalidInput
from contracts.events import DeviceHealth, DeviceStats, TelemetrySample, device_health_event
from contracts.fleet import Fleet
from infra.ports import free_port
from infra.sim.opcua_server import OpcUaSimServer, make_certificate, serve_opcua
from infra.sim.server import Simulator
from tests.waiting import until_on_topic

SITE = "mesa"  # 4 units, 76 assets: 304 nodes
FAST = Backoff(first_s=0.2, most_s=1.0)


def simulator(fleet: Fleet, seed: int = 5) -> Simulator:
    return Simulator(fleet, load_profiles(EXAMPLE_PROFILES), seed=seed)


def with_health_topic(settings: Settings) -> Settings:
    """The fixture's topics are the test's own; the health topic must be too."""
    return settings.model_copy(update={
        "topic_device_health": f"{settings.topic_telemetry}.device-health"})


@contextlib.asynccontextmanager
async def serving(server: OpcUaSimServer, tick_s: float = 0.2) -> AsyncIterator[None]:
    """The server started, the simulator ticking into it; everything stopped afterwards."""
    await server.start()
    ticker = asyncio.ensure_future(server.run(tick_s))
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await server.stop()


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class Recorder:
    def __init__(self) -> None:
        self.samples: list[TelemetrySample] = []
        self.health: list[DeviceHealth] = []
        self.stats: list[DeviceStats] = []

    def coordinator(self, devices: list[OpcUaDevice], password: str | None = None, *,
                    watchdog_s: float = 0.5, stats_every_s: float = 60.0
                    ) -> EndpointCoordinator:
        return EndpointCoordinator(devices, password=password, on_sample=self.samples.append,
                                   on_health=self.health.append, on_stats=self.stats.append,
                                   backoff=FAST, watchdog_s=watchdog_s,
                                   stats_every_s=stats_every_s)

    @property
    def states(self) -> list[str]:
        return [h.state for h in self.health]


async def run_until(coordinators: list[EndpointCoordinator], done: Callable[[], bool],
                    timeout_s: float = 30.0) -> None:
    """Run the coordinators until `done()` says what the test waits for has happened."""
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(c.run(stop)) for c in coordinators]
    try:
        await until(done, timeout_s)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def read_samples(settings: Settings) -> list[TelemetrySample]:
    messages = read_topic(settings.require_kafka(), settings.topic_telemetry, idle_s=1.0)
    samples = [TelemetrySample.model_validate_json(m.value() or b"") for m in messages]
    assert all(m.key() == s.device_id.encode() for m, s in zip(messages, samples, strict=True))
    return samples


def health_events(messages: list[Message]) -> list[DeviceHealth | DeviceStats]:
    events = [device_health_event(m.value()) for m in messages]
    assert all(m.key() == e.device_id.encode() for m, e in zip(messages, events, strict=True))
    return events


def read_health(settings: Settings) -> list[DeviceHealth]:
    """The state changes on the device-health topic (its comms windows left out)."""
    messages = read_topic(settings.require_kafka(), settings.topic_device_health, idle_s=1.0)
    return [e for e in health_events(messages) if isinstance(e, DeviceHealth)]


def stats_of(messages: list[Message]) -> list[DeviceStats]:
    return [e for e in health_events(messages) if isinstance(e, DeviceStats)]


def keys_of(samples: list[TelemetrySample]) -> list[tuple[str, str, int]]:
    return [(a.id, tag, s.ts_ms) for s in samples for a in s.assets for tag in a.tags]


# -- the sample builder (no server) -----------------------------------------------------------

def _value(value: object, source: dt.datetime | None, server: dt.datetime | None = None,
           status: int = ua.StatusCodes.Good) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value), StatusCode_=ua.StatusCode(status),
                        SourceTimestamp=source, ServerTimestamp=server)


def test_a_publish_cycle_becomes_one_sample_per_device_and_timestamp() -> None:
    devices = parse_devices("""
devices:
- id: u1
  endpoint: opc.tcp://127.0.0.1:4840
  nodes:
    "ns=2;s=a": {asset: u1, tag: soc_pct}
    "ns=2;s=b": {asset: u1, tag: active_power_kw, scale: 0.001}
    "ns=2;s=c": {asset: u1-b1, tag: cell_temp_max_c, offset: -273.15}
    "ns=2;s=d": {asset: u1, tag: status_code}
- id: u2
  endpoint: opc.tcp://127.0.0.1:4840
  nodes:
    "ns=2;s=a2": {asset: u2, tag: soc_pct}
""", "t.yaml").devices
    t0 = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    t1 = t0 + dt.timedelta(milliseconds=500)
    builder = SampleBuilder(devices, clock=lambda: 1_777_777_777.5)
    builder.add("u1", "ns=2;s=a", _value(42.5, t0))
    builder.add("u1", "ns=2;s=b", _value(-1234500.0, t0))
    builder.add("u1", "ns=2;s=c", _value(265.85, t0))
    builder.add("u1", "ns=2;s=d", _value(2, t1))
    builder.add("u2", "ns=2;s=a2", _value(61.0, None, server=t1))
    first = builder.flush()
    t0_ms = epoch_ms(t0)
    assert t0_ms == 1_777_636_800_123
    assert [(s.device_id, s.ts_ms) for s in first] == [("u1", t0_ms), ("u1", t0_ms + 500),
                                                         ("u2", t0_ms + 500)]
    assert {a.id: a.tags for a in first[0].assets} == {
        "u1": {"soc_pct": 42.5, "active_power_kw": -1234.5}, "u1-b1": {"cell_temp_max_c": -7.3}}
    assert first[1].assets[0].tags == {"status_code": 2}  # an integer stays an integer
    assert isinstance(first[1].assets[0].tags["status_code"], int)
    assert all(s.device_type is None for s in first)

    # A new subscription repeats current values: same or older timestamps are dropped.
    builder.add("u1", "ns=2;s=a", _value(42.5, t0))
    builder.add("u1", "ns=2;s=d", _value(1, t0))
    builder.add("u2", "ns=2;s=a2", _value(61.0, None, server=t1))
    assert builder.flush() == [] and builder.repeats_dropped == 3
    # Bad quality and NaN are not values; no timestamp at all: the time of arrival.
    builder.add("u1", "ns=2;s=a", _value(0.0, t1, status=ua.StatusCodes.BadSensorFailure))
    builder.add("u1", "ns=2;s=b", _value(math.nan, t1))
    builder.add("u1", "ns=2;s=c", _value(300.0, None))
    late = builder.flush()
    assert [(s.ts_ms, s.assets[0].tags) for s in late] == [
        (1_777_777_777_500, {"cell_temp_max_c": 26.85})]
    assert builder.unusable_nodes("u1") == ["ns=2;s=a (BadSensorFailure)",
                                            "ns=2;s=b (nan is not finite)"]
    [nan] = builder.take_refused()["u1"]  # dead-lettered (tests/connectors/test_opcua_values.py)
    assert (nan.reason, nan.detail) == ("impossible_value",
                                        "u1.active_power_kw (node ns=2;s=b): nan is not finite")


def test_a_snapshot_device_sends_its_whole_state_in_every_sample() -> None:
    """`snapshots: true`: each sample completed with the last good value of every other
    node, in time order; a node gone bad is left out until it is good again."""
    devices = parse_devices("""
devices:
- id: u1
  endpoint: opc.tcp://127.0.0.1:4840
  snapshots: true
  nodes:
    "ns=2;s=a": {asset: u1, tag: status_code}
    "ns=2;s=b": {asset: u1, tag: soc_pct}
    "ns=2;s=c": {asset: u1-b1, tag: cell_temp_max_c}
""", "t.yaml").devices
    t0 = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    t1, t2 = t0 + dt.timedelta(seconds=1), t0 + dt.timedelta(seconds=2)
    builder = SampleBuilder(devices)
    for key, value in (("a", 0), ("b", 50.0), ("c", 25.0)):
        builder.add("u1", f"ns=2;s={key}", _value(value, t0))
    builder.add("u1", "ns=2;s=c", _value(25.1, t1))  # only the block's temperature changes
    builder.add("u1", "ns=2;s=b", _value(0.0, t2, status=ua.StatusCodes.BadNoCommunication))
    builder.add("u1", "ns=2;s=c", _value(25.2, t2))
    samples = builder.flush()
    assert [(s.ts_ms - epoch_ms(t0), {a.id: a.tags for a in s.assets}) for s in samples] == [
        (0, {"u1": {"status_code": 0, "soc_pct": 50.0}, "u1-b1": {"cell_temp_max_c": 25.0}}),
        (1000, {"u1": {"status_code": 0, "soc_pct": 50.0}, "u1-b1": {"cell_temp_max_c": 25.1}}),
        (2000, {"u1": {"status_code": 0}, "u1-b1": {"cell_temp_max_c": 25.2}}),
    ]
    builder.add("u1", "ns=2;s=b", _value(49.0, t2 + dt.timedelta(seconds=1)))
    [back] = builder.flush()
    assert back.assets[0].tags == {"status_code": 0, "soc_pct": 49.0}


# -- the device list --------------------------------------------------------------------------

VALID = """\
devices:
- id: mesa-u01
  endpoint: opc.tcp://127.0.0.1:4840/bess
  sampling_interval_ms: 500
  nodes:
    "ns=2;s=a": {asset: mesa-u01, tag: soc_pct}
    "ns=2;s=b": {asset: mesa-u01-i1, tag: active_power_kw, scale: 0.001}
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("  sampling_interval_ms: 500\n", "  username: op\n  password: hunter2\n",
     "o.yaml:5: devices[0].password: passwords are never kept in the device list: name the "
     "environment variable that holds it in password_env"),
    ("  sampling_interval_ms: 500\n", "  username: op\n",
     "o.yaml:2: devices[0]: username and password_env go together (the password is read from "
     "that environment variable)"),
    ("  sampling_interval_ms: 500\n", "  username: op\n  password_env: 1PW\n",
     "o.yaml:5: devices[0].password_env: must be an environment variable name: letters, "
     "digits and '_', not starting with a digit (got '1PW')"),
    ("opc.tcp://127.0.0.1:4840/bess", "http://127.0.0.1:4840",
     "o.yaml:3: devices[0].endpoint: must be an opc.tcp://host:port URL (got "
     "'http://127.0.0.1:4840')"),
    ("  sampling_interval_ms: 500\n", "  security: {policy: Basic256Sha256}\n",
     "o.yaml:4: devices[0].security: policy 'Basic256Sha256' needs client_certificate and "
     "client_private_key"),
    ("  sampling_interval_ms: 500\n", "  security: {policy: none, mode: Sign}\n",
     "o.yaml:4: devices[0].security: policy 'none' takes no mode and no certificates"),
    ("  sampling_interval_ms: 500\n", "  security: {policy: Basic128Rsa15}\n",
     "o.yaml:4: devices[0].security.policy: must be 'none' or 'Basic256Sha256' "
     "(got 'Basic128Rsa15')"),
    ("  sampling_interval_ms: 500\n", "  sampling_interval_ms: -5\n",
     "o.yaml:4: devices[0].sampling_interval_ms: must be greater than or equal to 0 (got -5)"),
    ("  sampling_interval_ms: 500\n", "  sampling_interval: 500\n",
     "o.yaml:4: devices[0].sampling_interval: extra inputs are not permitted (got 500)"),
    ('"ns=2;s=a"', "garbage",
     "o.yaml:6: devices[0].nodes.garbage: not an OPC UA node id (try ns=2;s=name, "
     "ns=2;i=1001 or nsu=urn:…;s=name)"),
    ("{asset: mesa-u01-i1, tag: active_power_kw, scale: 0.001}",
     "{asset: mesa-u01, tag: soc_pct}",
     "o.yaml:7: devices[0].nodes.ns=2;s=b: asset 'mesa-u01' tag 'soc_pct' is already mapped "
     "by device 'mesa-u01' node 'ns=2;s=a'"),
    ("tag: soc_pct", "tag: SoC",
     "o.yaml:6: devices[0].nodes.ns=2;s=a.tag: must be a canonical tag name: lower-case "
     "letters, digits and '_', starting with a letter (got 'SoC')"),
    ("scale: 0.001", "scale: 0",
     "o.yaml:7: devices[0].nodes.ns=2;s=b.scale: must not be 0"),
    ("scale: 0.001", "scale: .nan",
     "o.yaml:7: devices[0].nodes.ns=2;s=b.scale: must be a finite number (got nan)"),
    ("{asset: mesa-u01, tag: soc_pct}", "{tag: soc_pct}",
     "o.yaml:6: devices[0].nodes.ns=2;s=a.asset: required key is missing"),
    (VALID[VALID.index("  nodes:"):], "  nodes: {}\n",
     "o.yaml:5: devices[0].nodes: must not be empty"),
    ("- id: mesa-u01", "- id: mesa", "o.yaml:2: devices[0].id: 'mesa' is not a battery unit of "
     "the fleet"),
    ("{asset: mesa-u01, tag: soc_pct}", "{asset: elbe-u01, tag: soc_pct}",
     "o.yaml:6: devices[0].nodes.ns=2;s=a.asset: 'elbe-u01' is not an asset of unit "
     "'mesa-u01'"),
])
def test_invalid_device_lists_are_refused(example_fleet: Fleet, old: str, new: str,
                                          message: str) -> None:
    assert old in VALID
    with pytest.raises(InvalidInput) as caught:
        parse_devices(VALID.replace(old, new, 1), "o.yaml", fleet=example_fleet)
    assert str(caught.value) == message


def test_device_list_files_passwords_and_duplicates(example_fleet: Fleet,
                                                    tmp_path: Path) -> None:
    twice = VALID + VALID.split("\n", 1)[1].replace("ns=2;s=a", "ns=2;s=x").replace(
        "ns=2;s=b", "ns=2;s=y")
    with pytest.raises(InvalidInput) as caught:
        parse_devices(twice, "o.yaml")
    assert str(caught.value) == "o.yaml:8: devices[1].id: duplicate device id 'mesa-u01'"

    secure = VALID.replace("  sampling_interval_ms: 500\n", """\
  security: {policy: Basic256Sha256, client_certificate: pki/c.der, client_private_key: k.pem}
  username: op
  password_env: MESA_OPCUA_PW
""")
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "c.der").write_bytes(b"x")
    path = tmp_path / "devices.yaml"
    path.write_text(secure, encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        load_devices(path, example_fleet)
    assert str(caught.value) == (f"{path}:4: devices[0].security.client_private_key: no such "
                                 f"file: {tmp_path / 'k.pem'}")
    (tmp_path / "k.pem").write_bytes(b"x")
    devices = load_devices(path, example_fleet)
    security = devices.devices[0].security
    assert security.client_certificate == tmp_path / "pki" / "c.der"  # relative to the file
    assert security.message_mode == "SignAndEncrypt"
    assert devices.devices[0].publishing_ms == 1000  # the default sampling interval
    assert parse_devices(dump_devices(devices), "again.yaml") == devices

    with pytest.raises(InvalidInput) as caught:
        passwords(devices, {}, str(path))
    assert str(caught.value) == (f"{path}: devices[0].password_env: environment variable "
                                 "MESA_OPCUA_PW is not set")
    assert passwords(devices, {"MESA_OPCUA_PW": "pw"}, str(path)) == {"mesa-u01": "pw"}


def test_the_cli_action_parses_and_refuses_a_bad_list(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="connector")
    cli.add_parser(sub)
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: []\n", encoding="utf-8")
    args = parser.parse_args(["opcua", "--devices", str(bad)])
    assert args.run is cli.run and args.devices == bad
    with pytest.raises(InvalidInput, match=r"bad.yaml:1: devices: must not be empty"):
        cli.run(args, Settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"))


# -- against the simulator's OPC UA server ------------------------------------------------------

@pytest.mark.timeout(60)
def test_values_set_in_the_simulator_arrive_scaled_at_their_source_time(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    settings = with_health_topic(settings)
    sim = simulator(example_fleet)
    site = example_fleet.site(SITE)
    unit = site.units[1]
    block = unit.inverters[1].blocks[2]
    server = OpcUaSimServer(sim, SITE)
    devices_file = tmp_path / "opcua-devices.yaml"

    async def scenario() -> tuple[float, int]:
        before_server = time.time()
        server_task = asyncio.ensure_future(serve_opcua(
            server, devices_out=devices_file, tick_s=0.2, sampling_interval_ms=100))
        try:
            await until(devices_file.exists, 15)
            written = load_devices(devices_file, example_fleet)
            assert written == server.device_list(sampling_interval_ms=100)
            assert len(written.devices) == len(site.units)
            stop = asyncio.Event()
            connector = asyncio.ensure_future(
                run_opcua_connector(settings, devices_file, stop, backoff=FAST))
            bootstrap, topic = settings.require_kafka(), settings.topic_telemetry
            await until_on_topic(bootstrap, topic, lambda ms: {m.key() for m in ms} >= {
                u.id.encode() for u in site.units})  # every unit subscribed and reporting
            sim.set_value(unit.id, "soc_pct", 42.42)
            sim.set_value(unit.id, "active_power_kw", -1234.5)  # served in W
            sim.set_value(block.id, "cell_temp_max_c", -7.3)  # served in kelvin
            await server.refresh()
            pinned_ms = epoch_ms(server.values[f"{unit.id}.soc_pct"][1])
            assert epoch_ms(server.values[f"{block.id}.cell_temp_max_k"][1]) == pinned_ms
            await until_on_topic(bootstrap, topic, lambda ms: any(
                b'"soc_pct":42.42' in (m.value() or b"") for m in ms))
            stop.set()
            await connector
            return before_server, pinned_ms
        finally:
            server_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server_task
            assert not server.running

    before_server, pinned_ms = asyncio.run(scenario())
    samples = read_samples(settings)
    assert {s.device_id for s in samples} == {u.id for u in site.units}
    assert all(s.device_type is None for s in samples)
    keys = [(s.device_id, *k) for s in samples for k in keys_of([s])]
    assert len(keys) == len(set(keys)), "a value was published twice"
    # Source timestamps: a value unchanged since the server started carries that time.
    assert all(int(before_server * 1000) <= s.ts_ms <= time.time() * 1000 for s in samples)

    # The three pinned values changed in one publish cycle: one sample, at their source time.
    pinned = [s for s in samples if s.device_id == unit.id
              and any(a.tags.get("soc_pct") == 42.42 for a in s.assets)]
    assert len(pinned) == 1
    sample = pinned[0]
    tags = {a.id: a.tags for a in sample.assets}
    assert sample.ts_ms == pinned_ms
    assert tags[unit.id]["soc_pct"] == pytest.approx(42.42)
    assert tags[unit.id]["active_power_kw"] == pytest.approx(-1234.5)
    assert tags[block.id]["cell_temp_max_c"] == pytest.approx(-7.3)
    # The unit's assets all report under their own ids; status codes are integers.
    seen = {a.id for s in samples if s.device_id == unit.id for a in s.assets}
    assert seen == {unit.id} | {i.id for i in unit.inverters} | {
        b.id for i in unit.inverters for b in i.blocks}
    codes = [a.tags["status_code"] for s in samples for a in s.assets if "status_code" in a.tags]
    assert codes and all(isinstance(c, int) for c in codes)

    health = read_health(settings)
    assert sorted((h.device_id, h.state, h.previous) for h in health) == sorted(
        (u.id, "online", None) for u in site.units)
    assert all(h.connector == "opcua" for h in health)


@pytest.mark.timeout(60)
def test_a_server_restart_is_survived_without_repeating_a_value(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    settings = with_health_topic(settings)
    sim = simulator(example_fleet, seed=11)
    site = example_fleet.site(SITE)
    unit = site.units[0]
    sim.set_value(unit.id, "soc_pct", 55.5)  # never changes: keeps its source timestamp
    server = OpcUaSimServer(sim, SITE)
    devices_file = tmp_path / "opcua-devices.yaml"

    async def scenario() -> tuple[float, list[EndpointCoordinator]]:
        ticker: asyncio.Future[None] | None = None
        await server.start()
        port = server.port
        try:
            # Node ids by namespace URI: resolved again on every connection.
            server.write_device_list(devices_file, sampling_interval_ms=100, node_ids="uri")
            ticker = asyncio.ensure_future(server.run(0.2))
            stop = asyncio.Event()
            connector = asyncio.ensure_future(run_opcua_connector(
                settings, devices_file, stop, backoff=FAST, watchdog_s=0.5))
            units = {u.id.encode() for u in site.units}
            bootstrap = settings.require_kafka()

            def health(state: str, count: int) -> Callable[[list[Message]], bool]:
                return lambda ms: all(sum(1 for m in ms if m.key() == u and f'"state":"{state}"'
                                          .encode() in (m.value() or b"")) >= count
                                      for u in units)

            await until_on_topic(bootstrap, settings.topic_telemetry,
                                 lambda ms: {m.key() for m in ms} >= units)
            await server.stop()
            # the connector notices, then retries against a closed port
            await until_on_topic(bootstrap, settings.topic_device_health, health("offline", 1))
            await server.start()
            assert server.port == port
            restarted = time.time()
            await until_on_topic(bootstrap, settings.topic_device_health, health("online", 2))
            await until_on_topic(bootstrap, settings.topic_telemetry, lambda ms: all(
                any(m.key() == u and TelemetrySample.model_validate_json(
                    m.value() or b"").ts_ms > restarted * 1000 for m in ms)
                for u in units))  # samples flow again for every unit
            stop.set()
            coordinators = await connector
            return restarted, coordinators
        finally:
            if ticker is not None:
                ticker.cancel()
            await server.stop()

    restarted, coordinators = asyncio.run(scenario())
    samples = read_samples(settings)
    keys = [(s.device_id, *k) for s in samples for k in keys_of([s])]
    assert len(keys) == len(set(keys)), "a value was published twice across the restart"
    soc = [s.ts_ms for s in samples for a in s.assets if a.id == unit.id
           and a.tags.get("soc_pct") == 55.5]
    assert len(soc) == 1  # repeated by the new subscription, with the same timestamp: dropped
    for u in site.units:  # samples continue after the restart, for every unit
        assert any(s.device_id == u.id and s.ts_ms > restarted * 1000 for s in samples), u.id

    health = read_health(settings)
    for u in site.units:
        events = [h for h in health if h.device_id == u.id]
        assert [h.state for h in events] == ["online", "offline", "online"], u.id
        assert [h.previous for h in events] == [None, "online", "offline"]
        assert events[1].reason.startswith(f"{server.endpoint}: connection lost")
        assert events[1].consecutive_failures == 1
    assert [c.sessions for c in coordinators] == [2]  # one session for the site's server
    assert coordinators[0].builder.repeats_dropped > 0  # the resubscription's repeats


@pytest.mark.timeout(90)
def test_liveness_checks_are_published_as_comms_windows_dropped_while_the_server_is_down(
        settings: Settings, example_fleet: Fleet, tmp_path: Path) -> None:
    """Every `watchdog_s` the session is checked (a read of the server's state): while the
    server runs, each unit's window counts answered checks with their latency; while it is
    stopped, failed checks and reconnect attempts (retries). The windows name the unit, its
    site and the endpoint its health events name."""
    settings = with_health_topic(settings).model_copy(update={"stats_every_s": 1.0})
    site = example_fleet.site(SITE)
    units = {u.id for u in site.units}
    server = OpcUaSimServer(simulator(example_fleet, seed=7), SITE)
    devices_file = tmp_path / "opcua-devices.yaml"

    def windows(wanted: Callable[[DeviceStats], bool], count: int = 1
                ) -> Callable[[list[Message]], bool]:
        """At least `count` windows of every unit are `wanted`."""
        return lambda ms: all(sum(1 for w in stats_of(ms) if w.device_id == u and wanted(w))
                              >= count for u in units)

    async def scenario() -> list[DeviceStats]:
        ticker: asyncio.Future[None] | None = None
        await server.start()
        try:
            server.write_device_list(devices_file, sampling_interval_ms=100)
            ticker = asyncio.ensure_future(server.run(0.2))
            stop = asyncio.Event()
            connector = asyncio.ensure_future(run_opcua_connector(
                settings, devices_file, stop, backoff=FAST, watchdog_s=0.5))
            bootstrap, topic = settings.require_kafka(), settings.topic_device_health
            try:
                running = await until_on_topic(bootstrap, topic,
                                               windows(lambda w: w.polls > 0, count=2))
                await server.stop()
                await until_on_topic(bootstrap, topic, windows(lambda w: w.failed > 0))
                await until_on_topic(bootstrap, topic, windows(lambda w: w.retries > 0))
            finally:
                stop.set()
                await connector
            return stats_of(running)
        finally:
            if ticker is not None:
                ticker.cancel()
            await server.stop()

    running = asyncio.run(scenario())
    # While the server ran: every check answered, in time, none retried.
    assert {w.device_id for w in running} == units
    assert all(w.polls > 0 and w.failed == 0 and w.retries == 0 for w in running)
    assert all(w.latency_p50_ms is not None and w.latency_p95_ms is not None
               and w.latency_max_ms is not None and w.latency_max_ms < 4000 for w in running)

    events = health_events(read_topic(settings.require_kafka(), settings.topic_device_health,
                                      idle_s=1.0))
    stats = [e for e in events if isinstance(e, DeviceStats)]
    health = [e for e in events if isinstance(e, DeviceHealth)]
    assert {(w.device_id, w.connector, w.site_id, w.gateway) for w in stats} == {
        (u, "opcua", SITE, server.endpoint) for u in units}
    assert {h.gateway for h in health} == {server.endpoint}  # the same gateway as the states
    for u in units:
        mine = [w for w in stats if w.device_id == u]
        assert all(w.end_ms - w.start_ms == 1000 and w.start_ms % 1000 == 0 for w in mine)
        starts = [w.start_ms for w in mine]
        assert starts == sorted(set(starts))  # one window each, in time order
        assert [h.state for h in health if h.device_id == u][:2] == ["online", "offline"]
    # Stopped: checks failed (none answered in a window of failures only), reconnects retried.
    failing = [w for w in stats if w.failed > 0]
    assert {w.device_id for w in failing} == units
    assert all(w.failed <= w.polls for w in failing)
    assert all(w.latency_max_ms is None for w in failing if w.failed == w.polls)
    assert {w.device_id for w in stats if w.retries > 0} == units
    # One session for the site's units: they share its figures, window by window.
    figures = {(w.start_ms, w.polls, w.failed, w.retries) for w in stats}
    assert all(sum(1 for w in stats if (w.start_ms, w.polls, w.failed, w.retries) == f)
               == len(units) for f in figures)


@pytest.mark.timeout(60)
def test_an_endpoint_never_reached_drops_every_check_and_retries() -> None:
    """No session ever: every check that falls due is a failed poll (a drop rate of 1, not
    an empty window), every reconnect attempt a retry; the device is offline."""
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    [device] = parse_devices(f"""
devices:
- id: u1
  endpoint: {endpoint}
  nodes:
    "ns=2;s=a": {{asset: u1, tag: soc_pct}}
""", "t.yaml").devices
    out = Recorder()
    coordinator = out.coordinator([device], watchdog_s=0.2, stats_every_s=1.0)
    asyncio.run(run_until([coordinator], lambda: sum(w.retries for w in out.stats) >= 2))
    assert out.stats and all(
        (w.device_id, w.connector, w.site_id, w.gateway) == ("u1", "opcua", None, endpoint)
        for w in out.stats)
    assert all(w.polls > 0 and w.failed == w.polls and w.latency_p50_ms is None
               and w.latency_max_ms is None for w in out.stats)
    assert out.states == ["offline"] and not out.samples


@pytest.mark.timeout(60)
def test_username_and_password_are_enforced(example_fleet: Fleet) -> None:
    sim = simulator(example_fleet)
    server = OpcUaSimServer(sim, SITE, users={"operator": "s3cret-pw"})
    right, wrong, anonymous, missing_node = Recorder(), Recorder(), Recorder(), Recorder()

    async def scenario() -> list[EndpointCoordinator]:
        async with serving(server):
            devices = server.device_list(sampling_interval_ms=100, username="operator",
                                         password_env="MESA_OPCUA_PW")
            device = devices.devices[0]
            no_user = device.model_copy(update={"username": None, "password_env": None})
            extra = device.model_copy(update={"nodes": device.nodes | {
                f"ns={server.namespace_index};s=nowhere": device.nodes[next(iter(
                    device.nodes))].model_copy(update={"tag": "nowhere"})}})
            coordinators = [right.coordinator([device], "s3cret-pw"),
                            wrong.coordinator([device], "wrong-pw"),
                            anonymous.coordinator([no_user]),
                            missing_node.coordinator([extra], "s3cret-pw")]
            await run_until(coordinators, lambda: bool(
                right.samples and wrong.health and anonymous.health and missing_node.samples
                and missing_node.health))
            return coordinators

    good, bad, anon, partial = asyncio.run(scenario())
    assert right.samples and right.states == ["online"] and good.last_error is None
    assert not wrong.samples and wrong.states == ["offline"]
    assert isinstance(bad.last_error, AuthenticationRefused)
    message = (f"{server.endpoint}: user 'operator' refused by the server "
               "(BadUserAccessDenied): check the user name and password")
    assert str(bad.last_error) == message
    assert wrong.health[0].reason == message
    assert wrong.health[0].consecutive_failures == 1
    assert wrong.health[0].gateway == server.endpoint  # the comms view's gateway
    assert not anonymous.samples and anonymous.states == ["offline"]
    assert str(anon.last_error) == (f"{server.endpoint}: anonymous login refused by the server "
                                    "(BadIdentityTokenRejected): check the user name and "
                                    "password")
    # A node the server does not have: the device is degraded, its other values still come.
    assert missing_node.samples and missing_node.states == ["degraded"]
    assert missing_node.health[0].reason == (
        f"1 of {len(partial.devices[0].nodes)} nodes without good values: "
        f"ns={server.namespace_index};s=nowhere (BadNodeIdUnknown)")


@pytest.mark.timeout(60)
def test_basic256sha256_sign_and_encrypt_with_certificates(
        example_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> None:
    pki = tmp_path_factory.mktemp("pki")
    server_cert, server_key = make_certificate(pki, "server", "urn:bessmon:sim:opcua-server")
    client_cert, client_key = make_certificate(pki, "client", "urn:bessmon:connector")
    other_cert, other_key = make_certificate(pki, "stranger", "urn:bessmon:stranger")
    sim = simulator(example_fleet)
    server = OpcUaSimServer(sim, SITE, certificate=server_cert, private_key=server_key,
                            trusted_clients=[client_cert])
    secure = Security(policy="Basic256Sha256", mode="SignAndEncrypt",
                      client_certificate=client_cert, client_private_key=client_key,
                      server_certificate=server_cert)
    cases = {
        "secure": secure,
        "unsecured": Security(),
        "untrusted client": secure.model_copy(update={"client_certificate": other_cert,
                                                      "client_private_key": other_key}),
        "wrong pin": secure.model_copy(update={"server_certificate": other_cert}),
    }
    recorders = {name: Recorder() for name in cases}

    async def scenario() -> dict[str, EndpointCoordinator]:
        async with serving(server):
            coordinators = {
                name: recorders[name].coordinator(
                    [server.device_list(sampling_interval_ms=100, security=sec).devices[0]])
                for name, sec in cases.items()}
            await run_until(list(coordinators.values()), lambda: bool(
                recorders["secure"].samples and all(r.health for r in recorders.values())))
            return coordinators

    coordinators = asyncio.run(scenario())
    ok = recorders["secure"]
    assert ok.samples and ok.states == ["online"] and coordinators["secure"].last_error is None
    for name in ("unsecured", "untrusted client", "wrong pin"):
        assert not recorders[name].samples and recorders[name].states == ["offline"], name
        assert isinstance(coordinators[name].last_error, SecurityRefused), name
    endpoint = server.endpoint
    assert str(coordinators["unsecured"].last_error) == (
        f"{endpoint}: the server offers no endpoint with security None/None (it offers "
        "Basic256Sha256/SignAndEncrypt, Basic256Sha256/Sign): check security in the device "
        "list")
    assert str(coordinators["untrusted client"].last_error) == (
        f"{endpoint}: secure channel refused by the server (BadCertificateUntrusted): check "
        "the certificates and the security policy")
    assert str(coordinators["wrong pin"].last_error) == (
        f"{endpoint}: the server's certificate is not the pinned one ({other_cert})")


def test_device_list_of_the_simulator_round_trips(example_fleet: Fleet) -> None:
    """What the simulator writes is what the connector reads (no server needed for "uri")."""
    server = OpcUaSimServer(simulator(example_fleet), SITE, port=4840)
    devices = server.device_list(node_ids="uri", sampling_interval_ms=250)
    text = dump_devices(devices)
    again = parse_devices(text, "sim.yaml", fleet=example_fleet)
    assert again == devices
    assert isinstance(again, OpcUaDeviceList)
    node = again.devices[0].nodes[f"nsu=urn:bessmon:sim:{SITE};s={SITE}-u01.active_power_w"]
    assert (node.asset, node.tag, node.scale, node.offset) == (
        f"{SITE}-u01", "active_power_kw", 0.001, 0.0)
    with pytest.raises(RuntimeError, match="start the server first"):
        server.device_list()
