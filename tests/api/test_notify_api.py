"""Notifications through the API, on the real parts: the rules file edited by an admin
(validated as the notifier validates it, written atomically where the notifier reads it,
every change and every refusal in the audit log) and the delivery log read from a real
outbox file — scoped to the caller's sites, webhook URLs never shown whole, filtered and
paged newest first."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.notify.outbox import Outbox
from connectors.settings import Settings
from tests.api.accounts import auth

RULES = """\
channels:
  ops-mail: {type: email, to: [ops@example.test]}
  pager: {type: webhook, url: "https://pager.example.test/hook"}
rules:
  - name: majors
    when: {kind: alarm, severity_at_least: major}
    notify: [ops-mail, "user:engineer"]
  - name: criticals
    when: {kind: alarm, severity_at_least: critical}
    notify: [pager]
preferences:
  engineer: {email: engineer@example.test}
"""
UNKNOWN_CHANNEL = """\
channels:
  ops-mail: {type: email, to: [ops@example.test]}
rules:
  - name: majors
    when: {kind: alarm}
    notify: [ops-mail, nope]
"""
SECRET = "T0123/B0456/s3cr3t-w3bh00k-t0k3n"
SLACK_URL = f"https://hooks.slack.com/services/{SECRET}"
WEBHOOK_URL = "https://pager.example.test/hook?token=0ther-s3cret"


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


def rules_audit(client: TestClient, settings: Settings) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/audit?action=notify.rules.update", headers=auth(settings))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


# --- the rules file -------------------------------------------------------------------------


def test_no_rules_file_yet(client: TestClient, api_settings: Settings) -> None:
    answer = client.get("/api/v1/notify/rules", headers=auth(api_settings))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"path": str(api_settings.notify_rules_path), "yaml": "",
                             "rules": 0, "channels": 0, "updated_ms": None, "sha256": None,
                             "problem": None}


def test_an_admin_saves_rules_and_reads_them_back(client: TestClient,
                                                  api_settings: Settings) -> None:
    path = api_settings.notify_rules_path
    saved = client.put("/api/v1/notify/rules", json={"yaml": RULES}, headers=auth(api_settings))
    assert saved.status_code == 200, saved.text
    assert saved.json()["rules"] == 2 and saved.json()["channels"] == 2
    # On disk, whole, readable by its owner only (it holds addresses and webhook URLs);
    # no temporary file left beside it.
    assert path.read_text(encoding="utf-8") == RULES
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir() if "notify-rules" in p.name) == [
        path.name]
    again = client.get("/api/v1/notify/rules", headers=auth(api_settings)).json()
    assert again["yaml"] == RULES
    assert (again["rules"], again["channels"], again["problem"]) == (2, 2, None)
    assert again["updated_ms"] == os.stat(path).st_mtime_ns // 1_000_000

    # A second change: the audit names both texts by their hashes.
    changed = RULES.replace("severity_at_least: critical", "severity_at_least: major")
    assert client.put("/api/v1/notify/rules", json={"yaml": changed},
                      headers=auth(api_settings)).status_code == 200
    entries = rules_audit(client, api_settings)
    assert [(e["actor"], e["outcome"], e["target"]) for e in entries] == [
        ("admin", "ok", str(path)), ("admin", "ok", str(path))]
    first, second = (e["details"] for e in entries)
    assert first["old_sha256"] is None
    assert second["old_sha256"] == first["new_sha256"] == again["sha256"]
    assert second["new_sha256"] != first["new_sha256"]
    assert (second["rules"], second["channels"]) == (2, 2)
    assert path.read_text(encoding="utf-8") == changed


def test_a_rule_naming_an_unknown_channel_is_refused_with_its_line(
        client: TestClient, api_settings: Settings) -> None:
    path = api_settings.notify_rules_path
    assert client.put("/api/v1/notify/rules", json={"yaml": RULES},
                      headers=auth(api_settings)).status_code == 200
    refused = client.put("/api/v1/notify/rules", json={"yaml": UNKNOWN_CHANNEL},
                         headers=auth(api_settings))
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert f"{path}:6: rules[0].notify[1]: unknown channel 'nope'" in body["detail"]
    assert body["errors"][0]["line"] == "6"
    assert body["errors"][0]["key"] == "rules[0].notify[1]"
    assert body["errors"][0]["problem"].startswith("unknown channel 'nope'")
    assert path.read_text(encoding="utf-8") == RULES  # the good file stays
    refusal = rules_audit(client, api_settings)[-1]
    assert (refusal["actor"], refusal["outcome"]) == ("admin", "refused")
    assert "unknown channel 'nope'" in refusal["details"]["why"]
    assert refusal["details"]["old_sha256"] == rules_audit(client, api_settings)[0][
        "details"]["new_sha256"]


def test_broken_yaml_is_refused_with_its_line(client: TestClient,
                                              api_settings: Settings) -> None:
    broken = "channels:\n  ops-mail: {type: email, to: [ops@example.test]\nrules: []\n"
    for method, url in (("PUT", "/api/v1/notify/rules"),
                        ("POST", "/api/v1/notify/rules/validate")):
        answer = client.request(method, url, json={"yaml": broken}, headers=auth(api_settings))
        assert answer.status_code == 422, answer.text
        assert f"{api_settings.notify_rules_path}:" in answer.json()["detail"]
        assert answer.json()["errors"][0]["line"].isdigit()
    assert not api_settings.notify_rules_path.exists()
    # A key of the wrong kind, named with its line.
    wrong = "channels:\n  ops-mail: {type: fax, to: [ops@example.test]}\n"
    answer = client.post("/api/v1/notify/rules/validate", json={"yaml": wrong},
                         headers=auth(api_settings))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["line"] == "2"
    assert answer.json()["errors"][0]["key"] == "channels.ops-mail.type"
    # Only the PUT is audited (validate changes nothing).
    assert [e["outcome"] for e in rules_audit(client, api_settings)] == ["refused"]


def test_users_are_checked_against_the_users_file(client: TestClient,
                                                  api_settings: Settings) -> None:
    text = RULES.replace('"user:engineer"', '"user:nobody-here"')
    answer = client.post("/api/v1/notify/rules/validate", json={"yaml": text},
                         headers=auth(api_settings))
    assert answer.status_code == 422
    assert "unknown user 'nobody-here'" in answer.json()["detail"]


def test_validate_checks_without_saving(client: TestClient, api_settings: Settings) -> None:
    answer = client.post("/api/v1/notify/rules/validate", json={"yaml": RULES},
                         headers=auth(api_settings))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "rules": 2, "channels": 2, "groups": 0,
                             "rotations": 0}
    assert not api_settings.notify_rules_path.exists()
    assert rules_audit(client, api_settings) == []


def test_a_file_broken_by_hand_is_shown_with_its_problem(client: TestClient,
                                                         api_settings: Settings) -> None:
    path = api_settings.notify_rules_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(UNKNOWN_CHANNEL, encoding="utf-8")
    answer = client.get("/api/v1/notify/rules", headers=auth(api_settings)).json()
    assert answer["yaml"] == UNKNOWN_CHANNEL
    assert "unknown channel 'nope'" in answer["problem"]


def test_a_file_that_cannot_be_written_is_said_and_audited(api_settings: Settings) -> None:
    blocker = api_settings.run_dir / "not-a-directory"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the rules' directory should be")
    settings = api_settings.model_copy(update={"notify_rules": blocker / "rules.yaml"})
    with TestClient(create_app(settings)) as client:
        answer = client.put("/api/v1/notify/rules", json={"yaml": RULES},
                            headers=auth(settings))
        assert answer.status_code == 500
        assert answer.json()["detail"].startswith(f"could not write {blocker / 'rules.yaml'}")
        entry = rules_audit(client, settings)[-1]
    assert (entry["outcome"], entry["details"]["old_sha256"]) == ("failed", None)
    assert blocker.read_text() == "a file where the rules' directory should be"


@pytest.mark.parametrize("role", ["engineer", "viewer", "service_manager", "contract_manager"])
def test_only_admins_touch_the_rules(client: TestClient, api_settings: Settings,
                                     role: str) -> None:
    for method, url in (("GET", "/api/v1/notify/rules"), ("PUT", "/api/v1/notify/rules"),
                        ("POST", "/api/v1/notify/rules/validate")):
        answer = client.request(method, url, json={"yaml": RULES},
                                headers=auth(api_settings, role))
        assert (answer.status_code, answer.json()["detail"]) == (
            403, f"role {role} may not notify.manage")
    assert not api_settings.notify_rules_path.exists()


def test_nobody_unauthenticated(client: TestClient, api_settings: Settings) -> None:
    for method, url in (("GET", "/api/v1/notify/rules"), ("PUT", "/api/v1/notify/rules"),
                        ("POST", "/api/v1/notify/rules/validate"),
                        ("GET", "/api/v1/notify/deliveries")):
        answer = client.request(method, url, json={"yaml": RULES})
        assert (answer.status_code, answer.json()["detail"]) == (401, "missing bearer token")
    assert not api_settings.notify_rules_path.exists()


# --- the delivery log -----------------------------------------------------------------------

# id → (created_ms, channel type, address, sites, final state)
SEEDED: dict[str, tuple[int, str, str, tuple[str, ...], str]] = {
    "nordvik-mail": (1_000, "email", "ops@nordvik.example", ("nordvik",), "sent"),
    "elbe-slack": (2_000, "slack", SLACK_URL, ("elbe",), "failed"),
    "nordvik-hook": (3_000, "webhook", WEBHOOK_URL, ("nordvik",), "pending"),
    "fleet-digest": (4_000, "email", "noc@example.test", (), "sent"),
    "both-mail": (5_000, "email", "boss@example.test", ("nordvik", "elbe"), "sent"),
    "elbe-mail": (5_000, "email", "ops@elbe.example", ("elbe",), "failed"),
    "nordvik-late": (6_000, "email", "ops@nordvik.example", ("nordvik",), "failed"),
}


def seed(settings: Settings) -> None:
    outbox = Outbox(settings.notify_db_path)
    try:
        for key, (created, kind, address, sites, state) in SEEDED.items():
            # Real ids are the routing dedup keys, which end in the address (URL included).
            mid = f"{key}:raised:{kind}:{address}"
            assert outbox.enqueue(mid, channel=f"{kind}-channel", channel_type=kind,
                                  address=address, subject=f"[bessmon] {key}",
                                  body="…", now_ms=created, recipient=f"team-{key}",
                                  sites=sites, severity="critical", event_ids=[key])
            if state != "pending":
                outbox.claim(created, 10, 60_000)
            if state == "sent":
                outbox.sent(mid, created + 10, detail="250 2.0.0 queued")
            elif state == "failed":
                # A sender's error that quotes the address (the log must not show a URL).
                outbox.failed(mid, created + 10, f"POST {address}: 404 Not Found")
    finally:
        outbox.close()


def keys(items: list[dict[str, Any]]) -> list[str]:
    return [i["subject"].removeprefix("[bessmon] ") for i in items]


def get(client: TestClient, settings: Settings, user: str = "admin",
        query: str = "") -> Any:
    answer = client.get(f"/api/v1/notify/deliveries{query}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_without_an_outbox_the_log_is_empty(client: TestClient,
                                            api_settings: Settings) -> None:
    assert get(client, api_settings) == {"items": [], "next_cursor": None}
    assert not api_settings.notify_db_path.exists()  # reading made no file


def test_the_log_newest_first_with_secrets_redacted(client: TestClient,
                                                    api_settings: Settings) -> None:
    seed(api_settings)
    page = get(client, api_settings)
    assert keys(page["items"]) == ["nordvik-late", "both-mail", "elbe-mail", "fleet-digest",
                                   "nordvik-hook", "elbe-slack", "nordvik-mail"]
    assert page["next_cursor"] is None
    text = json.dumps(page)
    for secret in (SECRET, "s3cr3t", "0ther-s3cret", "token="):
        assert secret not in text, secret
    by_key = {k: i for k, i in zip(keys(page["items"]), page["items"], strict=True)}
    slack = by_key["elbe-slack"]
    assert slack["address"].startswith("https://hooks.slack.com/services/")
    assert slack["address"].endswith("…")
    assert slack["state"] == "failed" and "404 Not Found" in slack["last_error"]
    assert slack["id"].startswith("sha256:")
    assert by_key["nordvik-hook"]["address"] == "https://pager.example.test/hook"
    mail = by_key["nordvik-mail"]
    assert mail["id"] == "nordvik-mail:raised:email:ops@nordvik.example"
    assert {k: mail[k] for k in ("created_ms", "sent_ms", "channel", "channel_type",
                                 "recipient", "address", "state", "attempts", "detail",
                                 "sites", "severity", "last_error")} == {
        "created_ms": 1_000, "sent_ms": 1_010, "channel": "email-channel",
        "channel_type": "email", "recipient": "team-nordvik-mail",
        "address": "ops@nordvik.example", "state": "sent", "attempts": 1,
        "detail": "250 2.0.0 queued", "sites": ["nordvik"], "severity": "critical",
        "last_error": None}
    assert by_key["both-mail"]["sites"] == ["nordvik", "elbe"]
    assert by_key["fleet-digest"]["sites"] == []


@pytest.mark.parametrize(("user", "expected"), [
    ("nordvik-viewer", ["nordvik-late", "nordvik-hook", "nordvik-mail"]),
    ("de-engineer", ["elbe-mail", "elbe-slack"]),
    ("nordvik-in-de", []),
    ("viewer", ["nordvik-late", "both-mail", "elbe-mail", "fleet-digest", "nordvik-hook",
                "elbe-slack", "nordvik-mail"]),  # scope "*": the whole fleet, fleet-wide too
])
def test_a_scoped_caller_sees_only_their_sites(client: TestClient, api_settings: Settings,
                                               user: str, expected: list[str]) -> None:
    seed(api_settings)
    assert keys(get(client, api_settings, user)["items"]) == expected


def test_filters(client: TestClient, api_settings: Settings) -> None:
    seed(api_settings)
    assert keys(get(client, api_settings, query="?state=failed")["items"]) == [
        "nordvik-late", "elbe-mail", "elbe-slack"]
    assert keys(get(client, api_settings, query="?site=elbe")["items"]) == [
        "both-mail", "elbe-mail", "elbe-slack"]
    assert keys(get(client, api_settings, query="?site=elbe&state=sent")["items"]) == [
        "both-mail"]
    assert keys(get(client, api_settings, query="?since_ms=5000")["items"]) == [
        "nordvik-late", "both-mail", "elbe-mail"]
    assert keys(get(client, api_settings, "nordvik-viewer",
                    "?state=failed&since_ms=2000")["items"]) == ["nordvik-late"]


@pytest.mark.parametrize(("query", "status", "loc"), [
    ("?state=lost", 422, "query.state"),
    ("?limit=0", 422, "query.limit"),
    ("?limit=501", 422, "query.limit"),
    ("?since_ms=-1", 422, "query.since_ms"),
    ("?since_ms=99999999999999999", 422, "query.since_ms"),
    ("?cursor=bm9wZQ", 422, "query.cursor"),
    ("?site=", 422, "query.site"),
])
def test_bad_parameters_are_named(client: TestClient, api_settings: Settings, query: str,
                                  status: int, loc: str) -> None:
    answer = client.get(f"/api/v1/notify/deliveries{query}", headers=auth(api_settings))
    assert answer.status_code == status, answer.text
    assert answer.json()["errors"][0]["loc"] == loc


def test_a_site_out_of_scope_is_404(client: TestClient, api_settings: Settings) -> None:
    seed(api_settings)
    for user, site in (("nordvik-viewer", "elbe"), ("admin", "atlantis")):
        answer = client.get(f"/api/v1/notify/deliveries?site={site}",
                            headers=auth(api_settings, user))
        assert (answer.status_code, answer.json()["detail"]) == (404, f"no site {site!r}")


@pytest.mark.parametrize(("user", "limit"), [("admin", 2), ("admin", 1), ("admin", 3),
                                             ("nordvik-viewer", 1), ("de-engineer", 1)])
def test_pages_walk_the_whole_log_once(client: TestClient, api_settings: Settings,
                                       user: str, limit: int) -> None:
    """Two messages share a millisecond (both-mail, elbe-mail): a page boundary between
    them neither repeats nor loses one."""
    seed(api_settings)
    whole = keys(get(client, api_settings, user)["items"])
    walked: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = get(client, api_settings, user,
                   f"?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= limit
        walked += keys(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 20
    assert walked == whole


def test_a_message_enqueued_between_pages_does_not_shift_them(
        client: TestClient, api_settings: Settings) -> None:
    seed(api_settings)
    first = get(client, api_settings, query="?limit=3")
    outbox = Outbox(api_settings.notify_db_path)
    try:
        outbox.enqueue("newest", channel="c", channel_type="email", address="x@example.test",
                       subject="[bessmon] newest", body="…", now_ms=9_000, sites=["mesa"])
    finally:
        outbox.close()
    second = get(client, api_settings, query=f"?limit=3&cursor={first['next_cursor']}")
    assert keys(first["items"]) + keys(second["items"]) == [
        "nordvik-late", "both-mail", "elbe-mail", "fleet-digest", "nordvik-hook", "elbe-slack"]


# --- users' own preferences -----------------------------------------------------------------

PREFS_URL = "/api/v1/notify/preferences"
DEFAULTS = {"severities": ["critical", "major", "minor", "warning"],
            "channels": ["email", "webhook", "slack", "teams"], "quiet_hours": None,
            "tz": "UTC", "email": None, "source": "default"}
MINE = {"severities": ["critical", "major"], "channels": ["email"],
        "quiet_hours": "22:00-07:00", "tz": "Europe/Stockholm",
        "email": "me@home.example.test"}


def prefs_audit(client: TestClient, settings: Settings, action: str) -> list[dict[str, Any]]:
    answer = client.get(f"/api/v1/audit?action={action}", headers=auth(settings))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_without_preferences_of_their_own_a_user_gets_the_defaults(
        client: TestClient, api_settings: Settings) -> None:
    answer = client.get(PREFS_URL, headers=auth(api_settings, "viewer"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == DEFAULTS
    assert not api_settings.notify_preferences_path.exists()  # reading made no file


def test_the_rules_file_entry_is_shown_until_the_user_saves_their_own(
        client: TestClient, api_settings: Settings) -> None:
    assert client.put("/api/v1/notify/rules", json={"yaml": RULES},
                      headers=auth(api_settings)).status_code == 200
    answer = client.get(PREFS_URL, headers=auth(api_settings, "engineer")).json()
    assert answer == {**DEFAULTS, "email": "engineer@example.test", "source": "rules"}
    # Others have no entry in the rules file: the defaults.
    assert client.get(PREFS_URL, headers=auth(api_settings, "viewer")).json() == DEFAULTS


def test_a_user_saves_their_own_and_reads_them_back(client: TestClient,
                                                    api_settings: Settings) -> None:
    path = api_settings.notify_preferences_path
    saved = client.put(PREFS_URL, json=MINE, headers=auth(api_settings, "engineer"))
    assert saved.status_code == 200, saved.text
    assert saved.json() == {**MINE, "source": "own"}
    assert client.get(PREFS_URL, headers=auth(api_settings, "engineer")).json() == {
        **MINE, "source": "own"}
    # On disk as the notifier reads it, readable by its owner only, no temporary file left.
    from contracts.notify import load_preferences

    own = load_preferences(path)
    assert list(own) == ["engineer"]
    assert own["engineer"].model_dump(mode="json") == MINE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()
                  if "notify-preferences" in p.name and not p.name.endswith(".lock")) == [
        path.name]
    # A field left out is its default (PUT replaces the whole entry).
    again = client.put(PREFS_URL, json={"severities": ["critical"]},
                       headers=auth(api_settings, "engineer"))
    assert again.json() == {**DEFAULTS, "severities": ["critical"], "source": "own"}
    entries = prefs_audit(client, api_settings, "notify.preferences.update")
    assert [(e["actor"], e["outcome"], e["target"]) for e in entries] == [
        ("engineer", "ok", str(path)), ("engineer", "ok", str(path))]
    assert entries[0]["details"] == MINE
    assert entries[1]["details"] == {**{k: v for k, v in DEFAULTS.items() if k != "source"},
                                     "severities": ["critical"]}


def test_another_users_entry_is_untouched(client: TestClient, api_settings: Settings) -> None:
    path = api_settings.notify_preferences_path
    assert client.put(PREFS_URL, json=MINE, headers=auth(api_settings, "engineer")
                      ).status_code == 200
    viewer = {"severities": ["critical"], "channels": ["email", "slack"]}
    assert client.put(PREFS_URL, json=viewer, headers=auth(api_settings, "viewer")
                      ).status_code == 200
    from contracts.notify import load_preferences

    own = load_preferences(path)
    assert own["engineer"].model_dump(mode="json") == MINE
    assert own["viewer"].severities == ("critical",)
    # The viewer resets theirs: the engineer's stays.
    reset = client.delete(PREFS_URL, headers=auth(api_settings, "viewer"))
    assert reset.status_code == 200, reset.text
    assert reset.json() == DEFAULTS
    own = load_preferences(path)
    assert list(own) == ["engineer"]
    assert own["engineer"].model_dump(mode="json") == MINE
    # Nobody can name another user: the body has no username, and a key for one is refused.
    other = client.put(PREFS_URL, json={**viewer, "username": "engineer"},
                       headers=auth(api_settings, "viewer"))
    assert other.status_code == 422 and other.json()["errors"][0]["loc"] == "body.username"
    assert load_preferences(path)["engineer"].model_dump(mode="json") == MINE


def test_reset_goes_back_to_the_rules_file_and_is_audited(client: TestClient,
                                                          api_settings: Settings) -> None:
    assert client.put("/api/v1/notify/rules", json={"yaml": RULES},
                      headers=auth(api_settings)).status_code == 200
    assert client.put(PREFS_URL, json=MINE, headers=auth(api_settings, "engineer")
                      ).status_code == 200
    reset = client.delete(PREFS_URL, headers=auth(api_settings, "engineer"))
    assert reset.status_code == 200, reset.text
    assert reset.json() == {**DEFAULTS, "email": "engineer@example.test", "source": "rules"}
    assert client.get(PREFS_URL, headers=auth(api_settings, "engineer")).json()[
        "source"] == "rules"
    # Again: nothing of their own left, nothing written, still audited.
    assert client.delete(PREFS_URL, headers=auth(api_settings, "engineer")).status_code == 200
    entries = prefs_audit(client, api_settings, "notify.preferences.reset")
    assert [(e["actor"], e["outcome"]) for e in entries] == [("engineer", "ok")] * 2
    assert entries[0]["details"] == {"removed": MINE}
    assert entries[1]["details"] == {"removed": None}


@pytest.mark.parametrize(("body", "loc", "problem"), [
    ({"severities": ["loud"]}, "body.severities.0", "must be 'critical'"),
    ({"severities": []}, "body.severities", "must not be empty"),
    ({"channels": []}, "body.channels", "must not be empty"),
    ({"channels": ["sms"]}, "body.channels.0", "must be 'email'"),
    ({"tz": "Mars/Olympus_Mons"}, "body.tz", "unknown IANA time zone 'Mars/Olympus_Mons'"),
    ({"tz": "Etc"}, "body.tz", "unknown IANA time zone 'Etc'"),  # a directory of zones
    ({"quiet_hours": "22-07"}, "body.quiet_hours", "not a time window written HH:MM-HH:MM"),
    ({"quiet_hours": "25:00-07:00"}, "body.quiet_hours", "not a time window"),
    ({"quiet_hours": "07:00-07:00"}, "body.quiet_hours", "starts where it ends"),
    ({"email": "not-an-address"}, "body.email", "is not an email address"),
    ({"email": ""}, "body.email", "is not an email address"),
    ({"source": "own"}, "body.source", "extra"),
])
def test_bad_preferences_are_refused_naming_the_field(
        client: TestClient, api_settings: Settings, body: dict[str, Any], loc: str,
        problem: str) -> None:
    answer = client.put(PREFS_URL, json=body, headers=auth(api_settings, "engineer"))
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["loc"] == loc
    assert problem.lower() in error["msg"].lower(), error
    assert not api_settings.notify_preferences_path.exists()
    assert prefs_audit(client, api_settings, "notify.preferences.update") == []


def test_an_api_key_has_no_preferences(client: TestClient, api_settings: Settings) -> None:
    made = client.post("/api/v1/api-keys", headers=auth(api_settings), json={
        "name": "engineer", "role": "engineer", "customers": ["*"], "regions": ["*"]})
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    for method in ("GET", "PUT", "DELETE"):
        answer = client.request(method, PREFS_URL, headers=key,
                                json=MINE if method == "PUT" else None)
        assert answer.status_code == 403, answer.text
        # Named like a user, but a key: it does not speak for the user.
        assert answer.json()["detail"] == ("an API key has no notification preferences: "
                                           "they are a signed-in user's own")
    assert not api_settings.notify_preferences_path.exists()
    assert prefs_audit(client, api_settings, "notify.preferences.update") == []


def test_preferences_need_a_credential(client: TestClient, api_settings: Settings) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = client.request(method, PREFS_URL, json=MINE if method == "PUT" else None)
        assert (answer.status_code, answer.json()["detail"]) == (401, "missing bearer token")
    assert not api_settings.notify_preferences_path.exists()


def test_a_preferences_file_broken_by_hand_is_not_overwritten(
        client: TestClient, api_settings: Settings) -> None:
    path = api_settings.notify_preferences_path
    path.parent.mkdir(parents=True, exist_ok=True)
    broken = "preferences:\n  viewer: {severities: [critical]}\n  admin:\n    tz: Nowhere/Land\n"
    path.write_text(broken, encoding="utf-8")
    for method in ("GET", "PUT", "DELETE"):
        answer = client.request(method, PREFS_URL, headers=auth(api_settings, "engineer"),
                                json=MINE if method == "PUT" else None)
        assert answer.status_code == 409, answer.text
        assert f"{path}:4: preferences.admin.tz: unknown IANA time zone" in \
            answer.json()["detail"]
    assert path.read_text(encoding="utf-8") == broken  # the viewer's entry is not lost
    refused = prefs_audit(client, api_settings, "notify.preferences.update")
    assert [(e["actor"], e["outcome"]) for e in refused] == [("engineer", "refused")]


def test_concurrent_saves_lose_nobody(client: TestClient, api_settings: Settings) -> None:
    """Read-modify-write under a lock: users saving at the same time all end up in the
    file."""
    from concurrent.futures import ThreadPoolExecutor

    from contracts.notify import load_preferences
    from tests.api.accounts import USERS

    headers = {name: auth(api_settings, name) for name in USERS}

    def save(name: str) -> int:
        answer = client.put(PREFS_URL, json={"severities": ["critical"],
                                             "email": f"{name}@example.test"},
                            headers=headers[name])
        return int(answer.status_code)

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(save, USERS)) == {200}
    own = load_preferences(api_settings.notify_preferences_path)
    assert sorted(own) == sorted(USERS)
    assert {name: p.email for name, p in own.items()} == {
        name: f"{name}@example.test" for name in USERS}
