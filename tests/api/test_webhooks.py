"""`POST /api/v1/webhooks/{provider}` with a real Redis and the real broker: signed vendor
deliveries land on the tickets topic once, whatever is refused is refused with its precise
status and nothing published."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from httpx import Response

from api.main import create_app
from api.routes.webhooks import dedupe_key
from connectors.kafka import ensure_topics, read_topic
from connectors.settings import Settings
from contracts.events import TicketEvent
from tests.api.accounts import auth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ticketing"
SECRETS = {"jira": "jira-webhook-secret-1f0c9a", "servicenow": "sn-shared-secret-77e1b2",
           "zendesk": "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="}
MAX_BYTES = 64 * 1024
MAPPING = """\
servicenow:
  asset:
    field: cmdb_ci
    table:
      3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1: nordvik-u01
      5e7d0c4a2f1b4e3d9c8b7a6f5e4d3c2b: mesa-u02
"""


def body_of(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, path: tuple[str, ...], value: Any) -> bytes:
    payload = json.loads(body_of(name))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(payload).encode()


def signed(provider: str, body: bytes, *, secret: str | None = None,
           sent: datetime | None = None) -> dict[str, str]:
    key = (secret or SECRETS[provider]).encode()
    if provider == "jira":
        return {"X-Hub-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()}
    if provider == "servicenow":
        digest = hmac.new(key, body, hashlib.sha256).digest()
        return {"X-Bessmon-Signature": "sha256=" + base64.b64encode(digest).decode()}
    timestamp = f"{sent or datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    digest = hmac.new(key, timestamp.encode() + body, hashlib.sha256).digest()
    return {"X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp}


def post(client: TestClient, provider: str, body: bytes,
         headers: dict[str, str] | None = None) -> Response:
    response: Response = client.post(
        f"/api/v1/webhooks/{provider}", content=body,
        headers={"Content-Type": "application/json", **(headers or {})})
    return response


@pytest.fixture
def webhook_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for provider, secret in SECRETS.items():
        monkeypatch.setenv(f"BESSMON_WEBHOOK_SECRET_{provider.upper()}", secret)
    mapping = tmp_path / "ticketing.yaml"
    mapping.write_text(MAPPING)
    monkeypatch.setenv("BESSMON_TICKETING_FILE", str(mapping))
    monkeypatch.setenv("BESSMON_WEBHOOK_MAX_BYTES", str(MAX_BYTES))


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}.tickets.raw"
    ensure_topics(kafka_bootstrap, [name], partitions=2)
    return name


@pytest.fixture
def client(webhook_env: None, redis_url: str, redis_client: redis.Redis,
           kafka_bootstrap: str, topic: str, api_settings: Settings) -> Iterator[TestClient]:
    for key in redis_client.scan_iter("bessmon:webhook:*"):
        redis_client.delete(key)
    settings = api_settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap,
                                               "topic_tickets": topic})
    with TestClient(create_app(settings)) as c:
        yield c


def on_topic(kafka_bootstrap: str, topic: str) -> list[tuple[str, TicketEvent]]:
    messages = read_topic(kafka_bootstrap, topic, timeout_s=15, to_end=True)
    return [((m.key() or b"").decode(), TicketEvent.model_validate_json(m.value() or b""))
            for m in messages]


@pytest.mark.parametrize(("provider", "fixture", "key", "asset", "status", "updated"), [
    ("jira", "jira_issue_created.json", "jira:BESS-17", "nordvik-u02", "open",
     "2026-03-14T08:12:33.456Z"),
    ("servicenow", "servicenow_incident_new.json", "servicenow:INC0010023", "nordvik-u01",
     "open", "2026-03-14T06:55:12Z"),
    ("zendesk", "zendesk_ticket_created.json", "zendesk:35436", "mesa-u04", "open",
     "2026-03-14T07:30:00Z"),
])
def test_a_signed_delivery_is_published(client: TestClient, kafka_bootstrap: str,
                                        topic: str, provider: str, fixture: str, key: str,
                                        asset: str, status: str, updated: str) -> None:
    body = body_of(fixture)
    response = post(client, provider, body, signed(provider, body))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "published", "key": key, "asset_id": asset,
                               "reason": None}
    [(got_key, event)] = on_topic(kafka_bootstrap, topic)
    assert got_key == key
    assert (f"{event.provider}:{event.ticket_id}", event.asset_id, event.status) == \
        (key, asset, status)
    assert event.updated_ms == int(datetime.fromisoformat(updated).timestamp() * 1000)


@pytest.mark.parametrize(("provider", "first", "then", "delivery_header"), [
    # Jira retries with the same X-Atlassian-Webhook-Identifier.
    ("jira", "jira_issue_created.json", "jira_issue_resolved.json",
     "X-Atlassian-Webhook-Identifier"),
    ("zendesk", "zendesk_ticket_created.json", "zendesk_ticket_solved.json",
     "X-Zendesk-Webhook-Invocation-Id"),
    # No delivery id: the ticket, its update time and its content identify the delivery.
    ("servicenow", "servicenow_incident_new.json", "servicenow_incident_onhold.json", None),
])
def test_the_same_delivery_twice_publishes_once(client: TestClient, kafka_bootstrap: str,
                                                topic: str, provider: str, first: str,
                                                then: str, delivery_header: str | None
                                                ) -> None:
    body = body_of(first)
    delivery = {delivery_header: str(uuid.uuid4())} if delivery_header else {}
    answers = [post(client, provider, body, {**signed(provider, body), **delivery})
               for _ in range(2)]
    assert [(a.status_code, a.json()["status"]) for a in answers] == [
        (202, "published"), (202, "duplicate")]
    assert len(on_topic(kafka_bootstrap, topic)) == 1

    # Another delivery (another id, or another version of a ticket) goes through.
    other = body_of(then)
    delivery = {delivery_header: str(uuid.uuid4())} if delivery_header else {}
    answer = post(client, provider, other, {**signed(provider, other), **delivery})
    assert answer.json()["status"] == "published"
    assert len(on_topic(kafka_bootstrap, topic)) == 2


def test_two_changes_within_one_second_are_two_events(client: TestClient,
                                                      kafka_bootstrap: str,
                                                      topic: str) -> None:
    """ServiceNow's times are to the second: a state change in the same second as the
    insert is not mistaken for a redelivery."""
    created = body_of("servicenow_incident_new.json")
    started = edited("servicenow_incident_new.json", ("state",), "2")
    for body in (created, started):
        assert post(client, "servicenow", body, signed("servicenow", body)).json()[
            "status"] == "published"
    assert [e.status for _, e in on_topic(kafka_bootstrap, topic)] == ["open", "in_progress"]


JIRA = body_of("jira_issue_created.json")
NOW = datetime.now(UTC)


@pytest.mark.parametrize(("provider", "body", "headers", "status", "detail"), [
    ("jira", JIRA, signed("jira", JIRA, secret="not-the-secret"), 401,
     "X-Hub-Signature does not match the body"),
    ("jira", JIRA, {}, 401, "X-Hub-Signature is missing"),
    ("jira", JIRA + b" ", signed("jira", JIRA), 401, "X-Hub-Signature does not match"),
    ("servicenow", body_of("servicenow_incident_new.json"),
     {"X-Bessmon-Token": "sn-shared-secret-guess"}, 401, "X-Bessmon-Token is wrong"),
    ("zendesk", JIRA, signed("zendesk", JIRA, sent=NOW - timedelta(minutes=10)), 401,
     "more than 300 s away"),
    ("freshdesk", JIRA, signed("jira", JIRA), 404, "no webhook provider 'freshdesk'"),
    ("jira", b"\x00garbage{", signed("jira", b"\x00garbage{"), 400, "the body is not JSON"),
    ("jira", b'{"webhookEvent": "jira:issue_created"}',
     signed("jira", b'{"webhookEvent": "jira:issue_created"}'), 400,
     "issue.fields is missing"),
    ("jira", edited("jira_issue_created.json", ("issue", "fields", "labels"),
                    ["asset:atlantis-u01"]), None, 422,
     "ticket jira:BESS-17 names asset 'atlantis-u01', which is not in the fleet"),
    ("jira", edited("jira_issue_created.json", ("issue", "fields", "labels"), ["pcs"]),
     None, 422, "ticket jira:BESS-17 names no asset"),
    ("servicenow", edited("servicenow_incident_new.json", ("state",), "42"), None, 422,
     "servicenow status '42' is not mapped"),
])
def test_refusals_are_precise_and_publish_nothing(
        client: TestClient, kafka_bootstrap: str, topic: str, provider: str, body: bytes,
        headers: dict[str, str] | None, status: int, detail: str) -> None:
    response = post(client, provider, body,
                    headers if headers is not None else signed(provider, body))
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert on_topic(kafka_bootstrap, topic) == []


def test_the_user_token_is_no_webhook_credential(client: TestClient,
                                                api_settings: Settings) -> None:
    response = post(client, "jira", JIRA, auth(api_settings, "admin"))
    assert response.status_code == 401


def test_oversize_bodies_are_refused_before_anything_else(client: TestClient) -> None:
    big = b'{"pad": "' + b"x" * MAX_BYTES + b'"}'
    declared = post(client, "jira", big, signed("jira", big))
    assert declared.status_code == 413
    assert declared.json() == {"detail": f"body over {MAX_BYTES} bytes", "status": 413}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        for _ in range(100):
            yield b" " * 1024

    streamed = client.post("/api/v1/webhooks/zendesk", content=chunks())
    assert streamed.status_code == 413
    at_limit = b" " * (MAX_BYTES - 2) + b"{}"
    assert post(client, "jira", at_limit, signed("jira", at_limit)).status_code == 400


def test_deliveries_that_are_no_ticket_change_are_acknowledged(
        client: TestClient, kafka_bootstrap: str, topic: str) -> None:
    for provider, name in (("jira", "jira_comment_created.json"),
                           ("servicenow", "servicenow_problem.json"),
                           ("zendesk", "zendesk_event_status_changed.json")):
        body = body_of(name)
        response = post(client, provider, body, signed(provider, body))
        assert (response.status_code, response.json()) == (
            202, {"status": "ignored", "key": None, "asset_id": None,
                  "reason": "not a ticket change"})
    assert on_topic(kafka_bootstrap, topic) == []


def test_a_delivery_in_flight_answers_409(client: TestClient, redis_client: redis.Redis,
                                          kafka_bootstrap: str, topic: str) -> None:
    """Another request holds the delivery (published, not yet acknowledged): the vendor is
    told to retry, and its retry after the first one finished is a duplicate."""
    delivery = str(uuid.uuid4())
    headers = {**signed("jira", JIRA), "X-Atlassian-Webhook-Identifier": delivery}
    mark = dedupe_key("jira", f"delivery:{delivery}")
    redis_client.set(mark, b"pending", ex=60)
    assert post(client, "jira", JIRA, headers).status_code == 409
    redis_client.set(mark, b"done", ex=60)
    assert post(client, "jira", JIRA, headers).json()["status"] == "duplicate"
    assert on_topic(kafka_bootstrap, topic) == []


def test_a_provider_without_secret_is_refused(monkeypatch: pytest.MonkeyPatch,
                                              client: TestClient) -> None:
    client.app.state.ticketing = None  # type: ignore[attr-defined]  # read the env again
    monkeypatch.delenv("BESSMON_WEBHOOK_SECRET_SERVICENOW")
    body = body_of("servicenow_incident_new.json")
    response = post(client, "servicenow", body, {"X-Bessmon-Token": ""})
    assert response.status_code == 403
    assert response.json() == {"detail": "servicenow webhooks are not enabled: "
                                         "BESSMON_WEBHOOK_SECRET_SERVICENOW is not set",
                               "status": 403}


def test_without_kafka_the_api_starts_and_deliveries_are_retried(
        webhook_env: None, monkeypatch: pytest.MonkeyPatch, redis_url: str,
        redis_client: redis.Redis, api_settings: Settings) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    for key in redis_client.scan_iter("bessmon:webhook:*"):
        redis_client.delete(key)
    settings = api_settings
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/health").status_code == 200
        response = post(client, "jira", JIRA, signed("jira", JIRA))
    assert response.status_code == 503
    assert response.json() == {"detail": "the ticket could not be published; retry later",
                               "status": 503}
    # Nothing remembered: the vendor's retry will be processed, not taken for a duplicate.
    assert list(redis_client.scan_iter("bessmon:webhook:*")) == []
