"""Running `bessmon up` as a user would, for whole-stack tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from connectors.settings import REPO_ROOT
from infra.services import die_with_parent

DASHBOARD = re.compile(r"^Dashboard: (http://[\d.]+:(\d+)/)#token=(\S+)$")


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    run_dir: Path
    url: str
    port: int
    token: str
    output: list[str]

    @property
    def env(self) -> dict[str, str]:
        """Environment for CLI commands aimed at this stack."""
        return {**os.environ, "BESSMON_RUN_DIR": str(self.run_dir)}

    def state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads((self.run_dir / "stack.json").read_text())
        return state

    def bessmon(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout_s)


def start_stack(run_dir: Path, *args: str, timeout_s: float = 120) -> RunningStack:
    """`bessmon up` on fresh local services (no KAFKA_BOOTSTRAP_SERVERS / REDIS_URL), without
    random faults (tests inject the faults they look for) and without a seeded history
    unless `args` ask for them."""
    if "--fault-rate" not in args:
        args = ("--fault-rate", "0", *args)
    if "--seed-history" not in args:  # (tests/e2e/test_seeded_history.py seeds)
        args = ("--seed-history", "none", *args)
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env["BESSMON_RUN_DIR"] = str(run_dir)
    # Dies with the test run: a test that fails before stopping its stack leaves nothing
    # running (its children die with it in turn).
    process = subprocess.Popen([sys.executable, "-m", "infra.cli", "up", "--api-port", "0",
                                *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=REPO_ROOT, preexec_fn=die_with_parent)
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line.rstrip("\n"))
        match = DASHBOARD.match(output[-1])
        if match:
            return RunningStack(process, run_dir, match[1], int(match[2]), match[3], output)
    process.kill()
    raise AssertionError("bessmon up did not print the dashboard URL:\n" + "\n".join(output))


def alive(pid: int) -> bool:
    """True while `pid` runs (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout_s: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]
