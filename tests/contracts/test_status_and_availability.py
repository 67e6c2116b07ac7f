"""Status rules, exact loss timelines and the hierarchy roll-up (availability rules §3)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.settings import EXAMPLE_MONITORING
from contracts.availability import Timeline, local_midnight_ms
from contracts.errors import InvalidInput
from contracts.fleet import parse_fleet
from contracts.monitoring import parse_monitoring
from contracts.rules import Rollup
from contracts.status import Status, StatusRules, classify

FLEET = parse_fleet("""
sites:
  - {id: s, customer: C, region: R, timezone: Europe/Stockholm, units: [
      {id: u, rated_power_kw: 3000, rated_energy_kwh: 6000, commissioned: 2024-01-01,
       inverters: [
         {id: i1, rated_power_kw: 2000, blocks: [{id: b1, rated_energy_kwh: 1000},
                                                  {id: b2, rated_energy_kwh: 3000}]},
         {id: i2, rated_power_kw: 1000}]}]}
""", "fleet.yaml")


@pytest.mark.parametrize(("tags", "expected"), [
    ({"status_code": 0, "available_power_kw": 1000}, Status("available")),
    ({"status_code": 1}, Status("available")),
    ({"status_code": 0, "available_power_kw": 500}, Status("derated", 0.5)),
    ({"status_code": 2, "available_power_kw": 250}, Status("derated", 0.25)),
    ({"status_code": 2, "available_power_kw": 0}, Status("unavailable")),
    ({"status_code": 2}, Status("unknown")),
    ({"status_code": 3}, Status("unavailable", None, "fault")),
    ({"status_code": 4}, Status("unavailable", None, "scheduled_maintenance")),
    ({"status_code": 5}, Status("unavailable", None, "grid_outage")),
    ({"status_code": 99}, Status("unknown")),
    ({"status_code": float("nan")}, Status("unknown")),
    ({"status_code": "0"}, Status("unknown")),
    ({}, Status("unknown")),
])
def test_classify_by_code_and_available_capacity(tags: dict[str, float], expected: Status) -> None:
    assert classify(tags, rated_power_kw=1000, rated_energy_kwh=None) == expected


def test_blocks_derate_by_available_energy() -> None:
    tags = {"status_code": 0, "available_energy_kwh": 75.0}
    assert classify(tags, None, 100.0) == Status("derated", 0.75)


@pytest.mark.parametrize(("status", "loss"), [
    (Status("available"), 0.0), (Status("derated", 0.7), pytest.approx(0.3)),
    (Status("unavailable"), 1.0), (Status("unknown"), 1.0),
])
def test_loss_of_each_state(status: Status, loss: float) -> None:
    assert status.loss == loss


def test_timeline_merges_equal_neighbours_and_totals_exactly() -> None:
    t = Timeline()
    t.add(0, 1000, 0.0)
    t.add(1000, 2000, 0.0)
    t.add(2000, 2500, 1.0)
    t.add(3000, 4000, 0.5)  # a gap 2500..3000 is simply not observed
    assert len(t) == 3
    assert t.totals(0, 4000) == (3500.0, 1000.0)
    assert t.availability_pct(0, 4000) == pytest.approx(100 * (1 - 1000 / 3500))
    assert t.totals(2200, 3500) == (800.0, 550.0)
    t.trim(2200)
    assert t.totals(0, 4000) == (1300.0, 800.0)
    assert t.availability_pct(5000, 6000) is None
    with pytest.raises(ValueError, match="overlaps"):
        t.add(3500, 5000, 0.0)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 50), st.sampled_from(
    [0.0, 0.25, 0.5, 1.0])), max_size=200), st.lists(st.tuples(st.integers(0, 12_000),
                                                          st.integers(0, 12_000)), max_size=20),
       st.integers(0, 12_000), st.booleans(), st.booleans())
@example(pieces=[(0, 20, 0.0)], windows=[(10, 5)], cut=0, healthy=True, contiguous=True)
@example(pieces=[(0, 20, 0.0)], windows=[(0, 5)], cut=8, healthy=True, contiguous=True)
def test_timeline_totals_equal_a_walk_over_its_segments(
        pieces: list[tuple[int, int, float]], windows: list[tuple[int, int]], cut: int,
        healthy: bool, contiguous: bool) -> None:
    """The running totals (and availability) give what summing the segments' overlaps gives,
    before and after a trim (which may drop segments for good); `healthy`: nothing lost,
    `contiguous`: no gap between segments (the shortcuts of the usual live timelines)."""
    t, segments, at = Timeline(), [], 0
    for gap, length, loss in pieces:
        loss = 0.0 if healthy else loss
        at += 0 if contiguous else gap
        t.add(at, at + length, loss)
        segments.append((at, at + length, loss))
        at += length

    def walk(start: int, end: int, floor: int = 0) -> tuple[float, float]:
        start = max(start, floor)
        overlaps = [(min(e, end) - max(s, start), loss) for s, e, loss in segments]
        return (float(sum(d for d, _ in overlaps if d > 0)),
                sum(d * loss for d, loss in overlaps if d > 0))

    def pct(observed: float, lost: float) -> float | None:
        return None if observed == 0 else 100.0 * (1.0 - lost / observed)

    for start, end in windows:
        assert t.totals(start, end) == pytest.approx(walk(start, end))
        assert t.availability_pct(start, end) == pytest.approx(pct(*walk(start, end)))
    t.trim(cut)
    for start, end in [*windows, (0, 12_000)]:
        assert t.totals(start, end) == pytest.approx(walk(start, end, cut))
        assert t.availability_pct(start, end) == pytest.approx(pct(*walk(start, end, cut)))


def test_rollup_takes_the_larger_of_own_and_capacity_weighted_children() -> None:
    unit, inverter = Rollup("u", FLEET.assets), Rollup("i1", FLEET.assets)

    def rolled(plan: Rollup, own: dict[str, float]) -> float:
        return plan.loss(own.get(plan.asset_id, 0.0), own)

    # b2 is 3/4 of i1's energy; i1 is 2/3 of the unit's inverter power.
    assert rolled(unit, {"b2": 1.0}) == pytest.approx(0.75 * 2 / 3)
    # A block loss reaches the unit through an inverter that has no reading of its own.
    assert rolled(inverter, {"b1": 1.0}) == pytest.approx(0.25)
    # Own loss wins when larger.
    assert rolled(unit, {"u": 0.9, "i2": 1.0}) == pytest.approx(0.9)
    assert rolled(unit, {"i1": 0.5, "b2": 1.0}) == pytest.approx(0.75 * 2 / 3)
    assert rolled(unit, {}) == 0.0


@pytest.mark.parametrize(("day", "hours"), [
    (dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25), (dt.date(2026, 6, 1), 24)])
def test_local_days_follow_dst(day: dt.date, hours: int) -> None:
    tz = ZoneInfo("Europe/Stockholm")
    noon = int(dt.datetime.combine(day, dt.time(12), tzinfo=tz).timestamp() * 1000)
    next_noon = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(12),
                                        tzinfo=tz).timestamp() * 1000)
    length = local_midnight_ms(next_noon, tz) - local_midnight_ms(noon, tz)
    assert length == hours * 3600 * 1000


ALARMED = StatusRules.of(parse_monitoring(EXAMPLE_MONITORING.read_text(), "m.yaml").status)


@pytest.mark.parametrize(("tags", "expected"), [
    ({"status_code": 0, "available_power_kw": 1000, "alarm_word": 0}, Status("available")),
    ({"status_code": 0, "available_power_kw": 1000, "alarm_word": 1},
     Status("unavailable", None, "fault")),  # emergency stop
    ({"status_code": 1, "alarm_word": 2}, Status("unavailable", None, "fault")),  # fire
    ({"status_code": 0, "available_power_kw": 1000, "alarm_word": 4},
     Status("derated", 0.5, "fault")),  # HVAC fault
    # The worse of code and alarm: a deeper derate by available power stands.
    ({"status_code": 2, "available_power_kw": 300, "alarm_word": 4}, Status("derated", 0.3)),
    ({"status_code": 3, "alarm_word": 4}, Status("unavailable", None, "fault")),
    ({"status_code": 4, "alarm_word": 4}, Status("unavailable", None, "scheduled_maintenance")),
    ({"status_code": 0, "available_power_kw": 1000, "alarm_word": 8}, Status("available")),
    ({"status_code": 0, "available_power_kw": 1000, "alarm_word": 5},
     Status("unavailable", None, "fault")),
    ({"status_code": 99, "alarm_word": 1}, Status("unknown")),  # no status, no judgement
])
def test_alarm_bits_make_a_status_worse(tags: dict[str, float], expected: Status) -> None:
    assert classify(tags, 1000, 2000, ALARMED) == expected


@pytest.mark.parametrize(("alarm", "message"), [
    ("{tag: alarm_word, bit: 2, state: derated}",
     "derate_fraction is required for a derated alarm and only then"),
    ("{tag: alarm_word, state: unavailable, derate_fraction: 0.5}",
     "derate_fraction is required for a derated alarm and only then"),
    ("{tag: alarm_word, bit: 64, state: unavailable}", "less than or equal to 63"),
    ("{tag: alarm_word, state: available}", "'unavailable' or 'derated'"),
])
def test_invalid_alarm_rules_are_refused(alarm: str, message: str) -> None:
    text = EXAMPLE_MONITORING.read_text()
    start = text.index("  alarms:")
    end = text.index("\n\n", start)
    with pytest.raises(InvalidInput) as refused:
        parse_monitoring(text[:start] + f"  alarms:\n    - {alarm}" + text[end:], "m.yaml")
    assert "m.yaml" in str(refused.value) and "status.alarms" in str(refused.value)
    assert message in str(refused.value)
