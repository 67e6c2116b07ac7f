"""The Notifications page in a real headless Chromium (Debian's) against the real API (under
uvicorn, with the built dashboard, a real Redis and a real outbox file): the delivery log
shows the seeded deliveries of the caller's sites — webhook URLs shortened, failures with
their error, filtered by state; an admin checks and saves the rules file, a broken file
refused with its line and key; a scoped viewer sees only their site and no editor.

Desktop notifications: a critical alarm that reaches the page over the live feed raises
one — once per alarm, not for the alarms already there when the page opened, not again
after the feed reconnects, and yes for one raised while it was away. Chromium headless
cannot show OS notifications, so `window.Notification` is replaced by a recording stub
(`page.add_init_script`): the one mock here, and it stands in for the operating system
only — the page's code, the API, Redis and the live feed are the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import BrowserContext, Page, expect

from connectors.notify.outbox import Outbox
from connectors.settings import Settings
from tests.api import hot_state
from tests.api.accounts import write_users
from tests.e2e.conftest import LIVE_MS, LiveServer, open_page

pytestmark = pytest.mark.e2e
SECRET = "T0123/B0456/s3cr3t-w3bh00k-t0k3n"
GOOD_RULES = """\
channels:
  ops-mail: {type: email, to: [ops@example.test]}
  pager: {type: webhook, url: "https://pager.example.test/hook"}
rules:
  - name: majors
    when: {kind: alarm, severity_at_least: major}
    notify: [ops-mail]
  - name: criticals
    when: {kind: alarm, severity_at_least: critical}
    notify: [pager]
"""
BROKEN_RULES = """\
channels:
  ops-mail: {type: email, to: [ops@example.test]}
rules:
  - name: majors
    when: {kind: alarm}
    notify: [ops-mail, nope]
"""
# Stands in for the OS's notifications: records each one, permission granted when asked.
NOTIFICATION_STUB = """
window.__notifications = [];
window.__permissionAsked = 0;
class RecordingNotification {
  constructor(title, options) {
    this.title = title;
    this.body = (options || {}).body;
    this.tag = (options || {}).tag;
    this.onclick = null;
    this.closed = false;
    window.__notifications.push(this);
  }
  close() { this.closed = true; }
  static async requestPermission() {
    window.__permissionAsked += 1;
    RecordingNotification.permission = "granted";
    return "granted";
  }
}
RecordingNotification.permission = "default";
window.Notification = RecordingNotification;
"""


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("accounts")
    settings = Settings(users_file=base / "users.yaml", jwt_key_file=base / "jwt.pem",
                        run_dir=base)
    write_users(settings)
    return settings.users_path, settings.jwt_key_path


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, users: tuple[Path, Path]) -> Settings:
    client: redis.Redis = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("bessmon:*"):
        client.delete(key)
    client.close()
    return Settings(REDIS_URL=redis_url, run_dir=tmp_path / "run", users_file=users[0],
                    jwt_key_file=users[1])


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    """A server per test (conftest's is per module): each test has settings of its own."""
    running = LiveServer(settings)
    yield running
    running.stop()


def seed(settings: Settings) -> None:
    outbox = Outbox(settings.notify_db_path)
    try:
        now = hot_state.now_ms()
        for i, (key, kind, address, sites, state) in enumerate((
                ("nordvik-mail", "email", "ops@nordvik.example", ["nordvik"], "sent"),
                ("elbe-slack", "slack", f"https://hooks.slack.com/services/{SECRET}", ["elbe"],
                 "failed"))):
            mid = f"{key}:raised:{kind}:{address}"
            outbox.enqueue(mid, channel=f"{kind}-channel", channel_type=kind, address=address,
                           subject=f"[bessmon] CRITICAL {key}", body="…", now_ms=now + i,
                           recipient=f"team-{key}", sites=sites, severity="critical")
            outbox.claim(now + i, 10, 60_000)
            if state == "sent":
                outbox.sent(mid, now + i, "250 queued")
            else:
                outbox.failed(mid, now + i, f"POST {address}: 404 Not Found")
    finally:
        outbox.close()


def test_the_log_and_the_rules_editor(server: LiveServer, settings: Settings,
                                      page: Page, context: BrowserContext) -> None:
    seed(settings)
    open_page(page, server, settings, "admin", "#/notifications")
    rows = page.locator("table.deliveries tr.delivery")
    expect(rows).to_have_count(2, timeout=LIVE_MS)
    expect(rows.locator(".subject")).to_have_text(["[bessmon] CRITICAL elbe-slack",
                                                   "[bessmon] CRITICAL nordvik-mail"])
    slack = rows.nth(0)
    expect(slack).to_have_attribute("data-state", "failed")
    expect(slack.locator(".address")).to_have_text("https://hooks.slack.com/services/T0123/B045…")
    expect(slack.locator(".error")).to_contain_text("404 Not Found")
    expect(rows.nth(1).locator(".delivery-state")).to_have_text("sent")
    expect(rows.nth(1).locator(".sites a")).to_have_attribute("href", "#/site/nordvik")
    assert "s3cr3t" not in page.content()
    page.select_option("select.delivery-state-filter", "failed")
    expect(rows).to_have_count(1)
    expect(rows.locator(".subject")).to_have_text("[bessmon] CRITICAL elbe-slack")

    # The rules: none yet; a broken file is refused with its line and key, and not saved.
    editor = page.locator("textarea.rules-yaml")
    expect(page.locator(".rules-about")).to_contain_text("no file yet")
    result = page.locator(".rules-result")
    editor.fill(BROKEN_RULES)
    page.click("button.validate")
    expect(result).to_have_attribute("data-outcome", "error")
    expect(result).to_contain_text(":6: rules[0].notify[1]: unknown channel 'nope'")
    page.click("button.save")
    expect(result).to_have_attribute("data-outcome", "error")
    expect(result).to_contain_text("rules[0].notify[1]")
    assert not settings.notify_rules_path.exists()
    editor.fill(GOOD_RULES)
    page.click("button.validate")
    expect(result).to_have_text("Valid: 2 rules, 2 channels (not saved yet).")
    assert not settings.notify_rules_path.exists()
    page.click("button.save")
    expect(result).to_contain_text("Saved: 2 rules, 2 channels")
    expect(result).to_have_attribute("data-outcome", "ok")
    assert settings.notify_rules_path.read_text(encoding="utf-8") == GOOD_RULES
    expect(page.locator(".rules-about")).to_contain_text("2 rules, 2 channels")

    # A viewer of Nordvik: Nordvik's message only, and no editor.
    other = context.new_page()
    open_page(other, server, settings, "nordvik-viewer", "#/notifications")
    theirs = other.locator("table.deliveries tr.delivery")
    expect(theirs).to_have_count(1, timeout=LIVE_MS)
    expect(theirs.locator(".subject")).to_have_text("[bessmon] CRITICAL nordvik-mail")
    expect(other.locator("textarea.rules-yaml")).to_have_count(0)
    other.close()


def notifications(page: Page) -> list[dict[str, str]]:
    out: list[dict[str, str]] = page.evaluate(
        "window.__notifications.map(n => ({title: n.title, body: n.body, tag: n.tag}))")
    return out


def test_a_new_critical_alarm_raises_one_desktop_notification(
        server: LiveServer, settings: Settings, page: Page, context: BrowserContext) -> None:
    url = settings.require_redis()
    already = hot_state.breach("nordvik", "nordvik-u01", severity="critical")
    hot_state.write(url, already)  # there before the page opens: the banner's, no pop-up
    page.add_init_script(NOTIFICATION_STUB)
    open_page(page, server, settings, "engineer", "#/notifications")
    button = page.locator("button.desktop-alerts")
    expect(button).to_have_text("Desktop alerts: enable")
    button.click()
    expect(button).to_have_text("Desktop alerts: on (turn off)")
    assert page.evaluate("window.__permissionAsked") == 1
    expect(page.locator("#critical-banner")).to_contain_text("nordvik-u01", timeout=LIVE_MS)

    hot = hot_state.breach("nordvik", "nordvik-u01-i1-b3", severity="critical")
    major = hot_state.breach("elbe", "elbe-u01", severity="major")
    hot_state.write(url, major, hot)
    page.wait_for_function("() => window.__notifications.length >= 1", timeout=LIVE_MS)
    assert notifications(page) == [{"title": "CRITICAL — nordvik-u01-i1-b3",
                                    "body": hot.message, "tag": hot.breach_id}]

    # The feed drops; meanwhile another critical alarm is raised. Back online, the resync
    # brings every alarm again: only the one raised meanwhile is new.
    context.set_offline(True)
    try:
        expect(page.locator("#connection")).to_have_text("reconnecting…", timeout=10_000)
        meanwhile = hot_state.breach("elbe", "elbe-u02", severity="critical")
        hot_state.write(url, meanwhile)
    finally:
        context.set_offline(False)
    expect(page.locator("#connection")).to_have_text("live", timeout=30_000)
    page.wait_for_function("() => window.__notifications.length >= 2", timeout=LIVE_MS)
    # A last one after the resync: when it is there, everything before it has been judged.
    last = hot_state.breach("mesa", "mesa-u01", severity="critical")
    hot_state.write(url, last)
    page.wait_for_function("() => window.__notifications.length >= 3", timeout=LIVE_MS)
    assert [n["tag"] for n in notifications(page)] == [
        hot.breach_id, meanwhile.breach_id, last.breach_id]

    # A click brings the window forward on the alarm's site page.
    page.evaluate("window.__notifications[0].onclick()")
    expect(page).to_have_url(f"{server.url}#/site/nordvik")
    assert page.evaluate("window.__notifications[0].closed") is True


def test_turned_off_no_notification(server: LiveServer, settings: Settings,
                                    page: Page) -> None:
    """Allowed from the start (the browser remembers): the alarms already there when the
    page opens raise none. Turned off here by the user: none is raised."""
    url = settings.require_redis()
    already = hot_state.breach("mesa", "mesa-u02", severity="critical")
    hot_state.write(url, already)
    page.add_init_script(NOTIFICATION_STUB + "RecordingNotification.permission = 'granted';")
    open_page(page, server, settings, "admin", "#/alarms")
    rows = page.locator(".alarm-row[data-severity=critical]")
    expect(rows).to_have_count(1, timeout=LIVE_MS)
    button = page.locator("button.desktop-alerts")
    expect(button).to_have_text("Desktop alerts: on (turn off)")
    button.click()
    expect(button).to_have_text("Desktop alerts: enable")
    hot_state.write(url, hot_state.breach("nordvik", "nordvik-u03", severity="critical"))
    expect(rows).to_have_count(2, timeout=LIVE_MS)
    # Turned on again, the next one pops up — and the one before does not, late.
    button.click()
    expect(button).to_have_text("Desktop alerts: on (turn off)")
    later = hot_state.breach("elbe", "elbe-u03", severity="critical")
    hot_state.write(url, later)
    page.wait_for_function("() => window.__notifications.length >= 1", timeout=LIVE_MS)
    assert [n["tag"] for n in notifications(page)] == [later.breach_id]
