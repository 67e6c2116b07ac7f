"""The warranty evidence pack (api/routes/warranty.py) on the real app, a real Redis and the
embedded history store, with one day of nordvik-u01 written by hand (per minute) so that every
figure can be computed by hand: the workbook read back with openpyxl and the PDF with pypdf
give those figures, their terms from the contract file and the verdicts; the data sheets hold
the buckets and intervals behind them; the download is audited; scope, permission and every
invalid request are refused as documented."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader

from api.main import create_app
from connectors.audit import AuditLog
from connectors.history import SqliteHistoryStore, StatusIntervalRow, TelemetryRow
from connectors.settings import EXAMPLE_CONTRACTS, Settings
from tests.api.accounts import auth
from tests.api.errors import assert_refused

UNIT, SITE = "nordvik-u01", "nordvik"
B1, B2 = "nordvik-u01-i1-b1", "nordvik-u01-i1-b2"
T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
MIN = 60_000
FROM, TO = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
URL = f"/api/v1/analytics/warranty-pack?unit={UNIT}&from={FROM}&to={TO}"
WARRANTY = """warranty:
  end_of_life_soh_pct: 70.0
  max_efc_per_year: 300.0
  max_average_c_rate: 0.5
  operating_temperature_c: {min: 5.0, max: 45.0}
  soc_window_pct: {min: 5.0, max: 95.0}
  min_soh_pct_by_year: {1: 98.0, 2: 95.0, 3: 93.0}
"""


def power(minute: int) -> float:
    """Two hours discharging at 2.5 MW (0.5 C), two charging at 2 MW (0.4 C), then idle."""
    return 2500.0 if minute < 120 else -2000.0 if minute < 240 else 0.0


def day() -> list[TelemetryRow]:
    rows: list[TelemetryRow] = []

    def row(asset: str, tag: str, minute: int, value: float) -> TelemetryRow:
        return TelemetryRow(asset, SITE, tag, T0 + minute * MIN, 1, value, value, value, value)

    for m in range(1440):
        hot = 46.0 if 600 <= m < 630 else 47.0 if 900 <= m < 910 else 30.0
        rows += [row(UNIT, "active_power_kw", m, power(m)),
                 row(UNIT, "soh_pct", m, 95.0 if m < 720 else 94.9),
                 row(UNIT, "soc_pct", m, 3.0 if 1000 <= m < 1010 else 50.0),
                 row(B1, "cell_temp_max_c", m, 30.0), row(B2, "cell_temp_max_c", m, hot)]
    return rows


STATUS = [StatusIntervalRow(UNIT, SITE, T0, T0 + 1200 * MIN, "available"),
          StatusIntervalRow(UNIT, SITE, T0 + 1200 * MIN, T0 + 1320 * MIN, "unavailable",
                            cause="fault"),
          StatusIntervalRow(UNIT, SITE, T0 + 1320 * MIN, None, "available")]


@pytest.fixture(scope="module")
def api(redis_url: str, accounts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient, Settings]]:
    users, key = accounts
    run_dir = tmp_path_factory.mktemp("warranty")
    contracts = run_dir / "contracts"
    shutil.copytree(EXAMPLE_CONTRACTS, contracts)
    with (contracts / "nordvik.yaml").open("a", encoding="utf-8") as f:
        f.write(WARRANTY)
    settings = Settings(REDIS_URL=redis_url, run_dir=run_dir, users_file=users,
                        jwt_key_file=key, contracts_dir=contracts)
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    history.write_telemetry(day())
    history.write_status(STATUS)
    with TestClient(create_app(settings)) as client:
        yield client, settings
    history.close()


# By hand: 5 MWh discharged + 4 MWh charged = 9 MWh = 0.9 cycles of the 5 MWh unit, over a
# day of power data: 328.725 a year (> 300). C-rate over the 4 operating hours: 0.45 (≤ 0.5).
# SOH 95.0 → 94.9 in year of service 2 (commissioned 2024-03-01): below its 95 %. Hottest cell
# above 45 °C twice (30 and 10 minutes); SOC below 5 % once (10 minutes). Available 22 of 24 h
# (the 2 h fault are lost): 91.667 %, below contract year 1's 98.5 %.
EXPECTED: dict[str, tuple[float, str, str]] = {
    "Availability": (100 * 22 / 24, "≥ 98.5 % (contract year 1)", "outside the term"),
    "Energy throughput (charged + discharged)": (9.0, "—", "no term"),
    "Energy discharged": (5.0, "—", "no term"),
    "Energy charged": (4.0, "—", "no term"),
    "Equivalent full cycles": (0.9, "—", "no term"),
    "Equivalent full cycles a year (annualised)": (0.9 * 365.25, "≤ 300 /year",
                                                   "outside the term"),
    "Average C-rate while operating": (0.45, "≤ 0.5 C", "within the term"),
    "State of health at the start": (95.0, "—", "no term"),
    "State of health at the end": (94.9, "≥ 95 % (year of service 2, listed year 2)",
                                   "outside the term"),
    "Hottest cell: time outside the allowed range": (40 / 60, "5–45 °C", "outside the term"),
    "Hottest cell: excursions": (2, "5–45 °C", "outside the term"),
    "Hottest cell: longest excursion": (0.5, "5–45 °C", "outside the term"),
    "State of charge: time outside the allowed range": (10 / 60, "5–95 %", "outside the term"),
    "State of charge: excursions": (1, "5–95 %", "outside the term"),
    "State of charge: longest excursion": (10 / 60, "5–95 %", "outside the term"),
}


def download(client: TestClient, settings: Settings, fmt: str,
             user: str = "nordvik-manager") -> bytes:
    answer = client.get(f"{URL}&format={fmt}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    content: bytes = answer.content
    return content


def sheet_rows(wb: Any, name: str) -> list[tuple[Any, ...]]:
    return list(wb[name].iter_rows(values_only=True))


def test_the_workbook_holds_the_hand_computed_figures_and_the_data_behind_them(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    wb = load_workbook(io.BytesIO(download(client, settings, "xlsx")))
    assert wb.sheetnames == ["Summary", "Power", "SOH", "Hottest cell", "SOC", "Excursions",
                             "Status intervals", "Availability hours", "Warranty terms"]
    summary = sheet_rows(wb, "Summary")
    head = dict((r[0], r[1]) for r in summary[:9])
    assert head["Unit"] == UNIT and head["Contract"] == "LTSA-NORDVIK"
    assert head["Bucket width"] == "1 min"
    top = next(i for i, r in enumerate(summary) if r[0] == "Figure")
    figures = {r[0]: r for r in summary[top + 1:]}
    assert set(figures) == set(EXPECTED)
    for title, (value, term, verdict) in EXPECTED.items():
        row = figures[title]
        assert row[1] == pytest.approx(value), title
        assert (row[3], row[4]) == (term, verdict), title
    # The data behind the figures.
    power = sheet_rows(wb, "Power")[1:]
    assert len(power) == 1440 and power[0][:3] == ("2026-03-01 00:00 UTC", 1, 2500.0)
    assert sum(r[3] for r in power) == pytest.approx(9000.0)
    assert power[-1][4] == pytest.approx(0.9)
    hot = sheet_rows(wb, "Hottest cell")[1:]
    assert sum(1 for r in hot if r[3] == "above") == 40
    excursions = sheet_rows(wb, "Excursions")[1:]
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in excursions] == [
        ("Hottest cell °C", "2026-03-01 10:00 UTC", "2026-03-01 10:30 UTC", "above", 46.0),
        ("Hottest cell °C", "2026-03-01 15:00 UTC", "2026-03-01 15:10 UTC", "above", 47.0),
        ("State of charge %", "2026-03-01 16:40 UTC", "2026-03-01 16:50 UTC", "below", 3.0)]
    intervals = sheet_rows(wb, "Status intervals")[1:]
    assert [(r[0], r[3], r[5]) for r in intervals] == [
        (UNIT, "available", None), (UNIT, "unavailable", "fault"), (UNIT, "available", None)]
    hours = dict(sheet_rows(wb, "Availability hours")[1:])
    assert hours["Available"] == pytest.approx(22.0)
    assert hours["Unavailable"] == pytest.approx(2.0)
    terms = dict(sheet_rows(wb, "Warranty terms")[1:])
    assert terms["max_efc_per_year"] == 300.0
    assert terms["min_soh_pct_by_year"] == "year 1: 98 %, year 2: 95 %, year 3: 93 %"


def test_the_pdf_holds_the_summary_verdicts_and_method(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    data = download(client, settings, "pdf")
    assert data.startswith(b"%PDF")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    text = " ".join(text.split())
    for needle in (f"Warranty evidence pack — {UNIT}", "91.667", "328.725", "0.450",
                   "94.900", "≥ 98.5 % (contract year 1)", "≤ 300 /year", "5–45 °C",
                   "within the term", "outside the term", "Method",
                   "Verdict: outside the term: Availability;"):
        assert needle in text, needle
    # The same data, the same file: nothing time-dependent is written.
    assert download(client, settings, "pdf") == data


def test_the_download_is_audited(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    audit = AuditLog(client.app.state.ctx.store)  # type: ignore[attr-defined]
    before = len(audit.entries(limit=100_000))
    answer = client.get(f"{URL}&format=xlsx", headers=auth(settings, "nordvik-manager"))
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == \
        f'attachment; filename="warranty-{UNIT}-2026-03-01-2026-03-02.xlsx"'
    entries = audit.entries(limit=100_000)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.actor, entry.action, entry.target) == ("nordvik-manager", "report.download",
                                                         UNIT)
    assert entry.details == {"report": "warranty-pack", "from": FROM, "to": TO,
                             "format": "xlsx", "bytes": len(answer.content)}


def test_scope_and_permission(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    audit = AuditLog(client.app.state.ctx.store)  # type: ignore[attr-defined]
    before = len(audit.entries(limit=100_000))
    other = f"/api/v1/analytics/warranty-pack?unit=elbe-u01&from={FROM}&to={TO}"
    assert_refused(client.get(other, headers=auth(settings, "nordvik-manager")), 404,
                   "no asset 'elbe-u01'")
    assert_refused(client.get(other.replace("elbe-u01", "nowhere-u9"),
                              headers=auth(settings, "nordvik-manager")), 404,
                   "no asset 'nowhere-u9'")
    assert_refused(client.get(URL, headers=auth(settings, "viewer")), 403,
                   "role viewer may not reports.export")
    assert client.get(URL).status_code == 401
    assert len(audit.entries(limit=100_000)) == before  # nothing refused is audited
    # A unit of a site without a warranty section: figures without terms.
    wb = load_workbook(io.BytesIO(client.get(
        other + "&format=xlsx", headers=auth(settings, "admin")).content))
    summary = sheet_rows(wb, "Summary")
    verdicts = {r[4] for r in summary[summary.index(next(
        r for r in summary if r[0] == "Figure")) + 1:]}
    assert verdicts <= {"no term", "no data"}


@pytest.mark.parametrize(("query", "named"), [
    (f"from={FROM}&to={TO}", "query.unit"),
    (f"unit=&from={FROM}&to={TO}", "query.unit"),
    (f"unit=nordvik-u01-i1&from={FROM}&to={TO}", "query.unit"),  # an inverter
    (f"unit={UNIT}&from={FROM}", "query.to"),
    (f"unit={UNIT}&from=yesterday&to={TO}", "query.from"),
    (f"unit={UNIT}&from={TO}&to={FROM}", "query.to"),
    (f"unit={UNIT}&from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "query.to"),
    (f"unit={UNIT}&from={FROM}&to={TO}&format=csv", "query.format"),
])
def test_invalid_requests_are_refused_naming_the_parameter(
        api: tuple[TestClient, Settings], query: str, named: str) -> None:
    client, settings = api
    assert_refused(client.get(f"/api/v1/analytics/warranty-pack?{query}",
                              headers=auth(settings, "admin")), 422, named)
