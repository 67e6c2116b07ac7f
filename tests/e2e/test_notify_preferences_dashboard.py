""""My notifications" on the Notifications page, in a real headless Chromium against the real
API (uvicorn, the built dashboard, a real Redis; the fixtures of test_notify_dashboard.py):
a user sees the defaults in their browser's time zone, saves their own preferences (written
to the preferences file the notifier reads, under their name only), sees the server's
refusal of a bad time zone next to the form, and resets to the defaults."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from connectors.settings import Settings
from contracts.notify import load_preferences
from tests.e2e.conftest import LIVE_MS, LiveServer, open_page
from tests.e2e.test_notify_dashboard import server, settings, users  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


def test_a_user_narrows_what_reaches_them(server: LiveServer, settings: Settings,  # noqa: F811  # noqa: F811
                                          page: Page, context: BrowserContext
                                          ) -> None:
    path = settings.notify_preferences_path
    open_page(page, server, settings, "engineer", "#/notifications")
    panel = page.locator("section.my-notifications")
    expect(panel.locator(".pref-source")).to_have_attribute("data-source", "default",
                                                            timeout=LIVE_MS)
    for value in ("critical", "major", "minor", "warning"):
        expect(panel.locator(f"input.pref-severity[value={value}]")).to_be_checked()
    browser_tz = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    expect(panel.locator("input.pref-tz")).to_have_value(browser_tz)

    # Critical and major only, e-mail only, quiet at night in Stockholm, another address.
    panel.locator("input.pref-severity[value=minor]").uncheck()
    panel.locator("input.pref-severity[value=warning]").uncheck()
    for value in ("webhook", "slack", "teams"):
        panel.locator(f"input.pref-channel[value={value}]").uncheck()
    panel.locator("input.pref-quiet-from").fill("22:00")
    panel.locator("input.pref-quiet-to").fill("07:00")
    panel.locator("input.pref-tz").fill("Europe/Stockholm")
    panel.locator("input.pref-email").fill("engineer@home.example.test")
    panel.locator("button.pref-save").click()
    result = panel.locator(".pref-result")
    expect(result).to_have_attribute("data-outcome", "ok")
    expect(panel.locator(".pref-source")).to_have_attribute("data-source", "own")
    own = load_preferences(path)
    assert list(own) == ["engineer"]
    assert own["engineer"].model_dump(mode="json") == {
        "severities": ["critical", "major"], "channels": ["email"],
        "quiet_hours": "22:00-07:00", "tz": "Europe/Stockholm",
        "email": "engineer@home.example.test"}

    # Without e-mail nothing would reach them: the page says so before they save.
    panel.locator("input.pref-channel[value=email]").uncheck()
    panel.locator("input.pref-channel[value=slack]").check()
    expect(panel.locator(".pref-caution")).to_contain_text("Without e-mail nothing reaches you")
    panel.locator("input.pref-channel[value=email]").check()

    # A bad time zone: the server's refusal next to the form, nothing changed.
    panel.locator("input.pref-tz").fill("Mars/Olympus_Mons")
    panel.locator("button.pref-save").click()
    expect(result).to_have_attribute("data-outcome", "error")
    expect(result).to_have_text("tz: unknown IANA time zone 'Mars/Olympus_Mons'")
    assert load_preferences(path)["engineer"].tz == "Europe/Stockholm"

    # Reloaded, the saved ones are shown; reset, the defaults again and the entry gone.
    page.reload()
    expect(panel.locator("input.pref-quiet-from")).to_have_value("22:00", timeout=LIVE_MS)
    expect(panel.locator("input.pref-tz")).to_have_value("Europe/Stockholm")
    expect(panel.locator("input.pref-severity[value=minor]")).not_to_be_checked()
    panel.locator("button.pref-reset").click()
    expect(panel.locator(".pref-source")).to_have_attribute("data-source", "default")
    expect(panel.locator("input.pref-severity[value=minor]")).to_be_checked()
    expect(panel.locator("input.pref-quiet-from")).to_have_value("")
    assert load_preferences(path) == {}
