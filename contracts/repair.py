"""Repair priority by money at stake (issue 15, point 5): every open unavailability episode
priced by what one more hour of it costs under its site's contract, now. Pure: no I/O, no
clock — the flows (flows/site_state.py) decide when to ask.

**Now** is the site's final time `t` (the instant up to which statuses are final and booked,
the KPIs' `as_of`): the time the accumulator has booked, and the open measurement period `P`
containing `t`.

**Marginal LD per hour** of an episode of asset `a` (a unit, an inverter or a block of unit
`u`) in its current status `s` (state, derate fraction, cause):

    marginal = LD_P(a stays in s for one more hour) − LD_P(a is repaired now)

where `LD_P(x)` is the LD of period `P` by availability rules §5 — whole `step_pct` steps, the
contract year's cap less what the earlier periods of that year charged (settled from the
booked time, as the KPIs do) — for the period-end availability

    A(x) = 1 − (L + ΔL_x + r · R) / (C + ΔC_x + R)

- `L`, `C`: the weighted lost and counted time of the period so far, to `t` (§4);
- the **next hour** `[t, t + H)`, `H = min(1 h, end of P − t)`, with every asset of the site
  staying in its status at `t` (the status of the booked interval covering `t − 1 µs`; none:
  a gap, as the engine treats it) and the exclusion windows known — except `a`, in `s` (with)
  or `available` (repaired). `ΔL_x`, `ΔC_x` are its weighted lost and counted time, booked by
  the engine's own sweep (`contracts/ledger.py`): exclusion windows and excluded causes, the
  maintenance allowance left, `data_gap_policy`, `derate`, the children's roll-up to the unit
  (§3), the unit's weight (§4). Only unit `u`'s hour differs between the two.
- `r`: the trailing loss rate the KPIs' projection uses (availability rules §6,
  `ContractAccumulator.project`), and `R`: the weighted rest of the period after `t + H`
  (each unit's window within it) — the rest of the period runs at the rate operators see in
  the projection, in both cases.

So `LD_P(repaired)` is the dashboard's projected LD with one hour of the site as it stands
now in place of one hour at the trailing rate, and the difference is what that hour of this
outage adds. When the period ends within the hour, `H` is what is left of it (the next
period starts afresh); that is still reported "per hour". No counted time (no projection):
no LD either way.

It is 0, and `zero_reason` says why:

- `technical`: the site has no LTSA (flows/site_state.technical_contract): no money;
- `excluded`: the hour costs no lost time because it would be excluded (an excluded cause or
  exclusion window, maintenance within the allowance, a gap under `data_gap_policy:
  excluded`); `no_loss`: it costs none for another reason (a derate under `derate:
  available`, an unknown child, a unit outside its window);
- `no_projection`: no counted time in the period (availability `null`, no LD);
- `above_guarantee`: the period still meets its guarantee after the extra hour;
- `cap_reached`: the contract year's LD cap is used up (by earlier periods and this one);
- `within_step`: below the guarantee, but the hour does not reach the next whole LD step.

**Ranking** (`rank`): LTSA episodes first, grouped by currency (no exchange rates: amounts
in different currencies are not compared; currencies in alphabetical order), each group by
marginal LD per hour, highest first; ties: the longer episode (earlier start) first, then
episode id. Technical sites last, by lost MWh (most first), then the same ties."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from contracts.engine import unit_weight
from contracts.events import Cause, State, UnavailabilityEpisode
from contracts.incremental import ContractAccumulator, View
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.ledger import Totals, UnitSweep
from contracts.money import YearLedger
from contracts.periods import US_PER_HOUR, Period

ZeroReason = Literal["technical", "excluded", "no_loss", "no_projection", "above_guarantee",
                     "cap_reached", "within_step"]


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """An asset's status now (contracts/status.Status has the same three fields)."""

    state: State
    derate_fraction: float | None = None
    cause: Cause | None = None


@dataclass(frozen=True, slots=True)
class RepairPriority:
    """One open episode priced: what one more hour of it costs under its contract now."""

    episode_id: str
    asset_id: str
    unit_id: str
    site_id: str
    contract_id: str
    kind: Literal["ltsa", "technical"]
    currency: str
    state: State  # the asset's status now (not the episode's worst)
    derate_fraction: float | None
    cause: Cause | None
    since_ms: int  # the episode's start
    lost_hours: float  # the episode's, capacity-weighted, to now
    lost_mwh: float
    as_of_ms: int  # now: the site's final time
    period: str
    contract_year: int
    hours: float  # H: one, or what is left of the period
    marginal_ld_per_hour: Decimal  # ld_after − ld_now, ≥ 0
    ld_now: Decimal  # the period's LD if the asset is repaired now
    ld_after: Decimal  # … if it stays in its status one more hour
    availability_now_pct: float | None  # the period-end availability of those two cases
    availability_after_pct: float | None
    guaranteed_pct: float
    cap_left: Decimal  # of the contract year's LD cap, after ld_now
    zero_reason: ZeroReason | None  # why the marginal LD is 0 (None when it is not)

    def to_json(self) -> dict[str, object]:
        """JSON-ready: money as numbers (exact decimals printed as floats)."""
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = float(value) if isinstance(value, Decimal) else value
        return out


def _one_bucket(_: int) -> tuple[Hashable, int]:
    return None, 1 << 62


class Baseline:
    """The site's contract at `now_us`, shared by all its episodes: the period, its time so
    far, the trailing rate and the rest, the cap left, and every unit's next hour with the
    site as it stands. `now_us` must be the accumulator's final time (nothing booked after
    it)."""

    def __init__(self, acc: ContractAccumulator, now_us: int, *,
                 kind: Literal["ltsa", "technical"] = "ltsa", view: View | None = None,
                 current: Mapping[str, AssetStatus] | None = None,
                 windows: Iterable[ExclusionWindow] | None = None) -> None:
        """`current`: every asset's status now, `windows`: the exclusion windows that may
        reach into the next hour — when the caller knows them (the flows do); else both are
        read from the accumulator's kept inputs (a scan of the last days' inputs)."""
        if now_us < acc.frontier_us:
            raise ValueError(f"time is booked up to {acc.frontier_us} µs, after now "
                             f"({now_us} µs)")
        ctx = acc.ctx
        contract = ctx.contract
        self.acc, self.now_us, self.kind = acc, now_us, kind
        self.view = view or acc.view(now_us)
        self.period: Period = ctx.calendar.containing(now_us, contract.measurement_period)
        self.year = ctx.calendar.period_year(self.period)
        self.guaranteed_pct = contract.guaranteed_pct(self.year)
        self.hour_end = min(now_us + US_PER_HOUR, self.period.end_us)
        self.weights = {u.id: unit_weight(contract, u) for u in ctx.site.units}
        self.so_far = self.view.totals(self.period.label)
        projection = acc.project(self.period, now_us, self.view)
        self.rate = projection.trailing_loss_rate
        self.rest = math.fsum(
            self.weights[u.id] * max(0, min(ctx.scopes[u.id].window[1], self.period.end_us)
                                     - max(ctx.scopes[u.id].window[0], self.hour_end))
            for u in ctx.site.units)
        self.earlier = YearLedger(contract)
        for earlier in ctx.calendar.preceding_in_year(self.period):
            totals = self.view.totals(earlier.label)
            self.earlier.settle(self.year, _availability(self.weights, totals))
        # What every asset of the site is now: the booked interval covering now − 1 µs.
        self.current: dict[str, AssetStatus | StatusInterval] = dict(current or {})
        known: list[ExclusionWindow] = [] if windows is None else list(windows)
        if current is None or windows is None:
            for items in acc.kept.values():
                for item in items:
                    if isinstance(item, StatusInterval):
                        if current is None and item.start_us < now_us <= item.end_us:
                            self.current[item.asset_id] = item
                    elif windows is None:
                        known.append(item)
        site = ctx.site.id
        self.windows: dict[str, list[ExclusionWindow]] = {
            uid: [w for w in known if w.scope_id in (site, uid) and w.end_us > now_us
                  and w.start_us < self.hour_end]
            for uid in acc.units}
        self.hour = {uid: self.next_hour(uid, {}) for uid in acc.units}

    def next_hour(self, unit_id: str, override: Mapping[str, AssetStatus]) -> Totals:
        """Unit `unit_id`'s time in `[now, now + H)`, every asset of it staying in its status
        now but those in `override`, booked by the engine's sweep."""
        acc = self.acc
        scope = acc.ctx.scopes[unit_id]
        sweep = UnitSweep(scope, _one_bucket, self.now_us)
        sweep.maintenance_used.update(self.view.maintenance_used[unit_id])
        lo, hi = self.now_us, self.hour_end
        assets = acc.ctx.fleet.assets
        members = [a for a, asset in assets.items() if asset.unit_id == unit_id]
        for asset_id in members:
            status: AssetStatus | StatusInterval | None = override.get(asset_id)
            if status is None:
                status = self.current.get(asset_id)
            if status is None:
                continue  # a gap, as the engine takes it
            interval = StatusInterval(asset_id, lo, hi, status.state, status.derate_fraction,
                                      status.cause)
            (sweep.add_own if asset_id == unit_id else sweep.add_child)(interval)
        for window in self.windows.get(unit_id, ()):
            sweep.add_window(window)
        out: dict[Hashable, Totals] = {}
        sweep.run(hi, out)
        return out.get(None, Totals())

    def availability(self, hour: Mapping[str, Totals]) -> float | None:
        """A(x) of the module docstring for the units' next hours `hour`: each unit's time
        so far and its next hour summed exactly (as the engine sums a period's time), then
        the rest at the trailing rate. No rate (nothing counted yet) and some rest: None."""
        if self.rate is None and self.rest > 0:
            return None
        counted: list[float] = []
        lost: list[float] = []
        for uid, w in self.weights.items():
            total = Totals()
            total.add(self.so_far.get(uid, Totals()))
            if uid in hour:
                total.add(hour[uid])
            counted.append(w * total.counted_us)
            lost.append(w * total.lost_us)
        denominator = math.fsum(counted) + self.rest
        if denominator == 0:
            return None
        return 1.0 - (math.fsum(lost) + (self.rate or 0.0) * self.rest) / denominator

    def ld(self, availability: float | None) -> tuple[Decimal, Decimal]:
        """(the period's LD, the contract year's cap left after it) for an availability."""
        ledger = YearLedger(self.acc.ctx.contract)
        ledger.ld = dict(self.earlier.ld)
        ledger.bonus = dict(self.earlier.bonus)
        charge, _ = ledger.settle(self.year, availability)
        cap = self.acc.ctx.contract.ld.cap_per_contract_year
        return charge.amount, max(Decimal(0), cap - ledger.ld.get(self.year, Decimal(0)))


def _availability(weights: Mapping[str, float], totals: Mapping[str, Totals]) -> float | None:
    counted = math.fsum(weights[u] * t.counted_us for u, t in totals.items())
    if counted == 0:
        return None
    return 1.0 - math.fsum(weights[u] * t.lost_us for u, t in totals.items()) / counted


def price(base: Baseline, episode: UnavailabilityEpisode, status: AssetStatus
          ) -> RepairPriority:
    """The repair priority of one open episode of the baseline's site, its asset being in
    `status` now."""
    acc = base.acc
    asset = acc.ctx.fleet.assets[episode.asset_id]
    if asset.unit_id is None or asset.site_id != acc.ctx.site.id:
        raise ValueError(f"{episode.asset_id} is not a unit, inverter or block of "
                         f"{acc.ctx.site.id}")
    uid = asset.unit_id
    with_hour = base.next_hour(uid, {asset.id: status})
    repaired = base.next_hour(uid, {asset.id: AssetStatus("available")})
    a_now = base.availability({**base.hour, uid: repaired})
    a_after = base.availability({**base.hour, uid: with_hour})
    ld_now, cap_left = base.ld(a_now)
    ld_after, _ = base.ld(a_after)
    marginal = max(Decimal(0), ld_after - ld_now)
    w = base.weights[uid]
    reason: ZeroReason | None = None
    if base.kind == "technical":
        reason, marginal, ld_now, ld_after, cap_left = (
            "technical", Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    elif marginal == 0:
        if w * (with_hour.lost_us - repaired.lost_us) <= 0:
            excluded = (with_hour.excluded_us > 0
                        or status.cause in acc.ctx.contract.availability.excluded_causes)
            reason = "excluded" if excluded else "no_loss"
        elif a_after is None:
            reason = "no_projection"
        elif 100.0 * a_after >= base.guaranteed_pct:
            reason = "above_guarantee"
        elif cap_left <= 0:
            reason = "cap_reached"
        else:
            reason = "within_step"
    contract = acc.ctx.contract
    return RepairPriority(
        episode_id=episode.episode_id, asset_id=episode.asset_id, unit_id=uid,
        site_id=episode.site_id, contract_id=contract.id, kind=base.kind,
        currency=contract.ld.currency, state=status.state,
        derate_fraction=status.derate_fraction, cause=status.cause,
        since_ms=episode.start_ms, lost_hours=episode.lost_hours, lost_mwh=episode.lost_mwh,
        as_of_ms=base.now_us // 1000, period=base.period.label, contract_year=base.year,
        hours=(base.hour_end - base.now_us) / US_PER_HOUR, marginal_ld_per_hour=marginal,
        ld_now=ld_now, ld_after=ld_after,
        availability_now_pct=None if a_now is None else 100.0 * a_now,
        availability_after_pct=None if a_after is None else 100.0 * a_after,
        guaranteed_pct=base.guaranteed_pct, cap_left=cap_left, zero_reason=reason)


def repair_priorities(acc: ContractAccumulator, now_us: int,
                      episodes: Iterable[tuple[UnavailabilityEpisode, AssetStatus]], *,
                      kind: Literal["ltsa", "technical"] = "ltsa",
                      current: Mapping[str, AssetStatus] | None = None,
                      windows: Iterable[ExclusionWindow] | None = None
                      ) -> list[RepairPriority]:
    """Every open episode of the accumulator's site priced at `now_us` (its final time),
    ranked (`current`, `windows`: as for `Baseline`). Nothing to price: nothing computed."""
    pairs = list(episodes)
    if not pairs:
        return []
    ctx = acc.ctx
    if ctx.calendar.contract_year(now_us) is None:
        return []  # outside the contract's term: no period to price
    base = Baseline(acc, now_us, kind=kind, current=current, windows=windows)
    return rank(price(base, episode, status) for episode, status in pairs)


def rank_key(item: RepairPriority) -> tuple[int, str, Decimal, int, str]:
    if item.kind == "technical":
        return (1, "", -Decimal(item.lost_mwh), item.since_ms, item.episode_id)
    return (0, item.currency, -item.marginal_ld_per_hour, item.since_ms, item.episode_id)


def rank(items: Iterable[RepairPriority]) -> list[RepairPriority]:
    """Highest marginal LD per hour first (the module docstring's order)."""
    return sorted(items, key=rank_key)

