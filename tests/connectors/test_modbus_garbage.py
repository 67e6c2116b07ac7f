"""The Modbus connector facing devices that misbehave, against real pymodbus servers and the
real broker: exception responses, answers with fewer or more registers than asked, another
function's answer, frames of another transaction, noise, silence, and registers of random
contents for every datatype a profile knows. Nothing stops a poller and nothing impossible is
published: health says what the device does, and what cannot be decoded or cannot be true is
on the dead-letter topic under the device's id, counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any, TypedDict, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.kafka import read_topic
from connectors.modbus.codec import unpack
from connectors.modbus.devices import DeviceConfig, DeviceList, dump_devices
from connectors.modbus.errors import DeviceGarbled, DeviceRefused, DeviceUnavailable
from connectors.modbus.gateway import GatewayCoordinator, registers_of
from connectors.modbus.poller import DeviceMap, ModbusConnector, PollGroup, _decimal_scale
from connectors.modbus.profile import (
    DeviceProfile,
    MappedAsset,
    Point,
    load_profiles,
    parse_profile,
)
from connectors.modbus.service import run_modbus_connector
from connectors.modbus.sunspec import ModelHeader, SunSpecMap, discover, sunspec_profile
from connectors.publish import DevicePublisher
from connectors.refusals import NOT_TEXT, Refusals, Rejection
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.errors import InvalidInput
from contracts.events import DeadLetter, DeviceHealth, TelemetrySample
from contracts.fleet import Fleet
from infra.sim.server import Simulator
from infra.sim.sunspec import SUNSPEC_BASE
from tests.connectors.modbus_misbehaving import GARBLED, SPECIAL, Misbehaving, Mode, Watched
from tests.connectors.modbus_sim import HOST, device, gateway

PROFILES = load_profiles(EXAMPLE_PROFILES)
EVERY_TYPE_TEXT = """\
id: every-type
layout: {unit: {base: 0}, inverter: {base: 900, stride: 1, max: 4},
         block: {base: 950, stride: 1, max: 32}}
points:
  unit:
    - {tag: i16, offset: 0, datatype: int16, scale: 0.1, value_offset: -40}
    - {tag: u16, offset: 1, datatype: uint16, min: 0, max: 1000}
    - {tag: i32, offset: 2, datatype: int32, word_order: little}
    - {tag: u32, offset: 4, datatype: uint32, scale: 0.001, byte_order: little}
    - {tag: i64, offset: 6, datatype: int64}
    - {tag: u64, offset: 10, datatype: uint64, scale: 0.000001}
    - {tag: f32, offset: 14, datatype: float32, min: -50, max: 150}
    - {tag: f32_le, offset: 16, datatype: float32, word_order: little, byte_order: little}
    - {tag: f64, offset: 18, datatype: float64}
    - {tag: f64_huge, offset: 22, datatype: float64, scale: 1.0e+300}
    - {tag: text, offset: 26, datatype: string, count: 8}
    - {tag: text_swapped, offset: 34, datatype: string, count: 4, byte_order: little}
    - {tag: word, offset: 38, datatype: bitfield, bits: {a: 0, b: 15}}
    - {tag: dword, offset: 39, datatype: bitfield, count: 2, publish: false,
       bits: {c: 0, d: 31}}
    - {tag: mode, offset: 41, datatype: uint16, enum: {0: 0, 1: 1, 2: 2}}
    - {tag: spare, offset: 42, datatype: int16, missing: -32768}
    - {tag: w_sf, offset: 43, datatype: int16, publish: false, missing: -32768}
    - {tag: power_w, offset: 44, datatype: int16, scale_factor: w_sf}
    - {tag: energy_kwh, offset: 45, datatype: uint32, scale: 0.001, scale_factor: w_sf,
       min: 0}
"""
EVERY_TYPE = parse_profile(EVERY_TYPE_TEXT, "every-type.yaml")
# The registers of a well-behaved every-type device and what they decode to.
GOOD_VALUES: dict[str, float | str] = {
    "i16": -12.5, "u16": 500, "i32": -7, "u32": 4242.424, "i64": -9_000_000_000_000,
    "u64": 12.5, "f32": 21.5, "f32_le": 0.1, "f64": -1234.56789, "f64_huge": 2e300,
    "text": "BESS-01", "text_swapped": "AB", "word": 0x8001, "dword": 0x8000_0000, "mode": 2,
    "spare": -32768, "w_sf": -2, "power_w": 12.34, "energy_kwh": 0.05}
GOOD_TAGS: dict[str, object] = {
    **{t: float(v) for t, v in GOOD_VALUES.items()
       if t not in ("text", "text_swapped", "word", "dword", "spare", "w_sf")},
    "text": "BESS-01", "text_swapped": "AB", "word": 0x8001, "a": True, "b": True,
    "c": False, "d": True}
T = TypeVar("T")
EXAMPLES = 500  # random register images per run, each read through a real server


def image_of(profile: DeviceProfile, values: Mapping[str, float | str], base: int = 0,
             kind: str = "unit") -> dict[int, int]:
    """The registers of a device holding `values` (scale factors applied)."""
    by_tag = profile.by_tag[kind]  # type: ignore[index]
    image: dict[int, int] = {}
    for tag, value in values.items():
        point = by_tag[tag]
        exponent = int(values[point.scale_factor]) if point.scale_factor else 0
        if point.enum is not None:  # the code itself
            registers = profile.encode(point.model_copy(update={"enum": None, "scale": 1.0,
                                                                "value_offset": 0.0}), value)
        else:
            registers = profile.encode(point, value, exponent)
        image.update(zip(range(base + point.offset, base + point.offset + point.size),
                         registers, strict=True))
    return image


GOOD_IMAGE = image_of(EVERY_TYPE, GOOD_VALUES)


class Sinks(TypedDict):
    publish: Callable[[TelemetrySample], None]
    publish_health: Callable[[DeviceHealth], None]
    publish_dead: Callable[[DeadLetter], None]


class Sink(Watched):
    """What a connector publishes (kept, and handed on to a publisher when there is one),
    with a wait on it."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[TelemetrySample] = []
        self.health: list[DeviceHealth] = []
        self.dead: list[DeadLetter] = []
        self.publisher: DevicePublisher | None = None

    def sample(self, sample: TelemetrySample) -> None:
        self.samples.append(sample)
        if self.publisher is not None:
            self.publisher.sample(sample)
        self.changed()

    def health_event(self, event: DeviceHealth) -> None:
        self.health.append(event)
        if self.publisher is not None:
            self.publisher.health(event)
        self.changed()

    def dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)
        if self.publisher is not None:
            self.publisher.dead(letter)
        self.changed()

    def sinks(self, publisher: DevicePublisher | None = None) -> Sinks:
        self.publisher = publisher
        return {"publish": self.sample, "publish_health": self.health_event,
                "publish_dead": self.dead_letter}

    def states(self, device_id: str) -> list[str]:
        return [e.state for e in self.health if e.device_id == device_id]

    def state(self, device_id: str) -> str | None:
        states = self.states(device_id)
        return states[-1] if states else None


@contextlib.asynccontextmanager
async def polling(connector: ModbusConnector) -> AsyncIterator[asyncio.Task[None]]:
    """The connector polling until the block ends; it must not have stopped by itself."""
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    try:
        yield task
        assert not task.done(), "the connector stopped by itself"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)  # and raises whatever stopped it


# -- misbehaviour, one kind at a time -----------------------------------------------------

MISBEHAVIOURS: list[tuple[Mode, str]] = [
    ("exception", "exception 4 (server device failure)"),
    ("busy", "exception 6 (server device busy)"),
    ("unknown_exception", "exception 85 (unknown)"),
    ("silent", "no answer within 0.3 s"),
    ("short", "read 0+47: answered 23 registers"),
    ("long", "read 0+47: answered 49 registers"),
    ("function", "read 0+47: answered function 4 (ReadInputRegistersResponse), not 3"),
    ("other_transaction", "bytes came that are no answer to it"),
    ("noise", "bytes came that are no answer to it"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "says"), MISBEHAVIOURS, ids=[m for m, _ in MISBEHAVIOURS])
def test_a_misbehaving_device_degrades_goes_offline_and_comes_back(
        example_fleet: Fleet, mode: Mode, says: str) -> None:
    """Online; then every answer misbehaves: the device turns offline (through degraded when
    it still answers), nothing is published from those polls, and every undecodable answer is
    one dead letter; then it behaves again and is online after a window of clean polls."""
    unit = example_fleet.sites[0].units[0]
    dev = Misbehaving({1: GOOD_IMAGE})
    out = Sink()

    async def scenario() -> ModbusConnector:
        async with dev.serving() as port:
            m = DeviceMap.build(device(unit, port, 1, profile="every-type", poll_interval_s=0.05),
                                example_fleet, {"every-type": EVERY_TYPE})
            assert m.group().blocks == ((0, 47),)  # one request per poll
            connector = ModbusConnector([m], **out.sinks())
            async with polling(connector):
                await out.until(lambda: out.state(unit.id) == "online", "online")
                dev.mode = mode
                await out.until(lambda: out.state(unit.id) == "offline", "offline")
                await dev.until(lambda: dev.served[mode] >= 3, "three misbehaving answers")
                dev.mode = "ok"
                await out.until(lambda: out.state(unit.id) == "online", "online again")
            return connector

    connector = asyncio.run(scenario())
    # Nothing but the good registers was published, once per good answer.
    assert out.samples and all(s.assets[0].tags == GOOD_TAGS for s in out.samples)
    assert all(len(s.assets) == 1 for s in out.samples)  # only the unit has points
    assert len(out.samples) == dev.served["ok"]
    states = out.states(unit.id)
    assert states[0] == "online" and states[-1] == "online" and "offline" in states
    assert states[states.index("offline") + 1] == "degraded"  # trusted again after a window
    failed = [e for e in out.health if e.state in ("degraded", "offline")]
    assert any(says in e.reason for e in failed), [e.reason for e in failed]
    if mode in GARBLED:
        assert len(out.dead) == dev.served[mode]  # one dead letter per undecodable answer
        assert connector.refusals.of(unit.id) == Counter({"undecodable": dev.served[mode]})
        for dead in out.dead:
            assert (dead.source, dead.reason, dead.key) == ("connectors.modbus", "undecodable",
                                                           unit.id)
            assert says in dead.detail and "unit 1 read 0+47" in dead.detail
            payload = json.loads(dead.payload)
            assert payload["device"] == unit.id and payload["refused"][0]["answer"]
    else:
        assert out.dead == []  # an exception response or silence is health, not data


# -- registers of random contents, and every misbehaviour mixed, onto the real broker ------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("pipeline", [1, 4], ids=["one-by-one", "pipelined"])
def test_garbage_registers_and_answers_reach_the_broker_as_dead_letters_only(
        settings: Settings, example_fleet: Fleet, pipeline: int) -> None:
    """Two devices behind one gateway answering, request by request, random registers (most),
    their own registers, short answers, noise, exceptions or nothing. On the real broker:
    every sample is a valid one with only possible values; every value left out of a sample is
    in a dead letter of the same poll, and no value is in both; every undecodable answer is a
    dead letter; both devices' health says degraded. Read one request after the other, and
    pipelined (the connector polls such a gateway's devices in rounds, each poll's answer
    handled as it comes)."""
    settings = settings.model_copy(update={
        "topic_device_health": f"t-{uuid.uuid4().hex[:8]}.device.health"})
    site = example_fleet.sites[0]
    v1_unit, every_unit = site.units[0], site.units[1]
    sim = Simulator(example_fleet, PROFILES, seed=3)
    v1_image = dict(enumerate(sim.images[v1_unit.id]))
    weights: dict[Mode, int] = {"random": 70, "ok": 10, "short": 5, "noise": 5,
                                "exception": 5, "silent": 5}
    dev = Misbehaving({1: v1_image, 2: GOOD_IMAGE}, seed=17,
                      mode=lambda unit: dev.rng.choices(list(weights),
                                                        list(weights.values()))[0])
    out = Sink()
    profiles = {"bess-unit-v1": PROFILES["bess-unit-v1"], "every-type": EVERY_TYPE}

    async def scenario() -> ModbusConnector:
        async with dev.serving() as port:
            devices = [device(v1_unit, port, 1, poll_interval_s=0.05, timeout_s=0.2,
                              pipeline=pipeline),
                       device(every_unit, port, 2, profile="every-type", poll_interval_s=0.05,
                              timeout_s=0.2, pipeline=pipeline)]
            publisher = DevicePublisher(settings, f"modbus-garbage-{uuid.uuid4().hex[:6]}")
            try:
                connector = ModbusConnector.from_devices(
                    devices, example_fleet, profiles, **out.sinks(publisher))
                async with polling(connector):
                    await dev.until(lambda: min(dev.served_by_unit[1],
                                                dev.served_by_unit[2]) >= 60,
                                    "60 answers to each device", timeout_s=60)
            finally:
                publisher.close()
            return connector

    connector = asyncio.run(scenario())
    bootstrap = settings.require_kafka()
    samples = [(m.key(), TelemetrySample.model_validate_json(m.value() or b""))
               for m in read_topic(bootstrap, settings.topic_telemetry,
                                   count=len(out.samples))]
    letters = [(m.key(), DeadLetter.model_validate_json(m.value() or b""))
               for m in read_topic(bootstrap, settings.topic_dlq, count=len(out.dead))]
    health = [DeviceHealth.model_validate_json(m.value() or b"")
              for m in read_topic(bootstrap, settings.topic_device_health,
                                  count=len(out.health))]
    assert (len(samples), len(letters), len(health)) == (
        len(out.samples), len(out.dead), len(out.health))
    assert len(letters) == connector.refusals.dead_letters
    points = {v1_unit.id: PROFILES["bess-unit-v1"], every_unit.id: EVERY_TYPE}
    maps = {m.device.id: m for m in (connector.device_map(v1_unit.id),
                                     connector.device_map(every_unit.id))}
    refused: dict[tuple[str, int], set[tuple[str, str]]] = {}
    for key, dead in letters:
        assert key == b"connectors.modbus" and dead.key in points
        assert dead.source == "connectors.modbus"
        assert dead.reason in ("impossible_value", "undecodable"), dead
        if dead.reason == "impossible_value":
            payload = json.loads(dead.payload)
            refused.setdefault((dead.key, dead.ts_ms), set()).update(
                (r["asset"], r["tag"]) for r in payload["refused"])
    published: dict[tuple[str, int], set[tuple[str, str]]] = {}
    for key, sample in samples:
        assert key == sample.device_id.encode()
        for reading in sample.assets:
            check_values(points[sample.device_id], maps[sample.device_id], reading.id,
                         reading.tags)
        published[(sample.device_id, sample.ts_ms)] = {
            (a.id, t) for a in sample.assets for t in a.tags}
    assert set(refused) <= set(published)  # a value is refused only from a published poll
    for poll, tags in published.items():
        both = tags & refused.get(poll, set())
        assert not both, (poll, both)
        missing = expected_tags(maps[poll[0]]) - tags - refused.get(poll, set())
        # only what a device may leave out: "not available", empty text, no scale factor
        assert {t for _, t in missing} <= {"spare", "text", "text_swapped", "power_w",
                                           "energy_kwh"}, (poll, missing)
    garbled = sum(n for mode, n in dev.served.items() if mode in GARBLED)
    undecodable = sum(d.reason == "undecodable" for _, d in letters)
    if pipeline == 1:
        assert garbled and undecodable == garbled
    else:  # answers on their way when noise dropped the connection are never read
        assert garbled and 0 < undecodable <= garbled
    assert sum(d.reason == "impossible_value" for _, d in letters) > 10
    for unit_id in points:
        assert "degraded" in [h.state for h in health if h.device_id == unit_id]
        counts = connector.refusals.of(unit_id)
        assert counts["impossible_value"] >= sum(
            len(json.loads(d.payload)["refused"]) for _, d in letters
            if d.key == unit_id and d.reason == "impossible_value") > 0


def expected_tags(m: DeviceMap) -> set[tuple[str, str]]:
    """(asset, tag) of every value a poll of the default group can publish."""
    out: set[tuple[str, str]] = set()
    for asset_id, reads in m.group().reads:
        for r in reads:
            if r.point.publish:
                out.add((asset_id, r.point.tag))
            out.update((asset_id, bit) for bit in r.point.bits or {})
    return out


def check_values(profile: DeviceProfile, m: DeviceMap, asset_id: str,
                 tags: Mapping[str, object]) -> None:
    """Every published value is a possible one: finite and in its point's range, a bit field's
    word and booleans, text without control characters."""
    kind = next(a.kind for a in m.assets if a.asset_id == asset_id)
    by_tag = profile.by_tag[kind]
    bits = {b: p for p in by_tag.values() for b in p.bits or {}}
    for tag, value in tags.items():
        if tag in bits:
            assert type(value) is bool, (tag, value)
            continue
        point = by_tag[tag]
        if point.datatype == "string":
            assert isinstance(value, str) and value and not NOT_TEXT.search(value), (tag, value)
        elif point.datatype == "bitfield":
            assert type(value) is int and 0 <= value < 1 << 16 * point.size, (tag, value)
        else:
            assert type(value) is float and math.isfinite(value), (tag, value)
            assert point.min is None or value >= point.min, (tag, value)
            assert point.max is None or value <= point.max, (tag, value)


# -- the decoder over random registers of every datatype, through a real server ------------

class ServedInThread:
    """A real pymodbus server and a gateway to it, on an event loop of their own in a thread,
    so that a Hypothesis test (synchronous) can serve and read registers example by example.
    `answer` may replace the bytes of the next answers (the request's bytes in, the answer's
    out)."""

    def __init__(self, blocks: tuple[tuple[int, int], ...]) -> None:
        self.dev = Misbehaving({1: {}}, blocks=blocks)
        self.answer: Callable[[bytes], bytes] | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self.gateway = GatewayCoordinator(HOST, 0, timeout_s=2)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def __enter__(self) -> ServedInThread:
        self.thread.start()
        port = self.call(self._start())
        self.gateway = GatewayCoordinator(HOST, port, timeout_s=2, backoff_s=0.001,
                                          backoff_max_s=0.001)
        return self

    async def _start(self) -> int:
        trace = self.dev.trace_packet

        def replaced(sending: bool, data: bytes) -> bytes:
            if sending and self.answer is not None:
                return self.answer(data)
            return trace(sending, data)

        self.dev.trace_packet = replaced  # type: ignore[method-assign]
        return await self._stack.enter_async_context(self.dev.serving())

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _stop(self) -> None:
        self.gateway.close()  # in the loop that uses it
        await self._stack.aclose()

    def read(self, blocks: tuple[tuple[int, int], ...]) -> dict[int, int]:
        return self.call(self.gateway.read(1, blocks, timeout_s=2))


SUNSPEC_MAP = SunSpecMap(1000, (ModelHeader(1, 1002, 66), ModelHeader(103, 1070, 50),
                                ModelHeader(124, 1122, 24)))


@pytest.fixture(scope="module")
def maps(example_fleet: Fleet) -> list[DeviceMap]:
    """Three register maps over the same registers: every datatype in every order (scale
    factors, enum, bit fields, text, ranges), the SunSpec models the connector maps, and the
    example profile with its unit's inverters and blocks."""
    unit = example_fleet.sites[0].units[0]
    config = device(unit, 1, 1)
    sunspec = sunspec_profile(SUNSPEC_MAP, "sunspec-fuzz")
    return [DeviceMap.build(config.model_copy(update={"profile": "every-type"}), example_fleet,
                            {"every-type": EVERY_TYPE}),
            DeviceMap.for_assets(config.model_copy(update={"profile": "sunspec"}), sunspec,
                                 (MappedAsset(unit.id, "unit", 0),)),
            DeviceMap.build(config, example_fleet, PROFILES)]


@pytest.fixture(scope="module")
def served() -> Iterator[ServedInThread]:
    with ServedInThread(((0, 1200),)) as server:
        yield server


def addresses(maps: list[DeviceMap]) -> list[int]:
    return sorted({a for m in maps for g in m.groups for start, n in g.blocks
                   for a in range(start, start + n)})


def register_contents(count: int) -> st.SearchStrategy[list[int]]:
    """`count` registers: random bytes (cheap to draw, unlike a list of integers), some of
    them replaced by SPECIAL contents."""
    return st.builds(
        lambda data, special: [*_words(data, special)],
        st.binary(min_size=2 * count, max_size=2 * count),
        st.lists(st.tuples(st.integers(0, count - 1), st.sampled_from(SPECIAL)),
                 max_size=32))


def _words(data: bytes, special: list[tuple[int, int]]) -> list[int]:
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    for i, word in special:
        words[i] = word
    return words


@pytest.mark.timeout(300)
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_registers_decode_to_possible_values_or_dead_letter_reasons(
        maps: list[DeviceMap], served: ServedInThread, data: st.DataObject) -> None:
    """Whatever the registers hold — for int16 … uint64, float32/64 in every order, text, bit
    fields, enums, SunSpec scale factors — each point, read through a real server, is either
    published as a possible value, left out as "not available", or refused with a reason and a
    detail naming it; decoding never raises."""
    wanted = addresses(maps)
    words = data.draw(register_contents(len(wanted)))
    served.dev.images[1] = dict(zip(wanted, words, strict=True))
    for m in maps:
        for group in m.groups:
            registers = served.read(group.blocks)
            assert all(registers[a] == served.dev.images[1][a] for a in registers)
            sample, rejections = m.decode_poll(group, registers, 1_777_000_000_000)
            check_poll(m, group, registers, sample, rejections)


def check_poll(m: DeviceMap, group: PollGroup, registers: Mapping[int, int],
               sample: TelemetrySample, rejections: list[Rejection]) -> None:
    TelemetrySample.model_validate(sample.model_dump())  # the contract holds
    refused = {(r.record["asset"], r.record["tag"]) for r in rejections}
    assert len(refused) == len(rejections)
    for r in rejections:
        assert r.reason == "impossible_value" and r.ts_ms == sample.ts_ms
        assert f"{r.record['asset']}.{r.record['tag']} (" in r.detail
        assert "registers [0x" in r.detail
    tags = {a.id: a.tags for a in sample.assets}
    for asset_id, reads in group.reads:
        check_values(m.profile, m, asset_id, tags[asset_id])
        for read in reads:
            point = read.point
            if not point.publish:
                continue
            words = [registers[a] for a in range(read.address, read.address + read.size)]
            raw = unpack(point.datatype, words, *m.profile.orders(point))
            if (asset_id, point.tag) in refused:
                assert point.tag not in tags[asset_id]
            elif point.tag not in tags[asset_id]:
                assert may_be_absent(read.scale_factor, point, raw, registers), (point, raw)


def may_be_absent(scale_factor: tuple[Point, int] | None, point: Point, raw: object,
                  registers: Mapping[int, int]) -> bool:
    """A point with nothing to publish: "not available", empty text, no scale factor."""
    if raw == point.missing or raw == "":
        return True
    if scale_factor is None:
        return False
    sf_point, sf_address = scale_factor
    return unpack("int16", [registers[sf_address]]) == sf_point.missing


# -- answers that are no answers, byte by byte ----------------------------------------------

@st.composite
def answers(draw: st.DrawFn) -> Callable[[bytes], bytes]:
    """A replacement of an answer's bytes: noise, or a frame of the request's transaction and
    unit with a random PDU, a random length field or a random byte count."""
    kind = draw(st.sampled_from(["noise", "pdu", "length", "byte_count"]))
    body = draw(st.binary(max_size=260))
    length = draw(st.integers(0, 0xFFFF))
    count = draw(st.integers(0, 255))

    def answer(data: bytes) -> bytes:
        if kind == "noise":
            return body
        tid, unit = data[:2], data[6:7]
        if kind == "pdu":
            return tid + b"\0\0" + struct.pack(">H", len(body) + 1) + unit + body
        if kind == "length":
            return tid + b"\0\0" + struct.pack(">H", length) + unit + data[7:]
        pdu = data[7:8] + bytes([count]) + data[9:]
        return tid + b"\0\0" + struct.pack(">H", len(pdu) + 1) + unit + pdu

    return answer


@pytest.mark.timeout(300)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers())
def test_any_bytes_for_an_answer_end_in_registers_or_one_of_our_errors(
        served: ServedInThread, answer: Callable[[bytes], bytes]) -> None:
    """Bytes in place of an answer never raise anything but the gateway's own errors (the
    poller handles those), and registers come back only as many as asked."""
    served.dev.images[1] = {a: a for a in range(10, 20)}
    served.answer = answer

    async def read() -> list[int] | Exception:
        try:
            async with served.gateway.hold(connect_now=True) as link:
                return await link.read(1, 10, 10, timeout_s=0.1)
        except (DeviceGarbled, DeviceUnavailable, DeviceRefused) as exc:
            return exc

    try:
        result = served.call(read())
    finally:
        served.answer = None
    if isinstance(result, list):
        assert len(result) == 10 and all(0 <= w <= 0xFFFF for w in result)


# -- SunSpec devices with garbage maps and scale factors ------------------------------------

def sunspec_image(sim: Simulator, unit_id: str) -> dict[int, int]:
    return {SUNSPEC_BASE + i: w for i, w in enumerate(sim.sunspec_images[unit_id])}


@pytest.mark.timeout(60)
def test_sunspec_scale_factors_beyond_ten_are_refused_not_raised(example_fleet: Fleet) -> None:
    """W_SF = 400 would make 10^400 (an OverflowError that stopped the connector) and Hz_SF =
    -400 a zero: both are refused (dead letters) while the device's other values go on."""
    site = example_fleet.sites[0]
    unit = site.units[2]
    sim = Simulator(example_fleet, PROFILES, seed=8, sunspec=[site.id])
    image = sunspec_image(sim, unit.id)
    dev = Misbehaving({1: image}, blocks=((40000, 200),))
    out = Sink()

    async def scenario() -> None:
        async with dev.serving() as port:
            gw = GatewayCoordinator(HOST, port)
            try:
                found = await discover(gw, 1, timeout_s=1)
            finally:
                gw.close()
            inverter = next(h for h in found.models if h.id == 103)
            image[inverter.address + 2 + 13] = 400  # W_SF
            image[inverter.address + 2 + 15] = (-400) & 0xFFFF  # Hz_SF
            dev.images[1] = image
            config = device(unit, port, 1, profile="sunspec", poll_interval_s=0.05)
            connector = ModbusConnector(sunspec=[config], **out.sinks())
            async with polling(connector):
                await out.until(lambda: len(out.samples) >= 3 and len(out.dead) >= 3,
                                "three samples and dead letters")
                assert out.state(unit.id) == "degraded"

    asyncio.run(scenario())
    for sample in out.samples:
        tags = sample.assets[0].tags
        assert "active_power_kw" not in tags and "frequency_hz" not in tags
        assert {"soc_pct", "temperature_c", "serial_number"} <= set(tags)
    dead = out.dead[0]
    assert (dead.source, dead.reason, dead.key) == ("connectors.modbus", "impossible_value",
                                                   unit.id)
    assert "active_power_kw (int16 at 40084: registers [0x" in dead.detail
    assert "scale factor sunspec_103_w_sf at 40085 = 400): scale factor 400 is outside " \
        "-10..10" in dead.detail
    assert "frequency_hz" in dead.detail and "scale factor -400 is outside" in dead.detail


@pytest.mark.timeout(60)
def test_a_sunspec_map_running_past_the_last_register_is_cut_not_crashed_on(
        example_fleet: Fleet) -> None:
    """A model header whose length sends the next model to 65500: its points beyond register
    65535 are not there (they made an invalid profile, which stopped the connector); the rest
    is mapped and polled."""
    unit = example_fleet.sites[0].units[0]
    common = sunspec_profile(SunSpecMap(40000, (ModelHeader(1, 40002, 66),)))
    image = {40000: 0x5375, 40001: 0x6E53, 40002: 1, 40003: 65500 - 40004}
    image.update(image_of(common, {"manufacturer": "ACME", "serial_number": "SN-1"}))
    at = 65502  # the inverter model's points (A, W, Hz, VAr, WH, TmpCab; Tmp_SF is at 65537)
    image.update({65500: 103, 65501: 50, at: 0xFFFF, at + 12: 1234, at + 13: 0, at + 14: 5000,
                  at + 15: (-2) & 0xFFFF, at + 18: 0x8000, at + 31: 250})
    dev = Misbehaving({1: image}, blocks=((40000, 100), (65500, 36)))
    out = Sink()

    async def scenario() -> ModbusConnector:
        async with dev.serving() as port:
            config = device(unit, port, 1, profile="sunspec", poll_interval_s=0.05)
            connector = ModbusConnector(sunspec=[config], **out.sinks())
            async with polling(connector):
                await out.until(lambda: len(out.samples) >= 2, "two samples")
            return connector

    connector = asyncio.run(scenario())
    tags = out.samples[-1].assets[0].tags
    # W, Hz and TmpCab are within the registers; Tmp_SF (65537) and St (65538) are not
    assert tags == {"manufacturer": "ACME", "serial_number": "SN-1",
                    "active_power_kw": 1.234, "frequency_hz": 50.0}
    assert connector.device_map(unit.id).profile.points["unit"][-1].offset <= 65535
    assert out.dead == []


# -- a sample at an impossible time, and the service's dead-letter topic ---------------------

@pytest.mark.timeout(30)
def test_a_clock_in_1985_publishes_no_sample_but_dead_letters(example_fleet: Fleet) -> None:
    unit = example_fleet.sites[0].units[0]
    dev = Misbehaving({1: GOOD_IMAGE})
    out = Sink()
    offset_s = 40 * 365 * 86400

    async def scenario() -> None:
        async with dev.serving() as port:
            m = DeviceMap.build(device(unit, port, 1, profile="every-type", poll_interval_s=0.05),
                                example_fleet, {"every-type": EVERY_TYPE})
            connector = ModbusConnector([m], **out.sinks(), clock=lambda: time.time() - offset_s)
            async with polling(connector):
                await out.until(lambda: len(out.dead) >= 3, "three dead letters")

    asyncio.run(scenario())
    assert out.samples == [] and out.states(unit.id) == ["online"]  # the device is fine
    for dead in out.dead:
        assert (dead.reason, dead.key) == ("impossible_timestamp", unit.id)
        assert "is outside 2000-01-01..2100-01-01" in dead.detail
        sample = TelemetrySample.model_construct(**json.loads(dead.payload)["refused"][0]["sample"])
        assert sample.device_id == unit.id


@pytest.mark.timeout(90)
def test_the_service_sends_impossible_values_to_the_dead_letter_topic(
        settings: Settings, example_fleet: Fleet, tmp_path: Any) -> None:
    """`bessmon connect modbus`: a state of charge of 150 % (the example profile's soc_pct is
    0..100) is left out of the unit's samples and is on the dead-letter topic under its id."""
    settings = settings.model_copy(update={
        "topic_device_health": f"t-{uuid.uuid4().hex[:8]}.device.health"})
    site = example_fleet.sites[0]
    unit = site.units[1]
    sim = Simulator(example_fleet, PROFILES, seed=4)
    sim.set_value(unit.id, "soc_pct", 150.0)
    devices_file = tmp_path / "devices.yaml"

    async def scenario() -> None:
        async with gateway(sim, site.units) as port:
            devices_file.write_text(dump_devices(DeviceList(devices=(
                device(unit, port, 2, poll_interval_s=0.1),))))
            stop = asyncio.Event()
            task = asyncio.create_task(run_modbus_connector(settings, devices_file, stop))
            try:
                await asyncio.to_thread(read_topic, settings.require_kafka(), settings.topic_dlq,
                                        count=2, timeout_s=30)
            finally:
                stop.set()
                await task

    asyncio.run(scenario())
    bootstrap = settings.require_kafka()
    letters = [DeadLetter.model_validate_json(m.value() or b"")
               for m in read_topic(bootstrap, settings.topic_dlq, count=2, timeout_s=15)]
    assert all((d.source, d.reason, d.key) == ("connectors.modbus", "impossible_value", unit.id)
               for d in letters)
    assert f"{unit.id}.soc_pct (uint16 at 5: registers [0x3A98]): 150.0 is outside [0, 100]" \
        in letters[0].detail
    samples = [TelemetrySample.model_validate_json(m.value() or b"")
               for m in read_topic(bootstrap, settings.topic_telemetry, count=2, timeout_s=15)]
    assert samples and all("soc_pct" not in s.assets[0].tags for s in samples)
    assert all("soh_pct" in s.assets[0].tags for s in samples)  # the rest of the poll


# -- profiles: ranges and offsets that make no sense are refused with their line ------------

HEAD = "id: a\nlayout: {unit: {base: 0}}\npoints:\n  unit:\n"


@pytest.mark.parametrize(("point", "message"), [
    ("{tag: x, offset: 0, datatype: int16, min: .nan}",
     "p.yaml:5: points.unit[0].min: must be a finite number (got nan)"),
    ("{tag: x, offset: 0, datatype: int16, max: .inf}",
     "p.yaml:5: points.unit[0].max: must be a finite number (got inf)"),
    ("{tag: x, offset: 0, datatype: int16, value_offset: -.inf}",
     "p.yaml:5: points.unit[0].value_offset: must be a finite number (got -inf)"),
    ("{tag: x, offset: 0, datatype: uint16, enum: {1: .nan}}",
     "p.yaml:5: points.unit[0].enum.1: must be a finite number (got nan)"),
    ("{tag: x, offset: 0, datatype: int16, min: 10, max: -10}",
     "p.yaml:5: points.unit[0]: min 10.0 is above max -10.0"),
    ("{tag: x, offset: 0, datatype: string, count: 2, max: 5}",
     "p.yaml:5: points.unit[0]: min and max bound numbers; a string point has none"),
    ("{tag: x, offset: 0, datatype: bitfield, min: 0}",
     "p.yaml:5: points.unit[0]: min and max bound numbers; a bitfield point has none"),
])
def test_profile_ranges_are_validated(point: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_profile(f"{HEAD}    - {point}\n", "p.yaml")
    assert str(caught.value) == message


def test_a_device_id_must_be_a_printable_name() -> None:
    with pytest.raises(ValueError, match="String should match pattern"):
        DeviceConfig(id="u1\x00", asset="u1", host=HOST, port=502, unit_id=1, profile="p")


@pytest.mark.timeout(30)
def test_good_registers_decode_to_the_values_set(example_fleet: Fleet) -> None:
    """The every-type device of these tests, read through a real server, is what it says."""
    unit = example_fleet.sites[0].units[0]
    dev = Misbehaving({1: GOOD_IMAGE})

    async def scenario() -> tuple[TelemetrySample, list[Rejection]]:
        async with dev.serving() as port:
            m = DeviceMap.build(device(unit, port, 1, profile="every-type"), example_fleet,
                                {"every-type": EVERY_TYPE})
            gw = GatewayCoordinator(HOST, port)
            try:
                registers = await gw.read(1, m.group().blocks, timeout_s=1)
            finally:
                gw.close()
            return m.decode_poll(m.group(), registers, 1_777_000_000_000)

    sample, rejections = asyncio.run(scenario())
    assert rejections == [] and sample.assets[0].tags == GOOD_TAGS


def test_refusals_are_counted_per_device_and_logged_sparingly(
        caplog: pytest.LogCaptureFixture) -> None:
    """The first refusal of each device and reason is logged at once, later ones as a
    summary at most once a minute per device; every one is counted and published."""
    now = [0.0]
    published: list[DeadLetter] = []
    refusals = Refusals("connectors.modbus", published.append, monotonic=lambda: now[0])

    def refuse(device_id: str, *reasons: str) -> None:
        refusals.report(device_id, [Rejection(r, f"{device_id}.x: {r}", {"tag": "x"},
                                              1_777_000_000_000) for r in reasons])

    with caplog.at_level("WARNING", logger="connectors.refusals"):
        refuse("d1", "impossible_value", "impossible_value")  # one letter, two values
        refuse("d1", "undecodable")
        refuse("d2", "impossible_value")
        for _ in range(100):
            now[0] += 0.1
            refuse("d1", "impossible_value")
        now[0] += 60
        refuse("d1", "impossible_value")
    assert refusals.of("d1") == {"impossible_value": 103, "undecodable": 1}
    assert refusals.of("d2") == {"impossible_value": 1} and refusals.of("d3") == {}
    assert refusals.dead_letters == len(published) == 104
    assert {(d.key, d.source) for d in published} == {("d1", "connectors.modbus"),
                                                      ("d2", "connectors.modbus")}
    assert json.loads(published[0].payload) == {"device": "d1",
                                                "refused": [{"tag": "x"}, {"tag": "x"}]}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages  # d1 twice (two reasons), d2, one summary of d1
    assert messages[-1].startswith("device d1: refused so far: impossible_value 103, "
                                   "undecodable 1; the last: d1: d1.x: impossible_value")


# -- the fast decoder against the obvious one ----------------------------------------------

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_block_decoder_decodes_as_the_obvious_one(maps: list[DeviceMap],
                                                      data: st.DataObject) -> None:
    """`decode_blocks` (one struct per block, the group's unrolled decoder, the cheap
    readings) gives exactly what `decode_poll` over registers by address gives — the same
    sample, byte for byte in JSON, and the same refusals — whatever the registers hold."""
    for m in maps:
        for group in m.groups:
            blocks = [struct.pack(f">{count}H", *data.draw(register_contents(count)))
                      for _, count in group.blocks]
            registers = registers_of(group.blocks, blocks)
            fast, fast_refused = m.decode_blocks(group, blocks, 1_777_000_000_000)
            slow, slow_refused = m.decode_poll(group, registers, 1_777_000_000_000)
            assert fast == slow
            assert fast.model_dump_json() == slow.model_dump_json()
            assert fast_refused == slow_refused


@pytest.mark.parametrize("datatype", ["int16", "uint16", "int32", "uint32"])
@pytest.mark.parametrize("scale", [1.0, 0.1, 0.01, 0.001, 1e-6, 0.5, 0.25, 0.3, 1.7, 2.0, 10.0,
                                   0.123456789, 1e-10, 3.14159])
def test_exact_scaling_is_what_scaled_gives(datatype: str, scale: float) -> None:
    """Where `_decimal_scale` takes a point (integer arithmetic, one division), its value is
    the float `Point.scaled` makes, bit for bit, over the whole range of the type."""
    point = Point.model_validate({"tag": "x", "offset": 0, "datatype": datatype,
                                  "scale": scale})
    decimal = _decimal_scale(point)
    if decimal is None:
        assert scale in (1e-10, 0.123456789, 3.14159)  # too many digits: left to `scaled`
        return
    factor, divisor = decimal
    bits = 16 if datatype.endswith("16") else 32
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if datatype.startswith("int") \
        else (0, (1 << bits) - 1)
    rng = random.Random(f"{datatype}{scale}")
    raws = [low, high, 0, 1, -1 if low else 2, *(rng.randint(low, high) for _ in range(500))]
    for raw in raws:
        assert repr(raw * factor / divisor) == repr(point.scaled(raw)), raw
