"""The simulator's fade rates are settable (infra/sim/model.py `Fade`, per unit, and
infra/sim/record.py `record(fade=…)`, per recording): a unit fades at the rates it is given,
from an initial state of health that follows them, and the default is the model's constants."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from connectors.settings import EXAMPLE_FLEET
from contracts.fleet import load_fleet
from infra.sim.model import (
    CALENDAR_FADE_PER_YEAR,
    CYCLE_FADE_PER_EFC,
    EFFICIENCY,
    FOLLOW_SETPOINT,
    STOP,
    YEAR_S,
    Fade,
    UnitModel,
    initial_soh,
)
from infra.sim.record import record

FLEET = load_fleet(EXAMPLE_FLEET)
MESA = FLEET.site("mesa")
UNIT = MESA.units[0]  # 2,500 kW, 5,000 kWh, commissioned 2024-04-30
T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp()
FAST = Fade(calendar_per_year=0.05, cycle_per_efc=0.001)


def test_the_default_fade_is_the_models_constants() -> None:
    assert Fade() == Fade(CALENDAR_FADE_PER_YEAR, CYCLE_FADE_PER_EFC)
    assert UnitModel(UNIT, random.Random(1)).fade == Fade()
    assert initial_soh(UNIT, T0) == initial_soh(UNIT, T0, Fade())


@pytest.mark.parametrize("fade", [FAST, Fade(0.0, 0.0), Fade(0.01, 0.0002)])
def test_a_unit_fades_at_the_rates_it_is_given(fade: Fade) -> None:
    idle = UnitModel(UNIT, random.Random(1), tz=MESA.tz, fade=fade, control_mode=STOP,
                     soc=0.8)
    busy = UnitModel(UNIT, random.Random(1), tz=MESA.tz, fade=fade,
                     control_mode=FOLLOW_SETPOINT, setpoint_kw=1000.0, soc=0.8)
    for m in (idle, busy):
        m.step(T0, 0.0)
    start = busy.soh
    assert start is not None and idle.soh == start
    # From the unit's age at the rates given (±0.5 %: each unit's own spread).
    assert start == pytest.approx(initial_soh(UNIT, T0, fade), abs=0.0051)
    for i in range(60):
        for m in (idle, busy):
            m.step(T0 + (i + 1) * 60.0, 60.0)
    assert idle.soh is not None and busy.soh is not None
    assert start - idle.soh == pytest.approx(fade.calendar_per_year * 3600 / YEAR_S,
                                             rel=1e-6, abs=1e-15)
    cycles = 1000 / EFFICIENCY / (2 * UNIT.rated_energy_kwh)  # an hour at 1 MW discharging
    assert idle.soh - busy.soh == pytest.approx(fade.cycle_per_efc * cycles, rel=1e-6,
                                                abs=1e-15)


def test_a_recording_fades_at_the_rates_it_is_given() -> None:
    start_ms = int(T0 * 1000)

    def soh(fade: Fade | None) -> list[float]:
        end_ms, step = start_ms + 86_400_000, 3_600_000
        samples = record(FLEET, start_ms, end_ms, step, seed=3) if fade is None \
            else record(FLEET, start_ms, end_ms, step, seed=3, fade=fade)
        return [float(a.tags["soh_pct"]) for s in samples for a in s.assets if a.id == UNIT.id]

    default, explicit, fast = soh(None), soh(Fade()), soh(FAST)
    assert default == explicit  # the default run is the model's constants, bit for bit
    assert len(fast) == 24
    assert fast[0] - fast[-1] > 4 * (default[0] - default[-1])  # a day of faster fade
