"""The battery-health page (#/analytics/battery-health) in a real headless Chromium (Debian's)
against the real API under uvicorn, with the built dashboard, a real Redis and a real history
store filled through its own write methods (as tests/e2e/test_analytics_dashboard.py runs it):
nordvik-u01 with 80 days of per-minute SOH and power of a known fade — 2 points of SOH a
year with time and 8 per 1,000 equivalent full cycles, cycling every other 20 days (so the two
can be told apart) — and its blocks' cell temperatures; nordvik-u02 with two SOH rows only.

The page lists nordvik's units soonest end of life first (u01, then the units without a fit),
its table sorts by another column on a click; u01's detail shows the fade rates with their
bands, the projected end-of-life date with its earliest and latest and the augmentation hint
exactly as the API answers them — and the API's rates are the seeded ones; u02's detail says
why there is no fit; the site, unit and window are kept in the address."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from connectors.history import SqliteHistoryStore, TelemetryRow
from connectors.settings import Settings
from tests.api.accounts import token
from tests.e2e.conftest import LIVE_MS, LiveServer, fresh_settings, open_page
from tests.e2e.test_analytics_dashboard import asked

pytestmark = pytest.mark.e2e
VIEWPORT = {"width": 1600, "height": 1000}
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
YEAR = 365.25 * DAY
NOW = (int(time.time() * 1000) // MINUTE) * MINUTE  # the minute under way when the module ran
DAYS = 80
START = NOW - DAYS * DAY
RATED_KWH = 5_000.0  # nordvik-u01's
POWER_KW = 1_500.0  # 0.3 C
CALENDAR_PER_YEAR = 2.0  # points of SOH
CYCLE_PER_1000_EFC = 8.0
SOH_START = 96.0
# The fit is exact on this linear fade; what is left is the buckets': each SOH bucket's mean
# placed at its middle, with the cycles counted from the power's coarser buckets. Measured:
# +0.002 % a year, −0.002 % per 1,000 EFC. Allowed: 1 % — a wrong EFC (a factor 2) or a lost
# regressor (the at-duty rate, 4.6 a year, shown as the calendar one) fails.
TOLERANCE = 0.01


def power_at(m: int) -> float:
    """Minute `m` after START: every other 20 days idle; else in each 12 hours, 3 h charging,
    3 h idle, 3 h discharging, 3 h idle (a sign never changes inside a power bucket)."""
    if (m // (20 * 1440)) % 2:
        return 0.0
    phase = (m % 720) // 180
    return -POWER_KW if phase == 0 else POWER_KW if phase == 2 else 0.0


def history_rows() -> list[TelemetryRow]:
    rows: list[TelemetryRow] = []
    throughput = 0.0  # kWh
    for m in range(DAYS * 1440):
        t = START + m * MINUTE
        efc = throughput / (2 * RATED_KWH)
        # The SOH in the middle of the minute: the cycles of half of it done.
        p = power_at(m)
        efc_mid = efc + abs(p) / 120 / (2 * RATED_KWH)
        soh = (SOH_START - CALENDAR_PER_YEAR * (t + MINUTE / 2 - START) / YEAR
               - CYCLE_PER_1000_EFC * efc_mid / 1000)
        rows += [TelemetryRow("nordvik-u01", "nordvik", "soh_pct", t, 1, soh, soh, soh, soh),
                 TelemetryRow("nordvik-u01", "nordvik", "active_power_kw", t, 1, p, p, p, p)]
        throughput += abs(p) / 60
        if m % 60 == 0:  # cell temperatures: hourly rows; the hottest block at 38 °C
            for block, temp in (("nordvik-u01-i1-b1", 30.0), ("nordvik-u01-i2-b1", 38.0)):
                rows.append(TelemetryRow(block, "nordvik", "cell_temp_max_c", t, 60, temp,
                                         temp, temp, temp))
    rows += [TelemetryRow("nordvik-u02", "nordvik", "soh_pct", NOW - d * DAY, 1, 91.0, 91.0,
                          91.0, 91.0) for d in (3, 2)]
    return rows


@pytest.fixture(scope="module")
def settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = fresh_settings(redis_url, tmp_path_factory.mktemp("battery-health-page"))
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    history.write_telemetry(history_rows())
    history.close()
    return settings


def rate_text(r: dict[str, float]) -> str:
    """A rate as the page writes it (web/src/battery-health.ts `rateText`)."""
    half = (r["high"] - r["low"]) / 2
    fine = math.ceil(-math.log10(half)) if half > 0 else 0
    d = min(4, max(1 if abs(r["value"]) >= 10 else 2, fine))
    return f"{r['value']:.{d}f} ({r['low']:.{d}f}–{r['high']:.{d}f})"


def answer_for(server: LiveServer, settings: Settings, request: Request) -> dict[str, Any]:
    """The API's answer to exactly what the page asked."""
    got = httpx.get(f"{server.url}api/v1/analytics/battery-health", params=asked(request),
                    timeout=30,
                    headers={"Authorization": f"Bearer {token(settings, 'nordvik-manager')}"})
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_the_page_shows_the_fitted_fade_and_projection_the_api_answers(
        server: LiveServer, settings: Settings, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r) if "/analytics/battery-health" in r.url
            else None)
    open_page(page, server, settings, "nordvik-manager", "#/analytics/faults")
    page.click(".analytics-tabs a[data-page=battery-health]")
    expect(page.locator("#view-title")).to_have_text("Battery health")
    expect(page.locator(".main-nav a[aria-current=page]")).to_have_text("Analytics")
    expect(page.locator(".analytics-about .who")).to_contain_text("Asset owners")
    expect(page.locator(".analytics-about .decision")).to_contain_text("warranty")

    page.select_option("select.filter.site", "nordvik")
    page.click("button.span[data-window='90 d']")
    expect(page.locator("button.span[data-window='90 d']")).to_have_attribute(
        "aria-pressed", "true")
    rows = page.locator("table.unit-health-table tr.unit-health")
    expect(rows).to_have_count(6, timeout=LIVE_MS)  # nordvik's units
    expect(page.locator(".view.battery-health .refresh")).not_to_have_text("loading…",
                                                                          timeout=LIVE_MS)
    query = asked(requests[-1])
    assert query["site"] == "nordvik"
    assert query["to"] > query["from"]
    answer = answer_for(server, settings, requests[-1])
    units = {u["unit_id"]: u for u in answer["units"]}
    u01 = units["nordvik-u01"]
    fit = u01["fit"]
    # The API's rates are the seeded ones.
    assert fit["method"] == "time_and_cycles"
    assert fit["per_year"]["value"] == pytest.approx(CALENDAR_PER_YEAR, rel=TOLERANCE)
    assert fit["per_1000_efc"]["value"] == pytest.approx(CYCLE_PER_1000_EFC, rel=TOLERANCE)
    projection = u01["projection"]
    assert projection["date"] is not None and projection["threshold_pct"] == 70.0

    # Soonest end of life first: u01, the only one with a fit; the others after it.
    expect(rows.nth(0)).to_have_attribute("data-unit", "nordvik-u01")
    expect(rows.nth(0).locator(".eol")).to_have_text(projection["date"])
    expect(rows.nth(0).locator(".per-year")).to_have_text(rate_text(fit["at_duty_per_year"]))
    expect(rows.nth(0).locator(".per-efc")).to_have_text(rate_text(fit["per_1000_efc"]))
    expect(page.locator("table.unit-health-table tr[data-fit=none]")).to_have_count(5)

    # u01's detail: exactly what the API answers.
    rows.nth(0).click()
    detail = page.locator(".unit-detail")
    expect(detail).to_have_attribute("data-unit", "nordvik-u01")
    expect(detail.locator(".per-year")).to_have_text(f"{rate_text(fit['per_year'])} points")
    expect(detail.locator(".per-efc")).to_have_text(f"{rate_text(fit['per_1000_efc'])} points")
    expect(detail.locator(".eol-date")).to_have_text(projection["date"])
    expect(detail.locator(".eol-band")).to_have_text(
        f"{projection['earliest']} · {projection['latest'] or 'open'}")
    expect(detail.locator(".threshold")).to_contain_text("70 %")
    assert u01["augmentation"] is not None  # the contract runs to 2045: well past 70 %
    expect(detail.locator(".augmentation")).to_contain_text(u01["augmentation"]["text"])
    chart = detail.locator(".chart.soh")
    expect(chart).to_have_attribute("data-state", "ready")
    expect(chart).to_have_attribute("data-points", str(len(u01["soh"])))
    expect(chart.locator("canvas").first).to_be_attached()
    # The exposure: every hour at the hottest block's 38 °C; the C-rate bands as answered.
    hottest = detail.locator("table.temperature tr[data-band='35–45 °C']")
    expect(hottest.locator(".share")).to_have_text("100 %")
    expect(detail.locator("table.c-rate tbody tr")).to_have_count(len(u01["c_rate_hours"]))
    cycling = next(b for b in u01["c_rate_hours"] if b["label"] == "0.25–0.5 C")
    assert cycling["hours"] == pytest.approx(DAYS / 2 * 12, rel=0.05)  # 12 h a cycling day
    expect(detail.locator("table.c-rate tr[data-band='0.25–0.5 C'] td").nth(1)).to_have_text(
        f"{cycling['hours']:.1f}")
    assert "unit=nordvik-u01" in page.evaluate("location.hash")
    assert "window=90%20d" in page.evaluate("location.hash")

    # u02: two SOH rows, no fit — and the page says why.
    page.click("table.unit-health-table tr[data-unit=nordvik-u02] button.pick")
    expect(detail).to_have_attribute("data-unit", "nordvik-u02")
    reason = units["nordvik-u02"]["no_fit_reason"]
    assert reason.startswith("2 SOH samples")
    expect(detail.locator(".fit-reasons")).to_have_text(reason)
    expect(detail.locator(".eol-date")).to_have_text("no fit")

    # Sorted by unit, descending on a second click: u06 first.
    page.click("button.sort[data-sort=unit]")
    page.click("button.sort[data-sort=unit]")
    expect(rows.nth(0)).to_have_attribute("data-unit", "nordvik-u06")
    expect(page.locator("th:has(button.sort[data-sort=unit])")).to_have_attribute(
        "aria-sort", "descending")


def test_a_link_opens_the_unit_and_window_it_names(
        server: LiveServer, settings: Settings, page: Page) -> None:
    open_page(page, server, settings, "admin",
              "#/analytics/battery-health?site=nordvik&unit=nordvik-u01&window=400%20d")
    expect(page.locator("button.span[data-window='400 d']")).to_have_attribute(
        "aria-pressed", "true")
    expect(page.locator("select.filter.site")).to_have_value("nordvik")
    detail = page.locator(".unit-detail")
    expect(detail).to_have_attribute("data-unit", "nordvik-u01", timeout=LIVE_MS)
    expect(detail.locator(".per-efc")).to_contain_text("points")
    per_efc = float((detail.locator(".per-efc").text_content() or "").split()[0])
    assert per_efc == pytest.approx(CYCLE_PER_1000_EFC, rel=TOLERANCE)
    expect(page.locator("table.unit-health-table tr[aria-selected=true]")).to_have_attribute(
        "data-unit", "nordvik-u01")
