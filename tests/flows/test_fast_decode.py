"""`Normalizer.read` (orjson, validated while normalized, falling back on anything unusual)
against the reference it replaces: `decode_sample` (pydantic's `TelemetrySample`), then
`Normalizer.normalize`. For any record both must give the same poll — the same floats, bit
for bit, in the same order — and the same dead letter, field by field.

Records are real polls of the golden fleet, mutated: keys dropped, added, renamed; values of
the wrong type, at and beyond every bound of the schema, huge integers, number literals
pydantic and orjson might read differently; names empty, too long, with control characters
or unicode; other device types (one with scales, offsets and an unbounded tag), assets of
other units or of no unit; duplicate keys, truncated and garbled bytes; other record keys and
clocks."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from contracts.events import MAX_MS, MIN_DEVICE_MS, DeadLetter
from contracts.monitoring import MonitoringConfig
from flows.telemetry import Normalizer, Poll, RawRecord, decode_sample
from infra.sim.record import record
from tests.flows.golden_outputs import CONFIG as GOLDEN_CONFIG
from tests.flows.golden_outputs import FLEET, START_MS
from tests.flows.mutations import mutate


def _config() -> MonitoringConfig:
    """The golden monitoring file plus a device type that scales, offsets and renames its
    tags, one of them to a canonical tag without bounds."""
    data = GOLDEN_CONFIG.model_dump()
    data["tags"]["energy_total_kwh"] = {"unit": "kWh"}
    data["device_types"]["scaled-v2"] = {"tags": {
        "soc_pct": {"tag": "soc_pct", "scale": 0.1},
        "temperature_c": {"tag": "temperature_c", "scale": 0.1, "offset": -40.0},
        "cell_temp_max_c": {"tag": "cell_temp_max_c", "scale": -1.0, "offset": 20.0},
        "active_power_kw": {"tag": "active_power_kw", "scale": 1e-3},
        "status_code": {"tag": "status_code"},
        "alarm_word": {"tag": "alarm_word", "scale": 3.0},
        "available_energy_kwh": {"tag": "energy_total_kwh", "scale": 1e7, "offset": 0.5},
        "cycle_count": {"tag": "energy_total_kwh", "scale": 1e-300},
        "f_hz": {"tag": "f_hz", "scale": 0.0, "offset": 50.0}}}
    return MonitoringConfig.model_validate(data)


CONFIG = _config()
NORMALIZER = Normalizer(CONFIG, FLEET)
POLLS = [s.model_dump_json() for s in
         record(FLEET, START_MS, START_MS + 4_000, 2_000, seed=3, fault_rate_per_day=500)]
T0 = json.loads(POLLS[0])["ts_ms"]
ASSET_IDS = sorted(FLEET.assets)
DEVICE_TYPES = (None, "bess-unit-v1", "scaled-v2", "vendor-y", "", "x" * 201, "bess\x01")


def reference(record: RawRecord, received_ms: int,
              now_ms: int | None) -> tuple[Poll | None, DeadLetter | None]:
    sample = decode_sample(record, received_ms)
    if isinstance(sample, DeadLetter):
        return None, sample
    return NORMALIZER.normalize(sample, record, now_ms)


def comparable(result: tuple[Poll | None, DeadLetter | None]) -> tuple[Any, Any]:
    """A poll's fields with every tag in order, its value as `float.hex` (bit for bit; and
    anything but a float fails); a dead letter's fields."""
    poll, dead = result
    return (None if poll is None else (
        poll.device_id, poll.site_id, poll.unit_id, poll.ts_ms, poll.device_type,
        [(asset, [(tag, float.hex(value)) for tag, value in tags.items()])
         for asset, tags in poll.readings]),
        None if dead is None else dead.model_dump())


def assert_same(value: bytes | None, key: bytes | None = None, received_ms: int = 42,
                now_ms: int | None = None) -> tuple[Poll | None, DeadLetter | None]:
    rec = RawRecord(key, value, "raw", 3, 7)
    expected = reference(rec, received_ms, now_ms)
    actual = NORMALIZER.read(rec, received_ms, now_ms)
    assert comparable(actual) == comparable(expected), \
        (value, key, now_ms, expected[1] and expected[1].detail)
    return actual


# -- mutations of a poll's JSON value ----------------------------------------------------

ODD_NAMES = st.one_of(
    st.sampled_from(["", "a" * 200, "a" * 201, "é" * 200, "é" * 201, "\U0001f50b" * 200,
                     "\U0001f50b" * 201, "a\x00", "\x1fa", "a\x7f", "a\x80", "a\n", "\u2028",
                     " ", "nordvik-u01", "soc_pct", "id", "tags", "v"]),
    st.text(max_size=5), st.text(min_size=195, max_size=205))
NUMBERS = st.one_of(
    st.integers(min_value=-2**64 - 2, max_value=2**65),
    st.sampled_from([0, 1, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63,
                     -2**63 - 1, -2**64, 2**70, -2**70, 10**30, 10**302, 10**400, MIN_DEVICE_MS,
                     MIN_DEVICE_MS - 1, MAX_MS, MAX_MS + 1, T0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 5e-324, 1e308, -1e308, 2.0**63, 2.0**64, -2.0**63,
                     -2.0**63 - 2048, 1e19, 9.3e18, 99.99999999999999, 100.00000000000001,
                     float(T0)]))
ODD_VALUES = st.one_of(
    NUMBERS, st.booleans(), st.none(), st.text(max_size=3),
    st.sampled_from(["1.5", "12", "NaN", "x" * 1000, "x" * 1001, "1" * 1001, "é" * 1001,
                     "\x00"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                          max_size=2))
# Number literals as they may come from other encoders (replacing a value's text)
LITERALS = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E2", "1e+2",
                     "1.0e-2", "-0", "-0.0", "0.0e0", "1.000000000000000000001",
                     "99.999999999999999999", "123456789012345678901234567890",
                     "-123456789012345678901", "18446744073709551615",
                     "18446744073709551616", "9223372036854775808", "-9223372036854775809",
                     "1" * 400, "1e-400", "2.2250738585072011e-308", "1e308", "1.7e308"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-10**20, 10**20),
              st.integers(-330, 330)),
    st.builds(lambda i, f: f"{i}.{f}", st.integers(-10**25, 10**25),
              st.integers(0, 10**30)))


def _paths(doc: Any) -> list[tuple[Any, ...]]:
    """Every place in a document: each key of each object, each item of each list."""
    out: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                out.append((*path, key))
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                out.append((*path, i))
                walk(value, (*path, i))

    walk(doc, ())
    return out


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def documents(draw: st.DrawFn, changes: st.SearchStrategy[int]) -> dict[str, Any]:
    """A poll's document, changed as often as `changes` says."""
    doc: dict[str, Any] = json.loads(draw(st.sampled_from(POLLS)))
    for _ in range(draw(changes)):
        how = draw(st.sampled_from(["set", "set", "tag", "tag", "drop", "rename", "add",
                                    "device_type", "device_id", "asset", "v", "ts_ms"]))
        paths = _paths(doc)
        if how == "set" and paths:
            path = draw(st.sampled_from(paths))
            _at(doc, path[:-1])[path[-1]] = draw(ODD_VALUES)
        elif how == "tag":  # a tag value (the most common place), or a new tag
            assets = doc.get("assets")
            asset = draw(st.sampled_from(assets if isinstance(assets, list) and assets
                                         else [{}]))
            tags = asset.get("tags") if isinstance(asset, dict) else None
            if isinstance(tags, dict):
                name = draw(st.one_of(st.sampled_from(sorted(tags) or ["soc_pct"]),
                                      st.sampled_from(sorted(CONFIG.tags)), ODD_NAMES))
                tags[name] = draw(ODD_VALUES)
        elif how in ("drop", "rename") and paths:
            path = draw(st.sampled_from([p for p in paths if isinstance(p[-1], str)] or
                                        [("v",)]))
            parent = _at(doc, path[:-1])
            if isinstance(parent, dict) and path[-1] in parent:
                value = parent.pop(path[-1])
                if how == "rename":
                    parent[draw(ODD_NAMES)] = value
        elif how == "add":
            objects = [p for p in [(), *paths] if isinstance(_at(doc, p), dict)]
            _at(doc, draw(st.sampled_from(objects)))[draw(ODD_NAMES)] = draw(ODD_VALUES)
        elif how == "device_type":
            doc["device_type"] = draw(st.sampled_from(DEVICE_TYPES))
        elif how == "device_id":
            doc["device_id"] = draw(ODD_NAMES)
        elif how == "asset":  # another unit's, no unit's, none of the fleet's
            assets = doc.get("assets")
            if isinstance(assets, list) and assets:
                asset = assets[draw(st.sampled_from([0, -1, len(assets) // 2]))]
                if isinstance(asset, dict):
                    asset["id"] = draw(st.one_of(st.sampled_from(["ghost", "nordvik", "elbe"]),
                                                 st.sampled_from(ASSET_IDS), ODD_NAMES))
        elif how == "v":
            doc["v"] = draw(st.sampled_from([1, 2, 0, 1.0, True, "1", None]))
        else:
            doc["ts_ms"] = draw(st.one_of(NUMBERS, st.sampled_from(
                [str(T0), float(T0), T0 + 61_000, T0 + 60_000, None, MIN_DEVICE_MS,
                 MIN_DEVICE_MS - 1, MAX_MS, MAX_MS + 1, -1])))
    return doc


DUPLICATE = "__duplicate_key__"  # a key the mutations never make
NUMBER = re.compile(r"(?<=[:\[,])\s*(-?[0-9][0-9.eE+-]*)")


@st.composite
def values(draw: st.DrawFn, mild: bool = False) -> bytes:
    """A mutated poll as bytes, with text-level changes no document can show: number
    literals, duplicate keys, other spacing; or one of the poison mutations. `mild`: one
    change at most, always still JSON — the records where a fast path a little too wide
    would show."""
    if not mild and draw(st.integers(0, 9)) == 0:
        return mutate(random.Random(draw(st.integers(0, 2**32))), draw(st.sampled_from(POLLS)))
    doc = draw(documents(st.integers(0, 1) if mild else st.integers(0, 4)))
    change = draw(st.sampled_from(["none", "literal", "duplicate"] if mild else
                                  ["none", "none", "literal", "duplicate", "cut", "byte"]))
    duplicated = None
    if change == "duplicate":  # a key given twice: the later one odd, or the earlier one
        objects = [o for o in [doc, *(_at(doc, p) for p in _paths(doc))]
                   if isinstance(o, dict) and o and DUPLICATE not in o]
        if objects:
            target = draw(st.sampled_from(objects))
            duplicated = json.dumps(draw(st.sampled_from(sorted(target))))
            odd = draw(ODD_VALUES)
            if draw(st.booleans()):
                target[DUPLICATE] = odd  # (dicts keep order: after the real one)
            else:
                rest = dict(target)
                target.clear()
                target.update({DUPLICATE: odd, **rest})
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True,
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    if duplicated is not None:
        text = text.replace(f'"{DUPLICATE}"', duplicated)
    if change == "literal":  # the text of one number replaced
        numbers = list(NUMBER.finditer(text))
        if numbers:
            number = draw(st.sampled_from(numbers))
            text = text[:number.start(1)] + draw(LITERALS) + text[number.end(1):]
    raw = text.encode("utf-8", "surrogatepass")
    if change == "cut":
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif change == "byte" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    return raw


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(values(), values(mild=True)),
       key=st.sampled_from(["device"] * 4 + [None, b"", b"nordvik-u02"]),
       received_ms=st.integers(0, MAX_MS),
       now=st.sampled_from(["none", "none", "later", "later", "skew", "edge", "before"]))
@example(value=POLLS[0].encode(), key="device", received_ms=0, now="none")
def test_the_fast_path_gives_what_the_reference_gives(
        value: bytes, key: bytes | str | None, received_ms: int, now: str) -> None:
    try:
        device = orjson.loads(value).get("device_id")
    except (orjson.JSONDecodeError, AttributeError):
        device = None
    record_key = (device.encode("utf-8", "surrogatepass") if isinstance(device, str)
                  else b"d") if key == "device" else key
    assert not isinstance(record_key, str)
    now_ms = {"none": None, "later": T0 + 3_600_000, "skew": T0 - 61_000,
              "edge": T0 - 60_000, "before": T0 - 3_600_000}[now]
    _, dead = assert_same(value, record_key, received_ms, now_ms)
    fast = NORMALIZER._fast(RawRecord(record_key, value), now_ms) is not None
    event(f"{'fast path' if fast else 'reference'}: {dead.reason if dead else 'poll'}")


# -- examples ----------------------------------------------------------------------------

def _poll(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(POLLS[0])
    doc.update(changes)
    return doc


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


def _with_tag(name: str, value: Any, asset: int = 0, **changes: Any) -> bytes:
    doc = _poll(**changes)
    doc["assets"][asset]["tags"][name] = value
    return _bytes(doc)


def test_every_clean_poll_takes_the_fast_path() -> None:
    """Faults, trips and all: what a device normally sends never needs pydantic (else the
    speed-up would be gone without a test noticing)."""
    for text in POLLS:
        doc = json.loads(text)
        for device_type in (None, "bess-unit-v1", "scaled-v2"):
            value = _bytes({**doc, "device_type": device_type})
            rec = RawRecord(doc["device_id"].encode(), value)
            fast = NORMALIZER._fast(rec, T0 + 1_000)
            assert fast is not None
            assert comparable(fast) == comparable(reference(rec, 0, T0 + 1_000))


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "empty"), (None, "empty"), (b"{", "malformed_json"), (b"[]", "schema"),
    (b'{"device_id": "x"}', "schema"),
    (_bytes(_poll(v=2)), "schema"), (_bytes(_poll(extra=1)), "schema"),
    (_bytes(_poll(ts_ms=MIN_DEVICE_MS - 1)), "schema"), (_bytes(_poll(assets=[])), "schema"),
    (_bytes(_poll(device_id="a" * 201)), "schema"), (_bytes(_poll(device_id="")), "schema"),
    (_bytes(_poll(device_id="nordvik-u01\x00")), "schema"),
    (_bytes(_poll(device_type="bess\x7f")), "schema"),
    (_with_tag("soc_pct", None), "schema"), (_with_tag("soc_pct", [1]), "schema"),
    (_with_tag("soc_pct", "x" * 1001), "schema"), (_with_tag("unmapped", "x" * 1001), "schema"),
    (_with_tag("unmapped", {"a": 1}), "schema"), (_with_tag("", 1.0), "schema"),
    (_with_tag("t" * 201, 1.0), "schema"),
    (_bytes(_poll(device_type="vendor-y")), "unknown_device_type"),
    (_bytes(_poll(ts_ms=T0 + 61_000)), "clock_skew"),
    (_with_tag("soc_pct", 101.5), "impossible_value"),
    (_with_tag("soc_pct", "12"), "impossible_value"),
    (_with_tag("soc_pct", True), "impossible_value"),
    (_with_tag("soc_pct", 2**64), "impossible_value"),
    (_with_tag("soc_pct", 10**400), "impossible_value"),
    (_with_tag("soc_pct", float("nan")), "impossible_value"),
    (_with_tag("soc_pct", float("-inf")), "impossible_value"),
    (_with_tag("active_power_kw", 2**70, device_type="scaled-v2"), "impossible_value"),
    # a tag twice: pydantic checks every value of a dict (orjson keeps the last one)
    (POLLS[0].replace('"soc_pct":', '"soc_pct":null,"soc_pct":', 1).encode(), "schema"),
    (POLLS[0].replace('"soc_pct":', '"soc_pct":1.0,"soc_pct":[],"soc_pct":', 1).encode(),
     "schema"),
    (POLLS[0].replace('"device_id":"', '"device_id":"\\u0000', 1).encode(), "schema"),
    (_bytes(_poll(assets=[{"id": "nordvik-u01", "tags": {}}] * 10_001)), "schema"),
    (_bytes(_poll(assets=[{"id": "nordvik-u01", "tags": {f"t{i}": 1 for i in range(10_001)}}])),
     "schema"),
    (_bytes(_poll(assets=[{"id": "nordvik-u01", "tags": {}, "x": 1}])), "schema"),
    (_bytes(_poll(assets=[{"id": "nordvik-u01"}])), "schema"),
    (_bytes(_poll(assets=[{"id": "nordvik-u01", "tags": []}])), "schema"),
    (_bytes(_poll(assets=[{"id": "nordvik", "tags": {}}, {"id": "nordvik-u01", "tags": {}}])),
     "unknown_asset"),
    (_bytes(_poll(assets=[{"id": "ghost", "tags": {}}, {"id": "nordvik-u01", "tags": {}}])),
     "unknown_asset"),
    # an integer orjson reads as a float: pydantic's int says "is not finite" otherwise
    (_with_tag("available_energy_kwh", 10**302, device_type="scaled-v2"), "impossible_value"),
])
def test_refusals_are_the_reference_ones(value: bytes | None, reason: str) -> None:
    _, dead = assert_same(value, None, now_ms=T0)
    assert dead is not None and dead.reason == reason


@pytest.mark.parametrize("value", [
    _bytes(_poll(v=1.0)), _bytes(_poll(v=True)), _bytes(_poll(ts_ms=float(T0))),
    _bytes(_poll(ts_ms=str(T0))), _with_tag("soc_pct", "x" * 1000),
    _with_tag("unmapped", "x" * 1000), _with_tag("t" * 200, 1), _with_tag("\x00", 1),
    _with_tag("soc_pct", -0.0), _with_tag("soc_pct", 1e-320), _with_tag("status_code", 2**63),
    _with_tag("status_code", -(2**63)), _bytes(_poll(device_id="é" * 200)),
    _bytes(_poll(device_id="nordvik-u01\u00a0")),
    _with_tag("available_energy_kwh", 2**64, device_type="scaled-v2"),
    _with_tag("available_energy_kwh", 2**100, device_type="scaled-v2"),
    _with_tag("available_energy_kwh", -(2**63) - 1, device_type="scaled-v2"),
    _with_tag("cycle_count", 10**300, device_type="scaled-v2"),
    _with_tag("f_hz", 2**70, device_type="scaled-v2"),
    POLLS[0].replace('"ts_ms":', '"ts_ms":1,"ts_ms":', 1).encode(),
    POLLS[0].replace('"ts_ms":', f'"ts_ms":{T0},"ts_ms":1,"ts_ms":', 1).encode(),
    POLLS[0].replace('"id":', '"id":"ghost","id":', 1).encode(),
    POLLS[0].replace('"device_id":"', '"\\u0064evice_id":"', 1).encode(),
    POLLS[0].replace('"assets":', '"assets":5,"assets":', 1).encode(),
    _bytes(_poll(assets=[{"id": "nordvik-u01", "tags": {}}] * 10_000)),
    _bytes(_poll(assets=[{"id": "nordvik-u01", "tags": {f"t{i}": 1 for i in range(10_000)}}])),
])
def test_what_pydantic_accepts_or_coerces_gives_the_reference_poll(value: bytes) -> None:
    poll, _ = assert_same(value, None, now_ms=T0)
    assert poll is not None


@pytest.mark.parametrize(("key", "now_ms", "reason"), [
    (b"nordvik-u02", None, "key_mismatch"), (b"", None, "key_mismatch"),
    (None, None, None), (b"nordvik-u01", T0 - 60_001, "clock_skew"),
    (b"nordvik-u01", T0 - 60_000, None)])
def test_keys_and_clocks(key: bytes | None, now_ms: int | None, reason: str | None) -> None:
    _, dead = assert_same(POLLS[0].encode(), key, now_ms=now_ms)
    assert (dead and dead.reason) == reason
    assert json.loads(POLLS[0])["device_id"] == "nordvik-u01"


@pytest.mark.parametrize(("asset_id", "reason"), [
    ("elbe-u01-i1", "mixed_units"), ("ghost", "unknown_asset"),
    ("nordvik", "unknown_asset")])  # another unit's; not of the fleet; a site's (no unit)
def test_assets_of_two_units_or_of_none(asset_id: str, reason: str) -> None:
    doc = _poll()
    doc["assets"][-1]["id"] = asset_id
    _, dead = assert_same(_bytes(doc))
    assert dead is not None and dead.reason == reason


def test_scaled_values_are_the_reference_arithmetic() -> None:
    """A device type's scale and offset (and a scale of zero) and an unbounded tag: values
    near the bounds, and integers where orjson's float would differ from pydantic's int."""
    for raw in (0, 1, -1, 7, 1000, 1001, -400, 10**18, 2**63 - 1, 0.1, 999.9999999999999,
                1000.0000000000001, -0.0, 1e-310, 2.0**63, 2.0**64 - 2048, -2.0**63):
        for tag in ("soc_pct", "temperature_c", "cell_temp_max_c", "active_power_kw",
                    "alarm_word", "available_energy_kwh", "cycle_count", "f_hz"):
            poll, _ = assert_same(_with_tag(tag, raw, device_type="scaled-v2"))
            assert poll is not None
