"""Periods in site-local time (§2) and liquidated damages and bonus (§5), hand-computed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from contracts.errors import InvalidInput
from contracts.intervals import StatusInterval
from contracts.money import billable_pct, round_half_up
from contracts.periods import ContractCalendar, PeriodError, from_us
from tests.contracts.builders import contract, ex, full, iv, run, unit

STOCKHOLM = ZoneInfo("Europe/Stockholm")


# -- §2 periods ---------------------------------------------------------------------------

@pytest.mark.parametrize(("label", "hours", "start", "end"), [
    ("2026-03", 743.0, "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"),
    ("2026-10", 745.0, "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00"),
    ("2026-06", 720.0, "2026-06-01T00:00:00+02:00", "2026-07-01T00:00:00+02:00"),
])
def test_dst_months_have_their_real_length(label: str, hours: float, start: str,
                                            end: str) -> None:
    rows = [full("u1", "2026-01-01 00:00", "2027-01-01 00:00"),
            full("u2", "2026-01-01 00:00", "2027-01-01 00:00")]
    ev = run(rows, period=label, c=contract(start="2024-01-01"))
    p = ev.periods[0]
    assert unit(ev, "u1")[0] == hours
    assert from_us(p.period.start_us, STOCKHOLM).isoformat() == start
    assert from_us(p.period.end_us, STOCKHOLM).isoformat() == end


def test_quarter_and_contract_year_periods() -> None:
    cal = ContractCalendar(dt.date(2024, 3, 15), 20, STOCKHOLM)
    q2 = cal.parse("2026-Q2", "quarter")
    assert (from_us(q2.start_us, STOCKHOLM).date(), from_us(q2.end_us, STOCKHOLM).date()) == (
        dt.date(2026, 4, 1), dt.date(2026, 7, 1))
    cy3 = cal.parse("CY3", "contract_year")
    assert (from_us(cy3.start_us, STOCKHOLM).date(), from_us(cy3.end_us, STOCKHOLM).date()) == (
        dt.date(2026, 3, 15), dt.date(2027, 3, 15))
    assert [p.label for p in cal.parse_range("2026-Q4..2027-Q2", "quarter")] == [
        "2026-Q4", "2027-Q1", "2027-Q2"]


def test_a_29_february_start_has_its_anniversaries_on_28_february() -> None:
    cal = ContractCalendar(dt.date(2024, 2, 29), 5, STOCKHOLM)
    starts = [from_us(cal.parse(f"CY{n}", "contract_year").start_us, STOCKHOLM).date()
              for n in range(1, 6)]
    assert starts == [dt.date(2024, 2, 29), dt.date(2025, 2, 28), dt.date(2026, 2, 28),
                      dt.date(2027, 2, 28), dt.date(2028, 2, 28)]


def test_a_period_belongs_to_the_contract_year_of_its_start() -> None:
    c = contract(start="2024-06-15", guarantee__by_contract_year={2: 99.0, 3: 95.0})
    rows = [full("u1", "2025-06-15 00:00", "2026-08-01 00:00"),
            full("u2", "2025-06-15 00:00", "2026-08-01 00:00")]
    ev = run(rows, period="2026-06..2026-07", c=c)
    assert [(p.period.label, p.contract_year, p.guaranteed_pct) for p in ev.periods] == [
        ("2026-06", 2, 99.0), ("2026-07", 3, 95.0)]


@pytest.mark.parametrize(("period", "message"), [
    ("2026-Q2", "--period: period '2026-Q2' is a quarter, but the contract measures by month"),
    ("CY2", "--period: period 'CY2' is a contract year, but the contract measures by month"),
    ("2026-13", "--period: period '2026-13': month must be 01..12"),
    ("June", "--period: period 'June' is not a month (2026-10), a quarter (2026-Q2) or a "
             "contract year (CY3)"),
    ("2024-05", "--period: period 2024-05 lies outside the contract term (2024-06-01 to "
                "2044-06-01)"),
    ("2026-08..2026-06", "--period: range '2026-08..2026-06' ends before it starts"),
    # Years no date can hold (9999-12 ends in year 10000; there is no year 0).
    ("9999-12", "--period: period 9999-12 lies outside the contract term (2024-06-01 to "
                "2044-06-01)"),
    ("0000-01", "--period: period 0000-01 lies outside the contract term (2024-06-01 to "
                "2044-06-01)"),
    ("9999-Q4", "--period: period 9999-Q4 lies outside the contract term (2024-06-01 to "
                "2044-06-01)"),
    ("2026-01..9999-12", "--period: period 9999-12 lies outside the contract term "
                         "(2024-06-01 to 2044-06-01)"),
])
def test_invalid_periods_are_refused(period: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        run([], period=period)
    assert str(caught.value) == message


def test_contract_year_labels_outside_the_term() -> None:
    with pytest.raises(PeriodError, match=r"the contract has years CY1\.\.CY20"):
        ContractCalendar(dt.date(2024, 1, 1), 20, STOCKHOLM).parse("CY21", "contract_year")


# -- §5 LD and bonus ----------------------------------------------------------------------

def month_with_loss(lost_hours_u1: float, month: str = "2026-06") -> list[StatusInterval]:
    """u1 unavailable for `lost_hours_u1` from the first of the month; u2 available."""
    y, m = map(int, month.split("-"))
    start = dt.datetime(y, m, 1)
    end = dt.datetime(y + m // 12, m % 12 + 1, 1)
    cut = start + dt.timedelta(hours=lost_hours_u1)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    rows = [full("u2", start.strftime(fmt), end.strftime(fmt))]
    if lost_hours_u1:
        rows.append(iv("u1", start.strftime(fmt), cut.strftime(fmt), "unavailable"))
    if cut < end:
        rows.append(full("u1", cut.strftime(fmt), end.strftime(fmt)))
    return rows


def test_ld_is_the_floored_shortfall_times_the_rate() -> None:
    # 72 h lost of 1440 counted: A = 95 %, G = 97 % → shortfall 2.00 → 2 · 20 000 = 40 000
    ev = run(month_with_loss(72))
    p = ev.periods[0]
    assert 100 * (p.availability or 0) == pytest.approx(95.0)
    assert p.shortfall_pct == pytest.approx(2.0)
    assert p.ld.billable_pct == Decimal("2.00")
    assert p.ld.amount == Decimal("40000.00")
    assert p.bonus.amount == 0


def test_floor_keeps_0_03_at_0_03() -> None:
    assert billable_pct(97.0 - 96.97, 0.01) == Decimal("0.03")
    assert 0.29 / 0.01 < 29 and billable_pct(0.29, 0.01) == Decimal("0.29")  # the tolerance
    assert 0.57 / 0.01 < 57 and billable_pct(0.57, 0.01) == Decimal("0.57")
    assert billable_pct(0.0299999, 0.01) == Decimal("0.02")
    assert billable_pct(0.5, 0.25) == Decimal("0.50")
    # A = 1 - 0.432 h / 1440 h = 99.97 % under a 100 % guarantee: shortfall 0.03 → 600
    ev = run(month_with_loss(0.432), c=contract(guarantee__default_pct=100.0))
    assert ev.periods[0].ld.billable_pct == Decimal("0.03")
    assert ev.periods[0].ld.amount == Decimal("600.00")


def test_the_cap_carries_across_the_periods_of_a_contract_year() -> None:
    # Each month: 144 h lost of ~1440 → A ≈ 90 %, shortfall ≈ 7 → ≈ 140 000 per month;
    # cap 400 000: June 140k, July ~?, August the rest, September nothing.
    rows = [*month_with_loss(144, "2026-06"), *month_with_loss(148.8, "2026-07"),
            *month_with_loss(148.8, "2026-08"), *month_with_loss(144, "2026-09")]
    ev = run(rows, period="2026-06..2026-09")
    lds = [p.ld.amount for p in ev.periods]
    assert lds[0] == Decimal("140000.00")  # A = 1 - 144/1440 = 90 % → 7.00 · 20 000
    assert lds[1] == Decimal("140000.00")  # 148.8 / 1488 = 10 % too (31 days)
    assert lds[2] == Decimal("120000.00")  # capped: 400 000 - 280 000
    assert lds[3] == Decimal("0")
    assert ev.periods[2].ld.uncapped == Decimal("140000.00")
    assert ev.periods[2].ld.cap_left_before == Decimal("120000")
    # Asking September alone evaluates June-August itself to know the cap is used.
    alone = run(rows, period="2026-09")
    assert alone.periods[0].ld.amount == 0
    assert [p.period.label for p in alone.periods] == ["2026-09"]


def test_caps_restart_with_each_contract_year() -> None:
    rows = [*month_with_loss(144, "2027-05"), *month_with_loss(144, "2027-06")]
    c = contract(ld__cap_per_contract_year=100000,
                 availability__data_gap_policy="excluded")
    ev = run(rows, period="2027-05..2027-06", c=c)
    assert [(p.contract_year, p.ld.amount) for p in ev.periods] == [
        (3, Decimal("100000")), (4, Decimal("100000"))]


def test_guarantee_by_contract_year_overrides_the_default() -> None:
    ev = run(month_with_loss(72), c=contract(guarantee__by_contract_year={3: 95.5}))
    assert ev.periods[0].guaranteed_pct == 95.5
    assert ev.periods[0].ld.amount == Decimal("10000.00")  # 0.50 · 20 000


def test_bonus_above_threshold_within_its_cap() -> None:
    c = contract(bonus={"threshold_pct": 99.0, "rate_per_pct": 5000,
                        "cap_per_contract_year": 6000})
    # 7.2 h lost of 1440: A = 99.5 % → excess 0.50 → 2 500; then a perfect month: 1.00 → 5 000,
    # capped to what is left of 6 000.
    rows = [*month_with_loss(7.2, "2026-06"), *month_with_loss(0, "2026-07")]
    ev = run(rows, period="2026-06..2026-07", c=c)
    assert [p.bonus.amount for p in ev.periods] == [Decimal("2500.00"), Decimal("3500")]
    assert [p.ld.amount for p in ev.periods] == [0, 0]


def test_money_and_percentages_round_half_up_when_printed() -> None:
    assert round_half_up(2.0005, 3) == 2.001
    assert round_half_up(Decimal("1234.565"), 2) == 1234.57
    assert round_half_up(97.51249, 3) == 97.512


# -- quarters, contract years and a 29 February start, with data ----------------------------

def test_quarters_with_losses_ld_and_the_cap_carried_to_the_next_quarter() -> None:
    """Contract from 2024-01-01 measured by quarter; contract year 3 guarantees 98 % and caps
    LD at 20 000 EUR. Q1 2026 has 744 + 672 + 743 = 2159 h (summer time from 29 March).
    Q1: u1 down 96 h; u2 derated to 0.5 from 28 March 12:00 to 30 March 12:00, 47 h over the
    change of clocks: 23.5 h lost. A = 1 − 119.5 / 4318 = 97.232515 %: shortfall 0.767485
    → 0.76 · 20 000 = 15 200. Q2 (2184 h): u1 down 192 h, A = 1 − 192 / 4368 = 95.604396 %:
    shortfall 2.395604 → 2.39 · 20 000 = 47 800, capped at 20 000 − 15 200 = 4 800."""
    c = contract(start="2024-01-01", measurement_period="quarter",
                 guarantee__by_contract_year={3: 98.0}, ld__cap_per_contract_year=20000)
    rows = [full("u1", "2026-01-01 00:00", "2026-02-10 00:00"),
            iv("u1", "2026-02-10 00:00", "2026-02-14 00:00", "unavailable", None, "fault"),
            full("u1", "2026-02-14 00:00", "2026-04-01 00:00"),
            iv("u1", "2026-04-01 00:00", "2026-04-09 00:00", "unavailable", None, "fault"),
            full("u1", "2026-04-09 00:00", "2026-07-01 00:00"),
            full("u2", "2026-01-01 00:00", "2026-03-28 12:00"),
            iv("u2", "2026-03-28 12:00", "2026-03-30 12:00", "derated", 0.5),
            full("u2", "2026-03-30 12:00", "2026-07-01 00:00")]
    ev = run(rows, period="2026-Q1..2026-Q2", c=c)
    q1, q2 = ev.periods
    assert (q1.period.label, q1.contract_year, q2.period.label) == ("2026-Q1", 3, "2026-Q2")
    assert unit(ev, "u1", 0)[:3] == (2159.0, 0.0, 96.0)
    assert unit(ev, "u2", 0)[:3] == (2159.0, 0.0, pytest.approx(23.5))
    assert 100 * (q1.availability or 0) == pytest.approx(100 * (1 - 119.5 / 4318), abs=1e-9)
    assert (q1.ld.billable_pct, q1.ld.amount) == (Decimal("0.76"), Decimal("15200.00"))
    assert unit(ev, "u1", 1)[:3] == (2184.0, 0.0, 192.0)
    assert q2.ld.uncapped == Decimal("47800.00")
    assert (q2.ld.cap_left_before, q2.ld.amount) == (Decimal("4800.00"), Decimal("4800.00"))


def test_a_contract_year_period_with_exclusions_maintenance_and_ld() -> None:
    """Contract from 2024-07-01 measured by contract year; CY2 (2025-07-01 to 2026-07-01,
    8760 h: the two changes of clocks cancel) guarantees 99.9 %. u1 down 72 h; a site grid
    outage of 24 h excluded for both; u2 in maintenance 60 h, 48 h of it within the
    allowance. E = 24 and 72, L = 72 and 12: A = 1 − 84 / 17 424 = 99.517906 %, shortfall
    0.382094 → 0.38 · 20 000 = 7 600."""
    c = contract(start="2024-07-01", measurement_period="contract_year",
                 guarantee__by_contract_year={2: 99.9})
    rows = [full("u1", "2025-07-01 00:00", "2025-11-03 00:00"),
            iv("u1", "2025-11-03 00:00", "2025-11-06 00:00", "unavailable", None, "fault"),
            full("u1", "2025-11-06 00:00", "2026-07-01 00:00"),
            full("u2", "2025-07-01 00:00", "2026-05-04 00:00"),
            iv("u2", "2026-05-04 00:00", "2026-05-06 12:00", "unavailable", None,
               "scheduled_maintenance"),
            full("u2", "2026-05-06 12:00", "2026-07-01 00:00")]
    ev = run(rows, period="CY2", c=c,
             exclusions=[ex("alpha", "2026-01-10 00:00", "2026-01-11 00:00", "grid_outage")])
    [cy2] = ev.periods
    assert (cy2.period.label, cy2.contract_year, cy2.guaranteed_pct) == ("CY2", 2, 99.9)
    assert unit(ev, "u1")[:3] == (8760.0, 24.0, 72.0)
    assert unit(ev, "u2")[:3] == (8760.0, 72.0, 12.0)
    assert 100 * (cy2.availability or 0) == pytest.approx(100 * (1 - 84 / 17424), abs=1e-9)
    assert (cy2.ld.billable_pct, cy2.ld.amount) == (Decimal("0.38"), Decimal("7600.00"))


def test_a_29_february_start_evaluated_with_data() -> None:
    """Contract from 2024-02-29: contract year 2 starts on 28 February 2025, inside the month
    of February (which belongs to year 1, its start). Allowance 10 h a year; u1 in
    maintenance 27-28 February 2025 (48 h): on the 27th 10 h within year 1's allowance and
    14 h lost, on the 28th 10 h within year 2's and 14 h lost. February 2025 (672 h):
    E = 20, L = 28; A = 1 − 28 / (652 + 672) = 97.885196 %; year 1 guarantees 98 %:
    shortfall 0.114804 → 0.11 · 20 000 = 2 200. March belongs to year 2: a cap of its own."""
    c = contract(start="2024-02-29", guarantee__by_contract_year={1: 98.0, 2: 98.0},
                 availability__maintenance_allowance_hours=10)
    rows = [full("u1", "2024-02-29 00:00", "2025-02-27 00:00"),
            iv("u1", "2025-02-27 00:00", "2025-03-01 00:00", "unavailable", None,
               "scheduled_maintenance"),
            full("u1", "2025-03-01 00:00", "2025-04-01 00:00"),
            full("u2", "2024-02-29 00:00", "2025-04-01 00:00")]
    ev = run(rows, period="2025-02..2025-03", c=c)
    february, march = ev.periods
    assert (february.contract_year, march.contract_year) == (1, 2)
    assert unit(ev, "u1", 0)[:3] == (672.0, 20.0, 28.0)
    assert 100 * (february.availability or 0) == pytest.approx(100 * (1 - 28 / 1324), abs=1e-9)
    assert february.ld.amount == Decimal("2200.00")
    assert [(u.contract_year, u.before_us, u.in_period_us, u.remaining_us)
            for u in ev.allowance[("2025-02", "u1")]] == [
        (1, 0, 10 * 3_600_000_000, 0), (2, 0, 10 * 3_600_000_000, 0)]
    assert (march.ld.cap_left_before, march.ld.amount) == (Decimal("400000"), 0)
