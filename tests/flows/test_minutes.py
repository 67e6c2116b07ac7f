"""A unit's minute of tags (flows/minutes.py): the arrays kept in the poll's shape give what
aggregating value by value gives, whatever the shapes of the polls and however they change."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.minutes import MinuteTags

Poll = list[tuple[str, dict[str, float]]]

values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
tags = st.dictionaries(st.sampled_from(["soc", "p", "temp"]), values, min_size=1)
polls = st.lists(st.lists(st.tuples(st.sampled_from(["u1", "u1-i1", "u1-i1-b1"]), tags),
                          min_size=1, max_size=3, unique_by=lambda r: r[0]), max_size=40)


def one_by_one(polls: list[Poll]) -> dict[tuple[str, str], list[float]]:
    """Count, min, max, sum and last per (asset, tag), value by value."""
    out: dict[tuple[str, str], list[float]] = {}
    for readings in polls:
        for asset_id, values in readings:
            for tag, value in values.items():
                agg = out.setdefault((asset_id, tag), [0.0, value, value, 0.0, value])
                agg[0] += 1
                agg[1], agg[2] = min(agg[1], value), max(agg[2], value)
                agg[3] += value
                agg[4] = value
    return out


@given(polls, st.booleans(), st.integers(0, 40))
def test_the_minute_gives_the_aggregates_of_its_values(polls: list[Poll], same_shape: bool,
                                                       cut: int) -> None:
    """`same_shape`: every poll shaped as the first (the usual case: one array update each);
    otherwise shapes change from poll to poll. Pickled and resumed at `cut` (a recovery)."""
    if same_shape and polls:
        first = polls[0]
        polls = [[(a, {t: values.get(t, 1.5) for t in shape})
                  for (a, shape), (_, values) in zip(first, p, strict=False)]
                 for p in polls if len(p) >= len(first)]
    minute = MinuteTags()
    assert not minute
    for i, readings in enumerate(polls):
        if i == cut:
            minute = pickle.loads(pickle.dumps(minute))
        minute.add(readings)
    expected = one_by_one(polls)
    got = minute.aggregates()
    assert bool(minute) == bool(expected)
    assert got.keys() == expected.keys()
    for key, (n, low, high, total, last) in expected.items():
        assert got[key][:3] == [n, low, high] and got[key][4] == last
        assert got[key][3] == pytest.approx(total, rel=1e-12, abs=1e-6)


def test_a_minute_from_an_older_snapshot_goes_on_from_its_aggregates() -> None:
    """A recovery snapshot taken before minutes were kept as arrays held a dictionary."""
    minute = MinuteTags({("u1", "soc"): [2.0, 40.0, 50.0, 90.0, 50.0]})
    minute.add([("u1", {"soc": 30.0, "p": 5.0})])
    assert minute.aggregates() == {("u1", "soc"): [3.0, 30.0, 50.0, 120.0, 30.0],
                                   ("u1", "p"): [1.0, 5.0, 5.0, 5.0, 5.0]}
