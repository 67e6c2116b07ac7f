"""The compliance report (`bessmon report compliance`) in every format, from real input files
through the CLI, with the numbers a customer would check worked out by hand below.

Site alpha, Europe/Stockholm; October 2026 has 745 h (summer time ends on 25 October). The
contract starts 2024-03-15, so October 2026 lies in contract year 3 (from 2026-03-15), whose
guarantee is 98.5 %; units are weighted by rated energy: alpha-u01 w = 5000, alpha-u02 w = 3000.

October, alpha-u01: derated to 0.5 for 10 h (lost 5 h), a fault of 6 h (lost 6 h), scheduled
maintenance of 40 h of which 28 h are left of the 48 h allowance (20 h were used in June), so
12 h are lost; the site's grid outage of 5 h is excluded.
    T = 745, E = 28 + 5 = 33, L = 5 + 6 + 12 = 23, A_u01 = 1 − 23 / 712 = 96.770 %
October, alpha-u02: force majeure 2026-09-30 22:00 to 10-01 02:00 (2 h in October), a
maintenance window of 10 h (within its allowance), the grid outage of 5 h and 3 h of its own
status row with cause customer_request are excluded; an `environmental` window of 2 h has no
effect.
    T = 745, E = 2 + 10 + 5 + 3 = 20, L = 0, A_u02 = 100 %
    A = 1 − 5000·23 / (5000·712 + 3000·725) = 1 − 115,000 / 5,735,000 = 97.994769 %
    shortfall = 98.5 − 97.994769 = 0.505231 → billable 0.50 → uncapped 0.5 × 20,000 = 10,000 EUR
September: alpha-u01 faulted 24 h; alpha-u02 excluded 2 h (the force majeure's first 2 h):
    A = 1 − 5000·24 / (5000·720 + 3000·718) = 1 − 120,000 / 5,754,000 = 97.914494 %
    shortfall 0.585506 → billable 0.58 → LD 11,600 EUR
so of the 15,000 EUR cap of contract year 3, 3,400 EUR are left for October: LD = 3,400 EUR.
Bonus: April to August ran at 100 % (1 % over the 99 % threshold → 5,000 EUR each), so
25,000 EUR of the 50,000 EUR bonus cap are used before October.
Maintenance allowance in contract year 3 (48 h a unit): alpha-u01 used 20 h before October
and 28 h in it (0 h left); alpha-u02 none before and 10 h in October (38 h left)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet
from pypdf import PdfReader

from infra.cli import main

FLEET = """\
sites:
  - id: alpha
    name: Alpha Storage
    customer: Alpha Energi AB
    region: SE3
    timezone: Europe/Stockholm
    units:
      - {id: alpha-u01, rated_power_kw: 2500, rated_energy_kwh: 5000, commissioned: 2024-03-01}
      - {id: alpha-u02, rated_power_kw: 1500, rated_energy_kwh: 3000, commissioned: 2024-03-01}
  - id: beta
    customer: Beta GmbH
    region: DE
    timezone: Europe/Berlin
    units:
      - {id: beta-u01, rated_power_kw: 1000, rated_energy_kwh: 2000, commissioned: 2024-03-01}
"""

CONTRACT = """\
id: LTSA-ALPHA
site: alpha
start: 2024-03-15
term_years: 20
measurement_period: month
availability:
  weight: energy
  derate: pro_rata
  data_gap_policy: unavailable
  excluded_causes: [grid_outage, force_majeure, customer_request]
  maintenance_allowance_hours: 48
guarantee:
  default_pct: 97.0
  by_contract_year: {1: 98.0, 2: 98.0, 3: 98.5}
ld:
  currency: EUR
  step_pct: 0.01
  rate_per_pct: 20000
  cap_per_contract_year: 15000
bonus:
  threshold_pct: 99.0
  rate_per_pct: 5000
  cap_per_contract_year: 50000
early_warning_margin_pct: 0.5
"""

STATUS = """\
asset_id,start,end,state,derate_fraction,cause
alpha-u01,2026-03-01T00:00:00+01:00,2026-06-10T00:00:00+02:00,available,,
alpha-u01,2026-06-10T00:00:00+02:00,2026-06-10T20:00:00+02:00,unavailable,,scheduled_maintenance
alpha-u01,2026-06-10T20:00:00+02:00,2026-09-10T00:00:00+02:00,available,,
alpha-u01,2026-09-10T00:00:00+02:00,2026-09-11T00:00:00+02:00,unavailable,,fault
alpha-u01,2026-09-11T00:00:00+02:00,2026-10-05T08:00:00+02:00,available,,
alpha-u01,2026-10-05T08:00:00+02:00,2026-10-05T18:00:00+02:00,derated,0.5,
alpha-u01,2026-10-05T18:00:00+02:00,2026-10-12T06:00:00+02:00,available,,
alpha-u01,2026-10-12T06:00:00+02:00,2026-10-12T12:00:00+02:00,unavailable,,fault
alpha-u01,2026-10-12T12:00:00+02:00,2026-10-14T00:00:00+02:00,available,,
alpha-u01,2026-10-14T00:00:00+02:00,2026-10-15T16:00:00+02:00,unavailable,,scheduled_maintenance
alpha-u01,2026-10-15T16:00:00+02:00,2027-03-15T00:00:00+01:00,available,,
alpha-u02,2026-03-01T00:00:00+01:00,2026-10-26T09:00:00+01:00,available,,
alpha-u02,2026-10-26T09:00:00+01:00,2026-10-26T12:00:00+01:00,unavailable,,customer_request
alpha-u02,2026-10-26T12:00:00+01:00,2027-03-15T00:00:00+01:00,available,,
beta-u01,2026-03-01T00:00:00+01:00,2027-03-15T00:00:00+01:00,available,,
"""

# Listed in October: the first four. Not listed: beta's (another site) and November's.
EXCLUSIONS = """\
scope_id,start,end,reason
alpha,2026-10-22T08:00:00+02:00,2026-10-22T10:00:00+02:00,environmental
alpha-u02,2026-09-30T22:00:00+02:00,2026-10-01T02:00:00+02:00,force_majeure
alpha,2026-10-20T10:00:00+02:00,2026-10-20T15:00:00+02:00,grid_outage
alpha-u02,2026-10-08T08:00:00+02:00,2026-10-08T18:00:00+02:00,scheduled_maintenance
beta,2026-10-03T00:00:00+02:00,2026-10-04T00:00:00+02:00,grid_outage
alpha,2026-11-03T00:00:00+01:00,2026-11-04T00:00:00+01:00,grid_outage
"""


def write_inputs(folder: Path, *, status: str = STATUS, contract: str = CONTRACT) -> list[str]:
    files = {"fleet.yaml": FLEET, "contract.yaml": contract, "status.csv": status,
             "exclusions.csv": EXCLUSIONS}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return ["--fleet", str(folder / "fleet.yaml"), "--contract", str(folder / "contract.yaml"),
            "--status", str(folder / "status.csv"),
            "--exclusions", str(folder / "exclusions.csv")]


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    return write_inputs(tmp_path)


def report(inputs: list[str], out: Path, fmt: str, period: str = "2026-10",
           capsys: pytest.CaptureFixture[str] | None = None) -> Path:
    code = main(["report", "compliance", *inputs, "--period", period, "--format", fmt,
                 "--out", str(out)])
    assert code == 0
    if capsys is not None:
        assert capsys.readouterr().out == (f"wrote {out} (compliance report LTSA-ALPHA "
                                           f"{period}, {fmt})\n")
    return out


def csv_sections(text: str) -> dict[str, list[dict[str, str]]]:
    """The CSV's blocks: a row starting with `section` names the columns of those below."""
    sections: dict[str, list[dict[str, str]]] = {}
    columns: list[str] = []
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if row[0] == "section":
            columns = row
            continue
        sections.setdefault(row[0], []).append(dict(zip(columns, row, strict=True)))
    return sections


def rows_of(sheet: Worksheet, header_row: int = 1
            ) -> list[dict[str, object]]:
    titles = [str(c.value) for c in sheet[header_row]]
    return [dict(zip(titles, (c.value for c in row), strict=True))
            for row in sheet.iter_rows(min_row=header_row + 1)]


def test_xlsx_has_the_hand_computed_numbers_as_numbers(
        inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(inputs, tmp_path / "october.xlsx", "xlsx", capsys=capsys)
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Summary", "Units", "Exclusions", "Excluded time",
                             "Maintenance allowance", "LD computation"]

    summary = wb["Summary"]
    fields = {summary.cell(r, 1).value: summary.cell(r, 2).value for r in range(1, 13)}
    assert fields["Contract"] == "LTSA-ALPHA"
    assert fields["Site name"] == "Alpha Storage"
    assert fields["Customer"] == "Alpha Energi AB"
    assert fields["Time zone"] == "Europe/Stockholm"
    header_row = next(r for r in range(1, summary.max_row + 1)
                      if summary.cell(r, 1).value == "Period")
    assert summary.freeze_panes == f"A{header_row + 1}"
    assert summary.cell(header_row, 1).font.b
    [october] = rows_of(summary, header_row)
    assert october == {
        "Period": "2026-10", "Start (local)": "2026-10-01T00:00:00+02:00",
        "End (local)": "2026-11-01T00:00:00+01:00", "Contract year": 3,
        "Availability %": 97.995, "Guaranteed %": 98.5, "Shortfall %": 0.505,
        "LD": 3400.0, "Bonus": 0.0, "Currency": "EUR", "Early-warning margin %": 0.5}
    ld_cell = summary.cell(header_row + 1, 8)
    assert ld_cell.data_type == "n"
    assert ld_cell.number_format == "#,##0.00"

    units = wb["Units"]
    assert units.freeze_panes == "A2"
    assert all(cell.font.b for cell in units[1])
    u01, u02 = rows_of(units)
    assert u01["Unit"] == "alpha-u01"
    assert u01["Availability %"] == 96.77  # 1 − 23 / 712
    assert (u01["Window h (T)"], u01["Excluded h (E)"], u01["Lost h (L)"]) == (745, 33, 23)
    assert u01["Maintenance within allowance h"] == 28
    assert u01["Maintenance over allowance h"] == 12
    assert (u01["Derated h"], u01["Unavailable h"], u01["Excluded h"]) == (10, 6, 5)
    assert u01["Available h"] == 745 - 61
    assert (u02["Availability %"], u02["Excluded h (E)"], u02["Weight w"]) == (100, 20, 3000)
    assert u02["Excluded h"] == 2 + 5 + 3

    exclusions = rows_of(wb["Exclusions"])
    assert [(e["Scope"], e["Reason"], e["Hours in period"]) for e in exclusions] == [
        ("alpha-u02", "force_majeure", 2), ("alpha-u02", "scheduled_maintenance", 10),
        ("alpha", "grid_outage", 5), ("alpha", "environmental", 2)]

    excluded = rows_of(wb["Excluded time"])
    assert [(e["Unit"], e["Excluded through"], e["Reason or cause"], e["Hours"])
            for e in excluded] == [
        ("alpha-u01", "exclusion window", "grid_outage", 5),
        ("alpha-u02", "exclusion window", "force_majeure", 2),
        ("alpha-u02", "exclusion window", "grid_outage", 5),
        ("alpha-u02", "status row", "customer_request", 3)]
    allowance = rows_of(wb["Maintenance allowance"])
    assert [tuple(a.values()) for a in allowance] == [
        ("2026-10", "alpha-u01", 3, 48, 20, 28, 0), ("2026-10", "alpha-u02", 3, 48, 0, 10, 38)]

    steps = {(s["Part"], s["Quantity"]): s for s in rows_of(wb["LD computation"])}
    assert steps[("Availability", "∑ w·L")]["Value"] == 115_000
    assert steps[("Availability", "∑ w·(T − E)")]["Value"] == 5_735_000
    assert steps[("Availability", "A")]["Value"] == 97.994769
    assert steps[("Availability", "A")]["With this period's numbers"] == (
        "100 × (1 − 115,000.000000 / 5,735,000.000000)")
    assert steps[("LD", "shortfall")]["Value"] == 0.505231
    assert steps[("LD", "billable")]["With this period's numbers"] == (
        "floor(0.505231 / 0.01) · 0.01")
    assert steps[("LD", "billable")]["Value"] == 0.5
    assert steps[("LD", "uncapped LD")]["Value"] == 10_000
    assert steps[("LD", "cap left")]["With this period's numbers"] == (
        "15,000.00 − 11,600.00")
    assert steps[("LD", "cap left")]["Value"] == 3_400
    assert steps[("LD", "LD")]["Value"] == 3_400
    assert steps[("Bonus", "cap left")]["Value"] == 25_000


def test_csv_sections_over_a_range_carry_the_cap(inputs: list[str], tmp_path: Path) -> None:
    out = report(inputs, tmp_path / "autumn.csv", "csv", period="2026-09..2026-10")
    sections = csv_sections(out.read_text(encoding="utf-8"))

    [header] = sections["header"]
    assert (header["contract_id"], header["site_id"], header["region"]) == (
        "LTSA-ALPHA", "alpha", "SE3")
    assert header["periods"] == "2026-09..2026-10"

    summary = {row["period"]: row for row in sections["summary"]}
    assert list(summary) == ["2026-09", "2026-10"]
    assert (float(summary["2026-09"]["availability_pct"]), float(summary["2026-09"]["ld"])) == (
        97.914, 11_600)
    assert (float(summary["2026-10"]["availability_pct"]), float(summary["2026-10"]["ld"])) == (
        97.995, 3_400)
    assert summary["2026-10"]["shortfall_pct"] == "0.505"

    u01 = next(u for u in sections["unit"]
               if (u["period"], u["asset_id"]) == ("2026-10", "alpha-u01"))
    assert float(u01["availability_pct"]) == 96.77
    assert float(u01["class_maintenance_over_allowance_hours"]) == 12

    october = [e for e in sections["exclusion"] if e["period"] == "2026-10"]
    assert [(e["scope_id"], e["start"], e["hours_in_period"], e["effect"]) for e in october] == [
        ("alpha-u02", "2026-09-30T22:00:00+02:00", "2.0", "excluded (reason in excluded_causes)"),
        ("alpha-u02", "2026-10-08T08:00:00+02:00", "10.0",
         "maintenance (counts against the allowance)"),
        ("alpha", "2026-10-20T10:00:00+02:00", "5.0", "excluded (reason in excluded_causes)"),
        ("alpha", "2026-10-22T08:00:00+02:00", "2.0",
         "no effect (reason neither excluded nor scheduled_maintenance)")]
    september = [e for e in sections["exclusion"] if e["period"] == "2026-09"]
    assert [(e["scope_id"], e["hours_in_period"]) for e in september] == [("alpha-u02", "2.0")]

    # September's own status row is not excluded: only the force majeure window is.
    assert [(e["period"], e["asset_id"], e["through"], e["cause"], e["hours"])
            for e in sections["excluded_time"]] == [
        ("2026-09", "alpha-u02", "exclusion window", "force_majeure", "2.0"),
        ("2026-10", "alpha-u01", "exclusion window", "grid_outage", "5.0"),
        ("2026-10", "alpha-u02", "exclusion window", "force_majeure", "2.0"),
        ("2026-10", "alpha-u02", "exclusion window", "grid_outage", "5.0"),
        ("2026-10", "alpha-u02", "status row", "customer_request", "3.0")]
    # No maintenance in September: u01's 20 h of June are before both months.
    assert [(a["period"], a["asset_id"], a["used_before_hours"], a["used_in_period_hours"],
             a["remaining_hours"]) for a in sections["allowance"]] == [
        ("2026-09", "alpha-u01", "20.0", "0.0", "28.0"),
        ("2026-09", "alpha-u02", "0.0", "0.0", "48.0"),
        ("2026-10", "alpha-u01", "20.0", "28.0", "0.0"),
        ("2026-10", "alpha-u02", "0.0", "10.0", "38.0")]

    steps = {(s["period"], s["quantity"]): s for s in sections["computation"]}
    assert steps[("2026-09", "LD")]["numbers"] == "min(11,600.00, 15,000.00)"
    assert steps[("2026-09", "shortfall")]["numbers"] == "max(0, 98.500000 − 97.914494)"
    ld_billable = {s["period"]: s["numbers"] for s in sections["computation"]
                   if (s["part"], s["quantity"]) == ("LD", "billable")}
    assert ld_billable == {"2026-09": "floor(0.585506 / 0.01) · 0.01",
                           "2026-10": "floor(0.505231 / 0.01) · 0.01"}
    assert steps[("2026-10", "A")]["numbers"] == "100 × (1 − 115,000.000000 / 5,735,000.000000)"
    assert steps[("2026-10", "shortfall")]["numbers"] == "max(0, 98.500000 − 97.994769)"
    assert steps[("2026-10", "LD")]["numbers"] == "min(10,000.00, 3,400.00)"
    assert float(steps[("2026-10", "LD")]["value"]) == 3_400


def test_pdf_shows_sections_and_key_numbers(
        inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(inputs, tmp_path / "october.pdf", "pdf", capsys=capsys)
    pdf = PdfReader(out)
    width, height = pdf.pages[0].mediabox.width, pdf.pages[0].mediabox.height
    assert (round(width), round(height)) == (842, 595)  # A4 landscape
    text = "\n".join(page.extract_text() for page in pdf.pages)
    for title in ("Compliance report — LTSA-ALPHA, 2026-10", "Alpha Energi AB",
                  "Period 2026-10 — contract year 3", "Summary", "Units: hours by class",
                  "Exclusion windows", "Computation of availability, LD and bonus"):
        assert title in text
    for number in ("97.995", "96.770", "0.505", "97.994769", "115,000.000000",
                   "5,735,000.000000", "floor(0.505231 / 0.01) · 0.01",
                   "15,000.00 − 11,600.00", "min(10,000.00, 3,400.00)", "3,400.00",
                   "no effect (reason neither excluded nor", "customer_request",
                   "Maintenance allowance per unit and contract year"):
        assert number in text
    pages = len(pdf.pages)
    assert f"page {pages} of {pages}" in text


def test_the_same_input_gives_the_same_pdf(inputs: list[str], tmp_path: Path) -> None:
    first = report(inputs, tmp_path / "a.pdf", "pdf").read_bytes()
    assert report(inputs, tmp_path / "b.pdf", "pdf").read_bytes() == first


def test_a_period_without_counted_time_charges_nothing(tmp_path: Path) -> None:
    # No status at all and gaps excluded: every hour is excluded, A is undefined.
    contract = CONTRACT.replace("data_gap_policy: unavailable", "data_gap_policy: excluded")
    inputs = write_inputs(tmp_path, status=STATUS.splitlines()[0] + "\n", contract=contract)
    sections = csv_sections(report(inputs, tmp_path / "r.csv", "csv").read_text())
    [summary] = sections["summary"]
    assert (summary["availability_pct"], summary["shortfall_pct"], summary["ld"]) == (
        "", "", "0.0")
    steps = {s["quantity"]: s for s in sections["computation"]}
    assert steps["A"]["value"] == ""
    assert steps["A"]["numbers"] == "∑ w·(T − E) = 0: no time counts, A is undefined"
    assert steps["LD"]["value"] == "0.0"


@pytest.mark.parametrize(("file", "text", "message"), [
    ("status.csv", STATUS + "gamma-u01,2026-10-01T00:00:00+02:00,2026-10-02T00:00:00+02:00,"
     "available,,\n", "status.csv:17: asset_id: unknown asset 'gamma-u01'"),
    ("contract.yaml", CONTRACT.replace("measurement_period: month",
                                       "measurement_period: quarter"),
     "--period: period '2026-10' is a month, but the contract measures by quarter"),
])
def test_invalid_input_exits_2_with_the_evaluate_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, text: str,
        message: str) -> None:
    inputs = write_inputs(tmp_path)
    (tmp_path / file).write_text(text, encoding="utf-8")
    out = tmp_path / "r.pdf"
    assert main(["report", "compliance", *inputs, "--period", "2026-10", "--format", "pdf",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert main(["contracts", "evaluate", *inputs, "--period", "2026-10"]) == 2
    assert capsys.readouterr().err == err
    assert not out.exists()


@pytest.mark.parametrize("where", ["no-such-folder/r.xlsx", "."])
def test_an_unwritable_out_exits_2(inputs: list[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], where: str) -> None:
    out = tmp_path / where
    assert main(["report", "compliance", *inputs, "--period", "2026-10", "--format", "xlsx",
                 "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"bessmon: --out {out}: cannot write the report: ")
    assert captured.out == ""
