"""`bessmon contracts evaluate` output (availability rules §7), JSON and CSV, checked value by value
against numbers worked out by hand.

Site alpha (Europe/Stockholm), two units of equal weight; the contract starts 2024-10-01, so
October 2026 opens contract year 3 (guarantee 97 %, LD 20,000 EUR per %, steps of 0.01 %).

October (745 h: summer time ends on the 25th), the site's grid outage of 12 h excluded:
    alpha-u01 derated to 0.7 for 10 h: L = 10 · 0.3 = 3 h, A = 1 − 3 / 733 = 99.591 %
    alpha-u02 faulted 24 h:            L = 24 h,           A = 1 − 24 / 733 = 96.726 %
    A = 1 − 27 / 1466 = 98.158 % ≥ 97 %: no LD
November (720 h):
    alpha-u01 available:               A = 100 %
    alpha-u02 faulted 96 h:            A = 1 − 96 / 720 = 86.667 %
    A = 1 − 96 / 1440 = 93.333 %; shortfall 3.667 → 3.66 · 20,000 = 73,200 EUR
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from contracts.contract import load_contract
from contracts.engine import evaluate
from contracts.fleet import load_fleet
from contracts.intervals import load_exclusions, load_status
from infra.cli import main
from tests.contracts.test_invalid_inputs import contract_text

FLEET = """\
sites:
  - id: alpha
    customer: Alpha AB
    region: SE3
    timezone: Europe/Stockholm
    units:
      - {id: alpha-u01, rated_power_kw: 2500, rated_energy_kwh: 5000, commissioned: 2024-09-20}
      - {id: alpha-u02, rated_power_kw: 1000, rated_energy_kwh: 2000, commissioned: 2024-09-20}
"""
STATUS = """\
asset_id,start,end,state,derate_fraction,cause
alpha-u01,2026-10-01T00:00:00+02:00,2026-10-05T00:00:00+02:00,available,,
alpha-u01,2026-10-05T00:00:00+02:00,2026-10-05T10:00:00+02:00,derated,0.7,
alpha-u01,2026-10-05T10:00:00+02:00,2026-12-01T00:00:00+01:00,available,,
alpha-u02,2026-10-01T00:00:00+02:00,2026-10-10T00:00:00+02:00,available,,
alpha-u02,2026-10-10T00:00:00+02:00,2026-10-11T00:00:00+02:00,unavailable,,fault
alpha-u02,2026-10-11T00:00:00+02:00,2026-11-02T00:00:00+01:00,available,,
alpha-u02,2026-11-02T00:00:00+01:00,2026-11-06T00:00:00+01:00,unavailable,,fault
alpha-u02,2026-11-06T00:00:00+01:00,2026-12-01T00:00:00+01:00,available,,
"""
EXCLUSIONS = """\
scope_id,start,end,reason
alpha,2026-10-20T00:00:00+02:00,2026-10-20T12:00:00+02:00,grid_outage
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    files = {"fleet.yaml": FLEET, "contract.yaml": contract_text(site="alpha",
                                                                 start="2024-10-01"),
             "status.csv": STATUS, "exclusions.csv": EXCLUSIONS}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def evaluate_argv(folder: Path, *extra: str) -> list[str]:
    return ["contracts", "evaluate", "--fleet", str(folder / "fleet.yaml"),
            "--contract", str(folder / "contract.yaml"), "--status", str(folder / "status.csv"),
            "--exclusions", str(folder / "exclusions.csv"), "--period", "2026-10..2026-11",
            *extra]


def test_hours_are_printed_without_float_noise(folder: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # At full precision 10 h · (1 − 0.7) is not 3: that is the noise the output rounds off.
    fleet = load_fleet(folder / "fleet.yaml")
    ev = evaluate(fleet, load_contract(folder / "contract.yaml"),
                  load_status(folder / "status.csv", fleet),
                  load_exclusions(folder / "exclusions.csv", fleet), "2026-10")
    assert ev.periods[0].units[0].totals.hours()[2] != 3.0

    assert main(evaluate_argv(folder)) == 0
    october = json.loads(capsys.readouterr().out)["periods"][0]
    assert october["units"][0] == {"asset_id": "alpha-u01", "window_hours": 745.0,
                                   "excluded_hours": 12.0, "lost_hours": 3.0,
                                   "availability_pct": 99.591}


def test_csv_rows_hold_the_hand_computed_values(folder: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(evaluate_argv(folder, "--csv")) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    october = ["LTSA-T", "EUR", "2026-10", "2026-10-01T00:00:00+02:00",
               "2026-11-01T00:00:00+01:00", "3", "98.158", "97.0", "0.0", "0.0", "0.0"]
    november = ["LTSA-T", "EUR", "2026-11", "2026-11-01T00:00:00+01:00",
                "2026-12-01T00:00:00+01:00", "3", "93.333", "97.0", "3.667", "73200.0", "0.0"]
    assert rows == [
        ["contract_id", "currency", "period", "start", "end", "contract_year",
         "availability_pct", "guaranteed_pct", "shortfall_pct", "ld", "bonus", "asset_id",
         "window_hours", "excluded_hours", "lost_hours", "unit_availability_pct"],
        [*october, "alpha-u01", "745.0", "12.0", "3.0", "99.591"],
        [*october, "alpha-u02", "745.0", "12.0", "24.0", "96.726"],
        [*november, "alpha-u01", "720.0", "0.0", "0.0", "100.0"],
        [*november, "alpha-u02", "720.0", "0.0", "96.0", "86.667"],
    ]
