"""Contract compliance from what the flows wrote to the history: the site's final status
intervals from the start of the contract year through the asked periods, evaluated by the
contract engine exactly as `bessmon contracts evaluate` would (availability rules §7), so the API,
the reports and the batch command always agree. Time the flows have not made final yet (after
their `final_ms`) is not evaluated (the future, not a data gap): an open period's numbers are
those of its final part, the live tiles' "so far"; its projection is in the site's live KPIs.
Time before the site's first status in the history is no data (never billed).

The exclusion windows are the contract's approved ones (docs/exclusions.md): the callers
pass `approved_windows(store, contract.id)` (connectors/api_store.py), so that the API's
compliance, its reports and the revisions of an approval all evaluate the same windows."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.history import HistoryStore
from contracts.contract import Contract
from contracts.engine import ContractContext, Evaluation, evaluate
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow, StatusInterval


def evaluate_history(fleet: Fleet, contract: Contract, history: HistoryStore, period: str,
                     final_ms: int | None, windows: Sequence[ExclusionWindow] = ()
                     ) -> Evaluation:
    """InvalidInput for a period the contract does not have (the message names it).
    `windows`: the exclusion windows to evaluate with (the approved ones).

    Monitoring began with the site's first status interval in the history: time before it
    is no data (not billed, `Evaluation.monitored_from_us`), as in the live flows, which
    book from their first poll — so the live tiles, this evaluation and the reports give
    one set of numbers. A history with nothing for the site has no data at all."""
    ctx = ContractContext(fleet, contract)
    cal = ctx.calendar
    asked = cal.parse_range(period, contract.measurement_period)
    start_us = min(cal.year_bounds(cal.period_year(asked[0]))[0], asked[0].start_us)
    end_us = asked[-1].end_us
    if final_ms is not None:
        end_us = min(end_us, final_ms * 1000)
    site = ctx.site
    assets = [a for a in fleet.assets.values() if a.site_id == site.id and a.kind != "site"]
    intervals = []
    first_us: int | None = None  # the site's first status in the history
    if end_us > start_us:
        for r in history.status_intervals([a.id for a in assets], start_us // 1000,
                                          end_us // 1000):
            first_us = r.start_ms * 1000 if first_us is None else \
                min(first_us, r.start_ms * 1000)
            stop = min(end_us, r.end_ms * 1000) if r.end_ms is not None else end_us
            begin = max(start_us, r.start_ms * 1000)
            if stop > begin:
                intervals.append(StatusInterval(r.asset_id, begin, stop, r.state,
                                                r.derate_fraction, r.cause))
    return evaluate(fleet, contract, intervals, list(windows), period,
                    monitored_from_us=asked[-1].end_us if first_us is None else first_us,
                    until_us=None if final_ms is None else final_ms * 1000)
