"""contracts/battery_health.py: a synthetic linear fade is recovered exactly, noise stays in
the stated band about 95 % of the time, too little data and no cycling are said (never a
division by zero), the projection and the augmentation hint follow from the fit, exposure
hours add up — and the contract file's warranty section is read or refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.settings import EXAMPLE_FLEET
from contracts.battery_health import (
    C_RATE_EDGES,
    TEMPERATURE_EDGES_C,
    YEAR_MS,
    Bucket,
    FadeFit,
    NoFit,
    Rate,
    Sample,
    augmentation,
    band_of,
    banded,
    c_rate_bands,
    c_rate_exposure,
    c_rate_spec,
    efc_at,
    equivalent_full_cycles,
    exposure,
    fit_fade,
    project,
    t95,
    temperature_bands,
    temperature_exposure,
    temperature_spec,
    throughput_buckets,
    unit_band_specs,
)
from contracts.contract import parse_contract
from contracts.errors import InvalidInput
from contracts.fleet import load_fleet
from contracts.reporting import terms_hash
from tests.contracts.test_invalid_inputs import contract_text

FLEET = load_fleet(EXAMPLE_FLEET)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


def duty(n: int, seed: int) -> list[float]:
    """Cumulative EFC at n daily samples: a duty that changes from day to day (so calendar
    time and cycles can be told apart)."""
    rng = random.Random(seed)
    out, e = [], 0.0
    for _ in range(n):
        out.append(e)
        e += rng.uniform(0.0, 2.0)
    return out


def synthetic(n: int, a: float, per_year: float, per_1000: float, seed: int,
              noise: float = 0.0) -> list[Sample]:
    rng = random.Random(seed + 1)
    return [Sample(T0 + i * DAY, a - per_year * (i * DAY / YEAR_MS) - per_1000 * e / 1000
                   + rng.gauss(0.0, noise), e)
            for i, e in enumerate(duty(n, seed))]


rates = st.floats(0.0, 5.0)


@given(n=st.integers(10, 400), a=st.floats(60.0, 100.0), per_year=rates,
       per_1000=st.floats(0.0, 20.0), seed=st.integers(0, 10_000))
def test_a_linear_fade_is_recovered_exactly(n: int, a: float, per_year: float,
                                            per_1000: float, seed: int) -> None:
    fit = fit_fade(synthetic(n, a, per_year, per_1000, seed))
    assert isinstance(fit, FadeFit)
    assert fit.method == "time_and_cycles"
    assert fit.per_year is not None and fit.per_1000_efc is not None
    assert fit.per_year.value == pytest.approx(per_year, abs=1e-6)
    assert fit.per_1000_efc.value == pytest.approx(per_1000, abs=1e-6)
    assert fit.rmse_pct == pytest.approx(0.0, abs=1e-7)
    span = (n - 1) * DAY / YEAR_MS
    assert fit.efc_per_year == pytest.approx(fit.efc / span)
    assert fit.at_duty_per_year.value == pytest.approx(
        per_year + per_1000 * fit.efc_per_year / 1000, abs=1e-6)
    assert fit.soh_now_pct == pytest.approx(
        a - per_year * span - per_1000 * duty(n, seed)[-1] / 1000, abs=1e-6)


@settings(max_examples=10, derandomize=True, deadline=None)
@given(per_year=rates, per_1000=st.floats(0.0, 20.0), noise=st.floats(0.01, 0.5),
       seed=st.integers(0, 10_000))
def test_with_noise_the_true_rates_lie_in_the_95_pct_band_about_95_pct_of_the_time(
        per_year: float, per_1000: float, noise: float, seed: int) -> None:
    """200 noisy data sets of the same fade: the bands hold the truth in 88 % or more of
    them (with a true coverage of 95 %, fewer than 177 of 200 has a chance of 3·10⁻⁶)."""
    inside_year = inside_efc = inside_duty = 0
    for k in range(200):
        fit = fit_fade(synthetic(60, 90.0, per_year, per_1000, seed * 1000 + k, noise=noise))
        assert isinstance(fit, FadeFit)
        assert fit.per_year is not None and fit.per_1000_efc is not None
        inside_year += fit.per_year.low <= per_year <= fit.per_year.high
        inside_efc += fit.per_1000_efc.low <= per_1000 <= fit.per_1000_efc.high
        expected = per_year + per_1000 * fit.efc_per_year / 1000
        inside_duty += fit.at_duty_per_year.low <= expected <= fit.at_duty_per_year.high
    assert inside_year >= 177 and inside_efc >= 177 and inside_duty >= 177


def test_the_band_narrows_with_more_data_and_widens_with_noise() -> None:
    def width(n: int, noise: float) -> float:
        fit = fit_fade(synthetic(n, 95.0, 1.5, 4.0, 7, noise=noise))
        assert isinstance(fit, FadeFit) and fit.per_year is not None
        return fit.per_year.high - fit.per_year.low
    assert width(300, 0.1) < width(30, 0.1)
    assert width(100, 0.05) < width(100, 0.2)


@pytest.mark.parametrize(("samples", "reason"), [
    ([], "0 SOH samples: a fit needs at least 4"),
    ([Sample(T0, 99.0, 0.0)], "1 SOH sample: a fit needs at least 4"),
    ([Sample(T0 + i * 3_600_000, 99.0, i) for i in range(10)],
     "the SOH samples span less than 1 day"),
    ([Sample(T0, 99.0 - i, i) for i in range(10)], "the SOH samples span less than 1 day"),
])
def test_too_little_data_is_said(samples: list[Sample], reason: str) -> None:
    assert fit_fade(samples) == NoFit(len(samples), reason)


def test_no_cycling_fits_time_alone_and_says_so() -> None:
    samples = [Sample(T0 + i * DAY, 95.0 - 2.0 * i * DAY / YEAR_MS, 3.0) for i in range(30)]
    fit = fit_fade(samples)
    assert isinstance(fit, FadeFit)
    assert fit.method == "time_only" and fit.per_1000_efc is None
    assert fit.per_year is not None and fit.per_year.value == pytest.approx(2.0)
    assert fit.efc == 0.0 and "no cycling" in fit.note


def test_cycles_in_exact_step_with_time_cannot_be_told_apart_and_say_so() -> None:
    samples = [Sample(T0 + i * DAY, 95.0 - 3.0 * i * DAY / YEAR_MS, 0.8 * i)
               for i in range(30)]
    fit = fit_fade(samples)
    assert isinstance(fit, FadeFit)
    assert fit.method == "time_only" and fit.per_1000_efc is None
    assert fit.at_duty_per_year.value == pytest.approx(3.0)
    assert "cannot be told apart" in fit.note


def test_a_steady_duty_gives_wide_separate_bands_but_a_narrow_sum() -> None:
    rng = random.Random(3)
    samples = [Sample(T0 + i * DAY, 95.0 - 1.5 * i * DAY / YEAR_MS - 0.004 * 0.8 * i
                      + rng.gauss(0, 0.05), 0.8 * i + rng.uniform(-0.05, 0.05))
               for i in range(200)]
    fit = fit_fade(samples)
    assert isinstance(fit, FadeFit) and fit.method == "time_and_cycles"
    assert fit.per_year is not None and "almost in step" in fit.note
    duty_width = fit.at_duty_per_year.high - fit.at_duty_per_year.low
    assert fit.per_year.high - fit.per_year.low > 10 * duty_width
    assert fit.at_duty_per_year.low <= 1.5 + 0.004 * 0.8 * 365.25 <= fit.at_duty_per_year.high


@pytest.mark.parametrize(("dof", "quantile"), [(1, 12.706), (10, 2.228), (30, 2.042),
                                               (40, 2.021), (60, 2.000), (120, 1.980),
                                               (10_000, 1.960)])
def test_students_t(dof: int, quantile: float) -> None:
    assert t95(dof) == pytest.approx(quantile, abs=1.5e-3)


def test_efc_is_throughput_over_twice_the_rated_energy() -> None:
    assert equivalent_full_cycles(4_000.0, 2_000.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        equivalent_full_cycles(1.0, 0.0)
    hour = 3_600_000
    # 1 MW for an hour on a 2 MWh unit, charging then discharging: half a cycle in all;
    # then a gap of an hour, and an idle hour.
    power = [Bucket(0, hour, -1_000.0), Bucket(hour, hour, 1_000.0),
             Bucket(3 * hour, hour, 0.0)]
    times = [-1, 0, hour // 2, hour, 3 * hour // 2, 2 * hour, 5 * hour // 2, 4 * hour]
    assert efc_at(power, 2_000.0, times) == [0.0, 0.0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    assert efc_at([], 2_000.0, [0, hour]) == [0.0, 0.0]


@given(st.lists(st.tuples(st.integers(0, 3_600_000), st.integers(1, 3_600_000),
                          st.floats(-5_000.0, 5_000.0)), max_size=30),
       st.lists(st.integers(-1, 200_000_000), max_size=30))
def test_cycles_grow_with_time_to_the_whole_throughput(
        parts: list[tuple[int, int, float]], times: list[int]) -> None:
    power, t = [], 0
    for gap, width, kw in parts:
        power.append(Bucket(t + gap, width, kw))
        t += gap + width
    got = efc_at(power, 1_000.0, sorted(times))
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(got))
    total = sum(abs(b.mean) * b.width_ms / 3_600_000 for b in power) / 2_000.0
    assert efc_at(power, 1_000.0, [t])[0] == pytest.approx(total)
    assert all(0.0 <= e <= total + 1e-9 for e in got)


def fixed_fit(soh_now: float = 90.0, rate: float = 2.0, band: float = 0.5) -> FadeFit:
    fit = fit_fade(synthetic(50, 95.0, 1.0, 4.0, 1))
    assert isinstance(fit, FadeFit)
    return FadeFit(fit.method, fit.samples, T0, T0, fit.per_year, fit.per_1000_efc, fit.efc,
                   fit.efc_per_year, Rate(rate, rate - band, rate + band, band / 2),
                   soh_now, 0.0, "")


def test_the_projection_divides_the_margin_by_the_rate_and_its_band() -> None:
    p = project(fixed_fit(90.0, 2.0, 0.5), 70.0)
    start = dt.date(2026, 1, 1)
    assert not p.reached
    assert p.date == start + dt.timedelta(days=10 * 365.25)
    assert p.earliest == start + dt.timedelta(days=20 / 2.5 * 365.25)
    assert p.latest == start + dt.timedelta(days=20 / 1.5 * 365.25)


def test_a_band_that_includes_no_fade_has_no_latest_date() -> None:
    p = project(fixed_fit(90.0, 0.3, 0.5), 70.0)
    assert p.date is not None and p.latest is None and "open" in p.note
    none = project(fixed_fit(90.0, -0.1, 0.5), 70.0)
    assert none.date is None and none.latest is None and "no fade" in none.note


def test_a_unit_below_the_threshold_has_reached_it() -> None:
    p = project(fixed_fit(69.0), 70.0)
    assert p.reached and p.date is None


def test_the_augmentation_keeps_the_threshold_until_the_horizon() -> None:
    fit = fixed_fit(90.0, 2.0, 0.5)
    p = project(fit, 70.0)
    horizon = dt.date(2041, 1, 1)  # 15 years on: SOH 60 % by then, 10 points short
    hint = augmentation(fit, p, 4_000.0, horizon)
    assert hint is not None
    years = (horizon - dt.date(2026, 1, 1)).days / 365.25
    assert hint.add_mwh == pytest.approx(4.0 * (70.0 - (90.0 - 2.0 * years)) / 100)
    assert hint.by == p.date and hint.horizon == horizon
    assert "add 0.40 MWh" in hint.text
    assert augmentation(fit, p, 4_000.0, dt.date(2030, 1, 1)) is None  # still above then
    assert augmentation(fit, p, 4_000.0, None) is None  # no contract, no horizon


@given(st.lists(st.tuples(st.integers(1, 10 * 3_600_000), st.floats(-60.0, 90.0)),
                max_size=50))
def test_exposure_hours_add_up_to_the_buckets_widths(rows: list[tuple[int, float]]) -> None:
    buckets = [Bucket(0, w, v) for w, v in rows]
    bands = temperature_exposure(buckets)
    assert [b.label for b in bands] == ["< 0 °C", "0–15 °C", "15–25 °C", "25–35 °C",
                                        "35–45 °C", "≥ 45 °C"]
    assert sum(b.hours for b in bands) == pytest.approx(sum(w for w, _ in rows) / 3_600_000)
    for b in buckets:  # each bucket in the one band holding its value
        band = next(x for x in bands if (x.low is None or b.mean >= x.low)
                    and (x.high is None or b.mean < x.high))
        assert band.hours > 0 or b.width_ms == 0


def test_c_rate_is_power_over_rated_energy_either_way() -> None:
    hour = 3_600_000
    bands = c_rate_exposure([Bucket(0, hour, -1_000.0), Bucket(hour, 2 * hour, 1_000.0),
                             Bucket(3 * hour, hour, 50.0), Bucket(4 * hour, hour, 0.0)],
                            4_000.0)
    assert {b.label: b.hours for b in bands} == {
        "< 0.05 C": 2.0, "0.05–0.25 C": 0.0, "0.25–0.5 C": 3.0, "0.5–1 C": 0.0, "≥ 1 C": 0.0}
    assert exposure([Bucket(0, hour, 1.0)], (1.0,))[1].hours == 1.0  # low edges inclusive


@given(st.lists(st.floats(-3_000.0, 3_000.0), max_size=120), st.sampled_from([
    (C_RATE_EDGES, 1 / 4_000.0, True), (TEMPERATURE_EDGES_C, 1.0, False)]))
def test_minutes_counted_per_band_are_the_exposure_of_minute_buckets(
        values: list[float], kind: tuple[tuple[float, ...], float, bool]) -> None:
    """What the historian counts per minute (`band_of` of each minute's value), in hours, is
    `exposure` of the same minutes as buckets: one rule of bands in both."""
    edges, scale, magnitude = kind
    minutes = [0] * (len(edges) + 1)
    for v in values:
        minutes[band_of((abs(v) if magnitude else v) * scale, edges)] += 1
    from_buckets = exposure([Bucket(i * 60_000, 60_000, abs(v) if magnitude else v)
                             for i, v in enumerate(values)], edges, "", scale)
    assert [b.hours for b in banded([m / 60 for m in minutes], edges)] == \
        pytest.approx([b.hours for b in from_buckets])
    bands = (c_rate_bands if magnitude else temperature_bands)(minutes)
    assert [b.hours for b in bands] == [m / 60 for m in minutes]


def test_throughput_buckets_spread_each_buckets_energy_over_its_part_of_the_window() -> None:
    hour = 3_600_000
    # Buckets of 4 h, the energy of the minutes inside the window [2 h, 10 h) in each.
    kwh = {0: 500.0, 4 * hour: 1_000.0, 8 * hour: 250.0}
    got = throughput_buckets(kwh, 4 * hour, 2 * hour, 10 * hour)  # clipped at both ends
    assert got == [Bucket(2 * hour, 2 * hour, 250.0), Bucket(4 * hour, 4 * hour, 250.0),
                   Bucket(8 * hour, 2 * hour, 125.0)]
    # The cycles by any instant: the energy moved by then (at 2,000 kWh rated: 4,000 a cycle).
    assert efc_at(got, 2_000.0, [2 * hour, 4 * hour, 6 * hour, 9 * hour, 10 * hour]) == \
        pytest.approx([0.0, 500 / 4_000, 1_000 / 4_000, 1_625 / 4_000, 1_750 / 4_000])
    assert throughput_buckets({12 * hour: 5.0}, hour, 0, 12 * hour) == []  # outside


def test_a_band_specs_key_is_its_whole_content() -> None:
    unit = FLEET.sites[0].units[0]
    spec = c_rate_spec(unit)
    assert spec.key == c_rate_spec(unit).key and spec.key.startswith("active_power_kw:")
    others = [dataclasses.replace(spec, scale=spec.scale * 2),
              dataclasses.replace(spec, edges=(*spec.edges, 2.0)),
              dataclasses.replace(spec, assets=("other",)),
              dataclasses.replace(spec, magnitude=False), temperature_spec(unit)]
    assert len({spec.key, *(o.key for o in others)}) == len(others) + 1
    hottest = temperature_spec(unit)
    assert hottest.assets == (unit.id, *(b.id for inv in unit.inverters for b in inv.blocks))
    assert unit_band_specs(unit) == (spec, hottest)


def test_the_warranty_threshold_is_read_from_the_contract_file() -> None:
    contract = parse_contract(contract_text(warranty={"end_of_life_soh_pct": 75.0}), "C.yaml")
    assert contract.warranty is not None and contract.warranty.end_of_life_soh_pct == 75.0
    assert parse_contract(contract_text(), "C.yaml").warranty is None
    # No availability term: the compliance reports' fingerprints do not change with it.
    assert terms_hash(contract) == terms_hash(parse_contract(contract_text(), "C.yaml"))


@pytest.mark.parametrize(("warranty", "message"), [
    ({"end_of_life_soh_pct": 100}, "C.yaml:25: warranty.end_of_life_soh_pct: must be less "
                                   "than 100 (got 100)"),
    ({"end_of_life_soh_pct": 0}, "C.yaml:25: warranty.end_of_life_soh_pct: must be greater "
                                 "than 0 (got 0)"),
    ({"end_of_life_soh_pct": "70"}, "C.yaml:25: warranty.end_of_life_soh_pct: must be a "
                                    "valid number (got '70')"),
    ({"eol": 70}, "C.yaml:25: warranty.eol: extra inputs are not permitted (got 70)"),
])
def test_a_broken_warranty_is_refused_with_file_key_and_problem(warranty: object,
                                                                message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_contract(contract_text(warranty=warranty), "C.yaml")
    assert str(caught.value) == message


def test_no_nan_for_degenerate_but_valid_input() -> None:
    fit = fit_fade([Sample(T0 + i * DAY, 90.0, float(i % 3)) for i in range(10)])
    assert isinstance(fit, FadeFit) and fit.per_year is not None
    assert all(math.isfinite(v) for v in (fit.per_year.value, fit.per_year.low,
                                          fit.at_duty_per_year.high, fit.soh_now_pct))
