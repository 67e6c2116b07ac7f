"""Data-quality alerts: sequences of samples, records and status changes, and the alerts
expected after each step. Times are seconds after T0."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from contracts.events import Alert, State, StatusChange, TagValue
from contracts.monitoring import QualityConfig, load_monitoring, parse_monitoring
from flows.quality import DeviceLimits, DeviceQuality, DlqRate, Flapping

T0 = 1_790_000_000_000
S = 1000
EXAMPLE = Path(__file__).parents[2] / "infra" / "sim" / "monitoring.yaml"

CONFIG = parse_monitoring("""
tags:
  status_code: {}
  soc_pct: {unit: "%", moving: true}
  active_power_kw: {unit: kW, moving: true}
  available_power_kw: {unit: kW}
device_types:
  slow: {poll_interval_s: 2.0, tags: {soc: {tag: soc_pct}}}
status: {codes: {0: {state: available}}}
quality: {gap_factor: 5, frozen_after_s: 10, max_clock_skew_s: 60}
""", "test-monitoring.yaml")
LIMITS = DeviceLimits.of(CONFIG, None)  # poll 1 s: gap > 5 s; frozen after 10 s; skew 60 s

# (kind, scope, state, raised at s, ts at s): what a reader of the alert topic notices.
Brief = tuple[str, str, str, float, float]


def brief(alerts: list[Alert]) -> list[Brief]:
    return [(a.kind, a.scope_id, a.state, (a.raised_ms - T0) / S, (a.ts_ms - T0) / S)
            for a in alerts]


def tags(soc: TagValue = 50.0, power: TagValue = 100.0,
         available: TagValue = 2000.0) -> Mapping[str, Mapping[str, TagValue]]:
    return {"u1": {"status_code": 0, "soc_pct": soc, "active_power_kw": power,
                   "available_power_kw": available}}


# A step: ("sample", t_s, skew_s, tags) or ("tick", t_s); then the alerts it must give.
Step = tuple[tuple[Any, ...], list[Brief]]


def run_device(quality: DeviceQuality, steps: list[Step]) -> list[list[Alert]]:
    """Feed the steps, asserting each step's alerts; returns them all."""
    outputs = []
    for i, (action, expected) in enumerate(steps):
        if action[0] == "sample":
            _, t_s, skew_s, values = action
            ts = T0 + round(t_s * S)
            out = quality.observe(ts, ts + round(skew_s * S), values)
        else:
            out = quality.tick(T0 + round(action[1] * S))
        assert brief(out) == expected, f"step {i}: {action}"
        outputs.append(out)
    return outputs


def sample(t_s: float, skew_s: float = 0.0,
           values: Mapping[str, Mapping[str, TagValue]] | None = None) -> tuple[Any, ...]:
    # A moving value by default, so that only the alert under test shows.
    return ("sample", t_s, skew_s, tags(soc=50.0 + t_s, power=t_s) if values is None else values)


GAP = ("telemetry_gap", "d1")

GAP_SEEN_BY_THE_RESUMING_SAMPLE: list[Step] = [
    (sample(0), []),
    (sample(1), []),
    (sample(2), []),
    # 7 s of silence > 5 s: raised at the instant it became a gap, 2 + 5 = 7 s.
    (sample(9), [(*GAP, "raised", 7, 7)]),
    # One sample ended the silence; the next on time (1 s ≤ 5 s) says samples flow again.
    (sample(10), [(*GAP, "cleared", 7, 10)]),
    (sample(11), []),
    (sample(16), []),  # 5 s is not more than 5 s
    (sample(21.001), [(*GAP, "raised", 21, 21)]),
]

GAP_SEEN_BY_TICKS: list[Step] = [
    (sample(0), []),
    (sample(1), []),
    (("tick", 6), []),  # 6 − 1 = 5 s: not more than 5 s
    (("tick", 6.001), [(*GAP, "raised", 6, 6)]),
    (("tick", 20), []),  # once per gap
    (sample(30), []),  # ends the silence, is not on time itself
    (sample(40), []),  # silent again (10 s): still the same alert, not a second one
    (sample(41), [(*GAP, "cleared", 6, 41)]),
]

GAP_TICKED_THEN_A_LATE_SAMPLE: list[Step] = [
    (sample(0), []),
    (("tick", 5.5), [(*GAP, "raised", 5, 5)]),
    # The sample was late, not missing: 4 − 0 ≤ 5 s is on time; cleared, never before raised.
    (sample(4), [(*GAP, "cleared", 5, 5)]),
    # Older than the newest: not judged at all, not even its skew, and time does not go back.
    (sample(3, skew_s=100), []),
    (sample(9.5), [(*GAP, "raised", 9, 9)]),  # 4 + 5 s, not 3 + 5 s
]

FROZEN_SOC = ("frozen_value", "u1:soc_pct")

FROZEN: list[Step] = [
    (sample(0, values=tags(soc=50.0, power=0)), []),
    (sample(1, values=tags(soc=50.0, power=1)), []),
    (sample(9, values=tags(soc=50.0, power=2)), [(*GAP, "raised", 6, 6)]),
    # Unchanged since 0 s for 10 s ≥ 10 s (the silence counts as unchanged); power moved.
    (sample(10, values=tags(soc=50, power=3)), [(*GAP, "cleared", 6, 10),
                                                (*FROZEN_SOC, "raised", 10, 10)]),
    (sample(11, values=tags(soc=50.0, power=4)), []),  # raised once
    (sample(12, values=tags(soc=50.5, power=5)), [(*FROZEN_SOC, "cleared", 10, 12)]),
    # The unchanged clock restarts at 12 s: 21 − 12 = 9 s is not yet frozen.
    (sample(13, values=tags(soc=50.5, power=6)), []),
    (sample(17, values=tags(soc=50.5, power=7)), []),
    (sample(21, values=tags(soc=50.5, power=8)), []),
    (sample(22, values=tags(soc=50.5, power=9)), [(*FROZEN_SOC, "raised", 22, 22)]),
]

SKEW = ("clock_skew", "d1")

CLOCK_SKEW: list[Step] = [
    (sample(0, skew_s=60), []),  # exactly the limit is allowed
    (sample(1, skew_s=61), [(*SKEW, "raised", 1, 1)]),
    (sample(2, skew_s=-90), []),  # ahead of the clock, worse: the same alert
    (sample(3, skew_s=1), []),
    (sample(4, skew_s=1), []),
    (sample(5, skew_s=70), []),  # a bad one again: the count of good samples restarts
    (sample(6, skew_s=0), []),
    (sample(7, skew_s=0), []),
    (sample(8, skew_s=-59), [(*SKEW, "cleared", 1, 8)]),  # the third in a row within 60 s
    (sample(9, skew_s=120), [(*SKEW, "raised", 9, 9)]),  # a new episode, a new id
]


@pytest.mark.parametrize("steps", [GAP_SEEN_BY_THE_RESUMING_SAMPLE, GAP_SEEN_BY_TICKS,
                                   GAP_TICKED_THEN_A_LATE_SAMPLE, FROZEN, CLOCK_SKEW],
                         ids=["gap-by-sample", "gap-by-tick", "gap-late-sample", "frozen",
                              "clock-skew"])
def test_device_quality_sequences(steps: list[Step]) -> None:
    run_device(DeviceQuality("d1", LIMITS, site_id="s1"), steps)


def test_alerts_carry_ids_severities_and_the_numbers() -> None:
    out = run_device(DeviceQuality("d1", LIMITS, site_id="s1"), GAP_SEEN_BY_TICKS)
    raised, cleared = out[3][0], out[7][0]
    assert raised.alert_id == cleared.alert_id == f"telemetry_gap:d1:{T0 + 6 * S}"
    assert (raised.severity, raised.site_id) == ("major", "s1")
    assert raised.details == {"last_sample_ms": T0 + S, "threshold_s": 5.0,
                              "poll_interval_s": 1.0}
    # Longest silence while raised: 1 → 30 s = 29 s; the last silence ended at 40 s.
    assert cleared.details["gap_s"] == 29.0
    assert cleared.details["resumed_ms"] == T0 + 40 * S
    assert "d1" in raised.message and "5 s" in raised.message

    out = run_device(DeviceQuality("d1", LIMITS), CLOCK_SKEW)
    raised, cleared = out[1][0], out[8][0]
    assert raised.alert_id == cleared.alert_id == f"clock_skew:d1:{T0 + S}"
    assert raised.severity == "minor"
    assert raised.details == {"skew_s": 61.0, "max_skew_s": 60.0}
    assert cleared.details == {"skew_s": -59.0, "max_skew_s": 60.0, "worst_skew_s": -90.0}
    assert "61 s behind" in raised.message

    out = run_device(DeviceQuality("d1", LIMITS), FROZEN)
    raised, cleared = out[3][1], out[5][0]
    assert raised.alert_id == cleared.alert_id == f"frozen_value:u1:soc_pct:{T0 + 10 * S}"
    assert raised.severity == "minor"
    assert raised.details["value"] == 50.0
    assert raised.details["since_ms"] == T0
    assert raised.details["unchanged_s"] == 10.0
    assert (raised.details["asset_id"], raised.details["tag"]) == ("u1", "soc_pct")
    assert cleared.details["unchanged_s"] == 12.0
    assert cleared.details["new_value"] == 50.5


def test_a_gap_has_one_id_whether_ticks_or_the_next_sample_see_it_first() -> None:
    by_tick, by_sample = DeviceQuality("d1", LIMITS), DeviceQuality("d1", LIMITS)
    for quality in (by_tick, by_sample):
        quality.observe(T0, T0, tags())
    ticked = by_tick.tick(T0 + 8 * S)
    sampled = by_sample.observe(T0 + 9 * S, T0 + 9 * S, tags(soc=1, power=1))
    assert ticked == sampled  # raised at 0 + 5 s, same content
    assert by_tick.observe(T0 + 9 * S, T0 + 9 * S, tags(soc=1, power=1)) == []


def test_frozen_values_are_judged_per_asset_and_moving_tag_only() -> None:
    quality = DeviceQuality("d1", LIMITS)
    stuck = {"u1": {"soc_pct": 50.0, "available_power_kw": 2000.0},
             "u1-b1": {"soc_pct": 49.0, "active_power_kw": 0}}
    out = []
    for t in range(11):
        out += quality.observe(T0 + t * S, T0 + t * S, stuck)
    # available_power_kw is not a moving tag; three moving points froze in the same poll.
    assert brief(out) == [("frozen_value", "u1:soc_pct", "raised", 10, 10),
                          ("frozen_value", "u1-b1:active_power_kw", "raised", 10, 10),
                          ("frozen_value", "u1-b1:soc_pct", "raised", 10, 10)]
    assert len({a.alert_id for a in out}) == 3
    # A tag missing from a poll neither changes nor clears anything.
    assert quality.observe(T0 + 11 * S, T0 + 11 * S, {"u1": {"soc_pct": 50.0}}) == []
    assert brief(quality.observe(T0 + 12 * S, T0 + 12 * S, {"u1-b1": {"soc_pct": 48.0}})) == [
        ("frozen_value", "u1-b1:soc_pct", "cleared", 10, 12)]


DLQ = ("dlq_rate", "s1")


def test_dlq_rate_over_a_trailing_window() -> None:
    quality = QualityConfig(dlq_rate_window_s=10, dlq_rate_max=0.1)
    rate = DlqRate("s1", quality, site_id="s1")
    # (t_s, accepted, how many) → alerts after the batch.
    steps: list[tuple[float, bool, int, list[Brief]]] = [
        (0, False, 5, []),  # 5 of 5 refused, but under 20 records nothing is judged
        (0.5, True, 14, []),  # 19 records
        (1, True, 1, [(*DLQ, "raised", 1, 1)]),  # 20 records, 5 refused: 25 % > 10 %
        (2, True, 20, []),  # 5 / 40 = 12.5 %: still raised
        (3, True, 9, []),  # 5 / 49 = 10.2 %
        (3, True, 1, []),  # 5 / 50 = 10 %: not above, not below either
        (4, True, 1, [(*DLQ, "cleared", 1, 4)]),  # 5 / 51 = 9.8 % < 10 %
        # At 10 s the window is buckets 1..10 s: the 5 refused of bucket 0 left it.
        (10, False, 3, []),  # 3 / (1 + 20 + 10 + 1 + 3) = 3 / 35 = 8.6 %
        (10.5, False, 1, [(*DLQ, "raised", 10.5, 10.5)]),  # 4 / 36 = 11.1 %
        (5, True, 1, []),  # an older record counts at the window's clock: 4 / 37 = 10.8 %
    ]
    for i, (t_s, accepted, count, expected) in enumerate(steps):
        out = []
        for _ in range(count):  # polls (trusted times) with or without refused values
            out += rate.observe(T0 + round(t_s * S), accepted, trusted=True)
        assert brief(out) == expected, f"step {i}"
    assert rate.alert is not None
    assert rate.alert.severity == "major"
    assert rate.alert.details == {"refused": 4, "total": 36, "refused_share": 4 / 36,
                                  "max_share": 0.1, "window_s": 10.0}
    assert rate.alert.alert_id == f"dlq_rate:s1:{T0 + 10_500}"


def test_dlq_rate_never_repeats_an_id_within_one_millisecond() -> None:
    rate = DlqRate("s1", QualityConfig(dlq_rate_window_s=10, dlq_rate_max=0.5), min_records=2)
    flips = [rate.observe(T0, accepted, trusted=True)
             for accepted in (False, False, True, True, True, False, False)]
    # Raised at 2/2, cleared at 2/5 = 40 %; 4/7 = 57 % > 50 % in the same ms would repeat
    # the id `dlq_rate:s1:T0`: it waits for the next millisecond (5/8).
    assert [brief(o) for o in flips] == [[], [(*DLQ, "raised", 0, 0)], [], [],
                                         [(*DLQ, "cleared", 0, 0)], [], []]
    assert brief(rate.observe(T0 + 1, False, trusted=True)) == [(*DLQ, "raised", 0.001, 0.001)]


def test_a_refused_record_from_the_future_does_not_move_the_window() -> None:
    """A device's clock in 2096 is refused whole (clock skew): it counts, at the window's
    clock, and the window goes on with the trusted times — it is not stuck in 2096."""
    rate = DlqRate("s1", QualityConfig(dlq_rate_window_s=10, dlq_rate_max=0.5), min_records=4)
    year_2096 = 3_980_000_000_000
    out = [a for t in range(4) for a in rate.observe(T0 + t * S, True)]
    out += rate.observe(year_2096, False)
    assert rate.now_ms == T0 + 3 * S and out == []  # 1 of 5 refused
    out = [a for k in range(4) for a in rate.observe(year_2096 + k, False)]
    assert brief(out) == [(*DLQ, "raised", 3, 3)]  # 5 of 8 refused, at the trusted clock
    # The trusted times go on: 20 s later the refused records have left the window.
    out = [a for t in range(20, 26) for a in rate.observe(T0 + t * S, True)]
    assert brief(out) == [(*DLQ, "cleared", 3, 23)]  # judged again from 4 records on
    assert rate.now_ms == T0 + 25 * S


def test_refused_records_before_any_trusted_time_move_to_the_first() -> None:
    rate = DlqRate("s1", QualityConfig(dlq_rate_window_s=10, dlq_rate_max=0.5), min_records=4)
    year_2096 = 3_980_000_000_000
    assert rate.observe(year_2096, False) == [] and rate.provisional
    out = [a for k in range(2) for a in rate.observe(T0 + k * S, True)]
    assert not rate.provisional and rate.now_ms == T0 + S
    out += rate.observe(T0 + 2 * S, True)  # 1 of 4 refused, all in the window at T0
    assert out == [] and (rate.total, rate.refused) == (4, 1)
    out = [a for t in range(12, 16) for a in rate.observe(T0 + t * S, True)]
    assert (rate.total, rate.refused) == (4, 0)  # the 2096 record left with T0's seconds


def change(t_s: float, state: State, fraction: float | None = None) -> StatusChange:
    return StatusChange(asset_id="u1", site_id="s1", ts_ms=T0 + round(t_s * S), state=state,
                        derate_fraction=fraction)


FLAP = ("data_instability", "u1")


def test_flapping_raises_at_the_sixth_state_change_and_clears_below_half() -> None:
    flapping = Flapping("u1", QualityConfig(flapping_changes=6, flapping_window_s=600))
    steps: list[tuple[StatusChange | float, list[Brief]]] = [
        (change(0, "available"), []),  # a first status is no change
        (change(0, "unavailable"), []),  # 1 change
        (change(30, "derated", 0.5), []),  # 2
        (change(40, "derated", 0.6), []),  # the fraction only: not counted
        (change(60, "available"), []),  # 3
        (change(120, "unavailable"), []),  # 4
        (change(180, "available"), []),  # 5
        (change(300, "unavailable"), [(*FLAP, "raised", 300, 300)]),  # 6 within 600 s
        (change(400, "unknown"), []),  # 7: raised once
        # The window (now − 600 s, now]: at 660 s the changes at 0, 30 and 60 s have left
        # (4 remain, not fewer than 3); the one at 120 s leaves at 720 s: 3 remain.
        (660.0, []),
        (779.999, []),
        # 180 s leaves at 780 s: 2 < 6 / 2. Cleared at that instant, whenever noticed.
        (900.0, [(*FLAP, "cleared", 300, 780)]),
        (change(901, "available"), []),
    ]
    for i, (step, expected) in enumerate(steps):
        if isinstance(step, StatusChange):
            out = flapping.observe(step)
        else:
            out = flapping.tick(T0 + round(step * S))
        assert brief(out) == expected, f"step {i}"


def test_flapping_clears_on_a_change_too_and_counts_details() -> None:
    flapping = Flapping("u1", QualityConfig(flapping_changes=2, flapping_window_s=10))
    assert flapping.observe(change(0, "available")) == []
    assert flapping.observe(change(1, "unavailable")) == []
    raised = flapping.observe(change(2, "available"))
    assert brief(raised) == [(*FLAP, "raised", 2, 2)]
    assert raised[0].site_id == "s1"
    assert raised[0].details == {"changes": 2, "changes_max": 2, "window_s": 10.0,
                                 "first_change_ms": T0 + S}
    # At 30 s both left; 1 s left at 11 s: 1 remains, 2·1 < 2 is false; 2 s at 12 s: cleared.
    out = flapping.observe(change(30, "unavailable"))
    assert brief(out) == [(*FLAP, "cleared", 2, 12)]


def test_state_survives_pickling_mid_sequence() -> None:
    steps = GAP_SEEN_BY_TICKS
    straight = DeviceQuality("d1", LIMITS, site_id="s1")
    first = run_device(straight, steps[:6])  # the gap is raised, the silence ended
    resumed = pickle.loads(pickle.dumps(straight))
    assert run_device(resumed, steps[6:]) == run_device(straight, steps[6:])

    frozen = DeviceQuality("d1", LIMITS)
    run_device(frozen, FROZEN[:4])
    copy = pickle.loads(pickle.dumps(frozen))
    assert run_device(copy, FROZEN[4:]) == run_device(frozen, FROZEN[4:])
    assert first[3]  # the pickled state held a raised alert

    def twin(make: Callable[[], Any], feed: Callable[[Any, int], list[Alert]]) -> None:
        a = make()
        for t in range(25):
            feed(a, t)
        b = pickle.loads(pickle.dumps(a))
        after = [feed(a, t) for t in range(25, 60)]
        assert [feed(b, t) for t in range(25, 60)] == after
        assert any(after)  # the continuation raised or cleared something

    def dlq_feed(rate: DlqRate, t: int) -> list[Alert]:
        # 3 records a second, one in 7 refused: about 4-5 of the 30 in the window, around 15 %.
        return [a for k in range(3) for a in rate.observe(T0 + t * S + k, (3 * t + k) % 7 != 0)]

    def flap_feed(flapping: Flapping, t: int) -> list[Alert]:
        # Bursts of 4 changes (2, 4, 6, 8 s after every 20 s), quiet in between.
        unknown = t % 20 < 8 and t % 4 >= 2
        return flapping.observe(change(t, "unknown" if unknown else "available"))

    twin(lambda: DlqRate("s1", QualityConfig(dlq_rate_window_s=10, dlq_rate_max=0.15)),
         dlq_feed)
    twin(lambda: Flapping("u1", QualityConfig(flapping_changes=3, flapping_window_s=5)),
         flap_feed)


def test_the_example_monitoring_file_drives_the_checks() -> None:
    config = load_monitoring(EXAMPLE)
    limits = DeviceLimits.of(config, "bess-unit-v1")
    # gap_factor 5 × poll 1 s; frozen 900 s; skew 60 s; the temperatures and the grid
    # frequency marked moving (an idle unit's power and charge may rightly stand still).
    assert limits == DeviceLimits(1.0, 5_000, 900_000, 60_000,
                                  ("cell_temp_max_c", "f_hz", "temperature_c"))
    quality = DeviceQuality("u01", limits)
    assert quality.observe(T0, T0, {"u01": {"temperature_c": 25.0, "soc_pct": 50.0}}) == []
    assert brief(quality.tick(T0 + 5_001)) == [("telemetry_gap", "u01", "raised", 5, 5)]
    out = quality.observe(T0 + 900 * S, T0 + 961 * S,
                          {"u01": {"temperature_c": 25.0, "soc_pct": 50.0}})
    assert brief(out) == [("clock_skew", "u01", "raised", 900, 900),
                          ("frozen_value", "u01:temperature_c", "raised", 900, 900)]

    rate = DlqRate("fleet", config.quality)  # 300 s window, 1 % allowed
    assert rate.window_buckets == 300
    out = []
    for i in range(100):
        out += rate.observe(T0 + i * S, i not in (10, 20))
    # Judged from the 20th record on (at 19 s): 1 / 20 = 5 % > 1 %; raised once.
    assert brief(out) == [("dlq_rate", "fleet", "raised", 19, 19)]

    flapping = Flapping("u01", config.quality)  # 6 changes within 600 s
    states: list[State] = ["available", "unknown"] * 4
    out = []
    for i, state in enumerate(states):
        out += flapping.observe(StatusChange(asset_id="u01", site_id="s", ts_ms=T0 + i * 60 * S,
                                             state=state))
    assert brief(out) == [("data_instability", "u01", "raised", 360, 360)]


def test_device_limits_follow_the_device_type() -> None:
    slow = DeviceLimits.of(CONFIG, "slow")
    assert (slow.poll_interval_s, slow.gap_ms) == (2.0, 10_000)
    with pytest.raises(KeyError):
        DeviceLimits.of(CONFIG, "nope")
