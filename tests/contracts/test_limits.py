"""The shared limit and trend rules (`contracts/limits.py`) on their own: tables of inputs and
the level, rate or time they give, and one property of the hysteresis. The events the flows
build from them are tested in tests/flows/test_breaches.py."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import Severity, TagValue
from contracts.limits import (
    NO_LEVEL,
    Limit,
    Trend,
    TrendState,
    finite_number,
    minutes_to_limit,
)
from contracts.monitoring import LimitLevel, LimitRule, TrendRule

T0 = 1_790_000_000_000


def limit(direction: str, levels: list[tuple[Severity, float]], hysteresis: float = 0.0,
          min_duration_s: float = 0.0) -> Limit:
    return Limit.of(LimitRule(
        id="r", asset_kind="block", tag="temp", direction=direction,  # type: ignore[arg-type]
        levels=tuple(LimitLevel(severity=s, threshold=t) for s, t in levels),
        hysteresis=hysteresis, min_duration_s=min_duration_s))


TEMP_HIGH = limit("max", [("warning", 40), ("major", 45), ("critical", 55)], 2, 5)
SOC_LOW = limit("min", [("warning", 8), ("minor", 5)], 2, 30)
POWER_HIGH = limit("max", [("critical", 100)])
W, M, C = 0, 1, 2  # level indexes of TEMP_HIGH: warning, major, critical


@pytest.mark.parametrize(("value", "expected"), [
    (41.5, 41.5), (41, 41.0), (0, 0.0), (-3.25, -3.25),
    (math.nan, None), (math.inf, None), (-math.inf, None),
    (True, None), (False, None), ("41", None), (None, None),
])
def test_finite_number(value: TagValue | None, expected: float | None) -> None:
    assert finite_number(value) == expected


# -- limits ---------------------------------------------------------------------------------

Levels = list[tuple[float, float, int]]  # (t in s, value, the level that stands after it)

MAX_LEVELS: Levels = [  # warning 40, major 45, critical 55; hysteresis 2; 5 s
    (0, 30, NO_LEVEL),
    (1, 41, NO_LEVEL),  # warning crossed from 1 s …
    (4, 40, NO_LEVEL),  # … at the threshold is not beyond it: the crossing is over
    (5, 41, NO_LEVEL),
    (10, 41, W),  # crossed for 5 s
    (11, 46, W),  # major crossed from 11 s
    (16, 46, M),  # escalated
    (17, 44, M),  # inside 45, within the hysteresis (> 43)
    (18, 43, W),  # 43 ≤ 45 − 2: down to warning at once
    (19, 39, W),  # within the hysteresis of 40
    (21, 38, NO_LEVEL),  # 38 ≤ 40 − 2
]

STRAIGHT_TO_CRITICAL: Levels = [
    (0, 60, NO_LEVEL),
    (5, 58, C),  # the most severe level held, not warning first
    (6, 54, C),  # within the hysteresis of 55
    (7, 42, W),  # skips major: 42 ≤ 45 − 2 but 42 > 40 − 2
    (9, 37, NO_LEVEL),
]

MIN_LEVELS: Levels = [  # warning 8, minor 5 (below is bad); hysteresis 2; 30 s
    (0, 50, NO_LEVEL),
    (10, 7.9, NO_LEVEL),
    (40, 7, W),
    (50, 4, W),
    (80, 4.9, 1),  # minor crossed for 30 s
    (81, 6.5, 1),  # within the hysteresis (< 7)
    (82, 7, W),  # 7 ≥ 5 + 2
    (83, 9.9, W),
    (84, 10, NO_LEVEL),
]

NO_DURATION_NO_HYSTERESIS: Levels = [  # critical above 100
    (0, 100, NO_LEVEL),
    (1, 100.5, 0),  # the first crossing sample
    (2, 100, NO_LEVEL),  # back at the threshold clears
    (3, 101, 0),
]


@pytest.mark.parametrize(("rule", "steps"), [
    (TEMP_HIGH, MAX_LEVELS),
    (TEMP_HIGH, STRAIGHT_TO_CRITICAL),
    (SOC_LOW, MIN_LEVELS),
    (POWER_HIGH, NO_DURATION_NO_HYSTERESIS),
], ids=["max-levels", "straight-to-critical", "min-levels", "no-duration-no-hysteresis"])
def test_limit_levels(rule: Limit, steps: Levels) -> None:
    state = rule.new_state()
    for t, value, expected in steps:
        assert rule.step(state, T0 + round(t * 1000), value) == expected, f"at {t} s"
        assert state.level == expected


@pytest.mark.parametrize(("rule", "level", "expected"), [
    (TEMP_HIGH, W, 38), (TEMP_HIGH, M, 43), (TEMP_HIGH, C, 53),
    (SOC_LOW, 0, 10), (SOC_LOW, 1, 7), (POWER_HIGH, 0, 100),
])
def test_clear_threshold(rule: Limit, level: int, expected: float) -> None:
    assert rule.clear_threshold(level) == expected


@pytest.mark.parametrize(("value", "timing", "quiet"), [
    (30.0, False, True), (40.0, False, True), (40.5, False, False), (30.0, True, False),
])
def test_quiet_means_step_changes_nothing(value: float, timing: bool, quiet: bool) -> None:
    state = TEMP_HIGH.new_state()
    if timing:
        TEMP_HIGH.step(state, T0, 41.0)  # warning being timed
    assert TEMP_HIGH.is_quiet(state, value) is quiet
    if quiet:
        before = (list(state.since), state.level)
        TEMP_HIGH.step(state, T0 + 1000, value)
        assert (state.since, state.level) == before


def test_limit_state_pickles_mid_crossing() -> None:
    state = TEMP_HIGH.new_state()
    TEMP_HIGH.step(state, T0, 41.0)
    restored = pickle.loads(pickle.dumps(state))
    rule = pickle.loads(pickle.dumps(TEMP_HIGH))
    assert restored == state and rule == TEMP_HIGH
    assert rule.step(restored, T0 + 5000, 41.0) == TEMP_HIGH.step(state, T0 + 5000, 41.0) == W


@given(direction=st.sampled_from(["max", "min"]),
       hysteresis=st.floats(0, 10),
       min_duration_s=st.sampled_from([0.0, 1.0, 5.0]),
       steps=st.lists(st.tuples(st.integers(0, 3000), st.floats(-100, 100)), max_size=60))
def test_hysteresis_never_leaves_a_level_outside_its_clear_threshold(
        direction: str, hysteresis: float, min_duration_s: float,
        steps: list[tuple[int, float]]) -> None:
    """A standing level only ever ends (falls or clears) at a value at or inside its clear
    threshold, a level only stands beyond its clear threshold, and a level is only entered
    from below when its own threshold is crossed."""
    sign = 1.0 if direction == "max" else -1.0
    rule = limit(direction, [("warning", 10 * sign), ("major", 20 * sign),
                             ("critical", 30 * sign)], hysteresis, min_duration_s)
    state = rule.new_state()
    ts = T0
    for gap_ms, value in steps:
        ts += gap_ms
        before = state.level
        after = rule.step(state, ts, value)
        if after < before:  # ended: at or inside the clear threshold of the level it left
            assert value * sign <= rule.clear_threshold(before) * sign
        if after >= 0:  # stands: beyond its clear threshold
            assert value * sign > rule.clear_threshold(after) * sign
        if after > before:  # entered: beyond its own threshold
            assert value * sign > rule.rule.levels[after].threshold * sign


# -- trends ---------------------------------------------------------------------------------

RISING = Trend.of(TrendRule(id="r", asset_kind="block", tag="temp", window_s=60,
                            max_rate_per_min=2, clear_rate_per_min=1, severity="major",
                            limit=55))
FALLING = Trend.of(TrendRule(id="f", asset_kind="unit", tag="soc", window_s=60,
                             max_rate_per_min=5, direction="falling", severity="minor"))


@pytest.mark.parametrize(("samples", "expected"), [
    ([(0, 30.0)], None),  # one sample
    ([(0, 30.0), (10, 30.5), (20, 31.0)], None),  # 20 s: less than half the window
    ([(0, 30.0), (10, 30.5), (20, 31.0), (30, 31.5)], 3.0),  # 1.5 in 30 s
    ([(0, 30.0), (30, 28.0)], -4.0),  # signed: negative when falling
    ([(0, 30.0), (100, 40.0)], None),  # the first sample left the window
    ([(0, 30.0), (40, 32.0), (100, 34.5)], 2.5),  # from the oldest one inside it
])
def test_trend_rate(samples: list[tuple[int, float]], expected: float | None) -> None:
    state = TrendState()
    rate = None
    for t, value in samples:
        rate = RISING.rate(state, T0 + t * 1000, value)
    assert rate == expected


@pytest.mark.parametrize(("trend", "rate", "active", "expected"), [
    (RISING, 2.0, False, False),  # at the raise rate: not above it
    (RISING, 2.01, False, True),
    (RISING, -9.0, False, False),  # the other direction
    (RISING, 1.0, True, True),  # at the clear rate: not below it, holds
    (RISING, 0.99, True, False),
    (FALLING, -5.0, False, False),
    (FALLING, -5.5, False, True),
    (FALLING, -5.0, True, True),  # clear rate defaults to the raise rate
    (FALLING, -4.5, True, False),
    (FALLING, 20.0, True, False),
])
def test_trend_breached(trend: Trend, rate: float, active: bool, expected: bool) -> None:
    assert trend.breached(rate, active) is expected


def test_trend_window_stays_bounded() -> None:
    state = TrendState()
    for t in range(10_000):
        RISING.rate(state, T0 + t * 1000, 30.0)
    assert len(state.samples) <= 33


@pytest.mark.parametrize(("value", "rate", "limit_", "sign", "expected"), [
    (31.5, 3.0, 55.0, 1.0, 23.5 / 3),
    (53.5, 3.0, 55.0, 1.0, 0.5),
    (45.5, -9.0, 10.0, -1.0, 35.5 / 9),
    (55.0, 3.0, 55.0, 1.0, None),  # reached
    (60.0, 3.0, 55.0, 1.0, None),  # passed
    (5.0, -9.0, 10.0, -1.0, None),  # passed, falling
    (30.0, -1.0, 55.0, 1.0, math.inf),  # moving away
    (30.0, 0.0, 55.0, 1.0, math.inf),
])
def test_minutes_to_limit(value: float, rate: float, limit_: float, sign: float,
                          expected: float | None) -> None:
    minutes = minutes_to_limit(value, rate, limit_, sign)
    if expected is None:
        assert minutes is None
    else:
        assert minutes == pytest.approx(expected)
