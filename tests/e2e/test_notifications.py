"""A fault injected in the simulator arrives as an e-mail: a hot cell on a nordvik block →
the flows raise a critical breach → the notifier routes it by the rules → the outbox → a
real SMTP server (aiosmtpd). The mail names the asset, the cause, the time and links to the
site's dashboard page; a user whose scope does not hold the site never hears of it; an
unacknowledged critical alarm escalates to the next tier until acknowledged; the notifier
killed with SIGKILL and restarted loses nothing already in its outbox. A unit that trips
is an alarm too, mailed with a one-time link that acknowledges it; rules saved while the
notifier runs are taken at once.

Real parts (infra/rig.py): broker, Redis, simulator, Modbus connector, flows, notifier, API."""

from __future__ import annotations

import email
import email.policy
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from connectors.notify.outbox import Outbox
from connectors.redis_store import alarm_handling_key, alarms_key
from contracts.alarms import AlarmHandling
from contracts.events import BreachEvent
from infra.ports import free_port
from infra.rig import Rig

pytestmark = pytest.mark.e2e
RULES = """
channels:
  ops-mail: {type: email, to: [ops@example.test]}
  boss-mail: {type: email, to: [boss@example.test]}
rules:
  - name: criticals
    when: {kind: alarm, severity_at_least: critical, sites: [nordvik]}
    notify: [ops-mail]
    escalate:
      - {after_s: 3, notify: [boss-mail], repeat_s: 3}
  - name: majors
    when: {kind: alarm, severity_at_least: major}
    notify: [ops-mail]
  - name: nordvik-viewer
    when: {kind: alarm, severity_at_least: major}
    notify: ["user:viewer-nordvik"]
preferences:
  viewer-nordvik: {email: viewer@example.test}
"""


@dataclass
class Inbox:
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str, text: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.messages if address in rcpt and text in str(m["Subject"])]


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, smtp: tuple[Inbox, int]) -> Iterator[Rig]:
    run_dir = tmp_path_factory.mktemp("notify")
    rules = run_dir / "rules.yaml"
    rules.write_text(RULES)
    r = Rig.start(run_dir, parts=("connector", "flows", "notify", "api"), env={
        "BESSMON_SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}?starttls=0",
        "BESSMON_NOTIFY_RULES": str(rules)})
    yield r
    r.stop()


def until(what: str, check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.2)


def test_a_hot_cell_arrives_as_an_email_within_its_scope(rig: Rig,
                                                          smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    time.sleep(3)  # the flows have seen the fleet (a breach needs 5 s of hot samples anyway)
    rig.sim("POST", "/values", {"asset_id": "elbe-u02-i1-b2", "tag": "cell_temp_max_c",
                                "value": 58.0})
    rig.sim("POST", "/values", {"asset_id": "nordvik-u03-i1-b2", "tag": "cell_temp_max_c",
                                "value": 58.0})
    until("both critical alarms mailed to ops", lambda: inbox.to(
        "ops@example.test", "nordvik-u03-i1-b2") and inbox.to("ops@example.test",
                                                               "elbe-u02-i1-b2"))
    [mail] = [m for m in inbox.to("ops@example.test", "nordvik-u03-i1-b2")
              if "CRITICAL" in str(m["Subject"])]
    body = mail.get_content()
    assert "cell-temp-high" in body  # the cause
    assert "UTC" in body and "58" in body  # the time and the value
    assert "#/site/nordvik" in body  # the link to its dashboard page
    assert str(mail["Message-ID"]).endswith("@bessmon>")
    # The nordvik viewer hears of nordvik, never of elbe (another customer).
    until("the viewer's mail", lambda: inbox.to("viewer@example.test", "nordvik-u03-i1-b2"))
    time.sleep(2)
    assert not inbox.to("viewer@example.test", "elbe-u02")
    # Not acknowledged: escalated to the next tier, again and again — until acknowledged.
    until("escalated", lambda: len(inbox.to("boss@example.test", "ESCALATED")) >= 2)
    client = redis.Redis.from_url(rig.redis_service.address)
    [breach] = [b for raw in client.hvals(alarms_key("nordvik"))
                if (b := BreachEvent.model_validate_json(raw)).asset_id == "nordvik-u03-i1-b2"
                and b.severity == "critical"]
    client.hset(alarm_handling_key("nordvik"), breach.breach_id, AlarmHandling(
        breach_id=breach.breach_id, acknowledged_by="engineer",
        acknowledged_ms=int(time.time() * 1000)).model_dump_json())
    client.close()
    time.sleep(2)  # the notifier looks every second
    escalations = len(inbox.to("boss@example.test", "ESCALATED"))
    time.sleep(8)  # two more repeat periods: nothing more
    assert len(inbox.to("boss@example.test", "ESCALATED")) == escalations
    # Cleared when the cell cools: one more message each, never the same one twice.
    rig.sim("DELETE", "/values/nordvik-u03-i1-b2/cell_temp_max_c")
    until("the clearing", lambda: inbox.to("ops@example.test", "cleared: "))
    ids = [str(m["Message-ID"]) + ",".join(r) for r, m in inbox.messages]
    assert len(ids) == len(set(ids))


def test_a_killed_notifier_loses_nothing(rig: Rig, smtp: tuple[Inbox, int]) -> None:
    """Neither what was in its outbox nor an alarm raised while it was down: it reads the
    topics on from where its last committed messages were."""
    inbox, _ = smtp
    rig.kill("notify", signal.SIGKILL)
    outbox = Outbox(Path(rig.settings.notify_db_path))
    assert outbox.consumed(), "the notifier saved no place in the topics"
    outbox.enqueue("drill-1", channel="ops-mail", channel_type="email",
                   address="ops@example.test", subject="[bessmon] drill after a kill -9",
                   body="queued while the notifier was down", now_ms=int(time.time() * 1000))
    # An alarm while it is down: on the topic and in Redis, told to nobody yet.
    rig.sim("POST", "/values", {"asset_id": "elbe-u04-i1-b1", "tag": "cell_temp_max_c",
                                "value": 58.0})
    client = redis.Redis.from_url(rig.redis_service.address)
    until("the alarm raised meanwhile", lambda: any(
        BreachEvent.model_validate_json(raw).asset_id == "elbe-u04-i1-b1"
        for raw in client.hvals(alarms_key("elbe"))))
    client.close()
    assert not inbox.to("ops@example.test", "elbe-u04-i1-b1")
    rig.restart("notify")
    until("the queued message sent by the new notifier",
          lambda: inbox.to("ops@example.test", "drill after a kill -9"))
    until("the alarm raised while it was down, mailed when it is back",
          lambda: inbox.to("ops@example.test", "elbe-u04-i1-b1"))
    rig.sim("DELETE", "/values/elbe-u04-i1-b1/cell_temp_max_c")
    # … and recorded as sent (a moment after the server accepted it)
    until("the message marked sent", lambda: (m := outbox.get("drill-1")) is not None
          and m.state == "sent")


def test_a_unit_trip_is_mailed_with_a_link_that_acknowledges_it(
        rig: Rig, smtp: tuple[Inbox, int]) -> None:
    """The issue's own case: `bessmon sim fault nordvik-u02` turned the unit red and told
    nobody. Now the trip is an alarm (a major one by default) and the rules mail it — here
    through a rule saved while the notifier runs; the mail's link acknowledges it once."""
    inbox, _ = smtp
    rules = Path(rig.env["BESSMON_NOTIFY_RULES"])
    rules.write_text(RULES.replace("preferences:", """  - name: trips
    when: {kind: alarm, severity_at_least: major, sites: [nordvik]}
    notify: [trip-mail]
preferences:""").replace("channels:\n", "channels:\n  trip-mail: {type: email, "
                                        "to: [trips@example.test]}\n"))
    time.sleep(2.5)  # the notifier looks at the file every second
    rig.sim("POST", "/faults", {"asset_id": "nordvik-u02", "duration_s": 600})
    until("the trip mailed by the new rule",
          lambda: inbox.to("trips@example.test", "nordvik-u02: nordvik-u02 unavailable"))
    [mail] = inbox.to("trips@example.test", "nordvik-u02: nordvik-u02 unavailable")
    body = mail.get_content()
    assert "MAJOR" in str(mail["Subject"]) and "(fault)" in body and "UTC" in body
    assert "#/site/nordvik" in body
    link = re.search(r"Acknowledge: (\S+)", body)
    assert link is not None and link.group(1).startswith(rig.api_url)
    token = link.group(1).split("token=", 1)[1]
    # Opening the link shows the alarm and changes nothing (mail scanners open links).
    page = httpx.get(link.group(1), timeout=10)
    assert page.status_code == 200 and "nordvik-u02" in page.text
    client = redis.Redis.from_url(rig.redis_service.address)
    [breach] = [b for raw in client.hvals(alarms_key("nordvik"))
                if (b := BreachEvent.model_validate_json(raw)).asset_id == "nordvik-u02"
                and b.kind == "status"]
    assert client.hget(alarm_handling_key("nordvik"), breach.breach_id) is None
    done = httpx.post(f"{rig.api_url}/api/v1/alarms/ack", data={"token": token}, timeout=10)
    assert done.status_code == 200, done.text
    raw = client.hget(alarm_handling_key("nordvik"), breach.breach_id)
    assert raw is not None
    assert AlarmHandling.model_validate_json(raw).acknowledged_by == \
        "email-link:channel:trip-mail"
    again = httpx.post(f"{rig.api_url}/api/v1/alarms/ack", data={"token": token}, timeout=10)
    assert again.status_code == 410
    # The unit runs again: the alarm clears, and that is mailed too.
    rig.sim("DELETE", "/faults/nordvik-u02")
    until("the clearing mailed", lambda: inbox.to("trips@example.test", "cleared: "))
    until("the alarm gone", lambda: client.hget(alarms_key("nordvik"), breach.breach_id)
          is None)
    client.close()
