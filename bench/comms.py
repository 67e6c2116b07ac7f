"""Controller health and comms benchmark: what the comms view costs at both ends.

- Connector side: the poll figures a connector keeps per device (contracts/comms.py
  `PollWindow`) — the time per poll counted (the connector's budget is 0.3 ms of CPU per
  unit poll, its decoding included).
- Read side: a month of one-minute stats windows of one 40-unit site in the embedded history
  store (40 × 44,640 rows) and a state change per device every ~2 hours — the time of the
  view's two history queries over that month (target < 1 s, as every analytics view).

    .venv/bin/python -m bench.comms [--devices 40] [--days 31] [--polls 200000]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from connectors.history.sqlite import SqliteHistoryStore
from contracts.comms import PollWindow
from contracts.events import DeviceHealth, DeviceStats, HealthState

MIN_MS = 60_000
T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
STATES: tuple[HealthState, ...] = ("online", "degraded", "offline")


def per_poll_us(polls: int) -> float:
    """Microseconds per poll counted: 1 s polls, one window a minute closed."""
    window = PollWindow("u1", connector="modbus", site_id="s1", gateway="h:502",
                        every_ms=60_000)
    rng = random.Random(1)
    latencies = [rng.uniform(0.005, 0.2) for _ in range(1000)]
    started = time.perf_counter()
    for k in range(polls):
        ts = T0 + k * 1000
        if k % 50 == 49:
            window.failed(ts)
        else:
            window.answered(ts, latencies[k % 1000])
    return (time.perf_counter() - started) / polls * 1e6


def fill(store: SqliteHistoryStore, devices: int, days: float) -> tuple[int, int]:
    rng = random.Random(2)
    windows = int(days * 1440)
    rows = changes = 0
    for d in range(devices):
        device = f"s1-u{d:02d}"
        batch: list[DeviceHealth | DeviceStats] = []
        state: HealthState | None = None
        for w in range(windows):
            start = T0 + w * MIN_MS
            failed = rng.choice((0, 0, 0, 0, 1, 60))
            answered = 60 - failed
            p50 = rng.uniform(5, 50)
            batch.append(DeviceStats(
                device_id=device, connector="modbus", site_id="s1", gateway=f"10.0.0.{d % 4}:502",
                start_ms=start, end_ms=start + MIN_MS, polls=60, failed=failed,
                retries=failed * 2, latency_p50_ms=p50 if answered else None,
                latency_p95_ms=p50 * 2 if answered else None,
                latency_max_ms=p50 * 4 if answered else None))
            if w % 120 == 0:
                new = rng.choice([s for s in STATES if s != state])
                batch.append(DeviceHealth(device_id=device, connector="modbus", state=new,
                                          previous=state, ts_ms=start, site_id="s1",
                                          gateway=f"10.0.0.{d % 4}:502"))
                state = new
                changes += 1
            if len(batch) >= 20_000:
                store.write_device_health(batch)
                rows += len(batch)
                batch = []
        store.write_device_health(batch)
        rows += len(batch)
    return rows - changes, changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--days", type=float, default=31)
    parser.add_argument("--polls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    poll_us = per_poll_us(args.polls)
    print(f"poll figures: {poll_us:.2f} µs per poll counted")
    with tempfile.TemporaryDirectory() as tmp, \
            SqliteHistoryStore(Path(tmp) / "history.db") as store:
        started = time.perf_counter()
        windows, changes = fill(store, args.devices, args.days)
        fill_s = time.perf_counter() - started
        print(f"filled {windows:,} windows and {changes:,} changes in {fill_s:.1f} s")
        end = T0 + int(args.days * 86_400_000)
        stats_s, states_s = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            totals = store.device_stats(["s1"], T0, end)
            stats_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            told = store.device_states(["s1"], T0, end)
            states_s.append(time.perf_counter() - started)
        assert len(totals) == args.devices and sum(t.totals.windows for t in totals) == windows
        assert len(told) == changes
        size = (Path(tmp) / "history.db").stat().st_size
    summary = {"bench": "comms", "devices": args.devices, "days": args.days,
               "windows": windows, "changes": changes,
               "poll_figures_us_per_poll": round(poll_us, 3),
               "stats_query_s": round(min(stats_s), 3),
               "states_query_s": round(min(states_s), 3),
               "history_mb": round(size / 1e6, 1), "fill_s": round(fill_s, 1)}
    print(f"month of the site: stats query {min(stats_s):.3f} s, states query "
          f"{min(states_s):.3f} s (best of {args.repeat})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
