"""Vendor benchmarking's pure logic (contracts/benchmarking.py): energy from per-minute power,
fade from SOH points, time availability by the contract engine's rules under the benchmark's
exclusions, and the table — its figures computed by hand on a small fleet."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.settings import Settings
from contracts.benchmarking import (
    MS_PER_YEAR,
    AssetFigures,
    BenchAsset,
    Energy,
    benchmark,
    fade_pct_per_year,
    fleet_bench_assets,
    integrate_minutes,
    time_availability,
)
from contracts.events import State
from contracts.fleet import load_fleet
from contracts.intervals import StatusInterval
from contracts.ledger import Totals
from contracts.reliability import Episode

FLEET = load_fleet(Settings().fleet_file)
H = 3_600_000  # ms
S = 1_772_323_200_000  # 2026-03-01T00:00:00Z
U = "nordvik-u01"


def iv(asset_id: str, start_h: float, end_h: float, state: State, cause: str | None = None,
       fraction: float | None = None) -> StatusInterval:
    return StatusInterval(asset_id, (S + round(start_h * H)) * 1000,
                          (S + round(end_h * H)) * 1000, state, fraction,
                          cause)  # type: ignore[arg-type]


def test_minutes_of_power_are_energy_in_and_out() -> None:
    e = integrate_minutes([-600.0, -600.0, 0.0, 300.0, 540.0])
    assert e == Energy(charge_kwh=20.0, discharge_kwh=14.0)
    assert e.efficiency == pytest.approx(0.7)
    assert integrate_minutes([]).efficiency is None
    assert (Energy(1, 2) + Energy(3, 4)) == Energy(4, 6)


@given(st.floats(90, 100), st.floats(-20, 20), st.integers(2, 60),
       st.integers(3_600_000, 10 * 86_400_000))
def test_fade_of_a_straight_line_is_its_slope(soh0: float, rate: float, n: int,
                                              step_ms: int) -> None:
    points = [(S + i * step_ms, soh0 - rate * i * step_ms / MS_PER_YEAR) for i in range(n)]
    fade = fade_pct_per_year(points)
    assert fade is not None
    assert fade == pytest.approx(rate, abs=1e-6)


def test_fade_needs_two_times_and_fits_noise_by_least_squares() -> None:
    assert fade_pct_per_year([]) is None
    assert fade_pct_per_year([(S, 95.0)]) is None
    assert fade_pct_per_year([(S, 95.0), (S, 94.0)]) is None
    year = round(MS_PER_YEAR)
    # 95, 94.5, 93 at 0, ½, 1 year: slope by hand −2 %/year
    assert fade_pct_per_year([(S, 95.0), (S + year // 2, 94.5), (S + year, 93.0)]) == \
        pytest.approx(2.0)


def test_time_availability_is_the_contract_rules_with_external_causes_excluded() -> None:
    intervals = [iv(U, 0, 10, "available"), iv(U, 10, 12, "unavailable", "fault"),
                 iv(U, 12, 20, "available"), iv(U, 20, 24, "unavailable", "grid_outage"),
                 # one of two equal inverters down 5 h: half the unit lost
                 iv(f"{U}-i1", 0, 5, "unavailable", "fault"),
                 iv("nordvik-u02", 0, 24, "unavailable", "fault")]  # another's: ignored
    t = time_availability(U, FLEET.assets, intervals, S, S + 24 * H)
    assert (t.window_us, t.excluded_us) == (24 * H * 1000, 4 * H * 1000)
    assert t.lost_us == pytest.approx((2 + 2.5) * H * 1000)
    assert t.availability == pytest.approx(1 - 4.5 / 20)


def test_no_data_and_derating_count_as_the_rules_say() -> None:
    intervals = [iv(U, 0, 6, "derated", "fault", 0.25), iv(U, 6, 8, "unknown", "comms_loss"),
                 iv(U, 8, 9, "available", "scheduled_maintenance")]  # then a gap to 24 h
    t = time_availability(U, FLEET.assets, intervals, S, S + 24 * H)
    assert t.excluded_us == (2 + 1 + 15) * H * 1000  # unknown, maintenance, the gap
    assert t.lost_us == pytest.approx(0.75 * 6 * H * 1000)
    assert time_availability(U, FLEET.assets, [], S, S + H).availability is None
    assert time_availability(U, FLEET.assets, intervals, S, S) == Totals()


@given(st.lists(st.tuples(st.integers(1, 30), st.sampled_from(
    ["available", "unavailable", "unknown", "derated"]), st.sampled_from(
    [None, "fault", "grid_outage", "scheduled_maintenance"])), min_size=1, max_size=12))
def test_own_intervals_give_the_obvious_availability(
        pieces: list[tuple[int, str, str | None]]) -> None:
    """The oracle: walk the pieces — external causes and unknown excluded, unavailable
    lost, derated by half."""
    intervals, t, counted, lost = [], 0, 0, 0.0
    for hours, state, cause in pieces:
        intervals.append(iv(U, t, t + hours, state, cause,  # type: ignore[arg-type]
                            0.5 if state == "derated" else None))
        t += hours
        if state != "unknown" and cause in (None, "fault"):
            counted += hours
            lost += {"unavailable": 1.0, "derated": 0.5}.get(state, 0.0) * hours
    totals = time_availability(U, FLEET.assets, intervals, S, S + t * H)
    assert totals.counted_us == counted * H * 1000
    assert totals.lost_us == pytest.approx(lost * H * 1000)


def test_the_population_is_the_units_or_the_inverters_with_their_ratings() -> None:
    units = fleet_bench_assets(FLEET, ["mesa"], "unit")
    assert [a.asset_id for a in units] == [u.id for u in FLEET.site("mesa").units]
    u = FLEET.unit("mesa-u04")
    assert units[3] == BenchAsset("mesa-u04", "unit", "mesa", u.vendor, u.model,
                                  u.rated_power_kw, u.rated_energy_kwh, units[3].in_service_ms)
    inverters = fleet_bench_assets(FLEET, ["mesa"], "inverter")
    assert len(inverters) == sum(len(u.inverters) for u in FLEET.site("mesa").units)
    i = FLEET.unit("mesa-u01").inverters[0]
    assert (inverters[0].asset_id, inverters[0].rated_power_kw, inverters[0].rated_energy_kwh,
            inverters[0].vendor) == (i.id, i.rated_power_kw,
                                     sum(b.rated_energy_kwh for b in i.blocks), i.vendor)


def asset(asset_id: str, vendor: str, model: str, mw: float, mwh: float,
          in_service_h: float = -1e6) -> BenchAsset:
    return BenchAsset(asset_id, "unit", "s", vendor, model, mw * 1000, mwh * 1000,
                      S + round(in_service_h * H))


def totals(counted_h: float, lost_h: float, excluded_h: float = 0) -> Totals:
    return Totals(window_us=round((counted_h + excluded_h) * H * 1000),
                  excluded_us=round(excluded_h * H * 1000),
                  loss_us={1.0: round(lost_h * H * 1000)})


def test_the_table_by_hand() -> None:
    """Window 100 h. Acme A1: a (2 MW, 4 MWh) lost 10 of 100 h, one failure repaired in 10 h;
    b (1 MW, 2 MWh) in service for the last 50 h, 20 h excluded, none lost. Acme A2: c (4 MW,
    8 MWh), no status data. Zenith Z: d (1 MW, 1 MWh) lost 50 h, two failures."""
    a, b = asset("a", "Acme", "A1", 2, 4), asset("b", "Acme", "A1", 1, 2, in_service_h=50)
    c, d = asset("c", "Acme", "A2", 4, 8), asset("d", "Zenith", "Z", 1, 1)
    figures = [
        AssetFigures(a, totals(100, 10), Energy(1000, 900), 2.0),
        AssetFigures(b, totals(30, 0, 20), Energy(500, 400), None),
        AssetFigures(c, Totals(), None, 5.0),
        AssetFigures(d, totals(100, 50), Energy(0, 0), 1.0),
    ]
    episodes = [Episode("a", S + 20 * H, S + 30 * H, "unavailable", "fault"),
                Episode("d", S, S + 25 * H, "unavailable", "fault"),
                Episode("d", S + 50 * H, S + 75 * H, "unavailable", "fault")]
    table = benchmark(figures, episodes, S, S + 100 * H)
    acme, zenith = table.vendors
    assert (acme.key, zenith.key) == (("Acme",), ("Zenith",))
    assert [m.key for m in table.models] == [("Acme", "A1"), ("Acme", "A2"), ("Zenith", "Z")]
    assert (acme.assets, acme.installed_mw, acme.installed_mwh) == (3, 7.0, 14.0)
    # power-weighted: 1 − 2·10 / (2·100 + 1·30); c has no data
    assert acme.availability == pytest.approx(1 - 20 / 230)
    assert acme.lost_mwh == pytest.approx(20.0)  # 2 MW × 10 h
    assert acme.lost_mwh_per_mwh == pytest.approx(20 / 14)
    assert acme.reliability.failures == 1
    assert acme.reliability.mttr_hours == pytest.approx(10.0)
    # MW-years: (2·100 + 1·50 + 4·100) MW·h
    assert acme.failures_per_mw_year == pytest.approx(1 / (650 / 8766))
    assert (acme.charge_mwh, acme.discharge_mwh) == (1.5, 1.3)
    assert acme.efficiency == pytest.approx(1.3 / 1.5)
    assert acme.cycles == pytest.approx(1.3 / 14)
    assert acme.fade_pct_per_year == pytest.approx((4 * 2.0 + 8 * 5.0) / 12)
    assert acme.assets_with_fade == 2
    a2 = table.models[1]
    assert (a2.availability, a2.efficiency, a2.cycles, a2.lost_mwh) == (None, None, None, 0)
    assert zenith.availability == pytest.approx(0.5)
    assert zenith.reliability.failures == 2
    assert zenith.reliability.mtbf_hours == pytest.approx(50 / 2)
    assert zenith.efficiency is None  # nothing charged
    assert zenith.failures_per_mw_year == pytest.approx(2 / (100 / 8766))
    assert table.total.reliability.failures == 3
    assert table.total.availability == pytest.approx(1 - (20 + 50) / 330)
    assert table.total.installed_mw == 8.0
    assert math.isclose(table.total.lost_mwh, 70.0)


def test_a_table_refuses_an_empty_window_and_mixed_levels() -> None:
    a = asset("a", "Acme", "A1", 1, 1)
    with pytest.raises(ValueError, match="empty window"):
        benchmark([AssetFigures(a, Totals())], [], S, S)
    inverter = BenchAsset("i", "inverter", "s", None, None, 1.0, 1.0)
    with pytest.raises(ValueError, match="several levels"):
        benchmark([AssetFigures(a, Totals()), AssetFigures(inverter, Totals())], [], S, S + H)
    empty = benchmark([], [], S, S + H)
    assert (empty.vendors, empty.total.availability, empty.total.assets) == ((), None, 0)
