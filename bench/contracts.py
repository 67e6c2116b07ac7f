"""Contract engine benchmark (issue 3): one month of a 40-unit site from 100,000 status
intervals, evaluated in batch (target < 1 s) and fed to the incremental accumulator (target
≥ 200,000 intervals/s) — in time order, and shuffled within the allowed lateness as a flow
receives them from several partitions.

    .venv/bin/python -m bench.contracts [--units 40] [--intervals 100000] [--repeat 5]

It runs the engine as `contracts` loads it: compiled (`make native`) or, with
BESSMON_NATIVE=0 or no build, as Python; the last line says which (`compiled`).
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import random
import time
from collections.abc import Callable

from contracts.contract import Contract, parse_contract
from contracts.engine import evaluate
from contracts.fleet import Fleet
from contracts.incremental import ContractAccumulator
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.native import why_not_compiled
from contracts.periods import ContractCalendar
from infra.sim.fleetgen import generate_fleet

CONTRACT = """
id: BENCH
site: nordvik
start: 2024-10-01
term_years: 20
measurement_period: month
availability:
  weight: energy
  derate: pro_rata
  data_gap_policy: unavailable
  excluded_causes: [grid_outage, force_majeure, customer_request]
  maintenance_allowance_hours: 48
guarantee: {default_pct: 97.0}
ld: {currency: EUR, step_pct: 0.01, rate_per_pct: 20000, cap_per_contract_year: 400000}
early_warning_margin_pct: 0.5
"""
STATES = ["available"] * 6 + ["derated", "unavailable", "unknown"]
CAUSES = [None, None, None, "fault", "scheduled_maintenance", "grid_outage", "comms_loss"]


def synthetic(fleet: Fleet, contract: Contract, n: int, seed: int
              ) -> tuple[list[StatusInterval], list[ExclusionWindow], str]:
    """`n` intervals over October 2026 (the first month of a contract year), spread over
    the units and a quarter of them on inverters and blocks, back to back per asset."""
    rng = random.Random(seed)
    site = fleet.site(contract.site)
    cal = ContractCalendar(contract.start, contract.term_years, site.tz)
    period = cal.parse("2026-10", "month")
    units = list(site.units)
    children = [i for u in units for inv in u.inverters
                for i in (inv.id, *(b.id for b in inv.blocks))]
    per_unit = int(n * 0.75) // len(units)
    per_child = (n - per_unit * len(units)) // len(children)
    out: list[StatusInterval] = []
    span = period.end_us - period.start_us
    for asset_id, count in [*[(u.id, per_unit) for u in units], *[(c, per_child)
                                                                   for c in children]]:
        cuts = sorted(rng.sample(range(1, span // 1_000_000), count - 1))
        edges = [period.start_us, *(period.start_us + c * 1_000_000 for c in cuts), period.end_us]
        for start, end in itertools.pairwise(edges):
            state = rng.choice(STATES)
            out.append(StatusInterval(asset_id, start, end, state,  # type: ignore[arg-type]
                                      rng.choice([0.5, 0.8]) if state == "derated" else None,
                                      rng.choice(CAUSES)))  # type: ignore[arg-type]
    windows = [ExclusionWindow(site.id, period.start_us + 86_400_000_000 * d,
                               period.start_us + 86_400_000_000 * d + 7_200_000_000,
                               "grid_outage") for d in range(0, 28, 7)]
    return out, windows, period.label


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--intervals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each; the fastest counts (the CPU is shared)")
    parser.add_argument("--gc-scans-inputs", action="store_true",
                        help="leave the inputs to the garbage collector (slower)")
    args = parser.parse_args()

    fleet = Fleet.model_validate(generate_fleet(1, units_per_site=args.units))
    contract = parse_contract(CONTRACT, "bench")
    intervals, windows, label = synthetic(fleet, contract, args.intervals, seed=1)
    n = len(intervals)
    if not args.gc_scans_inputs:
        # The input intervals sit in memory for the whole run here, unlike in a flow where
        # they stream through: keep the garbage collector from scanning them over and over.
        gc.collect()
        gc.freeze()

    batch_s = best_of(args.repeat, lambda: evaluate(fleet, contract, intervals, windows, label))

    lateness = 300_000_000
    in_order = sorted(intervals, key=lambda x: x.start_us)
    shuffled = arrival_order(intervals, lateness, seed=2)
    end = max(x.end_us for x in intervals)

    def incremental(arrivals: list[StatusInterval]) -> ContractAccumulator:
        acc = ContractAccumulator(fleet, contract, allowed_lateness_us=lateness,
                                  start_us=intervals[0].start_us)
        for w in windows:
            acc.add_window(w)
        for i, interval in enumerate(arrivals):
            acc.add(interval)
            if i % 1000 == 0:
                acc.advance()
        acc.advance(end)
        return acc

    batch = evaluate(fleet, contract, intervals, windows, label).periods[0].availability
    rows = [(f"batch evaluate, {args.units} units, 1 month", batch_s, "< 1 s")]
    same = []
    for name, arrivals in (("in time order", in_order), ("shuffled within lateness", shuffled)):
        rows.append((f"incremental, {name}", best_of(args.repeat,
                                                    functools.partial(incremental, arrivals)),
                     "≥ 200,000/s"))
        same.append(incremental(arrivals).evaluate([label])[0].availability == batch)

    print(f"{'what':<44}{'seconds':>10}{'intervals/s':>14}{'target':>18}")
    for what, seconds, target in rows:
        print(f"{what:<44}{seconds:>10.3f}{n / seconds:>14,.0f}{target:>18}")
    why = why_not_compiled()
    print(f"{n:,} intervals, {len(windows)} exclusion windows, advance every 1,000, lateness "
          f"{lateness // 1_000_000} s; incremental == batch: {all(same)}; engine: "
          + ("compiled" if why is None else f"Python ({why})"))
    # The last line, for scripts: one JSON object.
    print(json.dumps({"bench": "contracts", "intervals": n,
                      "seconds": {what: seconds for what, seconds, _ in rows},
                      "incremental_equals_batch": all(same), "compiled": why is None}))


def arrival_order(intervals: list[StatusInterval], lateness_us: int, seed: int
                  ) -> list[StatusInterval]:
    """Shuffled, but each interval arrives before the watermark passes its start (the
    newest start seen less the lateness): sorted by start plus up to the lateness."""
    rng = random.Random(seed)
    return sorted(intervals, key=lambda x: x.start_us + rng.randrange(lateness_us))


if __name__ == "__main__":
    main()
