"""The safety view in a real headless Chromium against the running stack (`bessmon up`): an
engineer opens a site's Safety & control page from the site page, presses Emergency stop on
a unit, gives a reason in the confirm dialog, sees the command id, and that command is on
`bess.commands` — keyed by the unit, by the engineer, with the reason — and the simulator's
unit stops: the connector wrote the stop and read it back, the unit's own telemetry reports
it stopped, the page shows it STOPPED. A viewer sees the units but no button."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from connectors.kafka import read_topic
from connectors.settings import Settings
from contracts.control import ControlCommand
from tests.e2e.test_dashboard import LIVE_S, sign_in
from tests.stack import RunningStack

pytestmark = pytest.mark.e2e
UNIT = "nordvik-u02"


def commands_on_topic(stack: RunningStack) -> list[tuple[str, ControlCommand]]:
    out = []
    for m in read_topic(str(stack.state()["kafka"]), Settings().topic_commands, timeout_s=15,
                        idle_s=2):
        key, value = m.key(), m.value()
        assert key is not None and value is not None
        out.append((key.decode(), ControlCommand.model_validate_json(value)))
    return out


def test_an_engineer_stops_a_unit_from_the_safety_view(stack: RunningStack, page: Page) -> None:
    sign_in(page, stack, "engineer")
    page.evaluate("() => { location.hash = '#/site/nordvik' }")
    page.click("a.control-link")
    expect(page).to_have_url(re.compile(r"#/control/nordvik$"))
    card = page.locator(f'.control-unit[data-unit="{UNIT}"]')
    expect(card).to_be_visible(timeout=LIVE_S)
    expect(card.locator(".unit-state")).to_have_text(
        re.compile("^(BOOT|IDLE|RUNNING|ERROR|STOPPED)$"))
    expect(page.locator(".loop-status")).to_have_attribute("data-alive", re.compile("^(yes|no)$"))
    expect(page.locator(".site-estop")).to_be_visible()

    card.locator("button.unit-estop").click()
    dialog = page.locator("dialog.confirm-dialog")
    expect(dialog).to_be_visible()
    confirm = dialog.locator("button.confirm-command")
    expect(confirm).to_be_disabled()  # no reason, no stop
    dialog.locator("input.reason").fill("smoke reported in container 2")
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(dialog).to_be_hidden()
    result = page.locator(".command-result")
    expect(result).to_have_attribute("data-outcome", "sent", timeout=LIVE_S)
    match = re.search(r"command ([0-9a-f]{32})", result.inner_text())
    assert match, result.inner_text()

    mine = [c for key, c in commands_on_topic(stack)
            if key == UNIT and c.command_id == match[1]]
    assert len(mine) == 1
    assert (mine[0].kind, mine[0].actor, mine[0].reason) == (
        "estop", "engineer", "smoke reported in container 2")

    # The equipment: written and read back by the connector, stopped by the device's own
    # report (its control_mode register, polled), latched STOPPED by the control loop.
    def stopped() -> bool:
        unit = httpx.get(f"{stack.url}api/v1/control/units/{UNIT}", timeout=10,
                         headers={"Authorization": f"Bearer {stack.token}"}).json()["unit"]
        done = [c for c in unit["commands"] if c["command_id"] == match[1]
                and c["outcome"] == "written" and c["read_back"].get("control_mode") == 2]
        return bool(done) and unit["state"] == "STOPPED" and unit["device"] == "idle"
    deadline = time.monotonic() + LIVE_S / 1000 + 10
    while not stopped():
        assert time.monotonic() < deadline, "the simulator's unit did not stop"
        time.sleep(0.2)
    expect(card.locator(".unit-state")).to_have_text("STOPPED", timeout=LIVE_S)


def test_a_viewer_sees_the_units_but_no_button(stack: RunningStack, page: Page) -> None:
    sign_in(page, stack, "noc")
    page.evaluate("() => { location.hash = '#/control/nordvik' }")
    expect(page.locator(f'.control-unit[data-unit="{UNIT}"]')).to_be_visible(timeout=LIVE_S)
    expect(page.locator(".view.control .meta")).to_contain_text("may look, not command")
    expect(page.locator("button.estop")).to_have_count(0)
    expect(page.locator("button.reset")).to_have_count(0)
