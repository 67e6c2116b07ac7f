"""Vendor benchmarking: which maker's (and which product's) equipment performs better over a
window — time availability, failures, MTBF and MTTR, round-trip efficiency and capacity fade —
per vendor and per vendor and model, normalised per installed MW or MWh so that a vendor with
three big sites compares fairly with one with ten small ones. Pure: the caller brings the
status intervals, the episodes, each asset's energy and SOH points; nothing here reads a
clock or a store.

For a window `[from, to)` and a population of assets of one level (battery units, or their
inverters), each counted from `max(from, in service)` (its *asset window*):

- **installed_mw / installed_mwh**: the assets' rated power and energy (an inverter's energy is
  its DC blocks').
- **availability** (0..1): time-based, by the contract engine's own classification and sweep
  (contracts/rules.py, contracts/ledger.py) under `BENCHMARK_RULES`: unavailable time loses 1,
  derated time `1 − derate_fraction`, a child's loss rolls up capacity-weighted; time with a
  cause outside the vendor's hands (`EXTERNAL_CAUSES`) and time without data (`unknown`, gaps)
  is excluded. The group's figure weighs each asset by its rated power:
  `1 − Σ MW·lost / Σ MW·(window − excluded)` (contracts/engine.py `contract_availability`).
- **lost_mwh**: Σ MW × lost hours — the energy the lost time would have moved at rated power;
  **lost_mwh_per_mwh** divides it by installed MWh.
- **failures, downtime, MTBF, MTTR**: contracts/reliability.py's, on the same assets and window
  (grouped by vendor or by vendor and model); **failures_per_mw_year** = failures / Σ MW × asset
  window in years.
- **efficiency**: round-trip, Σ discharged / Σ charged energy at the grid side, integrated from
  per-minute mean active power (> 0 discharging) over the window (`integrate_minutes`). Over a
  window of days the state of charge at its ends moves the ratio by up to a cycle's worth;
  over months it vanishes. **cycles**: discharged MWh / installed MWh (equivalent full cycles).
- **fade_pct_per_year**: SOH percentage points lost per year, the least-squares slope of the
  asset's SOH points (`fade_pct_per_year`); the group's is the mean over its assets with a
  figure, weighted by rated energy. A quick screening figure — the battery health view fits
  fade properly, with its uncertainty.

Efficiency and fade are battery figures: at the inverter level they are left empty (None)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.engine import UnitResult, contract_availability
from contracts.events import Cause
from contracts.fleet import Asset, Fleet
from contracts.intervals import StatusInterval
from contracts.ledger import Totals, UnitScope, sweep
from contracts.reliability import (
    UNKNOWN,
    AssetInfo,
    Episode,
    Reliability,
    fleet_population,
    reliability,
)
from contracts.rules import Kind, Rules

BenchLevel = Literal["unit", "inverter"]
BENCH_LEVELS: tuple[BenchLevel, ...] = ("unit", "inverter")
MS_PER_YEAR = 365.25 * 86_400_000
MS_PER_HOUR = 3_600_000
US_PER_MS = 1_000
# Unavailability a vendor does not answer for: excluded from its availability (its episodes
# still count as failures in reliability.py's figures, which do not judge blame).
EXTERNAL_CAUSES: tuple[Cause, ...] = (
    "scheduled_maintenance", "grid_outage", "force_majeure", "customer_request", "comms_loss")
BENCHMARK_RULES = Rules(excluded_causes=frozenset(EXTERNAL_CAUSES),
                        excluded_order=EXTERNAL_CAUSES, derate_pro_rata=True,
                        gap=Kind.EXCLUDED, gap_loss=0.0)


@dataclass(frozen=True, slots=True)
class BenchAsset:
    """One benchmarked asset: a battery unit or an inverter."""

    asset_id: str
    level: BenchLevel
    site_id: str
    vendor: str | None
    model: str | None
    rated_power_kw: float
    rated_energy_kwh: float
    in_service_ms: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.vendor or UNKNOWN, self.model or UNKNOWN)


@dataclass(frozen=True, slots=True)
class Energy:
    """Energy through an asset at the grid side, kWh (both ≥ 0)."""

    charge_kwh: float = 0.0
    discharge_kwh: float = 0.0

    def __add__(self, other: Energy) -> Energy:
        return Energy(self.charge_kwh + other.charge_kwh,
                      self.discharge_kwh + other.discharge_kwh)

    @property
    def efficiency(self) -> float | None:
        """Round-trip: discharged / charged; None when nothing was charged."""
        return self.discharge_kwh / self.charge_kwh if self.charge_kwh > 0 else None


def integrate_minutes(means_kw: Iterable[float]) -> Energy:
    """Per-minute mean active powers (kW, > 0 discharging) as energy: each minute moves
    mean/60 kWh, into the battery when negative, out when positive."""
    charge = discharge = 0.0
    for p in means_kw:
        if p > 0:
            discharge += p
        elif p < 0:
            charge -= p
    return Energy(charge / 60, discharge / 60)


def fade_pct_per_year(points: Sequence[tuple[int, float]]) -> float | None:
    """SOH percentage points lost per year: minus the least-squares slope of SOH (%) against
    time (ms); positive when the battery ages. None with fewer than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    t0 = points[0][0]
    ts = [(t - t0) / MS_PER_YEAR for t, _ in points]
    ys = [y for _, y in points]
    mt, my = math.fsum(ts) / n, math.fsum(ys) / n
    sxx = math.fsum((t - mt) ** 2 for t in ts)
    if sxx == 0:
        return None
    sxy = math.fsum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True))
    return -sxy / sxx


def time_availability(asset_id: str, assets: Mapping[str, Asset],
                      intervals: Iterable[StatusInterval], start_ms: int, end_ms: int
                      ) -> Totals:
    """One asset's time over `[start_ms, end_ms)` under `BENCHMARK_RULES`: its own
    intervals classified as a contract's unit's are, its descendants' rolled up into it
    (intervals of other assets are ignored). Empty totals for an empty window."""
    if end_ms <= start_ms:
        return Totals()
    start_us, end_us = start_ms * US_PER_MS, end_ms * US_PER_MS
    mine = set(_descendants(asset_id, assets))
    own: list[StatusInterval] = []
    children: list[StatusInterval] = []
    for iv in intervals:
        if iv.asset_id == asset_id:
            own.append(iv)
        elif iv.asset_id in mine:
            children.append(iv)
    scope = UnitScope(asset_id, (start_us, end_us), assets, BENCHMARK_RULES, 0,
                      lambda us: (0, end_us))
    out: dict[object, Totals] = {}
    sweep(scope, start_us, end_us, sorted(own, key=lambda iv: iv.start_us),
          sorted(children, key=lambda iv: iv.start_us), (), lambda us: (0, end_us), out)
    return out.get(0, Totals())


def _descendants(asset_id: str, assets: Mapping[str, Asset]) -> Iterable[str]:
    for child in assets[asset_id].children:
        yield child
        yield from _descendants(child, assets)


def fleet_bench_assets(fleet: Fleet, site_ids: Iterable[str], level: BenchLevel
                       ) -> list[BenchAsset]:
    """The battery units, or the inverters, of these sites, each in service from its unit's
    commissioning (reliability.py's `fleet_population`), with their ratings."""
    out: list[BenchAsset] = []
    for a in fleet_population(fleet, site_ids):
        if a.level != level:
            continue
        asset = fleet.assets[a.asset_id]
        power = asset.rated_power_kw or 0.0
        energy = asset.rated_energy_kwh if level == "unit" else math.fsum(
            fleet.assets[b].rated_energy_kwh or 0.0 for b in asset.children)
        out.append(BenchAsset(a.asset_id, level, a.site_id, a.vendor, a.model, power,
                              energy or 0.0, a.in_service_ms))
    return out


@dataclass(frozen=True, slots=True)
class AssetFigures:
    """What was measured of one asset over the window (energy and fade None without data)."""

    asset: BenchAsset
    time: Totals
    energy: Energy | None = None
    fade_pct_per_year: float | None = None


@dataclass(frozen=True, slots=True)
class VendorRow:
    """One group's figures (the module docstring defines them)."""

    key: tuple[str, ...]  # (vendor,) or (vendor, model); () for the total
    assets: int
    installed_mw: float
    installed_mwh: float
    availability: float | None
    lost_mwh: float
    lost_mwh_per_mwh: float | None
    reliability: Reliability
    failures_per_mw_year: float | None
    charge_mwh: float
    discharge_mwh: float
    efficiency: float | None
    cycles: float | None
    fade_pct_per_year: float | None
    assets_with_fade: int


@dataclass(frozen=True, slots=True)
class Benchmark:
    level: BenchLevel
    vendors: tuple[VendorRow, ...]  # by vendor name
    models: tuple[VendorRow, ...]  # by vendor, then model
    total: VendorRow


def _row(key: tuple[str, ...], figures: Sequence[AssetFigures], rel: Reliability,
         start_ms: int, end_ms: int) -> VendorRow:
    mw = math.fsum(f.asset.rated_power_kw for f in figures) / 1000
    mwh = math.fsum(f.asset.rated_energy_kwh for f in figures) / 1000
    availability = contract_availability(
        [UnitResult(f.asset.asset_id, f.asset.rated_power_kw, f.time) for f in figures])
    lost_mwh = math.fsum(f.asset.rated_power_kw / 1000 * f.time.lost_us / 1000 / MS_PER_HOUR
                         for f in figures)
    mw_years = math.fsum(
        f.asset.rated_power_kw / 1000
        * max(0, end_ms - max(start_ms, f.asset.in_service_ms)) / MS_PER_YEAR
        for f in figures)
    measured = [f.energy for f in figures if f.energy is not None]
    energy = sum(measured, Energy())
    faded = [(f.asset.rated_energy_kwh, f.fade_pct_per_year) for f in figures
             if f.fade_pct_per_year is not None]
    weight = math.fsum(w for w, _ in faded)
    fade = (math.fsum(w * x for w, x in faded) / weight if weight > 0
            else math.fsum(x for _, x in faded) / len(faded) if faded else None)
    return VendorRow(
        key=key, assets=len(figures), installed_mw=mw, installed_mwh=mwh,
        availability=availability, lost_mwh=lost_mwh,
        lost_mwh_per_mwh=lost_mwh / mwh if mwh > 0 else None, reliability=rel,
        failures_per_mw_year=rel.failures / mw_years if mw_years > 0 else None,
        charge_mwh=energy.charge_kwh / 1000, discharge_mwh=energy.discharge_kwh / 1000,
        efficiency=energy.efficiency if measured else None,
        cycles=energy.discharge_kwh / 1000 / mwh if measured and mwh > 0 else None,
        fade_pct_per_year=fade, assets_with_fade=len(faded))


def benchmark(figures: Sequence[AssetFigures], episodes: Iterable[Episode], start_ms: int,
              end_ms: int) -> Benchmark:
    """The benchmark of these assets (all of one level) over `[start_ms, end_ms)`: a row per
    vendor, per vendor and model, and the total. `episodes` as reliability.py takes them
    (those of other assets are a ValueError there)."""
    if end_ms <= start_ms:
        raise ValueError(f"empty window: to {end_ms} is not after from {start_ms}")
    levels = {f.asset.level for f in figures}
    if len(levels) > 1:
        raise ValueError(f"assets of several levels: {sorted(levels)}")
    level: BenchLevel = levels.pop() if levels else "unit"
    population = [AssetInfo(f.asset.asset_id, f.asset.level, f.asset.site_id, f.asset.vendor,
                            f.asset.model, f.asset.in_service_ms) for f in figures]
    stored = list(episodes)
    vendors = reliability(stored, population, start_ms, end_ms, "vendor")
    by_vendor = {r.key: r for r in vendors.groups}
    by_model = {r.key: r for r in reliability(stored, population, start_ms, end_ms,
                                              "model").groups}
    total = vendors.total

    def grouped(key_of: Callable[[BenchAsset], tuple[str, ...]],
                table: Mapping[tuple[str, ...], Reliability]) -> tuple[VendorRow, ...]:
        groups: dict[tuple[str, ...], list[AssetFigures]] = defaultdict(list)
        for f in figures:
            groups[key_of(f.asset)].append(f)
        return tuple(_row(k, fs, table[k], start_ms, end_ms)
                     for k, fs in sorted(groups.items()) if k in table)

    return Benchmark(level, grouped(lambda a: a.key[:1], by_vendor),
                     grouped(lambda a: a.key, by_model),
                     _row((), figures, total, start_ms, end_ms))
