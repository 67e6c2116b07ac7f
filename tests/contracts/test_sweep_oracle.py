"""The unit sweep's fast paths against the obvious: time booked piece by piece with every
rule applied from scratch (no events, no memo, no state carried from run to run), the
roll-up recomputed whole, and site-local days found by the calendar — equal to the bit."""

from __future__ import annotations

import copyreg
import datetime as dt
import io
import itertools
import pickle
import random
from typing import Any, get_args
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.engine import ContractContext
from contracts.events import Cause
from contracts.incremental import ContractAccumulator
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.ledger import OVER_ALLOWANCE, Totals, UnitScope, UnitSweep
from contracts.periods import LocalDays, from_us, local_midnight_us, to_us
from contracts.rules import Kind, Rollup
from tests.contracts.builders import FLEET, TZ, contract

MINUTE = 60_000_000
HOUR = 60 * MINUTE
UNIT = "u1"
CHILDREN = ["u1-i1", "u1-i1-b1", "u1-i1-b2", "u1-i2"]
# Three days around the start of contract year 3 (the base contract starts 2024-06-01).
LO = to_us(dt.datetime(2026, 5, 30, 21, tzinfo=TZ))
HI = LO + 3 * 24 * HOUR
CAUSES: list[str | None] = [None, *get_args(Cause)]


@st.composite
def statuses(draw: st.DrawFn, asset_id: str) -> list[StatusInterval]:
    """Back to back with gaps now and then, on a 10-minute grid."""
    out = []
    t = LO + draw(st.integers(-20, 30)) * 10 * MINUTE
    for _ in range(draw(st.integers(0, 30))):
        t += draw(st.sampled_from([0, 0, 0, 1, 12])) * 10 * MINUTE
        end = t + draw(st.integers(1, 36)) * 10 * MINUTE
        state = draw(st.sampled_from(["available", "available", "derated", "unavailable",
                                      "unknown"]))
        fraction = draw(st.sampled_from([0.0, 0.5, 1 / 3, 1.0])) if state == "derated" else None
        out.append(StatusInterval(asset_id, t, end, state,  # type: ignore[arg-type]
                                  fraction, draw(st.sampled_from(CAUSES))))  # type: ignore[arg-type]
        t = end
    return out


@st.composite
def windows(draw: st.DrawFn) -> list[ExclusionWindow]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        begin = LO + draw(st.integers(-6, 400)) * 10 * MINUTE
        out.append(ExclusionWindow(UNIT, begin, begin + draw(st.integers(1, 60)) * 10 * MINUTE,
                                   draw(st.sampled_from(["grid_outage", "scheduled_maintenance",
                                                         "fault", "force_majeure"]))))
    return out


def obvious(scope: UnitScope, own: list[StatusInterval], children: list[StatusInterval],
            exclusions: list[ExclusionWindow], used: dict[int, int]) -> dict[int, Totals]:
    """`[LO, HI)` by site-local day, cut at every boundary, each piece judged on its own."""
    rules, cal = scope.rules, ContractContext(FLEET, contract()).calendar
    day = from_us(LO, TZ).date()
    days = [local_midnight_us(day + dt.timedelta(days=d), TZ) for d in range(5)]
    items: list[StatusInterval | ExclusionWindow] = [*own, *children, *exclusions]
    cuts = sorted({LO, HI, *cal.boundaries, *days,
                   *(x for item in items for x in (item.start_us, item.end_us))})
    out: dict[int, Totals] = {}
    for a, b in itertools.pairwise([c for c in cuts if LO <= c <= HI]):
        status = next((x for x in own if x.start_us <= a < x.end_us), None)
        reasons = {w.reason for w in exclusions if w.start_us <= a < w.end_us}
        excluding = next((r for r in rules.excluded_order if r in reasons), None)
        label, kind, own_loss, why = rules.classify_unit(
            status, excluding, "scheduled_maintenance" in reasons - rules.excluded_causes)
        losses = {c.asset_id: rules.child_loss(c) for c in children if c.start_us <= a < c.end_us}
        loss = max(own_loss, Rollup(UNIT, FLEET.assets).children_loss(losses))
        totals = out.setdefault(max(d for d in days if d <= a), Totals())
        us, year = b - a, cal.contract_year(a)
        assert year is not None
        totals.window_us += us
        if kind is Kind.COUNTED:
            totals.class_us[label] = totals.class_us.get(label, 0) + us
            totals.loss_us[loss] = totals.loss_us.get(loss, 0) + us
        elif kind is Kind.MAINTENANCE:
            take = min(us, max(0, scope.allowance_us - used.get(year, 0)))
            used[year] = used.get(year, 0) + take
            totals.excluded_us += take
            totals.class_us["maintenance"] = totals.class_us.get("maintenance", 0) + take
            if take:
                totals.allowance_used_us[year] = totals.allowance_used_us.get(year, 0) + take
            if us > take:
                totals.loss_us[1.0] = totals.loss_us.get(1.0, 0) + us - take
                totals.class_us[OVER_ALLOWANCE] = totals.class_us.get(OVER_ALLOWANCE, 0) + us - take
        else:
            totals.class_us[label] = totals.class_us.get(label, 0) + us
            totals.excluded_us += us
            totals.excluded_by[why] = totals.excluded_by.get(why, 0) + us
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=st.data(), seed=st.integers(0, 2**32),
       excluded=st.lists(st.sampled_from(get_args(Cause)), unique=True, max_size=3),
       policy=st.sampled_from(["available", "unavailable", "excluded"]),
       allowance_hours=st.sampled_from([0, 3, 48]))
def test_the_sweep_in_runs_equals_the_obvious_walk(data: st.DataObject, seed: int,
                                                   excluded: list[str], policy: str,
                                                   allowance_hours: int) -> None:
    c = contract(availability__excluded_causes=excluded,
                 availability__data_gap_policy=policy,
                 availability__maintenance_allowance_hours=allowance_hours)
    scope = ContractContext(FLEET, c).scopes[UNIT]
    own = data.draw(statuses(UNIT))
    children = [x for child in CHILDREN for x in data.draw(statuses(child))]
    exclusions = data.draw(windows())

    days = LocalDays(TZ)

    def locate(us: int) -> tuple[int, int]:
        return days.bounds(us)

    rng = random.Random(seed)
    sweep = UnitSweep(scope, locate, LO)
    got: dict[int, Totals] = {}
    items: list[StatusInterval | ExclusionWindow] = [*own, *children, *exclusions]
    rng.shuffle(items)
    for item in items:  # all before the first run: nothing is late
        sweep.add(item)
    # Runs that end anywhere: on a boundary of an input, in between, on a local midnight.
    stops = sorted([*rng.sample(range(LO, HI, 10 * MINUTE), 12), LO + 3 * HOUR])
    for stop in [*stops, HI]:
        sweep.run(stop, got)

    expected = obvious(scope, own, children, exclusions, {})
    assert {day: t for day, t in got.items() if t.window_us} == expected


@settings(max_examples=200, deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from([*CHILDREN, "u2"]),
                                  st.sampled_from([None, 0.0, 0.25, 1 / 3, 0.5, 1.0])),
                        max_size=30))
def test_a_kept_rollup_equals_one_computed_afresh(
        changes: list[tuple[str, float | None]]) -> None:
    rollup = Rollup(UNIT, FLEET.assets)
    own: dict[str, float] = {}
    rolled: dict[str, float] = {}
    for asset_id, loss in changes:
        if loss is None:
            own.pop(asset_id, None)
        else:
            own[asset_id] = loss
        if asset_id in rollup.under:  # "u2" is not under u1: its losses never count
            rolled.pop(rollup.under[asset_id], None)
        assert rollup.children_loss(own, rolled) == rollup.children_loss(own)


@settings(max_examples=200, deadline=None)
@given(zone=st.sampled_from(["Europe/Stockholm", "Australia/Lord_Howe", "America/Sao_Paulo",
                             "Asia/Kolkata", "UTC"]),
       instants=st.lists(st.integers(to_us(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
                                     to_us(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))),
                         min_size=1, max_size=40))
def test_local_days_are_the_calendars_days(zone: str, instants: list[int]) -> None:
    tz = ZoneInfo(zone)
    days = LocalDays(tz)
    for us in [*instants, *(x + HOUR * k for x in instants[:3] for k in range(-30, 30))]:
        today = from_us(us, tz).date()
        assert days.bounds(us) == (local_midnight_us(today, tz),
                                   local_midnight_us(today + dt.timedelta(days=1), tz))


# What the snapshots of these classes lacked before the fast paths.
ADDED_BY_THE_FAST_PATHS: dict[type, set[str]] = {
    ContractAccumulator: {"_days"}, UnitSweep: {"_bucket", "_year", "_rolled"},
    UnitScope: {"status_classes"}}


def snapshot_before_the_fast_paths(acc: ContractAccumulator) -> bytes:
    """`acc` pickled as an older version did: each object's state without the attributes
    added since (written at the pickle level, so that it works whether the classes run as
    Python or compiled, where attributes cannot be deleted)."""

    class Older(pickle.Pickler):
        def reducer_override(self, obj: object) -> Any:
            added = ADDED_BY_THE_FAST_PATHS.get(type(obj))
            if added is None:
                return NotImplemented
            state = {k: v for k, v in obj.__getstate__().items()  # type: ignore[attr-defined]
                     if k not in added}
            return copyreg.__newobj__, (type(obj),), state  # type: ignore[attr-defined]

    out = io.BytesIO()
    Older(out, protocol=pickle.HIGHEST_PROTOCOL).dump(acc)
    return out.getvalue()


def test_a_recovery_snapshot_from_before_the_fast_paths_resumes_exactly() -> None:
    """The flows pickle the accumulator; a snapshot taken before the carried bucket, the
    kept roll-up, the status memo and the kept days resumes with the same numbers."""
    c = contract()
    start = to_us(dt.datetime(2026, 6, 1, tzinfo=TZ))
    rng = random.Random(5)
    rows = []
    for asset_id in [UNIT, *CHILDREN, "u2"]:
        t = start
        while t < start + 3 * 24 * HOUR:
            end = t + rng.randrange(1, 40) * 10 * MINUTE
            rows.append(StatusInterval(asset_id, t, end, rng.choice(
                ["available", "unavailable", "unknown"])))  # type: ignore[arg-type]
            t = end
    rows.sort(key=lambda x: x.start_us)
    end = max(x.end_us for x in rows)

    def accumulator(snapshot_at: int | None) -> ContractAccumulator:
        acc = ContractAccumulator(FLEET, c, allowed_lateness_us=HOUR, start_us=start)
        for i, row in enumerate(rows):
            acc.add(row)
            if i % 7 == 0:
                acc.advance()
            if i == snapshot_at:
                acc = pickle.loads(snapshot_before_the_fast_paths(acc))
        acc.advance(end)
        return acc

    first = accumulator(None).view().totals()
    assert accumulator(len(rows) // 2).view().totals() == first
