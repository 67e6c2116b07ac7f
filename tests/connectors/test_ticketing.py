"""Ticketing integrations: each vendor's documented payloads normalize to the TicketEvent a
user expects (status tables, asset by field / label / CI table, times to the millisecond);
webhook signatures are checked; the REST clients search and open tickets.

The REST clients are tested against fake vendors that are real HTTP servers on loopback
(`http.server`, one thread each; tests/connectors/ticketing_fakes.py) speaking the vendors'
documented endpoints and JSON shapes, and refusing requests whose Authorization header is
not the configured credential — no mock of httpx: every request goes through the socket
like it would to the vendor."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.ticketing import jira, servicenow, zendesk
from connectors.ticketing.config import (
    Auth,
    CreateOptions,
    ProviderConfig,
    TicketingConfig,
    TicketingConfigError,
    TicketingSettings,
    load_ticketing_config,
)
from connectors.ticketing.mapping import DEFAULTS, AssetMapping
from connectors.ticketing.payload import InvalidPayload, UnmappedValue
from connectors.ticketing.rest import TicketingAuthError
from connectors.ticketing.signing import Unverified
from contracts.errors import InvalidInput
from contracts.events import TicketEvent, TicketRef
from tests.connectors.ticketing_fakes import (
    JIRA_TOKEN,
    SN_TOKEN,
    ZD_TOKEN,
    FakeJira,
    FakeServiceNow,
    FakeZendesk,
    basic,
    secrets_in,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ticketing"
SECRET = b"whsec-5f2b8c1e9a7d4e3b"

MAPPING_YAML = """\
jira:
  asset:
    field: customfield_10042
    label_prefix: "asset:"
    table: {"Nordvik Unit 3": nordvik-u03}
  statuses: {"Pending verification": in_progress}
servicenow:
  base_url: https://acme-energy.service-now.com
  asset:
    field: cmdb_ci
    table:
      3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1: nordvik-u01
      5e7d0c4a2f1b4e3d9c8b7a6f5e4d3c2b: mesa-u02
zendesk:
  asset: {field: "360012345678", label_prefix: "asset_"}
"""


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def ms(*parts: int, millis: int = 0) -> int:
    """UTC wall time → epoch ms, spelled out independently of the code under test."""
    return int(datetime(*parts, tzinfo=UTC).timestamp()) * 1000 + millis  # type: ignore[misc, arg-type]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TicketingConfig:
    path = tmp_path_factory.mktemp("ticketing") / "ticketing.yaml"
    path.write_text(MAPPING_YAML)
    return load_ticketing_config(path)


# -- payloads → TicketEvent ---------------------------------------------------------------

EXPECTED: list[tuple[str, str, bool, TicketEvent]] = [
    # Jira: asset by label (the default), times with +0100 offsets, browse URL from `self`.
    ("jira", "jira_issue_created.json", False, TicketEvent(
        provider="jira", ticket_id="BESS-17", asset_id="nordvik-u02", status="open",
        priority="High", category="Incident", opened_ms=ms(2026, 3, 14, 8, 12, 33, millis=123),
        updated_ms=ms(2026, 3, 14, 8, 12, 33, millis=456), resolved_ms=None,
        summary="Unit 2 PCS tripped on DC overvoltage",
        url="https://acme-energy.atlassian.net/browse/BESS-17")),
    # The configured custom field (an option, through the table) wins over the label.
    ("jira", "jira_issue_updated.json", True, TicketEvent(
        provider="jira", ticket_id="BESS-18", asset_id="nordvik-u03", status="in_progress",
        priority="Medium", category="Corrective maintenance",
        opened_ms=ms(2026, 3, 14, 7, 40, 2), updated_ms=ms(2026, 3, 14, 9, 5, 10, millis=789),
        summary="HVAC of unit 3 container alarms high temperature",
        url="https://acme-energy.atlassian.net/browse/BESS-18")),
    ("jira", "jira_issue_updated.json", False, TicketEvent(
        provider="jira", ticket_id="BESS-18", asset_id="nordvik-u02", status="in_progress",
        priority="Medium", category="Corrective maintenance",
        opened_ms=ms(2026, 3, 14, 7, 40, 2), updated_ms=ms(2026, 3, 14, 9, 5, 10, millis=789),
        summary="HVAC of unit 3 container alarms high temperature",
        url="https://acme-energy.atlassian.net/browse/BESS-18")),
    ("jira", "jira_issue_resolved.json", True, TicketEvent(
        provider="jira", ticket_id="BESS-17", asset_id="nordvik-u02", status="resolved",
        priority="High", category="Incident", opened_ms=ms(2026, 3, 14, 8, 12, 33, millis=123),
        updated_ms=ms(2026, 3, 15, 11, 27, 1),
        resolved_ms=ms(2026, 3, 15, 11, 26, 58, millis=512),
        summary="Unit 2 PCS tripped on DC overvoltage",
        url="https://acme-energy.atlassian.net/browse/BESS-17")),
    # ServiceNow: CI sys_id through the table, UTC "YYYY-MM-DD HH:MM:SS", the form's URL.
    ("servicenow", "servicenow_incident_new.json", True, TicketEvent(
        provider="servicenow", ticket_id="INC0010023", asset_id="nordvik-u01", status="open",
        priority="2", category="hardware", opened_ms=ms(2026, 3, 14, 6, 55, 12),
        updated_ms=ms(2026, 3, 14, 6, 55, 12),
        summary="Battery unit 1 offline: BMS communication lost",
        url="https://acme-energy.service-now.com/incident.do?"
            "sys_id=9d385017c611228701d22104cc95c371")),
    # Without a table the CI's display value is the asset id.
    ("servicenow", "servicenow_incident_new.json", False, TicketEvent(
        provider="servicenow", ticket_id="INC0010023", asset_id="NORDVIK-BESS-U01",
        status="open", priority="2", category="hardware",
        opened_ms=ms(2026, 3, 14, 6, 55, 12), updated_ms=ms(2026, 3, 14, 6, 55, 12),
        summary="Battery unit 1 offline: BMS communication lost")),
    # On Hold (3) is still being worked; the CI as a bare sys_id.
    ("servicenow", "servicenow_incident_onhold.json", True, TicketEvent(
        provider="servicenow", ticket_id="INC0010031", asset_id="mesa-u02",
        status="in_progress", priority="3", category="hardware",
        opened_ms=ms(2026, 3, 12, 17, 20), updated_ms=ms(2026, 3, 14, 15, 2, 45),
        summary="Mesa unit 2 derated: waiting for replacement cooling fan",
        url="https://acme-energy.service-now.com/incident.do?"
            "sys_id=a1b2c3d4e5f60718293a4b5c6d7e8f90")),
    # Table API with sysparm_display_value=all: the stored (UTC) values count, not the
    # display values in the user's zone; a CI missing from the table by its name.
    ("servicenow", "servicenow_incident_resolved.json", True, TicketEvent(
        provider="servicenow", ticket_id="INC0010027", asset_id="elbe-u04", status="resolved",
        priority="1", category="hardware", opened_ms=ms(2026, 3, 13, 22, 48, 5),
        updated_ms=ms(2026, 3, 15, 9, 41, 30), resolved_ms=ms(2026, 3, 15, 9, 40),
        summary="Elbe unit 4 tripped: transformer protection relay",
        url="https://acme-energy.service-now.com/incident.do?"
            "sys_id=46f0987d2f0a1010a1b2c3d4e5f60718")),
    # Zendesk API shape: asset by tag (the custom field is empty), the agent's page.
    ("zendesk", "zendesk_ticket_created.json", True, TicketEvent(
        provider="zendesk", ticket_id="35436", asset_id="mesa-u04", status="open",
        priority="urgent", category="incident", opened_ms=ms(2026, 3, 14, 7, 30),
        updated_ms=ms(2026, 3, 14, 7, 30), summary="Mesa unit 4 not responding to dispatch",
        url="https://acme-energy.zendesk.com/agent/tickets/35436")),
    # A trigger's rendering: tags as text, capitalized status; the custom field wins.
    ("zendesk", "zendesk_trigger_pending.json", True, TicketEvent(
        provider="zendesk", ticket_id="35437", asset_id="elbe-u03", status="in_progress",
        priority="High", category="Problem", opened_ms=ms(2026, 3, 13, 16, 2, 11),
        updated_ms=ms(2026, 3, 14, 9, 45, 59), summary="Elbe unit 3: coolant leak at rack 5",
        url="https://acme-energy.zendesk.com/agent/tickets/35437")),
    ("zendesk", "zendesk_trigger_pending.json", False, TicketEvent(
        provider="zendesk", ticket_id="35437", asset_id="elbe-u02", status="in_progress",
        priority="High", category="Problem", opened_ms=ms(2026, 3, 13, 16, 2, 11),
        updated_ms=ms(2026, 3, 14, 9, 45, 59), summary="Elbe unit 3: coolant leak at rack 5",
        url="https://acme-energy.zendesk.com/agent/tickets/35437")),
    ("zendesk", "zendesk_ticket_solved.json", True, TicketEvent(
        provider="zendesk", ticket_id="35436", asset_id="mesa-u04", status="resolved",
        priority="urgent", category="incident", opened_ms=ms(2026, 3, 14, 7, 30),
        updated_ms=ms(2026, 3, 14, 13, 12, 40), summary="Mesa unit 4 not responding to dispatch",
        url="https://acme-energy.zendesk.com/agent/tickets/35436")),
]
NORMALIZE = {"jira": jira.normalize, "servicenow": servicenow.normalize,
             "zendesk": zendesk.normalize}


@pytest.mark.parametrize(("provider", "name", "configured", "expected"), EXPECTED,
                         ids=[f"{e[1]}-{'configured' if e[2] else 'default'}" for e in EXPECTED])
def test_vendor_payloads_normalize(config: TicketingConfig, provider: str, name: str,
                                   configured: bool, expected: TicketEvent) -> None:
    mapping = config.provider(provider) if configured else DEFAULTS[provider]  # type: ignore[arg-type]
    assert NORMALIZE[provider](fixture(name), mapping) == expected


@pytest.mark.parametrize(("provider", "name"), [
    ("jira", "jira_comment_created.json"),
    ("servicenow", "servicenow_problem.json"),
    ("zendesk", "zendesk_event_status_changed.json"),
])
def test_events_that_are_no_ticket_change_give_nothing(provider: str, name: str) -> None:
    assert NORMALIZE[provider](fixture(name), DEFAULTS[provider]) is None


def _edit(name: str, change: Callable[[Any], None]) -> Any:
    payload = fixture(name)
    change(payload)
    return payload


@pytest.mark.parametrize(("provider", "payload", "error", "message"), [
    ("jira", [1, 2], InvalidPayload, "a Jira webhook is a JSON object"),
    ("jira", {"issue": {}}, InvalidPayload, "webhookEvent is missing"),
    ("jira", _edit("jira_issue_created.json", lambda p: p["issue"].pop("key")),
     InvalidPayload, "issue.key is missing"),
    ("jira", _edit("jira_issue_created.json",
                   lambda p: p["issue"]["fields"].update(created="2026-03-14T09:12:33")),
     InvalidPayload, "issue.fields.created has no UTC offset"),
    ("jira", _edit("jira_issue_created.json",
                   lambda p: p["issue"]["fields"].update(updated="yesterday")),
     InvalidPayload, "issue.fields.updated is not an ISO 8601 time"),
    ("jira", _edit("jira_issue_created.json",
                   lambda p: p["issue"]["fields"]["status"]["statusCategory"].update(key="x")),
     UnmappedValue, "jira status 'To Do' / 'x' is not mapped"),
    ("servicenow", _edit("servicenow_incident_new.json",
                         lambda p: p.update(opened_at="14.03.2026 07:55")),
     InvalidPayload, "opened_at is not a ServiceNow UTC time"),
    ("servicenow", _edit("servicenow_incident_new.json", lambda p: p.update(state="4")),
     UnmappedValue, "servicenow status '4' is not mapped"),
    ("servicenow", _edit("servicenow_incident_new.json", lambda p: p.pop("number")),
     InvalidPayload, "number is missing"),
    ("zendesk", {"tickets": []}, InvalidPayload, "ticket is missing"),
    ("zendesk", _edit("zendesk_ticket_created.json",
                      lambda p: p["ticket"].update(custom_fields="asset")),
     InvalidPayload, "ticket.custom_fields must be a list"),
    ("zendesk", _edit("zendesk_ticket_created.json",
                      lambda p: p["ticket"].update(subject=["a"])),
     InvalidPayload, "ticket.subject must be a string"),
])
def test_malformed_payloads_are_refused_naming_the_field(
        provider: str, payload: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as refused:
        NORMALIZE[provider](payload, DEFAULTS[provider])
    assert message in str(refused.value)


@pytest.mark.parametrize(("provider", "names", "category", "status"), [
    ("jira", ["To Do"], "new", "open"),
    ("jira", ["In Review"], "indeterminate", "in_progress"),
    ("jira", ["Won't Fix"], "done", "resolved"),
    ("jira", ["Pending Verification"], "done", "in_progress"),  # a status name wins
    ("servicenow", ["1"], None, "open"),
    ("servicenow", ["2"], None, "in_progress"),
    ("servicenow", ["3"], None, "in_progress"),
    ("servicenow", ["6"], None, "resolved"),
    ("servicenow", ["7"], None, "resolved"),
    ("servicenow", ["8"], None, "resolved"),
    ("servicenow", [None, "On Hold"], None, "in_progress"),
    ("zendesk", ["new"], None, "open"),
    ("zendesk", ["open"], None, "in_progress"),
    ("zendesk", ["pending"], None, "in_progress"),
    ("zendesk", ["hold"], None, "in_progress"),
    ("zendesk", ["Solved"], None, "resolved"),
    ("zendesk", ["closed"], None, "resolved"),
])
def test_status_tables(config: TicketingConfig, provider: str, names: list[str | None],
                       category: str | None, status: str) -> None:
    mapping = config.provider(provider)  # type: ignore[arg-type]
    assert mapping.status(provider, names, category) == status


@pytest.mark.parametrize(("rule", "field", "labels", "asset"), [
    (AssetMapping(label_prefix="asset:"), [], ["pcs", "asset:elbe-u01", "asset:elbe-u02"],
     "elbe-u01"),
    (AssetMapping(label_prefix="asset:"), [], ["asset:", "assets:elbe-u01"], None),
    (AssetMapping(field="cf", label_prefix="asset:"), ["mesa-u01"], ["asset:mesa-u02"],
     "mesa-u01"),
    (AssetMapping(field="cf", label_prefix="asset:"), [" "], ["asset:mesa-u02"], "mesa-u02"),
    (AssetMapping(field="ci", table={"CI-7": "mesa-u03"}), ["CI-7"], [], "mesa-u03"),
    (AssetMapping(field="ci", table={"CI-7": "mesa-u03"}), ["CI-8"], [], "CI-8"),
    (AssetMapping(field="ci", table={"CI-7": "mesa-u03"}, table_only=True), ["CI-8"], [], None),
    # A CI reference: its name first, then its sys_id; the table's entry wins either way.
    (AssetMapping(field="ci", table={"sysid": "mesa-u03"}), ["Mesa Unit 3", "sysid"], [],
     "mesa-u03"),
    (AssetMapping(field="ci", table={"sysid": "mesa-u03"}), ["mesa-u04", "other"], [],
     "mesa-u04"),
    (AssetMapping(field="ci", label_prefix="a:", table={"x": "mesa-u01"}, table_only=True),
     ["unknown"], ["a:x"], "mesa-u01"),
])
def test_asset_by_field_label_or_table(rule: AssetMapping, field: list[str],
                                       labels: list[str], asset: str | None) -> None:
    assert rule.resolve(field, labels) == asset


@pytest.mark.parametrize(("text", "message"), [
    ("jira:\n  statuses: {Waiting: opened}\n",
     ":2: jira.statuses.Waiting: must be 'open', 'in_progress' or 'resolved'"),
    ("zendesk:\n  asset: {table: {a: b}}\n",
     ":2: zendesk.asset: name a `field` or a `label_prefix`"),
    ("servicenow:\n  auth: {username: svc-bessmon}\n",
     ":2: servicenow.auth: basic auth needs `password_env`"),
    ("jira:\n  timezone: Mars/Olympus\n",
     ":2: jira.timezone: unknown IANA time zone 'Mars/Olympus'"),
    ("freshdesk: {}\n", ":1: freshdesk: extra inputs are not permitted"),
])
def test_invalid_mapping_files_name_line_and_key(tmp_path: Path, text: str,
                                                 message: str) -> None:
    path = tmp_path / "ticketing.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as refused:
        load_ticketing_config(path)
    assert str(refused.value).startswith(f"{path}{message}")


def test_production_refuses_placeholder_webhook_secrets(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("BESSMON_ENVIRONMENT", "production")
    monkeypatch.setenv("BESSMON_WEBHOOK_SECRET_ZENDESK", "changeme")
    with pytest.raises(ValueError, match="BESSMON_WEBHOOK_SECRET_ZENDESK must be a real"):
        TicketingSettings()
    monkeypatch.setenv("BESSMON_WEBHOOK_SECRET_ZENDESK", "x" * 32)
    assert TicketingSettings().secret("zendesk") == b"x" * 32
    assert TicketingSettings().secret("jira") is None


# -- webhook signatures -------------------------------------------------------------------

BODY = (FIXTURES / "jira_issue_created.json").read_bytes()


def jira_signature(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_jira_signature() -> None:
    jira.verify_signature(BODY, jira_signature(BODY), SECRET)
    jira.verify_request({"x-hub-signature": jira_signature(BODY)}, BODY, SECRET, 0.0)


@pytest.mark.parametrize(("signature", "message"), [
    (None, "X-Hub-Signature is missing"),
    ("", "X-Hub-Signature is missing"),
    (jira_signature(BODY, b"another secret"), "does not match"),
    (jira_signature(BODY + b" "), "does not match"),
    (jira_signature(BODY).replace("sha256=", "sha1="), "must be sha256=<hex digest>"),
    ("sha256=not-hex", "not hexadecimal"),
])
def test_jira_signature_refused(signature: str | None, message: str) -> None:
    with pytest.raises(Unverified, match=message):
        jira.verify_signature(BODY, signature, SECRET)


def servicenow_signature(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def test_servicenow_signature_or_token() -> None:
    servicenow.verify(BODY, servicenow_signature(BODY), None, SECRET)
    servicenow.verify(BODY, None, SECRET.decode(), SECRET)
    servicenow.verify_request({"x-bessmon-token": SECRET.decode()}, BODY, SECRET, 0.0)


@pytest.mark.parametrize(("signature", "token", "message"), [
    (None, None, "neither X-Bessmon-Signature nor X-Bessmon-Token"),
    (None, "whsec-guess", "X-Bessmon-Token is wrong"),
    (servicenow_signature(BODY, b"other"), None, "X-Bessmon-Signature does not match"),
    # A signature present is checked on its own: a right token does not rescue a wrong one.
    (servicenow_signature(BODY + b"x"), SECRET.decode(), "X-Bessmon-Signature does not match"),
    ("sha256=%%%", None, "not base64"),
])
def test_servicenow_refused(signature: str | None, token: str | None, message: str) -> None:
    with pytest.raises(Unverified, match=message):
        servicenow.verify(BODY, signature, token, SECRET)


NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def zendesk_headers(body: bytes, sent: datetime = NOW, secret: bytes = SECRET
                    ) -> dict[str, str]:
    timestamp = sent.strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()
    return {"x-zendesk-webhook-signature": base64.b64encode(digest).decode(),
            "x-zendesk-webhook-signature-timestamp": timestamp}


def test_zendesk_signature() -> None:
    zendesk.verify_request(zendesk_headers(BODY), BODY, SECRET, NOW.timestamp())
    # Within five minutes of our clock, either way.
    zendesk.verify_request(zendesk_headers(BODY, NOW - timedelta(seconds=299)), BODY, SECRET,
                           NOW.timestamp())


@pytest.mark.parametrize(("headers", "message"), [
    ({}, "are required"),
    ({"x-zendesk-webhook-signature": zendesk_headers(BODY)["x-zendesk-webhook-signature"]},
     "are required"),
    (zendesk_headers(BODY, secret=b"other"), "does not match"),
    (zendesk_headers(BODY + b"\n"), "does not match"),
    # A captured delivery replayed later: its signature is right, its timestamp too old.
    (zendesk_headers(BODY, NOW - timedelta(minutes=5, seconds=1)), "more than 300 s away"),
    (zendesk_headers(BODY, NOW + timedelta(minutes=6)), "more than 300 s away"),
    ({**zendesk_headers(BODY), "x-zendesk-webhook-signature-timestamp": "14/03/2026 09:00"},
     "no time"),
])
def test_zendesk_signature_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(Unverified, match=message):
        zendesk.verify_request(headers, BODY, SECRET, NOW.timestamp())


def test_zendesk_signature_covers_the_timestamp() -> None:
    """Moving a valid signature to a fresh timestamp (to dodge the age check) breaks it."""
    old = zendesk_headers(BODY, NOW - timedelta(hours=1))
    forged = {**old, "x-zendesk-webhook-signature-timestamp": "2026-03-14T09:00:00Z"}
    with pytest.raises(Unverified, match="does not match"):
        zendesk.verify_request(forged, BODY, SECRET, NOW.timestamp())


# -- REST clients against local vendor servers --------------------------------------------

# Jira ----------------------------------------------------------------------------------

@pytest.fixture
def fake_jira() -> Iterator[FakeJira]:
    fake = FakeJira()
    with fake.vendor:
        yield fake


def jira_client(fake: FakeJira, token: str = JIRA_TOKEN, page_size: int = 100
                ) -> jira.JiraClient:
    config = TicketingConfig(jira=ProviderConfig(
        base_url=fake.vendor.url, timezone="Europe/Stockholm",
        auth=Auth(username="noc@acme.example", password_env="JIRA_API_TOKEN"),
        create=CreateOptions(project="BESS", issue_type="Incident",
                             priorities={"critical": "Highest"}))).provider("jira")
    return jira.JiraClient(config, environ={"JIRA_API_TOKEN": token}, page_size=page_size)


def test_jira_search_pages_through_recent_issues(fake_jira: FakeJira,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    base = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
    fake_jira.add("BESS-1", base - timedelta(hours=1), ["asset:elbe-u01"])
    fake_jira.add("BESS-2", base + timedelta(seconds=30), ["asset:elbe-u02"])
    fake_jira.add("BESS-3", base + timedelta(minutes=30), ["asset:elbe-u03"],
                  ("In Progress", "indeterminate"))
    fake_jira.add("BESS-4", base + timedelta(minutes=40), [], ("Weird", "unknown"))
    fake_jira.add("BESS-5", base + timedelta(hours=1), ["asset:elbe-u05"], ("Done", "done"))
    caplog.set_level(logging.DEBUG)
    with jira_client(fake_jira, page_size=2) as client:
        poll = client.search_updated(int((base + timedelta(seconds=45)).timestamp() * 1000))

    assert [(e.ticket_id, e.asset_id, e.status) for e in poll.events] == [
        ("BESS-3", "elbe-u03", "in_progress"), ("BESS-5", "elbe-u05", "resolved")]
    assert [(r.ticket_id, r.reason) for r in poll.rejected] == [
        ("BESS-4", "jira status 'Weird' / 'unknown' is not mapped (add it under "
                   "`jira.statuses` in the ticketing configuration)")]
    searches = [c for c in fake_jira.vendor.calls if c.path.endswith("/search/jql")]
    # 09:00:45 UTC is 10:00 in the API user's zone; JQL reads minutes in that zone.
    assert {c.query["jql"] for c in searches} == {'updated >= "2026-03-14 10:00" ORDER BY '
                                                  'updated ASC'}
    assert [c.query.get("nextPageToken") for c in searches] == [None, "2"]
    assert "customfield" not in searches[0].query["fields"]
    assert "resolutiondate" in searches[0].query["fields"]
    assert secrets_in(caplog.text, JIRA_TOKEN,
                      basic("noc@acme.example", JIRA_TOKEN)[6:]) == []


def test_jira_open_ticket_names_the_asset_and_is_found_again(fake_jira: FakeJira) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    with jira_client(fake_jira) as client:
        ref = client.open_ticket("nordvik-u04", "Nordvik unit 4 unavailable for 2 h",
                                 "Unit 4 has been unavailable since 06:00.\n\nLD risk: watch.",
                                 "critical")
        found = client.search_updated(int(before.timestamp() * 1000)).events

    assert ref == TicketRef(provider="jira", ticket_id="BESS-100", status="open",
                            summary="Nordvik unit 4 unavailable for 2 h",
                            url=f"{fake_jira.vendor.url}/browse/BESS-100")
    sent = fake_jira.vendor.calls[0]
    assert sent.method == "POST" and sent.body["fields"] == {
        "project": {"key": "BESS"}, "issuetype": {"name": "Incident"},
        "summary": "Nordvik unit 4 unavailable for 2 h",
        "description": {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Unit 4 has been unavailable since 06:00."}]},
            {"type": "paragraph", "content": [
                {"type": "text", "text": "LD risk: watch."}]}]},
        "labels": ["asset:nordvik-u04"], "priority": {"name": "Highest"}}
    assert [(e.ticket_id, e.asset_id, e.status) for e in found] == [
        ("BESS-100", "nordvik-u04", "open")]


def test_jira_wrong_or_missing_credentials(fake_jira: FakeJira) -> None:
    with jira_client(fake_jira, token="ATATT-revoked-token") as client, \
            pytest.raises(TicketingAuthError) as refused:
        client.search_updated(0)
    assert refused.value.status_code == 401
    assert "credentials were refused (401)" in str(refused.value)
    assert secrets_in(str(refused.value) + repr(client), "ATATT-revoked-token") == []
    config = TicketingConfig(jira=ProviderConfig(
        base_url=fake_jira.vendor.url,
        auth=Auth(username="noc@acme.example", password_env="JIRA_API_TOKEN"))
    ).provider("jira")
    with pytest.raises(TicketingConfigError, match="environment variable JIRA_API_TOKEN is "
                                                   "not set"):
        jira.JiraClient(config, environ={})


# ServiceNow ----------------------------------------------------------------------------

@pytest.fixture
def fake_servicenow() -> Iterator[FakeServiceNow]:
    fake = FakeServiceNow()
    with fake.vendor:
        yield fake


def servicenow_client(fake: FakeServiceNow, config: TicketingConfig, page_size: int = 100
                      ) -> servicenow.ServiceNowClient:
    own = config.servicenow.model_dump()
    own.update(base_url=fake.vendor.url, auth={"kind": "bearer", "token_env": "SN_TOKEN"},
               create={"category": "hardware", "priorities": {"major": "2"}})
    merged = TicketingConfig(servicenow=ProviderConfig.model_validate(own)
                             ).provider("servicenow")
    return servicenow.ServiceNowClient(merged, environ={"SN_TOKEN": SN_TOKEN},
                                       page_size=page_size)


def test_servicenow_search_and_open(fake_servicenow: FakeServiceNow,
                                    config: TicketingConfig) -> None:
    base = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
    fake_servicenow.add("INC0010001", base - timedelta(seconds=1),
                        "3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1")
    for i in range(3):
        fake_servicenow.add(f"INC001001{i}", base + timedelta(minutes=i),
                            "5e7d0c4a2f1b4e3d9c8b7a6f5e4d3c2b", state="3")
    with servicenow_client(fake_servicenow, config, page_size=2) as client:
        poll = client.search_updated(int(base.timestamp() * 1000))
        ref = client.open_ticket("nordvik-u01", "Nordvik unit 1 unavailable for 2 h",
                                 "Since 06:00 UTC.", "major")

    assert [(e.ticket_id, e.asset_id, e.status) for e in poll.events] == [
        ("INC0010010", "mesa-u02", "in_progress"), ("INC0010011", "mesa-u02", "in_progress"),
        ("INC0010012", "mesa-u02", "in_progress")]
    searches = [c for c in fake_servicenow.vendor.calls if c.method == "GET"]
    assert [c.query["sysparm_offset"] for c in searches] == ["0", "2"]
    assert searches[0].query["sysparm_query"] == \
        "sys_updated_on>=2026-03-14 09:00:00^ORDERBYsys_updated_on"
    created = fake_servicenow.vendor.calls[-1]
    assert created.body == {"short_description": "Nordvik unit 1 unavailable for 2 h",
                            "description": "Since 06:00 UTC.", "category": "hardware",
                            "cmdb_ci": "3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1",
                            "impact": "1", "urgency": "2"}
    record = fake_servicenow.records[-1]
    assert record["priority"] == "2"
    assert ref == TicketRef(provider="servicenow", ticket_id=record["number"], status="open",
                            summary="Nordvik unit 1 unavailable for 2 h",
                            url=f"{fake_servicenow.vendor.url}/incident.do?"
                                f"sys_id={record['sys_id']}")


def test_servicenow_refuses_a_priority_it_cannot_set(fake_servicenow: FakeServiceNow,
                                                     config: TicketingConfig) -> None:
    with servicenow_client(fake_servicenow, config) as client, \
            pytest.raises(TicketingConfigError, match="priority must be 1-5"):
        client.open_ticket("nordvik-u01", "x", "y", "urgent")
    assert fake_servicenow.vendor.calls == []


# Zendesk ---------------------------------------------------------------------------------

@pytest.fixture
def fake_zendesk() -> Iterator[FakeZendesk]:
    fake = FakeZendesk()
    with fake.vendor:
        yield fake


def test_zendesk_incremental_export_and_create(fake_zendesk: FakeZendesk,
                                               config: TicketingConfig) -> None:
    base = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
    fake_zendesk.add(base - timedelta(minutes=5), ["asset_mesa-u01"])
    fake_zendesk.add(base, ["asset_mesa-u02"], "pending")
    fake_zendesk.add(base + timedelta(minutes=1), ["bess"], "solved", custom="mesa-u03")
    fake_zendesk.add(base + timedelta(minutes=2), ["asset_mesa-u04"], "hold")
    own = config.zendesk.model_dump()
    own.update(base_url=fake_zendesk.vendor.url,
               auth={"username": "noc@acme.example", "password_env": "ZENDESK_API_TOKEN"},
               create={"priorities": {"critical": "urgent"}})
    merged = TicketingConfig(zendesk=ProviderConfig.model_validate(own)).provider("zendesk")
    with zendesk.ZendeskClient(merged, environ={"ZENDESK_API_TOKEN": ZD_TOKEN},
                               page_size=2) as client:
        poll = client.search_updated(int(base.timestamp() * 1000))
        ref = client.open_ticket("mesa-u05", "Mesa unit 5 unavailable", "Since 02:00.",
                                 "critical")

    assert [(e.ticket_id, e.asset_id, e.status) for e in poll.events] == [
        ("35501", "mesa-u02", "in_progress"), ("35502", "mesa-u03", "resolved"),
        ("35503", "mesa-u04", "in_progress")]
    exports = [c.query for c in fake_zendesk.vendor.calls if c.method == "GET"]
    assert exports[0] == {"start_time": str(int(base.timestamp())), "per_page": "2"}
    assert set(exports[1]) == {"cursor", "per_page"}
    sent = fake_zendesk.vendor.calls[-1].body["ticket"]
    assert sent == {"subject": "Mesa unit 5 unavailable", "comment": {"body": "Since 02:00."},
                    "tags": ["asset_mesa-u05"],
                    "custom_fields": [{"id": 360012345678, "value": "mesa-u05"}],
                    "priority": "urgent"}
    assert ref == TicketRef(provider="zendesk", ticket_id="35504", status="open",
                            summary="Mesa unit 5 unavailable",
                            url=f"{fake_zendesk.vendor.url}/agent/tickets/35504")


def test_zendesk_sends_the_token_as_email_slash_token(fake_zendesk: FakeZendesk) -> None:
    config = TicketingConfig(zendesk=ProviderConfig(
        base_url=fake_zendesk.vendor.url,
        auth=Auth(username_env="ZENDESK_EMAIL", password_env="ZENDESK_API_TOKEN"))
    ).provider("zendesk")
    environ = {"ZENDESK_EMAIL": "noc@acme.example", "ZENDESK_API_TOKEN": ZD_TOKEN}
    with zendesk.ZendeskClient(config, environ=environ) as client:
        assert client.search_updated(0).events == []
    wrong = {**environ, "ZENDESK_API_TOKEN": "zd-old-token"}
    with zendesk.ZendeskClient(config, environ=wrong) as client, \
            pytest.raises(TicketingAuthError):
        client.search_updated(0)
    assert fake_zendesk.vendor.calls[0].headers["authorization"] == \
        basic("noc@acme.example/token", ZD_TOKEN)
