"""The dashboard in a real headless Chromium against the running stack and its simulator:
every site on the overview, injected faults colouring assets and sites, drill-down to a DC
block and back, alarms raised through the flows and handled in the page (or not, for a
viewer), contracts and a report, the page riding out an API restart, stale data looking
stale, and a heap that does not grow."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    BrowserContext,
    Page,
    Playwright,
    expect,
)

from connectors.kafka import CheckedProducer
from connectors.settings import Settings
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.stack import RunningStack

ASSET_STATE = ".view.asset .title-row .chip.state"  # the asset view's status chip
SITES = ["Nordvik Storage", "Elbe Grid Battery", "Mesa Verde BESS"]
LIVE_S = 20_000  # ms: the flows publish every second; a change shows within seconds
CONTRACT_S = 90_000  # ms: contract KPIs come with the first final minute (lateness 30 s)

pytestmark = pytest.mark.e2e


def credentials(stack: RunningStack) -> dict[str, str]:
    """username → password, from the file `bessmon up` wrote."""
    out = {}
    for line in (stack.run_dir / "credentials.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            fields = line.split()
            out[fields[0]] = fields[-1]
    return out


def api(stack: RunningStack, method: str, path: str, token: str | None = None,
        **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{stack.url}api/v1{path}", timeout=10, headers={
        "Authorization": f"Bearer {token or stack.token}"}, **kwargs)


def token_of(stack: RunningStack, user: str) -> str:
    answer = httpx.post(f"{stack.url}api/v1/auth/token", timeout=10,
                        data={"username": user, "password": credentials(stack)[user]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def sim(stack: RunningStack, *args: str) -> None:
    result = stack.bessmon("sim", *args)
    assert result.returncode == 0, result.stderr


def open_signed_in(page: Page, stack: RunningStack, route: str = "#/") -> None:
    """`make up`'s link: the admin's token in the fragment."""
    page.goto(f"{stack.url}#token={stack.token}")
    expect(page.locator("#connection")).to_have_text("live", timeout=LIVE_S)
    if route != "#/":
        page.evaluate("route => { location.hash = route }", route)


def sign_in(page: Page, stack: RunningStack, user: str) -> None:
    page.goto(f"{stack.url}#/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", credentials(stack)[user])
    page.click("form.login button[type=submit]")
    expect(page.locator("#connection")).to_have_text("live", timeout=LIVE_S)
    expect(page.locator(".who")).to_contain_text(user)


def test_the_overview_shows_every_site(stack: RunningStack, page: Page) -> None:
    open_signed_in(page, stack)
    assert "token" not in page.url  # the token leaves the address bar
    tiles = page.locator(".site-tile")
    expect(tiles).to_have_count(3)
    expect(tiles.locator("h2")).to_have_text(SITES)
    for tile in tiles.all():  # live data in every tile, fresh
        expect(tile.locator(".unit-cell").first).to_have_attribute("data-state", "available",
                                                                   timeout=LIVE_S)
        expect(tile).to_have_attribute("data-stale", "false")
        expect(tile.locator('.win[data-window="today"] .value')).to_contain_text("%")
        expect(tile.locator(".freshness")).to_contain_text("updated")
    expect(page.locator(".kpi.avail-today .value")).to_contain_text("%")
    expect(page.locator(".kpi.units .count[data-state=available]")).to_contain_text("available")
    assert page.evaluate("performance.getEntriesByName('bessmon:first-tile').length") == 1
    # Contracts of the sites with one: a warning level and money for the admin.
    elbe = page.locator('.site-tile[data-site="elbe"]')
    expect(elbe).to_have_attribute("data-warning", "ok", timeout=CONTRACT_S)
    expect(elbe.locator(".ld")).to_contain_text("LD year to date €")


def test_without_a_token_the_page_asks_to_sign_in(stack: RunningStack, page: Page) -> None:
    page.goto(stack.url)
    expect(page.locator("form.login")).to_be_visible()
    expect(page.locator(".site-tile")).to_have_count(0)
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not the password")
    page.click("form.login button[type=submit]")
    expect(page.locator(".login-error")).to_have_text("Wrong username or password.")


def test_an_injected_fault_turns_the_asset_and_its_site_the_right_colour(
        stack: RunningStack, page: Page) -> None:
    open_signed_in(page, stack)
    nordvik = page.locator('.site-tile[data-site="nordvik"]')
    expect(nordvik).to_have_attribute("data-level", "available", timeout=LIVE_S)

    # A DC block trips: the block is unavailable, its unit and site derated.
    sim(stack, "fault", "nordvik-u02-i1-b4", "--for", "10m")
    expect(nordvik).to_have_attribute("data-level", "derated", timeout=LIVE_S)
    expect(nordvik.locator('.unit-cell[data-asset="nordvik-u02"]')).to_have_attribute(
        "data-state", "derated")
    nordvik.click()
    expect(page.locator("#view-title")).to_have_text("Nordvik Storage")
    block = page.locator('.asset-cell[data-asset="nordvik-u02-i1-b4"]')
    expect(block).to_have_attribute("data-state", "unavailable", timeout=LIVE_S)
    expect(page.locator('.unit-card[data-asset="nordvik-u02"]')).to_have_attribute(
        "data-state", "derated")
    expect(page.locator('.asset-cell[data-asset="nordvik-u02-i1-b3"]')).to_have_attribute(
        "data-state", "available")

    # A battery unit trips: red, on the overview and in its own view — with the ticket the
    # service desk opened for it, linked to the ticketing system.
    page.go_back()
    elbe = page.locator('.site-tile[data-site="elbe"]')
    sim(stack, "fault", "elbe-u03", "--for", "10m")
    expect(elbe.locator('.unit-cell[data-asset="elbe-u03"]')).to_have_attribute(
        "data-state", "unavailable", timeout=LIVE_S)
    expect(elbe).to_have_attribute("data-level", "unavailable")
    expect(elbe.locator(".counts")).to_contain_text("1 unavailable")
    page.evaluate("location.hash = '#/asset/elbe-u03'")
    expect(page.locator(ASSET_STATE)).to_contain_text("unavailable")
    # The drop is an episode once its status is final (the flows' allowed lateness), the
    # ticket comes from the service desk; the drop then shows the ticket linked to it.
    drop = page.locator('.episode-row:has(a.asset:text-is("elbe-u03"))').first
    expect(drop).to_contain_text("since", timeout=CONTRACT_S)
    ticket = page.locator(".ticket-row").first
    expect(ticket).to_have_attribute("data-status", "open", timeout=CONTRACT_S)
    href = ticket.locator("a.ticket-link").get_attribute("href")
    assert href is not None and href.startswith("http") and "/browse/" in href
    linked = drop.locator(".linked-ticket a.ticket-link")
    expect(linked).to_have_attribute("href", href, timeout=LIVE_S)

    sim(stack, "clear", "nordvik-u02-i1-b4")
    sim(stack, "clear", "elbe-u03")
    expect(page.locator(ASSET_STATE)).to_contain_text("available", timeout=LIVE_S)
    page.evaluate("location.hash = '#/'")
    expect(nordvik).to_have_attribute("data-level", "available", timeout=LIVE_S)
    expect(elbe).to_have_attribute("data-level", "available", timeout=LIVE_S)


def test_drill_down_to_a_dc_block_and_back(stack: RunningStack, page: Page) -> None:
    open_signed_in(page, stack)
    page.locator('.site-tile[data-site="elbe"]').click()
    expect(page).to_have_url(f"{stack.url}#/site/elbe")
    expect(page.locator(".unit-card")).to_have_count(5)
    page.locator('.unit-card[data-asset="elbe-u02"] .unit-head').click()
    expect(page.locator("#view-title")).to_have_text("elbe-u02")
    expect(page.locator(".view.asset .kind")).to_have_text("battery unit")
    expect(page.locator(".values [data-tag=soc_pct]")).to_contain_text("%", timeout=LIVE_S)
    page.locator('.asset-cell.child[data-asset="elbe-u02-i2"]').click()
    expect(page.locator("#view-title")).to_have_text("elbe-u02-i2")
    expect(page.locator(".asset-cell.child")).to_have_count(8, timeout=LIVE_S)
    page.locator('.asset-cell.child[data-asset="elbe-u02-i2-b5"]').click()
    expect(page.locator("#view-title")).to_have_text("elbe-u02-i2-b5")
    expect(page.locator(".view.asset .kind")).to_have_text("DC block")
    expect(page.locator(ASSET_STATE)).to_have_attribute("data-state", "available",
                                                        timeout=LIVE_S)
    expect(page.locator(".values [data-tag=cell_temp_max_c]")).to_contain_text("°C",
                                                                             timeout=LIVE_S)
    # Its trend and timeline are drawn (canvases of the charts).
    expect(page.locator(".chart.trend canvas")).to_have_count(1, timeout=LIVE_S)
    expect(page.locator(".chart.timeline canvas")).to_have_count(1)
    crumbs = page.locator(".crumbs a")
    expect(crumbs).to_have_text(["Fleet", "Elbe Grid Battery", "elbe-u02", "elbe-u02-i2"])
    # Back up the breadcrumb, and with the browser's back button.
    crumbs.filter(has_text="elbe-u02-i2").click()
    expect(page.locator("#view-title")).to_have_text("elbe-u02-i2")
    page.go_back()
    expect(page.locator("#view-title")).to_have_text("elbe-u02-i2-b5")
    page.locator(".crumbs a", has_text="Elbe Grid Battery").click()
    expect(page.locator("#view-title")).to_have_text("Elbe Grid Battery")
    page.locator(".crumbs a", has_text="Fleet").click()
    expect(page.locator(".site-tile")).to_have_count(3)


HOT_BLOCK = "nordvik-u03-i2-b6"


def test_an_alarm_handled_in_the_page_is_handled_in_the_api(stack: RunningStack,
                                                            page: Page) -> None:
    sign_in(page, stack, "engineer")
    sim(stack, "set", HOT_BLOCK, "cell_temp_max_c", "60")  # above the critical 55 °C
    try:
        # Critical and unacknowledged: the banner on every view.
        banner = page.locator("#critical-banner")
        expect(banner).to_be_visible(timeout=30_000)
        expect(banner).to_contain_text(HOT_BLOCK)
        page.locator("nav a[data-route=alarms]").click()
        row = page.locator(f'.alarm-row[data-breach^="cell-temp-high:critical:{HOT_BLOCK}:"]')
        expect(row).to_have_attribute("data-state", "active_unacknowledged")
        expect(row.locator(".sev")).to_have_text("CRITICAL")
        breach_id = row.get_attribute("data-breach")

        row.locator("button.ack").click()
        expect(row).to_have_attribute("data-state", "active_acknowledged")
        expect(row.locator(".handling")).to_have_text("acknowledged by engineer")
        expect(row.locator("button.ack")).to_have_count(0)
        expect(banner).to_be_hidden()
        alarms = api(stack, "GET", "/alarms", params={"site_id": "nordvik"}).json()["items"]
        mine = next(a for a in alarms if a["breach_id"] == breach_id)
        assert (mine["state"], mine["acknowledged_by"]) == ("active_acknowledged", "engineer")

        row.locator("button.shelve").click()
        row.locator("input[name=reason]").fill("sensor replaced tomorrow")
        row.locator("select[name=hours]").select_option("4")
        row.locator("button.confirm-shelve").click()
        expect(row).to_have_attribute("data-state", "shelved")
        expect(row.locator(".handling")).to_contain_text("sensor replaced tomorrow")
        alarms = api(stack, "GET", "/alarms", params={"state": "shelved"}).json()["items"]
        shelved = next(a for a in alarms if a["breach_id"] == breach_id)
        assert shelved["shelve_reason"] == "sensor replaced tomorrow"
        assert 3.9 * 3_600_000 < shelved["shelved_until_ms"] - time.time() * 1000 < 4 * 3_600_000
    finally:
        sim(stack, "release", HOT_BLOCK, "cell_temp_max_c")
    # Cleared by the flows: it leaves the list.
    expect(page.locator(f'.alarm-row[data-breach^="cell-temp-high:critical:{HOT_BLOCK}:"]')
           ).to_have_count(0, timeout=30_000)


WARM_BLOCK = "elbe-u01-i2-b2"


def test_a_viewer_sees_alarms_but_cannot_acknowledge(stack: RunningStack, context: BrowserContext,
                                                     page: Page) -> None:
    sim(stack, "set", WARM_BLOCK, "cell_temp_max_c", "50")  # above the major 45 °C
    try:
        sign_in(page, stack, "noc")
        expect(page.locator("nav a[data-route=contracts]")).to_have_count(0)
        expect(page.locator(".kpi.ld-total")).to_have_count(0)
        expect(page.locator('.site-tile[data-site="elbe"] .ld')).to_be_hidden()
        page.locator("nav a[data-route=alarms]").click()
        row = page.locator(f'.alarm-row[data-breach^="cell-temp-high:major:{WARM_BLOCK}:"]')
        expect(row).to_have_attribute("data-state", "active_unacknowledged", timeout=30_000)
        expect(page.locator(".view.alarms .meta")).to_contain_text("may look, not acknowledge")
        expect(page.locator(".alarm-row button")).to_have_count(0)
        breach_id = row.get_attribute("data-breach")
        refused = api(stack, "POST", f"/alarms/{breach_id}/acknowledge",
                      token=token_of(stack, "noc"), json={})
        assert refused.status_code == 403

        # A viewer of one customer: one site, and none of the others' alarms.
        scoped = context.new_page()
        sign_in(scoped, stack, "viewer-nordvik")
        expect(scoped.locator(".site-tile")).to_have_count(1)
        expect(scoped.locator(".site-tile h2")).to_have_text("Nordvik Storage")
        scoped.locator("nav a[data-route=alarms]").click()
        expect(scoped.locator("#view-title")).to_have_text("Active alarms")
        expect(scoped.locator(f'.alarm-row[data-breach*=":{WARM_BLOCK}:"]')).to_have_count(0)
        scoped.evaluate("location.hash = '#/site/elbe'")
        expect(scoped.locator(".view .empty")).to_contain_text("not yours to see")
        alarms = api(stack, "GET", "/alarms").json()["items"]
        assert next(a for a in alarms if a["breach_id"] == breach_id)["state"] == \
            "active_unacknowledged"
    finally:
        sim(stack, "release", WARM_BLOCK, "cell_temp_max_c")


def test_contracts_show_actual_against_guaranteed_and_the_report_downloads(
        stack: RunningStack, page: Page) -> None:
    open_signed_in(page, stack, "#/contracts")
    cards = page.locator(".contract-card")
    expect(cards).to_have_count(3)
    nordvik = page.locator('.contract-card[data-contract="LTSA-NORDVIK"]')
    expect(nordvik.locator(".contract-live .kpi").first).to_contain_text("%", timeout=CONTRACT_S)
    expect(nordvik.locator("table.periods tbody tr").first).to_be_visible(timeout=LIVE_S)
    expect(nordvik.locator("tr.total")).to_contain_text("contract year so far")
    expect(nordvik.locator(".chart.compliance canvas")).to_have_count(1)
    period = nordvik.locator("select.report-period").input_value()
    with page.expect_download() as download:
        nordvik.locator('button.download[data-format="csv"]').click()
    assert download.value.suggested_filename == f"LTSA-NORDVIK-{period}.csv"
    path = download.value.path()
    assert "LTSA-NORDVIK" in path.read_text(encoding="utf-8")


def test_the_page_reconnects_after_the_api_restarts(stack: RunningStack, page: Page) -> None:
    open_signed_in(page, stack)
    connection = page.locator("#connection")
    page.evaluate("window.__notReloaded = true")
    before = stack.state()["children"]["api"]  # type: ignore[index]

    os.kill(stack.process.pid, signal.SIGUSR1)  # `bessmon up`: restart the API alone
    expect(connection).to_have_text("reconnecting…", timeout=20_000)
    expect(connection).to_have_text("live", timeout=60_000)
    assert page.evaluate("window.__notReloaded") is True  # resumed, not reloaded
    assert stack.state()["children"]["api"] != before  # type: ignore[index]

    # Live again: a fault injected after the restart shows.
    mesa = page.locator('.site-tile[data-site="mesa"]')
    sim(stack, "fault", "mesa-u03", "--for", "5m")
    try:
        expect(mesa.locator('.unit-cell[data-asset="mesa-u03"]')).to_have_attribute(
            "data-state", "unavailable", timeout=LIVE_S)
    finally:
        sim(stack, "clear", "mesa-u03")
    expect(mesa.locator('.unit-cell[data-asset="mesa-u03"]')).to_have_attribute(
        "data-state", "available", timeout=LIVE_S)


def test_a_part_that_dies_is_restarted_and_the_admin_sees_it(stack: RunningStack,
                                                             page: Page) -> None:
    open_signed_in(page, stack)
    badge = page.locator("#stack-health")
    expect(badge).to_be_hidden()  # every part runs as started
    reports = int(stack.state()["children"]["reports"])  # type: ignore[index]
    os.kill(reports, signal.SIGKILL)  # `bessmon up` starts it again (infra/supervise.py)
    expect(badge).to_have_text("reports restarted 1×", timeout=30_000)
    expect(badge).to_have_attribute("title", re.compile("killed by signal 9"))
    assert stack.process.poll() is None  # the stack runs on
    assert stack.state()["children"]["reports"] != reports  # type: ignore[index]


def unit_state(stack: RunningStack, site_id: str, unit_id: str) -> str | None:
    snapshot = api(stack, "GET", f"/sites/{site_id}").json()["availability"] or {}
    return next((u["state"] for u in snapshot.get("units", []) if u["id"] == unit_id), None)


def test_the_page_rides_out_a_network_drop(stack: RunningStack, context: BrowserContext,
                                           page: Page) -> None:
    open_signed_in(page, stack)
    connection = page.locator("#connection")
    cell = page.locator('.site-tile[data-site="nordvik"] .unit-cell[data-asset="nordvik-u05"]')
    expect(cell).to_have_attribute("data-state", "available", timeout=LIVE_S)
    page.evaluate("window.__notReloaded = true")
    context.set_offline(True)
    try:
        expect(connection).to_have_text("reconnecting…", timeout=10_000)
        # Meanwhile a unit trips: the API knows, the page cannot hear it.
        sim(stack, "fault", "nordvik-u05", "--for", "5m")
        deadline = time.monotonic() + 30
        while unit_state(stack, "nordvik", "nordvik-u05") != "unavailable":
            assert time.monotonic() < deadline, "the fault did not reach the API"
            time.sleep(0.5)
        expect(cell).to_have_attribute("data-state", "available")  # still the old picture
    finally:
        context.set_offline(False)
    try:
        expect(connection).to_have_text("live", timeout=30_000)
        expect(cell).to_have_attribute("data-state", "unavailable", timeout=LIVE_S)
        assert page.evaluate("window.__notReloaded") is True
    finally:
        sim(stack, "clear", "nordvik-u05")
    expect(cell).to_have_attribute("data-state", "available", timeout=LIVE_S)


def test_a_site_whose_data_stops_looks_stale(stack: RunningStack, page: Page) -> None:
    open_signed_in(page, stack)
    tiles = page.locator(".site-tile")
    expect(tiles.first).to_have_attribute("data-stale", "false", timeout=LIVE_S)
    flows = int(stack.state()["children"]["flows"])  # type: ignore[index]
    os.kill(flows, signal.SIGSTOP)  # the flows stall: no snapshot gets newer
    try:
        for tile in tiles.all():
            expect(tile).to_have_attribute("data-stale", "true", timeout=45_000)
        expect(tiles.first.locator(".freshness")).to_contain_text("STALE — last data")
        expect(page.locator(".kpi.stale-kpi .value")).to_have_text("3")
    finally:
        os.kill(flows, signal.SIGCONT)
    for tile in tiles.all():
        expect(tile).to_have_attribute("data-stale", "false", timeout=60_000)
    expect(page.locator(".kpi.stale-kpi .value")).to_have_text("0")


def produce_telemetry(stack: RunningStack, key: str, value: bytes, times: int = 1) -> None:
    """Records straight into the running stack's telemetry topic, as a device (or anyone
    able to write to the topic) would."""
    producer = CheckedProducer(str(stack.state()["kafka"]))
    try:
        for _ in range(times):
            producer.produce(Settings().topic_telemetry, key, value)
        producer.flush()
    finally:
        producer.close()


def refused(stack: RunningStack, path: str, device: str, reason: str, at_least: int,
            token: str | None = None) -> dict[str, Any]:
    """The tally of (device, reason) in the API's answer at `path` (a site of /data-quality,
    or /data-quality/unrouted) once it counts `at_least` records."""
    deadline = time.monotonic() + LIVE_S / 1000
    while True:
        answer = api(stack, "GET", path, token=token)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        totals = body["sites"][0] if "sites" in body else body
        row = next((t for t in totals["tallies"]
                    if (t["device"], t["reason"]) == (device, reason)), None)
        if row is not None and row["count"] >= at_least:
            return dict(row)
        assert time.monotonic() < deadline, f"{device} {reason} not counted: {body}"
        time.sleep(0.5)


def test_the_quality_view_names_the_device_that_sends_bad_records(
        stack: RunningStack, context: BrowserContext, page: Page) -> None:
    open_signed_in(page, stack)
    page.locator("nav a[data-route=quality]").click()
    expect(page.locator("#view-title")).to_have_text("Data quality")
    expect(page.locator("nav a[data-route=quality]")).to_have_attribute("aria-current", "page")

    # A real device sends garbage: the API counts it under the device and why.
    produce_telemetry(stack, "nordvik-u01", b"{broken", times=3)
    row = refused(stack, "/data-quality?site=nordvik", "nordvik-u01", "malformed_json", 3)
    assert row["asset_id"] == "nordvik-u01" and row["last_detail"]

    # The page shows it by itself (it refreshes over REST), its site first.
    site = page.locator('.quality-site[data-site="nordvik"]')
    expect(page.locator(".quality-site").first).to_have_attribute("data-site", "nordvik",
                                                                  timeout=LIVE_S)
    device = site.locator('.dl-device[data-device="nordvik-u01"]')
    reason = device.locator('.dl-reason[data-reason="malformed_json"]')
    expect(reason.locator(".reason")).to_have_text("malformed json", timeout=LIVE_S)
    expect(reason.locator(".refused")).to_have_text("3", timeout=LIVE_S)
    expect(reason.locator(".detail")).to_have_text(row["last_detail"])
    expect(reason.locator(".last")).to_contain_text("ago")
    expect(device.locator("a.device")).to_have_attribute("href", "#/asset/nordvik-u01")
    expect(site.locator(".summary")).to_contain_text("from 1 device")
    # More of it: the count grows in the open page, without a reload.
    page.evaluate("window.__notReloaded = true")
    produce_telemetry(stack, "nordvik-u01", b"{broken", times=2)
    expect(reason.locator(".refused")).to_have_text("5", timeout=LIVE_S)
    assert page.evaluate("window.__notReloaded") is True

    # A record of no device of the fleet: the admin sees it apart, as records of no site.
    produce_telemetry(stack, "rogue-device-9", b"{broken")
    refused(stack, "/data-quality/unrouted", "rogue-device-9", "malformed_json", 1)
    unrouted = page.locator('.quality-site[data-site="(unrouted)"]')
    expect(unrouted.locator('.dl-device[data-device="rogue-device-9"]')).to_be_visible(
        timeout=LIVE_S)
    expect(unrouted.locator("a.device")).to_have_count(0)  # no asset to link to

    # A viewer of one customer: that customer's site only, and nothing of no site.
    scoped = context.new_page()
    sign_in(scoped, stack, "viewer-nordvik")
    scoped.locator("nav a[data-route=quality]").click()
    mine = scoped.locator('.quality-site[data-site="nordvik"] .dl-device[data-device='
                          '"nordvik-u01"] .dl-reason[data-reason="malformed_json"]')
    expect(mine.locator(".refused")).to_have_text("5", timeout=LIVE_S)
    expect(scoped.locator(".quality-site")).to_have_count(1)
    expect(scoped.locator("text=rogue-device-9")).to_have_count(0)
    viewer = token_of(stack, "viewer-nordvik")
    answer = api(stack, "GET", "/data-quality", token=viewer).json()
    assert [s["site_id"] for s in answer["sites"]] == ["nordvik"] and answer["unrouted"] is None
    assert api(stack, "GET", "/data-quality/unrouted", token=viewer).status_code == 403


ROUTES = ["#/site/elbe", "#/asset/elbe-u01", "#/asset/elbe-u01-i1-b1", "#/alarms",
          "#/quality", "#/contracts", "#/wall?every=3", "#/site/nordvik", "#/"]


@pytest.mark.timeout(300)
def test_the_heap_does_not_grow_through_live_updates_and_views(stack: RunningStack,
                                                               playwright: Playwright) -> None:
    """Days on a wall compressed: every view opened and closed again and again while the
    feed updates every site each second; after a full GC the heap stays where it was."""
    b = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                   args=[*CHROMIUM_ARGS, "--js-flags=--expose-gc"])
    try:
        page = b.new_page(viewport={"width": 1600, "height": 900})
        open_signed_in(page, stack)
        cdp = page.context.new_cdp_session(page)

        def heap() -> tuple[float, int]:
            page.evaluate("gc()")
            page.evaluate("gc()")
            used = cdp.send("Runtime.getHeapUsage")["usedSize"]
            nodes = page.evaluate("document.getElementsByTagName('*').length")
            return used / 1e6, int(nodes)

        def cycle() -> None:
            for route in ROUTES:
                page.evaluate("route => { location.hash = route }", route)
                expect(page.locator("#view .view")).to_have_count(1)
                page.wait_for_timeout(600)  # live updates meanwhile (not an assertion)

        for _ in range(2):  # warm up: the charts' code loaded, caches filled
            cycle()
        samples = [heap()]
        for _ in range(4):  # (an hour on the wall: bench/wall.py)
            cycle()
            samples.append(heap())
        tiles = page.evaluate("document.querySelectorAll('.site-tile').length")
    finally:
        b.close()
    mb = [s[0] for s in samples]
    nodes = [s[1] for s in samples]
    print(f"heap after GC (MB): {[round(m, 2) for m in mb]}; DOM elements: {nodes}")
    assert tiles == 3
    assert max(mb[-3:]) < mb[0] * 1.3 + 1.5, f"the heap grows: {mb}"
    assert mb != sorted(mb) or mb[-1] - mb[0] < 1.0, f"the heap only ever grows: {mb}"
    assert max(nodes) < nodes[0] * 1.2 + 50, f"the DOM grows: {nodes}"
