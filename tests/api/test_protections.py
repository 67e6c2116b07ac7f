"""What protects the API as a whole (api/protections.py, api/errors.py, the CORS setting):
rate limits per credential counted in Redis and shared by API processes (health never
limited); request size limits for declared and chunked bodies, also over a real HTTP server;
security headers on every answer, the middleware's own 413/429 included; CORS closed unless
origins are listed, and `*` refused; precise 422s naming each bad field; and no password,
token or API key in any log record of a real server at its most verbose."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from api.main import create_app
from connectors.settings import Settings
from tests.api.accounts import auth, token

FLEET = "/api/v1/fleet"


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def fresh_minute(needed_s: float = 5.0) -> None:
    """Limits count per wall-clock minute: start a counting test early enough in one."""
    left = 60 - time.time() % 60
    if left < needed_s:
        time.sleep(left + 0.05)


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


class LiveServer:
    """The app under uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # log_config=None: uvicorn's records go to the root logger, where caplog is.
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="trace",
                                                    access_log=True, ws="auto"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def live(api_settings: Settings) -> Iterator[tuple[LiveServer, Settings]]:
    settings = api_settings.model_copy(update={"max_request_bytes": 4096})
    server = LiveServer(create_app(settings))
    yield server, settings
    server.stop()


# -- rate limits ---------------------------------------------------------------------------


def test_requests_over_the_limit_are_refused_per_credential(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"rate_limit_per_minute": 5})
    fresh_minute()
    with TestClient(create_app(settings)) as client:
        one, other = auth(settings, "viewer"), auth(settings, "viewer")  # two tokens
        assert [client.get(FLEET, headers=one).status_code for _ in range(5)] == [200] * 5
        over = client.get(FLEET, headers=one)
        assert over.status_code == 429
        assert over.json() == {"detail": "too many requests: slow down", "status": 429}
        assert 1 <= int(over.headers["retry-after"]) <= 61
        # Another credential has its own count; health checks are never counted.
        assert client.get(FLEET, headers=other).status_code == 200
        assert all(client.get("/api/v1/health").status_code == 200 for _ in range(10))
        # Without a credential, the client's address is what is counted (401s too).
        anonymous = [client.get(FLEET).status_code for _ in range(6)]
        assert anonymous == [401] * 5 + [429]


def test_the_count_is_shared_by_every_api_process(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"rate_limit_per_minute": 5})
    headers = auth(settings, "viewer")
    fresh_minute()
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        statuses = [(first if i % 2 else second).get(FLEET, headers=headers).status_code
                    for i in range(6)]
    assert statuses == [200] * 5 + [429]


# -- request size --------------------------------------------------------------------------


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    """A JSON-looking body sent without a Content-Length (chunked)."""
    yield b'{"name": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused(client: TestClient, api_settings: Settings,
                                          chunked: bool) -> None:
    limit = api_settings.max_request_bytes
    body: Any = chunks(limit + 10_000) if chunked else b"x" * (limit + 1)
    answer = client.post("/api/v1/api-keys", content=body,
                         headers={**auth(api_settings), "Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json() == {"detail": f"request body over {limit} bytes", "status": 413}
    assert answer.headers["x-content-type-options"] == "nosniff"
    # Just under the limit it is read (and judged on its content: not a valid key request).
    fits = client.post("/api/v1/api-keys", content=b'{"name": ""}',
                       headers={**auth(api_settings), "Content-Type": "application/json"})
    assert fits.status_code == 422


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_over_http(live: tuple[LiveServer, Settings],
                                                    chunked: bool) -> None:
    server, settings = live
    limit = settings.max_request_bytes
    with httpx.Client(base_url=server.url) as http:
        for path in ("/api/v1/api-keys", "/api/v1/auth/token"):
            body: Any = chunks(limit * 4) if chunked else b"x" * (limit + 1)
            kind = "application/x-www-form-urlencoded" if "token" in path else \
                "application/json"
            answer = http.post(path, content=body,
                               headers={**auth(settings), "Content-Type": kind})
            assert answer.status_code == 413, answer.text
            assert answer.json()["detail"] == f"request body over {limit} bytes"
        assert ("transfer-encoding" in answer.request.headers) == chunked


# -- security headers ----------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(client: TestClient,
                                                   api_settings: Settings) -> None:
    small = api_settings.model_copy(update={"rate_limit_per_minute": 1})
    with TestClient(create_app(small)) as limited:
        headers = auth(small)
        limited.get(FLEET, headers=headers)
        too_many = limited.get(FLEET, headers=headers)
    assert too_many.status_code == 429
    answers = {
        "api": client.get(FLEET, headers=auth(api_settings)),
        "health": client.get("/api/v1/health"),
        "401": client.get(FLEET),
        "404": client.get("/api/v1/sites/atlantis", headers=auth(api_settings)),
        "422": client.get("/api/v1/sites?limit=0", headers=auth(api_settings)),
        "413": client.post("/api/v1/auth/token", content=b"x" * 2_000_000),
        "429": too_many,
        "no route": client.get("/api/v1/nothing-here"),
        "dashboard": client.get("/"),
        "static": client.get("/assets/app.js"),
        "docs": client.get("/api/docs"),
    }
    for name, answer in answers.items():
        h = answer.headers
        assert h["x-content-type-options"] == "nosniff", name
        assert h["x-frame-options"] == "DENY", name
        assert h["referrer-policy"] == "no-referrer", name
        assert "frame-ancestors 'none'" in h["content-security-policy"], name
        assert "strict-transport-security" not in h, name  # development: plain HTTP is fine
        if name in ("dashboard", "static"):
            assert "script-src 'self'" in h["content-security-policy"]
            assert "'unsafe-inline'" not in h["content-security-policy"].split("script-src")[1]
        else:  # every API answer: never kept by a cache
            assert h["cache-control"] == "no-store", name
    assert answers["dashboard"].headers["cache-control"] == "no-cache"
    assert "https://cdn.jsdelivr.net" in answers["docs"].headers["content-security-policy"]


def test_production_adds_hsts(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"environment": "production"})
    with TestClient(create_app(settings)) as client:
        hsts = client.get("/api/v1/health").headers["strict-transport-security"]
    assert hsts == "max-age=31536000; includeSubDomains"


# -- CORS ----------------------------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(FLEET, headers={"Origin": origin,
                                          "Access-Control-Request-Method": "GET",
                                          "Access-Control-Request-Headers": "authorization"})


def test_cors_is_closed_by_default(client: TestClient, api_settings: Settings) -> None:
    answer = preflight(client, "https://noc.example.com")
    assert "access-control-allow-origin" not in answer.headers
    cross = client.get(FLEET, headers={**auth(api_settings), "Origin": "https://noc.example.com"})
    assert cross.status_code == 200 and "access-control-allow-origin" not in cross.headers


def test_cors_opens_for_listed_origins_only(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"cors_origins": ["https://noc.example.com"]})
    with TestClient(create_app(settings)) as client:
        allowed = preflight(client, "https://noc.example.com")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://noc.example.com"
        assert "GET" in allowed.headers["access-control-allow-methods"]
        other = preflight(client, "https://evil.example.net")
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        headers = auth(settings)
        listed = client.get(FLEET, headers={**headers, "Origin": "https://noc.example.com"})
        assert listed.headers["access-control-allow-origin"] == "https://noc.example.com"
        unlisted = client.get(FLEET, headers={**headers, "Origin": "https://evil.example.net"})
        assert "access-control-allow-origin" not in unlisted.headers


@pytest.mark.parametrize("origins", [["*"], ["https://noc.example.com", "*"]])
def test_settings_refuse_a_wildcard_origin(origins: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="must list origins, not '\\*'"):
        Settings(cors_origins=origins)
    monkeypatch.setenv("BESSMON_CORS_ORIGINS", str(origins).replace("'", '"'))
    with pytest.raises(ValidationError, match="must list origins, not '\\*'"):
        Settings()


# -- precise 4xx ---------------------------------------------------------------------------

SPAN = "start=1767225600000&end=1767830400000"
HUGE = 99_999_999_999_999_999_998  # > 2**63
INVALID: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/v1/sites?limit=0", None, "query.limit"),
    ("GET", "/api/v1/sites?limit=501", None, "query.limit"),
    ("GET", "/api/v1/sites?limit=ten", None, "query.limit"),
    ("GET", "/api/v1/sites?cursor=garbage", None, "query.cursor"),
    ("GET", "/api/v1/alarms?cursor=eDE", None, "query.cursor"),  # base64 of "x1"
    ("GET", "/api/v1/alarms?severity=apocalyptic", None, "query.severity"),
    ("GET", "/api/v1/alarms?state=forgotten", None, "query.state"),
    ("GET", "/api/v1/assets/nordvik-u01/status?start=2000&end=1000", None, "query.end"),
    ("GET", "/api/v1/assets/nordvik-u01/status?end=1000", None, "query.start"),
    ("GET", "/api/v1/assets/nordvik-u01/status?start=-5&end=1000", None, "query.start"),
    ("GET", "/api/v1/assets/nordvik-u01/availability?start=0&end=86400000000", None,
     "query.end"),
    ("GET", f"/api/v1/assets/nordvik-u01/availability?{SPAN}&interval=week", None,
     "query.interval"),
    ("GET", f"/api/v1/assets/nordvik-u01/telemetry?tag=soc%20pct&{SPAN}", None, "query.tag"),
    ("GET", f"/api/v1/assets/nordvik-u01/telemetry?{SPAN}", None, "query.tag"),
    ("GET", f"/api/v1/assets/nordvik-u01/telemetry?tag=soc_pct&{SPAN}&step=1000", None,
     "query.step"),
    ("GET", "/api/v1/assets/nordvik-u01/telemetry?tag=soc_pct&start=0&end=31536000000",
     None, "query.step"),
    ("GET", "/api/v1/assets/nordvik-u01/tickets?status=lost", None, "query.status"),
    ("GET", "/api/v1/contracts/LTSA-NORDVIK/compliance?period=2026-13", None, "query.period"),
    ("GET", "/api/v1/contracts/LTSA-NORDVIK/compliance?period=1990-01", None, "query.period"),
    ("GET", "/api/v1/contracts/LTSA-NORDVIK/compliance", None, "query.period"),
    ("GET", "/api/v1/reports/compliance?contract_id=LTSA-NORDVIK&period=2026-01&format=docx",
     None, "query.format"),
    ("GET", "/api/v1/audit?after_seq=-1", None, "query.after_seq"),
    # Numbers beyond any instant or sequence number (they overflowed SQLite: 500s before).
    ("GET", f"/api/v1/assets/nordvik-u01/status?start={HUGE}&end={HUGE + 1}", None,
     "query.start"),
    ("GET", f"/api/v1/assets/nordvik-u01/episodes?start=0&end={HUGE}", None, "query.end"),
    ("GET", f"/api/v1/assets/nordvik-u01/telemetry?tag=soc_pct&{SPAN}&step={HUGE}", None,
     "query.step"),
    ("GET", f"/api/v1/audit?after_seq={HUGE}", None, "query.after_seq"),
    ("POST", "/api/v1/api-keys", {"name": "x", "role": "viewer", "customers": ["*"],
                                  "regions": ["*"], "expires_ms": HUGE}, "body.expires_ms"),
    # Periods no calendar holds (a ValueError inside the contract engine: 500s before).
    ("GET", "/api/v1/contracts/LTSA-NORDVIK/compliance?period=9999-12", None, "query.period"),
    ("GET", "/api/v1/contracts/LTSA-ELBE/compliance?period=0000-Q1", None, "query.period"),
    ("GET", "/api/v1/reports/compliance?contract_id=LTSA-NORDVIK&period=2026-01..9999-12",
     None, "query.period"),
    ("POST", "/api/v1/api-keys", {"name": "x", "role": "root", "customers": ["*"],
                                  "regions": ["*"]}, "body.role"),
    ("POST", "/api/v1/api-keys", {"name": "x", "role": "viewer", "regions": ["*"]},
     "body.customers"),
    ("POST", "/api/v1/api-keys", {"name": "../x", "role": "viewer", "customers": ["*"],
                                  "regions": ["*"]}, "body.name"),
    ("POST", "/api/v1/api-keys", {"name": "x", "role": "viewer", "customers": ["*"],
                                  "regions": ["*"], "expires_ms": 1000}, "body.expires_ms"),
    ("POST", "/api/v1/alarms/r:major:nordvik-u01:1/shelve", {"until_ms": 1}, "body.reason"),
    ("POST", "/api/v1/alarms/r:major:nordvik-u01:1/acknowledge", "not json", "body.0"),
]


@pytest.mark.parametrize(("method", "url", "body", "loc"), INVALID,
                         ids=[f"{m} {u} {loc}" for m, u, _, loc in INVALID])
def test_invalid_input_is_422_naming_the_field(client: TestClient, api_settings: Settings,
                                               method: str, url: str, body: Any,
                                               loc: str) -> None:
    kwargs: dict[str, Any] = ({"content": body, "headers": {
        **auth(api_settings), "Content-Type": "application/json"}} if isinstance(body, str)
        else {"json": body, "headers": auth(api_settings)})
    answer = client.request(method, url, **kwargs)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["status"] == 422 and error["detail"].startswith("invalid request: ")
    assert loc in [e["loc"] for e in error["errors"]], error
    assert all(e["msg"] for e in error["errors"])
    assert loc in error["detail"]


@pytest.mark.parametrize("message", [
    {"type": "subscribe", "channel": "fleet", "since": -1},
    {"type": "subscribe", "channel": 5},
    {"type": "subscribe", "channel": "fleet", "since": "yesterday"},
    "not json",
    ["type", "ping"],
])
def test_an_invalid_live_feed_message_gets_an_error_frame(
        client: TestClient, api_settings: Settings, message: Any) -> None:
    """The socket stays open and usable (a negative `since` used to kill the connection
    silently, with a Redis error, leaving the client waiting)."""
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": token(api_settings, "viewer")})
        assert ws.receive_json()["type"] == "ready"
        ws.send_text(message if isinstance(message, str) else json.dumps(message))
        assert ws.receive_json() == {"type": "error", "message": "not a valid message"}
        ws.send_json({"type": "subscribe", "channel": "fleet", "since": 0})
        assert ws.receive_json()["type"] in ("resume", "snapshot")
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_sign_in_without_a_password_names_the_field(client: TestClient) -> None:
    answer = client.post("/api/v1/auth/token", data={"username": "viewer"})
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["errors"]] == ["body.password"]


# -- secrets never logged ------------------------------------------------------------------


def test_no_secret_reaches_any_log(live: tuple[LiveServer, Settings],
                                   caplog: pytest.LogCaptureFixture) -> None:
    server, settings = live
    # This test's own clients log what they send at debug level; they are not the API.
    # (set_level also sets the capturing handler's level: the last call must be the lowest)
    for name in ("websockets.client", "httpx", "httpcore"):
        caplog.set_level(logging.WARNING, logger=name)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "fastapi",
                 "starlette", "websockets.server", "api", "connectors", "jwt"):
        caplog.set_level(1, logger=name)
    caplog.set_level(1)  # everything, uvicorn's TRACE and its WebSocket frames included
    password, wrong = "pw-engineer", "Tr0ub4dor&3-not-it"
    with httpx.Client(base_url=server.url) as http:
        signed_in = http.post("/api/v1/auth/token",
                              data={"username": "engineer", "password": password})
        assert signed_in.status_code == 200
        local_token = signed_in.json()["access_token"]
        failed = http.post("/api/v1/auth/token", data={"username": "engineer",
                                                       "password": wrong})
        assert failed.status_code == 401
        assert http.get(FLEET, headers=bearer(local_token)).status_code == 200
        made = http.post("/api/v1/api-keys", headers=auth(settings), json={
            "name": "log-probe", "role": "viewer", "customers": ["*"], "regions": ["*"]})
        key = made.json()["key"]
        assert http.get(FLEET, headers=bearer(key)).status_code == 200
        assert http.get(FLEET, headers=bearer(key[:-1] + "x")).status_code == 401
        forged = local_token[:-8] + "AAAAAAAA"
        assert http.get(FLEET, headers=bearer(forged)).status_code == 401
        assert http.delete(f"/api/v1/api-keys/{made.json()['id']}",
                           headers=auth(settings)).status_code == 200
        assert http.get(FLEET, headers=bearer(key)).status_code == 401
    ws_token = token(settings, "viewer")
    ws_url = server.url.replace("http", "ws") + "/api/v1/ws"
    with ws_connect(ws_url) as ws:
        ws.send(json.dumps({"type": "auth", "token": ws_token}))
        assert '"ready"' in str(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "subscribe", "channel": "fleet"}))
        assert '"snapshot"' in str(ws.recv(timeout=10))
    with ws_connect(ws_url) as ws:  # the revoked key
        ws.send(json.dumps({"type": "auth", "token": key}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    records = caplog.records
    logged = caplog.text + "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}"
                                     for r in records)
    # The capture works: the access log saw the sign-ins, the server its WebSocket frames.
    assert any(r.name == "uvicorn.access" and "/api/v1/auth/token" in r.getMessage()
               for r in records)
    assert any('"subscribe"' in r.getMessage() for r in records)
    # Not the secrets, and not a recognizable piece of one either (a WebSocket frame logged
    # at debug level shows the first and the last characters of its text).
    for secret in (password, wrong, local_token.rsplit(".", 1)[1], key.split("_", 2)[2],
                   forged.rsplit(".", 1)[1], ws_token.rsplit(".", 1)[1]):
        pieces = {secret[i:i + 12] for i in range(max(1, len(secret) - 11))}
        leaked = sorted(p for p in pieces if p in logged)
        assert not leaked, f"pieces of a secret in the log: {leaked}"
