"""Hand-computed cases for every numbered rule of availability rules §3-4 and every option value.

June 2026 (720 h in Europe/Stockholm) is the first month of contract year 3 of the base
contract (start 2024-06-01), so no earlier month of the year is involved unless a test says
so. Unless stated, u2 is available all month and rules are checked on u1."""

from __future__ import annotations

import pytest
import yaml

from contracts.intervals import StatusInterval
from tests.contracts.builders import contract, ex, full, iv, run, unit

JUNE = ("2026-06-01 00:00", "2026-07-01 00:00")


def with_u2(*u1: StatusInterval) -> list[StatusInterval]:
    return [*u1, full("u2", *JUNE)]


# -- rule 6 / 4 / 5: available, unavailable, derated ----------------------------------------

def test_rule6_available_all_month() -> None:
    ev = run(with_u2(full("u1", *JUNE)))
    assert unit(ev, "u1") == (720.0, 0.0, 0.0, 100.0)
    assert ev.periods[0].availability == 1.0


def test_rule4_unavailable_costs_every_hour() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-04 00:00", "unavailable", None, "fault"),
                     iv("u1", "2026-06-04 00:00", "2026-07-01 00:00")))
    assert unit(ev, "u1") == (720.0, 0.0, 72.0, pytest.approx(90.0))
    # Equal weights: 1 - 72 / (720 + 720)
    assert 100 * (ev.periods[0].availability or 0) == pytest.approx(95.0)


@pytest.mark.parametrize(("derate", "lost", "pct"), [
    ("pro_rata", 40.0, 100 * (1 - 40 / 720)),  # 100 h at 0.6 of capacity: 100 · 0.4 lost
    ("available", 0.0, 100.0),
])
def test_rule5_derated_by_option(derate: str, lost: float, pct: float) -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-05 04:00", "derated", 0.6),
                     iv("u1", "2026-06-05 04:00", "2026-07-01 00:00")),
             c=contract(availability__derate=derate))
    assert unit(ev, "u1") == (720.0, 0.0, pytest.approx(lost), pytest.approx(pct))


# -- rule 3: unknown and gaps, by data_gap_policy -------------------------------------------

@pytest.mark.parametrize(("policy", "expected"), [
    ("available", (720.0, 0.0, 0.0, 100.0)),
    ("unavailable", (720.0, 0.0, 36.0, 95.0)),  # 12 h unknown + 24 h gap lost
    ("excluded", (720.0, 36.0, 0.0, 100.0)),  # both excluded: counted 684 h
])
def test_rule3_unknown_and_gaps_follow_the_policy(policy: str, expected: tuple[float, ...]) -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-10 00:00"),
                     iv("u1", "2026-06-10 00:00", "2026-06-10 12:00", "unknown", None,
                        "comms_loss"),
                     iv("u1", "2026-06-10 12:00", "2026-06-20 00:00"),
                     # gap 2026-06-20 00:00 .. 06-21 00:00
                     iv("u1", "2026-06-21 00:00", "2026-07-01 00:00")),
             c=contract(availability__data_gap_policy=policy))
    assert unit(ev, "u1") == pytest.approx(expected)


def test_a_unit_without_any_row_is_all_gap() -> None:
    ev = run([full("u2", *JUNE)])
    assert unit(ev, "u1") == (720.0, 0.0, 720.0, 0.0)


# -- rule 1: excluded causes and exclusion windows ------------------------------------------

def test_rule1_status_cause_in_excluded_causes() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-02 00:00", "unavailable", None,
                        "grid_outage"),
                     iv("u1", "2026-06-02 00:00", "2026-07-01 00:00")))
    assert unit(ev, "u1") == (720.0, 24.0, 0.0, 100.0)


@pytest.mark.parametrize("scope", ["alpha", "u1"])
def test_rule1_exclusion_window_by_site_or_unit(scope: str) -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-02 00:00", "unavailable", None,
                        "fault"),
                     iv("u1", "2026-06-02 00:00", "2026-07-01 00:00")),
             exclusions=[ex(scope, "2026-06-01 06:00", "2026-06-01 18:00", "force_majeure")])
    # 12 of the 24 fault hours excluded; the other 12 lost.
    assert unit(ev, "u1") == (720.0, 12.0, 12.0, pytest.approx(100 * (1 - 12 / 708)))
    u2 = unit(ev, "u2")
    assert u2[1] == (12.0 if scope == "alpha" else 0.0)


def test_overlapping_windows_exclude_their_union_once() -> None:
    ev = run(with_u2(full("u1", *JUNE)),
             exclusions=[ex("u1", "2026-06-01 00:00", "2026-06-02 00:00", "grid_outage"),
                         ex("alpha", "2026-06-01 12:00", "2026-06-03 00:00", "customer_request")])
    assert unit(ev, "u1")[1] == 48.0


def test_a_window_for_a_cause_not_excluded_has_no_effect() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-02 00:00", "unavailable", None,
                        "fault"),
                     iv("u1", "2026-06-02 00:00", "2026-07-01 00:00")),
             exclusions=[ex("u1", "2026-06-01 00:00", "2026-06-02 00:00", "fault")])
    assert unit(ev, "u1") == (720.0, 0.0, 24.0, pytest.approx(100 * (1 - 24 / 720)))


# -- rule 2: scheduled maintenance and its allowance ----------------------------------------

def test_rule2_maintenance_within_allowance_is_excluded_the_rest_lost() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-03 12:00", "unavailable", None,
                        "scheduled_maintenance"),  # 60 h: 48 excluded, 12 lost
                     iv("u1", "2026-06-03 12:00", "2026-07-01 00:00")))
    assert unit(ev, "u1") == (720.0, 48.0, 12.0, pytest.approx(100 * (1 - 12 / 672)))
    classes = ev.periods[0].units[0].totals.class_us
    assert classes["maintenance"] == 48 * 3_600_000_000
    assert classes["maintenance_over_allowance"] == 12 * 3_600_000_000


@pytest.mark.parametrize("state", ["unknown", "available", "derated"])
def test_rule2_maintenance_cause_whatever_the_state(state: str) -> None:
    fraction = 0.5 if state == "derated" else None
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-02 00:00", state, fraction,
                        "scheduled_maintenance"),
                     iv("u1", "2026-06-02 00:00", "2026-07-01 00:00")))
    assert unit(ev, "u1")[:3] == (720.0, 24.0, 0.0)


def test_rule2_a_maintenance_window_consumes_the_allowance_too() -> None:
    ev = run(with_u2(full("u1", *JUNE)),
             exclusions=[ex("alpha", "2026-06-10 00:00", "2026-06-13 00:00",
                            "scheduled_maintenance")])  # 72 h: 48 excluded, 24 lost
    assert unit(ev, "u1")[:3] == (720.0, 48.0, 24.0)
    assert unit(ev, "u2")[:3] == (720.0, 48.0, 24.0)  # each unit has its own allowance


def test_rule1_before_rule2_excluded_time_uses_no_allowance() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-03 00:00", "unavailable", None,
                        "scheduled_maintenance"),  # 48 h, of which 24 h under a grid outage
                     iv("u1", "2026-06-03 00:00", "2026-06-05 00:00", "unavailable", None,
                        "scheduled_maintenance"),  # 48 h more
                     iv("u1", "2026-06-05 00:00", "2026-07-01 00:00")),
             exclusions=[ex("alpha", "2026-06-01 00:00", "2026-06-02 00:00", "grid_outage")])
    # 24 h excluded by rule 1; 72 h maintenance: 48 within the allowance, 24 lost.
    assert unit(ev, "u1")[:3] == (720.0, 72.0, 24.0)
    classes = ev.periods[0].units[0].totals.class_us
    assert classes["excluded"] == 24 * 3_600_000_000


def test_rule1_scheduled_maintenance_listed_as_excluded_needs_no_allowance() -> None:
    c = contract(availability__excluded_causes=["scheduled_maintenance"])
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-05 00:00", "unavailable", None,
                        "scheduled_maintenance"),
                     iv("u1", "2026-06-05 00:00", "2026-07-01 00:00")), c=c)
    assert unit(ev, "u1")[:3] == (720.0, 96.0, 0.0)


def test_zero_allowance_means_maintenance_is_never_excluded() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-02 00:00", "unavailable", None,
                        "scheduled_maintenance"),
                     iv("u1", "2026-06-02 00:00", "2026-07-01 00:00")),
             c=contract(availability__maintenance_allowance_hours=0))
    assert unit(ev, "u1")[:3] == (720.0, 0.0, 24.0)


def test_allowance_is_consumed_in_time_order_across_months_of_the_year() -> None:
    rows = [iv("u1", "2026-06-01 00:00", "2026-06-02 16:00", "unavailable", None,
               "scheduled_maintenance"),  # 40 h in June
            iv("u1", "2026-06-02 16:00", "2026-07-01 00:00"),
            iv("u1", "2026-07-01 00:00", "2026-07-01 20:00", "unavailable", None,
               "scheduled_maintenance"),  # 20 h in July: 8 left of the allowance
            iv("u1", "2026-07-01 20:00", "2026-08-01 00:00"),
            full("u2", "2026-06-01 00:00", "2026-08-01 00:00")]
    # Asking July alone still counts June's maintenance (availability rules §3 rule 2).
    ev = run(rows, period="2026-07")
    assert unit(ev, "u1")[:3] == (744.0, 8.0, 12.0)
    both = run(rows, period="2026-06..2026-07")
    assert [p.period.label for p in both.periods] == ["2026-06", "2026-07"]
    assert unit(both, "u1", 0)[:3] == (720.0, 40.0, 0.0)
    assert unit(both, "u1", 1)[:3] == (744.0, 8.0, 12.0)


def test_allowance_belongs_to_each_instants_contract_year() -> None:
    # Contract start 2024-06-15: June 2026 holds the end of CY2 and the start of CY3.
    c = contract(start="2024-06-15")
    rows = [iv("u1", "2026-06-01 00:00", "2026-06-14 00:00"),
            iv("u1", "2026-06-14 00:00", "2026-06-17 00:00", "unavailable", None,
               "scheduled_maintenance"),  # 24 h in CY2, 48 h in CY3
            iv("u1", "2026-06-17 00:00", "2026-07-01 00:00"),
            # CY2 had already used 40 h of its allowance in May (a month of CY2).
            iv("u1", "2026-05-01 00:00", "2026-05-02 16:00", "unavailable", None,
               "scheduled_maintenance"),
            iv("u1", "2026-05-02 16:00", "2026-06-01 00:00"),
            full("u2", "2025-06-15 00:00", "2026-07-01 00:00"),
            full("u1", "2025-06-15 00:00", "2026-05-01 00:00")]
    ev = run(rows, period="2026-06", c=c)
    # CY2: 8 h left → 8 excluded, 16 lost; CY3: 48 h fresh → all 48 excluded.
    assert unit(ev, "u1")[:3] == (720.0, 56.0, 16.0)
    assert ev.periods[0].contract_year == 2  # June starts in CY2


# -- roll-up of children (§3, last paragraph) ----------------------------------------------

def test_block_loss_reaches_the_unit_through_an_inverter_without_rows() -> None:
    ev = run(with_u2(full("u1", *JUNE),
                     iv("u1-i1-b2", "2026-06-01 00:00", "2026-06-01 10:00", "unavailable")))
    # b2 is 3/4 of i1's energy; i1 is 1500 of 2500 kW: loss 0.75 · 0.6 = 0.45 for 10 h.
    assert unit(ev, "u1")[2] == pytest.approx(4.5)


def test_the_larger_of_own_and_children_loss_counts() -> None:
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-01 10:00", "derated", 0.5),
                     iv("u1", "2026-06-01 10:00", "2026-07-01 00:00"),
                     iv("u1-i1-b2", "2026-06-01 00:00", "2026-06-01 20:00", "unavailable"),
                     iv("u1-i2", "2026-06-01 05:00", "2026-06-01 10:00", "unavailable")))
    # 00-05: max(0.5, 0.45) = 0.5; 05-10: max(0.5, 0.45 + 0.4 = 0.85) = 0.85;
    # 10-20: max(0, 0.45) = 0.45.  L = 2.5 + 4.25 + 4.5 = 11.25 h
    assert unit(ev, "u1")[2] == pytest.approx(11.25)


@pytest.mark.parametrize(("child", "lost"), [
    (iv("u1-i2", "2026-06-01 00:00", "2026-06-01 10:00", "unavailable", None, "grid_outage"), 0),
    (iv("u1-i2", "2026-06-01 00:00", "2026-06-01 10:00", "unknown"), 0),
    (iv("u1-i2", "2026-06-01 00:00", "2026-06-01 10:00", "unavailable", None,
        "scheduled_maintenance"), 4.0),  # counts by state: 1000/2500 · 10 h
    (iv("u1-i2", "2026-06-01 00:00", "2026-06-01 10:00", "derated", 0.5), 2.0),
])
def test_children_count_by_state_only(child: StatusInterval, lost: float) -> None:
    ev = run(with_u2(full("u1", *JUNE), child))
    assert unit(ev, "u1")[:3] == (720.0, 0.0, pytest.approx(lost))


def test_exclusion_and_maintenance_are_judged_on_the_unit_only() -> None:
    ev = run(with_u2(full("u1", *JUNE),
                     iv("u1-i2", "2026-06-01 00:00", "2026-06-01 10:00", "unavailable")),
             exclusions=[ex("u1", "2026-06-01 00:00", "2026-06-01 05:00", "grid_outage")])
    # 00-05 excluded (children do not matter); 05-10 child loss 0.4 → 2 h.
    assert unit(ev, "u1")[:3] == (720.0, 5.0, pytest.approx(2.0))


def test_children_derate_follows_the_contract_option() -> None:
    rows = with_u2(full("u1", *JUNE), iv("u1-i2", "2026-06-01 00:00", "2026-06-01 10:00",
                                         "derated", 0.5))
    assert unit(run(rows, c=contract(availability__derate="available")), "u1")[2] == 0.0


# -- §4 weights and windows ---------------------------------------------------------------

@pytest.mark.parametrize(("weight", "w1", "w2"), [
    ("equal", 1, 1), ("power", 2500, 1000), ("energy", 5000, 4000)])
def test_contract_availability_by_weight(weight: str, w1: float, w2: float) -> None:
    ev = run([iv("u1", "2026-06-01 00:00", "2026-06-04 00:00", "unavailable"),
              iv("u1", "2026-06-04 00:00", "2026-07-01 00:00"),
              iv("u2", "2026-06-01 00:00", "2026-06-11 00:00", "derated", 0.25),
              iv("u2", "2026-06-11 00:00", "2026-07-01 00:00")],
             c=contract(availability__weight=weight))
    lost1, lost2 = 72.0, 240 * 0.75
    expected = 1 - (w1 * lost1 + w2 * lost2) / ((w1 + w2) * 720)
    assert ev.periods[0].availability == pytest.approx(expected)


def test_unit_window_starts_at_commissioning_or_contract_start() -> None:
    from contracts.fleet import parse_fleet

    late = parse_fleet(yaml.safe_dump({"sites": [{
        "id": "alpha", "customer": "A", "region": "R", "timezone": "Europe/Stockholm",
        "units": [
            {"id": "u1", "rated_power_kw": 1, "rated_energy_kwh": 1,
             "commissioned": "2026-06-11"},
            {"id": "u2", "rated_power_kw": 1, "rated_energy_kwh": 1,
             "commissioned": "2026-08-01"}]}]}), "late.yaml")
    from contracts.engine import evaluate

    ev = evaluate(late, contract(), [full("u1", *JUNE)], [], "2026-06")
    units = {u.asset_id: u for u in ev.periods[0].units}
    assert units["u1"].totals.hours() == (480.0, 0.0, 0.0)  # from 11 June
    assert units["u2"].totals.hours() == (0.0, 0.0, 0.0)
    assert units["u2"].availability is None
    # A contract that starts mid-month clips its first month too.
    ev = run(with_u2(full("u1", *JUNE)), c=contract(start="2026-06-21"))
    assert unit(ev, "u1")[0] == 240.0


def test_a_period_with_nothing_counted_has_null_availability_and_charges_nothing() -> None:
    ev = run([], c=contract(availability__data_gap_policy="excluded"))
    p = ev.periods[0]
    assert p.availability is None and p.shortfall_pct is None
    assert p.ld.amount == 0 and p.bonus.amount == 0


# -- what reports show: why time is excluded, the allowance per contract year ---------------

HOUR = 3_600_000_000


def test_excluded_time_says_why_window_first_then_status_then_gap() -> None:
    """Rule 1 matches a window before the row's own cause; overlapping windows of several
    excluded reasons count under the first of them in `excluded_causes`."""
    c = contract(availability__data_gap_policy="excluded")
    ev = run(with_u2(iv("u1", "2026-06-01 00:00", "2026-06-01 10:00", "unavailable", None,
                        "force_majeure"),  # 10 h, 4 of them under the grid outage window
                     iv("u1", "2026-06-01 10:00", "2026-06-10 00:00"),
                     iv("u1", "2026-06-10 00:00", "2026-06-10 05:00", "unknown", None,
                        "comms_loss"),  # 5 h unknown
                     iv("u1", "2026-06-10 05:00", "2026-06-30 00:00")),  # 24 h gap at the end
             c=c, exclusions=[ex("u1", "2026-06-01 06:00", "2026-06-01 12:00", "grid_outage"),
                              ex("u1", "2026-06-01 08:00", "2026-06-01 09:00",
                                 "customer_request")])
    assert ev.periods[0].units[0].totals.excluded_by == {
        ("status", "force_majeure"): 6 * HOUR,  # 00:00-06:00
        ("window", "grid_outage"): 6 * HOUR,  # 06:00-12:00, customer_request's hour in it
        ("data_gap", "comms_loss"): 5 * HOUR,
        ("data_gap", ""): 24 * HOUR,
    }
    assert unit(ev, "u1")[1] == 6 + 6 + 5 + 24


def test_the_allowance_of_a_period_spanning_two_contract_years() -> None:
    """Contract from 15 March: March 2026 belongs to contract year 2 (its start) but its
    second half is year 3, with an allowance of its own (availability rules §2)."""
    c = contract(start="2024-03-15")
    rows = [full("u1", "2025-03-15 00:00", "2025-06-10 00:00"),
            iv("u1", "2025-06-10 00:00", "2025-06-11 06:00", "unavailable", None,
               "scheduled_maintenance"),  # 30 h in year 2
            full("u1", "2025-06-11 06:00", "2026-03-10 00:00"),
            iv("u1", "2026-03-10 00:00", "2026-03-12 00:00", "unavailable", None,
               "scheduled_maintenance"),  # 48 h in year 2: 18 left, 30 lost
            full("u1", "2026-03-12 00:00", "2026-03-20 00:00"),
            iv("u1", "2026-03-20 00:00", "2026-03-21 00:00", "unavailable", None,
               "scheduled_maintenance"),  # 24 h in year 3
            full("u1", "2026-03-21 00:00", "2026-04-01 00:00"),
            full("u2", "2025-03-15 00:00", "2026-04-01 00:00")]
    ev = run(rows, period="2026-03", c=c)
    p = ev.periods[0]
    assert p.contract_year == 2
    uses = ev.allowance[("2026-03", "u1")]
    assert [(u.contract_year, u.before_us / HOUR, u.in_period_us / HOUR,
             u.remaining_us / HOUR) for u in uses] == [(2, 30.0, 18.0, 0.0),
                                                      (3, 0.0, 24.0, 24.0)]
    # March has 743 h (summer time from the 29th): 42 h excluded, 30 h lost.
    assert unit(ev, "u1")[:3] == (743.0, 42.0, 30.0)
