"""The simulator's physics: dispatch follows the daily price shape in site-local time, the
state of charge integrates power with the efficiency losses and stays within its limits, the
enclosure temperature follows the ambient with the lag of its thermal mass (the HVAC holding
it when it is hot, and failing), the state of health fades with throughput."""

from __future__ import annotations

import datetime as dt
import math
import random
from zoneinfo import ZoneInfo

import pytest

from connectors.settings import EXAMPLE_FLEET
from contracts.fleet import load_fleet
from infra.sim.model import (
    AUTO_SOC,
    CALENDAR_FADE_PER_YEAR,
    CYCLE_FADE_PER_EFC,
    DC_RESISTANCE_OHM,
    DC_V_EMPTY,
    DC_V_FULL,
    DERATED,
    EFFICIENCY,
    ENVELOPE_TAU_S,
    FOLLOW_SETPOINT,
    HARD_SOC,
    LOSS_HEAT_SHARE,
    NOMINAL_HZ,
    Q_MAX_SHARE,
    STANDBY,
    STOP,
    YEAR_S,
    Climate,
    Limit,
    UnitModel,
    dispatch_signal,
    price_eur_mwh,
)

FLEET = load_fleet(EXAMPLE_FLEET)
MESA = FLEET.site("mesa")  # America/Phoenix: UTC-7 all year
UNIT = MESA.units[0]  # 2,500 kW, 5,000 kWh
T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp()
MINUTE = 60.0


def model(seed: int = 1, climate: Climate | None = None, **fields: object) -> UnitModel:
    m = UnitModel(UNIT, random.Random(seed), tz=MESA.tz, climate=climate or Climate())
    for name, value in fields.items():
        setattr(m, name, value)
    return m


def run(m: UnitModel, start_s: float, hours: float, step_s: float = MINUTE
        ) -> list[tuple[float, float, float, float]]:
    """(time, power, soc, temperature) after every step."""
    out = []
    t = start_s
    for _ in range(round(hours * 3600 / step_s)):
        t += step_s
        m.step(t, step_s)
        assert m.temperature_c is not None
        out.append((t, m.power_kw, m.soc, m.temperature_c))
    return out


def test_the_price_shape_is_a_duck_curve() -> None:
    hourly = {h: price_eur_mwh(h) for h in range(24)}
    assert 11 <= min(hourly, key=hourly.__getitem__) <= 15  # solar noon: cheapest
    assert 18 <= max(hourly, key=hourly.__getitem__) <= 21  # evening peak: dearest
    assert dispatch_signal(price_eur_mwh(13)) == -1.0  # charge at full power
    assert dispatch_signal(price_eur_mwh(19)) == 1.0  # discharge at full power
    assert dispatch_signal(price_eur_mwh(3)) == 0.0  # night: idle


def test_dispatch_charges_at_midday_and_discharges_at_the_evening_peak_local_time() -> None:
    m = model(soc=0.5)
    day2 = run(m, T0, 48)[24 * 60:]
    phoenix = ZoneInfo("America/Phoenix")

    def mean_power(first_hour: float, last_hour: float) -> float:
        powers = [p for t, p, _, _ in day2 if first_hour <= (
            dt.datetime.fromtimestamp(t, phoenix).hour
            + dt.datetime.fromtimestamp(t, phoenix).minute / 60) < last_hour]
        return sum(powers) / len(powers)

    assert mean_power(11.5, 13.0) < -1500  # charging hard at midday
    assert mean_power(18.0, 19.0) > 1500  # discharging at the evening peak
    assert mean_power(1.0, 5.0) == 0.0  # idle at night
    # In UTC the midday charge is 18:30-20:00: the shape follows the site's own clock.
    utc_charge = [p for t, p, _, _ in day2
                  if 18.5 <= dt.datetime.fromtimestamp(t, dt.UTC).hour + dt.datetime.fromtimestamp(
                      t, dt.UTC).minute / 60 < 20.0]
    assert max(utc_charge) < 0
    assert m.readings(day2[-1][0])[UNIT.id]["status_code"] in (0, STANDBY)


def test_a_step_moves_the_soc_by_the_energy_through_the_efficiency() -> None:
    m = model(control_mode=FOLLOW_SETPOINT, setpoint_kw=1000.0, soc=0.5)
    m.step(T0, 0.0)  # settles state of health and temperature
    assert m.soh is not None
    capacity = UNIT.rated_energy_kwh * m.soh
    m.step(T0 + 60, 60.0)  # discharge 1,000 kW for a minute: 1000/0.94 kW from the cells
    assert m.power_kw == 1000.0
    assert m.soc == pytest.approx(0.5 - 1000 / EFFICIENCY / 60 / capacity, abs=1e-12)
    soc = m.soc
    m.setpoint_kw = -1000.0
    m.step(T0 + 120, 60.0)  # charge 1,000 kW for a minute: 940 kW into the cells
    assert m.power_kw == -1000.0
    capacity = UNIT.rated_energy_kwh * m.soh
    assert m.soc == pytest.approx(soc + 1000 * EFFICIENCY / 60 / capacity, rel=1e-9)
    assert m.soc < 0.5  # the round trip lost energy


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_auto_dispatch_keeps_the_soc_in_its_window(seed: int) -> None:
    m = model(seed)
    socs = [soc for _, _, soc, _ in run(m, T0, 72, step_s=5 * MINUTE)]
    low, high = AUTO_SOC
    assert low - 1e-9 <= min(socs) and max(socs) <= high + 1e-9
    assert min(socs) < low + 0.02 and max(socs) > high - 0.02  # and uses it: a daily cycle


def test_a_setpoint_cannot_drain_the_unit_past_its_hard_limit() -> None:
    m = model(control_mode=FOLLOW_SETPOINT, setpoint_kw=2500.0, soc=0.3)
    steps = run(m, T0, 2, step_s=5 * MINUTE)
    assert min(soc for _, _, soc, _ in steps) == pytest.approx(HARD_SOC[0], abs=1e-12)
    last_t, last_power, _, _ = steps[-1]
    assert last_power == 0.0  # empty: the request is cut to nothing
    assert m.readings(last_t)[UNIT.id]["status_code"] == STANDBY
    # The step that reached the limit delivered only what was left.
    cut = next(p for _, p, _, _ in steps if 0 < p < 2500.0)
    assert cut < 2500.0


def test_temperature_follows_the_ambient_with_the_lag_of_its_thermal_mass() -> None:
    """Idle, the HVAC in its dead band: a first-order lag of the daily cosine (time
    constant τ): the swing shrinks by 1/√(1+(ωτ)²) and the peak comes atan(ωτ)/ω later."""
    climate = Climate(mean_c=18.0, swing_c=5.0)
    m = model(climate=climate, control_mode=STOP)
    steps = run(m, T0, 5 * 24, step_s=2 * MINUTE)[-24 * 30:]  # the last day, settled
    ambient = [(t, m.ambient_c(t)) for t, _, _, _ in steps]
    temperature = [(t, temp) for t, _, _, temp in steps]
    omega_tau = 2 * math.pi / 86_400 * ENVELOPE_TAU_S
    swing = (max(v for _, v in temperature) - min(v for _, v in temperature)) / 2
    assert swing == pytest.approx(5.0 / math.sqrt(1 + omega_tau ** 2), rel=0.03)
    peak_t = max(temperature, key=lambda x: x[1])[0]
    peak_ambient = max(ambient, key=lambda x: x[1])[0]
    lag_h = ((peak_t - peak_ambient) / 3600) % 24  # a day's window: peaks may wrap around
    assert lag_h == pytest.approx(math.atan(omega_tau) / (2 * math.pi / 24), abs=0.2)


def test_one_thermal_step_balances_envelope_losses_and_heat() -> None:
    climate = Climate(mean_c=18.0, swing_c=5.0)
    m = model(climate=climate, control_mode=FOLLOW_SETPOINT, setpoint_kw=2000.0,
              temperature_c=20.0, soc=0.6)
    m.step(T0, 0.0)
    mass = 6.0 * UNIT.rated_energy_kwh  # kJ/K
    heat_kw = LOSS_HEAT_SHARE * 2000.0 * (1 / EFFICIENCY - 1)
    expected = 20.0 + 60 * ((mass / ENVELOPE_TAU_S) * (m.ambient_c(T0) - 20.0) + heat_kw) / mass
    m.step(T0 + 60, 60.0)
    assert m.temperature_c == pytest.approx(expected, abs=1e-9)


def test_the_hvac_holds_a_hot_enclosure_and_its_failure_heats_and_derates() -> None:
    hot = Climate(mean_c=38.0, swing_c=6.0)
    cooled = model(climate=hot)
    failed = model(climate=hot)
    failed.step(T0, 0.0)
    failed.limits["hvac_failure"] = Limit(0.5, T0 + 86_400)
    cooled_t = [temp for _, _, _, temp in run(cooled, T0, 12)]
    failed_t = [temp for _, _, _, temp in run(failed, T0, 12)]
    assert max(cooled_t) < 28.0  # ambient up to 44 °C, the enclosure near its 25 °C setpoint
    assert max(failed_t) > 38.0  # without cooling it heads for the ambient and beyond
    now = T0 + 12 * 3600
    unit = failed.readings(now)[UNIT.id]
    assert unit["status_code"] == DERATED
    assert unit["available_power_kw"] <= 0.5 * UNIT.rated_power_kw
    assert cooled.readings(now)[UNIT.id]["available_power_kw"] == UNIT.rated_power_kw


def test_state_of_health_fades_with_throughput_and_age() -> None:
    idle = model(control_mode=STOP, soc=0.8)
    busy = model(control_mode=FOLLOW_SETPOINT, setpoint_kw=1000.0, soc=0.8)
    for m in (idle, busy):
        m.step(T0, 0.0)
    start = busy.soh
    assert idle.soh == start and start is not None and 0.9 < start < 1.0  # two years old
    run(idle, T0, 1)
    run(busy, T0, 1)
    assert idle.soh is not None and busy.soh is not None
    assert start - idle.soh == pytest.approx(CALENDAR_FADE_PER_YEAR * 3600 / YEAR_S)
    cycles = 1000 / EFFICIENCY / (2 * UNIT.rated_energy_kwh)  # an hour at 1 MW, half-cycles
    assert idle.soh - busy.soh == pytest.approx(CYCLE_FADE_PER_EFC * cycles, rel=1e-9)
    assert busy.readings(T0 + 3600)[UNIT.id]["soh_pct"] == pytest.approx(busy.soh * 100)
    younger = UnitModel(UNIT.model_copy(update={"commissioned": dt.date(2026, 6, 1)}),
                        random.Random(1), tz=MESA.tz)
    younger.step(T0, 0.0)
    assert younger.soh is not None and younger.soh > start


def test_grid_and_dc_values_agree_with_the_power_and_the_state_of_charge() -> None:
    """The controller's grid side (reactive power by volt-var droop, voltage, frequency) and
    DC side (string voltage and current, average cell temperature, cycles, cooling) over a
    day of dispatch: the DC power is the power at the cells, cycles count the throughput, the
    average cell is cooler than the hottest, the HVAC's state is what it does."""
    m = model(seed=3)
    t, cycles0 = T0, None
    seen_cooling: set[int] = set()
    for _ in range(24 * 60):
        t += MINUTE
        m.step(t, MINUTE)
        r = m.readings(t)
        power, temperature = m.power_kw, m.temperature_c
        assert temperature is not None
        unit, inverter = r[UNIT.id], r[UNIT.inverters[0].id]
        cell_kw = power / EFFICIENCY if power > 0 else power * EFFICIENCY
        dc_kw = unit["current_a"] * (unit["voltage_v"] + DC_RESISTANCE_OHM * unit["current_a"])
        assert dc_kw / 1000 == pytest.approx(cell_kw, abs=1e-6)
        assert DC_V_EMPTY - 200 < unit["voltage_v"] < DC_V_FULL + 200
        assert math.copysign(1, unit["current_a"]) == math.copysign(1, power) or power == 0
        assert abs(unit["q_kvar"]) <= Q_MAX_SHARE * UNIT.rated_power_kw + 1e-9
        assert 0.95 < unit["v_pu"] < 1.05 and abs(unit["f_hz"] - NOMINAL_HZ) < 0.05
        # Volt-var: reactive power pulls the voltage towards 1.0 pu.
        assert unit["q_kvar"] * (unit["v_pu"] - 1.0) <= 1e-9
        assert unit["temp_c_avg"] < m.cell_temp_max_c()
        assert unit["temp_c_avg"] > temperature
        hvac = m.hvac_kw(temperature)
        assert unit["cooling_status"] == (1 if hvac > 0 else 2 if hvac < 0 else 0)
        seen_cooling.add(int(unit["cooling_status"]))
        assert inverter["efficiency_pct"] == (EFFICIENCY * 100 if power != 0 else 0.0)
        if cycles0 is None:
            cycles0 = unit["cycle_count"] - m.throughput_kwh / (2 * UNIT.rated_energy_kwh)
        assert unit["cycle_count"] == pytest.approx(
            cycles0 + m.throughput_kwh / (2 * UNIT.rated_energy_kwh))
    assert m.throughput_kwh > UNIT.rated_energy_kwh  # a day of real cycling was checked
    assert cycles0 is not None and cycles0 > 100  # the assumed history since commissioning
    assert len(seen_cooling) >= 2
    m.limits["hvac_failure"] = Limit(0.5, t + 3600)
    assert m.readings(t)[UNIT.id]["cooling_status"] == 3


def test_the_new_values_draw_nothing_from_the_random_stream() -> None:
    """A seed's other outputs stay what they were: the grid and DC values are derived."""
    m = model(seed=5)
    run(m, T0, 1)
    state = m.rng.getstate()
    m.grid_and_dc(T0 + 3600, 0)
    assert m.rng.getstate() == state
