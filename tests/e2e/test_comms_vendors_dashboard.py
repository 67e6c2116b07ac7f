"""The controllers-and-comms and vendor-benchmarking pages (#/analytics/comms,
#/analytics/vendors) and the battery-health page's warranty pack downloads, in a real headless
Chromium (Debian's) against the real API under uvicorn with the built dashboard, a real Redis
and a real history store filled through its own write methods (as
tests/e2e/test_analytics_dashboard.py runs it):

- device health as the flows write it (tests/api/test_comms.py): state changes and per-minute
  stats windows in the history store, each device's current state in Redis — two Nordvik
  units behind one Modbus gateway (u01 degraded, offline and back within the day), an Elbe
  unit offline behind another;
- status intervals, unavailability episodes and per-minute power and SOH of Nordvik's units
  (tests/api/test_vendors.py's shape, over the last ten days).

Each page shows exactly the API's figures for exactly what it asked; the filters and toggles
ask again (or redraw) as they should; the warranty pack downloads as a PDF whose text names
the unit, and a viewer (no `reports.export`) has no buttons and is told why."""

from __future__ import annotations

import io
import math
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Locator, Page, Request, expect
from pypdf import PdfReader

from connectors.history import SqliteHistoryStore, StatusIntervalRow, TelemetryRow
from connectors.redis_store import comms_state_key, comms_stats_key
from connectors.settings import Settings
from contracts.events import (
    Cause,
    DeviceHealth,
    DeviceStats,
    HealthState,
    State,
    UnavailabilityEpisode,
)
from tests.api.accounts import token
from tests.e2e.conftest import LIVE_MS, LiveServer, fresh_settings, open_page
from tests.e2e.test_analytics_dashboard import asked, ms

pytestmark = pytest.mark.e2e
VIEWPORT = {"width": 1600, "height": 1000}
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
NOW = (int(time.time() * 1000) // MINUTE) * MINUTE  # the minute under way when the module ran
GW, GW_ELBE = "10.0.0.1:502", "10.0.1.1:502"


def state(device: str, at_h: float, s: HealthState, previous: HealthState | None,
          site: str = "nordvik", gateway: str = GW) -> DeviceHealth:
    """A state change `at_h` hours before now."""
    return DeviceHealth(device_id=device, connector="modbus", state=s, previous=previous,
                        ts_ms=NOW - round(at_h * HOUR), reason=f"{s}, {at_h} h ago",
                        consecutive_failures=3 if s == "offline" else 0, site_id=site,
                        gateway=gateway)


def window(device: str, at_h: float, polls: int, failed: int, retries: int,
           lat: tuple[float, float, float] | None) -> DeviceStats:
    p50, p95, most = lat or (None, None, None)
    start = NOW - round(at_h * HOUR)
    return DeviceStats(device_id=device, connector="modbus", site_id="nordvik", gateway=GW,
                       start_ms=start, end_ms=start + MINUTE, polls=polls, failed=failed,
                       retries=retries, latency_p50_ms=p50, latency_p95_ms=p95,
                       latency_max_ms=most)


HEALTH: list[DeviceHealth | DeviceStats] = [
    state("nordvik-u01", 30, "online", None),  # before the day: its state at `from`
    window("nordvik-u01", 6, 60, 0, 0, (10, 20, 30)),
    state("nordvik-u01", 5, "degraded", "online"),
    state("nordvik-u01", 4, "offline", "degraded"),
    window("nordvik-u01", 4, 60, 30, 45, (100, 200, 1400)),
    state("nordvik-u01", 2, "online", "offline"),
    state("nordvik-u02", 72, "online", None),
    window("nordvik-u02", 3, 60, 0, 6, (5, 5, 5)),
    window("nordvik-u02", 50, 60, 60, 60, None),  # two days ago: in the 7 days only
    state("elbe-u01", 10, "offline", None, site="elbe", gateway=GW_ELBE),
]


def status(asset_id: str, site: str, start_h: float, end_h: float, s: State,
           cause: Cause | None = None, fraction: float | None = None) -> StatusIntervalRow:
    """An interval from `start_h` to `end_h` hours before now."""
    return StatusIntervalRow(asset_id, site, NOW - round(start_h * HOUR),
                             NOW - round(end_h * HOUR), s, fraction, cause)


def episode(asset_id: str, start_h: float, end_h: float, s: State, cause: Cause
            ) -> UnavailabilityEpisode:
    return UnavailabilityEpisode(
        episode_id=f"{asset_id}:{start_h}", asset_id=asset_id, site_id="nordvik",
        start_ms=NOW - round(start_h * HOUR), end_ms=NOW - round(end_h * HOUR), state=s,
        cause=cause, lost_hours=start_h - end_h, lost_mwh=0.0)


# nordvik: u01-u04 Voltara VX-3, u05-u06 Brightmoor BM-Cube 2; inverters Ampyra AP-2500.
STATUS = [
    status("nordvik-u01", "nordvik", 240, 120, "available"),
    status("nordvik-u01", "nordvik", 120, 108, "unavailable", "fault"),
    status("nordvik-u01", "nordvik", 108, 0, "available"),
    status("nordvik-u01-i1", "nordvik", 240, 50, "available"),
    status("nordvik-u01-i1", "nordvik", 50, 45, "unavailable", "fault"),
    status("nordvik-u01-i1", "nordvik", 45, 0, "available"),
    status("nordvik-u02", "nordvik", 240, 0, "available"),
    status("nordvik-u05", "nordvik", 240, 192, "derated", "fault", 0.5),
    status("nordvik-u05", "nordvik", 192, 0, "available"),
]
EPISODES = [
    episode("nordvik-u01", 120, 108, "unavailable", "fault"),
    episode("nordvik-u01-i1", 50, 45, "unavailable", "fault"),
    episode("nordvik-u05", 240, 192, "derated", "fault"),
]


def minutes(asset_id: str, tag: str, start_ms: int, values: list[float]) -> list[TelemetryRow]:
    return [TelemetryRow(asset_id, "nordvik", tag, start_ms + i * MINUTE, 60, v, v, v, v)
            for i, v in enumerate(values)]


TELEMETRY = [
    *minutes("nordvik-u01", "active_power_kw", NOW - 100 * HOUR, [-1000.0] * 60),
    *minutes("nordvik-u01", "active_power_kw", NOW - 90 * HOUR, [900.0] * 60),
    *minutes("nordvik-u01", "soh_pct", NOW - 200 * HOUR, [95.0]),
    *minutes("nordvik-u01", "soh_pct", NOW - 20 * HOUR, [94.9]),
    *minutes("nordvik-u05", "active_power_kw", NOW - 80 * HOUR, [-500.0] * 30),
]


@pytest.fixture(scope="module")
def settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = fresh_settings(redis_url, tmp_path_factory.mktemp("comms-vendors-pages"))
    client: redis.Redis = redis.Redis.from_url(redis_url)
    # Each device's current state and last window, as the flows' Redis sink keeps them.
    for e in sorted(HEALTH, key=lambda e: e.ts_ms if isinstance(e, DeviceHealth)
                    else e.start_ms):
        key = (comms_state_key if isinstance(e, DeviceHealth) else comms_stats_key)(
            e.site_id or "unrouted")
        client.hset(key, e.device_id, e.model_dump_json())
    client.close()
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    history.write_device_health(HEALTH)
    history.write_status(STATUS)
    history.write_episodes(EPISODES)
    history.write_telemetry(TELEMETRY)
    history.close()
    return settings


def answer(server: LiveServer, settings: Settings, path: str, request: Request,
           user: str) -> dict[str, Any]:
    """The API's answer to exactly what the page asked."""
    got = httpx.get(f"{server.url}api/v1/analytics/{path}", params=asked(request), timeout=30,
                    headers={"Authorization": f"Bearer {token(settings, user)}"})
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


# The page's formats (web/src/format.ts, comms.ts, vendors.ts, faults.ts), with JavaScript's
# rounding: toFixed takes the exact binary value, a tie upwards; Math.round a half upwards.
def fixed(v: float | None, digits: int) -> str:
    if v is None:
        return "–"
    return str(Decimal(v).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def grouped(n: float) -> str:
    return f"{math.floor(n + 0.5):,}"


def rate(v: float | None) -> str:
    return "–" if v is None else f"{fixed(v * 100, 1)} %"


def latency(f: dict[str, Any]) -> str:
    values = [f["latency_p50_ms"], f["latency_p95_ms"], f["latency_max_ms"]]
    if all(v is None for v in values):
        return "–"
    return " · ".join("–" if v is None else grouped(v) for v in values) + " ms"


def hours_text(hours: dict[str, float]) -> str:
    parts = [f"{s} {fixed(hours[s], 1)} h" for s in ("offline", "degraded", "online")
             if hours.get(s, 0) > 0]
    return " · ".join(parts) or "–"


def reliability_hours(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{grouped(v)} h" if v >= 1000 else f"{fixed(v, 1)} h"


def vendor_cells(r: dict[str, Any]) -> list[str]:
    fade = r["fade_pct_per_year"]
    return [" · ".join(k.replace("_", " ") for k in r["key"]) or "all", str(r["assets"]),
            fixed(r["installed_mw"], 1), fixed(r["installed_mwh"], 1),
            "–" if r["availability_pct"] is None else f"{fixed(r['availability_pct'], 2)} %",
            fixed(r["lost_mwh_per_mwh"], 3), fixed(r["failures_per_mw_year"], 2),
            reliability_hours(r["reliability"]["mtbf_hours"]),
            reliability_hours(r["reliability"]["mttr_hours"]),
            "–" if r["efficiency_pct"] is None else f"{fixed(r['efficiency_pct'], 1)} %",
            fixed(r["cycles"], 2),
            "–" if fade is None else f"{fixed(fade, 2)} ({r['assets_with_fade']})"]


def cells(row: Locator) -> list[str]:
    return [t.strip() for t in row.locator("td").all_text_contents()]


def test_the_comms_page_shows_the_gateways_and_devices_the_api_answers(
        server: LiveServer, settings: Settings, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r) if "/analytics/comms" in r.url else None)
    open_page(page, server, settings, "admin", "#/analytics/faults")
    page.click(".analytics-tabs a[data-page=comms]")
    expect(page.locator("#view-title")).to_have_text("Controllers and comms")
    expect(page.locator(".main-nav a[aria-current=page]")).to_have_text("Analytics")
    expect(page.locator("button.span[data-window='1 d']")).to_have_attribute(
        "aria-pressed", "true")
    expect(page.locator(".view.comms .refresh")).not_to_have_text("loading…", timeout=LIVE_MS)
    query = asked(requests[-1])
    assert ms(query["to"]) - ms(query["from"]) == DAY and "site" not in query
    body = answer(server, settings, "comms", requests[-1], "admin")

    # The header is the answer's own `about`, with each source's freshness.
    about = page.locator(".analytics-about")
    expect(about.locator(".who")).to_have_text(body["about"]["audience"])
    expect(about.locator(".decision")).to_have_text(body["about"]["decision"])
    names = [s["name"] for s in body["about"]["sources"]]
    expect(about.locator(".sources li")).to_have_count(len(names))
    for name in names:
        expect(about.locator(".freshness")).to_contain_text(f"{name}: newest ")

    # The gateways, worst first, as answered: Elbe's (offline), then Nordvik's (online).
    assert [g["gateway"] for g in body["gateways"]] == [GW_ELBE, GW]
    sections = page.locator("section.comms-gateway")
    expect(sections).to_have_count(2)
    for i, g in enumerate(body["gateways"]):
        section = sections.nth(i)
        expect(section).to_have_attribute("data-gateway", g["gateway"])
        expect(section).to_have_attribute("data-state", g["state"])
        rows = section.locator("tr.comms-device")
        expect(rows).to_have_count(len(g["devices"]))
        for j, d in enumerate(g["devices"]):
            row = rows.nth(j)
            expect(row).to_have_attribute("data-device", d["device_id"])
            expect(row.locator(".chip.comms-state")).to_have_text(d["state"] or "unknown")
            expect(row.locator(".reason")).to_have_text(d["reason"] or "–")
            expect(row.locator(".latency")).to_have_text(latency(d["figures"]))
            expect(row.locator(".drop")).to_have_text(rate(d["figures"]["drop_rate"]))
            expect(row.locator(".retry")).to_have_text(rate(d["figures"]["retry_rate"]))
            expect(row.locator(".hours")).to_have_text(hours_text(d["hours"]))
            expect(row.locator(".comms-timeline")).to_have_attribute(
                "data-changes", str(len(d["changes"])))

    # The API's figures are the seeded ones: u01's two windows of the day, its three changes.
    u01 = next(d for d in body["gateways"][1]["devices"] if d["device_id"] == "nordvik-u01")
    assert u01["figures"]["polls"] == 120 and u01["figures"]["drop_rate"] == 0.25
    assert u01["figures"]["retry_rate"] == 0.375 and u01["figures"]["latency_max_ms"] == 1400
    assert u01["hours"]["offline"] == pytest.approx(2.0)
    assert u01["hours"]["degraded"] == pytest.approx(1.0)
    row = page.locator("tr.comms-device[data-device=nordvik-u01]")
    # p50 and p95: the windows' own weighted by their answered polls (60 and 30).
    expect(row.locator(".latency")).to_have_text("40 · 80 · 1,400 ms")
    expect(row.locator(".drop")).to_have_text("25.0 %")
    # Its timeline: online, degraded, offline, online again.
    spans = row.locator(".comms-timeline .span")
    assert [spans.nth(k).get_attribute("data-state") for k in range(spans.count())] == [
        "online", "degraded", "offline", "online"]

    # Seven days: u02's dropped window of two days ago counts now.
    page.click("button.span[data-window='7 d']")
    u02 = page.locator("tr.comms-device[data-device=nordvik-u02]")
    expect(u02.locator(".drop")).to_have_text("50.0 %", timeout=LIVE_MS)
    assert ms(asked(requests[-1])["to"]) - ms(asked(requests[-1])["from"]) == 7 * DAY
    assert "window=7%20d" in page.evaluate("location.hash")

    # One site: only its gateway.
    page.select_option("select.filter.site", "elbe")
    expect(sections).to_have_count(1)
    expect(sections.nth(0)).to_have_attribute("data-gateway", GW_ELBE)
    assert asked(requests[-1])["site"] == "elbe"


def test_the_vendors_page_shows_the_table_the_api_answers(
        server: LiveServer, settings: Settings, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r) if "/analytics/vendors" in r.url else None)
    open_page(page, server, settings, "nordvik-manager", "#/analytics/vendors")
    expect(page.locator("#view-title")).to_have_text("Vendor benchmarking")
    expect(page.locator(".analytics-about .who")).to_contain_text("procurement")
    table = page.locator("table.vendor-table")
    expect(table).to_have_attribute("data-level", "unit", timeout=LIVE_MS)
    query = asked(requests[-1])
    assert query["level"] == "unit" and ms(query["to"]) - ms(query["from"]) == 365 * DAY
    body = answer(server, settings, "vendors", requests[-1], "nordvik-manager")

    # The API's figures are the seeded ones: Voltara lost u01's 12 h and half of 5 h.
    voltara = next(r for r in body["vendors"] if r["key"] == ["Voltara"])
    assert voltara["reliability"]["failures"] >= 1
    assert voltara["lost_mwh"] == pytest.approx(2.5 * 14.5)
    assert voltara["efficiency_pct"] == pytest.approx(90.0)
    for s in body["sources"]:
        if s["latest_ms"] is None:
            expect(page.locator(".analytics-about .freshness")).to_contain_text(
                f"{s['name']} none in the window")
        else:
            expect(page.locator(".analytics-about .freshness")).to_contain_text(
                f"{s['name']} up to ")

    def shows(rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
        trs = table.locator("tbody tr")
        expect(trs).to_have_count(len(rows))
        for i, r in enumerate(rows):
            expect(trs.nth(i)).to_have_attribute("data-key", "/".join(r["key"]))
            assert cells(trs.nth(i)) == vendor_cells(r)
        assert cells(table.locator("tfoot tr")) == vendor_cells(total)

    shows(body["vendors"], body["total"])
    # By vendor and model: the same answer's other table, asked nothing more.
    asked_before = len(requests)
    page.click("button.by[data-by=model]")
    expect(table.locator("thead th").first).to_have_text("Vendor · model")
    expect(table).to_have_attribute("data-by", "model")
    shows(body["models"], body["total"])
    assert len(requests) == asked_before

    # Inverters over 90 days: asked again, and shown as answered.
    page.select_option("select.filter.level", "inverter")
    page.click("button.span[data-window='90 d']")
    expect(table).to_have_attribute("data-level", "inverter", timeout=LIVE_MS)
    expect(page.locator(".view.vendors .refresh")).not_to_have_text("loading…", timeout=LIVE_MS)
    query = asked(requests[-1])
    assert query["level"] == "inverter" and ms(query["to"]) - ms(query["from"]) == 90 * DAY
    inverters = answer(server, settings, "vendors", requests[-1], "nordvik-manager")
    assert [r["key"] for r in inverters["models"]] == [["Ampyra", "AP-2500"]]
    shows(inverters["models"], inverters["total"])
    assert "level=inverter" in page.evaluate("location.hash")


def test_the_warranty_pack_downloads_for_the_unit_shown(
        server: LiveServer, settings: Settings, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r) if "/warranty-pack" in r.url else None)
    open_page(page, server, settings, "nordvik-manager",
              "#/analytics/battery-health?site=nordvik&unit=nordvik-u01&window=90%20d")
    detail = page.locator(".unit-detail")
    expect(detail).to_have_attribute("data-unit", "nordvik-u01", timeout=LIVE_MS)
    with page.expect_download() as download:
        detail.locator("button.warranty-pdf").click()
    path = download.value.path()
    assert path is not None
    expect(detail.locator(".export-status")).to_have_text(
        f"downloaded {download.value.suggested_filename}")
    assert download.value.suggested_filename.startswith("warranty-nordvik-u01-")
    data = Path(path).read_bytes()
    assert data.startswith(b"%PDF")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert "nordvik-u01" in text
    query = asked(requests[-1])
    assert (query["unit"], query["format"]) == ("nordvik-u01", "pdf")
    assert ms(query["to"]) - ms(query["from"]) == 90 * DAY

    with page.expect_download() as workbook:
        detail.locator("button.warranty-xlsx").click()
    assert workbook.value.suggested_filename.endswith(".xlsx")
    assert Path(workbook.value.path() or "").read_bytes().startswith(b"PK")  # a zip: XLSX


def test_a_viewer_has_no_warranty_buttons_and_is_told_why(
        server: LiveServer, settings: Settings, page: Page) -> None:
    open_page(page, server, settings, "viewer",
              "#/analytics/battery-health?site=nordvik&unit=nordvik-u01")
    detail = page.locator(".unit-detail")
    expect(detail).to_have_attribute("data-unit", "nordvik-u01", timeout=LIVE_MS)
    expect(detail.locator("button.warranty-pack")).to_have_count(0)
    expect(detail.locator(".warranty-note")).to_contain_text("reports.export")
