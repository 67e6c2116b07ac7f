"""Decode benchmark (issue 17): one telemetry record (a battery unit's poll: 19 assets, ~89
tags, as the simulator writes it) to its poll, in this process — the reference way
(`decode_sample`: pydantic's `TelemetrySample`, then `Normalizer.normalize`) and the fast one
(`Normalizer.read`: orjson, validated while normalized). Both timed over the same records,
interleaved, best of `--repeat` rounds; both must give the same polls.

    .venv/bin/python -m bench.decode [--sites 30] [--units 40] [--seconds 3] [--repeat 15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import time

from connectors.settings import EXAMPLE_MONITORING
from contracts.events import DeadLetter
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from flows.telemetry import Normalizer, RawRecord, decode_sample
from infra.sim.fleetgen import generate_fleet
from infra.sim.record import record

START_MS = int(dt.datetime(2026, 10, 12, 8, tzinfo=dt.UTC).timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)

    fleet = Fleet.model_validate(generate_fleet(args.sites, units_per_site=args.units))
    normalizer = Normalizer(load_monitoring(EXAMPLE_MONITORING), fleet)
    records = [RawRecord(s.device_id.encode(), s.model_dump_json().encode(), "raw", 0, 0)
               for s in record(fleet, START_MS, START_MS + args.seconds * 1000, 1000, seed=1,
                               fault_rate_per_day=5)]
    now_ms = START_MS + args.seconds * 1000

    def reference(rec: RawRecord) -> object:
        sample = decode_sample(rec, now_ms)
        return sample if isinstance(sample, DeadLetter) else \
            normalizer.normalize(sample, rec, now_ms)

    def fast(rec: RawRecord) -> object:
        return normalizer.read(rec, now_ms, now_ms)

    assert [fast(rec) for rec in records] == [reference(rec) for rec in records]
    gc.collect()
    best = {"reference": float("inf"), "fast": float("inf")}
    for _ in range(args.repeat):
        for name, run in (("reference", reference), ("fast", fast)):
            started = time.perf_counter()
            for rec in records:  # each result dropped, as the flow's step drops it
                run(rec)
            best[name] = min(best[name], time.perf_counter() - started)
    us = {name: seconds / len(records) * 1e6 for name, seconds in best.items()}
    print(json.dumps({"bench": "decode", "records": len(records),
                      "reference_us_per_record": round(us["reference"], 1),
                      "fast_us_per_record": round(us["fast"], 1),
                      "fast_over_reference": round(us["fast"] / us["reference"], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
