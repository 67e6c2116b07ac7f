"""Reliability of the fleet's equipment over a window: failures, downtime, MTTR and MTBF per
group (cause, vendor, vendor and model, asset level, site) — where reliability work pays.
Pure: the caller brings the unavailability episodes (flows/episodes.py, read from the
history) and the asset population; nothing here reads a clock or a store.

Definitions, for a window `[from, to)` and a population of assets (battery units, inverters,
DC blocks), each exposed from `max(from, in_service_ms)` to `to` (its *asset window*):

- **Episodes by state** (an episode's state is the worst it went through): `unavailable`
  episodes are **failures** (trips, faults, outages); `derated` ones are counted and timed
  apart (`derated`, `derated_hours`) and are no failures; `unknown` ones (no data: the asset
  may have run or not) are neither failure nor operation: their time is `comms_hours`, left
  out of MTBF's operating time and of MTTR. An `available` episode is ignored.
- **Outages**: the `unavailable` episodes of one asset counted in a group that overlap (or
  touch) are one outage, from the first start to the last end (open if any is open) —
  an anomaly of the data, never two failures at once.
- **failures**: outages starting in the asset window.
- **downtime_hours**: the time of the asset's outages inside its asset window (the part of an
  outage that started before `from`, or lasts past `to`, is cut off).
- **repairs**, **repair_hours**: outages that ended in the window (`from < end ≤ to`) and
  their whole duration, before `from` included; **open**: outages overlapping the window
  that had not ended by `to`. **MTTR** = repair_hours / repairs (None without a repair):
  open outages are not in it.
- **asset_hours**: the sum of the group's asset windows; **operating_hours** = asset_hours
  minus the time of the assets' unavailable and unknown episodes (of every cause, overlaps
  once) in their windows. **MTBF** = operating_hours / failures (None without a failure).

Groups: by `vendor`, `model` (vendor and model together), `level` or `site`, a group is the
assets of that value (every asset of the population in exactly one; an absent vendor or
model is "unknown") with their episodes. By `cause`, every asset is exposed to every cause:
a cause's group counts the episodes of that cause (a cause of None is "unknown") against the
whole population's asset and operating hours — its MTBF is the mean operating time between
failures of that cause. `only_cause` narrows every group and the total to one cause the same
way. The total is the whole population with every (counted) episode.

Failures, derated episodes, repairs, downtime, derated, comms, asset and operating hours add
up over consecutive windows (the whole window's are the sum of its parts'); open outages and
the MTTR and MTBF ratios do not. Hours are kept as integer milliseconds, so sums are exact.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.events import Cause, State
from contracts.fleet import Fleet

Level = Literal["unit", "inverter", "block"]
GroupBy = Literal["cause", "vendor", "model", "level", "site"]
GROUP_BYS: tuple[GroupBy, ...] = ("cause", "vendor", "model", "level", "site")
UNKNOWN = "unknown"  # the key of an absent vendor, model or cause
MS_PER_HOUR = 3_600_000
Span = tuple[int, int]  # [start_ms)


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """One asset of the population: what it is and since when it counts (its commissioning;
    0 for always)."""

    asset_id: str
    level: Level
    site_id: str
    vendor: str | None = None
    model: str | None = None
    in_service_ms: int = 0


@dataclass(frozen=True, slots=True)
class Episode:
    """An asset's time not fully available (contracts/events.py UnavailabilityEpisode);
    `end_ms` None while it lasts."""

    asset_id: str
    start_ms: int
    end_ms: int | None
    state: State
    cause: Cause | None = None


@dataclass(frozen=True, slots=True)
class Reliability:
    """One group's numbers (the module docstring defines them); times in milliseconds,
    `…_hours` and the ratios as properties."""

    key: tuple[str, ...]  # () for the total; (vendor, model) for `model`; else one value
    assets: int
    asset_ms: int
    operating_ms: int
    failures: int
    downtime_ms: int
    repairs: int
    repair_ms: int
    open: int
    derated: int
    derated_ms: int
    comms_ms: int

    @property
    def asset_hours(self) -> float:
        return self.asset_ms / MS_PER_HOUR

    @property
    def operating_hours(self) -> float:
        return self.operating_ms / MS_PER_HOUR

    @property
    def downtime_hours(self) -> float:
        return self.downtime_ms / MS_PER_HOUR

    @property
    def repair_hours(self) -> float:
        return self.repair_ms / MS_PER_HOUR

    @property
    def derated_hours(self) -> float:
        return self.derated_ms / MS_PER_HOUR

    @property
    def comms_hours(self) -> float:
        return self.comms_ms / MS_PER_HOUR

    @property
    def mttr_hours(self) -> float | None:
        return self.repair_ms / self.repairs / MS_PER_HOUR if self.repairs else None

    @property
    def mtbf_hours(self) -> float | None:
        return self.operating_ms / self.failures / MS_PER_HOUR if self.failures else None


@dataclass(frozen=True, slots=True)
class ReliabilityTable:
    group_by: GroupBy
    groups: tuple[Reliability, ...]  # most failures first, then most downtime, then by key
    total: Reliability


def _merge(spans: Iterable[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """Overlapping or touching spans as one each (None: open-ended), by start."""
    out: list[tuple[int, int | None]] = []
    for start, end in sorted(spans, key=lambda s: s[0]):
        if out:
            last_start, last_end = out[-1]
            if last_end is None or start <= last_end:
                out[-1] = (last_start, None if last_end is None or end is None
                           else max(last_end, end))
                continue
        out.append((start, end))
    return out


def _covered_ms(spans: Iterable[tuple[int, int | None]], window: Span) -> int:
    """How much of `window` the spans cover, overlaps once."""
    lo, hi = window
    clipped = [(max(s, lo), hi if e is None else min(e, hi)) for s, e in spans]
    return sum((hi if e is None else e) - s
               for s, e in _merge((s, e) for s, e in clipped if s < e))


@dataclass
class _Tally:
    assets: int = 0
    asset_ms: int = 0
    non_operating_ms: int = 0
    failures: int = 0
    downtime_ms: int = 0
    repairs: int = 0
    repair_ms: int = 0
    open: int = 0
    derated: int = 0
    derated_ms: int = 0
    comms_ms: int = 0

    def exposure(self, window: Span, non_operating_ms: int) -> None:
        self.assets += 1
        self.asset_ms += window[1] - window[0]
        self.non_operating_ms += non_operating_ms

    def count(self, window: Span, episodes: Sequence[Episode]) -> None:
        """One asset's counted episodes in its asset window."""
        lo, hi = window
        outages = _merge((e.start_ms, e.end_ms) for e in episodes if e.state == "unavailable")
        for start, end in outages:
            if lo <= start < hi:
                self.failures += 1
            if end is not None and lo < end <= hi:
                self.repairs += 1
                self.repair_ms += end - start
            if start < hi and (end is None or end > hi):
                self.open += 1
        self.downtime_ms += _covered_ms(outages, window)
        derated = [(e.start_ms, e.end_ms) for e in episodes if e.state == "derated"]
        self.derated += sum(lo <= s < hi for s, _ in derated)
        self.derated_ms += _covered_ms(derated, window)
        self.comms_ms += _covered_ms(((e.start_ms, e.end_ms) for e in episodes
                                      if e.state == "unknown"), window)

    def row(self, key: tuple[str, ...]) -> Reliability:
        return Reliability(key, self.assets, self.asset_ms,
                           self.asset_ms - self.non_operating_ms, self.failures,
                           self.downtime_ms, self.repairs, self.repair_ms, self.open,
                           self.derated, self.derated_ms, self.comms_ms)


def group_key(group_by: GroupBy, asset: AssetInfo, cause: Cause | None = None
              ) -> tuple[str, ...]:
    """The key of the group an asset (and, by cause, an episode) belongs to."""
    if group_by == "cause":
        return (cause or UNKNOWN,)
    if group_by == "vendor":
        return (asset.vendor or UNKNOWN,)
    if group_by == "model":
        return (asset.vendor or UNKNOWN, asset.model or UNKNOWN)
    if group_by == "level":
        return (asset.level,)
    if group_by == "site":
        return (asset.site_id,)
    raise ValueError(f"group_by {group_by!r} is not one of {', '.join(GROUP_BYS)}")


def reliability(episodes: Iterable[Episode], population: Iterable[AssetInfo],
                start_ms: int, end_ms: int, group_by: GroupBy = "cause", *,
                only_cause: str | None = None) -> ReliabilityTable:
    """The reliability table of `population` over `[start_ms, end_ms)` (module docstring).

    `episodes` are those of the population's assets that overlap the window (more do no
    harm; one of an asset outside the population is a ValueError: its downtime would count
    against no asset's hours). `only_cause` counts only episodes of that cause ("unknown":
    of none)."""
    if end_ms <= start_ms:
        raise ValueError(f"empty window: to {end_ms} is not after from {start_ms}")
    group_key(group_by, AssetInfo("", "unit", ""))  # a bad group_by fails before any work
    assets = {a.asset_id: a for a in population}
    by_asset: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        if e.asset_id not in assets:
            raise ValueError(f"episode of {e.asset_id!r}, an asset not in the population")
        if e.state != "available":
            by_asset[e.asset_id].append(e)

    def counted(e: Episode) -> bool:
        return only_cause is None or (e.cause or UNKNOWN) == only_cause

    total = _Tally()
    groups: dict[tuple[str, ...], _Tally] = defaultdict(_Tally)
    for asset in assets.values():
        window = (max(start_ms, asset.in_service_ms), end_ms)
        if window[0] >= window[1]:
            continue  # not in service yet: no exposure, nothing to count
        mine = by_asset.get(asset.asset_id, [])
        non_operating = _covered_ms(((e.start_ms, e.end_ms) for e in mine
                                     if e.state in ("unavailable", "unknown")), window)
        total.exposure(window, non_operating)
        mine = [e for e in mine if counted(e)]
        total.count(window, mine)
        if group_by == "cause":
            by_cause: dict[tuple[str, ...], list[Episode]] = defaultdict(list)
            for e in mine:
                by_cause[group_key("cause", asset, e.cause)].append(e)
            for key, theirs in by_cause.items():
                groups[key].count(window, theirs)
        else:
            tally = groups[group_key(group_by, asset)]
            tally.exposure(window, non_operating)
            tally.count(window, mine)
    if group_by == "cause":  # every cause against the whole population's hours
        for tally in groups.values():
            tally.assets, tally.asset_ms = total.assets, total.asset_ms
            tally.non_operating_ms = total.non_operating_ms
        groups = {k: t for k, t in groups.items()
                  if t.failures or t.downtime_ms or t.repairs or t.open or t.derated
                  or t.derated_ms or t.comms_ms}
    rows = sorted((t.row(k) for k, t in groups.items()), key=_rank)
    return ReliabilityTable(group_by, tuple(rows), total.row(()))


def _rank(row: Reliability) -> tuple[int, int, tuple[str, ...]]:
    return (-row.failures, -row.downtime_ms, row.key)


def fleet_population(fleet: Fleet, site_ids: Iterable[str]) -> list[AssetInfo]:
    """The battery units, inverters and DC blocks of these sites (site by site, a unit then
    its inverters then its blocks), each in service from its unit's commissioning day (00:00
    at the site)."""
    wanted = set(site_ids)
    out: list[AssetInfo] = []
    for site in fleet.sites:
        if site.id not in wanted:
            continue
        for unit in site.units:
            since = dt.datetime.combine(unit.commissioned, dt.time(), site.tz)
            in_service_ms = max(0, int(since.timestamp() * 1000))
            levels: list[tuple[Level, str]] = [
                ("unit", unit.id), *(("inverter", i.id) for i in unit.inverters),
                *(("block", b.id) for i in unit.inverters for b in i.blocks)]
            for level, asset_id in levels:
                a = fleet.assets[asset_id]
                out.append(AssetInfo(a.id, level, a.site_id, a.vendor, a.model, in_service_ms))
    return out
