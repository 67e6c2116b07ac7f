"""contracts/warranty.py: excursions found by a walk over the buckets (checked against the
obvious minute-by-minute one), every figure of a hand-computed unit-period against its term,
each verdict (within, exceeded, no term, no data), the availability equal to the engine's for
a whole measurement period — and the contract file's new warranty terms read or refused."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.battery_health import Bucket
from contracts.contract import PctRange, TemperatureRange, Warranty, parse_contract
from contracts.errors import InvalidInput
from contracts.reporting import terms_hash
from contracts.warranty import (
    UnitPeriod,
    assess,
    excursions,
    service_year,
    unit_availability,
)
from tests.contracts.builders import FLEET, at, contract, ex, iv, run, unit
from tests.contracts.test_invalid_inputs import contract_text

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
H = 3_600_000
RATED = 4_000.0  # kWh
MAINTENANCE = "scheduled_maintenance"


def buckets(values: list[float], width: int = H, start: int = T0) -> list[Bucket]:
    return [Bucket(start + i * width, width, v) for i, v in enumerate(values)]


# -- excursions --------------------------------------------------------------------------------

def test_excursions_by_hand() -> None:
    allowed = TemperatureRange(min=10.0, max=40.0)
    found = excursions(buckets([20, 41, 45, 39, 40, 9, 8, 42, 10]), allowed)
    assert [(e.start_ms - T0) // H for e in found.episodes] == [1, 5, 7]
    assert [e.hours for e in found.episodes] == [2.0, 2.0, 1.0]
    assert [e.side for e in found.episodes] == ["above", "below", "above"]
    assert [e.extreme for e in found.episodes] == [45, 8, 42]
    assert (found.hours_outside, found.count, found.longest_hours) == (5.0, 3, 2.0)
    assert found.hours_with_data == 9.0
    # The limits are allowed values; a gap between buckets splits an excursion.
    gap = [Bucket(T0, H, 50.0), Bucket(T0 + 2 * H, H, 50.0)]
    assert excursions(gap, allowed).count == 2
    # Below then above with no time between: two excursions.
    assert excursions(buckets([5, 50]), allowed).count == 2
    assert excursions([], allowed).hours_outside == 0.0


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 1), st.floats(-20, 60)),
                max_size=40))
def test_excursions_match_the_minute_walk(spec: list[tuple[int, int, float]]) -> None:
    """Buckets of 1-4 minutes with gaps of 0-1 minute: the time outside and the number of
    excursions are those of a walk minute by minute."""
    allowed = TemperatureRange(min=0.0, max=40.0)
    values: list[Bucket] = []
    t = T0
    for width, gap, mean in spec:
        values.append(Bucket(t, width * 60_000, mean))
        t += (width + gap) * 60_000
    found = excursions(list(reversed(values)), allowed)  # any order
    minutes: dict[int, str] = {}
    for b in values:
        side = "below" if b.mean < 0 else "above" if b.mean > 40 else "in"
        for m in range(b.width_ms // 60_000):
            minutes[b.start_ms + m * 60_000] = side
    outside = [m for m, s in minutes.items() if s != "in"]
    assert found.hours_outside == pytest.approx(len(outside) / 60)
    starts = [m for m in outside if minutes.get(m - 60_000) != minutes[m]]
    assert found.count == len(starts)
    assert [e.start_ms for e in found.episodes] == sorted(starts)
    assert found.longest_hours <= found.hours_outside + 1e-9


# -- the figures -------------------------------------------------------------------------------

WARRANTY = Warranty(max_efc_per_year=365.0, max_average_c_rate=0.5,
                    operating_temperature_c=TemperatureRange(min=5.0, max=40.0),
                    soc_window_pct=PctRange(min=5.0, max=95.0),
                    min_soh_pct_by_year={1: 98.0, 2: 96.0, 5: 90.0})


def period(**changes: object) -> UnitPeriod:
    """Four hours: discharge 2 MW, charge 1 MW, idle, discharge 0.1 MW (0.025 C: idle)."""
    base: dict[str, object] = dict(
        start_ms=T0, end_ms=T0 + 4 * H, rated_energy_kwh=RATED,
        commissioned=dt.date(2024, 6, 1), power=buckets([2000, -1000, 0, 100]),
        soh=buckets([97.0, 96.9, 96.8, 96.5]), temperature=buckets([25, 41, 30, 4]),
        soc=buckets([90, 50, 50, 60]))
    base.update(changes)
    return UnitPeriod(**base)  # type: ignore[arg-type]


def test_the_figures_of_a_hand_computed_period() -> None:
    a = assess(period(), WARRANTY)
    v = {f.key: f.value for f in a.figures}
    assert v["throughput_mwh"] == pytest.approx(3.1)  # 2 + 1 + 0 + 0.1 MWh
    assert v["discharged_mwh"] == pytest.approx(2.1) and v["charged_mwh"] == pytest.approx(1.0)
    assert v["efc"] == pytest.approx(3100 / 8000)
    assert v["efc_per_year"] == pytest.approx(3100 / 8000 * 365.25 * 6)  # 4 h of data
    assert v["average_c_rate"] == pytest.approx((0.5 + 0.25) / 2)  # the idle hours left out
    assert (v["soh_start_pct"], v["soh_end_pct"]) == (97.0, 96.5)
    assert (v["temperature_outside_h"], v["temperature_excursions"],
            v["temperature_longest_h"]) == (2.0, 2, 1.0)
    assert (v["soc_outside_h"], v["soc_excursions"]) == (0.0, 0)
    assert a.efc_cumulative == pytest.approx((0.25, 0.375, 0.375, 0.3875))
    verdicts = {f.key: f.verdict for f in a.figures}
    assert verdicts == {
        "availability_pct": "no_term",  # no contract: no availability rules
        "throughput_mwh": "no_term", "discharged_mwh": "no_term", "charged_mwh": "no_term",
        "efc": "no_term",
        "efc_per_year": "exceeded",  # 849 a year > 365
        "average_c_rate": "within",
        "soh_start_pct": "no_term",
        "soh_end_pct": "within",  # year of service 2 (from 2025-06-01): ≥ 96 %
        "temperature_outside_h": "exceeded", "temperature_excursions": "exceeded",
        "temperature_longest_h": "exceeded",
        "soc_outside_h": "within", "soc_excursions": "within", "soc_longest_h": "within"}
    assert a.figure("soh_end_pct").term == "≥ 96 % (year of service 2, listed year 2)"
    assert a.figure("temperature_outside_h").term == "5–40 °C"
    assert a.figure("temperature_outside_h").detail == \
        "4 h with data; lowest 4.0 °C; highest 41.0 °C"


@pytest.mark.parametrize(("changes", "key", "verdict"), [
    ({"soh": buckets([95.9])}, "soh_end_pct", "exceeded"),
    ({"soh": buckets([96.0])}, "soh_end_pct", "within"),  # the minimum is allowed
    ({"soh": []}, "soh_end_pct", "no_data"),
    ({"commissioned": dt.date(2021, 6, 1), "soh": buckets([90.5])}, "soh_end_pct",
     "within"),  # year 5: 90 %
    ({"commissioned": dt.date(2022, 6, 1), "soh": buckets([90.5])}, "soh_end_pct",
     "exceeded"),  # year 4: year 2's 96 % still holds
    ({"power": buckets([2000.0, 2000.0])}, "average_c_rate", "within"),  # 0.5 C: the max
    ({"power": buckets([2100.0])}, "average_c_rate", "exceeded"),
    ({"power": buckets([0.0, 10.0])}, "average_c_rate", "no_data"),  # never operated
    ({"power": []}, "efc_per_year", "no_data"),
    ({"power": buckets([40.0] * 4)}, "efc_per_year", "within"),  # 0.04 a day
    ({"temperature": []}, "temperature_outside_h", "no_data"),
    ({"soc": buckets([96.0])}, "soc_outside_h", "exceeded"),
    ({"soc": buckets([5.0, 95.0])}, "soc_excursions", "within"),
])
def test_each_verdict(changes: dict[str, object], key: str, verdict: str) -> None:
    assert assess(period(**changes), WARRANTY).figure(key).verdict == verdict


@given(st.lists(st.floats(-3000, 3000), max_size=30), st.floats(1, 1000),
       st.floats(0.01, 2))
def test_the_power_figures_hold_together(means: list[float], max_efc: float,
                                         max_c: float) -> None:
    """Throughput is discharged + charged, the cycles run up to the total, and each verdict
    is the comparison of the figure with its term."""
    w = Warranty(max_efc_per_year=max_efc, max_average_c_rate=max_c)
    a = assess(period(power=buckets(means, width=15 * 60_000)), w)
    v = {f.key: f for f in a.figures}
    if not means:
        assert v["throughput_mwh"].value is None and v["efc_per_year"].verdict == "no_data"
        return
    total, out, back = (v[k].value for k in ("throughput_mwh", "discharged_mwh", "charged_mwh"))
    assert total is not None and out is not None and back is not None
    assert total == pytest.approx(out + back)
    assert total == pytest.approx(sum(abs(m) for m in means) / 4 / 1000)
    assert a.efc_cumulative[-1] == pytest.approx(v["efc"].value)
    assert list(a.efc_cumulative) == sorted(a.efc_cumulative)
    per_year = v["efc_per_year"].value
    assert per_year is not None
    assert v["efc_per_year"].verdict == ("within" if per_year <= max_efc else "exceeded")
    c_rate = v["average_c_rate"].value
    if c_rate is None:
        assert all(abs(m) / RATED < 0.05 for m in means)
    else:
        assert 0.05 <= c_rate <= max(abs(m) for m in means) / RATED + 1e-12
        assert v["average_c_rate"].verdict == ("within" if c_rate <= max_c else "exceeded")


def test_without_a_warranty_every_term_is_missing_and_the_figures_remain() -> None:
    a = assess(period(), None)
    assert {f.verdict for f in a.figures} == {"no_term"}
    assert a.figure("throughput_mwh").value == pytest.approx(3.1)
    assert a.temperature is None and a.soc is None
    empty = assess(period(power=[], soh=[]), None)
    assert empty.figure("throughput_mwh").verdict == "no_data"
    assert empty.figure("soh_end_pct").verdict == "no_term"


def test_the_year_of_service_starts_at_commissioning() -> None:
    day = dt.date(2024, 6, 1)
    ms = int(dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert service_year(day, ms) == 1
    assert service_year(day, ms + 365 * 86_400_000) == 1
    assert service_year(day, ms + 366 * 86_400_000) == 2
    assert service_year(day, ms - 86_400_000) == 1  # before commissioning: year 1


# -- availability: the engine's -----------------------------------------------------------------

def test_availability_over_a_month_is_the_engines() -> None:
    """Over exactly a measurement period the unit's numbers are the contract evaluation's,
    maintenance allowance, exclusions and children's losses included."""
    c = contract()
    intervals = [
        iv("u1", "2026-05-20 00:00", "2026-06-10 00:00", "unavailable", cause=MAINTENANCE),
        iv("u1", "2026-06-10 00:00", "2026-06-20 00:00"),
        iv("u1", "2026-06-20 00:00", "2026-06-25 00:00", "derated", 0.5, "fault"),
        iv("u1", "2026-06-25 00:00", "2026-07-01 00:00"),
        iv("u1-i1", "2026-06-01 00:00", "2026-06-15 00:00", "unavailable", cause="fault"),
        iv("u1-i1", "2026-06-15 00:00", "2026-07-01 00:00"),
    ]
    windows = [ex("u1", "2026-06-12 00:00", "2026-06-13 00:00", "grid_outage")]
    engine = unit(run(intervals, "2026-06", c, windows), "u1")
    mine = unit_availability(FLEET, c, "u1", intervals, windows, at("2026-06-01 00:00"),
                             at("2026-07-01 00:00"), None)
    window, excluded, lost = mine.totals.hours()
    assert (window, excluded, lost) == pytest.approx(engine[:3])
    assert mine.availability_pct == pytest.approx(engine[3])
    assert lost > 0 and excluded > 0  # the case is not trivial
    assert (mine.guaranteed_pct, mine.contract_year) == (97.0, 3)


def test_the_allowance_used_before_the_period_counts() -> None:
    """48 h of allowance a contract year (from June): 40 h used in early June, so of 20 h of
    maintenance on 1 July only 8 h are excluded and 12 h lost."""
    c = contract()
    intervals = [
        iv("u1", "2026-06-01 00:00", "2026-06-02 16:00", "unavailable", cause=MAINTENANCE),
        iv("u1", "2026-06-02 16:00", "2026-07-01 00:00"),
        iv("u1", "2026-07-01 00:00", "2026-07-01 20:00", "unavailable", cause=MAINTENANCE),
        iv("u1", "2026-07-01 20:00", "2026-07-02 00:00"),
    ]
    mine = unit_availability(FLEET, c, "u1", intervals, [], at("2026-07-01 00:00"),
                             at("2026-07-02 00:00"), None)
    window, excluded, lost = mine.totals.hours()
    assert (window, excluded, lost) == pytest.approx((24.0, 8.0, 12.0))
    assert mine.availability_pct == pytest.approx(100 * (1 - 12 / 16))


def test_before_monitoring_is_no_data_and_outside_the_term_no_guarantee() -> None:
    c = contract()
    intervals = [iv("u1", "2026-06-02 00:00", "2026-06-03 00:00")]
    mine = unit_availability(FLEET, c, "u1", intervals, [], at("2026-06-01 00:00"),
                             at("2026-06-03 00:00"), at("2026-06-02 00:00"))
    assert mine.totals.hours() == pytest.approx((24.0, 0.0, 0.0))
    nothing = unit_availability(FLEET, c, "u1", [], [], at("2026-06-01 00:00"),
                                at("2026-06-03 00:00"), at("2026-06-03 00:00"))
    assert nothing.availability_pct is None
    before = unit_availability(FLEET, c, "u1", [], [], at("2024-01-01 00:00"),
                               at("2024-02-01 00:00"), None)
    assert before.guaranteed_pct is None and before.contract_year is None
    assert before.totals.window_us == 0  # before the contract's start: not in its window


# -- the contract file --------------------------------------------------------------------------

FULL = {"end_of_life_soh_pct": 70.0, "max_efc_per_year": 365.0, "max_average_c_rate": 0.5,
        "operating_temperature_c": {"min": 5.0, "max": 40.0},
        "soc_window_pct": {"min": 5.0, "max": 95.0},
        "min_soh_pct_by_year": {1: 98.0, 2: 96.0, 10: 70.0}}


def test_the_warranty_terms_are_read_and_left_out_of_the_report_fingerprint() -> None:
    c = parse_contract(contract_text(warranty=FULL), "C.yaml")
    w = c.warranty
    assert w is not None and w.max_efc_per_year == 365.0 and w.max_average_c_rate == 0.5
    assert w.operating_temperature_c == TemperatureRange(min=5.0, max=40.0)
    assert w.soc_window_pct == PctRange(min=5.0, max=95.0)
    assert [w.min_soh_pct(y) for y in (1, 2, 9, 10, 30)] == [
        (1, 98.0), (2, 96.0), (2, 96.0), (10, 70.0), (10, 70.0)]
    assert Warranty(min_soh_pct_by_year={3: 90.0}).min_soh_pct(2) is None
    # Each key optional: one alone is a warranty.
    only = parse_contract(contract_text(warranty={"max_efc_per_year": 300.0}), "C.yaml")
    assert only.warranty is not None and only.warranty.end_of_life_soh_pct is None
    assert terms_hash(c) == terms_hash(parse_contract(contract_text(), "C.yaml"))


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_efc_per_year": 0}, "C.yaml:25: warranty.max_efc_per_year: must be greater than 0 "
                              "(got 0)"),
    ({"max_average_c_rate": "0.5"}, "C.yaml:25: warranty.max_average_c_rate: must be a valid "
                                    "number (got '0.5')"),
    ({"operating_temperature_c": {"min": 40.0, "max": 5.0}},
     "C.yaml:27: warranty.operating_temperature_c.max: must be greater than min (got 5 ≤ 40)"),
    ({"operating_temperature_c": {"min": 5.0}},
     "C.yaml:25: warranty.operating_temperature_c.max: required key is missing"),
    ({"soc_window_pct": {"min": 5.0, "max": 101.0}},
     "C.yaml:27: warranty.soc_window_pct.max: must be less than or equal to 100 (got 101.0)"),
    ({"min_soh_pct_by_year": {1: 95.0, 2: 97.0}},
     "C.yaml:25: warranty.min_soh_pct_by_year: year 2 guarantees more than year 1 (97 > 95): "
     "a guarantee never rises"),
    ({"min_soh_pct_by_year": {0: 95.0}},
     "C.yaml:26: warranty.min_soh_pct_by_year.0: must be greater than or equal to 1 (got 0)"),
    ({"max_cycles": 300}, "C.yaml:25: warranty.max_cycles: extra inputs are not permitted "
                          "(got 300)"),
])
def test_a_broken_warranty_term_is_refused_with_file_line_key_and_problem(
        changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_contract(contract_text(warranty=changes), "C.yaml")
    assert str(caught.value) == message
