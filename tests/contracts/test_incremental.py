"""The incremental accumulators give the batch numbers to the last digit — proven on random
timelines (hypothesis), DST months and contract-year boundaries included — plus late input,
provisional totals and the early warning of spec §6."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.contract import Contract
from contracts.engine import evaluate
from contracts.events import Cause
from contracts.incremental import ContractAccumulator, LateInput, warning_level
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.periods import ContractCalendar
from tests.contracts.builders import FLEET, TZ, at, contract, ex, full, iv

MINUTE = 60_000_000
HOUR = 60 * MINUTE
ASSETS = ["u1", "u1-i1", "u1-i1-b1", "u1-i1-b2", "u1-i2", "u2", "v1"]
CAUSES: list[str | None] = [None, *get_args(Cause)]


@st.composite
def timelines(draw: st.DrawFn, start_us: int, grid_us: int) -> list[StatusInterval]:
    """Intervals per asset; on a coarse grid, boundaries often fall exactly on a watermark."""
    out = []
    odd = [0] if grid_us > MINUTE else [0, 1, 999]
    for asset in ASSETS:
        t = start_us + draw(st.integers(0, 3000)) * grid_us
        for _ in range(draw(st.integers(0, 25))):
            t += draw(st.sampled_from([0, 0, 0, 1, 7, 90, 2000])) * grid_us  # gap
            length = draw(st.integers(1, 6000 * MINUTE // grid_us)) * grid_us + draw(
                st.sampled_from(odd))
            state = draw(st.sampled_from(["available", "available", "derated", "unavailable",
                                          "unknown"]))
            fraction = draw(st.sampled_from([0.0, 0.25, 0.5, 1 / 3, 0.9, 1.0])) \
                if state == "derated" else None
            cause = draw(st.sampled_from(CAUSES))
            out.append(StatusInterval(asset, t, t + length, state, fraction, cause))
            t += length
    return out


@st.composite
def windows(draw: st.DrawFn, start_us: int) -> list[ExclusionWindow]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        begin = start_us + draw(st.integers(0, 80_000)) * MINUTE
        out.append(ExclusionWindow(draw(st.sampled_from(["alpha", "u1", "u2", "beta"])), begin,
                                   begin + draw(st.integers(1, 5000)) * MINUTE,
                                   draw(st.sampled_from(["grid_outage", "scheduled_maintenance",
                                                         "fault", "force_majeure"]))))
    return out


@st.composite
def contracts_(draw: st.DrawFn) -> Contract:
    return contract(
        start=draw(st.sampled_from(["2024-03-01", "2024-03-15", "2024-10-20", "2024-02-29"])),
        availability={
            "weight": draw(st.sampled_from(["equal", "power", "energy"])),
            "derate": draw(st.sampled_from(["pro_rata", "available"])),
            "data_gap_policy": draw(st.sampled_from(["available", "unavailable", "excluded"])),
            "excluded_causes": draw(st.lists(st.sampled_from(get_args(Cause)), unique=True,
                                             max_size=3)),
            "maintenance_allowance_hours": draw(st.sampled_from([0, 10, 48, 0.5])),
        },
        bonus={"threshold_pct": 90.0, "rate_per_pct": 100, "cap_per_contract_year": 1500},
        ld={"currency": "EUR", "step_pct": 0.01, "rate_per_pct": 20000,
            "cap_per_contract_year": draw(st.sampled_from([50_000, 10_000_000]))})


def arrival_order(items: list, lateness_us: int, seed: int) -> list:
    """Shuffled, but each item arrives before the watermark passes its start."""
    rng = random.Random(seed)
    return sorted(items, key=lambda x: x.start_us + rng.randrange(lateness_us))


def feed(acc: ContractAccumulator, items: list, seed: int, end_us: int) -> None:
    """Add items in order, advancing now and then — often to exactly a boundary of an item
    seen (that is where chunked booking could go wrong)."""
    rng = random.Random(seed)
    boundaries: list[int] = []
    for item in items:
        if isinstance(item, StatusInterval):
            acc.add(item)
        else:
            acc.add_window(item)
        bisect.insort(boundaries, item.start_us)
        bisect.insort(boundaries, item.end_us)
        if rng.random() < 0.3:
            watermark = acc.watermark_us
            at_boundary = boundaries[max(0, bisect.bisect_right(boundaries, watermark) - 1)]
            acc.advance(at_boundary if acc.frontier_us <= at_boundary <= watermark
                        and rng.random() < 0.7 else None)
    acc.advance(end_us)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=st.data(), months=st.sampled_from(["2026-03..2026-04", "2026-10..2026-11",
                                               "2026-02..2026-03"]),
       seed=st.integers(0, 2**32), grid_us=st.sampled_from([MINUTE, HOUR]))
def test_incremental_equals_batch_on_random_timelines(data: st.DataObject, months: str,
                                                      seed: int, grid_us: int) -> None:
    c = data.draw(contracts_())
    cal = ContractCalendar(c.start, c.term_years, TZ)
    periods = cal.parse_range(months, "month")
    lo, hi = periods[0].start_us - 3 * 24 * HOUR, periods[-1].end_us + 24 * HOUR
    intervals = data.draw(timelines(lo, grid_us))
    exclusions = data.draw(windows(lo))

    batch = evaluate(FLEET, c, intervals, exclusions, months)

    lateness = 6 * HOUR
    first_year = cal.period_year(periods[0])
    start = min(cal.year_bounds(first_year)[0], cal.preceding_in_year(periods[0])[0].start_us
                if cal.preceding_in_year(periods[0]) else periods[0].start_us)
    acc = ContractAccumulator(FLEET, c, allowed_lateness_us=lateness, start_us=start)
    feed(acc, arrival_order([*intervals, *exclusions], lateness, seed), seed,
         max(hi, periods[-1].end_us))
    incremental = acc.evaluate([p.label for p in periods])

    assert len(incremental) == len(batch.periods)
    for b, i in zip(batch.periods, incremental, strict=True):
        assert (i.period, i.contract_year, i.guaranteed_pct) == (
            b.period, b.contract_year, b.guaranteed_pct)
        assert i.availability == b.availability  # exactly, not approximately
        assert (i.ld, i.bonus) == (b.ld, b.bonus)
        for bu, iu in zip(b.units, i.units, strict=True):
            assert (iu.asset_id, iu.totals) == (bu.asset_id, bu.totals)


def test_late_input_is_refused_not_booked() -> None:
    acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=HOUR,
                              start_us=at("2026-06-01 00:00"))
    acc.add(iv("u1", "2026-06-01 00:00", "2026-06-01 05:00"))
    acc.add(iv("u1", "2026-06-01 05:00", "2026-06-01 10:00"))
    acc.advance()  # final up to 04:00 (newest start 05:00 − 1 h)
    assert acc.frontier_us == at("2026-06-01 04:00")
    with pytest.raises(LateInput, match="interval of u2 starts"):
        acc.add(iv("u2", "2026-06-01 03:00", "2026-06-01 04:00"))
    with pytest.raises(LateInput, match="exclusion window of alpha"):
        acc.add_window(ex("alpha", "2026-06-01 02:00", "2026-06-01 09:00", "grid_outage"))
    acc.add(iv("u2", "2026-06-01 04:30", "2026-06-01 05:00"))  # within the lateness: fine
    acc.add(iv("v1", "2026-06-01 00:00", "2026-06-01 01:00"))  # another site: ignored


def test_open_periods_show_provisional_totals_and_are_not_evaluated_as_final() -> None:
    acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=HOUR,
                              start_us=at("2026-06-01 00:00"))
    acc.add(iv("u1", "2026-06-01 00:00", "2026-06-02 00:00", "unavailable"))
    acc.add(full("u2", "2026-06-01 00:00", "2026-06-02 00:00"))
    now = at("2026-06-01 12:00")
    so_far = acc.totals("2026-06", until_us=now)
    assert so_far["u1"].hours() == (12.0, 0.0, 12.0)
    assert so_far["u2"].hours() == (12.0, 0.0, 0.0)
    assert acc.totals("2026-06")["u1"].window_us == 0  # nothing final yet
    with pytest.raises(ValueError, match="not final yet"):
        acc.evaluate(["2026-06"])


@pytest.mark.parametrize(("lost_hours_per_day", "level"), [
    (0.0, "ok"),  # projected 100 % ≥ 97.5
    (0.5, "ok"),  # u1 loses 0.5 h/day: 1 - 0.5/48 = 98.96 %
    (1.0, "ok"),  # 1 - 1/48 = 97.92 % ≥ 97.5
    (1.3, "watch"),  # 1 - 1.3/48 = 97.29 %: ≥ 97, < 97.5
    (2.0, "ld_risk"),  # 1 - 2/48 = 95.83 %
])
def test_early_warning_levels_from_the_trailing_loss_rate(lost_hours_per_day: float,
                                                          level: str) -> None:
    acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=HOUR,
                              start_us=at("2026-06-01 00:00"))
    day = dt.timedelta(days=1)
    t = dt.datetime(2026, 6, 1)
    for _ in range(10):  # ten days, each with the same loss at its start
        cut = t + dt.timedelta(hours=lost_hours_per_day)
        if lost_hours_per_day:
            acc.add(iv("u1", t.isoformat(), cut.isoformat(), "unavailable"))
        acc.add(iv("u1", cut.isoformat(), (t + day).isoformat()))
        acc.add(full("u2", t.isoformat(), (t + day).isoformat()))
        t += day
    period = ContractCalendar(dt.date(2024, 6, 1), 20, TZ).parse("2026-06", "month")
    p = acc.project(period, at("2026-06-11 00:00"))
    expected = 1 - lost_hours_per_day / 48
    assert p.projected_availability == pytest.approx(expected)
    assert p.trailing_loss_rate == pytest.approx(1 - expected)
    assert p.level == level
    if level == "ld_risk":
        # 97 − 95.833 = 1.1666… → 1.16 · 20 000
        assert float(p.projected_ld) == pytest.approx(23200.0)
    else:
        assert p.projected_ld == 0


def test_projection_uses_the_last_seven_days_not_the_whole_period() -> None:
    acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=HOUR,
                              start_us=at("2026-06-01 00:00"))
    # A bad first 3 days (u1 down), then 7 good days.
    acc.add(iv("u1", "2026-06-01 00:00", "2026-06-04 00:00", "unavailable"))
    acc.add(full("u1", "2026-06-04 00:00", "2026-06-11 00:00"))
    acc.add(full("u2", "2026-06-01 00:00", "2026-06-11 00:00"))
    period = ContractCalendar(dt.date(2024, 6, 1), 20, TZ).parse("2026-06", "month")
    p = acc.project(period, at("2026-06-11 00:00"))
    assert p.trailing_loss_rate == 0.0
    assert p.availability_so_far == pytest.approx(1 - 72 / 480)
    # 72 h lost over the whole month's 1440 counted hours.
    assert p.projected_availability == pytest.approx(1 - 72 / 1440)


@pytest.mark.parametrize(("pct", "level"), [(97.5, "ok"), (97.49, "watch"), (97.0, "watch"),
                                            (96.99, "ld_risk")])
def test_warning_level_boundaries(pct: float, level: str) -> None:
    assert warning_level(pct / 100, 97.0, 0.5) == level
    assert warning_level(None, 97.0, 0.5) == "ok"


@pytest.mark.parametrize("cut", ["2026-06-01 05:00", "2026-06-01 07:00", "2026-06-01 12:00"])
def test_booking_in_chunks_that_end_exactly_on_boundaries_changes_nothing(cut: str) -> None:
    rows = [iv("u1", "2026-06-01 00:00", "2026-06-01 05:00", "unavailable"),
            iv("u1", "2026-06-01 05:00", "2026-06-01 12:00"),
            iv("u1-i2", "2026-06-01 07:00", "2026-06-01 12:00", "unavailable"),
            full("u1", "2026-06-01 12:00", "2026-07-01 00:00"),
            full("u2", "2026-06-01 00:00", "2026-07-01 00:00")]
    windows = [ex("alpha", "2026-06-01 12:00", "2026-06-01 14:00", "grid_outage")]
    batch = evaluate(FLEET, contract(), rows, windows, "2026-06").periods[0]
    acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=HOUR,
                              start_us=at("2026-06-01 00:00"))
    for item in rows:
        acc.add(item)
    acc.add_window(windows[0])
    acc.advance(at(cut))
    acc.advance(at("2026-07-01 00:00"))
    chunked = acc.evaluate(["2026-06"])[0]
    assert [u.totals for u in chunked.units] == [u.totals for u in batch.units]
    assert chunked.availability == batch.availability


@pytest.mark.parametrize(("zone", "moment", "day_start", "hours"), [
    ("Asia/Kolkata", "2026-06-10T10:45:00+05:30", "2026-06-10T00:00:00+05:30", 24),
    ("Europe/Stockholm", "2026-10-25T02:30:00+01:00", "2026-10-25T00:00:00+02:00", 25),
    ("Europe/Stockholm", "2026-03-29T23:30:00+02:00", "2026-03-29T00:00:00+01:00", 23),
    ("Australia/Lord_Howe", "2026-10-04T12:00:00+11:00", "2026-10-04T00:00:00+10:30", 23.5),
])
def test_day_buckets_follow_the_site_local_calendar(zone: str, moment: str, day_start: str,
                                                    hours: float) -> None:
    from contracts.fleet import parse_fleet
    from contracts.periods import to_us

    fleet = parse_fleet(f"""
sites:
  - id: alpha
    customer: A
    region: R
    timezone: {zone}
    units: [{{id: u1, rated_power_kw: 1, rated_energy_kwh: 1, commissioned: 2024-01-01}}]
""", "f.yaml")
    acc = ContractAccumulator(fleet, contract(), allowed_lateness_us=HOUR)
    (label, start), end = acc.locate(to_us(dt.datetime.fromisoformat(moment)))
    assert label == moment[:7]
    assert start == to_us(dt.datetime.fromisoformat(day_start))
    assert end - start == hours * HOUR


def test_a_half_hour_dst_shift_books_exactly_the_elapsed_time() -> None:
    """Lord Howe moves its clocks by 30 minutes: 4 October 2026 lasts 23.5 hours."""
    from contracts.fleet import parse_fleet
    from contracts.periods import to_us

    fleet = parse_fleet("""
sites:
  - id: alpha
    customer: A
    region: R
    timezone: Australia/Lord_Howe
    units: [{id: u1, rated_power_kw: 1, rated_energy_kwh: 1, commissioned: 2024-01-01}]
""", "f.yaml")
    day_start = to_us(dt.datetime.fromisoformat("2026-10-04T00:00:00+10:30"))
    day_end = to_us(dt.datetime.fromisoformat("2026-10-05T00:00:00+11:00"))
    acc = ContractAccumulator(fleet, contract(), allowed_lateness_us=HOUR, start_us=day_start)
    acc.add(StatusInterval("u1", day_start, day_end, "unavailable"))
    acc.advance(day_end)
    totals = acc.totals("2026-10")["u1"]
    assert totals.window_us == day_end - day_start == 23 * HOUR + 30 * MINUTE
    assert totals.lost_us == totals.window_us


def test_the_trailing_week_is_seven_whole_local_days_and_today() -> None:
    acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=HOUR,
                              start_us=at("2026-06-01 00:00"))
    acc.add(iv("u1", "2026-06-03 00:00", "2026-06-03 12:00", "unavailable"))  # 8 days ago
    acc.add(full("u1", "2026-06-03 12:00", "2026-06-04 00:00"))
    acc.add(iv("u1", "2026-06-04 00:00", "2026-06-04 06:00", "unavailable"))  # 7 days ago
    acc.add(full("u1", "2026-06-04 06:00", "2026-06-11 12:00"))
    acc.add(full("u1", "2026-06-01 00:00", "2026-06-03 00:00"))
    acc.add(full("u2", "2026-06-01 00:00", "2026-06-11 12:00"))
    period = ContractCalendar(dt.date(2024, 6, 1), 20, TZ).parse("2026-06", "month")
    p = acc.project(period, at("2026-06-11 12:00"))
    # From 4 June 00:00 to now (7.5 days, both units): 6 h lost of 360 h counted.
    assert p.trailing_loss_rate == pytest.approx(6 / 360)
