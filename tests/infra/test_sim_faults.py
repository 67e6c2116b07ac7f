"""The simulator's fault processes: deterministic for a seed, Poisson rates as configured,
maintenance windows staggered across the fleet, events in time order and never twice."""

from __future__ import annotations

import collections

import pytest

from connectors.settings import EXAMPLE_FLEET
from contracts.fleet import load_fleet
from infra.sim.faults import DAY_S, FaultProcess, FaultRates

FLEET = load_fleet(EXAMPLE_FLEET)


def year(seed: int, rates: FaultRates | None = None) -> list:  # type: ignore[type-arg]
    process = FaultProcess(FLEET, 0.0, rates or FaultRates(), seed=seed)
    out = []
    for day in range(1, 366):
        out += process.due(day * DAY_S)
    return out


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    assert year(3) == year(3)
    assert year(3) != year(4)


def test_events_come_in_time_order_once_each() -> None:
    events = year(1)
    assert [e.start_s for e in events] == sorted(e.start_s for e in events)
    assert len(set(events)) == len(events)
    assert all(e.end_s > e.start_s for e in events)


def test_rates_per_asset_and_day_hold_over_a_year() -> None:
    blocks = sum(len(i.blocks) for s in FLEET.sites for u in s.units for i in u.inverters)
    units = sum(len(s.units) for s in FLEET.sites)
    counts = collections.Counter(e.kind for e in year(7))
    # block isolation: 0.005 per block per day (a Poisson count; ± 4 standard deviations).
    mean = 0.005 * 365 * blocks
    assert abs(counts["block_isolation"] - mean) < 4 * mean ** 0.5
    mean = 0.02 * 365 * units
    assert abs(counts["comms_drop"] - mean) < 4 * mean ** 0.5


def test_maintenance_windows_are_staggered_and_periodic() -> None:
    events = [e for e in year(1) if e.kind == "maintenance"]
    units = sum(len(s.units) for s in FLEET.sites)
    assert len(events) == 4 * units + sum(  # every 90 days: 4 windows a year, a 5th for some
        1 for e in events if e.start_s > 4 * 90 * DAY_S)
    firsts = sorted({e.asset_id: e.start_s for e in reversed(events)}.values())
    assert len(set(firsts)) == units  # no two units down for maintenance at once
    assert all(e.end_s - e.start_s == 8 * 3600 for e in events)


@pytest.mark.parametrize("factor", [10.0, 100.0])
def test_scaled_rates_for_demos(factor: float) -> None:
    base = collections.Counter(e.kind for e in year(2))
    more = collections.Counter(e.kind for e in year(2, FaultRates().scaled(factor)))
    assert more["inverter_trip"] > base["inverter_trip"] * factor / 2
