"""The schedules `make up` starts (`report schedule`, `archive schedule`) run again and again,
say each run with its time, survive a failing run, and stop at SIGTERM — here the archive's,
as a real process (both go through `infra/cli/common.py` `run_every`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from connectors.settings import REPO_ROOT

TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 "


def schedule(run_dir: Path, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BESSMON_", "REDIS_", "KAFKA_", "QUESTDB_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "archive", "schedule", "--every", "1s"],
        cwd=REPO_ROOT, env={**clean, "BESSMON_RUN_DIR": str(run_dir), "PYTHONUNBUFFERED": "1",
                            **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def lines_until(process: subprocess.Popen[str], count: int, start: str,
                timeout_s: float = 60) -> list[str]:
    """Read the output until `count` lines (after the first) start as `start` after the
    time."""
    assert process.stdout is not None
    deadline, lines = time.monotonic() + timeout_s, list[str]()
    while sum(line[26:].startswith(start) for line in lines) < count:
        assert time.monotonic() < deadline, lines
        line = process.stdout.readline()
        assert line, f"the schedule ended: {lines}"
        lines.append(line.rstrip("\n"))
    return lines


def stopped(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=15)


def test_the_archive_schedule_runs_again_and_stops_at_sigterm(tmp_path: Path) -> None:
    process = schedule(tmp_path)
    try:
        lines = lines_until(process, 2, "archive: ")
    finally:
        code = stopped(process)
    assert code == 0
    assert all(re.match(TIMESTAMP, line) for line in lines), lines
    assert "archive run (the last 7 days): every 1 s" in lines[0]
    assert (tmp_path / "archive").is_dir()


def test_a_failing_run_is_said_and_the_next_one_tried(tmp_path: Path) -> None:
    broken = tmp_path / "fleet.yaml"
    broken.write_text("sites: [\n", encoding="utf-8")
    process = schedule(tmp_path, BESSMON_FLEET_FILE=str(broken))
    try:
        lines = lines_until(process, 2, "archive run (the last 7 days) failed: ")
    finally:
        code = stopped(process)
    assert code == 0
    assert str(broken) in lines[-1], lines
