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
  never crossed while its protections work: the power is cut to what is left.
- **Temperature** of the battery enclosure: a thermal mass exchanging heat with the ambient
  air through its envelope (time constant `ENVELOPE_TAU_S`), warmed by the conversion losses,
  cooled by the HVAC above `COOL_SETPOINT_C` and heated below `HEAT_SETPOINT_C`, within its
  capacity; in between it floats, following the ambient's daily cycle with a lag. Above
  `THERMAL_DERATE_C` the controller derates linearly to nothing at `THERMAL_TRIP_C` (a
  protection).
- **State of health** starts from the unit's age (calendar and an assumed cycling history)
  and fades with time and with every equivalent full cycle, at the unit's `fade` rates
  (settable per unit, for tests of the health analytics; default `CALENDAR_FADE_PER_YEAR`
  and `CYCLE_FADE_PER_EFC`). It is reported (`soh_pct`) and
  shrinks the usable capacity; it is *not* an availability derate: the blocks' available
  energy stays their rated energy, as LTSAs treat capacity fade apart from availability
  (and the status rules would call any block below 99.5 % of its rating derated).
- **Faults** (by asset: trip, maintenance), **limits** (by cause: a derate, a failed
  HVAC) and **conditions** (by kind: the misbehaviours below) end at their own time.
- **Setpoints** a control loop writes: the mode (`control_mode`), the power to hold, a cap
  on |power| (`active_power_limit_kw`), separate caps on charging and discharging
  (`charge_limit_kw`, `discharge_limit_kw`: honoured in every mode, with protections lost
  too) and a `heartbeat` counter the simulator's watchdog watches (infra/sim/server.py).
- **Conditions** that put equipment at risk, for the control loop to catch:
  `protection_loss` (the controller's own protections are gone: no thermal derate, no
  HVAC-failure derate, no rated-power clamp, no hard SOC limits; what the control loop
  commanded — mode, setpoint, the limits it wrote — is still obeyed), `heat_leak` (a
  failing busbar joint releases `HEAT_LEAK_SHARE` of |power| as heat in the enclosure),
  `overload` (the EMS asks for `OVERLOAD_FACTOR` × rated power) and `soc_runaway` (the EMS
  ignores its SOC window and drives towards the nearer end).
- **Damage**: simulated seconds (and entries) in which the equipment is being harmed, by
  kind: `cell_overtemp` (hottest cell above `DAMAGE_CELL_TEMP_C`), `overcharge`,
  `overdischarge` (SOC pinned at 100 %/0 % with power still flowing in/out) and
  `overcurrent` (|power| above `DAMAGE_CURRENT_FACTOR` × rated). A unit whose protections
  work never counts any: damage is what proves a control loop protects the equipment when
  they do not.

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
WATCHDOG_BIT = 1 << 3  # the heartbeat stopped: the controller fell back to STOP
PROTECTION_LOST_BIT = 1 << 4  # the controller's own protections are gone

# Conditions (injected faults that change behaviour rather than availability).
CONDITIONS = ("protection_loss", "heat_leak", "overload", "soc_runaway")
HEAT_LEAK_SHARE = 0.25  # heat_leak: this share of |power| becomes heat in the enclosure
OVERLOAD_FACTOR = 1.3  # overload: the EMS asks for this much of the rated power

# Damage: what harms the equipment (counted, never prevented: protections prevent it).
DAMAGE_KINDS = ("cell_overtemp", "overcharge", "overdischarge", "overcurrent")
DAMAGE_CELL_TEMP_C = 60.0  # hottest cell, deterministic part of what the blocks report
DAMAGE_CURRENT_FACTOR = 1.05  # |power| above this × rated stresses conductors and cells
HEARTBEAT_MAX = 65535  # a uint16 register

# Health: LFP-like fade.
CALENDAR_FADE_PER_YEAR = 0.015
CYCLE_FADE_PER_EFC = 0.00004  # 20 % over 5,000 equivalent full cycles
ASSUMED_EFC_PER_DAY = 0.8  # cycling history assumed before the simulation starts
YEAR_S = 365.25 * 86_400.0

# What the controller reports of the grid and of its DC side (deterministic: no random draws,
# so the other outputs of a seed stay as they were).
NOMINAL_HZ = 50.0
V_PU_DAILY_SWING = 0.015  # the feeder's voltage: highest at night, lowest at the evening peak
V_PU_PER_LOAD = 0.02  # discharging at rated power lifts the voltage this much (per unit)
VOLT_VAR_DROOP = 10.0  # reactive power, in rated kVA per unit of voltage off 1.0 …
Q_MAX_SHARE = 0.3  # … within ± this share of the rated power
DC_V_EMPTY, DC_V_FULL = 1_100.0, 1_300.0  # the string's open-circuit voltage from 0 to 100 %
DC_RESISTANCE_OHM = 0.05
CELL_AVG_RISE_C = 0.3  # average cell over the enclosure (the hottest is 0.5 + 2 × load)
COOLING_IDLE, COOLING_COOLING, COOLING_HEATING, COOLING_FAULT = 0, 1, 2, 3  # cooling_status


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


@dataclass(frozen=True)
class Fade:
    """How fast a unit's state of health fades (fractions of rated energy): a year of
    calendar time, and an equivalent full cycle (cell throughput / (2 × rated energy))."""

    calendar_per_year: float = CALENDAR_FADE_PER_YEAR
    cycle_per_efc: float = CYCLE_FADE_PER_EFC


DEFAULT_FADE = Fade()


def initial_soh(unit: Unit, now_s: float, fade: Fade = DEFAULT_FADE) -> float:
    """State of health from the unit's age at `now_s` (fraction of rated energy)."""
    commissioned = dt.datetime.combine(unit.commissioned, dt.time(), dt.UTC).timestamp()
    age_s = max(0.0, now_s - commissioned)
    cycles = assumed_cycles(unit, now_s)
    return max(0.5, 1.0 - fade.calendar_per_year * age_s / YEAR_S
               - fade.cycle_per_efc * cycles)


def assumed_cycles(unit: Unit, now_s: float) -> float:
    """Equivalent full cycles the unit is assumed to have made before `now_s`."""
    commissioned = dt.datetime.combine(unit.commissioned, dt.time(), dt.UTC).timestamp()
    return ASSUMED_EFC_PER_DAY * max(0.0, now_s - commissioned) / 86_400.0


def grid_v_pu(local_hour: float, load: float) -> float:
    """The voltage at the unit's point of connection (per unit) for a signed load (P / rated
    power, > 0 discharging), before its own reactive power."""
    return (1.0 + V_PU_DAILY_SWING * math.cos(2 * math.pi * (local_hour - 3.0) / 24.0)
            + V_PU_PER_LOAD * load)


def grid_f_hz(now_s: float) -> float:
    """The grid frequency: a slow wander of some tens of mHz around nominal."""
    return (NOMINAL_HZ + 0.03 * math.sin(2 * math.pi * now_s / 900.0)
            + 0.01 * math.sin(2 * math.pi * now_s / 137.0))


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
class Condition:
    """A behaviour-changing fault until `until_s`. `direction` (overload, soc_runaway): the
    EMS's push, fixed when the condition starts: +1 discharging, -1 charging."""

    until_s: float
    direction: int = 0


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
    # Caps on charging and discharging power (None: never written — the rated power, a
    # clamp that is one of the controller's protections and goes with them).
    charge_limit_kw: float | None = None
    discharge_limit_kw: float | None = None
    heartbeat: int = 0  # the control loop's watchdog counter, as last written
    watchdog_tripped: bool = False  # set and cleared by the simulator's watchdog
    conditions: dict[str, Condition] = field(default_factory=dict)  # by kind
    throughput_kwh: float = 0.0  # at the cells, since the simulation started
    # Simulated seconds spent damaging the equipment, and how often each kind began.
    damage: dict[str, float] = field(default_factory=dict)
    damage_events: dict[str, int] = field(default_factory=dict)
    fade: Fade = DEFAULT_FADE  # the default: CALENDAR_FADE_PER_YEAR, CYCLE_FADE_PER_EFC
    _damaging: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _soh_spread: float = field(default=0.0, init=False, repr=False)
    _initial_efc: float | None = field(default=None, init=False, repr=False)

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
            self.soh = min(1.0, initial_soh(self.unit, now_s, self.fade) + self._soh_spread)
        if self._initial_efc is None:
            self._initial_efc = assumed_cycles(self.unit, now_s)
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

    def has(self, condition: str, now_s: float) -> bool:
        active = self.conditions.get(condition)
        return active is not None and active.until_s > now_s

    def protected(self, now_s: float) -> bool:
        """False while a `protection_loss` lasts."""
        return not self.has("protection_loss", now_s)

    def start_condition(self, kind: str, until_s: float) -> None:
        """Begin a condition (replacing one of its kind). The EMS's push of `overload` and
        `soc_runaway` is fixed now, from the state of charge, so a run is deterministic
        whatever the price does: an overload charges below 50 % and discharges from there
        (the way a full-strength dispatch signal would go), a runaway heads for the nearer
        end (charging from 50 % up, discharging below)."""
        if kind not in CONDITIONS:
            raise KeyError(kind)
        direction = 0
        if kind == "overload":
            direction = -1 if self.soc < 0.5 else 1
        elif kind == "soc_runaway":
            direction = -1 if self.soc >= 0.5 else 1
        self.conditions[kind] = Condition(until_s, direction)

    def thermal_factor(self) -> float:
        """The controller's own derate at high temperature."""
        temperature = self.temperature_c if self.temperature_c is not None else 20.0
        return min(1.0, max(0.0, (THERMAL_TRIP_C - temperature)
                            / (THERMAL_TRIP_C - THERMAL_DERATE_C)))

    def available_power_kw(self, now_s: float) -> float:
        """What the controller believes it can do. Without its protections it knows of no
        thermal or HVAC-failure derate (an operator's derate still counts)."""
        if self.code_of(self.unit.id, now_s) != RUNNING:
            return 0.0
        base = sum(inv.rated_power_kw for inv in self.unit.inverters
                   if self.code_of(inv.id, now_s) == RUNNING) if self.unit.inverters \
            else self.unit.rated_power_kw
        protected = self.protected(now_s)
        factor = self.thermal_factor() if protected else 1.0
        for cause, limit in self.limits.items():
            if limit.until_s > now_s and (protected or cause != "hvac_failure"):
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
        rated = self.unit.rated_power_kw
        runaway, overload = self.conditions.get("soc_runaway"), self.conditions.get("overload")
        runaway = runaway if runaway is not None and runaway.until_s > now_s else None
        overload = overload if overload is not None and overload.until_s > now_s else None
        if runaway is not None:  # no window, no taper: full power towards the nearer end
            return runaway.direction * (OVERLOAD_FACTOR if overload else DISPATCH_SHARE) * rated
        if overload is not None:  # the EMS keeps its window and taper
            request = overload.direction * OVERLOAD_FACTOR * rated
            return request * self._taper(request)
        signal = dispatch_signal(price_eur_mwh((self.local_hour(now_s) + self.shift_h) % 24))
        if signal == 0.0:
            return 0.0
        request = signal * DISPATCH_SHARE * rated + self.rng.gauss(0.0, 0.01 * rated)
        return request * self._taper(request)

    def _taper(self, request: float) -> float:
        """The EMS's share of `request` near the ends of its window."""
        low, high = AUTO_SOC
        room = (self.soc - low) if request > 0 else (high - self.soc)
        return min(1.0, max(0.0, room / SOC_TAPER))

    def _caps(self, now_s: float) -> tuple[float, float]:
        """(charging, discharging) power the controller allows now. With its protections it
        clamps to what is available and to every limit (unwritten ones: the rated power);
        without them only a unit that is down (or all of whose inverters are) stays at 0, and
        only written limits hold."""
        protected = self.protected(now_s)
        if protected:
            cap = min(self.available_power_kw(now_s), self.power_limit_kw)
        elif self.code_of(self.unit.id, now_s) != RUNNING or (self.unit.inverters and not any(
                self.code_of(inv.id, now_s) == RUNNING for inv in self.unit.inverters)):
            cap = 0.0  # nothing to drive the power through
        else:
            cap = math.inf if self.limit_kw is None else self.limit_kw
        rated = self.unit.rated_power_kw
        charge, discharge = self.charge_limit_kw, self.discharge_limit_kw
        if protected:
            charge = rated if charge is None else charge
            discharge = rated if discharge is None else discharge
        return (cap if charge is None else min(cap, charge),
                cap if discharge is None else min(cap, discharge))

    def step(self, now_s: float, dt_s: float) -> None:
        """Advance from `now_s - dt_s` to `now_s`: dispatch within availability and state of
        charge, then energy, health and heat over the step."""
        start_s = now_s - dt_s
        self._settle(start_s)
        self.faults = {a: f for a, f in self.faults.items() if f.until_s > now_s}
        self.limits = {c: lim for c, lim in self.limits.items() if lim.until_s > now_s}
        self.conditions = {k: c for k, c in self.conditions.items() if c.until_s > now_s}
        charge_cap, discharge_cap = self._caps(now_s)
        power = max(-charge_cap, min(discharge_cap, self.requested_kw(now_s)))
        power = self._within_soc(power, dt_s, now_s)
        hours = dt_s / 3600.0
        rated_kwh = self.unit.rated_energy_kwh
        # Energy at the cells: discharging P drains P/η, charging P stores P·η.
        cell_kwh = (power / EFFICIENCY if power > 0 else power * EFFICIENCY) * hours
        unclamped = self.soc - cell_kwh / self.capacity_kwh
        self.soc = min(1.0, max(0.0, unclamped))
        self.throughput_kwh += abs(cell_kwh)
        assert self.soh is not None
        self.soh -= (self.fade.calendar_per_year * dt_s / YEAR_S
                     + self.fade.cycle_per_efc * abs(cell_kwh) / (2.0 * rated_kwh))
        self.power_kw = power
        loss_kw = abs(power) * ((1.0 / EFFICIENCY - 1.0) if power > 0 else (1.0 - EFFICIENCY))
        heat_kw = LOSS_HEAT_SHARE * loss_kw
        if self.has("heat_leak", now_s):
            heat_kw += HEAT_LEAK_SHARE * abs(power)
        self._heat(start_s, dt_s, heat_kw, self.hvac_working(now_s))
        self._count_damage(dt_s, unclamped)

    def cell_temp_max_c(self) -> float:
        """The hottest cell's temperature without the sensor noise the blocks report."""
        temperature = self.temperature_c if self.temperature_c is not None else 20.0
        return temperature + 0.5 + 2.0 * abs(self.power_kw) / self.unit.rated_power_kw

    def _count_damage(self, dt_s: float, unclamped_soc: float) -> None:
        """Add the step to each kind of damage going on at its end; a kind that was not going
        on in the previous step is a new event. A step of no time changes nothing."""
        if dt_s <= 0:
            return
        power = self.power_kw
        damaging = {kind for kind, harmful in (
            ("cell_overtemp", self.cell_temp_max_c() > DAMAGE_CELL_TEMP_C),
            ("overcharge", power < 0 and (unclamped_soc > 1.0 or self.soc >= 1.0)),
            ("overdischarge", power > 0 and (unclamped_soc < 0.0 or self.soc <= 0.0)),
            ("overcurrent", abs(power) > DAMAGE_CURRENT_FACTOR * self.unit.rated_power_kw),
        ) if harmful}
        for kind in damaging:
            self.damage[kind] = self.damage.get(kind, 0.0) + dt_s
            if kind not in self._damaging:
                self.damage_events[kind] = self.damage_events.get(kind, 0) + 1
        self._damaging = frozenset(damaging)

    def _within_soc(self, power: float, dt_s: float, now_s: float) -> float:
        """`power` cut so the step ends inside the state-of-charge window: the EMS's in AUTO
        (unless it runs away), the controller's hard limits otherwise — and none at all
        without its protections (the state of charge then pins at 0 or 100 % while the
        power still flows: damage)."""
        if self.control_mode == AUTO and not self.has("soc_runaway", now_s):
            low, high = AUTO_SOC
        elif self.protected(now_s):
            low, high = HARD_SOC
        else:
            return power
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
        """The unit's setpoints as its controller reports them (limits never written: the
        rated power)."""
        rated = self.unit.rated_power_kw
        return {"control_mode": self.control_mode, "active_power_setpoint_kw": self.setpoint_kw,
                "active_power_limit_kw": self.power_limit_kw,
                "charge_limit_kw": rated if self.charge_limit_kw is None
                else self.charge_limit_kw,
                "discharge_limit_kw": rated if self.discharge_limit_kw is None
                else self.discharge_limit_kw,
                "heartbeat": self.heartbeat}

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
        if tag == "charge_limit_kw":
            self.charge_limit_kw = max(0.0, min(rated, value))
            return self.charge_limit_kw
        if tag == "discharge_limit_kw":
            self.discharge_limit_kw = max(0.0, min(rated, value))
            return self.discharge_limit_kw
        if tag == "heartbeat":
            self.heartbeat = max(0, min(HEARTBEAT_MAX, int(value)))
            return self.heartbeat
        raise KeyError(tag)

    def cooling_status(self, now_s: float) -> int:
        """What the HVAC is doing: idle, cooling, heating, or failed (COOLING_*)."""
        if not self.hvac_working(now_s):
            return COOLING_FAULT
        assert self.temperature_c is not None
        hvac = self.hvac_kw(self.temperature_c)
        return COOLING_COOLING if hvac > 0 else COOLING_HEATING if hvac < 0 else COOLING_IDLE

    def grid_and_dc(self, now_s: float, unit_code: int) -> dict[str, float]:
        """The unit's grid-side (reactive power, voltage, frequency) and DC-side (string
        voltage and current, average cell temperature, cycles, cooling) values: derived from
        the state, consistent with the power and the state of charge."""
        assert self.temperature_c is not None and self._initial_efc is not None
        rated = self.unit.rated_power_kw
        load = self.power_kw / rated
        v_grid = grid_v_pu(self.local_hour(now_s), load)
        # Volt-var: absorb above 1.0 pu, inject below, only while connected and running.
        q_share = max(-Q_MAX_SHARE, min(Q_MAX_SHARE, -VOLT_VAR_DROOP * (v_grid - 1.0))) \
            if unit_code in (RUNNING, STANDBY, DERATED) else 0.0
        q_kvar = q_share * rated
        # Its reactive power pulls the voltage back a little (a feeder's X/R of one).
        v_pu = v_grid + V_PU_PER_LOAD * q_share
        open_circuit = DC_V_EMPTY + (DC_V_FULL - DC_V_EMPTY) * self.soc
        # The DC current (> 0 discharging) of the power at the cells.
        cell_kw = self.power_kw / EFFICIENCY if self.power_kw > 0 \
            else self.power_kw * EFFICIENCY
        current = cell_kw * 1000.0 / open_circuit
        return {"q_kvar": q_kvar, "v_pu": v_pu, "f_hz": grid_f_hz(now_s),
                "voltage_v": open_circuit - DC_RESISTANCE_OHM * current, "current_a": current,
                "temp_c_avg": self.temperature_c + CELL_AVG_RISE_C + abs(load),
                "cycle_count": self._initial_efc
                + self.throughput_kwh / (2.0 * self.unit.rated_energy_kwh),
                "cooling_status": self.cooling_status(now_s)}

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
        alarms = (0 if self.hvac_working(now_s) else HVAC_FAULT_BIT) \
            | (WATCHDOG_BIT if self.watchdog_tripped else 0) \
            | (0 if self.protected(now_s) else PROTECTION_LOST_BIT)
        out = {unit.id: {"status_code": unit_code, "active_power_kw": self.power_kw,
                         "available_power_kw": available, "soc_pct": self.soc * 100,
                         "soh_pct": self.soh * 100, "alarm_word": alarms,
                         "load_pct": abs(self.power_kw) / unit.rated_power_kw * 100,
                         **self.grid_and_dc(now_s, unit_code)}}
        running = [i for i in unit.inverters if self.code_of(i.id, now_s) == RUNNING]
        for inv in unit.inverters:
            code = self.code_of(inv.id, now_s) if unit_code != FAULT else FAULT
            share = inv.rated_power_kw / sum(i.rated_power_kw for i in running) \
                if inv in running else 0.0
            inv_power = self.power_kw * share
            out[inv.id] = {
                "status_code": code,
                "active_power_kw": inv_power,
                "available_power_kw": inv.rated_power_kw if code == RUNNING else 0.0,
                # The one-way efficiency while it converts power, 0 while it does not.
                "efficiency_pct": EFFICIENCY * 100 if inv_power != 0 else 0.0,
                "temperature_c": (self.temperature_c + 3.0
                                  + 12.0 * abs(inv_power) / inv.rated_power_kw
                                  + self.rng.uniform(-0.05, 0.05)),
            }
            for blk in inv.blocks:
                code = self.code_of(blk.id, now_s)
                out[blk.id] = {
                    "status_code": code,
                    "soc_pct": self.soc * 100,
                    "cell_temp_max_c": self.cell_temp_max_c() + self.rng.uniform(-0.1, 0.1),
                    "available_energy_kwh": blk.rated_energy_kwh if code == RUNNING else 0.0,
                }
        return out
