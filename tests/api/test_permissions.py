"""The role × endpoint matrix, generated from `api.auth.permissions.ROLE_PERMISSIONS`.

Every route of the app is classified in `ENDPOINTS` by what it needs: a permission, "public"
(health, the docs, the dashboard, signing in), "any" (any valid credential: who am I, token
refresh, the live feed — whose channels are then scoped), "webhook" (ticket webhooks, proved by
the vendor's signature and never by a user's token) or "email-link" (acknowledging an alarm
from an e-mail: proved by the link's signed one-time token, never by a bearer credential). A
route the table does not classify fails `test_every_route_is_classified`, so a new route has to
be placed in the matrix before it ships. Then every role is tried on every endpoint with
realistic data (the example fleet, its contracts, a breach raised through the flows' Redis
sink, an API key in the store): a role whose permissions include the endpoint's gets the
endpoint's success status; a role without gets exactly 403 `role <role> may not <permission>`
and nothing is done or audited — but for an operator command to the equipment and a step of the
exclusion workflow, which are audited as refused (who tried to stop or to decide what)."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.routing import Mount

from api.auth.permissions import ROLE_PERMISSIONS, ROLES, Permission, Role
from api.context import ApiContext
from api.main import create_app
from connectors.alarm_store import act_on_alarm
from connectors.api_store import Evidence, ExclusionStore
from connectors.audit import AuditLog
from connectors.evidence import evidence_dir, store_file
from connectors.redis_store import alarm_handling_key, alarms_key
from connectors.settings import Settings
from connectors.ticketing.config import TicketingSettings
from tests.api import hot_state
from tests.api.accounts import auth

Need = Permission | Literal["public", "any", "webhook", "email-link"]
P = Permission
JANUARY = "start=1767225600000&end=1767830400000"  # 2026-01-01 .. 2026-01-08 UTC, epoch ms
# Block style: the matrix fills "{x}" placeholders into request bodies.
NOTIFY_RULES = ("channels:\n  ops:\n    type: email\n    to: [ops@example.test]\n"
                "rules:\n  - name: all\n    notify: [ops]\n")
EXCLUSIONS = "/api/v1/contracts/LTSA-NORDVIK/exclusions"
JIRA_BODY = (Path(__file__).resolve().parents[1] / "fixtures" / "ticketing"
             / "jira_issue_created.json").read_bytes()


@dataclass(frozen=True)
class Endpoint:
    method: str  # an HTTP method; "WS" for the live feed; "MOUNT" for static files
    route: str  # the path as the app routes it
    need: Need
    url: str = ""  # the request made (default: the route); {breach}, {shelved}, {key} filled in
    ok: int = 200  # the status of a caller who may
    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)  # {role} filled in
    files: dict[str, tuple[str, bytes, str]] | None = None  # a multipart upload

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}"


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/api/v1/openapi.json", "public"),
    Endpoint("GET", "/api/docs", "public"),
    Endpoint("GET", "/docs/oauth2-redirect", "public"),
    Endpoint("GET", "/", "public"),
    Endpoint("MOUNT", "/assets", "public", url="/assets/app-3f9a1c.js"),
    Endpoint("GET", "/api/v1/health", "public"),
    # Prometheus' scrape: the metrics token (tests/api/test_metrics_api.py) or an admin.
    Endpoint("GET", "/metrics", P.STACK_READ),
    Endpoint("POST", "/api/v1/auth/token", "public",
             form={"username": "{role}", "password": "pw-{role}"}),
    Endpoint("POST", "/api/v1/auth/refresh", "any"),
    Endpoint("GET", "/api/v1/auth/me", "any"),
    Endpoint("WS", "/api/v1/ws", "any", ok=101),
    Endpoint("GET", "/api/v1/fleet", P.READ),
    Endpoint("GET", "/api/v1/sites", P.READ),
    Endpoint("GET", "/api/v1/sites/{site_id}", P.READ, "/api/v1/sites/nordvik"),
    Endpoint("GET", "/api/v1/sites/{site_id}/assets", P.READ, "/api/v1/sites/nordvik/assets"),
    Endpoint("GET", "/api/v1/assets/{asset_id}", P.READ, "/api/v1/assets/nordvik-u01"),
    Endpoint("GET", "/api/v1/assets/{asset_id}/tickets", P.READ,
             "/api/v1/assets/nordvik-u01/tickets"),
    Endpoint("GET", "/api/v1/assets/{asset_id}/availability", P.READ,
             f"/api/v1/assets/nordvik-u01/availability?{JANUARY}"),
    Endpoint("GET", "/api/v1/assets/{asset_id}/status", P.READ,
             f"/api/v1/assets/nordvik-u01-i1/status?{JANUARY}"),
    Endpoint("GET", "/api/v1/assets/{asset_id}/telemetry", P.READ,
             f"/api/v1/assets/nordvik-u01/telemetry?tag=soc_pct&{JANUARY}&step=3600000"),
    Endpoint("GET", "/api/v1/assets/{asset_id}/episodes", P.READ,
             f"/api/v1/assets/nordvik-u01/episodes?{JANUARY}"),
    # The historian (tests/api/test_historian.py): an export is `reports.export`'s.
    Endpoint("GET", "/api/v1/telemetry/export", P.REPORTS_EXPORT,
             "/api/v1/telemetry/export?assets=nordvik-u01&tags=soc_pct&from=2026-01-01T00:00:00Z"
             "&to=2026-01-08T00:00:00Z&format=csv"),
    Endpoint("GET", "/api/v1/analytics/historian", P.READ,
             "/api/v1/analytics/historian?assets=nordvik-u01&tags=soc_pct"
             "&from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z&points=100"),
    # Faults and trips, MTTR and MTBF (tests/api/test_faults.py).
    Endpoint("GET", "/api/v1/analytics/faults", P.READ,
             "/api/v1/analytics/faults?from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z"
             "&site=nordvik&group_by=vendor"),
    # Battery health: fade, end of life, exposure (tests/api/test_battery_health.py).
    Endpoint("GET", "/api/v1/analytics/battery-health", P.READ,
             "/api/v1/analytics/battery-health?from=2026-01-01T00:00:00Z"
             "&to=2026-01-08T00:00:00Z&unit=nordvik-u01"),
    # Vendor benchmarking (tests/api/test_vendors.py).
    Endpoint("GET", "/api/v1/analytics/vendors", P.READ,
             "/api/v1/analytics/vendors?from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z"
             "&site=nordvik"),
    # Controller health and comms (tests/api/test_comms.py).
    Endpoint("GET", "/api/v1/analytics/comms", P.READ,
             "/api/v1/analytics/comms?from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z"
             "&site=nordvik"),
    # The warranty evidence pack (audited: tests/api/test_warranty_pack.py).
    Endpoint("GET", "/api/v1/analytics/warranty-pack", P.REPORTS_EXPORT,
             "/api/v1/analytics/warranty-pack?unit=nordvik-u01&from=2026-01-01T00:00:00Z"
             "&to=2026-01-08T00:00:00Z&format=xlsx"),
    Endpoint("GET", "/api/v1/alarms", P.READ, "/api/v1/alarms?site_id=nordvik"),
    Endpoint("POST", "/api/v1/alarms/{breach_id}/acknowledge", P.ALARMS_ACKNOWLEDGE,
             "/api/v1/alarms/{breach}/acknowledge", json={"comment": "crew on the way"}),
    Endpoint("POST", "/api/v1/alarms/{breach_id}/shelve", P.ALARMS_SHELVE,
             "/api/v1/alarms/{breach}/shelve",
             json={"reason": "sensor replaced tomorrow", "until_ms": "{tomorrow}"}),
    Endpoint("POST", "/api/v1/alarms/{breach_id}/unshelve", P.ALARMS_SHELVE,
             "/api/v1/alarms/{shelved}/unshelve"),
    Endpoint("GET", "/api/v1/alerts", P.READ),
    Endpoint("GET", "/api/v1/data-quality", P.READ, "/api/v1/data-quality?site=nordvik"),
    Endpoint("GET", "/api/v1/repair-priority", P.READ, "/api/v1/repair-priority?site=nordvik"),
    Endpoint("GET", "/api/v1/data-quality/unrouted", P.DATA_QUALITY_UNROUTED),
    Endpoint("GET", "/api/v1/contracts", P.CONTRACTS_READ),
    Endpoint("GET", "/api/v1/contracts/{contract_id}/compliance", P.CONTRACTS_READ,
             "/api/v1/contracts/LTSA-NORDVIK/compliance?period=2026-01"),
    Endpoint("GET", "/api/v1/reports/compliance", P.REPORTS_EXPORT,
             "/api/v1/reports/compliance?contract_id=LTSA-NORDVIK&period=2026-01&format=csv"),
    Endpoint("GET", "/api/v1/reports/archive", P.CONTRACTS_READ,
             "/api/v1/reports/archive?contract_id=LTSA-NORDVIK"),
    # The version `client` archives (a download is audited: tests/api/test_report_archive.py).
    Endpoint("GET", "/api/v1/reports/archive/{contract_id}/{period}/v{version}.{fmt}",
             P.REPORTS_EXPORT, "/api/v1/reports/archive/LTSA-NORDVIK/2026-01/v1.csv"),
    # Exclusion windows (tests/api/test_exclusions_api.py): `values` makes fresh ones per
    # cell — proposed by someone else (to approve / reject), by the caller (to withdraw),
    # approved (to revoke), with an evidence file (to download).
    Endpoint("GET", "/api/v1/contracts/{contract_id}/exclusions", P.CONTRACTS_READ,
             f"{EXCLUSIONS}?state=proposed"),
    Endpoint("POST", "/api/v1/contracts/{contract_id}/exclusions", P.EXCLUSIONS_PROPOSE,
             EXCLUSIONS, ok=201, json={"scope_id": "nordvik-u01", "start_ms": 1780000000000,
                                       "end_ms": 1780003600000, "category": "grid_outage",
                                       "reason": "matrix check"}),
    Endpoint("POST", "/api/v1/contracts/{contract_id}/exclusions/{n}/evidence",
             P.EXCLUSIONS_PROPOSE, EXCLUSIONS + "/{other}/evidence", ok=201,
             files={"file": ("notice.pdf", b"%PDF-1.7 matrix", "application/pdf")}),
    Endpoint("GET", "/api/v1/contracts/{contract_id}/exclusions/{n}/evidence/{sha256}",
             P.CONTRACTS_READ, EXCLUSIONS + "/{other}/evidence/{evidence}"),
    Endpoint("POST", "/api/v1/contracts/{contract_id}/exclusions/{n}/approve",
             P.EXCLUSIONS_DECIDE, EXCLUSIONS + "/{other}/approve", json={"comment": "ok"}),
    Endpoint("POST", "/api/v1/contracts/{contract_id}/exclusions/{n}/reject",
             P.EXCLUSIONS_DECIDE, EXCLUSIONS + "/{other}/reject", json={"comment": "no"}),
    Endpoint("POST", "/api/v1/contracts/{contract_id}/exclusions/{n}/withdraw",
             P.EXCLUSIONS_PROPOSE, EXCLUSIONS + "/{own}/withdraw"),
    Endpoint("POST", "/api/v1/contracts/{contract_id}/exclusions/{n}/revoke",
             P.EXCLUSIONS_DECIDE, EXCLUSIONS + "/{approved}/revoke", json={"comment": "no"}),
    Endpoint("GET", "/api/v1/audit", P.AUDIT_READ),
    Endpoint("GET", "/api/v1/stack", P.STACK_READ),
    Endpoint("POST", "/api/v1/api-keys", P.API_KEYS_MANAGE, ok=201,
             json={"name": "matrix-{role}", "role": "viewer", "customers": ["*"],
                   "regions": ["*"]}),
    Endpoint("GET", "/api/v1/api-keys", P.API_KEYS_MANAGE),
    Endpoint("DELETE", "/api/v1/api-keys/{key_id}", P.API_KEYS_MANAGE, "/api/v1/api-keys/{key}"),
    Endpoint("POST", "/api/v1/webhooks/{provider}", "webhook", "/api/v1/webhooks/jira"),
    # Not public: the signed one-time token of an e-mail's link is their credential (the
    # recipient's rights are checked as a bearer's would be: tests/api/test_ack_links.py).
    # A bearer credential, of any role, counts for nothing there: without a valid link
    # every caller gets 400 and nothing is acknowledged.
    Endpoint("GET", "/api/v1/alarms/ack", "email-link", "/api/v1/alarms/ack?token=not-a-link"),
    Endpoint("POST", "/api/v1/alarms/ack", "email-link", form={"token": "not-a-link"}),
    Endpoint("GET", "/api/v1/control/units/{unit_id}", P.READ,
             "/api/v1/control/units/nordvik-u01"),
    Endpoint("GET", "/api/v1/control/sites/{site_id}", P.READ, "/api/v1/control/sites/nordvik"),
    *(Endpoint("POST", f"/api/v1/control/units/{{unit_id}}/{kind}", P.CONTROL_COMMAND,
               f"/api/v1/control/units/nordvik-u01/{kind}", ok=202,
               json={"reason": "matrix check", **({"mode": "passive"} if kind == "mode" else {})})
      for kind in ("estop", "stop", "start", "reset", "mode")),
    Endpoint("POST", "/api/v1/control/sites/{site_id}/estop", P.CONTROL_COMMAND,
             "/api/v1/control/sites/nordvik/estop", ok=202, json={"reason": "matrix check"}),
    Endpoint("POST", "/api/v1/control/fleet/estop", P.CONTROL_COMMAND, ok=202,
             json={"reason": "matrix check"}),
    Endpoint("GET", "/api/v1/notify/rules", P.NOTIFY_MANAGE),
    Endpoint("PUT", "/api/v1/notify/rules", P.NOTIFY_MANAGE, json={"yaml": NOTIFY_RULES}),
    Endpoint("POST", "/api/v1/notify/rules/validate", P.NOTIFY_MANAGE,
             json={"yaml": NOTIFY_RULES}),
    Endpoint("GET", "/api/v1/notify/deliveries", P.READ),
    # Every user's own preferences, their own entry only (tests/api/test_notify_api.py).
    Endpoint("GET", "/api/v1/notify/preferences", P.READ),
    Endpoint("PUT", "/api/v1/notify/preferences", P.READ,
             json={"severities": ["critical", "major"], "quiet_hours": "22:00-07:00",
                   "tz": "Europe/Stockholm"}),
    Endpoint("DELETE", "/api/v1/notify/preferences", P.READ),
)
BY_ID = {e.id: e for e in ENDPOINTS}


def routed(app: FastAPI) -> set[str]:
    """Every route of the app as "<METHOD> <path>" (HEAD left out: it follows GET)."""
    out = set()
    for context in iter_route_contexts(app.routes):
        route = context.route
        if isinstance(route, APIWebSocketRoute):
            out.add(f"WS {context.path}")
        elif isinstance(route, Mount):
            out.add(f"MOUNT {context.path}")
        else:
            out |= {f"{m} {context.path}" for m in context.methods or () if m != "HEAD"}
    return out


@pytest.fixture(scope="module")
def matrix_settings(redis_url: str, kafka_bootstrap: str, accounts: tuple[Path, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Settings:
    client: redis.Redis = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("bessmon:*"):
        client.delete(key)
    client.close()
    users, key = accounts
    suffix = uuid.uuid4().hex[:8]  # control commands go to topics of this module's own
    return Settings(REDIS_URL=redis_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                    run_dir=tmp_path_factory.mktemp("matrix"), users_file=users,
                    jwt_key_file=key, topic_commands=f"t-{suffix}.commands",
                    topic_command_results=f"t-{suffix}.command.results")


@pytest.fixture(scope="module")
def client(matrix_settings: Settings,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One API for the whole matrix (a fresh state per cell comes from `values`)."""
    web_dist = tmp_path_factory.mktemp("web-dist")  # a built page, whether or not web/ is built
    (web_dist / "assets").mkdir()
    (web_dist / "index.html").write_text("<!doctype html><title>bessmon</title>")
    (web_dist / "assets" / "app-3f9a1c.js").write_text("console.log('bessmon')")
    app = create_app(matrix_settings, web_dist=web_dist)
    archive_one_report(matrix_settings)
    # Webhooks enabled, so that what refuses a user's token is the missing vendor signature.
    app.state.ticketing = TicketingSettings(webhook_secret_jira=SecretStr("jira-secret-4f1e9b"))
    with TestClient(app) as c:
        yield c


def archive_one_report(settings: Settings) -> None:
    """Version 1 of LTSA-NORDVIK's 2026-01 report in the archive, for its download."""
    from api.reports.archive import ReportArchive, archive_root

    archive = ReportArchive(archive_root(settings.run_dir))
    archive.add_version(contract_id="LTSA-NORDVIK", site_id="nordvik", period="2026-01",
                        fp="0" * 64, files={"pdf": b"%PDF-1.4", "xlsx": b"PK", "csv": b"a\n"},
                        summary={"period": "2026-01", "availability_pct": 99.0,
                                 "guaranteed_pct": 98.5, "ld": 0.0, "bonus": 0.0},
                        diffs=[], now_ms=1)
    archive.close()


def ctx_of(client: TestClient) -> ApiContext:
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def values(client: TestClient, matrix_settings: Settings,
           request: pytest.FixtureRequest) -> dict[str, Any]:
    """A fresh alarm to act on, a shelved one, and an API key to revoke."""
    url = matrix_settings.require_redis()
    raised = hot_state.breach("nordvik", "nordvik-u01-i1-b3", severity="major")
    shelved = hot_state.breach("nordvik", "nordvik-u02", severity="minor")
    sync: redis.Redis = redis.Redis.from_url(url)
    sync.delete(alarms_key("nordvik"), alarm_handling_key("nordvik"))
    sync.close()
    hot_state.write(url, raised, shelved)
    now = hot_state.now_ms()

    async def shelve() -> None:
        async with aioredis.Redis.from_url(url) as r:
            await act_on_alarm(r, "nordvik", shelved.breach_id, "shelve", by="setup",
                               now_ms=now, comment="setup", shelve_until_ms=now + 3_600_000)

    asyncio.run(shelve())
    key, _ = ctx_of(client).auth.api_keys.create("to-revoke", "viewer", ["*"], ["*"],
                                                 created_by="setup", now_ms=now)
    return {"breach": raised.breach_id, "shelved": shelved.breach_id, "key": key.id,
            "tomorrow": now + 86_400_000, **exclusions(client, request, now)}


def exclusions(client: TestClient, request: pytest.FixtureRequest, now: int) -> dict[str, Any]:
    """Exclusions of LTSA-NORDVIK to act on: proposed by `setup` (with an evidence file),
    proposed by the cell's role (its own, to withdraw), and approved."""
    store = ExclusionStore(ctx_of(client).store)
    callspec = getattr(request.node, "callspec", None)
    role = callspec.params.get("role", "setup") if callspec else "setup"

    def made(by: str) -> int:
        record = store.propose(contract_id="LTSA-NORDVIK", site_id="nordvik",
                               scope_id="nordvik-u02", start_us=1_780_000_000_000_000,
                               end_us=1_780_003_600_000_000, category="force_majeure",
                               reason="matrix", proposed_by=by, now_ms=now)
        return record.exclusion.id

    other, own, approved = made("setup"), made(role), made("setup")
    store.decide("LTSA-NORDVIK", approved, expected="proposed", new="approved",
                 by="setup-2", now_ms=now, comment=None)
    data = b"matrix evidence"
    sha, size = store_file(evidence_dir(ctx_of(client).settings.run_dir), io.BytesIO(data))
    store.add_evidence(other, Evidence(sha, "e.txt", size, "text/plain", "setup", now))
    return {"other": other, "own": own, "approved": approved, "evidence": sha}


def fill(value: Any, values: dict[str, Any]) -> Any:
    """The endpoint's body with the test's values in it (a whole "{x}" keeps x's type)."""
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") \
            and value[1:-1] in values:
        return values[value[1:-1]]
    return value.format(**values) if isinstance(value, str) else value


def call(client: TestClient, endpoint: Endpoint, values: dict[str, Any],
         headers: dict[str, str]) -> tuple[int, Any]:
    """The endpoint called as its table row says: (status, JSON body or text)."""
    url = (endpoint.url or endpoint.route).format(**values)
    if endpoint.method == "WS":
        return live_feed(client, url, headers)
    if endpoint.method == "MOUNT":
        response = client.get(url, headers=headers)
    elif endpoint.method == "POST" and endpoint.route.startswith("/api/v1/webhooks/"):
        response = client.post(url, content=JIRA_BODY,
                               headers={**headers, "Content-Type": "application/json"})
    else:
        response = client.request(
            endpoint.method, url, headers=headers,
            json=fill(endpoint.json, values) if endpoint.json is not None else None,
            data={k: v.format(**values) for k, v in endpoint.form.items()} or None,
            files=endpoint.files)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def live_feed(client: TestClient, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    """The WebSocket's first frame carries the credential; 101 and the `ready` frame (then a
    fleet snapshot) when it is accepted, the close code when not."""
    from starlette.websockets import WebSocketDisconnect

    token = headers.get("Authorization", "").removeprefix("Bearer ")
    with client.websocket_connect(url) as ws:
        ws.send_json({"type": "auth", "token": token})
        try:
            ready = ws.receive_json()
        except WebSocketDisconnect as closed:
            return closed.code, closed.reason
        ws.send_json({"type": "subscribe", "channel": "fleet"})
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot", snapshot
        return 101, ready


def alarm_handling(settings: Settings) -> dict[Any, Any]:
    sync: redis.Redis = redis.Redis.from_url(settings.require_redis())
    try:
        handling: dict[Any, Any] = sync.hgetall(alarm_handling_key("nordvik"))
        return handling
    finally:
        sync.close()


def audit_count(client: TestClient) -> int:
    return len(AuditLog(ctx_of(client).store).entries(limit=100_000))


def last_audit(client: TestClient) -> Any:
    return AuditLog(ctx_of(client).store).entries(limit=100_000)[-1]


def test_every_route_is_classified(client: TestClient) -> None:
    routes = routed(client.app)  # type: ignore[arg-type]
    unclassified = sorted(routes - BY_ID.keys())
    stale = sorted(BY_ID.keys() - routes)
    assert not unclassified, f"classify these routes in ENDPOINTS: {unclassified}"
    assert not stale, f"ENDPOINTS names routes the app no longer has: {stale}"
    # Every permission of the table guards something, or it is dead weight in the docs.
    assert {e.need for e in ENDPOINTS if isinstance(e.need, Permission)} == set(Permission)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
@pytest.mark.parametrize("role", ROLES)
def test_role_on_endpoint(client: TestClient, matrix_settings: Settings,
                          values: dict[str, Any], role: Role, endpoint: Endpoint) -> None:
    values = {**values, "role": role}
    before = audit_count(client)
    handling_before = alarm_handling(matrix_settings)
    status, body = call(client, endpoint, values, auth(matrix_settings, role))
    need = endpoint.need
    if need == "webhook":
        # A user's token, whatever its role, proves nothing to a webhook.
        assert (status, body) == (401, {"detail": "X-Hub-Signature is missing (set a secret "
                                                  "on the Jira webhook)", "status": 401})
    elif need == "email-link":
        assert status == 400 and "Malformed link" in body, body
        # A POST is an attempt to acknowledge: audited, as refused; a GET only shows.
        assert audit_count(client) == before + (endpoint.method == "POST")
        if endpoint.method == "POST":
            assert (last_audit(client).action, last_audit(client).outcome) == (
                "alarm.acknowledge", "refused")
        assert alarm_handling(matrix_settings) == handling_before
    elif need in ("public", "any") or need in ROLE_PERMISSIONS[role]:
        assert status not in (401, 403), body
        assert status == endpoint.ok, body
        if endpoint.method == "WS":
            assert body["role"] == role
    else:
        assert isinstance(need, Permission)
        assert (status, body) == (403, {"detail": f"role {role} may not {need.value}",
                                        "status": 403})
        if need == P.CONTROL_COMMAND:  # a refused command is audited, as refused
            assert audit_count(client) == before + 1
            entry = last_audit(client)
            assert (entry.actor, entry.outcome, entry.action) == (
                role, "refused", "control." + endpoint.route.rsplit("/", 1)[-1])
            assert entry.details == {"why": f"role {role} may not {need.value}",
                                     "reason": "matrix check"}
        elif need in (P.EXCLUSIONS_PROPOSE, P.EXCLUSIONS_DECIDE):
            # an attempt at the exclusion workflow is audited, as refused (who tried what)
            assert audit_count(client) == before + 1
            entry = last_audit(client)
            assert (entry.actor, entry.outcome) == (role, "refused")
            assert entry.action.startswith("exclusion.")
            assert entry.details == {"why": f"role {role} may not {need.value}"}
        else:
            assert audit_count(client) == before, "a refused call must not act (or be audited)"
        assert alarm_handling(matrix_settings) == handling_before


def test_the_matrix_reaches_every_cell() -> None:
    """The generated matrix is the table: each role is allowed exactly its permissions."""
    for role in ROLES:
        allowed = {e.need for e in ENDPOINTS if isinstance(e.need, Permission)
                   and e.need in ROLE_PERMISSIONS[role]}
        assert allowed == set(ROLE_PERMISSIONS[role])


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_anonymous_caller(client: TestClient, values: dict[str, Any],
                          endpoint: Endpoint) -> None:
    """Without a credential only the public endpoints answer."""
    values = {**values, "role": "viewer"}
    status, body = call(client, endpoint, values, {})
    if endpoint.need == "public":
        assert status == endpoint.ok, body
    elif endpoint.need == "webhook":
        assert status == 401 and "X-Hub-Signature" in body["detail"]
    elif endpoint.need == "email-link":  # the link's token is the credential: none, 400
        assert status == 400 and "Malformed link" in body, body
    elif endpoint.method == "WS":
        assert (status, body) == (4401, "missing bearer token")
    else:
        assert (status, body) == (401, {"detail": "missing bearer token", "status": 401})


def test_a_refused_role_learns_nothing_of_the_data(client: TestClient,
                                                   matrix_settings: Settings) -> None:
    """403 comes before any lookup: an unknown contract and a real one answer alike."""
    headers = auth(matrix_settings, "viewer")
    real = client.get("/api/v1/contracts/LTSA-NORDVIK/compliance?period=2026-01",
                      headers=headers)
    unknown = client.get("/api/v1/contracts/NO-SUCH/compliance?period=2026-01",
                         headers=headers)
    assert real.status_code == unknown.status_code == 403
    assert real.json() == unknown.json()
    assert "LTSA-NORDVIK" not in json.dumps(real.json())
