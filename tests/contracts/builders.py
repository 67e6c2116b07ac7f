"""Small builders for contract-engine tests: a fleet, a contract with overrides, intervals in
site-local time — so each test states only what it is about."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from contracts.contract import Contract, parse_contract
from contracts.engine import Evaluation, evaluate
from contracts.fleet import Fleet, parse_fleet
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.periods import to_us

TZ = ZoneInfo("Europe/Stockholm")

FLEET: Fleet = parse_fleet("""
sites:
  - id: alpha
    customer: Alpha AB
    region: SE3
    timezone: Europe/Stockholm
    units:
      - id: u1
        rated_power_kw: 2500
        rated_energy_kwh: 5000
        commissioned: 2024-01-01
        inverters:
          - id: u1-i1
            rated_power_kw: 1500
            blocks:
              - {id: u1-i1-b1, rated_energy_kwh: 1000}
              - {id: u1-i1-b2, rated_energy_kwh: 3000}
          - id: u1-i2
            rated_power_kw: 1000
      - {id: u2, rated_power_kw: 1000, rated_energy_kwh: 4000, commissioned: 2024-01-01}
  - id: beta
    customer: Beta GmbH
    region: DE
    timezone: Europe/Berlin
    units:
      - {id: v1, rated_power_kw: 1000, rated_energy_kwh: 1000, commissioned: 2024-01-01}
""", "fleet.yaml")

BASE_CONTRACT: dict[str, Any] = {
    "id": "LTSA-T",
    "site": "alpha",
    "start": "2024-06-01",  # so June starts a contract year: no earlier months to settle
    "term_years": 20,
    "measurement_period": "month",
    "availability": {
        "weight": "equal",
        "derate": "pro_rata",
        "data_gap_policy": "unavailable",
        "excluded_causes": ["grid_outage", "force_majeure", "customer_request"],
        "maintenance_allowance_hours": 48,
    },
    "guarantee": {"default_pct": 97.0, "by_contract_year": {}},
    "ld": {"currency": "EUR", "step_pct": 0.01, "rate_per_pct": 20000,
           "cap_per_contract_year": 400000},
    "early_warning_margin_pct": 0.5,
}


def contract(**changes: Any) -> Contract:
    """The base contract with changes; nested keys as `availability__weight="power"`."""
    data = copy.deepcopy(BASE_CONTRACT)
    for key, value in changes.items():
        target = data
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return parse_contract(yaml.safe_dump(data), "contract.yaml")


def at(text: str) -> int:
    """`"2026-06-03 14:00"` in the site's time zone → µs."""
    return to_us(dt.datetime.fromisoformat(text).replace(tzinfo=TZ))


def iv(asset: str, start: str, end: str, state: str = "available",
       fraction: float | None = None, cause: str | None = None) -> StatusInterval:
    return StatusInterval(asset, at(start), at(end), state, fraction, cause)  # type: ignore[arg-type]


def ex(scope: str, start: str, end: str, reason: str) -> ExclusionWindow:
    return ExclusionWindow(scope, at(start), at(end), reason)  # type: ignore[arg-type]


def full(asset: str, start: str, end: str) -> StatusInterval:
    return iv(asset, start, end)


def run(intervals: list[StatusInterval], period: str = "2026-06", c: Contract | None = None,
        exclusions: list[ExclusionWindow] | None = None) -> Evaluation:
    return evaluate(FLEET, c or contract(), intervals, exclusions or [], period)


def unit(ev: Evaluation, asset_id: str, index: int = 0) -> tuple[float, float, float,
                                                                    float | None]:
    """(window h, excluded h, lost h, availability %) of a unit in the index-th period."""
    u = next(x for x in ev.periods[index].units if x.asset_id == asset_id)
    window, excluded, lost = u.totals.hours()
    a = u.availability
    return window, excluded, lost, None if a is None else 100 * a
