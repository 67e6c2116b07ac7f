"""Acknowledging an alarm from the e-mail's signed one-time link, end to end through the app
on a real Redis: an active alarm written the way the flows write it, links made as the
notifier makes them (`ack_url` with `ack_secret(settings)`, the key file of the run dir).

GET shows the alarm and a button and never acknowledges; POST acknowledges once (as the
user, or as `email-link:<channel>`), and refuses — with an HTML page of the right status,
and an audit entry — a used, expired, tampered or foreign link, a user disabled, without
the permission or without the site in scope, and an alarm cleared or already
acknowledged."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.auth.users import set_disabled
from api.context import ApiContext
from api.log_redaction import redact
from api.main import create_app
from connectors.ack_secret import ack_secret
from connectors.audit import AuditEntry, AuditLog
from connectors.redis_store import alarm_handling_key
from connectors.settings import Settings
from contracts.ack_links import ack_url, make_token
from contracts.alarms import AlarmHandling
from contracts.events import BreachEvent
from tests.api import hot_state
from tests.api.accounts import auth

BASE = "http://testserver/"
ACK = "/api/v1/alarms/ack"


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture
def alarm(api_settings: Settings) -> BreachEvent:
    """An active critical alarm at Nordvik, as the flows' Redis sink writes it."""
    raised = hot_state.breach("nordvik", "nordvik-u01", severity="critical")
    hot_state.write(api_settings.require_redis(), raised)
    return raised


def link(settings: Settings, breach: BreachEvent, recipient: str = "user:engineer",
         **kw: Any) -> str:
    """The token of a link as the notifier makes it."""
    url = ack_url(BASE, ack_secret(settings), site_id=breach.site_id,
                  alarm_id=breach.breach_id, recipient=recipient,
                  now_ms=kw.pop("now_ms", hot_state.now_ms()), **kw)
    assert url.startswith(f"{BASE}api/v1/alarms/ack?token=")
    return url.split("token=", 1)[1]


def handling(settings: Settings, breach: BreachEvent) -> AlarmHandling | None:
    sync: redis.Redis = redis.Redis.from_url(settings.require_redis())
    try:
        raw = sync.hget(alarm_handling_key(breach.site_id), breach.breach_id)
    finally:
        sync.close()
    return AlarmHandling.model_validate_json(raw) if raw else None  # type: ignore[arg-type]


def audited(client: TestClient) -> list[AuditEntry]:
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    return AuditLog(ctx.store).entries(action="alarm.acknowledge", limit=1000)


def text_of(page: httpx.Response) -> str:
    """The page's words, tags and style dropped, entities read (what a reader sees)."""
    assert page.headers["content-type"].startswith("text/html")
    body = re.sub(r"<style>.*?</style>", " ", page.text, flags=re.DOTALL)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def post(client: TestClient, token: str) -> httpx.Response:
    answer: httpx.Response = client.post(ACK, data={"token": token})
    return answer


def test_get_shows_the_alarm_and_does_not_acknowledge(client: TestClient,
                                                      api_settings: Settings,
                                                      alarm: BreachEvent) -> None:
    token = link(api_settings, alarm)
    for _ in range(3):  # a mail scanner, a link preview, the reader: none acknowledges
        page = client.get(ACK, params={"token": token})
        assert page.status_code == 200, page.text
    words = text_of(page)
    for shown in ("Acknowledge this alarm?", "nordvik-u01", "critical", "as engineer",
                  "cell temperature 52.0 °C over 45.0 °C", alarm.breach_id):
        assert shown in words, shown
    assert '<form method="post" action="ack">' in page.text
    assert f'<input type="hidden" name="token" value="{token}">' in page.text
    assert "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert handling(api_settings, alarm) is None
    assert audited(client) == []
    # The form's relative action is this very route.
    assert httpx.URL(f"{BASE}api/v1/alarms/ack?token=x").join("ack").path == ACK


def test_post_acknowledges_once(client: TestClient, api_settings: Settings,
                                alarm: BreachEvent) -> None:
    token = link(api_settings, alarm)
    page = post(client, token)
    assert page.status_code == 200, page.text
    words = text_of(page)
    assert "Acknowledged: nordvik-u01" in words and "by engineer" in words
    assert "escalation stops" in words
    stored = handling(api_settings, alarm)
    assert stored is not None and stored.acknowledged_by == "engineer"
    assert stored.comment == "acknowledged from the e-mail link"
    [ok] = audited(client)
    assert (ok.actor, ok.outcome, ok.target) == ("engineer", "ok", alarm.breach_id)
    assert ok.details["via"] == "email-link" and ok.details["recipient"] == "user:engineer"
    assert token not in str(ok.details)

    again = post(client, token)
    assert again.status_code == 410
    assert "This link was already used." in text_of(again)
    shown = client.get(ACK, params={"token": token})
    assert shown.status_code == 410 and "already used" in text_of(shown)
    assert handling(api_settings, alarm) == stored  # the first acknowledgement stands
    refused = audited(client)[1]
    assert (refused.actor, refused.outcome) == ("engineer", "refused")
    assert refused.details["why"] == "this link was already used"


def test_a_channel_acknowledges_as_the_email_link_and_json_is_accepted(
        client: TestClient, api_settings: Settings, alarm: BreachEvent) -> None:
    token = link(api_settings, alarm, "channel:ops-mail")
    assert "as email-link:channel:ops-mail" in text_of(client.get(ACK, params={"token": token}))
    page = client.post(ACK, json={"token": token})
    assert page.status_code == 200, page.text
    stored = handling(api_settings, alarm)
    assert stored is not None and stored.acknowledged_by == "email-link:channel:ops-mail"
    [entry] = audited(client)
    assert (entry.actor, entry.outcome) == ("email-link:channel:ops-mail", "ok")
    assert entry.details["recipient"] == "channel:ops-mail"


def test_a_bare_name_of_a_user_is_that_user(client: TestClient, api_settings: Settings,
                                            alarm: BreachEvent) -> None:
    assert post(client, link(api_settings, alarm, "nordvik-manager")).status_code == 200
    stored = handling(api_settings, alarm)
    assert stored is not None and stored.acknowledged_by == "nordvik-manager"


def test_concurrent_posts_acknowledge_exactly_once(client: TestClient, api_settings: Settings,
                                                   alarm: BreachEvent) -> None:
    token = link(api_settings, alarm)
    with ThreadPoolExecutor(6) as pool:
        codes = sorted(r.status_code for r in pool.map(lambda _: post(client, token),
                                                       range(6)))
    assert codes[0] == 200 and codes.count(200) == 1
    assert set(codes[1:]) <= {409, 410}, codes
    assert [e.outcome for e in audited(client)].count("ok") == 1


def test_an_expired_link_is_gone(client: TestClient, api_settings: Settings,
                                 alarm: BreachEvent) -> None:
    token = link(api_settings, alarm, now_ms=hot_state.now_ms() - 3_600_000, ttl_ms=60_000)
    shown = client.get(ACK, params={"token": token})
    assert shown.status_code == 410 and "This link has expired." in text_of(shown)
    assert "<form" not in shown.text
    page = post(client, token)
    assert page.status_code == 410
    assert handling(api_settings, alarm) is None
    [entry] = audited(client)
    assert (entry.outcome, entry.target, entry.details["why"]) == (
        "refused", alarm.breach_id, "this link has expired")


@pytest.mark.parametrize("change", ["character", "other-key", "garbage", "missing"])
def test_a_tampered_or_foreign_link_is_refused(client: TestClient, api_settings: Settings,
                                               alarm: BreachEvent, change: str) -> None:
    token = link(api_settings, alarm)
    if change == "character":
        i = len(token) // 3
        bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
    elif change == "other-key":
        bad = make_token(b"not-this-deployment-key-0123456789", site_id=alarm.site_id,
                         alarm_id=alarm.breach_id, recipient="user:admin",
                         expires_ms=hot_state.now_ms() + 60_000, nonce="n")
    elif change == "garbage":
        bad = "<script>alert(1)</script>"
    else:
        bad = ""
    shown = client.get(ACK, params={"token": bad})
    assert shown.status_code == 400, shown.text
    assert "<script>" not in shown.text and "<form" not in shown.text
    page = post(client, bad)
    assert page.status_code == 400
    assert handling(api_settings, alarm) is None
    [entry] = audited(client)
    assert (entry.actor, entry.outcome, entry.target) == ("email-link", "refused", None)
    assert entry.details["recipient"] is None
    assert entry.details["why"].startswith("bad signature" if change in ("character",
                                                                         "other-key")
                                           else "malformed")
    assert post(client, token).status_code == 200  # the real link still works


@pytest.mark.parametrize(("recipient", "why"), [
    ("user:de-engineer", "user 'de-engineer' may not see site 'nordvik'"),
    ("user:viewer", "role viewer may not alarms.acknowledge"),
    ("user:contract_manager", "role contract_manager may not alarms.acknowledge"),
    ("user:ghost", "user 'ghost' no longer exists"),
])
def test_a_recipient_without_the_right_is_forbidden(client: TestClient, api_settings: Settings,
                                                    alarm: BreachEvent, recipient: str,
                                                    why: str) -> None:
    token = link(api_settings, alarm, recipient)
    shown = client.get(ACK, params={"token": token})
    assert shown.status_code == 403 and why in text_of(shown).lower()
    assert alarm.message not in shown.text  # nothing of the alarm to who may not see it
    page = post(client, token)
    assert page.status_code == 403 and why in text_of(page).lower()
    assert handling(api_settings, alarm) is None
    [entry] = audited(client)
    assert (entry.actor, entry.outcome, entry.details["why"]) == (
        recipient.removeprefix("user:"), "refused", why)


def test_a_disabled_user_is_forbidden(api_settings: Settings, alarm: BreachEvent,
                                      tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    shutil.copy(api_settings.users_path, users)
    assert set_disabled(users, "engineer", True)
    settings_ = api_settings.model_copy(update={"users_file": users})
    token = link(settings_, alarm)
    with TestClient(create_app(settings_)) as client:
        page = post(client, token)
        assert page.status_code == 403
        assert "User 'engineer' is disabled." in text_of(page)
        assert handling(settings_, alarm) is None
        [entry] = audited(client)
        assert (entry.actor, entry.outcome) == ("engineer", "refused")
        set_disabled(users, "engineer", False)  # enabled again: the link was not used up
        assert post(client, token).status_code == 200


def test_a_cleared_alarm_is_not_found(client: TestClient, api_settings: Settings,
                                      alarm: BreachEvent) -> None:
    token = link(api_settings, alarm)
    hot_state.write(api_settings.require_redis(), alarm.model_copy(
        update={"state": "cleared", "ts_ms": hot_state.now_ms()}))
    shown = client.get(ACK, params={"token": token})
    assert shown.status_code == 404 and "no longer active" in text_of(shown)
    page = post(client, token)
    assert page.status_code == 404 and "no longer active" in text_of(page)
    assert handling(api_settings, alarm) is None
    [entry] = audited(client)
    assert entry.outcome == "refused" and "no longer active" in entry.details["why"]


def test_an_alarm_already_acknowledged_says_by_whom(client: TestClient,
                                                    api_settings: Settings,
                                                    alarm: BreachEvent) -> None:
    done = client.post(f"/api/v1/alarms/{alarm.breach_id}/acknowledge",
                       json={"comment": "on it"}, headers=auth(api_settings, "admin"))
    assert done.status_code == 200, done.text
    token = link(api_settings, alarm)
    shown = client.get(ACK, params={"token": token})
    assert shown.status_code == 409 and "already acknowledged by admin" in text_of(shown)
    assert "<form" not in shown.text
    page = post(client, token)
    assert page.status_code == 409 and "already acknowledged by admin" in text_of(page)
    stored = handling(api_settings, alarm)
    assert stored is not None and stored.acknowledged_by == "admin"
    entries = audited(client)
    assert [(e.actor, e.outcome) for e in entries] == [("admin", "ok"),
                                                       ("engineer", "refused")]


def test_everything_on_the_page_is_escaped(client: TestClient, api_settings: Settings) -> None:
    breach = hot_state.breach("nordvik", "nordvik-u02", severity="major")
    breach = breach.model_copy(update={"message": '<img src=x onerror="alert(1)"> & co'})
    hot_state.write(api_settings.require_redis(), breach)
    page = client.get(ACK, params={"token": link(api_settings, breach, "channel:<b>ops</b>")})
    assert page.status_code == 200
    assert "<img" not in page.text and "<b>" not in page.text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co" in page.text
    assert "email-link:channel:&lt;b&gt;ops&lt;/b&gt;" in page.text


def test_a_bearer_credential_neither_helps_nor_is_needed(client: TestClient,
                                                         api_settings: Settings,
                                                         alarm: BreachEvent) -> None:
    admin = auth(api_settings, "admin")
    assert client.get(ACK, headers=admin).status_code == 400  # no link token: nothing
    assert client.post(ACK, data={"token": "x"}, headers=admin).status_code == 400
    assert handling(api_settings, alarm) is None


@pytest.mark.parametrize(("content", "kind", "code"), [
    (b"token=a&token=b", "application/x-www-form-urlencoded", 400),
    (b"\xff\xfe", "application/x-www-form-urlencoded", 400),
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'{"token": 5}', "application/json", 400),
    (b"[" * 100_000, "application/json", 400),
    (b"token=x", "text/plain", 415),
    (b"", "", 415),
])
def test_unreadable_bodies_are_refused(client: TestClient, content: bytes, kind: str,
                                       code: int) -> None:
    page = client.post(ACK, content=content, headers={"Content-Type": kind} if kind else {})
    assert page.status_code == code, page.text
    assert page.headers["content-type"].startswith("text/html")


def test_the_token_is_kept_out_of_access_logs(api_settings: Settings,
                                              alarm: BreachEvent) -> None:
    token = link(api_settings, alarm)
    line = f'127.0.0.1:5000 - "GET /api/v1/alarms/ack?token={token} HTTP/1.1" 200'
    assert token not in redact(line)
