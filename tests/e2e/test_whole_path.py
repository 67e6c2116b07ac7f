"""An injected fault travels the whole path: simulator registers → Modbus connector → broker
→ Bytewax flow → Redis → API → WebSocket client. This module's stack polls its two Modbus
gateways with two connector processes (`--connectors 2`: `--shard 0/2` and `1/2`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.stack import RunningStack

STACK_ARGS = ("--connectors", "2")


@contextlib.contextmanager
def ws_connect(stack: RunningStack, channel: str) -> Iterator[ClientConnection]:
    with connect(stack.url.replace("http", "ws") + "api/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": stack.token}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "snapshot"
        yield ws


def wait_for_unit(ws: ClientConnection, unit_id: str, predicate: Callable[[dict[str, Any]], bool],
                  timeout_s: float = 30) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first site update whose unit `unit_id` satisfies `predicate`: (site, unit)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if msg["type"] != "update":
            continue
        unit = next(u for u in msg["data"]["units"] if u["id"] == unit_id)
        if predicate(unit):
            return msg["data"], unit
    raise AssertionError(f"no update of {unit_id} as expected within {timeout_s}s")


def in_state(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda unit: bool(unit["state"] == state)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_an_injected_fault_reaches_a_websocket_client(stack: RunningStack) -> None:
    with ws_connect(stack, "site:elbe") as ws:
        wait_for_unit(ws, "elbe-u03", in_state("available"))  # data flows before the fault
        result = stack.bessmon("sim", "fault", "elbe-u03", "--for", "5m")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "fault on elbe-u03 for 300s"
        site, unit = wait_for_unit(ws, "elbe-u03", in_state("unavailable"))
        assert unit["cause"] == "fault"
        assert site["units_by_state"]["unavailable"] >= 1
        # The lost time then shows in the rolling availability of the unit and its site.
        site, unit = wait_for_unit(ws, "elbe-u03", lambda u: u["last_hour_pct"] < 100.0)
        assert site["windows"]["last_hour"] < 100.0

        result = stack.bessmon("sim", "clear", "elbe-u03")
        assert result.returncode == 0 and "cleared" in result.stdout
        wait_for_unit(ws, "elbe-u03", in_state("available"))


@pytest.mark.e2e
def test_rest_shows_every_site_with_live_availability(stack: RunningStack) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}
    deadline = time.monotonic() + 30
    while True:
        sites = httpx.get(stack.url + "api/v1/sites", headers=headers, timeout=5).json()["items"]
        if all(s["availability"] for s in sites) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [s["id"] for s in sites] == ["nordvik", "elbe", "mesa"]
    assert all(s["availability"]["ts_ms"] > (time.time() - 30) * 1000 for s in sites)
    # nordvik and elbe came through two connectors, a gateway each; mesa through OPC UA.
    children = stack.state()["children"]
    assert isinstance(children, dict)
    assert {"connector-1of2", "connector-2of2", "opcua-connector"} <= set(children)
    assert "connector" not in children
    assert httpx.get(stack.url + "api/v1/sites", timeout=5).status_code == 401


@pytest.mark.e2e
def test_sim_cli_errors_are_precise(stack: RunningStack) -> None:
    unknown = stack.bessmon("sim", "fault", "atlantis-u01")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "bessmon sim: unknown asset id 'atlantis-u01'"
    bad = stack.bessmon("sim", "fault", "elbe-u01", "--for", "soon")
    assert bad.returncode == 2 and "not a duration: 'soon'" in bad.stderr


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_every_controller_shows_in_the_comms_view(stack: RunningStack) -> None:
    """The connectors' health events reach the comms view through the live flow: each
    site's controllers under their gateway — two Modbus gateways, one OPC UA server."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    now = time.time()
    span = {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
            "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))}
    deadline = time.monotonic() + 60
    while True:
        body = httpx.get(stack.url + "api/v1/analytics/comms", params=span, headers=headers,
                         timeout=10).json()
        devices = [d for g in body["gateways"] for d in g["devices"]]
        sites = {d["site_id"] for d in devices if d["state"] == "online"}
        if sites == {"nordvik", "elbe", "mesa"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sites == {"nordvik", "elbe", "mesa"}, body
    by_gateway = {g["gateway"]: g["site_ids"] for g in body["gateways"]}
    assert sorted(by_gateway.values()) == [["elbe"], ["mesa"], ["nordvik"]], by_gateway
    assert sum(name.startswith("opc.tcp://") for name in by_gateway) == 1
    assert body["newest_ms"] > (now - 60) * 1000
