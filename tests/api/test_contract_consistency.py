"""One set of numbers for one contract (issue: a fresh stack showed "2026-10: 0.000 %, LD
€400,000" in the period table — the months before the stack started, counted as data gaps —
while the live tiles and the overview said €0).

The flows book a site from their first poll (the live tiles, the overview, `bess.availability`
periods); the API's period table and the compliance reports evaluate the final history
(api/history_evaluation.py). Here the same polls go through the flows' site step, its status
intervals into a real SQLite history, and both sides are compared: the closed month the
stack started in, the months before it (no data, never billed) and the open month with the
contract year's LD so far."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest

from api.history_evaluation import evaluate_history
from connectors.history.rows import StatusIntervalRow
from connectors.history.sqlite import SqliteHistoryStore
from connectors.settings import EXAMPLE_MONITORING
from contracts.events import PeriodAvailability, SiteAvailability
from contracts.intervals import ExclusionWindow
from contracts.monitoring import load_monitoring
from flows.site_state import SiteSettings, SiteState
from flows.telemetry import Normalizer, RawRecord
from tests.contracts.builders import contract as base_contract
from tests.flows.timelines import FLEET, T0, sample

CONFIG = load_monitoring(EXAMPLE_MONITORING)
NORMALIZER = Normalizer(CONFIG, FLEET)
# Polls every 10 minutes: statuses final each 10 minutes, the KPIs each hour.
HOURLY = SiteSettings(allowed_lateness_ms=60_000, stale_after_ms=30 * 60_000,
                      finalize_every_ms=600_000, publish_every_ms=3_600_000,
                      kpi_every_ms=3_600_000, values_every_ms=86_400_000)
CEST = dt.timezone(dt.timedelta(hours=2))


def at(year: int, month: int, day: int, hour: int = 0) -> int:
    """Seconds since the epoch of a Stockholm summer-time hour."""
    return int(dt.datetime(year, month, day, hour, tzinfo=CEST).timestamp())


def test_the_live_tiles_the_period_table_and_the_reports_agree(tmp_path: Path) -> None:
    # The LTSA began on 1 April; the stack starts on 20 June and runs into July, with one
    # unit down for two days in late June and half a day in July.
    c = base_contract(site="s1", start="2026-04-01")
    state = SiteState(FLEET, "s1", CONFIG, c, HOURLY)
    start, end = at(2026, 6, 20, 9), at(2026, 7, 9, 12)
    june_down = (at(2026, 6, 25), at(2026, 6, 27))
    july_down = (at(2026, 7, 3, 6), at(2026, 7, 3, 18))
    out = []
    for t in range(start, end, 600):
        down = june_down[0] <= t < june_down[1] or july_down[0] <= t < july_down[1]
        for s in (sample("u1", t - T0 / 1000, code=3 if down else 0),
                  sample("u2", t - T0 / 1000)):
            poll, dead = NORMALIZER.normalize(s, RawRecord(s.device_id.encode(),
                                                           s.model_dump_json().encode()), None)
            assert poll is not None and dead is None
            out += state.on_poll(poll)
    history = SqliteHistoryStore(tmp_path / "history.db")
    history.write_status([o for o in out if isinstance(o, StatusIntervalRow)])
    live = [o for o in out if isinstance(o, SiteAvailability)][-1]
    kpis = live.contract
    assert kpis is not None and live.final_ms is not None and kpis.period == "2026-07"

    evaluation = evaluate_history(FLEET, c, history, "2026-04..2026-07", live.final_ms)
    table = {p.period.label: p for p in evaluation.periods}
    # Before the stack started: no data — not 0 %, not billed.
    for month in ("2026-04", "2026-05"):
        assert table[month].availability is None and table[month].ld.amount == 0
    assert evaluation.monitored_from_us is not None
    assert evaluation.monitored_from_us // 1000 == start * 1000
    # The month it started in: what the flows made final, to the euro.
    [june] = [o for o in out if isinstance(o, PeriodAvailability) and o.period == "2026-06"]
    assert june.availability_pct is not None and june.availability_pct < 97.0  # LD is due
    assert table["2026-06"].availability is not None
    assert 100 * table["2026-06"].availability == pytest.approx(june.availability_pct)
    assert float(table["2026-06"].ld.amount) == pytest.approx(june.ld) and june.ld > 0
    # The open month so far, and the contract year's LD: the live tiles' figures.
    assert table["2026-07"].availability is not None and kpis.actual_pct is not None
    assert 100 * table["2026-07"].availability == pytest.approx(kpis.actual_pct)
    year_ld = sum(float(p.ld.amount) for p in evaluation.periods)
    assert kpis.ld_year_to_date == pytest.approx(year_ld)
    history.close()


def run(state: SiteState, start: int, end: int, down: tuple[int, int]) -> list[Any]:
    """Polls every 10 minutes over [start, end) s; u1 tripped over `down`."""
    out: list[Any] = []
    for t in range(start, end, 600):
        for s in (sample("u1", t - T0 / 1000, code=3 if down[0] <= t < down[1] else 0),
                  sample("u2", t - T0 / 1000)):
            poll, dead = NORMALIZER.normalize(s, RawRecord(s.device_id.encode(),
                                                           s.model_dump_json().encode()), None)
            assert poll is not None and dead is None
            out += state.on_poll(poll)
    return out


def test_a_flow_started_again_over_the_history_keeps_one_set_of_numbers(
        tmp_path: Path) -> None:
    """The stack ran 20–28 June (u1 down two days: June's LD), was stopped, and starts again
    on 1 July with nothing recovered (`make up`'s broker begins empty). The new run resumes
    over the history: the contract year's LD so far on the live tiles includes June's, the
    earlier run's open statuses are closed where the new run takes over (no asset holds two
    at once in the history), and the API's evaluation of the history gives the tiles'
    numbers."""
    c = base_contract(site="s1", start="2026-04-01")

    history = SqliteHistoryStore(tmp_path / "history.db")
    first = run(SiteState(FLEET, "s1", CONFIG, c, HOURLY), at(2026, 6, 20, 9),
                at(2026, 6, 28, 12), (at(2026, 6, 25), at(2026, 6, 27)))
    history.write_status([o for o in first if isinstance(o, StatusIntervalRow)])
    assert any(r.end_ms is None for r in history.status_intervals(
        list(FLEET.assets), 0, 2**53))  # the first run's last statuses: open

    state = SiteState(FLEET, "s1", CONFIG, c, HOURLY)
    first_poll_ms = at(2026, 7, 1, 8) * 1000
    closing = state.resume(history.status_intervals(*state.resume_from(first_poll_ms)),
                           first_poll_ms)
    assert closing and all(isinstance(r, StatusIntervalRow) and r.end_ms ==
                           first_poll_ms - 60_000 for r in closing)
    second = closing + run(state, at(2026, 7, 1, 8), at(2026, 7, 9, 12),
                           (at(2026, 7, 3, 6), at(2026, 7, 3, 18)))
    history.write_status([o for o in second if isinstance(o, StatusIntervalRow)])
    rows = history.status_intervals(list(FLEET.assets), 0, 2**53)
    for asset in {r.asset_id for r in rows}:
        mine = sorted((r for r in rows if r.asset_id == asset), key=lambda r: r.start_ms)
        for a, b in itertools.pairwise(mine):
            assert a.end_ms is not None and a.end_ms <= b.start_ms, (asset, a, b)

    live = [o for o in second if isinstance(o, SiteAvailability)][-1]
    kpis = live.contract
    assert kpis is not None and live.final_ms is not None and kpis.period == "2026-07"
    evaluation = evaluate_history(FLEET, c, history, "2026-04..2026-07", live.final_ms)
    table = {p.period.label: p for p in evaluation.periods}
    assert table["2026-05"].availability is None  # before the first run: no data
    june = float(table["2026-06"].ld.amount)
    assert june > 0  # the first run's trip is in the year's LD …
    assert table["2026-07"].availability is not None and kpis.actual_pct is not None
    assert 100 * table["2026-07"].availability == pytest.approx(kpis.actual_pct)
    year_ld = sum(float(p.ld.amount) for p in evaluation.periods)
    assert kpis.ld_year_to_date == pytest.approx(year_ld)  # … on the tiles as in the table
    assert (kpis.ld_year_to_date or 0) > float(table["2026-07"].ld.amount)
    history.close()


def test_approved_exclusion_windows_count_on_the_live_tiles_as_in_the_table(
        tmp_path: Path) -> None:
    """The same resumed run with two approved windows — one over June's trip, before the
    run started again, one over July's: the contract year's LD and July so far on the
    live tiles equal the history's evaluation with those windows, and the windows moved
    money (June's LD is gone)."""
    c = base_contract(site="s1", start="2026-04-01")

    windows = [ExclusionWindow("u1", at(2026, 6, 25) * 1_000_000, at(2026, 6, 27) * 1_000_000,
                               "grid_outage"),
               ExclusionWindow("s1", at(2026, 7, 3, 6) * 1_000_000,
                               at(2026, 7, 3, 18) * 1_000_000, "force_majeure")]
    history = SqliteHistoryStore(tmp_path / "history.db")
    first = run(SiteState(FLEET, "s1", CONFIG, c, HOURLY, windows), at(2026, 6, 20, 9),
                at(2026, 6, 28, 12), (at(2026, 6, 25), at(2026, 6, 27)))
    history.write_status([o for o in first if isinstance(o, StatusIntervalRow)])
    state = SiteState(FLEET, "s1", CONFIG, c, HOURLY, windows)
    first_poll_ms = at(2026, 7, 1, 8) * 1000
    second = state.resume(history.status_intervals(*state.resume_from(first_poll_ms)),
                          first_poll_ms)
    second += run(state, at(2026, 7, 1, 8), at(2026, 7, 9, 12),
                  (at(2026, 7, 3, 6), at(2026, 7, 3, 18)))
    history.write_status([o for o in second if isinstance(o, StatusIntervalRow)])
    live = [o for o in second if isinstance(o, SiteAvailability)][-1]
    kpis = live.contract
    assert kpis is not None and live.final_ms is not None and kpis.actual_pct is not None
    evaluation = evaluate_history(FLEET, c, history, "2026-04..2026-07", live.final_ms,
                                  windows)
    table = {p.period.label: p for p in evaluation.periods}
    assert float(table["2026-06"].ld.amount) == 0.0  # the trip was excluded
    without = evaluate_history(FLEET, c, history, "2026-04..2026-07", live.final_ms)
    assert float({p.period.label: p for p in without.periods}["2026-06"].ld.amount) > 0
    july = table["2026-07"]
    assert july.availability is not None
    assert 100 * july.availability == pytest.approx(kpis.actual_pct)
    assert kpis.ld_year_to_date == pytest.approx(
        sum(float(p.ld.amount) for p in evaluation.periods))
    excluded = {u.asset_id: u.totals.hours()[1] for u in july.units}
    assert excluded["u1"] == pytest.approx(12.0) and excluded["u2"] == pytest.approx(12.0)
    history.close()


def test_windows_approved_while_the_flow_runs_are_accounted_again(tmp_path: Path) -> None:
    """Two windows approved while the flow runs, on 9 July: one over June's trip, which
    begins before the inputs the accumulator keeps (booked again from the history), and one
    over 12 hours of 3 July (from the kept inputs). The tiles then equal the history's
    evaluation with the windows, and a flow that had them from the start; revoking them
    gives the numbers without them back."""
    c = base_contract(site="s1", start="2026-04-01")

    windows = [ExclusionWindow("u1", at(2026, 6, 25) * 1_000_000, at(2026, 6, 27) * 1_000_000,
                               "grid_outage"),
               ExclusionWindow("s1", at(2026, 7, 3, 6) * 1_000_000,
                               at(2026, 7, 3, 18) * 1_000_000, "force_majeure")]
    june = (at(2026, 6, 25), at(2026, 6, 27))
    end = at(2026, 7, 9, 12)

    def tiles(state: SiteState, t: int) -> SiteAvailability:
        """The snapshot after one more poll at `t`, its KPIs worked out afresh."""
        run(state, t, t + 1, june)
        state.kpis_ms = None
        live = [o for o in state.snapshot() if isinstance(o, SiteAvailability)][-1]
        assert live.contract is not None and live.final_ms is not None
        return live

    history = SqliteHistoryStore(tmp_path / "history.db")
    state = SiteState(FLEET, "s1", CONFIG, c, HOURLY)
    out = run(state, at(2026, 6, 20, 9), end, june)
    history.write_status([o for o in out if isinstance(o, StatusIntervalRow)])
    before = tiles(state, end)
    assert before.contract is not None

    ask = state.rebook_from()
    # The trip's first hours are older than the accumulator's kept inputs: from the history.
    assert ask is not None and ask[2] > june[0] * 1000
    state.rebook(windows, history.status_intervals(*ask))
    after = tiles(state, end + 600)
    kpis = after.contract
    assert kpis is not None and before.contract.ld_year_to_date is not None
    assert kpis.ld_year_to_date is not None
    assert kpis.ld_year_to_date < before.contract.ld_year_to_date  # the windows moved money
    evaluation = evaluate_history(FLEET, c, history, "2026-04..2026-07", after.final_ms,
                                  windows)
    table = {p.period.label: p for p in evaluation.periods}
    assert table["2026-07"].availability is not None and kpis.actual_pct is not None
    assert 100 * table["2026-07"].availability == pytest.approx(kpis.actual_pct)
    assert kpis.ld_year_to_date == pytest.approx(
        sum(float(p.ld.amount) for p in evaluation.periods))

    fresh = SiteState(FLEET, "s1", CONFIG, c, HOURLY, windows)
    run(fresh, at(2026, 6, 20, 9), end, june)
    tiles(fresh, end)
    from_start = tiles(fresh, end + 600).contract
    assert from_start is not None and from_start.actual_pct is not None
    assert from_start.actual_pct == pytest.approx(kpis.actual_pct)
    assert from_start.ld_year_to_date == pytest.approx(kpis.ld_year_to_date)

    ask = state.rebook_from()  # (None: since the rebooking, it keeps every input)
    state.rebook([], history.status_intervals(*ask) if ask else [])
    revoked = tiles(state, end + 1200).contract
    assert revoked is not None
    assert revoked.ld_year_to_date == pytest.approx(before.contract.ld_year_to_date)
    history.close()
