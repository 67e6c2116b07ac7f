"""The current contract year's history seeded from the simulator, so that a fresh stack's
contract views have real months from the first minute (`bessmon up`, `--seed-history`).

For each site with an LTSA whose history holds no status in its current contract year, the
simulator's physics record the site's polls from the start of that year until just before
now (`infra/sim/record.py`, deterministic for the seed; one poll every `step_s`, random unit
trips and maintenance `faults_per_unit_day` times a unit-day), and `bessmon replay` runs
them through the broker and the telemetry flow into the history: status intervals, days,
periods, episodes, alerts — not the per-minute telemetry, which a seeded past does not need.
The replay makes time final only up to its last poll; the live flow, started afterwards,
takes over from there (`SiteState.resume`), so the tiles, the period table and the reports
agree. The seeded past ends a poll step and the allowed lateness before now: the live flow's
first poll always comes after it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from connectors.history import open_history
from connectors.settings import Settings
from contracts.contract import Contract
from contracts.engine import ContractContext
from contracts.fleet import Fleet
from contracts.monitoring import MonitoringConfig
from infra.replay import for_poll_step, replay
from infra.sim.record import record

STEP_S = 1800.0  # a poll every 30 minutes: a contract year of a 6-unit site is 17,520 polls
FAULTS_PER_UNIT_DAY = 0.05  # a trip or maintenance every 20 days per unit, 10 min to 4 h
MAX_UNITS = 60  # larger fleets are not seeded: their year would take minutes


@dataclass(frozen=True)
class SiteSeed:
    site_id: str
    start_ms: int
    end_ms: int


def seeds_due(settings: Settings, fleet: Fleet, contracts: Mapping[str, Contract],
              now_ms: int, step_s: float = STEP_S,
              lateness_s: float = 30.0) -> list[SiteSeed]:
    """The sites to seed and over what: each site with a contract in force now and no
    status in the history since its contract year began, from that start to the last
    poll step before `now_ms` less the allowed lateness."""
    step_ms = int(step_s * 1000)
    end_ms = (now_ms - int(lateness_s * 1000)) // step_ms * step_ms - step_ms
    out: list[SiteSeed] = []
    store = open_history(settings)
    try:
        for site in fleet.sites:
            contract = contracts.get(site.id)
            if contract is None:
                continue
            cal = ContractContext(fleet, contract).calendar
            year = cal.contract_year(now_ms * 1000)
            if year is None:
                continue
            start_ms = cal.year_bounds(year)[0] // 1000
            start_ms = -(-start_ms // step_ms) * step_ms  # on the poll grid
            if start_ms >= end_ms:
                continue
            assets = [a.id for a in fleet.assets.values() if a.site_id == site.id]
            if store.status_intervals(assets, start_ms, now_ms):
                continue  # monitored (or seeded) already
            out.append(SiteSeed(site.id, start_ms, end_ms))
    finally:
        store.close()
    return out


def seed_history(settings: Settings, fleet: Fleet, config: MonitoringConfig,
                 contracts: Mapping[str, Contract], *, seed: int, now_ms: int,
                 work_dir: Path, step_s: float = STEP_S,
                 say: Callable[[str], None] = print) -> list[SiteSeed]:
    """Seed what `seeds_due` finds; returns it (nothing: nothing was due)."""
    due = seeds_due(settings, fleet, contracts, now_ms, step_s,
                    config.quality.allowed_lateness_s)
    if not due:
        return []
    units = sum(len(fleet.site(s.site_id).units) for s in due)
    if units > MAX_UNITS:
        say(f"history not seeded: {units} units is more than the {MAX_UNITS} a seed "
            "handles (months before monitoring began show as no data)")
        return []
    started = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True)
    recording = work_dir / "seed.jsonl"
    step_ms = int(step_s * 1000)
    with recording.open("w", encoding="utf-8") as out:
        for k, s in enumerate(due):  # site after site: each in time order
            days = (s.end_ms - s.start_ms) / 86_400_000
            say(f"seeding {s.site_id}: {days:.0f} days of its contract year from the "
                f"simulator (a poll every {step_s / 60:g} min) …")
            site_fleet = Fleet(sites=(fleet.site(s.site_id),))
            for sample in record(site_fleet, s.start_ms, s.end_ms, step_ms, seed=seed * 1000 + k,
                                 fault_rate_per_day=FAULTS_PER_UNIT_DAY):
                out.write(sample.model_dump_json())
                out.write("\n")
    replay(settings, fleet, for_poll_step(config, step_s), dict(contracts), recording,
           telemetry_history=False, finish_at="input", say=lambda line: None)
    recording.unlink()
    say(f"history seeded in {time.monotonic() - started:.0f} s")
    return due
