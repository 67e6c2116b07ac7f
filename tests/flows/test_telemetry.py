"""Normalizing and validating telemetry: tag maps per device type, refused values kept in a
dead letter with the rest of the poll used, timestamps ahead of the clock refused."""

from __future__ import annotations

import json

import pytest

from connectors.settings import EXAMPLE_MONITORING
from contracts.events import DeadLetter, TelemetrySample
from contracts.monitoring import load_monitoring, parse_monitoring
from flows.telemetry import Normalizer, RawRecord, decode_sample
from tests.flows.timelines import FLEET, T0

CONFIG = load_monitoring(EXAMPLE_MONITORING)


def record(payload: dict[str, object] | str) -> RawRecord:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return RawRecord(b"u1", text.encode(), "raw", 0, 7)


def normalize(payload: dict[str, object], now: int | None = None, config=CONFIG):  # type: ignore[no-untyped-def]
    rec = record(payload)
    sample = decode_sample(rec, 0)
    assert isinstance(sample, TelemetrySample)
    return Normalizer(config, FLEET).normalize(sample, rec, now)


def payload(*assets: tuple[str, dict[str, object]], ts: int = T0,
            device_type: str | None = None) -> dict[str, object]:
    return {"device_id": "u1", "device_type": device_type, "ts_ms": ts,
            "assets": [{"id": a, "tags": t} for a, t in assets]}


def test_canonical_tags_pass_and_unmonitored_tags_are_left_out() -> None:
    poll, dead = normalize(payload(("u1", {"status_code": 0, "soc_pct": 55.5, "colour": 3}),
                                   ("u1-b1", {"cell_temp_max_c": 31.0})))
    assert dead is None and poll is not None
    assert (poll.site_id, poll.unit_id, poll.ts_ms) == ("s1", "u1", T0)
    assert dict(poll.readings) == {"u1": {"status_code": 0, "soc_pct": 55.5},
                                   "u1-b1": {"cell_temp_max_c": 31.0}}


def test_a_device_types_tags_are_mapped_and_scaled() -> None:
    config = parse_monitoring(EXAMPLE_MONITORING.read_text().replace(
        "device_types:\n", "device_types:\n  vendor-x:\n    tags:\n"
        "      Temp_F: {tag: temperature_c, scale: 0.5, offset: -16}\n"
        "      StateCode: {tag: status_code}\n", 1), "m.yaml")
    poll, dead = normalize(payload(("u1-i1", {"Temp_F": 100, "StateCode": 3, "soc_pct": 9}),
                                   device_type="vendor-x"), config=config)
    assert dead is None and poll is not None
    assert dict(poll.readings) == {"u1-i1": {"temperature_c": 34.0, "status_code": 3}}


@pytest.mark.parametrize(("tags", "problem"), [
    ({"soc_pct": 140.0}, "u1.soc_pct=140 is outside the possible range [0.0, 100.0]"),
    ({"soc_pct": "full"}, "u1.soc_pct='full' is not a number"),
    ({"soc_pct": True}, "u1.soc_pct=True is not a number"),
])
def test_impossible_values_are_refused_and_the_rest_of_the_poll_kept(
        tags: dict[str, object], problem: str) -> None:
    poll, dead = normalize(payload(("u1", {"status_code": 0, **tags})))
    assert poll is not None and dict(poll.readings) == {"u1": {"status_code": 0}}
    assert dead is not None and (dead.reason, dead.detail) == ("impossible_value", problem)
    assert json.loads(dead.payload)["assets"][0]["tags"] == {"status_code": 0, **tags}
    assert (dead.topic, dead.offset, dead.key) == ("raw", 7, "u1")


def test_non_finite_numbers_are_refused() -> None:
    rec = record(f'{{"device_id": "u1", "ts_ms": {T0}, "assets": [{{"id": "u1", '
                 '"tags": {"status_code": 0, "soc_pct": NaN, "active_power_kw": Infinity}}]}')
    sample = decode_sample(rec, 0)
    assert isinstance(sample, TelemetrySample)
    poll, dead = Normalizer(CONFIG, FLEET).normalize(sample, rec, None)
    assert poll is not None and dict(poll.readings) == {"u1": {"status_code": 0}}
    assert dead is not None and dead.detail == (
        "u1.soc_pct=nan is not finite; u1.active_power_kw=inf is not finite")


@pytest.mark.parametrize(("body", "reason", "detail"), [
    (payload(("ghost", {"status_code": 0})), "unknown_asset",
     "asset 'ghost' is no unit, inverter or block of the fleet"),
    (payload(("s1", {"status_code": 0})), "unknown_asset",
     "asset 's1' is no unit, inverter or block of the fleet"),
    (payload(("u1", {}), ("u2", {})), "mixed_units", "one poll reports units u1 and u2"),
    (payload(("u1", {}), device_type="vendor-y"), "unknown_device_type",
     "device type 'vendor-y' has no tag map"),
    (payload(("u1", {}), ts=T0 + 61_000), "clock_skew",
     "timestamp 1790000061000 is 61.0 s ahead of the receiving clock (allowed 60 s)"),
])
def test_whole_polls_refused(body: dict[str, object], reason: str, detail: str) -> None:
    poll, dead = normalize(body, now=T0)
    assert poll is None and dead is not None
    assert (dead.reason, dead.detail) == (reason, detail)


def test_old_timestamps_are_fine_and_no_clock_means_no_skew_check() -> None:
    assert normalize(payload(("u1", {})), now=T0 + 86_400_000)[1] is None
    assert normalize(payload(("u1", {}), ts=T0 + 10**9), now=None)[1] is None


@pytest.mark.parametrize(("raw", "reason"), [
    ("{not json", "malformed_json"), ('{"v": 1, "device_id": "x", "ts_ms": 5, "assets": []}',
                                      "schema"), ("", "empty")])
def test_undecodable_records_are_dead_letters(raw: str, reason: str) -> None:
    dead = decode_sample(record(raw), 42)
    assert isinstance(dead, DeadLetter) and dead.reason == reason and dead.payload == raw
