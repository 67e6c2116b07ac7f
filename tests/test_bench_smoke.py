"""Every benchmark of bench/ runs once on a tiny size, so that none of them rots: it exits 0
and its last line of output is one JSON object. No figure is asserted — a smoke run on a
shared machine measures nothing; the README's figures come from full runs.

The thirteen together take about three minutes here (most of it starting brokers,
simulators, the API and a whole `bessmon up` for the dashboard)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from connectors.settings import REPO_ROOT

# The smallest sizes each script takes (its argparse options).
RUNS: dict[str, list[str]] = {
    "breaches": ["--sites", "1", "--units", "2", "--seconds", "5"],
    "contracts": ["--units", "2", "--intervals", "500", "--repeat", "1"],
    "connectors": ["--sites", "1", "--units", "2", "--seconds", "1", "--changes", "1",
                   "--sim-processes", "1", "--warmup", "2"],
    "flows": ["--sites", "1", "--units", "2", "--seconds", "5", "--live", "0", "--scale-live", "0"],
    "ws_fanout": ["--clients", "4", "--seconds", "3", "--sites", "1", "--units", "2"],
    "dashboard": ["--loads", "1"],  # needs web/dist (make web) and /usr/bin/chromium
    "wall": ["--minutes", "0.1", "--every", "3", "--sites", "4"],  # the same
    "control": ["--days", "0.02", "--trials", "3"],
    "notify": ["--transitions", "40", "--sites", "2", "--rate", "50", "--drain-s", "15"],
    "replay": ["--days", "0.02", "--units", "1"],
    "analytics": ["--sites", "1", "--units", "2", "--days", "2"],
    "comms": ["--devices", "2", "--days", "0.1", "--polls", "1000", "--repeat", "1"],
    "decode": ["--sites", "1", "--units", "2", "--seconds", "2", "--repeat", "1"],
}
TIMEOUT_S = 120


@pytest.mark.parametrize("name", list(RUNS))
def test_benchmark_runs(name: str) -> None:
    if name in ("dashboard", "wall") and not (REPO_ROOT / "web" / "dist" / "index.html").exists():
        pytest.fail("web/dist is missing: build the dashboard first (make web)")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", *RUNS[name]],
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    took = time.monotonic() - started
    tail = f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"bench.{name} exited {done.returncode} after {took:.0f} s\n{tail}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"bench.{name} printed nothing\n{tail}"
    try:
        summary = json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"bench.{name}: the last line is not JSON: {lines[-1]!r}\n{tail}")
    assert isinstance(summary, dict), f"bench.{name}: the last line is not a JSON object"
    assert summary.get("bench") == name
    # The figures issue 17 names, as written (values not asserted).
    expected = {"flows": {"flow_1w", "flow_2p", "passthrough_1w", "p50_ms", "p99_ms"},
                "replay": {"replay_30d_s"}}.get(name, set())
    assert expected <= set(summary), f"bench.{name}: missing {expected - set(summary)}"
