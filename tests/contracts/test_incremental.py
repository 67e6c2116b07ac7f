"""The incremental accumulators give the batch numbers to the last digit — proven on random
timelines (hypothesis), DST months and contract-year boundaries included — plus late input,
provisional totals and the early warning of availability rules §6."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from collections.abc import Hashable, Sequence
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.contract import Contract
from contracts.engine import ContractContext, Evaluation, evaluate
from contracts.events import Cause
from contracts.incremental import ContractAccumulator, Input, LateInput, warning_level
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.ledger import Totals, sweep
from contracts.periods import ContractCalendar
from tests.contracts.builders import FLEET, TZ, at, contract, ex, full, iv
from tests.contracts.test_periods_and_ld import month_with_loss

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
            out.append(StatusInterval(asset, t, t + length, state,  # type: ignore[arg-type]
                                      fraction, cause))  # type: ignore[arg-type]
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


def arrival_order(items: list[Input], lateness_us: int, seed: int) -> list[Input]:
    """Shuffled, but each item arrives before the watermark passes its start."""
    rng = random.Random(seed)
    return sorted(items, key=lambda x: x.start_us + rng.randrange(lateness_us))


def feed(acc: ContractAccumulator, items: list[Input], seed: int, end_us: int) -> None:
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


def nonzero(t: Totals) -> tuple[int, int, dict[float, int], dict[str, int]]:
    """Totals compared by what they hold (a sweep may leave a class at 0 µs)."""
    return (t.window_us, t.excluded_us, {k: v for k, v in t.loss_us.items() if v},
            {k: v for k, v in t.class_us.items() if v})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=st.data(), seed=st.integers(0, 2**32),
       month=st.sampled_from(["2026-03", "2026-10", "2026-06"]),
       now_minutes=st.integers(0, 31 * 24 * 60), final_share=st.sampled_from([0.0, 0.5, 1.0]))
def test_trailing_windows_equal_a_batch_sweep_of_that_window(
        data: st.DataObject, seed: int, month: str, now_minutes: int,
        final_share: float) -> None:
    """Whatever part of the week is final, the window's time is what one batch sweep from
    the accumulator's start books into `[lo, hi)` — maintenance allowance included."""
    c = data.draw(contracts_())
    cal = ContractCalendar(c.start, c.term_years, TZ)
    period = cal.parse(month, "month")
    start = min(cal.year_bounds(cal.period_year(period))[0], period.start_us)
    intervals = data.draw(timelines(period.start_us - 20 * 24 * HOUR, HOUR))
    exclusions = data.draw(windows(period.start_us - 20 * 24 * HOUR))
    now = min(period.start_us + now_minutes * MINUTE, period.end_us)
    lo, hi = max(period.start_us, now - 7 * 24 * HOUR), now

    acc = ContractAccumulator(FLEET, c, allowed_lateness_us=6 * HOUR, start_us=start)
    final_to = start + int((now - start) * final_share)
    feed(acc, arrival_order([*intervals, *exclusions], 6 * HOUR, seed), seed, final_to)
    got = acc.window_totals(period.label, lo, hi, acc.view(now))

    ctx = ContractContext(FLEET, c)
    for uid, (own, children, covering) in ctx.split(intervals, exclusions).items():
        out: dict[Hashable, Totals] = {}
        sweep(ctx.scopes[uid], start, hi, own, children, covering,
              lambda us: ("before", lo) if us < lo else ("window", 1 << 62), out)
        assert nonzero(got[uid]) == nonzero(out.get("window", Totals())), uid


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


JUNE_2026 = ContractCalendar(dt.date(2024, 6, 1), 20, TZ).parse("2026-06", "month")


def accumulator(rows: Sequence[StatusInterval], windows: Sequence[ExclusionWindow] = (),
                c: Contract | None = None, start: str = "2026-06-01 00:00",
                final_to: str | None = None) -> ContractAccumulator:
    """An accumulator fed `rows` and `windows`; final up to `final_to` (None: nothing final,
    every projection books its time provisionally)."""
    acc = ContractAccumulator(FLEET, c or contract(), allowed_lateness_us=HOUR,
                              start_us=at(start))
    for row in rows:
        acc.add(row)
    for window in windows:
        acc.add_window(window)
    if final_to is not None:
        acc.advance(at(final_to))
    return acc


@pytest.mark.parametrize("final_to", [None, "2026-06-11 12:00", "2026-06-05 00:00"])
def test_the_trailing_week_is_the_last_168_hours_exactly(final_to: str | None) -> None:
    rows = [full("u1", "2026-06-01 00:00", "2026-06-03 00:00"),
            iv("u1", "2026-06-03 00:00", "2026-06-03 12:00", "unavailable"),  # 8 days ago
            full("u1", "2026-06-03 12:00", "2026-06-04 09:00"),
            iv("u1", "2026-06-04 09:00", "2026-06-04 15:00", "unavailable"),  # half in it
            full("u1", "2026-06-04 15:00", "2026-06-11 12:00"),
            full("u2", "2026-06-01 00:00", "2026-06-11 12:00")]
    p = accumulator(rows, final_to=final_to).project(JUNE_2026, at("2026-06-11 12:00"))
    # [4 June 12:00, 11 June 12:00): 12:00-15:00 of 4 June lost, of 2 · 168 h counted.
    # (Whole local days from 4 June 00:00 would have counted 6 h lost of 2 · 180 h.)
    assert p.trailing_loss_rate == pytest.approx(3 / 336, rel=1e-12)
    assert p.availability_so_far == pytest.approx(1 - 18 / 504, rel=1e-12)
    # The rest of June (2 · 468 h) at 3/336: 1 − (18 + 936 · 3/336) / (504 + 936)
    assert p.projected_availability == pytest.approx(1 - (18 + 936 * 3 / 336) / 1440,
                                                     rel=1e-12)


@pytest.mark.parametrize("final_to", [None, "2026-10-28 12:00"])
def test_a_trailing_week_over_the_end_of_summer_time_is_168_hours(final_to: str | None
                                                                   ) -> None:
    """Summer time ends on 25 October 2026: now, 28 October 12:00 (+01:00), less 168 hours is
    21 October 13:00 (+02:00) — not 12:00, as seven days on the wall clock would be."""
    rows = [full("u1", "2026-10-01 00:00", "2026-10-21 10:00"),
            iv("u1", "2026-10-21 10:00", "2026-10-21 14:00", "unavailable"),
            full("u1", "2026-10-21 14:00", "2026-10-28 12:00"),
            full("u2", "2026-10-01 00:00", "2026-10-28 12:00")]
    acc = accumulator(rows, start="2026-10-01 00:00", final_to=final_to)
    october = acc.ctx.calendar.parse("2026-10", "month")
    p = acc.project(october, at("2026-10-28 12:00"))
    assert at("2026-10-28 12:00") - at("2026-10-21 13:00") == 168 * HOUR
    # 13:00-14:00 of 21 October lost, of 2 · 168 h.
    assert p.trailing_loss_rate == pytest.approx(1 / 336, rel=1e-12)


def test_the_partial_day_uses_the_allowance_left_at_its_start() -> None:
    """46 of the 48 h allowance are used on 1-2 June; maintenance on 4 June 10:00-16:00 is
    excluded until 12:00 and lost from then. The week from 4 June 13:00 holds 3 lost hours —
    booking that day again from an untouched allowance would find none."""
    rows = [iv("u1", "2026-06-01 00:00", "2026-06-02 22:00", "unavailable", None,
               "scheduled_maintenance"),
            full("u1", "2026-06-02 22:00", "2026-06-04 10:00"),
            iv("u1", "2026-06-04 10:00", "2026-06-04 16:00", "unavailable", None,
               "scheduled_maintenance"),
            full("u1", "2026-06-04 16:00", "2026-06-11 13:00"),
            full("u2", "2026-06-01 00:00", "2026-06-11 13:00")]
    for final_to in (None, "2026-06-11 13:00", "2026-06-04 11:00"):
        p = accumulator(rows, final_to=final_to).project(JUNE_2026, at("2026-06-11 13:00"))
        assert p.trailing_loss_rate == pytest.approx(3 / 336, rel=1e-12), final_to


def test_a_trailing_week_is_clipped_to_the_start_of_the_period() -> None:
    rows = [full("u1", "2026-05-20 00:00", "2026-05-28 00:00"),
            iv("u1", "2026-05-28 00:00", "2026-05-29 00:00", "unavailable"),  # May: not used
            full("u1", "2026-05-29 00:00", "2026-06-02 00:00"),
            iv("u1", "2026-06-02 00:00", "2026-06-02 06:00", "unavailable"),
            full("u1", "2026-06-02 06:00", "2026-06-03 12:00"),
            full("u2", "2026-05-20 00:00", "2026-06-03 12:00")]
    p = accumulator(rows, start="2026-05-20 00:00").project(JUNE_2026, at("2026-06-03 12:00"))
    # The period so far, 60 h of each unit: 6 h lost of 120.
    assert p.trailing_loss_rate == pytest.approx(6 / 120, rel=1e-12)


def test_a_trailing_week_without_counted_time_takes_the_rate_of_the_period_so_far() -> None:
    rows = [iv("u1", "2026-06-01 00:00", "2026-06-01 12:00", "unavailable"),
            full("u1", "2026-06-01 12:00", "2026-06-11 12:00"),
            full("u2", "2026-06-01 00:00", "2026-06-11 12:00")]
    grid = ex("alpha", "2026-06-04 00:00", "2026-06-11 12:00", "grid_outage")
    p = accumulator(rows, [grid]).project(JUNE_2026, at("2026-06-11 12:00"))
    # So far: 72 h of each unit counted (1-3 June), 12 h lost: rate 12/144. The rest of
    # June, 2 · 468 h, at that rate: 1 − (12 + 78) / (144 + 936) = 91.667 %.
    assert p.trailing_loss_rate == pytest.approx(12 / 144, rel=1e-12)
    assert p.projected_availability == pytest.approx(1 - 90 / 1080, rel=1e-12)
    assert p.level == "ld_risk"
    assert p.projected_ld == Decimal("106600.00")  # 97 − 91.667 = 5.333 → 5.33 · 20 000


@pytest.mark.parametrize(("now", "policy"), [
    ("2026-06-01 00:00", "unavailable"),  # the period's first instant: nothing yet
    ("2026-06-11 12:00", "excluded"),  # no data, and gaps are excluded: nothing counted
])
def test_with_no_counted_time_there_is_no_projection_and_no_warning(now: str,
                                                                    policy: str) -> None:
    acc = accumulator([], c=contract(availability__data_gap_policy=policy))
    p = acc.project(JUNE_2026, at(now))
    assert (p.availability_so_far, p.trailing_loss_rate, p.projected_availability) == (
        None, None, None)
    assert (p.level, p.projected_ld) == ("ok", 0)


def test_a_view_of_another_moment_is_refused() -> None:
    acc = accumulator([full("u1", "2026-06-01 00:00", "2026-06-05 00:00")])
    with pytest.raises(ValueError, match="not now"):
        acc.project(JUNE_2026, at("2026-06-04 00:00"), acc.view(at("2026-06-03 00:00")))


# -- evaluate(): any labels; forget_before ---------------------------------------------------

def capped_summer() -> tuple[list[StatusInterval], Evaluation]:
    """June-September: ~10 % of the time lost each month, 140 000 EUR of LD each uncapped;
    the 400 000 cap leaves August 120 000 and September nothing (test_periods_and_ld)."""
    rows = [*month_with_loss(144, "2026-06"), *month_with_loss(148.8, "2026-07"),
            *month_with_loss(148.8, "2026-08"), *month_with_loss(144, "2026-09")]
    return rows, evaluate(FLEET, contract(), rows, [], "2026-06..2026-09")


@pytest.mark.parametrize("labels", [["2026-06", "2026-08"], ["2026-08", "2026-06"],
                                    ["2026-09"], ["2026-07", "2026-09", "2026-07"]])
def test_evaluate_settles_caps_over_every_earlier_period_of_the_year(labels: list[str]
                                                                     ) -> None:
    rows, batch = capped_summer()
    by_label = {p.period.label: p for p in batch.periods}
    assert [by_label[m].ld.amount for m in ("2026-06", "2026-07", "2026-08", "2026-09")] == [
        Decimal("140000.00"), Decimal("140000.00"), Decimal("120000.00"), Decimal("0")]
    acc = accumulator(rows, final_to="2026-10-01 00:00")
    results = acc.evaluate(labels)
    assert [r.period.label for r in results] == labels
    for r in results:
        b = by_label[r.period.label]
        assert (r.availability, r.ld, r.bonus) == (b.availability, b.ld, b.bonus)


def test_forgotten_days_keep_their_periods_exact_but_cannot_be_read_as_days() -> None:
    rows, batch = capped_summer()
    acc = accumulator(rows, final_to="2026-10-01 00:00")
    acc.forget_before(at("2026-08-15 00:00"))
    # June, July and half of August summed per period: caps and August are still exact.
    august, september = acc.evaluate(["2026-08", "2026-09"])
    assert (august.availability, august.ld.amount) == (batch.periods[2].availability,
                                                       Decimal("120000.00"))
    assert september.ld.amount == 0
    assert [u.totals for u in august.units] == [u.totals for u in batch.periods[2].units]
    with pytest.raises(ValueError, match="forgotten"):
        acc.totals(None, since_us=at("2026-08-10 00:00"))
    with pytest.raises(ValueError, match="forgotten"):
        acc.view().day(at("2026-08-14 00:00"))
    assert acc.view().day(at("2026-08-15 00:00"))["u1"].window_us == 24 * HOUR
    with pytest.raises(ValueError, match="final only up to"):
        acc.forget_before(at("2026-10-02 00:00"))


def test_a_projection_needing_forgotten_days_is_refused() -> None:
    rows = [full("u1", "2026-06-01 00:00", "2026-06-20 00:00"),
            iv("u2", "2026-06-01 00:00", "2026-06-13 12:00", "unavailable"),
            full("u2", "2026-06-13 12:00", "2026-06-20 00:00")]
    acc = accumulator(rows, final_to="2026-06-20 00:00")
    acc.forget_before(at("2026-06-13 00:00"))  # the week from 13 June 00:00 is all there
    p = acc.project(JUNE_2026, at("2026-06-20 00:00"))
    assert p.trailing_loss_rate == pytest.approx(12 / 336, rel=1e-12)
    acc.forget_before(at("2026-06-10 00:00"))  # forgetting never un-forgets
    assert acc.forgotten_before_us == at("2026-06-13 00:00")
    acc.forget_before(at("2026-06-15 00:00"))
    with pytest.raises(ValueError, match="forgotten"):
        acc.project(JUNE_2026, at("2026-06-20 00:00"))
