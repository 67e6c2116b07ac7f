"""GET /metrics on the API: Prometheus' text format for the metrics token or an admin, 401
without a credential (or with a wrong one), 403 for a user who may not read the stack; the
requests counted by route template and status, and the live feed's clients and frames."""

from __future__ import annotations

import stat

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.websockets import WebSocketDisconnect

from api.main import create_app
from connectors.metrics import metrics_token, metrics_token_path
from connectors.settings import Settings
from tests.api.accounts import auth, token


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_metrics_token_or_an_admin(api_settings: Settings) -> None:
    with TestClient(create_app(api_settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer not-it"}
                          ).status_code == 401
        assert client.get("/metrics", headers=auth(api_settings, "viewer")).status_code == 403
        assert client.get("/metrics", headers=auth(api_settings, "engineer")
                          ).status_code == 403
        # The machine's token, made owner-only by the API when first asked for.
        path = metrics_token_path(api_settings)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        scraper = {"Authorization": f"Bearer {metrics_token(api_settings)}"}
        answer = client.get("/metrics", headers=scraper)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        assert "bessmon_http_requests_total" in answer.text
        assert client.get("/metrics", headers=auth(api_settings, "admin")).status_code == 200
    # A token set in the environment replaces the file's (a multi-host deployment).
    own = "m" * 40
    with TestClient(create_app(api_settings.model_copy(update={"metrics_token": own}))) as c:
        assert c.get("/metrics", headers={"Authorization": f"Bearer {own}"}).status_code == 200
        assert c.get("/metrics", headers=scraper).status_code == 401


def test_requests_are_counted_by_route_template_and_status(api_settings: Settings) -> None:
    scraper = {"Authorization": f"Bearer {metrics_token(api_settings)}"}
    route = "/api/v1/sites/{site_id}"
    with TestClient(create_app(api_settings)) as client:
        before = client.get("/metrics", headers=scraper).text
        viewer = auth(api_settings, "viewer")
        assert client.get("/api/v1/sites/nordvik", headers=viewer).status_code == 200
        assert client.get("/api/v1/sites/elbe", headers=viewer).status_code in (200, 404)
        assert client.get("/api/v1/sites/nowhere", headers=viewer).status_code == 404
        assert client.get("/api/v1/sites/nordvik").status_code == 401
        assert client.get("/no/such/path/42").status_code == 404
        after = client.get("/metrics", headers=scraper).text
    name = "bessmon_http_requests_total"
    ok = value(after, name, method="GET", route=route, status="200") - \
        value(before, name, method="GET", route=route, status="200")
    missing = value(after, name, method="GET", route=route, status="404") - \
        value(before, name, method="GET", route=route, status="404")
    assert ok + missing == 3 and ok >= 1 and missing >= 1
    assert value(after, name, method="GET", route=route, status="401") - \
        value(before, name, method="GET", route=route, status="401") == 1
    assert value(after, name, method="GET", route="(unmatched)", status="404") - \
        value(before, name, method="GET", route="(unmatched)", status="404") == 1
    assert "nordvik" not in "".join(  # a template, never the path
        line for line in after.splitlines() if line.startswith(name))
    assert value(after, "bessmon_http_request_duration_seconds_count", method="GET",
                 route=route) >= 3


def test_live_feed_clients_and_frames(api_settings: Settings) -> None:
    scraper = {"Authorization": f"Bearer {metrics_token(api_settings)}"}
    with TestClient(create_app(api_settings)) as client:
        before = client.get("/metrics", headers=scraper).text
        with client.websocket_connect("/api/v1/ws") as ws:
            ws.send_json({"type": "auth", "token": token(api_settings, "viewer")})
            assert ws.receive_json()["type"] == "ready"
            ws.send_json({"type": "subscribe", "channel": "fleet"})
            assert ws.receive_json()["type"] == "snapshot"
            ws.send_json({"type": "ping"})
            assert ws.receive_json()["type"] == "pong"
            during = client.get("/metrics", headers=scraper).text
        with client.websocket_connect("/api/v1/ws") as ws:
            ws.send_json({"type": "auth", "token": "not a token"})
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4401
        after = client.get("/metrics", headers=scraper).text
    assert value(during, "bessmon_ws_clients") == value(before, "bessmon_ws_clients") + 1
    assert value(after, "bessmon_ws_clients") == value(before, "bessmon_ws_clients")
    for frame in ("ready", "snapshot", "pong"):
        assert value(during, "bessmon_ws_frames_sent_total", type=frame) - \
            value(before, "bessmon_ws_frames_sent_total", type=frame) == 1, frame
    assert value(after, "bessmon_ws_closed_total", code="4401") - \
        value(before, "bessmon_ws_closed_total", code="4401") == 1
