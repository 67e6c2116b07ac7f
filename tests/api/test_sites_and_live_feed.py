"""The API against a real Redis: authentication on REST and WebSocket, site snapshots, and
updates published by the flows reaching WebSocket clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.websockets import WebSocketDisconnect

from api.main import create_app
from connectors.redis_store import site_channel, site_key
from connectors.settings import Settings
from contracts.events import SiteAvailability

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def snapshot(site_id: str, pct: float, ts_ms: int = 1_790_000_000_000) -> SiteAvailability:
    return SiteAvailability(site_id=site_id, customer="C", region="R", ts_ms=ts_ms,
                            windows={"last_hour": pct, "today": pct},
                            units_by_state={"available": 1, "derated": 0, "unavailable": 0,
                                            "unknown": 0}, units=())


@pytest.fixture
def client(redis_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    for key in redis_client.scan_iter("bessmon:*"):
        redis_client.delete(key)
    settings = Settings(REDIS_URL=redis_url, api_token=SecretStr(TOKEN))
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok"}


@pytest.mark.parametrize(("headers", "detail"), [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer wrong"}, "invalid bearer token"),
    ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token"),
])
@pytest.mark.parametrize("path", ["/api/v1/sites", "/api/v1/sites/nordvik"])
def test_rest_refuses_without_the_token(client: TestClient, path: str,
                                        headers: dict[str, str], detail: str) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == "Bearer"


def test_sites_carry_the_latest_snapshot(client: TestClient, redis_client: redis.Redis) -> None:
    redis_client.set(site_key("elbe"), snapshot("elbe", 97.5).model_dump_json())
    sites = client.get("/api/v1/sites", headers=AUTH).json()
    assert [s["id"] for s in sites] == ["nordvik", "elbe", "mesa"]
    by_id = {s["id"]: s for s in sites}
    assert by_id["elbe"]["availability"]["windows"]["last_hour"] == 97.5
    assert by_id["nordvik"]["availability"] is None
    assert by_id["nordvik"]["units"] == 6
    one = client.get("/api/v1/sites/elbe", headers=AUTH)
    assert one.status_code == 200 and one.json()["availability"]["site_id"] == "elbe"
    missing = client.get("/api/v1/sites/atlantis", headers=AUTH)
    assert missing.status_code == 404 and missing.json() == {"detail": "no site 'atlantis'"}


def test_dashboard_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>bessmon" in page.text
    assert client.get("/web/app.js").status_code == 200


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


def test_websocket_snapshot_then_live_updates(client: TestClient,
                                              redis_client: redis.Redis) -> None:
    redis_client.set(site_key("mesa"), snapshot("mesa", 99.0).model_dump_json())
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": TOKEN})
        assert ws.receive_json() == {"type": "ready"}
        ws.send_json({"type": "subscribe", "channel": "site:mesa"})
        first = ws.receive_json()
        assert first["type"] == "snapshot" and first["data"]["windows"]["last_hour"] == 99.0
        ws.send_json({"type": "subscribe", "channel": "fleet"})
        fleet = ws.receive_json()
        assert fleet["channel"] == "fleet" and [s["site_id"] for s in fleet["data"]] == ["mesa"]

        # What the flows publish reaches the client on both channels.
        update = snapshot("mesa", 42.0).model_dump_json()
        redis_client.publish(site_channel("mesa"), update)
        got = [receive_until(ws, lambda m: m["type"] == "update") for _ in range(2)]
        assert sorted(m["channel"] for m in got) == ["fleet", "site:mesa"]
        assert all(m["data"]["windows"]["last_hour"] == 42.0 for m in got)

        # Another site's update reaches the fleet channel only.
        redis_client.publish(site_channel("elbe"), snapshot("elbe", 1.0).model_dump_json())
        m = receive_until(ws, lambda m: m["type"] == "update")
        assert (m["channel"], m["data"]["site_id"]) == ("fleet", "elbe")

        ws.send_json({"type": "subscribe", "channel": "site:atlantis"})
        assert ws.receive_json() == {"type": "error", "message": "unknown channel 'site:atlantis'"}
        ws.send_json({"type": "dance"})
        assert ws.receive_json() == {"type": "error", "message": "unknown message type 'dance'"}
        ws.send_json({"type": "unsubscribe", "channel": "fleet"})
        redis_client.publish(site_channel("elbe"), snapshot("elbe", 2.0).model_dump_json())
        redis_client.publish(site_channel("mesa"), snapshot("mesa", 3.0).model_dump_json())
        m = receive_until(ws, lambda m: m["type"] == "update")
        assert (m["channel"], m["data"]["windows"]["last_hour"]) == ("site:mesa", 3.0)


def test_the_api_refuses_to_start_without_a_token(redis_url: str) -> None:
    with pytest.raises(RuntimeError, match="BESSMON_API_TOKEN is not set"):
        create_app(Settings(REDIS_URL=redis_url))


def test_production_refuses_placeholder_tokens() -> None:
    with pytest.raises(ValueError, match="must be a real secret"):
        Settings(environment="production", api_token=SecretStr("changeme"))
