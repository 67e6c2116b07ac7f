"""Register maps as data: every datatype in every word and byte order goes through a real
pymodbus server and comes back as the value that was set; the registers on the wire are the
ones a device manual would show; bad profiles are refused with file, line and key."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from pymodbus.client import AsyncModbusTcpClient

from connectors.modbus.codec import EncodeError
from connectors.modbus.gateway import GatewayCoordinator
from connectors.modbus.poller import DeviceMap
from connectors.modbus.profile import DeviceProfile, parse_profile
from contracts.errors import InvalidInput
from contracts.fleet import Fleet
from infra.sim.server import Simulator
from tests.connectors.modbus_sim import HOST, device, gateway

ORDERS = list(itertools.product(["big", "little"], ["big", "little"]))  # (word, byte)
# datatype, extra keys, registers, the value set in the simulator, what arrives
CASES: list[tuple[str, str, int, object, object]] = [
    ("int16", "", 1, -1234, -1234.0),
    ("uint16", "", 1, 65535, 65535.0),
    ("int32", "", 2, -2_000_000, -2_000_000.0),
    ("uint32", "", 2, 4_000_000_000, 4_000_000_000.0),
    ("int64", "", 4, -9_000_000_000_000, -9_000_000_000_000.0),
    ("uint64", "", 4, 2**53 - 1, float(2**53 - 1)),
    ("float32", "", 2, 0.1, 0.1),  # not 0.10000000149011612
    ("float64", "", 4, -1234.56789, -1234.56789),
    ("string", ", count: 6", 6, "BESS-Ä1 no", "BESS-Ä1 no"),  # 11 bytes of UTF-8, NUL-padded
    ("bitfield", "", 1, 0b1000_0000_0000_0101, 0b1000_0000_0000_0101),
    ("bitfield", ", count: 2", 2, 0x8000_0001, 0x8000_0001),
]


def _profile_text() -> str:
    lines = ["id: every-type",
             "layout: {unit: {base: 0}, inverter: {base: 900, stride: 1, max: 4},",
             "         block: {base: 950, stride: 1, max: 32}}", "points:", "  unit:"]
    offset = 0
    for (i, (datatype, extra, size, _, _)), (word, byte) in itertools.product(
            enumerate(CASES), ORDERS):
        lines.append(f"    - {{tag: p{i}_{word}_{byte}, offset: {offset}, datatype: {datatype}"
                     f"{extra}, word_order: {word}, byte_order: {byte}}}")
        offset += size
    lines += [
        f"    - {{tag: temperature_c, offset: {offset}, datatype: int16, scale: 0.1,"
        " value_offset: -40, unit: degC}",
        f"    - {{tag: alarms, offset: {offset + 1}, datatype: bitfield, publish: false,"
        " bits: {door_open: 0, fan_fault: 3, estop: 15}}",
        f"    - {{tag: mode, offset: {offset + 2}, datatype: uint16, enum: {{10: 0, 20: 1}}}}",
        f"    - {{tag: spare, offset: {offset + 3}, datatype: int16, missing: -32768}}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def every_type() -> DeviceProfile:
    return parse_profile(_profile_text(), "every-type.yaml")


def test_every_datatype_and_order_round_trips_through_a_real_server(
        every_type: DeviceProfile, example_fleet: Fleet) -> None:
    unit = example_fleet.sites[0].units[0]
    sim = Simulator(example_fleet, {"bess-unit-v1": every_type}, seed=1)
    expected: dict[str, object] = {}
    for (i, (_, _, _, value, arrives)), (word, byte) in itertools.product(enumerate(CASES),
                                                                          ORDERS):
        tag = f"p{i}_{word}_{byte}"
        sim.set_value(unit.id, tag, value)  # type: ignore[arg-type]
        expected[tag] = arrives
    sim.set_value(unit.id, "temperature_c", -12.5)  # raw 275
    sim.set_value(unit.id, "alarms", 0b1000_0000_0000_1000)
    sim.set_value(unit.id, "mode", 1)  # code 20
    sim.set_value(unit.id, "spare", -32768)  # "not available"

    async def scenario() -> dict[str, object]:
        async with gateway(sim, example_fleet.sites[0].units) as port:
            m = DeviceMap.build(device(unit, port, 1, profile="every-type"), example_fleet,
                                {"every-type": every_type})
            group = m.group()
            assert group.blocks == ((0, 120),)  # 48 points, one request
            gw = GatewayCoordinator(HOST, port)
            try:
                registers = await gw.read(1, group.blocks, timeout_s=1)
            finally:
                gw.close()
            sample = m.decode(group, registers, ts_ms=1_000)
            assert [a.id for a in sample.assets] == [unit.id]  # only the unit has points
            return dict(sample.assets[0].tags)

    tags = asyncio.run(scenario())
    for tag, value in expected.items():
        assert tags[tag] == value, tag
        assert type(tags[tag]) is type(value), tag
    assert tags["temperature_c"] == -12.5
    assert "alarms" not in tags  # publish: false — only its bits
    assert (tags["door_open"], tags["fan_fault"], tags["estop"]) == (False, True, True)
    assert tags["mode"] == 1.0
    assert "spare" not in tags


@pytest.mark.parametrize(("datatype", "extra", "value", "word", "byte", "on_the_wire"), [
    ("uint32", "", 0x01020304, "big", "big", [0x0102, 0x0304]),
    ("uint32", "", 0x01020304, "little", "big", [0x0304, 0x0102]),
    ("uint32", "", 0x01020304, "big", "little", [0x0201, 0x0403]),
    ("uint32", "", 0x01020304, "little", "little", [0x0403, 0x0201]),
    ("float32", "", 1.0, "big", "big", [0x3F80, 0x0000]),
    ("float32", "", 1.0, "little", "big", [0x0000, 0x3F80]),
    ("int16", "", -2, "big", "little", [0xFEFF]),
    ("uint64", "", 0x0001000200030004, "little", "big", [4, 3, 2, 1]),
    ("string", ", count: 3", "ABCD", "little", "big", [0x4142, 0x4344, 0]),  # no word order
    ("string", ", count: 3", "ABCD", "big", "little", [0x4241, 0x4443, 0]),
])
def test_registers_on_the_wire_are_those_of_the_manual(
        example_fleet: Fleet, datatype: str, extra: str, value: object, word: str, byte: str,
        on_the_wire: list[int]) -> None:
    """Read with a bare pymodbus client: the layout is checked against known answers, not
    against our own decoder."""
    profile = parse_profile(
        "id: wire\nlayout: {unit: {base: 0}, inverter: {base: 900, stride: 1, max: 4},\n"
        "  block: {base: 950, stride: 1, max: 32}}\n"
        f"points: {{unit: [{{tag: x, offset: 10, datatype: {datatype}{extra}, "
        f"word_order: {word}, byte_order: {byte}}}]}}\n", "wire.yaml")
    sim = Simulator(example_fleet, {"bess-unit-v1": profile}, seed=1)
    unit = example_fleet.sites[0].units[0]
    sim.set_value(unit.id, "x", value)  # type: ignore[arg-type]

    async def scenario() -> list[int]:
        async with gateway(sim, example_fleet.sites[0].units) as port:
            client = AsyncModbusTcpClient(HOST, port=port)
            await client.connect()
            try:
                result = await client.read_holding_registers(10, count=len(on_the_wire),
                                                             device_id=1)
            finally:
                client.close()
            return list(result.registers)

    assert asyncio.run(scenario()) == on_the_wire


@pytest.mark.parametrize(("datatype", "extra", "value", "problem"), [
    ("int16", "", 40000, "x: 40000 does not fit a int16"),
    ("uint16", "", -1, "x: -1 does not fit a uint16"),
    ("uint32", ", scale: 0.1", 429496729.6, "x: 4294967296 does not fit a uint32"),
    ("float32", "", 1e39, "x: 1e+39 does not fit a float32"),
    ("int32", "", float("nan"), "x: nan is not a number"),
    ("string", ", count: 2", "ABCDE", "x: 'ABCDE' is 5 bytes; the point holds 4"),
    ("string", ", count: 2", 12.0, "x: a string point takes text, not 12.0"),
    ("int16", "", "12", "x: takes a number, not '12'"),
    ("bitfield", "", 0x10000, "x: 65536 does not fit a bitfield of 1 registers"),
    ("uint16", ", enum: {1: 0, 2: 1}", 5, "x: 5 is none of the enum's values"),
])
def test_values_a_point_cannot_hold_are_refused(datatype: str, extra: str, value: object,
                                                problem: str) -> None:
    profile = parse_profile(f"id: a\nlayout: {{unit: {{base: 0}}}}\npoints: {{unit: [{{tag: x, "
                            f"offset: 0, datatype: {datatype}{extra}}}]}}\n", "a.yaml")
    with pytest.raises(EncodeError) as caught:
        profile.encode(profile.points["unit"][0], value)  # type: ignore[arg-type]
    assert str(caught.value) == problem


HEAD = "id: a\nlayout: {unit: {base: 0}}\npoints:\n  unit:\n"


@pytest.mark.parametrize(("text", "message"), [
    (HEAD + "    - {tag: x, offset: 0, datatype: string}\n",
     "p.yaml:5: points.unit[0]: a string point needs count (its registers, 2 bytes each)"),
    (HEAD + "    - {tag: x, offset: 0, datatype: string, count: 2, scale: 0.1}\n",
     "p.yaml:5: points.unit[0]: a string point takes no scale, value_offset, bits, enum or "
     "scale_factor"),
    (HEAD + "    - {tag: x, offset: 0, datatype: bitfield, count: 3}\n",
     "p.yaml:5: points.unit[0]: a bit field is 1 or 2 registers (count)"),
    (HEAD + "    - {tag: x, offset: 0, datatype: bitfield, bits: {a: 16}}\n",
     "p.yaml:5: points.unit[0]: bit 16 is beyond a 16-bit field"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16, bits: {a: 1}}\n",
     "p.yaml:5: points.unit[0]: bits are for bitfield points"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int32, count: 1}\n",
     "p.yaml:5: points.unit[0]: count is for string and bitfield points (int32 is 2 registers)"),
    (HEAD + "    - {tag: x, offset: 0, datatype: float32, enum: {1: 2}}\n",
     "p.yaml:5: points.unit[0]: enum maps the codes of an integer point"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16, scale: 0}\n",
     "p.yaml:5: points.unit[0]: scale must be a finite number other than 0"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16, writable: true, min: 5, max: 1}\n",
     "p.yaml:5: points.unit[0]: min 5.0 is above max 1.0"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16, word_order: middle}\n",
     "p.yaml:5: points.unit[0].word_order: must be 'big' or 'little' (got 'middle')"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16}\n"
            "    - {tag: x, offset: 1, datatype: int16}\n",
     "p.yaml:6: points.unit[1].tag: tag 'x' appears twice in the 'unit' points"),
    (HEAD + "    - {tag: x, offset: 0, datatype: bitfield, bits: {x: 1}}\n",
     "p.yaml:5: points.unit[0].bits: tag 'x' appears twice in the 'unit' points"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16,\n"
            "       group: slow}\n",
     "p.yaml:6: points.unit[0].group: no poll group 'slow' in poll_groups (none defined)"),
    (HEAD + "    - {tag: x, offset: 0, datatype: int16, scale_factor: x_sf}\n",
     "p.yaml:5: points.unit[0].scale_factor: 'x_sf' is not an int16 point of the 'unit' "
     "points"),
    ("id: a\npoll_groups: {fast: 0}\nlayout: {unit: {base: 0}}\n"
     "points: {unit: [{tag: x, offset: 0, datatype: int16}]}\n",
     "p.yaml:2: poll_groups.fast: must be greater than 0 (got 0)"),
    ("id: a\nbyte_order: middle\nlayout: {unit: {base: 0}}\n"
     "points: {unit: [{tag: x, offset: 0, datatype: int16}]}\n",
     "p.yaml:2: byte_order: must be 'big' or 'little' (got 'middle')"),
])
def test_invalid_profiles_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_profile(text, "p.yaml")
    assert str(caught.value) == message
