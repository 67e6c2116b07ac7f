"""Breach engine benchmark: `BreachEngine.observe` over a fleet-30-like stream — 30 sites of
40 units, each unit with 2 inverters and 16 DC blocks (19 assets per poll), polled every
second — with the example monitoring rules. A few units heat up and run low on charge, so
limits and trends are raised, escalated and cleared along the way. Cells here jitter by up
to 1.5 °C per sample, far more than real cells (or the simulator) do: over the first half
of a trend window a two-point rate of such noise can exceed 2 °C/min on quiet blocks, so a
short run shows some start-up trend breaches that clear once the window fills.

    .venv/bin/python -m bench.breaches [--sites 30] [--units 40] [--seconds 60]

Only the `observe` calls are timed; building each second's readings is not.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import time

from connectors.settings import EXAMPLE_MONITORING
from contracts.events import TagValue
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from flows.breaches import BreachEngine
from infra.sim.fleetgen import generate_fleet

T0 = 1_790_000_000_000


def readings(fleet: Fleet, t: int, hot: set[str], rng: random.Random
             ) -> list[tuple[str, dict[str, TagValue]]]:
    """Every asset's tags at second `t`, as the simulator reports them; the `hot` units warm
    by 6 °C/min and discharge by 0.5 %/s."""
    out: list[tuple[str, dict[str, TagValue]]] = []
    for site in fleet.sites:
        for unit in site.units:
            heating = unit.id in hot
            temp = 30.0 + (t * 0.1 if heating else 0.0)
            soc = max(0.0, 20.0 - t * 0.5) if heating else 60.0
            out.append((unit.id, {"status_code": 0, "active_power_kw": 1200.0,
                                  "available_power_kw": 2500.0, "soc_pct": soc}))
            for inv in unit.inverters:
                out.append((inv.id, {"status_code": 0, "active_power_kw": 600.0,
                                     "available_power_kw": 1250.0, "temperature_c": temp + 3}))
                for blk in inv.blocks:
                    out.append((blk.id, {"status_code": 0, "soc_pct": soc,
                                         "cell_temp_max_c": temp + rng.uniform(0, 1.5),
                                         "available_energy_kwh": 312.5}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--hot-share", type=float, default=0.02)
    args = parser.parse_args()

    fleet = Fleet.model_validate(generate_fleet(args.sites, units_per_site=args.units))
    config = load_monitoring(EXAMPLE_MONITORING)
    engine = BreachEngine(config, fleet.assets)
    rng = random.Random(1)
    units = [u.id for s in fleet.sites for u in s.units]
    hot = set(rng.sample(units, max(1, round(len(units) * args.hot_share))))

    observed = events = 0
    elapsed = 0.0
    for t in range(args.seconds):
        batch = readings(fleet, t, hot, rng)
        ts = T0 + t * 1000
        observe = engine.observe
        t0 = time.perf_counter()
        for asset_id, tags in batch:
            events += len(observe(asset_id, ts, tags))
        elapsed += time.perf_counter() - t0
        observed += len(batch)

    t0 = time.perf_counter()
    snapshot = pickle.dumps(engine)
    pickle_s = time.perf_counter() - t0
    per_poll = observed // (len(units) * args.seconds)
    print(f"{len(units):,} units × {per_poll} assets × {args.seconds} s = {observed:,} "
          f"asset-observations, {len(hot)} hot units")
    print(f"observe: {elapsed:.3f} s, {observed / elapsed:,.0f} asset-observations/s "
          f"({elapsed / observed * 1e6:.2f} µs each); {events} breach events, "
          f"{len(engine.active())} active at the end")
    print(f"pickled engine: {len(snapshot) / 1e6:.1f} MB in {pickle_s:.3f} s")
    # The last line, for scripts: one JSON object.
    print(json.dumps({"bench": "breaches", "asset_observations": observed,
                      "observations_per_s": round(observed / elapsed) if elapsed else None,
                      "breach_events": events, "pickle_bytes": len(snapshot)}))


if __name__ == "__main__":
    main()
