"""Limit and trend breaches without Bytewax: tables of (time, value) fed one sample at a time,
with the events expected after each step (OpenEMS style)."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from connectors.settings import EXAMPLE_FLEET, EXAMPLE_MONITORING
from contracts.events import BreachEvent, TagValue
from contracts.fleet import load_fleet, parse_fleet
from contracts.limits import Trend, TrendState
from contracts.monitoring import load_monitoring, parse_monitoring
from flows.breaches import BreachEngine

T0 = 1_790_000_000_000  # 2026-09-21T13:33:20Z: ms since the epoch
FLEET = parse_fleet("""
sites:
  - id: s1
    customer: Alpha
    region: SE3
    timezone: Europe/Stockholm
    units:
      - id: u1
        rated_power_kw: 2000
        rated_energy_kwh: 4000
        commissioned: 2024-01-01
        inverters:
          - id: u1-i1
            rated_power_kw: 2000
            blocks:
              - {id: u1-b1, rated_energy_kwh: 2000}
              - {id: u1-b2, rated_energy_kwh: 2000}
""", "test-fleet.yaml")

CONFIG = parse_monitoring("""
tags:
  temp: {unit: degC}
  soc: {unit: "%"}
  power: {unit: kW}
status: {codes: {0: {state: available}}}
limits:
  - id: temp-high
    asset_kind: block
    tag: temp
    direction: max
    levels:
      - {severity: warning, threshold: 40}
      - {severity: major, threshold: 45}
      - {severity: critical, threshold: 55}
    hysteresis: 2
    min_duration_s: 5
  - id: soc-low
    asset_kind: unit
    tag: soc
    direction: min
    levels:
      - {severity: warning, threshold: 8}
      - {severity: minor, threshold: 5}
    hysteresis: 2
    min_duration_s: 30
  - id: power-high
    asset_kind: inverter
    tag: power
    direction: max
    levels: [{severity: critical, threshold: 100}]
trends:
  - id: temp-rising
    asset_kind: block
    tag: temp
    window_s: 60
    max_rate_per_min: 2
    clear_rate_per_min: 1
    severity: major
    limit: 55
  - id: soc-falling
    asset_kind: unit
    tag: soc
    window_s: 60
    max_rate_per_min: 5
    direction: falling
    severity: minor
    limit: 10
""", "test-monitoring.yaml")

MISSING = object()  # the tag is absent from the poll
Step = tuple[float, TagValue | object, list[str]]
TAG_OF = {"temp-high": "temp", "temp-rising": "temp", "soc-low": "soc", "soc-falling": "soc",
          "power-high": "power"}


def engine() -> BreachEngine:
    return BreachEngine(CONFIG, FLEET.assets)


def render(e: BreachEvent) -> str:
    """`raised warning @10`; a cleared event shows when its breach was raised."""
    return f"{e.state} {e.severity} @{(e.raised_ms - T0) / 1000:g}"


def run(eng: BreachEngine, asset: str, rule: str, steps: list[Step]) -> list[BreachEvent]:
    """Feed `steps` to `eng` and check, after each, the events of `rule`."""
    tag = TAG_OF[rule]
    seen: list[BreachEvent] = []
    for t, value, expected in steps:
        ts = T0 + round(t * 1000)
        tags: dict[str, TagValue] = {"status_code": 0}
        if value is not MISSING:
            tags[tag] = value  # type: ignore[assignment]
        events = [e for e in eng.observe(asset, ts, tags) if e.rule_id == rule]
        assert [render(e) for e in events] == expected, f"after the sample at {t} s"
        assert all(e.ts_ms == ts for e in events)
        seen += events
    return seen


# -- limits -------------------------------------------------------------------------------

MAX_LEVELS: list[Step] = [  # temp-high: warning 40, major 45, critical 55; hyst. 2; 5 s
    (0, 30, []),
    (1, 41, []),  # warning crossed from 1 s …
    (3, 42, []),  # … for 2 s only
    (4, 40, []),  # at the threshold is not beyond it: the crossing is over
    (5, 41, []),  # crossed again from 5 s
    (9, 41.5, []),
    (10, 41, ["raised warning @10"]),  # held 5 s: raised at the sample that meets it
    (11, 46, []),  # major crossed from 11 s
    (15, 47, []),
    (16, 46, ["cleared warning @10", "raised major @16"]),  # escalation
    (17, 44, []),  # inside 45 but within the hysteresis (> 43): still major
    (18, 43, ["cleared major @16", "raised warning @18"]),  # de-escalation: 43 ≤ 45 − 2
    (19, 39, []),  # inside 40 but within the hysteresis (> 38): still warning
    (20, 38.5, []),
    (21, 38, ["cleared warning @18"]),  # 38 ≤ 40 − 2
    (22, 30, []),
]

STRAIGHT_TO_CRITICAL: list[Step] = [
    (0, 60, []),  # every level crossed from 0 s
    (4, 60, []),
    (5, 58, ["raised critical @5"]),  # the most severe level held, not warning first
    (6, 54, []),  # within the hysteresis of 55
    (7, 42, ["cleared critical @5", "raised warning @7"]),  # skips major: 42 ≤ 45 − 2
    (8, 38.5, []),
    (9, 37, ["cleared warning @7"]),
]

MIN_LEVELS: list[Step] = [  # soc-low: warning 8, minor 5 (below is bad); hyst. 2; 30 s
    (0, 50, []),
    (10, 7.9, []),  # warning crossed from 10 s
    (39, 6, []),  # 29 s
    (40, 7, ["raised warning @40"]),
    (50, 4, []),  # minor crossed from 50 s
    (79, 4.5, []),
    (80, 4.9, ["cleared warning @40", "raised minor @80"]),
    (81, 6.5, []),  # above 5 but within the hysteresis (< 7): still minor
    (82, 7, ["cleared minor @80", "raised warning @82"]),  # 7 ≥ 5 + 2, still < 8 + 2
    (83, 9.9, []),
    (84, 10, ["cleared warning @82"]),
]

NO_DURATION_NO_HYSTERESIS: list[Step] = [  # power-high: critical above 100
    (0, 50, []),
    (1, 100, []),  # at the threshold: not beyond
    (2, 100.5, ["raised critical @2"]),  # min_duration 0: the first crossing sample
    (3, 150, []),
    (4, 100, ["cleared critical @2"]),  # hysteresis 0: back at the threshold clears
    (5, 101, ["raised critical @5"]),
]

UNUSABLE_VALUES: list[Step] = [
    (0, 41, []),
    (1, math.nan, []),  # NaN, missing, text and bool leave the state as it was:
    (2, MISSING, []),
    (3, "hot", []),
    (4, False, []),
    (5, 41, ["raised warning @5"]),  # … the crossing timer ran on through them
    (6, math.nan, []),
    (7, math.inf, []),
    (8, MISSING, []),  # … and an active breach stays active
    (9, 30, ["cleared warning @5"]),
]

OUT_OF_ORDER: list[Step] = [
    (0, 41, []),
    (10, 41, ["raised warning @10"]),
    (5, 30, []),  # older than 10 s: ignored, although it would clear
    (11, 41, []),
    (11, 41, []),  # same time again: observed, nothing changes
    (12, 30, ["cleared warning @10"]),
]


@pytest.mark.parametrize(("asset", "rule", "steps"), [
    ("u1-b1", "temp-high", MAX_LEVELS),
    ("u1-b1", "temp-high", STRAIGHT_TO_CRITICAL),
    ("u1", "soc-low", MIN_LEVELS),
    ("u1-i1", "power-high", NO_DURATION_NO_HYSTERESIS),
    ("u1-b1", "temp-high", UNUSABLE_VALUES),
    ("u1-b1", "temp-high", OUT_OF_ORDER),
], ids=["max-levels", "straight-to-critical", "min-levels", "no-duration-no-hysteresis",
        "unusable-values", "out-of-order"])
def test_limit_sequences(asset: str, rule: str, steps: list[Step]) -> None:
    run(engine(), asset, rule, steps)


def test_limit_events_carry_ids_thresholds_values_and_site() -> None:
    events = run(engine(), "u1-b1", "temp-high", MAX_LEVELS)
    raised_w, cleared_w, raised_m, cleared_m, raised_w2, cleared_w2 = events
    assert raised_w.breach_id == f"temp-high:warning:u1-b1:{T0 + 10_000}"
    assert cleared_w.breach_id == raised_w.breach_id
    assert raised_m.breach_id == f"temp-high:major:u1-b1:{T0 + 16_000}"
    assert cleared_m.breach_id == raised_m.breach_id
    assert raised_w2.breach_id == f"temp-high:warning:u1-b1:{T0 + 18_000}"
    assert cleared_w2.breach_id == raised_w2.breach_id
    assert {e.site_id for e in events} == {"s1"}
    assert {(e.kind, e.tag, e.asset_id) for e in events} == {("limit", "temp", "u1-b1")}
    # threshold: the level's; value: the sample's, the clearing one for "cleared".
    assert [(e.threshold, e.value) for e in events] == [
        (40, 41), (40, 46), (45, 46), (45, 43), (40, 43), (40, 38)]
    assert raised_w.message == "temp 41 degC above the warning limit 40 degC for 5 s"
    assert cleared_w.message == "temp warning cleared: escalated to major"
    assert cleared_m.message == "temp major cleared: back to 43 degC, at or below 43 degC: " \
                                "down to warning"
    assert raised_w2.message == ("temp 43 degC, back from major but still warning "
                                 "(limit 40 degC, hysteresis 2 degC)")
    assert cleared_w2.message == "temp warning cleared: back to 38 degC, at or below 38 degC"


def test_min_limit_messages_say_below() -> None:
    raised = run(engine(), "u1", "soc-low", MIN_LEVELS)[0]
    assert raised.message == "soc 7 % below the warning limit 8 % for 30 s"
    assert raised.threshold == 8


def test_identical_runs_emit_identical_events() -> None:
    first = run(engine(), "u1-b1", "temp-high", MAX_LEVELS)
    second = run(engine(), "u1-b1", "temp-high", MAX_LEVELS)
    assert first == second
    assert len({e.breach_id for e in first}) == 3


def test_a_second_asset_with_the_same_rule_is_independent() -> None:
    expected: dict[float, list[str]] = {5: ["raised major @5"], 11: ["cleared major @5"]}
    b2_steps: list[Step] = [(t, 50 if t < 11 else 30, expected.get(t, []))
                            for t, _, _ in MAX_LEVELS]
    alone = run(engine(), "u1-b2", "temp-high", b2_steps)
    eng = engine()
    interleaved: list[BreachEvent] = []
    for b1_step, b2_step in zip(MAX_LEVELS, b2_steps, strict=True):
        run(eng, "u1-b1", "temp-high", [b1_step])  # b1 as if alone …
        interleaved += run(eng, "u1-b2", "temp-high", [b2_step])  # … and b2 too
    assert interleaved == alone
    assert alone[0].breach_id == f"temp-high:major:u1-b2:{T0 + 5000}"


def test_active_lists_the_raised_breaches() -> None:
    eng = engine()
    run(eng, "u1-b1", "temp-high", MAX_LEVELS[:10])  # major active on b1
    run(eng, "u1-i1", "power-high", NO_DURATION_NO_HYSTERESIS[:3])  # critical active on i1
    assert [(e.asset_id, e.rule_id, e.severity, e.state) for e in eng.active()] == [
        ("u1-b1", "temp-high", "major", "raised"),
        ("u1-i1", "power-high", "critical", "raised")]
    run(eng, "u1-b1", "temp-high", [(30, 30, ["cleared major @16"])])
    assert [e.asset_id for e in eng.active()] == ["u1-i1"]


def test_assets_without_rules_or_unknown_emit_nothing() -> None:
    eng = engine()
    assert eng.observe("s1", T0, {"temp": 99.0}) == []  # a site: no rule watches sites
    assert eng.observe("nowhere", T0, {"temp": 99.0}) == []
    assert eng.observe("u1", T0, {"temp": 99.0}) == []  # temp rules watch blocks only


# -- trends -------------------------------------------------------------------------------


RISING_THEN_PLATEAU: list[Step] = [  # temp-rising: 60 s window, raise > 2/min, clear < 1/min
    (0, 30.0, []),
    (10, 30.5, []),
    (20, 31.0, []),  # 20 s span: less than half the window, not judged
    (30, 31.5, ["raised major @30"]),  # 1.5 in 30 s: 3/min
    *[(t, 31.5 + 0.5 * k, []) for k, t in enumerate(range(40, 91, 10), start=1)],  # 34.5
    (100, 34.5, []),  # 40 s → 100 s: 32 → 34.5, 2.5/min
    (110, 34.5, []),  # 2/min
    (120, 34.5, []),  # 1.5/min
    (130, 34.5, []),  # 1/min: not below the clear rate
    (140, 34.5, ["cleared major @30"]),  # 80 s → 140 s: 34 → 34.5, 0.5/min
    *[(t, 34.5, []) for t in range(150, 300, 10)],
]

FALLING: list[Step] = [  # soc-falling: 60 s window, raise and clear at 5/min, falling
    (0, 50.0, []),
    (10, 48.5, []),
    (20, 47.0, []),
    (30, 45.5, ["raised minor @30"]),  # −4.5 in 30 s: −9/min
    (40, 45.5, []),  # −4.5 in 40 s: −6.75/min
    (50, 45.5, []),  # −5.4/min
    (60, 45.5, ["cleared minor @30"]),  # −4.5/min
    (70, 60.0, []),  # rising fast: not this rule's direction
    (80, 80.0, []),
]

TOO_SHORT: list[Step] = [
    (0, 30.0, []),
    (10, 40.0, []),  # 60/min, but over 10 s of a 60 s window: not judged
    (20, 50.0, []),
    (200, 30.0, []),  # after a gap, one sample in the window
    (215, 39.0, []),  # 15 s span
    (230, 39.0, ["raised major @230"]),  # 30 s span: 9 in 30 s, 18/min
]


@pytest.mark.parametrize(("asset", "rule", "steps"), [
    ("u1-b1", "temp-rising", RISING_THEN_PLATEAU),
    ("u1", "soc-falling", FALLING),
    ("u1-b1", "temp-rising", TOO_SHORT),
], ids=["rising-then-plateau", "falling", "too-short"])
def test_trend_sequences(asset: str, rule: str, steps: list[Step]) -> None:
    run(engine(), asset, rule, steps)


def test_trend_events_carry_the_rate_and_the_time_to_the_limit() -> None:
    raised, cleared = run(engine(), "u1-b1", "temp-rising", RISING_THEN_PLATEAU)
    assert (raised.kind, raised.value, raised.threshold) == ("trend", 3.0, 2.0)
    assert raised.breach_id == f"temp-rising:major:u1-b1:{T0 + 30_000}"
    assert raised.message == "temp rising 3 degC/min, 55 degC in ~8 min"  # 23.5 / 3 = 7.8
    assert (cleared.breach_id, cleared.value, cleared.ts_ms) == (
        raised.breach_id, 0.5, T0 + 140_000)
    assert cleared.message == "temp rising cleared: 0.5 degC/min, below 1 degC/min"
    raised, cleared = run(engine(), "u1", "soc-falling", FALLING)
    assert (raised.value, raised.threshold) == (-9.0, 5.0)
    assert raised.message == "soc falling 9 %/min, 10 % in ~4 min"  # 35.5 / 9 = 3.9
    assert cleared.value == -4.5


@pytest.mark.parametrize(("start", "projection"), [
    (30.0, "55 degC in ~8 min"),  # at 31.5: 23.5 / 3 = 7.83 min
    (52.0, "55 degC in ~30 s"),  # at 53.5: 1.5 / 3 = 0.5 min
    (-335.0, "55 degC in ~2 h"),  # at −333.5: 388.5 / 3 = 129.5 min = 2.16 h
    (60.0, "55 degC already passed"),
])
def test_projected_time_to_the_limit(start: float, projection: str) -> None:
    steps: list[Step] = [(t, start + t / 20, ["raised major @30"] if t == 30 else [])
                         for t in range(0, 31, 10)]  # 3/min
    (raised,) = run(engine(), "u1-b1", "temp-rising", steps)
    assert raised.message == f"temp rising 3 degC/min, {projection}"


def test_trend_window_stays_bounded() -> None:
    eng = engine()
    for t in range(10_000):
        eng.observe("u1-b1", T0 + t * 1000, {"temp": 30.0})
    (_, trend_state), = eng._tracks["u1-b1"].trends
    assert len(trend_state.samples) <= 33  # about 32 kept per window, whatever the rate


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 1, 1, 2, 3, 5, 9, 40, 75]),
                          st.one_of(st.floats(20, 60), st.sampled_from([30.0, math.nan]),
                                    st.integers(20, 60))),
                min_size=1, max_size=150))
@example([(1, 30.0 + k % 50) for k in range(150)])  # 1 s polls: samples age out between keeps
def test_trends_judge_as_the_shared_rule(steps: list[tuple[int, float]]) -> None:
    """The engine's trend events (its hot path inlines `Trend.rate` and `Trend.breached`)
    are those the shared rule gives, sample by sample: raised when the rule says the trend
    stands, cleared when it stops, at that rate."""
    rule = next(r for r in CONFIG.trends if r.id == "temp-rising")
    trend, state, active = Trend.of(rule), TrendState(), False
    eng, ts = engine(), T0
    for step_s, value in steps:
        ts += step_s * 1000
        events = [e for e in eng.observe("u1-b1", ts, {"temp": value})
                  if e.rule_id == "temp-rising"]
        expected: list[tuple[str, float]] = []
        if math.isfinite(value):
            rate = trend.rate(state, ts, float(value))
            if rate is not None and trend.breached(rate, active) != active:
                active = not active
                expected.append(("raised" if active else "cleared", rate))
        assert [(e.state, e.value) for e in events] == expected
        (_, kept), = eng._tracks["u1-b1"].trends
        assert kept.samples == state.samples  # the same samples kept and aged out


# -- recovery -----------------------------------------------------------------------------

MIXED = [  # (asset, rule, step): limits and trends on three assets, interleaved
    *[("u1-b1", "temp-high", s) for s in MAX_LEVELS],
    *[("u1", "soc-falling", s) for s in FALLING],
    *[("u1-b2", "temp-rising", s) for s in RISING_THEN_PLATEAU],
    *[("u1-i1", "power-high", s) for s in NO_DURATION_NO_HYSTERESIS],
]
MIXED.sort(key=lambda x: x[2][0])  # by event time; per-asset order kept (stable sort)


@pytest.mark.parametrize("cut", [0, 5, 17, 31, 44, len(MIXED)])
def test_a_pickled_engine_continues_identically(cut: int) -> None:
    def feed(eng: BreachEngine, part: list[tuple[str, str, Step]]) -> None:
        for asset, rule, step in part:
            run(eng, asset, rule, [step])

    eng = engine()
    feed(eng, MIXED[:cut])
    restored: BreachEngine = pickle.loads(pickle.dumps(eng))
    assert restored.active() == eng.active()
    feed(restored, MIXED[cut:])  # the expected events of every step, after the restore too
    feed(eng, MIXED[cut:])
    assert restored.active() == eng.active()


# -- the example files --------------------------------------------------------------------


def test_the_example_rules_apply_to_the_example_fleet() -> None:
    config = load_monitoring(EXAMPLE_MONITORING)
    fleet = load_fleet(EXAMPLE_FLEET)
    assert config.limits and config.trends
    kinds = {a.kind for a in fleet.assets.values()}
    profiles = {u.device_profile for s in fleet.sites for u in s.units}
    reported = {m.tag for p in profiles if p for m in config.device_types[p].tags.values()}
    watched = [(r.id, r.asset_kind, r.tag) for r in config.limits] + [
        (r.id, r.asset_kind, r.tag) for r in config.trends]
    for rule_id, kind, tag in watched:
        assert kind in kinds, rule_id
        assert tag in reported, rule_id

    eng = BreachEngine(config, fleet.assets)
    unit = fleet.sites[0].units[0]
    inverter = unit.inverters[0]
    block = inverter.blocks[0]
    out: list[BreachEvent] = []
    for t in range(61):  # the block stays below 45 °C (major)
        ts = T0 + t * 1000
        out += eng.observe(unit.id, ts, {"status_code": 0, "soc_pct": 7.0})
        out += eng.observe(inverter.id, ts, {"status_code": 0, "temperature_c": 61.0})
        # 2.6 °C/min from 41 °C: judged once 60 s (half the 120 s window) are spanned,
        # at 43.6 °C, 11.4 °C short of 55 °C: ~4 min
        out += eng.observe(block.id, ts, {"status_code": 0,
                                          "cell_temp_max_c": 41.0 + t * 2.6 / 60})
    got = {(e.rule_id, e.asset_id, e.severity, e.raised_ms - T0, e.site_id) for e in out}
    assert got == {
        ("cell-temp-high", block.id, "warning", 5000, "nordvik"),
        ("cell-temp-rising", block.id, "major", 60_000, "nordvik"),
        ("inverter-temp-high", inverter.id, "minor", 10_000, "nordvik"),
        ("soc-low", unit.id, "warning", 2_000, "nordvik"),
    }
    rising = next(e for e in out if e.rule_id == "cell-temp-rising")
    assert rising.message == "cell_temp_max_c rising 2.6 degC/min, 55 degC in ~4 min"
    assert len(eng.active()) == 4
