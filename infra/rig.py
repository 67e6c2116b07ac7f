"""A test rig: the stack's parts started one by one — broker, Redis, simulator, Modbus
connector, flows, control loop, notifier, API — each of which can be killed, paused and restarted on
its own, for fault drills (tests/control/test_protection.py) and benchmarks
(bench/control.py). `bessmon up` is the way to run the stack; this is the way to break it.

Every part runs as `python -m infra.cli …` with the environment `bessmon up` would give it;
all sites are served over Modbus TCP (the connector executes commands; see docs/control.md).
Logs go to `<run dir>/logs/<part>.log`."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import redis

from connectors.redis_store import CONTROL_ALIVE_KEY
from connectors.settings import Settings
from contracts.fleet import load_fleet
from infra.accounts import admin_token, ensure_users
from infra.ports import free_port
from infra.services import Service, spawn, start_broker, start_redis, stop_process


@dataclass
class Part:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


@dataclass
class Rig:
    run_dir: Path
    settings: Settings
    env: dict[str, str]
    broker: Service
    redis_service: Service
    sim_url: str
    sim_token: str
    parts: dict[str, Part] = field(default_factory=dict)
    api_url: str = ""
    token: str = ""  # the admin's, when the API runs

    @classmethod
    def start(cls, run_dir: Path, *, speed: float = 1.0, fleet_file: Path | None = None,
              control_file: Path | None = None, watchdog_s: float = 10.0,
              parts: tuple[str, ...] = ("connector", "flows", "control"),
              env: dict[str, str] | None = None, timeout_s: float = 90.0) -> Rig:
        """`parts` among connector, flows, control, notify, api (the simulator always);
        `env`: more environment for every part (e.g. BESSMON_SMTP_URL)."""
        logs = run_dir / "logs"
        broker, redis_service = start_broker(logs), start_redis(logs)
        settings = Settings(KAFKA_BOOTSTRAP_SERVERS=broker.address,
                            REDIS_URL=redis_service.address, run_dir=run_dir)
        updates: dict[str, Any] = {}
        if fleet_file is not None:
            updates["fleet_file"] = fleet_file
        if control_file is not None:
            updates["control_file"] = control_file
        settings = settings.model_copy(update=updates)
        token = secrets.token_urlsafe(24)
        child_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.address,
               "REDIS_URL": redis_service.address, "BESSMON_RUN_DIR": str(run_dir),
               "BESSMON_FLEET_FILE": str(settings.fleet_file),
               "BESSMON_CONTROL_FILE": str(settings.control_file),
               "BESSMON_SIM_TOKEN": token, "PYTHONUNBUFFERED": "1", **(env or {})}
        sim_port = free_port()
        rig = cls(run_dir, settings, child_env, broker, redis_service,
                  f"http://127.0.0.1:{sim_port}", token)
        try:
            devices = run_dir / "devices.yaml"
            devices.unlink(missing_ok=True)
            rig.start_part("sim", ["sim", "--devices-out", str(devices), "--control-port",
                                   str(sim_port), "--speed", str(speed), "--fault-rate", "0",
                                   "--watchdog-s", str(watchdog_s)])
            rig.wait("the simulator's device list", devices.exists, timeout_s)
            if "api" in parts or "notify" in parts:
                ensure_users(settings, load_fleet(settings.fleet_file))
            if "api" in parts:
                rig.token = admin_token(settings)
                api_port = free_port()
                rig.api_url = f"http://127.0.0.1:{api_port}"
                rig.start_part("api", ["api", "--host", "127.0.0.1", "--port", str(api_port)])
            for name in parts:
                if name == "connector":
                    rig.start_part(name, ["connect", "modbus", "--devices", str(devices)])
                elif name == "notify" and "api" in parts:  # its links lead to this API
                    rig.start_part(name, [name, "run", "--base-url", rig.api_url + "/"])
                elif name in ("flows", "control", "notify"):
                    rig.start_part(name, [name] if name == "flows" else [name, "run"])
            if "api" in parts:
                rig.wait("the API", lambda: _answers(f"{rig.api_url}/api/v1/health"),
                         timeout_s)
            if "control" in parts:
                rig.wait("the control loop", rig.control_alive, timeout_s)
        except BaseException:
            rig.stop()
            raise
        return rig

    def start_part(self, name: str, args: list[str]) -> Part:
        process, log_path, log = spawn(name, [sys.executable, "-m", "infra.cli", *args],
                                       self.run_dir / "logs", self.env)
        self.parts[name] = Part(name, args, process, log_path, log)
        return self.parts[name]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        part = self.parts[name]
        part.process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            part.process.wait(30)
            part.log.close()

    def restart(self, name: str) -> Part:
        part = self.parts[name]
        if part.process.poll() is None:
            stop_process(part.process)
            part.log.close()
        return self.start_part(name, part.argv)

    def pause_broker(self) -> None:
        self.broker.process.send_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        self.broker.process.send_signal(signal.SIGCONT)

    def control_alive(self, within_s: float = 3.0) -> bool:
        client = redis.Redis.from_url(self.redis_service.address)
        try:
            beat = client.get(CONTROL_ALIVE_KEY)
        finally:
            client.close()
        return beat is not None and int(beat) > (time.time() - within_s) * 1000

    def sim(self, method: str, path: str, json: Any = None) -> Any:
        """A call to the simulator's control API; its JSON answer (raises on an error)."""
        r = httpx.request(method, self.sim_url + path, json=json, timeout=10,
                          headers={"Authorization": f"Bearer {self.sim_token}"})
        r.raise_for_status()
        return r.json()

    def wait(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for part in self.parts.values():
                if part.process.poll() is not None:
                    tail = part.log_path.read_text(errors="replace").splitlines()[-20:]
                    raise RuntimeError(f"{part.name} exited ({part.process.returncode}) "
                                       f"while waiting for {what}:\n" + "\n".join(tail))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s (logs in "
                                   f"{self.run_dir / 'logs'})")
            time.sleep(0.1)

    def stop(self) -> None:
        self.resume_broker()
        for part in reversed(list(self.parts.values())):
            stop_process(part.process, timeout_s=10)
            part.log.close()
        self.parts.clear()
        self.redis_service.stop()
        self.broker.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
