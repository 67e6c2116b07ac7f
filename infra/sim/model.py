"""Simulated physics of one battery unit: dispatch, state of charge, temperature, faults.

Pure and deterministic: time and randomness come in as arguments, so a seed and a clock
reproduce a run exactly."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from contracts.fleet import Unit

RUNNING, STANDBY, DERATED, FAULT, MAINTENANCE = 0, 1, 2, 3, 4
AUTO, FOLLOW_SETPOINT, STOP = 0, 1, 2  # control modes (the `control_mode` setpoint)
EFFICIENCY = 0.94  # one-way
AMBIENT_C = 22.0


@dataclass
class Fault:
    code: int
    until_s: float  # simulation time, epoch seconds


@dataclass
class UnitModel:
    unit: Unit
    rng: random.Random
    soc: float = 0.5
    temperature_c: float = AMBIENT_C
    power_kw: float = 0.0
    faults: dict[str, Fault] = field(default_factory=dict)  # by asset id
    phase: float = 0.0
    # Setpoints written over Modbus: the mode, the power to hold in FOLLOW_SETPOINT, and a cap
    # on |power| in every mode (None: the rated power).
    control_mode: int = AUTO
    setpoint_kw: float = 0.0
    limit_kw: float | None = None

    def __post_init__(self) -> None:
        self.phase = self.rng.uniform(-0.4, 0.4)
        self.soc = self.rng.uniform(0.35, 0.65)

    def code_of(self, asset_id: str, now_s: float) -> int:
        fault = self.faults.get(asset_id)
        if fault and fault.until_s > now_s:
            return fault.code
        return RUNNING

    def available_power_kw(self, now_s: float) -> float:
        if self.code_of(self.unit.id, now_s) != RUNNING:
            return 0.0
        return sum(inv.rated_power_kw for inv in self.unit.inverters
                   if self.code_of(inv.id, now_s) == RUNNING) if self.unit.inverters \
            else self.unit.rated_power_kw

    def step(self, now_s: float, dt_s: float) -> None:
        """Advance by `dt_s`: follow a daily dispatch shape within SOC and availability."""
        self.faults = {a: f for a, f in self.faults.items() if f.until_s > now_s}
        hours = (now_s / 3600.0) % 24.0
        # Charge around midday (cheap solar), discharge at the evening peak.
        shape = math.sin(2 * math.pi * (hours - 14.0) / 24.0 + self.phase)
        request = -shape * 0.8 * self.unit.rated_power_kw + self.rng.gauss(0, 20)
        if self.control_mode == FOLLOW_SETPOINT:
            request = self.setpoint_kw
        elif self.control_mode == STOP:
            request = 0.0
        limit = min(self.available_power_kw(now_s), self.power_limit_kw)
        power = max(-limit, min(limit, request))
        energy = self.unit.rated_energy_kwh
        if (power > 0 and self.soc <= 0.05) or (power < 0 and self.soc >= 0.95):
            power = 0.0
        delta_kwh = (power / EFFICIENCY if power > 0 else power * EFFICIENCY) * dt_s / 3600.0
        self.soc = min(1.0, max(0.0, self.soc - delta_kwh / energy))
        self.power_kw = power
        heat = abs(power) / self.unit.rated_power_kw * 12.0
        self.temperature_c += (AMBIENT_C + heat - self.temperature_c) * min(1.0, dt_s / 900.0)

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
        unit = self.unit
        available = self.available_power_kw(now_s)
        unit_code = self.code_of(unit.id, now_s)
        if unit_code == RUNNING and available < unit.rated_power_kw:
            unit_code = DERATED
        elif unit_code == RUNNING and self.power_kw == 0:
            unit_code = STANDBY
        out = {unit.id: {"status_code": unit_code, "active_power_kw": self.power_kw,
                         "available_power_kw": available, "soc_pct": self.soc * 100}}
        running = [i for i in unit.inverters if self.code_of(i.id, now_s) == RUNNING]
        for inv in unit.inverters:
            code = self.code_of(inv.id, now_s) if unit_code != FAULT else FAULT
            share = inv.rated_power_kw / sum(i.rated_power_kw for i in running) \
                if inv in running else 0.0
            out[inv.id] = {
                "status_code": code,
                "active_power_kw": self.power_kw * share,
                "available_power_kw": inv.rated_power_kw if code == RUNNING else 0.0,
                "temperature_c": self.temperature_c + 3.0,
            }
            for blk in inv.blocks:
                code = self.code_of(blk.id, now_s)
                out[blk.id] = {
                    "status_code": code,
                    "soc_pct": self.soc * 100,
                    "cell_temp_max_c": self.temperature_c + 0.5 + self.rng.uniform(-0.1, 0.1),
                    "available_energy_kwh": blk.rated_energy_kwh if code == RUNNING else 0.0,
                }
        return out
