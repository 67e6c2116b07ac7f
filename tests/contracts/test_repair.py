"""Repair priority (contracts/repair.py): the marginal LD of one more hour of an open episode,
checked against the batch engine — the period re-evaluated by `contracts.engine.evaluate`
with the extra hour of outage appended, and without it — on random contracts and status
histories, and the ranking against sorting by that re-evaluation. Cap, exclusion, guarantee
and technical cases by hand."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.contract import Contract
from contracts.engine import PeriodResult, evaluate, unit_weight
from contracts.events import UnavailabilityEpisode
from contracts.incremental import ContractAccumulator
from contracts.intervals import CAUSES, ExclusionWindow, StatusInterval
from contracts.money import YearLedger
from contracts.periods import US_PER_HOUR
from contracts.repair import AssetStatus, Baseline, RepairPriority, price, rank, repair_priorities
from flows.site_state import technical_contract
from tests.contracts.builders import FLEET, at, contract

MINUTE = 60_000_000
YEAR_START = at("2026-05-01 00:00")  # contract start 2024-05-01: May starts contract year 3
JUNE, JULY = at("2026-06-01 00:00"), at("2026-07-01 00:00")
LAST_HOUR = JULY - US_PER_HOUR
# Now: in May (the year's first period), early June (the trailing week is the period so
# far), and the last hour of June (the extra hour ends the period: no projection at all).
NOWS = (at("2026-05-03 10:00"), at("2026-06-02 07:30"), at("2026-06-07 23:00"), LAST_HOUR)
UNITS = ("u1", "u2")
ASSETS = ("u1", "u1-i1", "u1-i1-b1", "u1-i1-b2", "u1-i2", "u2")
SITE = FLEET.site("alpha")


# -- strategies ---------------------------------------------------------------------------

@st.composite
def contracts(draw: st.DrawFn, need_excluded: bool) -> Contract:
    excluded = draw(st.lists(st.sampled_from(CAUSES), unique=True, max_size=4,
                             min_size=1 if need_excluded else 0))
    return contract(
        start="2024-05-01",
        availability__weight=draw(st.sampled_from(["equal", "power", "energy"])),
        availability__derate=draw(st.sampled_from(["pro_rata", "available"])),
        availability__data_gap_policy=draw(st.sampled_from(["available", "unavailable",
                                                            "excluded"])),
        availability__excluded_causes=excluded,
        availability__maintenance_allowance_hours=draw(st.sampled_from([0, 3, 48, 400])),
        guarantee__default_pct=draw(st.sampled_from([80.0, 97.0, 99.0, 99.9, 100.0, 100.0])),
        guarantee__by_contract_year=draw(st.sampled_from([{}, {3: 98.5}])),
        ld__step_pct=draw(st.sampled_from([0.01, 0.05, 0.1, 0.5, 1.0])),
        ld__rate_per_pct=draw(st.sampled_from([1000, 20000, 333])),
        ld__cap_per_contract_year=draw(st.sampled_from([0, 5000, 400000, 10**9, 10**9])))


def _segment(draw: st.DrawFn, asset: str, start: int, end: int,
             states: list[str]) -> StatusInterval | None:
    state = draw(st.sampled_from(states))
    if state == "gap":
        return None
    fraction = draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])) if state == "derated" else None
    cause = draw(st.sampled_from([None, None, *CAUSES]))
    return StatusInterval(asset, start, end, state, fraction, cause)  # type: ignore[arg-type]


@st.composite
def histories(draw: st.DrawFn, now: int) -> list[StatusInterval]:
    """Each asset's statuses from the contract year's start to now, one after another (gaps
    too); the last one — what the asset is now — non-available more often than not."""
    out: list[StatusInterval] = []
    for asset in ASSETS:
        unit = asset in UNITS
        states = ["available"] * 12 + ["derated", "unavailable", "unknown"]
        t = YEAR_START
        while t < now:
            length = draw(st.sampled_from([1, 5, 24, 150, 400, 800])) * US_PER_HOUR + draw(
                st.sampled_from([0, 0, 17 * MINUTE]))
            end = min(t + length, now)
            last = end == now
            if last:
                pick = (["derated", "unavailable", "unavailable", "unknown"]
                        + ["available"] * 6 if unit else
                        ["derated", "derated", "unavailable", "unavailable", "unknown",
                         "available", "gap"])
            else:
                pick = states + ["gap"] * (3 if not unit else 0)
            seg = _segment(draw, asset, t, end, pick)
            if seg is not None:
                out.append(seg)
            t = end
    return out


@st.composite
def window_lists(draw: st.DrawFn, now: int) -> list[ExclusionWindow]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        begin = YEAR_START + draw(st.integers(0, (now + 2 * US_PER_HOUR - YEAR_START)
                                              // (15 * MINUTE))) * 15 * MINUTE
        length = draw(st.sampled_from([1, 2, 30, 200])) * US_PER_HOUR
        out.append(ExclusionWindow(draw(st.sampled_from(["alpha", "u1", "u2"])), begin,
                                   begin + length, draw(st.sampled_from(CAUSES))))
    return out


# -- the batch engine's answer ----------------------------------------------------------

def current(history: list[StatusInterval], now: int) -> dict[str, StatusInterval]:
    """Each asset's status now: its interval covering now − 1 µs."""
    return {iv.asset_id: iv for iv in history if iv.start_us < now <= iv.end_us}


def next_hour(history: list[StatusInterval], now: int, hi: int,
              override: dict[str, AssetStatus]) -> list[StatusInterval]:
    """Every asset staying in its status for [now, hi), but those overridden."""
    out = []
    for asset, iv in current(history, now).items():
        s: Any = override.get(asset, iv)
        out.append(StatusInterval(asset, now, hi, s.state, s.derate_fraction, s.cause))
    for asset, s in override.items():
        if asset not in current(history, now):
            out.append(StatusInterval(asset, now, hi, s.state, s.derate_fraction, s.cause))
    return out


def period_of(now: int) -> tuple[str, int]:
    return ("2026-05", JUNE) if now < JUNE else ("2026-06", JULY)


def batch_ld(c: Contract, history: list[StatusInterval], windows: list[ExclusionWindow],
             now: int, override: dict[str, AssetStatus]) -> Decimal:
    """The period's LD by the batch engine with the next hour appended (the asset in
    `override` as given, every other asset staying as it is), the rest of the period at the
    trailing rate (§6) — which, now within the period's first week, is the loss rate of the
    period so far. The rest is kept out of the batch by excluding it (a site window of an
    excluded cause) and added by hand; in the last hour there is no rest at all."""
    label, end = period_of(now)
    hi = min(now + US_PER_HOUR, end)
    first = f"2026-05..{label}"
    rest_window = [] if hi == end else [ExclusionWindow(
        "alpha", hi, end, c.availability.excluded_causes[0])]
    appended = evaluate(FLEET, c, history + next_hour(history, now, hi, override),
                        windows + rest_window, first).periods
    if hi == end:
        return appended[-1].ld.amount  # the batch engine's own LD, nothing added
    rest_excluded = ExclusionWindow("alpha", now, end, c.availability.excluded_causes[0])
    so_far = evaluate(FLEET, c, history, [*windows, rest_excluded], label).periods[-1]
    a_so_far = _availability(c, so_far, 0.0, None)
    rate = None if a_so_far is None else 1.0 - a_so_far
    weights = {u.id: unit_weight(c, u) for u in SITE.units}
    rest = math.fsum(weights[u] * (end - hi) for u in UNITS)
    a = _availability(c, appended[-1], rest, rate)
    ledger = YearLedger(c)
    for earlier in appended[:-1]:
        ledger.settle(3, earlier.availability)
    return ledger.settle(3, a)[0].amount


def _availability(c: Contract, result: PeriodResult, rest: float,
                  rate: float | None) -> float | None:
    if rate is None and rest > 0:
        return None
    counted = math.fsum(u.weight * u.totals.counted_us for u in result.units) + rest
    if counted == 0:
        return None
    lost = math.fsum(u.weight * u.totals.lost_us for u in result.units)
    return 1.0 - (lost + (rate or 0.0) * rest) / counted


def expected_marginal(c: Contract, history: list[StatusInterval],
                      windows: list[ExclusionWindow], now: int, asset: str,
                      status: AssetStatus) -> Decimal:
    with_hour = batch_ld(c, history, windows, now, {asset: status})
    repaired = batch_ld(c, history, windows, now, {asset: AssetStatus("available")})
    return max(Decimal(0), with_hour - repaired)


# -- the module's answer ----------------------------------------------------------------

def accumulator(c: Contract, history: list[StatusInterval], windows: list[ExclusionWindow],
                now: int) -> ContractAccumulator:
    acc = ContractAccumulator(FLEET, c, allowed_lateness_us=0, start_us=YEAR_START)
    for iv in history:
        acc.add(iv)
    for w in windows:
        acc.add_window(w)
    acc.advance(now)
    return acc


def episodes(history: list[StatusInterval], now: int
             ) -> list[tuple[UnavailabilityEpisode, AssetStatus]]:
    """An open episode for every asset not available now, from its current interval's
    start."""
    out = []
    for asset, iv in sorted(current(history, now).items()):
        if iv.state == "available":
            continue
        start_ms = iv.start_us // 1000
        hours = (now - iv.start_us) / US_PER_HOUR
        out.append((UnavailabilityEpisode(
            episode_id=f"{asset}:{start_ms}", asset_id=asset, site_id="alpha",
            start_ms=start_ms, end_ms=None, state=iv.state, cause=iv.cause,
            lost_hours=hours, lost_mwh=hours),
            AssetStatus(iv.state, iv.derate_fraction, iv.cause)))
    return out


# -- properties ---------------------------------------------------------------------------

@st.composite
def cases(draw: st.DrawFn) -> tuple[Contract, list[StatusInterval], list[ExclusionWindow],
                                    int]:
    now = draw(st.sampled_from(NOWS))
    c = draw(contracts(need_excluded=now != LAST_HOUR))
    return c, draw(histories(now)), draw(window_lists(now)), now


SLOW = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SLOW
@given(cases())
def test_the_marginal_ld_is_the_batch_re_evaluation_with_one_more_hour(
        case: tuple[Contract, list[StatusInterval], list[ExclusionWindow], int]) -> None:
    c, history, windows, now = case
    eps = episodes(history, now)
    base = Baseline(accumulator(c, history, windows, now), now)
    for episode, status in eps:
        got = price(base, episode, status)
        want = expected_marginal(c, history, windows, now, episode.asset_id, status)
        assert got.marginal_ld_per_hour == want, (episode.asset_id, status)
        assert got.ld_after - got.ld_now == want or want == 0
        assert (got.zero_reason is None) == (want > 0)
    # the flows' way: the statuses now and the windows given, not looked up
    told = Baseline(accumulator(c, history, windows, now), now, windows=windows, current={
        a: AssetStatus(iv.state, iv.derate_fraction, iv.cause)
        for a, iv in current(history, now).items()})
    assert [price(told, e, s) for e, s in eps] == [price(base, e, s) for e, s in eps]
    ranked = repair_priorities(accumulator(c, history, windows, now), now, eps)
    by_batch = sorted(
        eps, key=lambda e: (-expected_marginal(c, history, windows, now, e[0].asset_id, e[1]),
                            e[0].start_ms, e[0].episode_id))
    assert [r.episode_id for r in ranked] == [e.episode_id for e, _ in by_batch]


@SLOW
@given(cases())
def test_repaired_now_in_the_last_hour_is_the_batch_ld_of_the_period(
        case: tuple[Contract, list[StatusInterval], list[ExclusionWindow], int]) -> None:
    """Both LDs (not only their difference) are the batch engine's for the whole period when
    the extra hour is the period's last."""
    c, history, windows, _ = case
    now = LAST_HOUR
    history = [iv for iv in history if iv.start_us < now]
    history = [StatusInterval(iv.asset_id, iv.start_us, min(iv.end_us, now), iv.state,
                              iv.derate_fraction, iv.cause) for iv in history]
    base = Baseline(accumulator(c, history, windows, now), now)
    for episode, status in episodes(history, now):
        got = price(base, episode, status)
        assert got.ld_now == batch_ld(c, history, windows, now,
                                      {episode.asset_id: AssetStatus("available")})
        assert got.ld_after == batch_ld(c, history, windows, now, {episode.asset_id: status})


# -- by hand ------------------------------------------------------------------------------

def two_units(c: Contract, u1: list[StatusInterval], now: int = LAST_HOUR,
              windows: list[ExclusionWindow] | None = None) -> list[RepairPriority]:
    history = [*u1, StatusInterval("u2", YEAR_START, now, "available")]
    acc = accumulator(c, history, windows or [], now)
    return repair_priorities(acc, now, episodes(history, now))


def test_one_more_hour_by_hand() -> None:
    """June (720 h), two units of equal weight, 97 % guaranteed, 20,000 per point in steps of
    0.01. u1 has been down the last 100 h: repaired now, June loses 100 of 1,440 unit-hours
    (93.0556 %: 3.94 points, 78,800); one more hour, 101 (92.9861 %: 4.01 points, 80,200)."""
    c = contract(start="2024-05-01")
    down = at("2026-06-26 19:00")
    [item] = two_units(c, [StatusInterval("u1", YEAR_START, down, "available"),
                           StatusInterval("u1", down, LAST_HOUR, "unavailable", None,
                                          "fault")])
    assert (item.ld_now, item.ld_after) == (Decimal("78800.00"), Decimal("80200.00"))
    assert item.marginal_ld_per_hour == Decimal("1400.00") and item.zero_reason is None
    assert item.availability_now_pct == pytest.approx(100 * (1 - 100 / 1440))
    assert item.availability_after_pct == pytest.approx(100 * (1 - 101 / 1440))
    assert (item.period, item.contract_year, item.hours, item.currency) == (
        "2026-06", 3, 1.0, "EUR")
    assert item.to_json()["marginal_ld_per_hour"] == 1400.0


def test_a_derate_costs_its_lost_share_and_nothing_when_derates_count_as_available() -> None:
    down = at("2026-06-26 19:00")
    u1 = [StatusInterval("u1", YEAR_START, down, "available"),
          StatusInterval("u1", down, LAST_HOUR, "unavailable", None, "fault")]
    derated = [StatusInterval("u1-i2", down, LAST_HOUR, "derated", 0.5, "fault")]
    # u1-i2 (1,000 of 2,500 kW) at half: 0.2 of u1 lost — hidden under u1's own outage
    [_, child] = sorted(two_units(contract(start="2024-05-01"), u1 + derated),
                        key=lambda r: r.asset_id)
    assert child.asset_id == "u1-i2" and child.marginal_ld_per_hour == 0
    assert child.zero_reason == "no_loss"  # u1 down whole: the child adds nothing
    [item] = [r for r in two_units(contract(start="2024-05-01"),
                                   [StatusInterval("u1", YEAR_START, LAST_HOUR, "available"),
                                    *derated]) if r.asset_id == "u1-i2"]
    # 100 h × 0.2 = 20 h lost of 1,440 (98.61 %) and one more hour 20.2: above 97 %
    assert item.zero_reason == "above_guarantee"
    [item] = [r for r in two_units(contract(start="2024-05-01", guarantee__default_pct=100.0),
                                   [StatusInterval("u1", YEAR_START, LAST_HOUR, "available"),
                                    *derated]) if r.asset_id == "u1-i2"]
    # 100 % guaranteed: 0.2 h more of 1,440 = 0.0139 points — 1 step of 0.01 or 2 (floor)
    assert item.marginal_ld_per_hour in (Decimal("200.00"), Decimal("400.00"))
    assert item.ld_after - item.ld_now == item.marginal_ld_per_hour
    [item] = [r for r in two_units(contract(start="2024-05-01", guarantee__default_pct=100.0,
                                            availability__derate="available"),
                                   [StatusInterval("u1", YEAR_START, LAST_HOUR, "available"),
                                    *derated]) if r.asset_id == "u1-i2"]
    assert (item.marginal_ld_per_hour, item.zero_reason) == (0, "no_loss")


def test_an_excluded_cause_or_window_costs_nothing() -> None:
    c = contract(start="2024-05-01")
    down = at("2026-06-20 00:00")
    [item] = two_units(c, [StatusInterval("u1", YEAR_START, down, "available"),
                           StatusInterval("u1", down, LAST_HOUR, "unavailable", None,
                                          "grid_outage")])
    assert (item.marginal_ld_per_hour, item.zero_reason) == (0, "excluded")
    assert item.availability_now_pct == item.availability_after_pct == 100.0
    # a fault under a site-wide exclusion window of an excluded reason: excluded too
    [item] = two_units(c, [StatusInterval("u1", YEAR_START, down, "available"),
                           StatusInterval("u1", down, LAST_HOUR, "unavailable", None, "fault")],
                       windows=[ExclusionWindow("alpha", LAST_HOUR - US_PER_HOUR, JULY,
                                                "force_majeure")])
    assert (item.marginal_ld_per_hour, item.zero_reason) == (0, "excluded")
    # maintenance within the year's 48 h allowance is excluded; beyond it, it costs
    maint = [StatusInterval("u1", YEAR_START, at("2026-06-30 20:00"), "available"),
             StatusInterval("u1", at("2026-06-30 20:00"), LAST_HOUR, "unavailable", None,
                            "scheduled_maintenance")]
    [item] = two_units(c, maint)
    assert item.zero_reason == "excluded"
    [item] = two_units(contract(start="2024-05-01", guarantee__default_pct=100.0,
                                availability__maintenance_allowance_hours=3), maint)
    assert item.marginal_ld_per_hour > 0


def test_a_contract_year_at_its_cap_costs_nothing_more() -> None:
    """May lost half of u1 (LD far beyond the 5,000 cap): June's outage costs 0, cap
    reached; with the cap not yet reached, the hour costs at most what is left of it."""
    down = at("2026-06-26 19:00")
    u1 = [StatusInterval("u1", YEAR_START, at("2026-05-16 00:00"), "unavailable", None, "fault"),
          StatusInterval("u1", at("2026-05-16 00:00"), down, "available"),
          StatusInterval("u1", down, LAST_HOUR, "unavailable", None, "fault")]
    [item] = two_units(contract(start="2024-05-01", ld__cap_per_contract_year=5000), u1)
    assert (item.marginal_ld_per_hour, item.zero_reason, item.cap_left) == (0, "cap_reached", 0)
    assert item.ld_now == item.ld_after == 0
    # a cap 79,000 above May's LD: June's 78,800 fits, one more hour only 200 of its 1,400
    uncapped = contract(start="2024-05-01", ld__cap_per_contract_year=10**9)
    u2 = StatusInterval("u2", YEAR_START, LAST_HOUR, "available")
    may = evaluate(FLEET, uncapped, [*u1, u2], [], "2026-05").periods[0].ld.amount
    [item] = two_units(contract(start="2024-05-01",
                                ld__cap_per_contract_year=int(may) + 79_000), u1)
    assert item.marginal_ld_per_hour == Decimal(200) and item.cap_left == Decimal(200)


def test_ranking_by_money_then_age_then_id_and_technical_sites_last() -> None:
    def item(episode: str, marginal: float, since: int, *, kind: str = "ltsa",
             currency: str = "EUR", mwh: float = 0.0) -> RepairPriority:
        return RepairPriority(
            episode_id=episode, asset_id=episode, unit_id=episode, site_id="s",
            contract_id="c", kind=kind, currency=currency,  # type: ignore[arg-type]
            state="unavailable", derate_fraction=None, cause=None, since_ms=since,
            lost_hours=1.0, lost_mwh=mwh, as_of_ms=0, period="2026-06", contract_year=1,
            hours=1.0, marginal_ld_per_hour=Decimal(repr(marginal)), ld_now=Decimal(0),
            ld_after=Decimal(0), availability_now_pct=None, availability_after_pct=None,
            guaranteed_pct=97.0, cap_left=Decimal(0),
            zero_reason=None if marginal else "above_guarantee")

    items = [item("t1", 0, 5, kind="technical", mwh=2.0), item("a", 100, 9),
             item("b", 300, 9), item("c", 100, 3), item("t2", 0, 1, kind="technical", mwh=9.0),
             item("d", 100, 3), item("e", 0, 0), item("usd", 900, 0, currency="USD")]
    assert [r.episode_id for r in rank(items)] == ["b", "c", "d", "a", "e", "usd", "t2", "t1"]


def test_a_technical_site_costs_no_money() -> None:
    c = technical_contract(SITE)
    history = [StatusInterval("u1", YEAR_START, LAST_HOUR, "unavailable", None, "fault"),
               StatusInterval("u2", YEAR_START, LAST_HOUR, "available")]
    acc = accumulator(c, history, [], LAST_HOUR)
    [item] = repair_priorities(acc, LAST_HOUR, episodes(history, LAST_HOUR), kind="technical")
    assert (item.kind, item.marginal_ld_per_hour, item.zero_reason) == (
        "technical", 0, "technical")
    assert item.availability_after_pct is not None
    assert item.availability_after_pct < item.availability_now_pct  # type: ignore[operator]


def test_nothing_open_computes_nothing() -> None:
    acc = accumulator(contract(start="2024-05-01"), [], [], LAST_HOUR)
    assert repair_priorities(acc, LAST_HOUR, []) == []
