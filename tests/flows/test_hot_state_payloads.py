"""The hot state's unit message (`latest:<unit>`, the `asset:<unit>` channel) written without
its models (flows/redis_sink.py `latest_json`) is, byte for byte, what the models write
(`latest_payload(...).model_dump_json()`, the obvious version kept as the oracle): any tag
values (NaN and infinities too), any status, cause and percentages, assets in any order."""

from __future__ import annotations

from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import Cause, State
from contracts.status import Status
from flows.outputs import LatestValues
from flows.redis_sink import latest_json, latest_payload

ids = st.text(st.characters(codec="utf-8"), max_size=12)
numbers = st.floats(allow_nan=True, allow_infinity=True)
pcts = st.none() | numbers
statuses = st.builds(Status, st.sampled_from(get_args(State)), st.none() | numbers,
                     st.none() | st.sampled_from(get_args(Cause)))
items = st.builds(
    LatestValues, ids, ids, st.integers(-2**53, 2**53),
    st.lists(st.tuples(ids, st.dictionaries(ids, numbers, max_size=6)), max_size=6)
    .map(tuple),
    st.lists(st.tuples(ids, statuses, pcts, pcts), max_size=6).map(tuple))


@settings(max_examples=500, deadline=None)
@given(item=items)
def test_the_unit_message_is_what_its_models_write(item: LatestValues) -> None:
    assert latest_json(item) == latest_payload(item).model_dump_json()


def test_a_unit_message_reads_back_as_its_model() -> None:
    item = LatestValues("s1", "u1", 1_000, (("u1", {"soc_pct": 51.5, "v_pu": float("nan")}),),
                        (("u1", Status("derated", 0.5, "fault"), 99.25, None),))
    text = latest_json(item)
    assert text == ('{"unit_id":"u1","site_id":"s1","ts_ms":1000,'
                    '"assets":{"u1":{"soc_pct":51.5,"v_pu":null}},'
                    '"status":{"u1":{"state":"derated","cause":"fault","derate_fraction":0.5,'
                    '"last_hour_pct":99.25,"today_pct":null}}}')
