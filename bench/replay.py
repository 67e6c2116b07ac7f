"""Replay benchmark (issue 17): `bessmon replay` of one 6-unit site's recorded telemetry at
1-minute polls, 30 days by default — the recording onto the broker, the telemetry flow over it
to its end, every period made final, the final periods read back — timed from the first
sample produced to the periods in hand (what `bessmon replay --speed max` does; making the
recording is not timed).

    .venv/bin/python -m bench.replay [--days 30] [--units 6] [--step-s 60] [--faults-per-day 2]
        [--stale-after-s S] [--no-telemetry-history]

The monitoring file's 10 s `stale_after_s` and 1 s poll interval are for polls a second
apart: at 1-minute polls every unit would count as communication lost 50 s of each minute
and every poll would be a telemetry gap. The replay is run as a recording of its polls would
be configured: each device type's `poll_interval_s` is the poll step and `stale_after_s`
three steps (unless `--stale-after-s` says otherwise).

`replay_30d_s` is the time of 30 days: measured when `--days` is 30, else the measured time
scaled by 30 / days (said in `scaled_from_days`). Uses KAFKA_BOOTSTRAP_SERVERS and REDIS_URL
when set, else starts a local broker and Redis (not timed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from connectors.settings import EXAMPLE_MONITORING, Settings
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from infra.replay import for_poll_step, replay
from infra.services import local_services
from infra.sim.fleetgen import generate_fleet
from infra.sim.record import record, write_jsonl

START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--units", type=int, default=6)
    parser.add_argument("--step-s", type=float, default=60.0, help="seconds between polls")
    parser.add_argument("--faults-per-day", type=float, default=2.0,
                        help="random unit trips a day (statuses to compute)")
    parser.add_argument("--stale-after-s", type=float,
                        help="silence that counts as communication loss (default: the "
                             "monitoring file's, at least 3 poll steps)")
    parser.add_argument("--no-telemetry-history", dest="telemetry_history",
                        action="store_false",
                        help="as `bessmon replay --no-telemetry-history`: no per-minute tag "
                             "values in the history")
    args = parser.parse_args()

    fleet = Fleet.model_validate(generate_fleet(1, units_per_site=args.units))
    site = fleet.sites[0]
    unit = site.units[0]  # a poll: the unit, its inverters and their DC blocks
    assets_per_poll = 1 + sum(1 + len(inverter.blocks) for inverter in unit.inverters)
    start_ms = int(START.timestamp() * 1000)
    end_ms = start_ms + int(args.days * 86_400_000)
    with tempfile.TemporaryDirectory() as tmp, local_services(
            Path(tmp) / "logs", kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
            redis_url=os.environ.get("REDIS_URL")) as (kafka, redis_url):
        run = Path(tmp)
        recording = run / "telemetry.jsonl"
        made = time.monotonic()
        samples = write_jsonl(record(fleet, start_ms, end_ms, int(args.step_s * 1000), seed=7,
                                     fault_rate_per_day=args.faults_per_day), recording)
        print(f"recorded {args.days:g} days of {site.id} ({args.units} units, "
              f"{assets_per_poll} assets a poll): {samples:,} polls in "
              f"{time.monotonic() - made:.1f} s", flush=True)
        settings = Settings.model_validate({
            "KAFKA_BOOTSTRAP_SERVERS": kafka, "REDIS_URL": redis_url, "run_dir": run / "run"})
        config = load_monitoring(EXAMPLE_MONITORING)
        config = for_poll_step(config, args.step_s)
        if args.stale_after_s:
            config = config.model_copy(update={"quality": config.quality.model_copy(
                update={"stale_after_s": args.stale_after_s})})
        stale_s = config.quality.stale_after_s
        started = time.monotonic()
        periods = replay(settings, fleet, config, {}, recording,
                         telemetry_history=args.telemetry_history,
                         say=lambda line: print(line, flush=True))
        took = time.monotonic() - started
        history_mb = sum(f.stat().st_size for f in (run / "run").glob("history.db*")) / 1e6
    asset_samples = samples * assets_per_poll
    print(f"replay: {took:.1f} s for {samples:,} polls ({asset_samples:,} asset-samples): "
          f"{samples / took:,.0f} polls/s, {asset_samples / took:,.0f} asset-samples/s; "
          f"{len(periods)} final periods; the history file {history_mb:,.0f} MB", flush=True)
    # The last line, for scripts: one JSON object.
    print(json.dumps({
        "bench": "replay", "days": args.days, "units": args.units, "step_s": args.step_s,
        "stale_after_s": stale_s, "telemetry_history": args.telemetry_history,
        "polls": samples, "asset_samples": asset_samples,
        "replay_s": round(took, 2),
        "polls_per_s": round(samples / took), "asset_samples_per_s": round(asset_samples / took),
        "replay_30d_s": round(took * 30 / args.days, 1),
        "scaled_from_days": None if args.days == 30 else args.days,
        "final_periods": len(periods), "history_mb": round(history_mb, 1)}), flush=True)


if __name__ == "__main__":
    main()
