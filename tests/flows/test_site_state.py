"""One site's state fed poll by poll: the live view at once, final statuses after the
lateness, late and duplicate polls refused, and contract accounting that gives the batch
evaluation's numbers for the intervals the flow derived."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.history.rows import StatusIntervalRow, TelemetryRow
from connectors.settings import EXAMPLE_MONITORING
from contracts.contract import Contract
from contracts.engine import evaluate
from contracts.events import DeadLetter, SiteAvailability, StatusChange, TelemetrySample
from contracts.intervals import StatusInterval
from contracts.monitoring import load_monitoring
from flows.frame import Frame
from flows.outputs import LatestValues, Output, UnitMinute
from flows.site_state import MINUTE_SPREAD_MS, SiteSettings, SiteState, UnitLive
from flows.telemetry import Normalizer, RawRecord
from tests.contracts.builders import contract as base_contract
from tests.flows.timelines import FLEET, T0, sample

CONFIG = load_monitoring(EXAMPLE_MONITORING)
NORMALIZER = Normalizer(CONFIG, FLEET)
FAST = SiteSettings(allowed_lateness_ms=5_000, stale_after_ms=10_000, finalize_every_ms=1_000,
                    publish_every_ms=1_000, kpi_every_ms=10_000, values_every_ms=5_000,
                    idle_after_ms=3_000)


def feed(state: SiteState, samples: list[TelemetrySample]) -> list[Output]:
    out: list[Output] = []
    for s in samples:
        poll, dead = NORMALIZER.normalize(s, RawRecord(s.device_id.encode(),
                                                       s.model_dump_json().encode()), None)
        assert poll is not None and dead is None
        out += state.on_poll(poll)
    return out


def of(out: list[Output], kind: type) -> list[Any]:
    return [o for o in out if isinstance(o, kind)]


def rows_of(out: list[Output]) -> list[TelemetryRow]:
    """The per-minute telemetry rows of the closed unit-minutes among `out`."""
    return [row for minute in of(out, UnitMinute) for row in minute.rows()]


def site_contract(**changes: object) -> Contract:
    return base_contract(site="s1", **changes)


def test_the_live_view_moves_at_once_final_statuses_after_the_lateness() -> None:
    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)
    out = feed(state, [sample("u1", t) for t in range(3)] + [sample("u2", t) for t in range(3)])
    out += feed(state, [sample("u1", 3, code=3)])
    snap = of(out, SiteAvailability)[-1]
    u1 = next(u for u in snap.units if u.id == "u1")
    assert (u1.state, u1.cause) == ("unavailable", "fault")  # live, immediately
    assert not [c for c in of(out, StatusChange) if c.state == "unavailable"]  # not final yet
    out = feed(state, [sample("u1", t) for t in range(4, 12)])
    final = [(c.asset_id, c.ts_ms - T0, c.state) for c in of(out, StatusChange)
             if c.asset_id == "u1"]
    assert final == [("u1", 0, "available"), ("u1", 3000, "unavailable"),
                     ("u1", 4000, "available")]
    intervals = [(r.start_ms - T0, None if r.end_ms is None else r.end_ms - T0,
                  r.state) for r in of(out, StatusIntervalRow) if r.asset_id == "u1"]
    assert intervals == [(0, None, "available"), (0, 3000, "available"),
                         (3000, None, "unavailable"), (3000, 4000, "unavailable"),
                         (4000, None, "available")]


def test_out_of_order_within_the_lateness_lands_in_place_late_and_duplicates_refused() -> None:
    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)
    samples = [sample("u1", t) for t in range(10)]
    samples[4] = sample("u1", 4, code=3)
    feed(state, samples[:4] + samples[5:8])
    out = feed(state, [samples[4]])  # 3 s late, within the 5 s lateness
    out += feed(state, samples[8:] + [sample("u1", t) for t in range(10, 20)])
    assert [(c.ts_ms - T0, c.state) for c in of(out, StatusChange) if c.asset_id == "u1"] == [
        (4000, "unavailable"), (5000, "available")]
    out = feed(state, [sample("u1", 2), sample("u1", 19)])
    dead = of(out, DeadLetter)
    assert [d.reason for d in dead] == ["late"]  # the duplicate of 19 s is dropped
    assert state.counts["duplicate"] == 1 and state.counts["late"] == 1


def test_newest_values_are_published_at_most_every_values_interval() -> None:
    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)
    out = feed(state, [sample("u1", t) for t in range(12)])
    assert [v.ts_ms - T0 for v in of(out, LatestValues)] == [0, 5000, 10000]
    assert dict(of(out, LatestValues)[0].readings)["u1"]["soc_pct"] == 50.0


def test_a_month_of_polls_gives_the_batch_numbers_for_the_intervals_it_derived() -> None:
    c = site_contract(start="2026-06-01", availability__weight="energy",
                      availability__data_gap_policy="unavailable")
    start = int(dt.datetime(2026, 6, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))).timestamp())
    slow = SiteSettings(allowed_lateness_ms=60_000, stale_after_ms=30 * 60_000,
                        finalize_every_ms=3_600_000, publish_every_ms=86_400_000,
                        kpi_every_ms=86_400_000, values_every_ms=86_400_000)
    state = SiteState(FLEET, "s1", CONFIG, c, slow)
    out: list[Output] = []
    step = 600  # one poll per unit every 10 minutes
    end = start + 30 * 86_400
    for t in range(start, end, step):
        day = (t - start) // 86_400
        u1_code = 3 if day == 3 and (t - start) % 86_400 < 7_200 else 0  # 2 h fault on day 3
        b1_code = 3 if day == 10 else 0  # a block down for a day
        silent = day == 20 and (t - start) % 86_400 < 3 * 3600  # u2 silent 3 h on day 20
        polls = [sample("u1", t - T0 / 1000, code=u1_code, u1_b1=b1_code)]
        if not silent:
            polls.append(sample("u2", t - T0 / 1000, code=2 if day == 15 else 0))
        out += feed(state, polls)
    state.finalize(end * 1000, out)
    assert state.accumulator is not None
    flow = state.accumulator.evaluate(["2026-06"])[0]

    # The batch evaluation of the intervals the flow wrote to history.
    open_at: dict[str, StatusIntervalRow] = {}
    intervals: list[StatusInterval] = []
    for r in of(out, StatusIntervalRow):
        if r.end_ms is None:
            open_at[r.asset_id] = r
        else:
            intervals.append(StatusInterval(r.asset_id, r.start_ms * 1000, r.end_ms * 1000,
                                            r.state, r.derate_fraction, r.cause))
    for r in open_at.values():
        if r.start_ms < end * 1000:
            intervals.append(StatusInterval(r.asset_id, r.start_ms * 1000, end * 1_000_000,
                                            r.state, r.derate_fraction, r.cause))
    batch = evaluate(FLEET, c, intervals, [], "2026-06").periods[0]
    assert flow.availability == batch.availability
    assert [u.totals for u in flow.units] == [u.totals for u in batch.units]
    # And by hand: u1 lost the 2 h fault and b1's day (b1 is half of i1, which is all of
    # u1's inverter power: 0.5 × 24 h = 12 h). u2's last poll before its silence was at
    # 23:50, the next at 03:00: communication lost from 00:20 (stale after 30 min), 2 h 40
    # min, unknown under the policy "unavailable"; and on day 15 it reported code 2
    # (derated) without an available-power tag: unknown, 24 h lost.
    hours = {u.asset_id: u.totals.hours()[2] for u in flow.units}
    assert hours["u1"] == pytest.approx(2 + 12)
    assert hours["u2"] == pytest.approx(2 + 40 / 60 + 24)


def test_limit_breaches_are_raised_and_cleared_from_live_polls() -> None:
    from contracts.events import AssetReading, BreachEvent

    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)

    def poll(t: int, cell_temp: float) -> TelemetrySample:
        return TelemetrySample(device_id="u1", ts_ms=T0 + t * 1000, assets=(
            AssetReading(id="u1", tags={"status_code": 0}),
            AssetReading(id="u1-b1", tags={"status_code": 0, "cell_temp_max_c": cell_temp})))

    out = feed(state, [poll(t, 47.0 if 2 <= t < 12 else 30.0) for t in range(15)])
    events = [(e.rule_id, e.severity, e.state, e.ts_ms - T0) for e in of(out, BreachEvent)
              if e.rule_id == "cell-temp-high"]
    # Above 45 °C (major) from 2 s; held 5 s: raised at 7 s; back at 30 °C at 12 s: cleared.
    assert events == [("cell-temp-high", "major", "raised", 7000),
                      ("cell-temp-high", "major", "cleared", 12000)]


def test_a_unit_in_a_lagging_partition_holds_the_watermark_instead_of_turning_late() -> None:
    patient = SiteSettings(allowed_lateness_ms=5_000, stale_after_ms=10_000,
                           finalize_every_ms=1_000, idle_after_ms=600_000)
    state = SiteState(FLEET, "s1", CONFIG, site_contract(), patient)
    out = feed(state, [sample("u1", t) for t in range(60)])  # u1's partition first …
    assert state.final_ms is None or state.final_ms < T0  # … u2 (seen nowhere yet) is not idle
    out = feed(state, [sample("u1", 60)] + [sample("u2", t, code=3 if t == 30 else 0)
                                           for t in range(60)])  # … then u2 catches up
    assert not of(out, DeadLetter)
    assert ("u2", 30_000, "unavailable") in [(c.asset_id, c.ts_ms - T0, c.state)
                                             for c in of(out, StatusChange)]


def test_every_asset_has_its_own_live_availability_and_tags_are_downsampled_per_minute() -> None:
    from contracts.events import AssetReading

    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)

    def poll(t: int) -> TelemetrySample:
        return TelemetrySample(device_id="u1", ts_ms=T0 + t * 1000, assets=(
            AssetReading(id="u1", tags={"status_code": 0, "soc_pct": 20.0 + t / 2}),
            AssetReading(id="u1-b1", tags={"status_code": 3 if 40 <= t < 50 else 0})))

    # T0 is 13:33:20 UTC: the minute of 20 s starts at T0 + 40 s.
    out = feed(state, [poll(t) for t in range(0, 101)])
    values = of(out, LatestValues)[-1]
    b1 = next(a for a in values.assets if a[0] == "u1-b1")
    assert b1[1].state == "available"
    assert b1[2] == pytest.approx(100 * (1 - 10 / 100))  # own availability, last hour
    u1 = next(a for a in values.assets if a[0] == "u1")
    assert u1[2] == 100.0  # the unit's own status never changed
    # That minute's rows are out at most MINUTE_SPREAD_MS after it ends (T0 + 100 s).
    out += feed(state, [poll(t) for t in range(101, 100 + MINUTE_SPREAD_MS // 1000 + 1)])
    minutes = [m for m in rows_of(out) if m.tag == "soc_pct"]
    # Minutes start at T0 + 40 s and T0 + 100 s: the first full one holds t = 40..99.
    first = next(m for m in minutes if m.start_ms == T0 + 40_000)
    assert (first.count, first.min, first.max, first.last) == (60, 40.0, 69.5, 69.5)
    assert first.mean == pytest.approx(sum(20 + t / 2 for t in range(40, 100)) / 60)


def test_units_write_their_minutes_at_times_of_their_own_and_the_last_ones_at_the_end() -> None:
    """Units polled in the same seconds do not all write a closed minute in the same second
    (a burst of history rows that would hold up the live feed); every row still comes out,
    and the input's end writes the minutes still held."""
    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)
    written: dict[tuple[str, int], int] = {}  # (unit, minute) → the poll time it came out at
    out: list[Output] = []
    for t in range(0, 200):  # minutes start at T0 + 40 s, 100 s, 160 s
        for unit in ("u1", "u2"):
            step = feed(state, [sample(unit, t)])
            for row in rows_of(step):
                if row.asset_id == unit and row.tag == "soc_pct":
                    written[(unit, row.start_ms)] = T0 + t * 1000
            out += step
    first = T0 + 40_000
    when = {unit: written[(unit, first)] - (first + 60_000) for unit in ("u1", "u2")}
    assert all(0 <= delay < MINUTE_SPREAD_MS for delay in when.values()), when
    assert when["u1"] != when["u2"]
    out += state.finish()
    rows = [r for r in rows_of(out) if r.tag == "soc_pct"]
    for unit in ("u1", "u2"):
        counts = {r.start_ms: r.count for r in rows if r.asset_id == unit}
        assert counts == {T0 - 20_000: 40, first: 60, T0 + 100_000: 60, T0 + 160_000: 40}, unit


def test_ld_risk_is_warned_once_per_level_and_cleared_once_recovered() -> None:
    """June, two units of equal weight, 97 % guaranteed with a 0.5 % margin. u1 is down all of
    10 June: as the trailing week's loss rate rises the projection falls through `watch` to
    `ld_risk`, and as the outage leaves the trailing 7 × 24 h it climbs back through `watch`
    to `ok` — one warning per level, each cleared by the next. Every warning's numbers agree
    with availability rules §5/§6 by hand, and so does the time the last one clears."""
    import math

    from contracts.events import Alert

    c = site_contract(start="2026-06-01")
    hourly = SiteSettings(allowed_lateness_ms=60_000, stale_after_ms=30 * 60_000,
                          finalize_every_ms=600_000, publish_every_ms=3_600_000,
                          kpi_every_ms=3_600_000, values_every_ms=86_400_000)
    state = SiteState(FLEET, "s1", CONFIG, c, hourly)
    tz = dt.timezone(dt.timedelta(hours=2))
    start = int(dt.datetime(2026, 6, 1, tzinfo=tz).timestamp())
    out: list[Output] = []
    for t in range(start, start + 30 * 86_400, 600):
        down = (t - start) // 86_400 == 9  # 10 June, local
        out += feed(state, [sample("u1", t - T0 / 1000, code=3 if down else 0),
                            sample("u2", t - T0 / 1000)])
    warnings = [a for a in of(out, Alert) if a.kind == "ld_risk"]
    assert [(a.state, a.details["level"]) for a in warnings] == [
        ("raised", "watch"), ("cleared", "watch"), ("raised", "ld_risk"),
        ("cleared", "ld_risk"), ("raised", "watch"), ("cleared", "watch")]
    watch, _, risk, _, back, cleared = warnings
    assert (watch.severity, risk.severity, back.severity) == ("minor", "major", "minor")
    for w in (watch, back):
        assert 97.0 <= w.details["projected_pct"] < 97.5
    projected = risk.details["projected_pct"]
    assert projected < 97.0
    billable = math.floor((97.0 - projected) / 0.01 + 1e-9) * 0.01
    assert risk.details["projected_ld"] == pytest.approx(min(billable * 20_000, 400_000))
    # By hand: x hours into 17 June the trailing week still holds 24 − x hours of the
    # outage (loss rate (24 − x) / 336 over both units) and 2 × (336 − x) unit-hours remain,
    # so the month projects 1 − (24 + (24 − x)(336 − x) · 2/336) / 1440, ≥ 97.5 % once
    # (24 − x)(336 − x) ≤ 2016: x ≥ 17.7 h. The KPIs run hourly on final time (a few minutes
    # behind), so `ok` comes at 18:00.
    assert dt.datetime.fromtimestamp(cleared.ts_ms / 1000, tz) == \
        dt.datetime(2026, 6, 17, 18, tzinfo=tz)
    last = of(out, SiteAvailability)[-1]
    assert last.contract is not None and last.contract.warning_level == "ok"
    assert last.contract.projected_pct == pytest.approx(100 * (1 - 24 / 1440))
    # The windows by hand, on final time (the contract started with the first poll).
    assert last.final_ms is not None
    elapsed_h = (last.final_ms / 1000 - start) / 3600
    month = 100 * (1 - 24 / (2 * elapsed_h))
    assert last.windows["month_to_date"] == pytest.approx(month)
    assert last.windows["contract_year_to_date"] == pytest.approx(month)
    assert last.windows["trailing_30d"] == pytest.approx(month)
    assert last.windows["trailing_7d"] == pytest.approx(100.0)
    assert last.contract.actual_pct == pytest.approx(month)
    assert last.contract.ld_year_to_date == 0.0


def test_a_unit_trip_and_a_silent_unit_are_alarms_cleared_when_they_end() -> None:
    """Issue: a unit that trips turned red with no alarm. Its status is an alarm now, raised
    from the live view (at once, not after the lateness) and cleared when it runs again; a
    unit that stops reporting while its neighbour goes on is a comms-loss alarm, cleared by
    its next poll."""
    from contracts.events import BreachEvent

    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)
    out = feed(state, [sample(u, t) for t in range(3) for u in ("u1", "u2")])
    out += feed(state, [sample("u1", 3, code=3), sample("u2", 3)])
    trips = [e for e in of(out, BreachEvent) if e.kind == "status"]
    assert [(e.asset_id, e.rule_id, e.severity, e.state, e.ts_ms - T0) for e in trips] == [
        ("u1", "status.unavailable", "major", "raised", 3000)]
    assert "fault" in trips[0].message
    out = feed(state, [sample("u1", 4), sample("u2", 4)])
    assert [(e.breach_id, e.state) for e in of(out, BreachEvent)] == [
        (trips[0].breach_id, "cleared")]
    # u2 goes silent; u1 reports on: after stale_after (10 s) u2 is a comms-loss alarm
    out = feed(state, [sample("u1", t) for t in range(5, 20)])
    silent = [e for e in of(out, BreachEvent) if e.asset_id == "u2"]
    assert [(e.rule_id, e.state) for e in silent] == [("status.unknown", "raised")]
    assert "comms loss" in silent[0].message and silent[0].ts_ms - T0 > 14_000
    out = feed(state, [sample("u2", 20)])
    assert [(e.breach_id, e.state) for e in of(out, BreachEvent)] == [
        (silent[0].breach_id, "cleared")]


def test_the_site_warning_level_is_an_alarm_as_well_as_an_alert() -> None:
    """Alerts of the site (here the warning level from the telemetry flow's step, through
    SiteRuntime) become alarms under ids of their own, raised and cleared with them."""
    from contracts.alarm_sources import alert_alarms
    from contracts.events import Alert, BreachEvent

    state = SiteState(FLEET, "s1", CONFIG, site_contract(), FAST)
    alert = Alert(alert_id="ld_risk:s1:1", kind="ld_risk", scope_id="s1", site_id="s1",
                  severity="major", state="raised", raised_ms=T0, ts_ms=T0,
                  message="LD risk")
    [alarm] = state.alarms_of_alerts([alert, *feed(state, [sample("u1", 0)])])
    assert alarm == alert_alarms(CONFIG.alarms, [alert])[0]
    assert isinstance(alarm, BreachEvent)
    assert (alarm.kind, alarm.asset_id, alarm.site_id) == ("alert", "s1", "s1")


def test_a_unit_trip_is_ranked_by_repair_priority_and_leaves_the_list_when_it_runs() -> None:
    """At each KPI step the site's open episodes are priced (contracts/repair.py) and the
    whole list is put out for the hot state: a tripped unit is in it — at its final status,
    with the money one more hour of it costs — and the list is empty again once the unit
    runs; the running unit never is in it."""
    from contracts.repair import AssetStatus, repair_priorities
    from flows.outputs import RepairList
    from flows.redis_sink import hot_state

    c = site_contract(ld__cap_per_contract_year=10**12)
    state = SiteState(FLEET, "s1", CONFIG, c, FAST)
    out = feed(state, [sample(u, t, code=3 if u == "u1" and 3 <= t < 40 else 0)
                       for t in range(60) for u in ("u1", "u2")])
    lists = of(out, RepairList)
    assert lists and all(hot_state(r) is r for r in lists)
    ranked = [r for r in lists if r.items]
    assert ranked, "no KPI step saw the trip"
    for r in ranked:
        [item] = r.items
        assert (item.asset_id, item.state, item.cause, item.kind) == (
            "u1", "unavailable", "fault", "ltsa")
        assert item.episode_id == f"u1:{T0 + 3000}" and item.as_of_ms == r.as_of_ms
        assert item.marginal_ld_per_hour > 0 and item.zero_reason is None
        assert item.ld_after - item.ld_now == item.marginal_ld_per_hour
    assert lists[-1].items == ()  # running again: nothing open
    # what the step put out is what the module gives at the final time it priced at
    acc = SiteState(FLEET, "s1", CONFIG, c, FAST)
    feed(acc, [sample(u, t, code=3 if u == "u1" and 3 <= t < 40 else 0)
               for t in range(30) for u in ("u1", "u2")])
    [episode] = acc.episodes.open_episodes(acc.final_ms)
    assert acc.accumulator is not None and acc.final_ms is not None
    [again] = repair_priorities(acc.accumulator, acc.final_ms * 1000,
                                [(episode, AssetStatus("unavailable", None, "fault"))])
    assert again == acc.repair_list().items[0]


def test_a_site_without_a_contract_ranks_its_outages_without_money() -> None:
    state = SiteState(FLEET, "s1", CONFIG, None, FAST)
    from flows.outputs import RepairList

    out = feed(state, [sample(u, t, code=3 if u == "u2" and t >= 3 else 0)
                       for t in range(30) for u in ("u1", "u2")])
    item = [r for r in of(out, RepairList) if r.items][-1].items[0]
    assert (item.asset_id, item.kind, item.marginal_ld_per_hour, item.zero_reason) == (
        "u2", "technical", 0, "technical")
    assert item.lost_mwh > 0


def test_a_recovery_snapshot_holding_a_closed_minute_as_rows_resumes_with_the_same_rows() -> None:
    """Snapshots taken before closed minutes were one item held them as their rows: a unit's
    live view unpickled from one gives those rows back."""
    rows = [TelemetryRow("u1", "s1", "soc_pct", T0, 3, 1.0, 2.0, 1.5, 2.0),
            TelemetryRow("u1-b1", "s1", "cell_temp_max_c", T0, 2, 20.0, 21.0, 20.5, 21.0)]
    old = UnitLive()
    old.__dict__["closed"] = rows  # as an older version pickled it
    resumed = pickle.loads(pickle.dumps(old))
    assert resumed.closed is not None and resumed.closed.rows() == rows
    old.__dict__["closed"] = []
    assert pickle.loads(pickle.dumps(old)).closed is None


def test_a_closed_minute_pickled_as_its_aggregates_resumes_as_arrays() -> None:
    """Unit-minutes held (asset, tag) → [n, min, max, Σ, last] before they were arrays: one
    unpickled from a snapshot of then gives the same rows; one of now round-trips."""
    class Old:
        def __reduce__(self) -> tuple[object, ...]:  # what pickle recorded of one
            return (object.__new__, (UnitMinute,), [
                "s1", T0, {("u1", "soc_pct"): [3.0, 1.0, 2.0, 4.5, 2.0],
                           ("u1-b1", "cell_temp_max_c"): [2.0, 20.0, 21.0, 41.0, 21.0]}])

    resumed = pickle.loads(pickle.dumps(Old()))
    assert isinstance(resumed, UnitMinute)
    assert resumed.rows() == [
        TelemetryRow("u1", "s1", "soc_pct", T0, 3, 1.0, 2.0, 1.5, 2.0),
        TelemetryRow("u1-b1", "s1", "cell_temp_max_c", T0, 2, 20.0, 21.0, 20.5, 21.0)]
    assert pickle.loads(pickle.dumps(resumed)) == resumed


def test_a_recovery_snapshot_from_before_lazy_asset_timelines_resumes_them_at_its_newest_poll(
) -> None:
    """Snapshots taken before each asset's live timeline was extended lazily had them up to
    the unit's newest poll, and its minute as a dictionary: both go on from there."""
    old = UnitLive()
    old.__dict__.update(ts_ms=T0 + 1000, minute={("u1", "soc_pct"): [1.0, 5.0, 5.0, 5.0, 5.0]})
    del old.__dict__["assets_from_ms"]  # as an older version pickled it
    resumed = pickle.loads(pickle.dumps(old))
    assert resumed.assets_from_ms == T0 + 1000
    assert resumed.minute.aggregates() == {("u1", "soc_pct"): [1.0, 5.0, 5.0, 5.0, 5.0]}


@given(st.lists(st.tuples(st.sampled_from([0, 3, 5]), st.sampled_from([None, 0.0, 1.0, 4.0]),
                          st.sampled_from([0, 3]), st.booleans()), min_size=1, max_size=20))
def test_a_units_statuses_kept_from_its_poll_before_are_those_of_its_assets_tags(
        steps: list[tuple[int, float | None, int, bool]]) -> None:
    """A unit's statuses are kept from its poll before when the poll has the same shape and
    the same values of the tags the rules read; whatever changes poll to poll (a code, an
    alarm word there or not, a child's code, a tag the rules do not read there or not), they
    are what working out each asset's status afresh gives."""
    state = SiteState(FLEET, "s1", CONFIG, None, FAST)
    children = [a.id for a in FLEET.assets.values() if a.unit_id == "u1" and a.id != "u1"]
    for code, alarm, child, extra in steps:
        unit: dict[str, float] = {"status_code": float(code)}
        if alarm is not None:
            unit["alarm_word"] = alarm
        if extra:
            unit["soc_pct"] = 50.0
        readings = (("u1", unit), (children[0], {"status_code": float(child)}),
                    *((c, {"status_code": 0.0}) for c in children[1:]))
        fresh = SiteState(FLEET, "s1", CONFIG, None, FAST)
        assert state._statuses("u1", readings, Frame.of(readings)) == \
            fresh._asset_statuses(readings)
