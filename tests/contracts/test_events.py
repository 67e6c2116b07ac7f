"""The connectors' shortcuts to a telemetry sample and its JSON give what pydantic gives."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    MIN_DEVICE_MS,
    AssetReading,
    TagValue,
    TelemetrySample,
    asset_reading,
    telemetry_json,
    telemetry_sample,
)

names = st.text(st.characters(min_codepoint=32, exclude_characters="\x7f",
                              exclude_categories=["Cs"]), min_size=1, max_size=20)
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**63, 2**63 - 1),
                   st.booleans(), st.text(max_size=30))
readings = st.lists(st.tuples(names, st.dictionaries(names, values, max_size=8)),
                    min_size=1, max_size=6)


@given(device_id=names, ts_ms=st.integers(MIN_DEVICE_MS, 4_000_000_000_000), assets=readings)
def test_the_shortcuts_make_the_sample_pydantic_makes(
        device_id: str, ts_ms: int, assets: list[tuple[str, dict[str, TagValue]]]) -> None:
    """`asset_reading` / `telemetry_sample` equal `model_construct`; `telemetry_json` is the
    JSON value of `model_dump_json`, fields in the same order, every number of its type."""
    fast = telemetry_sample(device_id, ts_ms, tuple(asset_reading(a, t) for a, t in assets))
    slow = TelemetrySample.model_construct(device_id=device_id, ts_ms=ts_ms, assets=tuple(
        AssetReading.model_construct(id=a, tags=t) for a, t in assets))
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json()
    ours, theirs = json.loads(telemetry_json(fast)), json.loads(slow.model_dump_json())
    assert ours == theirs and list(ours) == list(theirs)
    for mine, pydantics in zip(ours["assets"], theirs["assets"], strict=True):
        assert [type(v) for v in mine["tags"].values()] == [
            type(v) for v in pydantics["tags"].values()]
    assert TelemetrySample.model_validate_json(telemetry_json(fast)) == \
        TelemetrySample.model_validate_json(slow.model_dump_json())
