"""The API against a real Redis: authentication on REST and WebSocket, the fleet and site
snapshots, and updates published by the flows reaching WebSocket clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.main import create_app
from connectors.live_log import publish_site
from connectors.redis_store import site_key
from connectors.settings import Settings
from contracts.events import ContractKpis, SiteAvailability, UnitAvailability
from contracts.live import FleetSite
from tests.api.accounts import auth, token


def snapshot(site_id: str, pct: float, ts_ms: int | None = None, *,
             ld: float | None = None) -> SiteAvailability:
    contract = None if ld is None else ContractKpis(
        contract_id=f"LTSA-{site_id}", currency="EUR", as_of_ms=1, period="2026-10",
        period_start_ms=0, period_end_ms=1, contract_year=3, actual_pct=pct,
        guaranteed_pct=97.0, shortfall_pct=0.0, ld_year_to_date=ld, projected_pct=pct,
        projected_ld=ld / 2, warning_level="ok")
    return SiteAvailability(site_id=site_id, customer="C", region="R",
                            ts_ms=ts_ms or int(time.time() * 1000),
                            windows={"last_hour": pct, "today": pct},
                            units_by_state={"available": 0, "derated": 1, "unavailable": 0,
                                            "unknown": 0}, contract=contract, units=(
                                UnitAvailability(id=f"{site_id}-u01", state="derated",
                                                 cause="customer_request",
                                                 derate_fraction=0.5, last_hour_pct=pct / 3,
                                                 today_pct=None),))


def flows_publish(client: redis.Redis, snap: SiteAvailability) -> None:
    """What the flows' Redis sink does with a site snapshot."""
    publish_site(client, snap.site_id, snap.model_dump_json())


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok"}


@pytest.mark.parametrize(("headers", "detail"), [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer wrong"}, "invalid token"),
    ({"Authorization": "Basic d3Jvbmc6d3Jvbmc="}, "missing bearer token"),
    ({"Authorization": "Bearer bsk_0123456789ab_" + "x" * 43}, "invalid API key"),
])
@pytest.mark.parametrize("path", ["/api/v1/fleet", "/api/v1/sites", "/api/v1/sites/nordvik",
                                  "/api/v1/assets/nordvik-u01", "/api/v1/alarms"])
def test_rest_refuses_without_a_valid_credential(client: TestClient, path: str,
                                                 headers: dict[str, str], detail: str) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail, "status": 401}
    assert response.headers["www-authenticate"] == "Bearer"


def test_sites_carry_the_latest_snapshot(client: TestClient, api_settings: Settings,
                                         redis_client: redis.Redis) -> None:
    redis_client.set(site_key("elbe"), snapshot("elbe", 97.5).model_dump_json())
    body = client.get("/api/v1/sites", headers=auth(api_settings)).json()
    sites = body["items"]
    assert body["next_cursor"] is None
    assert [s["id"] for s in sites] == ["nordvik", "elbe", "mesa"]
    by_id = {s["id"]: s for s in sites}
    assert by_id["elbe"]["availability"]["windows"]["last_hour"] == 97.5
    assert by_id["elbe"]["stale"] is False
    assert by_id["nordvik"]["availability"] is None and by_id["nordvik"]["stale"] is True
    assert by_id["nordvik"]["units"] == 6
    one = client.get("/api/v1/sites/elbe", headers=auth(api_settings))
    assert one.status_code == 200 and one.json()["availability"]["site_id"] == "elbe"
    missing = client.get("/api/v1/sites/atlantis", headers=auth(api_settings))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no site 'atlantis'", "status": 404}
    paged = client.get("/api/v1/sites?limit=2", headers=auth(api_settings)).json()
    assert [s["id"] for s in paged["items"]] == ["nordvik", "elbe"]
    rest = client.get(f"/api/v1/sites?limit=2&cursor={paged['next_cursor']}",
                      headers=auth(api_settings)).json()
    assert [s["id"] for s in rest["items"]] == ["mesa"] and rest["next_cursor"] is None


def test_fleet_kpis_are_energy_weighted_and_money_needs_its_role(
        client: TestClient, api_settings: Settings, redis_client: redis.Redis) -> None:
    redis_client.set(site_key("elbe"), snapshot("elbe", 90.0, ld=1000.0).model_dump_json())
    redis_client.set(site_key("mesa"), snapshot("mesa", 100.0, ld=500.0).model_dump_json())
    body = client.get("/api/v1/fleet", headers=auth(api_settings, "contract_manager")).json()
    energy = {s["id"]: s["rated_energy_kwh"] for s in body["sites"]}
    expected = (90.0 * energy["elbe"] + 100.0 * energy["mesa"]) / (energy["elbe"]
                                                                  + energy["mesa"])
    assert body["kpis"]["windows"]["last_hour"] == pytest.approx(expected)
    assert body["kpis"]["ld_year_to_date"] == {"EUR": 1500.0}
    assert body["kpis"]["stale_sites"] == 1  # nordvik has no snapshot
    viewer = client.get("/api/v1/fleet", headers=auth(api_settings, "viewer")).json()
    assert viewer["kpis"]["ld_year_to_date"] is None
    elbe = next(s for s in viewer["sites"] if s["id"] == "elbe")["availability"]["contract"]
    assert (elbe["ld_year_to_date"], elbe["projected_ld"], elbe["actual_pct"]) == \
        (None, None, 90.0)


@pytest.mark.parametrize("first", [
    {"type": "auth", "token": "wrong"},
    {"type": "subscribe", "channel": "fleet"},
    "not json",
])
def test_websocket_requires_auth_first(client: TestClient, first: Any) -> None:
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_text(first if isinstance(first, str) else json.dumps(first))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401


def receive_until(ws: Any, predicate: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg: dict[str, Any] = ws.receive_json()
        if predicate(msg):
            return msg
    raise AssertionError("expected message did not arrive")


def test_websocket_snapshot_then_live_updates(client: TestClient, api_settings: Settings,
                                              redis_client: redis.Redis) -> None:
    redis_client.set(site_key("mesa"), snapshot("mesa", 99.0).model_dump_json())
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": token(api_settings, "viewer")})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "subscribe", "channel": "site:mesa"})
        first = ws.receive_json()
        assert first["type"] == "snapshot" and first["data"]["windows"]["last_hour"] == 99.0
        ws.send_json({"type": "subscribe", "channel": "fleet"})
        fleet = ws.receive_json()
        assert fleet["channel"] == "fleet" and [s["site_id"] for s in fleet["data"]] == ["mesa"]

        # What the flows publish reaches the client on both channels, with rising seqs.
        flows_publish(redis_client, snapshot("mesa", 42.0))
        got = [receive_until(ws, lambda m: m["type"] == "update") for _ in range(2)]
        assert sorted(m["channel"] for m in got) == ["fleet", "site:mesa"]
        assert all(m["data"]["windows"]["last_hour"] == 42.0 for m in got)
        assert {m["channel"]: m["seq"] for m in got} == {"fleet": 1, "site:mesa": 1}
        # The fleet channel's units are rows (contracts/live.py FleetSite), a site's objects.
        units = {m["channel"]: m["data"]["units"] for m in got}
        assert units["fleet"] == [["mesa-u01", "derated", "customer_request", 0.5, 14.0, None]]
        assert units["site:mesa"] == [{"id": "mesa-u01", "state": "derated",
                                       "cause": "customer_request", "derate_fraction": 0.5,
                                       "last_hour_pct": 14.0, "today_pct": None}]
        assert FleetSite.model_validate(next(m for m in got if m["channel"] == "fleet")["data"])

        # Another site's update reaches the fleet channel only.
        flows_publish(redis_client, snapshot("elbe", 1.0))
        m = receive_until(ws, lambda m: m["type"] == "update")
        assert (m["channel"], m["data"]["site_id"], m["seq"]) == ("fleet", "elbe", 2)

        ws.send_json({"type": "subscribe", "channel": "site:atlantis"})
        assert ws.receive_json() == {"type": "error", "message": "unknown channel 'site:atlantis'"}
        ws.send_json({"type": "dance"})
        assert ws.receive_json() == {"type": "error", "message": "unknown message type 'dance'"}
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        ws.send_json({"type": "unsubscribe", "channel": "fleet"})
        assert ws.receive_json() == {"type": "unsubscribed", "channel": "fleet"}
        flows_publish(redis_client, snapshot("elbe", 2.0))
        flows_publish(redis_client, snapshot("mesa", 3.0))
        m = receive_until(ws, lambda m: m["type"] == "update")
        assert (m["channel"], m["data"]["windows"]["last_hour"]) == ("site:mesa", 3.0)
