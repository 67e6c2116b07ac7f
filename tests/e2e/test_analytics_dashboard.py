"""The analytics pages in a real headless Chromium (Debian's) against the real API (under
uvicorn, with the built dashboard, a real Redis and a real history store filled through its
own write methods, as tests/e2e/test_notify_dashboard.py runs it): five days of per-minute
state of charge of two Nordvik units, a few unavailability episodes with a ticket.

The historian explorer: an asset and a tag picked, the chart drawn from the server's
buckets; zooming in asks again for exactly the narrower range on screen at a finer step and
draws that answer; the CSV export holds exactly the history's rows of the range on screen;
a drag across the chart zooms to the part it spans, the mouse wheel zooms too; a viewer (no
`reports.export`) gets no export buttons, and is told why. The faults page: the episodes of
the window with their ticket links, the reliability table by cause, a filter narrowing
both."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Page, Playwright, Request, expect

from connectors.history import SqliteHistoryStore, TelemetryRow
from connectors.history.rows import StatusIntervalRow
from connectors.settings import Settings
from contracts.events import TicketRef, UnavailabilityEpisode
from tests.api.accounts import token
from tests.e2e.conftest import CHROMIUM_ARGS, LIVE_MS, LiveServer, fresh_settings, open_page

pytestmark = pytest.mark.e2e
VIEWPORT = {"width": 1600, "height": 1000}
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
NOW = (int(time.time() * 1000) // MINUTE) * MINUTE  # the minute under way when the module ran
SERIES = [("nordvik-u01", "soc_pct"), ("nordvik-u02", "soc_pct")]
TICKET = TicketRef(provider="jira", ticket_id="OPS-7", status="in_progress",
                   summary="u01 tripped on an insulation fault",
                   url="https://jira.example/OPS-7")


def history_rows() -> list[TelemetryRow]:
    """Every minute of the five days before the minute under way, a value of its own."""
    return [TelemetryRow(a, "nordvik", t, NOW - m * MINUTE, 60, 40.0 + m % 37, 60.0 + m % 41,
                         50.0 + (m % 97) / 4, 50.5 + m % 13)
            for a, t in SERIES for m in range(1, 5 * 1440 + 1)]


EPISODES = [
    UnavailabilityEpisode(episode_id=f"nordvik-u01:{NOW - 30 * HOUR}", asset_id="nordvik-u01",
                          site_id="nordvik", start_ms=NOW - 30 * HOUR, end_ms=NOW - 26 * HOUR,
                          state="unavailable", cause="fault", lost_hours=4.0, lost_mwh=20.0,
                          tickets=(TICKET,)),
    UnavailabilityEpisode(episode_id=f"elbe-u01:{NOW - 3 * HOUR}", asset_id="elbe-u01",
                          site_id="elbe", start_ms=NOW - 3 * HOUR, end_ms=None,
                          state="unavailable", cause="grid_outage", lost_hours=3.0,
                          lost_mwh=9.0, tickets=()),
]


@pytest.fixture(scope="module")
def settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = fresh_settings(redis_url, tmp_path_factory.mktemp("analytics"))
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    history.write_telemetry(history_rows())
    history.write_episodes(EPISODES)
    history.write_status([
        StatusIntervalRow("nordvik-u01", "nordvik", NOW - 5 * DAY, NOW - 30 * HOUR, "available"),
        StatusIntervalRow("nordvik-u01", "nordvik", NOW - 30 * HOUR, NOW - 26 * HOUR,
                          "unavailable", cause="fault"),
        StatusIntervalRow("nordvik-u01", "nordvik", NOW - 26 * HOUR, None, "available")])
    history.close()
    return settings


def ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def asked(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}


def drawn(page: Page) -> tuple[int, int, int, int]:
    """The chart's range, step and buckets drawn, once its answer is in."""
    chart = page.locator(".chart.historian")
    expect(chart).to_have_attribute("data-state", "ready", timeout=LIVE_MS)
    return (int(chart.get_attribute("data-from") or 0), int(chart.get_attribute("data-to") or 0),
            int(chart.get_attribute("data-step") or 0),
            int(chart.get_attribute("data-points") or 0))


def test_the_explorer_zooms_and_exports_what_is_on_screen(
        server: LiveServer, settings: Settings, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r) if "/analytics/historian" in r.url
            else None)
    open_page(page, server, settings, "admin", "#/analytics/historian")
    expect(page.locator(".main-nav a[data-route=historian]")).to_have_attribute(
        "aria-current", "page")
    about = page.locator(".analytics-about")
    expect(about.locator(".who")).to_contain_text("Engineers")
    expect(about.locator(".sources")).to_contain_text("history store")
    expect(page.locator(".historian-note")).to_contain_text("Pick at least one asset")

    page.select_option("select.site-pick", "nordvik")
    page.locator('.asset-pick label[data-asset="nordvik-u01"] input').check()
    expect(page.locator('.tag-pick label[data-tag="soc_pct"] input')).to_be_checked()
    page.click("button.preset:text-is('7 d')")
    expect(page.locator(".range-text")).to_contain_text("(7 d)")
    week_from, week_to, week_step, week_points = drawn(page)
    assert week_to - week_from == 7 * DAY
    assert week_from <= NOW - 5 * DAY and week_to > NOW  # every row, up to the minute under way
    first = asked(requests[-1])
    assert (first["assets"], first["tags"]) == ("nordvik-u01", "soc_pct")
    assert (ms(first["from"]), ms(first["to"])) == (week_from, week_to)
    width = page.locator(".chart.historian").bounding_box()
    assert width is not None and 0.5 * width["width"] < int(first["points"]) <= width["width"]
    assert week_step > 2 * MINUTE and week_points > 100  # downsampled: five days of minutes
    expect(page.locator(".analytics-about .freshness")).to_contain_text("newest minute")

    # Zoom in: a quarter of the week, about its middle — asked again, finer, and drawn.
    page.click("button.zoom-in")
    expect(page.locator(".range-text")).to_contain_text("(42 h)")
    zoom_from, zoom_to, zoom_step, zoom_points = drawn(page)
    assert (zoom_to - zoom_from) * 4 == week_to - week_from
    assert week_from < zoom_from < zoom_to < week_to
    again = asked(requests[-1])
    assert (ms(again["from"]), ms(again["to"])) == (zoom_from, zoom_to)
    assert zoom_step < week_step
    # What is drawn is the server's answer for that range: every bucket of it.
    answer = httpx.get(f"{server.url}api/v1/analytics/historian", params=again, timeout=10,
                       headers={"Authorization": f"Bearer {token(settings, 'admin')}"}).json()
    assert answer["step_ms"] == zoom_step
    assert zoom_points == len(answer["series"][0]["points"]) > 0
    assert page.locator(".chart.historian canvas").count() >= 1

    # Export CSV: exactly the rows of the range on screen.
    with page.expect_download() as download:
        page.click("button.export-csv")
    path = download.value.path()
    assert path is not None
    expect(page.locator(".export-status")).to_contain_text("downloaded telemetry-")
    records = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    times = [ms(r["time"]) for r in records]
    want = sorted(r.start_ms for r in history_rows()
                  if r.asset_id == "nordvik-u01" and zoom_from <= r.start_ms < zoom_to)
    assert times == want and len(want) == (zoom_to - zoom_from) // MINUTE
    assert {(r["asset_id"], r["tag"]) for r in records} == {("nordvik-u01", "soc_pct")}
    assert page.locator("button.export-parquet").is_enabled()

    # A drag across the middle half of the plot zooms to that half, asked again.
    box = page.locator(".chart.historian").bounding_box()
    assert box is not None
    left, plot = box["x"] + 150, box["width"] - 170  # the chart's plot margins (PLOT)
    page.mouse.move(left + 0.25 * plot, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(left + 0.5 * plot, box["y"] + 100, steps=4)
    expect(page.locator(".drag-select")).to_be_visible()
    page.mouse.move(left + 0.75 * plot, box["y"] + 100, steps=4)
    page.mouse.up()
    expect(page.locator(".range-text")).to_contain_text("(21 h)")
    drag_from, drag_to, _, drag_points = drawn(page)
    assert abs(drag_from - (zoom_from + (zoom_to - zoom_from) // 4)) <= 2 * MINUTE
    assert drag_to - drag_from == (zoom_to - zoom_from) // 2 and drag_points > 0
    assert (ms(asked(requests[-1])["from"]), ms(asked(requests[-1])["to"])) == (drag_from,
                                                                                 drag_to)

    # The status overlay drew the asset's lane.
    expect(page.locator(".historian-status canvas").first).to_be_attached()


def test_a_linked_explorer_zooms_on_the_wheel_and_a_viewer_has_no_export(
        server: LiveServer, settings: Settings, page: Page) -> None:
    # The asset page's link: the selection in the address.
    open_page(page, server, settings, "viewer",
              "#/analytics/historian?assets=nordvik-u02&tags=soc_pct")
    expect(page.locator(".chosen-asset")).to_have_text(["nordvik-u02 ×"])
    day_from, day_to, _, points = drawn(page)
    assert points > 0 and day_to - day_from == DAY
    # The mouse wheel zooms in too: once it rests, the narrower range is asked for.
    box = page.locator(".chart.historian").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    expect(page.locator(".chart.historian")).not_to_have_attribute("data-from", str(day_from))
    wheel_from, wheel_to, _, _ = drawn(page)
    assert day_from < wheel_from < wheel_to < day_to
    expect(page.locator("button.export")).to_have_count(0)
    expect(page.locator(".export-note")).to_contain_text("reports.export")


def test_the_faults_page_shows_the_episodes_and_their_tickets(
        server: LiveServer, settings: Settings, page: Page) -> None:
    open_page(page, server, settings, "admin", "#/")
    page.click(".main-nav a:text-is('Analytics')")  # the explorer, then its tab to this page
    expect(page.locator(".analytics-tabs a[aria-current=page]")).to_have_text(
        "Historian explorer")
    page.click(".analytics-tabs a[data-page=faults]")
    expect(page.locator("#view-title")).to_have_text("Faults and trips")
    expect(page.locator(".main-nav a[aria-current=page]")).to_have_text("Analytics")
    expect(page.locator(".analytics-about .who")).to_contain_text("Service managers")
    rows = page.locator("table.fault-episodes tr.episode")
    expect(rows).to_have_count(2, timeout=LIVE_MS)
    newest = rows.nth(0)  # newest first
    expect(newest).to_have_attribute("data-episode", EPISODES[1].episode_id)
    expect(newest.locator(".duration")).to_contain_text("open")
    u01 = rows.nth(1)
    expect(u01.locator(".ticket-link")).to_have_attribute("href", "https://jira.example/OPS-7")
    expect(u01.locator(".duration")).to_have_text("4 h")
    cause = page.locator(".reliability-cause table tbody tr")
    expect(page.locator('.reliability-cause tr[data-key="fault"] td').nth(2)).to_have_text("1")
    expect(cause).to_have_count(2)
    expect(page.locator(".reliability-group table tbody tr").first).to_be_attached()
    expect(page.locator(".faults-timeline canvas").first).to_be_attached()

    page.select_option("select.filter.site", "elbe")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-cause", "grid_outage")
    expect(page.locator('.reliability-cause tr[data-key="fault"]')).to_have_count(0)


def test_the_pages_leave_nothing_behind(server: LiveServer, settings: Settings,
                                        playwright: Playwright) -> None:
    """The pages opened and closed again and again, the explorer zoomed each time, the
    battery-health page with a unit's detail, the comms and vendors pages: after a full GC the
    heap and the DOM stay where they were (charts, timers and listeners go with their
    view)."""
    b = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                   args=[*CHROMIUM_ARGS, "--js-flags=--expose-gc"])
    try:
        page = b.new_page(viewport={"width": 1600, "height": 1000})
        open_page(page, server, settings, "admin", "#/")
        cdp = page.context.new_cdp_session(page)

        def heap() -> tuple[float, int]:
            page.evaluate("gc()")
            page.evaluate("gc()")
            used = cdp.send("Runtime.getHeapUsage")["usedSize"]
            return used / 1e6, int(page.evaluate("document.getElementsByTagName('*').length"))

        def cycle() -> None:
            page.evaluate("route => { location.hash = route }",
                          "#/analytics/historian?assets=nordvik-u01,nordvik-u02&tags=soc_pct")
            drawn(page)
            page.click("button.zoom-in")
            expect(page.locator(".range-text")).to_contain_text("(6 h)")
            drawn(page)
            page.evaluate("route => { location.hash = route }", "#/analytics/faults")
            expect(page.locator("table.fault-episodes tr.episode")).to_have_count(2)
            page.evaluate("route => { location.hash = route }",
                          "#/analytics/battery-health?site=nordvik&unit=nordvik-u01")
            expect(page.locator(".unit-detail")).to_have_attribute("data-unit", "nordvik-u01")
            page.evaluate("route => { location.hash = route }", "#/analytics/comms?window=7%20d")
            expect(page.locator(".view.comms")).to_have_attribute("data-gateways", "0")
            page.evaluate("route => { location.hash = route }", "#/analytics/vendors?by=model")
            expect(page.locator("table.vendor-table")).to_have_attribute("data-by", "model")
            page.evaluate("route => { location.hash = route }", "#/alarms")
            expect(page.locator("#view .view")).to_have_count(1)

        for _ in range(3):  # warm up: the charts' code loaded, caches filled
            cycle()
        samples = [heap()]
        for _ in range(4):
            for _ in range(3):
                cycle()
            samples.append(heap())
    finally:
        b.close()
    mb = [s[0] for s in samples]
    nodes = [s[1] for s in samples]
    print(f"heap after GC (MB): {[round(m, 2) for m in mb]}; DOM elements: {nodes}")
    assert max(mb[-3:]) < mb[0] * 1.3 + 1.5, f"the heap grows: {mb}"
    # A leak grows with every cycle; caches still filling grow less and less. So a heap that
    # only ever grows is judged by its last six cycles (here 6.65 → 7.29 → 7.40 MB settled).
    assert mb != sorted(mb) or mb[-1] - mb[2] < 0.5, f"the heap keeps growing: {mb}"
    assert max(nodes) < nodes[0] * 1.2 + 50, f"the DOM grows: {nodes}"
