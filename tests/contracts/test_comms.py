"""Controller health and comms in numbers (contracts/comms.py): the poll figures a connector
counts per window against an obvious grouping of the same polls, the hours per state against
a walk millisecond by millisecond, and the device-health topic's two kinds of record."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.comms import (
    PollWindow,
    combine,
    gateway_state,
    nearest_rank,
    state_hours,
    totals,
)
from contracts.events import DeviceHealth, DeviceStats, HealthState, device_health_event

STATES: tuple[HealthState, ...] = ("online", "degraded", "offline")
# One poll: ms since the one before, answered (latency s) or failed (None), retries before.
polls = st.lists(st.tuples(st.integers(0, 2_500),
                           st.one_of(st.none(), st.floats(0, 5, allow_nan=False)),
                           st.integers(0, 3)), max_size=60)


def obvious_percentile(values: list[float], pct: float) -> float:
    """The smallest value with at least pct % of the values at or below it."""
    return min(v for v in values if sum(w <= v for w in values) >= pct / 100 * len(values))


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from([50, 95, 100]))
def test_nearest_rank_is_the_smallest_value_covering_the_share(values: list[float],
                                                               pct: float) -> None:
    assert nearest_rank(sorted(values), pct) == obvious_percentile(values, pct)


@given(polls, st.sampled_from([1_000, 5_000, 60_000]), st.integers(0, 10**12))
def test_windows_hold_exactly_the_polls_of_their_time(
        events: list[tuple[int, float | None, int]], every_ms: int, first_ms: int) -> None:
    window = PollWindow("d1", connector="modbus", site_id="s1", gateway="h:502",
                        every_ms=every_ms)
    out: list[DeviceStats] = []
    expected: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"polls": 0, "failed": 0, "retries": 0, "latencies": []})
    ts = first_ms
    for gap, latency, retries in events:
        ts += gap
        start = ts // every_ms * every_ms
        for _ in range(retries):
            closed = window.retried(ts)
            out += [closed] if closed else []
        closed = window.failed(ts) if latency is None else window.answered(ts, latency)
        out += [closed] if closed else []
        e = expected[start]
        e["polls"] += 1
        e["retries"] += retries
        if latency is None:
            e["failed"] += 1
        else:
            e["latencies"].append(latency * 1000)
    last = window.close()
    out += [last] if last else []
    assert [s.start_ms for s in out] == sorted(expected)
    for s in out:
        e = expected[s.start_ms]
        assert s.end_ms == s.start_ms + every_ms
        assert (s.polls, s.failed, s.retries) == (e["polls"], e["failed"], e["retries"])
        lat = e["latencies"]
        assert s.latency_p50_ms == (obvious_percentile(lat, 50) if lat else None)
        assert s.latency_p95_ms == (obvious_percentile(lat, 95) if lat else None)
        assert s.latency_max_ms == (max(lat) if lat else None)
        assert (s.device_id, s.site_id, s.gateway) == ("d1", "s1", "h:502")
    assert window.close() is None  # nothing left open


@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(STATES)), max_size=12),
       st.integers(0, 200), st.integers(0, 200))
def test_hours_per_state_are_the_walk_ms_by_ms(changes: list[tuple[int, HealthState]],
                                               a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    hours = state_hours(changes, start, end)
    ordered = sorted(changes, key=lambda c: c[0])
    walked: dict[str, int] = defaultdict(int)
    for t in range(start, end):
        now = [s for ts, s in ordered if ts <= t]
        if now:
            walked[now[-1]] += 1
    for state in STATES:
        assert math.isclose(hours[state] * 3_600_000, walked[state], abs_tol=1e-6)


def stats(polls: int, failed: int, retries: int, lat: tuple[float, float, float] | None,
          start: int = 0) -> DeviceStats:
    p50, p95, most = lat or (None, None, None)
    return DeviceStats(device_id="d1", connector="modbus", site_id="s1", gateway="h:502",
                       start_ms=start, end_ms=start + 60_000, polls=polls, failed=failed,
                       retries=retries, latency_p50_ms=p50, latency_p95_ms=p95,
                       latency_max_ms=most)


def test_windows_combine_weighted_by_the_polls_answered() -> None:
    f = combine([stats(60, 0, 0, (10, 20, 30)), stats(60, 40, 80, (40, 50, 90), 60_000),
                 stats(10, 10, 20, None, 120_000)])
    assert (f.windows, f.polls, f.failed, f.retries) == (3, 130, 50, 100)
    assert f.drop_rate == pytest.approx(50 / 130) and f.retry_rate == pytest.approx(100 / 130)
    assert f.latency_p50_ms == pytest.approx((10 * 60 + 40 * 20) / 80)
    assert f.latency_p95_ms == pytest.approx((20 * 60 + 50 * 20) / 80)
    assert f.latency_max_ms == 90
    empty = combine([])
    assert (empty.polls, empty.drop_rate, empty.latency_p50_ms) == (0, None, None)


@pytest.mark.parametrize(("states", "expected"), [
    ([], None), ([None], None), (["online", "online"], "online"),
    (["offline", "offline", None], "offline"), (["online", "offline"], "degraded"),
    (["degraded"], "degraded")])
def test_a_gateway_is_as_healthy_as_its_devices(states: list[HealthState | None],
                                                expected: HealthState | None) -> None:
    assert gateway_state(states) == expected


@pytest.mark.parametrize(("change", "problem"), [
    ({"failed": 61}, "61 polls failed of 60"),
    ({"end_ms": 0}, "end_ms must be after"),
    ({"latency_p50_ms": None}, "latencies are required"),
    ({"latency_p50_ms": 40.0}, "p50 <= p95 <= max"),
    ({"latency_max_ms": math.inf}, "finite"),
    ({"polls": -1}, "greater than or equal"),
    ({"site_id": ""}, "at least 1"),
    ({"extra": 1}, "Extra inputs"),
])
def test_a_stats_window_that_cannot_be_true_is_refused(change: dict[str, Any],
                                                        problem: str) -> None:
    good = stats(60, 1, 2, (10, 20, 30)).model_dump() | change
    with pytest.raises(ValidationError, match=problem):
        DeviceStats.model_validate(good)


def test_the_topic_holds_state_changes_old_and_new_and_stats() -> None:
    old = {"v": 1, "device_id": "u1", "connector": "modbus", "state": "offline",
           "previous": "online", "ts_ms": 5, "reason": "no answer", "consecutive_failures": 3}
    event = device_health_event(orjson.dumps(old))  # the first version: no kind, no site
    assert isinstance(event, DeviceHealth) and event.kind == "state" and event.site_id is None
    window = stats(60, 0, 0, (1, 2, 3))
    assert device_health_event(window.model_dump_json()) == window
    with pytest.raises(ValueError, match="not JSON"):
        device_health_event(b"{broken")
    with pytest.raises(ValueError, match="not a JSON object"):
        device_health_event(b"[1]")
    with pytest.raises(ValidationError):
        device_health_event(orjson.dumps(old | {"kind": "gossip"}))


window_draws = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 90),
                                  st.lists(st.integers(0, 5_000), min_size=3, max_size=3)),
                        max_size=20)


@given(window_draws, st.integers(0, 20))
def test_totals_add_up_in_any_split(drawn: list[tuple[int, int, int, list[int]]],
                                    cut: int) -> None:
    """A gateway's figures are its devices' totals added: the same as all windows at once."""
    made = [stats(polls, min(failed, polls), retries,
                  tuple(sorted(lat)) if polls > min(failed, polls) else None,  # type: ignore[arg-type]
                  start=k * 60_000)
            for k, (polls, failed, retries, lat) in enumerate(drawn)]
    assert totals(made[:cut]) + totals(made[cut:]) == totals(made)
    assert totals(made).figures() == combine(made)
    assert totals(made).answered == sum(w.polls - w.failed for w in made)
