"""Simulated physics of one battery unit: dispatch, state of charge, temperature, health,
faults.

- **Dispatch** follows a daily day-ahead price shape of a solar-heavy grid (a "duck curve":
  cheap around midday, dear at the evening peak) in the site's local time: the unit's EMS
  charges below `CHARGE_BELOW_EUR_MWH`, discharges above `DISCHARGE_ABOVE_EUR_MWH`, harder the
  further the price is from the threshold, and keeps the state of charge within its operating
  window (`AUTO_SOC`). A control loop may instead hold a setpoint or stop the unit.
- **State of charge** integrates the power at the battery terminals with a one-way
  `EFFICIENCY` (discharging P kW drains P/η; charging P kW stores P·η), over the usable
  capacity (rated energy × state of health). The controller's hard limits (`HARD_SOC`) are
  never crossed: the power is cut to what is left.
- **Temperature** of the battery enclosure: a thermal mass exchanging heat with the ambient
  air through its envelope (time constant `ENVELOPE_TAU_S`), warmed by the conversion losses,
  cooled by the HVAC above `COOL_SETPOINT_C` and heated below `HEAT_SETPOINT_C`, within its
  capacity; in between it floats, following the ambient's daily cycle with a lag. Above
  `THERMAL_DERATE_C` the controller derates linearly to nothing at `THERMAL_TRIP_C`.
- **State of health** starts from the unit's age (calendar and an assumed cycling history)
  and fades with time and with every equivalent full cycle. It is reported (`soh_pct`) and
  shrinks the usable capacity; it is *not* an availability derate: the blocks' available
  energy stays their rated energy, as LTSAs treat capacity fade apart from availability
  (and the status rules would call any block below 99.5 % of its rating derated).
- **Faults** (by asset: trip, maintenance) and **limits** (by cause: a derate, a failed
  HVAC) end at their own time.

Pure and deterministic: time and randomness come in as arguments, so a seed and a clock
reproduce a run exactly."""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

from contracts.fleet import Unit

RUNNING, STANDBY, DERATED, FAULT, MAINTENANCE = 0, 1, 2, 3, 4
AUTO, FOLLOW_SETPOINT, STOP = 0, 1, 2  # control modes (the `control_mode` setpoint)
EFFICIENCY = 0.94  # one-way, grid ↔ cells

# Dispatch (AUTO): price thresholds, the share of rated power used at full signal, and the
# state-of-charge window the EMS keeps (the controller's hard limits are wider).
CHARGE_BELOW_EUR_MWH = 45.0
DISCHARGE_ABOVE_EUR_MWH = 95.0
FULL_SIGNAL_EUR_MWH = 15.0  # this far past a threshold: full dispatch power
DISPATCH_SHARE = 0.9
AUTO_SOC = (0.10, 0.90)
HARD_SOC = (0.05, 0.95)
SOC_TAPER = 0.05  # the EMS ramps down over the last 5 % of its window

# Thermal model (per unit; capacities scale with rated energy).
THERMAL_MASS_KJ_PER_K_PER_KWH = 6.0  # cells and racks: ~6 kg/kWh at ~1 kJ/(kg·K)
ENVELOPE_TAU_S = 6 * 3600.0  # the enclosure relaxes to ambient with this time constant
LOSS_HEAT_SHARE = 0.5  # share of the conversion losses released inside the enclosure
COOL_SETPOINT_C = 25.0
HEAT_SETPOINT_C = 12.0
HVAC_GAIN_KW_PER_K = 40.0
HVAC_KW_PER_MWH = 25.0  # cooling capacity; heating has half of it
THERMAL_DERATE_C, THERMAL_TRIP_C = 45.0, 55.0
THERMAL_SUBSTEP_S = 60.0  # explicit integration in steps no longer than this
HVAC_FAILURE_DERATE = 0.5  # the controller halves power while its HVAC is down
HVAC_FAULT_BIT = 1 << 2  # … and says why in its alarm word (profile bess-unit-v1)

# Health: LFP-like fade.
CALENDAR_FADE_PER_YEAR = 0.015
CYCLE_FADE_PER_EFC = 0.00004  # 20 % over 5,000 equivalent full cycles
ASSUMED_EFC_PER_DAY = 0.8  # cycling history assumed before the simulation starts
YEAR_S = 365.25 * 86_400.0


@dataclass(frozen=True)
class Climate:
    """A site's ambient air: a daily cosine, warmest at 15:00 local time."""

    mean_c: float = 15.0
    swing_c: float = 5.0  # half the day's peak-to-peak range

    def ambient_c(self, local_hour: float) -> float:
        return self.mean_c + self.swing_c * math.cos(2 * math.pi * (local_hour - 15.0) / 24.0)


def _bump(hour: float, centre: float, width: float) -> float:
    distance = (hour - centre + 12.0) % 24.0 - 12.0  # around the clock
    return math.exp(-0.5 * (distance / width) ** 2)


def price_eur_mwh(local_hour: float) -> float:
    """The day-ahead price shape (€/MWh) of a grid with much solar: a night trough, a
    morning shoulder, a deep midday dip, the evening peak around 19:00."""
    return (70.0 + 55.0 * _bump(local_hour, 19.0, 1.8) + 25.0 * _bump(local_hour, 7.5, 1.3)
            - 45.0 * _bump(local_hour, 13.0, 2.6) - 15.0 * _bump(local_hour, 3.5, 2.0))


def dispatch_signal(price: float) -> float:
    """-1 (charge at full power) … 0 (idle) … 1 (discharge at full power)."""
    if price <= CHARGE_BELOW_EUR_MWH:
        return -min(1.0, (CHARGE_BELOW_EUR_MWH - price) / FULL_SIGNAL_EUR_MWH)
    if price >= DISCHARGE_ABOVE_EUR_MWH:
        return min(1.0, (price - DISCHARGE_ABOVE_EUR_MWH) / FULL_SIGNAL_EUR_MWH)
    return 0.0


def initial_soh(unit: Unit, now_s: float) -> float:
    """State of health from the unit's age at `now_s` (fraction of rated energy)."""
    commissioned = dt.datetime.combine(unit.commissioned, dt.time(), dt.UTC).timestamp()
    age_s = max(0.0, now_s - commissioned)
    cycles = ASSUMED_EFC_PER_DAY * age_s / 86_400.0
    return max(0.5, 1.0 - CALENDAR_FADE_PER_YEAR * age_s / YEAR_S - CYCLE_FADE_PER_EFC * cycles)


@dataclass
class Fault:
    code: int
    until_s: float  # simulation time, epoch seconds


@dataclass
class Limit:
    """A cap on the unit's available power: `factor` of what it could do, until `until_s`."""

    factor: float
    until_s: float


@dataclass
class UnitModel:
    unit: Unit
    rng: random.Random
    tz: dt.tzinfo = dt.UTC  # the site's: dispatch and ambient follow local time
    climate: Climate = Climate()
    soc: float = 0.5
    temperature_c: float | None = None  # enclosure air; None: settled at the first step
    soh: float | None = None  # None: from the unit's age at the first step
    power_kw: float = 0.0  # at the grid side; > 0 discharging
    faults: dict[str, Fault] = field(default_factory=dict)  # by asset id
    limits: dict[str, Limit] = field(default_factory=dict)  # by cause ("derate", …)
    shift_h: float = 0.0  # this unit's EMS runs a little off the site's schedule
    # Setpoints written over Modbus: the mode, the power to hold in FOLLOW_SETPOINT, and a cap
    # on |power| in every mode (None: the rated power).
    control_mode: int = AUTO
    setpoint_kw: float = 0.0
    limit_kw: float | None = None
    throughput_kwh: float = 0.0  # at the cells, since the simulation started
    _soh_spread: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.shift_h = self.rng.uniform(-0.25, 0.25)
        self.soc = self.rng.uniform(0.35, 0.65)
        self._soh_spread = self.rng.uniform(-0.005, 0.005)

    # -- time ----------------------------------------------------------------------------

    def local_hour(self, now_s: float) -> float:
        offset = self.tz.utcoffset(dt.datetime.fromtimestamp(now_s, dt.UTC))
        seconds = offset.total_seconds() if offset is not None else 0.0
        return ((now_s + seconds) / 3600.0) % 24.0

    def ambient_c(self, now_s: float) -> float:
        return self.climate.ambient_c(self.local_hour(now_s))

    def _settle(self, now_s: float) -> None:
        """First values that depend on time: health from age, temperature where the HVAC
        would hold the enclosure at this ambient."""
        if self.soh is None:
            self.soh = min(1.0, initial_soh(self.unit, now_s) + self._soh_spread)
        if self.temperature_c is None:
            self.temperature_c = min(COOL_SETPOINT_C,
                                     max(HEAT_SETPOINT_C, self.ambient_c(now_s)))

    # -- faults and limits -------------------------------------------------------------

    def code_of(self, asset_id: str, now_s: float) -> int:
        fault = self.faults.get(asset_id)
        if fault and fault.until_s > now_s:
            return fault.code
        return RUNNING

    def limited(self, cause: str, now_s: float) -> bool:
        limit = self.limits.get(cause)
        return limit is not None and limit.until_s > now_s

    def hvac_working(self, now_s: float) -> bool:
        return not self.limited("hvac_failure", now_s)

    def thermal_factor(self) -> float:
        """The controller's own derate at high temperature."""
        temperature = self.temperature_c if self.temperature_c is not None else 20.0
        return min(1.0, max(0.0, (THERMAL_TRIP_C - temperature)
                            / (THERMAL_TRIP_C - THERMAL_DERATE_C)))

    def available_power_kw(self, now_s: float) -> float:
        if self.code_of(self.unit.id, now_s) != RUNNING:
            return 0.0
        base = sum(inv.rated_power_kw for inv in self.unit.inverters
                   if self.code_of(inv.id, now_s) == RUNNING) if self.unit.inverters \
            else self.unit.rated_power_kw
        factor = self.thermal_factor()
        for limit in self.limits.values():
            if limit.until_s > now_s:
                factor *= limit.factor
        return base * factor

    @property
    def capacity_kwh(self) -> float:
        """Usable energy: rated × state of health."""
        return self.unit.rated_energy_kwh * (self.soh if self.soh is not None else 1.0)

    # -- physics -------------------------------------------------------------------------

    def requested_kw(self, now_s: float) -> float:
        """What the unit is asked for: the EMS's dispatch (AUTO) or the control loop's."""
        if self.control_mode == FOLLOW_SETPOINT:
            return self.setpoint_kw
        if self.control_mode == STOP:
            return 0.0
        signal = dispatch_signal(price_eur_mwh((self.local_hour(now_s) + self.shift_h) % 24))
        if signal == 0.0:
            return 0.0
        rated = self.unit.rated_power_kw
        request = signal * DISPATCH_SHARE * rated + self.rng.gauss(0.0, 0.01 * rated)
        low, high = AUTO_SOC  # taper towards the ends of the window
        room = (self.soc - low) if request > 0 else (high - self.soc)
        return request * min(1.0, max(0.0, room / SOC_TAPER))

    def step(self, now_s: float, dt_s: float) -> None:
        """Advance from `now_s - dt_s` to `now_s`: dispatch within availability and state of
        charge, then energy, health and heat over the step."""
        start_s = now_s - dt_s
        self._settle(start_s)
        self.faults = {a: f for a, f in self.faults.items() if f.until_s > now_s}
        self.limits = {c: lim for c, lim in self.limits.items() if lim.until_s > now_s}
        limit = min(self.available_power_kw(now_s), self.power_limit_kw)
        power = max(-limit, min(limit, self.requested_kw(now_s)))
        power = self._within_soc(power, dt_s)
        hours = dt_s / 3600.0
        rated_kwh = self.unit.rated_energy_kwh
        # Energy at the cells: discharging P drains P/η, charging P stores P·η.
        cell_kwh = (power / EFFICIENCY if power > 0 else power * EFFICIENCY) * hours
        self.soc = min(1.0, max(0.0, self.soc - cell_kwh / self.capacity_kwh))
        self.throughput_kwh += abs(cell_kwh)
        assert self.soh is not None
        self.soh -= (CALENDAR_FADE_PER_YEAR * dt_s / YEAR_S
                     + CYCLE_FADE_PER_EFC * abs(cell_kwh) / (2.0 * rated_kwh))
        self.power_kw = power
        loss_kw = abs(power) * ((1.0 / EFFICIENCY - 1.0) if power > 0 else (1.0 - EFFICIENCY))
        self._heat(start_s, dt_s, LOSS_HEAT_SHARE * loss_kw, self.hvac_working(now_s))

    def _within_soc(self, power: float, dt_s: float) -> float:
        """`power` cut so the step ends inside the state-of-charge window: the EMS's in AUTO,
        the controller's hard limits otherwise."""
        low, high = AUTO_SOC if self.control_mode == AUTO else HARD_SOC
        hours = dt_s / 3600.0
        if power > 0:
            if hours <= 0:
                return power if self.soc > low else 0.0
            return min(power, max(0.0, self.soc - low) * self.capacity_kwh * EFFICIENCY / hours)
        if power < 0:
            if hours <= 0:
                return power if self.soc < high else 0.0
            return max(power, -max(0.0, high - self.soc) * self.capacity_kwh / EFFICIENCY
                       / hours)
        return power

    def hvac_kw(self, temperature_c: float) -> float:
        """Heat the HVAC removes (> 0 cooling, < 0 heating) at this enclosure temperature."""
        capacity = HVAC_KW_PER_MWH * self.unit.rated_energy_kwh / 1000.0
        if temperature_c > COOL_SETPOINT_C:
            return min(capacity, HVAC_GAIN_KW_PER_K * (temperature_c - COOL_SETPOINT_C))
        if temperature_c < HEAT_SETPOINT_C:
            return -min(capacity / 2, HVAC_GAIN_KW_PER_K * (HEAT_SETPOINT_C - temperature_c))
        return 0.0

    @property
    def thermal_mass_kj_per_k(self) -> float:
        return THERMAL_MASS_KJ_PER_K_PER_KWH * self.unit.rated_energy_kwh

    def _heat(self, start_s: float, dt_s: float, heat_kw: float, hvac: bool) -> None:
        """Integrate the enclosure temperature over the step (explicit Euler, sub-steps of
        at most THERMAL_SUBSTEP_S): C·dT/dt = UA·(T_ambient − T) + heat − HVAC."""
        assert self.temperature_c is not None
        mass = self.thermal_mass_kj_per_k
        conductance = mass / ENVELOPE_TAU_S  # kW/K
        n = max(1, math.ceil(dt_s / THERMAL_SUBSTEP_S))
        h = dt_s / n
        start_hour = self.local_hour(start_s)
        temperature = self.temperature_c
        for i in range(n):
            ambient = self.climate.ambient_c((start_hour + i * h / 3600.0) % 24.0)
            cooling = self.hvac_kw(temperature) if hvac else 0.0
            temperature += h * (conductance * (ambient - temperature) + heat_kw - cooling) / mass
        self.temperature_c = temperature

    @property
    def power_limit_kw(self) -> float:
        return self.unit.rated_power_kw if self.limit_kw is None else self.limit_kw

    def controls(self) -> dict[str, float]:
        """The unit's setpoints as its controller reports them."""
        return {"control_mode": self.control_mode, "active_power_setpoint_kw": self.setpoint_kw,
                "active_power_limit_kw": self.power_limit_kw}

    def apply_control(self, tag: str, value: float) -> float:
        """Take a written setpoint the way a controller would: clamped to what the unit can
        do (an unknown mode is ignored). Returns the value now held; KeyError for a tag that
        is no setpoint."""
        rated = self.unit.rated_power_kw
        if tag == "control_mode":
            if value in (AUTO, FOLLOW_SETPOINT, STOP):
                self.control_mode = int(value)
            return self.control_mode
        if tag == "active_power_setpoint_kw":
            self.setpoint_kw = max(-rated, min(rated, value))
            return self.setpoint_kw
        if tag == "active_power_limit_kw":
            self.limit_kw = max(0.0, min(rated, value))
            return self.limit_kw
        raise KeyError(tag)

    def readings(self, now_s: float) -> dict[str, dict[str, float]]:
        """Tag values per asset id, in engineering units (what the registers encode)."""
        self._settle(now_s)
        assert self.temperature_c is not None and self.soh is not None
        unit = self.unit
        available = self.available_power_kw(now_s)
        unit_code = self.code_of(unit.id, now_s)
        if unit_code == RUNNING and available < unit.rated_power_kw:
            unit_code = DERATED
        elif unit_code == RUNNING and self.power_kw == 0:
            unit_code = STANDBY
        out = {unit.id: {"status_code": unit_code, "active_power_kw": self.power_kw,
                         "available_power_kw": available, "soc_pct": self.soc * 100,
                         "soh_pct": self.soh * 100,
                         "alarm_word": 0 if self.hvac_working(now_s) else HVAC_FAULT_BIT}}
        running = [i for i in unit.inverters if self.code_of(i.id, now_s) == RUNNING]
        load = abs(self.power_kw) / unit.rated_power_kw
        for inv in unit.inverters:
            code = self.code_of(inv.id, now_s) if unit_code != FAULT else FAULT
            share = inv.rated_power_kw / sum(i.rated_power_kw for i in running) \
                if inv in running else 0.0
            inv_power = self.power_kw * share
            out[inv.id] = {
                "status_code": code,
                "active_power_kw": inv_power,
                "available_power_kw": inv.rated_power_kw if code == RUNNING else 0.0,
                "temperature_c": (self.temperature_c + 3.0
                                  + 12.0 * abs(inv_power) / inv.rated_power_kw
                                  + self.rng.uniform(-0.05, 0.05)),
            }
            for blk in inv.blocks:
                code = self.code_of(blk.id, now_s)
                out[blk.id] = {
                    "status_code": code,
                    "soc_pct": self.soc * 100,
                    "cell_temp_max_c": (self.temperature_c + 0.5 + 2.0 * load
                                        + self.rng.uniform(-0.1, 0.1)),
                    "available_energy_kwh": blk.rated_energy_kwh if code == RUNNING else 0.0,
                }
        return out
