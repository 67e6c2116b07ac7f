"""Starting and stopping the services and the whole stack leaves no process behind and frees
every port — after SIGTERM, and even when `bessmon up` itself is killed. The stack serves the
fleet's last site over OPC UA, polled by a connector of its own."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka import read_topic
from connectors.modbus.devices import load_devices
from connectors.redis_store import site_key
from connectors.settings import Settings
from contracts.events import SiteAvailability, TelemetrySample
from infra.ports import is_listening
from infra.services import start_broker, start_redis
from tests.stack import RunningStack, alive, start_stack, wait_gone


def test_broker_and_redis_start_healthy_and_stop_completely(tmp_path: Path) -> None:
    broker, redis_service = start_broker(tmp_path), start_redis(tmp_path)
    processes = [broker.process, redis_service.process]
    endpoints = [("127.0.0.1", int(broker.address.rsplit(":", 1)[1])),
                 ("127.0.0.1", urlparse(redis_service.address).port or 0)]
    assert all(is_listening(*e) for e in endpoints)
    broker.stop()
    redis_service.stop()
    assert all(p.poll() is not None for p in processes)
    assert not any(is_listening(*e) for e in endpoints)


def _stack_processes(state: dict[str, object]) -> list[int]:
    children = state["children"]
    assert isinstance(children, dict)
    return [int(pid) for pid in children.values()]


def _ports(state: dict[str, object], api_port: int) -> list[tuple[str, int]]:
    kafka, redis_url = str(state["kafka"]), str(state["redis"])
    return [("127.0.0.1", api_port), ("127.0.0.1", int(kafka.rsplit(":", 1)[1])),
            ("127.0.0.1", urlparse(redis_url).port or 0),
            ("127.0.0.1", urlparse(str(state["sim_url"])).port or 0)]


@pytest.mark.timeout(180)
def test_sigterm_stops_the_whole_stack_and_frees_its_ports(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "run")
    state = stack.state()
    pids = _stack_processes(state)
    ports = _ports(state, stack.port)
    children = state["children"]
    assert isinstance(children, dict)
    assert set(children) == {"sim", "connector", "opcua-connector", "flows", "control",
                             "notify", "reports", "archive", "api"}
    assert len(pids) == 9 and all(alive(p) for p in pids)
    assert all(is_listening(*p) for p in ports)
    # mesa, the last site, is on OPC UA: not in the Modbus device list, yet its units'
    # telemetry reaches the topic (through the OPC UA connector).
    assert state["opcua_site"] == "mesa"
    modbus = {d.asset for d in load_devices(tmp_path / "run" / "devices.yaml").devices}
    assert modbus and not any(a.startswith("mesa-") for a in modbus)
    topic = Settings().topic_telemetry
    deadline = time.monotonic() + 30
    devices: set[str] = set()
    while time.monotonic() < deadline and not any(d.startswith("mesa-") for d in devices):
        messages = read_topic(str(state["kafka"]), topic, timeout_s=5, idle_s=1)
        devices = {TelemetrySample.model_validate_json(m.value() or b"").device_id
                   for m in messages}
    assert {d for d in devices if d.startswith("mesa-")} == {"mesa-u01", "mesa-u02",
                                                              "mesa-u03", "mesa-u04"}

    # A part that dies is started again (infra/supervise.py); the rest runs on, and the
    # restarted flows (resuming from their recovery snapshot) compute again.
    client = redis.Redis.from_url(str(state["redis"]))
    flows = int(children["flows"])
    os.kill(flows, signal.SIGKILL)
    killed_ms = int(time.time() * 1000)
    deadline = time.monotonic() + 60
    part: dict[str, object] = {}
    while time.monotonic() < deadline:
        part = stack.state()["parts"]["flows"]  # type: ignore[index]
        if part["restarts"] == 1 and part["state"] == "running":
            break
        time.sleep(0.2)
    assert part["restarts"] == 1 and part["last_exit"] == -signal.SIGKILL, part
    assert part["pid"] != flows and alive(int(str(part["pid"])))
    assert stack.process.poll() is None, "bessmon up stopped when one part died"
    assert all(alive(p) for p in pids if p != flows)
    while time.monotonic() < deadline:
        raw = client.get(site_key("nordvik"))
        if raw and SiteAvailability.model_validate_json(raw).ts_ms > killed_ms:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("no site snapshot from the restarted flows within 60 s")
    client.close()
    pids.append(int(str(part["pid"])))
    metrics_ports = _every_part_exposes_metrics(stack)

    # The simulated equipment "reboots" on the same ports (`--keep-ports`): the connectors
    # reconnect by themselves and telemetry flows again.
    listed = (tmp_path / "run" / "devices.yaml").read_text()
    sim = int(children["sim"])
    os.kill(sim, signal.SIGKILL)
    killed_ms = int(time.time() * 1000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        part = stack.state()["parts"]["sim"]  # type: ignore[index]
        if part["restarts"] == 1 and part["state"] == "running":
            break
        time.sleep(0.2)
    assert part["restarts"] == 1, part
    pids.append(int(str(part["pid"])))
    fresh: set[str] = set()
    while time.monotonic() < deadline and not {"nordvik", "mesa"} <= fresh:
        fresh = {s.device_id.split("-")[0] for s in (
            TelemetrySample.model_validate_json(m.value() or b"")
            for m in read_topic(str(state["kafka"]), topic, timeout_s=5, to_end=True))
            if s.ts_ms > killed_ms + 1000}
        time.sleep(0.5)
    assert {"nordvik", "mesa"} <= fresh, f"telemetry after the simulator's restart: {fresh}"
    assert (tmp_path / "run" / "devices.yaml").read_text() == listed

    assert stack.stop(signal.SIGTERM) == 0
    assert wait_gone(pids) == []
    assert not any(is_listening(*p) for p in ports + metrics_ports)
    assert not (tmp_path / "run" / "stack.json").exists()


def _every_part_exposes_metrics(stack: RunningStack) -> list[tuple[str, int]]:
    """Every part's metrics where stack.json says (docs/metrics.md), only for the machine's
    metrics token: the supervisor counts the flows' restart, the restarted flows answer on
    their new port and count what they read. Returns the metrics ports."""
    want = {"supervisor", "modbus-devices", "opcua-opcua-devices", "flows", "control",
            "notify"}
    def refuses(url: str) -> bool:
        """The part answers 401 without the token (not yet there: a part restarting, or
        stack.json still naming a killed part's old port — the supervisor reads the parts'
        files every 2 s)."""
        try:
            return httpx.get(url, timeout=10).status_code == 401
        except httpx.ConnectError:
            return False

    def urls(state: dict[str, Any]) -> list[str]:
        return [a if a.startswith("http") else f"http://{a}/metrics"
                for a in [*state.get("metrics", {}).values(), state["api_metrics_url"]]]

    deadline = time.monotonic() + 30
    state: dict[str, Any] = stack.state()
    while time.monotonic() < deadline and not (
            want <= set(state.get("metrics", {})) and all(refuses(u) for u in urls(state))):
        time.sleep(0.5)
        state = stack.state()
    targets: dict[str, str] = state["metrics"]
    assert want <= set(targets), targets
    token = Path(state["metrics_token_file"]).read_text()
    auth = {"Authorization": f"Bearer {token}"}

    def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = httpx.get(url, headers=auth, timeout=10)
        assert answer.status_code == 200, (url, answer.status_code)
        return {(x.name, tuple(sorted(x.labels.items()))): x.value
                for f in text_string_to_metric_families(answer.text) for x in f.samples}

    for url in urls(state):
        assert refuses(url), url
    supervisor = scrape(f"http://{targets['supervisor']}/metrics")
    assert supervisor[("bessmon_part_restarts_total", (("part", "flows"),))] == 1
    assert supervisor[("bessmon_part_up", (("part", "flows"),))] == 1
    read = 0.0
    while time.monotonic() < deadline and not read:
        read = scrape(f"http://{targets['flows']}/metrics").get(
            ("bessmon_flow_records_in_total", (("input", "telemetry"),)), 0.0)
        time.sleep(0.5)
    assert read > 0, "the restarted flows count nothing"
    assert scrape(state["api_metrics_url"])
    return [("127.0.0.1", int(a.rsplit(":", 1)[1])) for a in targets.values()]


@pytest.mark.timeout(180)
def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "run")
    state = stack.state()
    pids = _stack_processes(state)
    ports = _ports(state, stack.port)
    stack.stop(signal.SIGKILL)
    assert wait_gone(pids) == []
    assert wait_gone([stack.process.pid]) == []
    # The broker and Redis were children too: their ports close as they die.
    deadline = time.monotonic() + 10
    while any(is_listening(*p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(is_listening(*p) for p in ports)
