"""The pure part of the scheduled reports (contracts/reporting.py): which periods are due,
the fingerprint of a report's inputs, the differences between versions, the e-mails' texts
and the reports configuration."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from contracts.contract import Contract, parse_contract
from contracts.errors import InvalidInput
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.periods import ContractCalendar, PeriodKind, to_us
from contracts.reporting import (
    DEFAULT_ATTACH_MAX_BYTES,
    ENGINE_VERSION,
    ReportsConfig,
    attachments_fit,
    default_archive_start,
    differences,
    differences_line,
    due_periods,
    fingerprint,
    parse_reports_config,
    summary_day_due,
    too_large_line,
    version_email,
)

H = 3_600_000_000
STOCKHOLM = ZoneInfo("Europe/Stockholm")

CONTRACT = """\
id: LTSA-ALPHA
site: alpha
start: 2025-10-01
term_years: 20
measurement_period: month
availability:
  weight: energy
  derate: pro_rata
  data_gap_policy: unavailable
  excluded_causes: [grid_outage]
  maintenance_allowance_hours: 48
guarantee:
  default_pct: 97.0
ld:
  currency: EUR
  step_pct: 0.01
  rate_per_pct: 20000
  cap_per_contract_year: 400000
early_warning_margin_pct: 0.5
"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> int:
    return to_us(dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC))


def labels(cal: ContractCalendar, kind: PeriodKind, now_us: int, delay_h: float,
           start_us: int) -> list[str]:
    return [p.label for p in due_periods(cal, kind, now_us, round(delay_h * H), start_us)]


# -- due periods -------------------------------------------------------------------------------


def test_a_month_is_due_its_settlement_delay_after_its_local_end() -> None:
    """October 2026 in Stockholm ends 2026-11-01 00:00+01:00 = 2026-10-31 23:00 UTC: with
    48 h of settlement it is due at 2026-11-02 23:00 UTC, an hour before a UTC month would."""
    cal = ContractCalendar(dt.date(2025, 10, 1), 20, STOCKHOLM)
    start = default_archive_start(cal, utc(2026, 10, 15))
    assert start == to_us(dt.datetime(2026, 10, 1, tzinfo=STOCKHOLM))  # contract year 2
    assert labels(cal, "month", utc(2026, 11, 2, 22, 59, 59), 48, start) == []
    assert labels(cal, "month", utc(2026, 11, 2, 23), 48, start) == ["2026-10"]
    # without a delay, at the very end of the month
    assert labels(cal, "month", utc(2026, 10, 31, 23), 0, start) == ["2026-10"]
    assert labels(cal, "month", utc(2026, 10, 31, 22, 59), 0, start) == []
    # the archive's start keeps September (contract year 1) out
    assert labels(cal, "month", utc(2027, 1, 10), 48, start) == ["2026-10", "2026-11",
                                                                 "2026-12"]


def test_quarters_from_a_configured_start() -> None:
    cal = ContractCalendar(dt.date(2024, 7, 1), 20, ZoneInfo("Europe/Berlin"))
    start = to_us(dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Berlin")))
    assert labels(cal, "quarter", utc(2026, 10, 5), 24, start) == ["2026-Q1", "2026-Q2",
                                                                   "2026-Q3"]
    # Q3 ends 2026-10-01 00:00+02:00 = 2026-09-30 22:00 UTC; 24 h later it is due
    assert labels(cal, "quarter", utc(2026, 10, 1, 21, 59), 24, start) == ["2026-Q1",
                                                                           "2026-Q2"]
    # a start in the middle of a quarter keeps that quarter (it ends after the start)
    mid = to_us(dt.datetime(2026, 5, 15, tzinfo=ZoneInfo("Europe/Berlin")))
    assert labels(cal, "quarter", utc(2026, 10, 5), 24, mid) == ["2026-Q2", "2026-Q3"]
    # a start exactly at a quarter's end keeps that quarter out
    at_end = to_us(dt.datetime(2026, 7, 1, tzinfo=ZoneInfo("Europe/Berlin")))
    assert labels(cal, "quarter", utc(2026, 10, 5), 24, at_end) == ["2026-Q3"]


def test_contract_years_from_a_29_february_start() -> None:
    tz = ZoneInfo("America/Phoenix")
    cal = ContractCalendar(dt.date(2024, 2, 29), 20, tz)
    # CY1 ends 2025-02-28 00:00 local, CY2 2026-02-28 00:00 local (UTC−7)
    assert labels(cal, "contract_year", utc(2026, 2, 28, 12), 24, cal.start_us) == ["CY1"]
    assert labels(cal, "contract_year", utc(2026, 3, 1, 7), 24, cal.start_us) == ["CY1",
                                                                                  "CY2"]
    assert labels(cal, "contract_year", utc(2026, 3, 1, 6, 59), 24, cal.start_us) == ["CY1"]
    # the default start: the current contract year, which has not closed
    start = default_archive_start(cal, utc(2026, 3, 1, 7))
    assert labels(cal, "contract_year", utc(2026, 3, 1, 7), 24, start) == []


def test_periods_stay_within_the_contract_term() -> None:
    """A one-year term from 15 January: the first and last months lie partly within it
    and are reported; nothing after the term, however late `now` is."""
    cal = ContractCalendar(dt.date(2025, 1, 15), 1, ZoneInfo("UTC"))
    due = labels(cal, "month", utc(2030, 1, 1), 48, cal.start_us)
    assert due[0] == "2025-01" and due[-1] == "2026-01" and len(due) == 13
    assert labels(cal, "contract_year", utc(2030, 1, 1), 48, cal.start_us) == ["CY1"]
    # before the contract starts nothing is due
    assert labels(cal, "month", utc(2024, 12, 1), 0, cal.start_us) == []
    # after the term, the default start is the last contract year's
    assert default_archive_start(cal, utc(2030, 1, 1)) == cal.start_us
    assert default_archive_start(cal, utc(2020, 1, 1)) == cal.start_us


def test_a_start_after_the_term_gives_nothing_and_a_negative_delay_is_refused() -> None:
    cal = ContractCalendar(dt.date(2025, 1, 1), 1, ZoneInfo("UTC"))
    assert labels(cal, "month", utc(2030, 1, 1), 0, utc(2026, 6, 1)) == []
    with pytest.raises(ValueError, match="negative"):
        due_periods(cal, "month", utc(2030, 1, 1), -1, cal.start_us)


# -- fingerprints ------------------------------------------------------------------------------


def contract(extra: str = "", text: str = CONTRACT) -> Contract:
    return parse_contract(text + extra, "c.yaml")


IVS = [StatusInterval("alpha-u01", 0, 10 * H, "available"),
       StatusInterval("alpha-u01", 10 * H, 12 * H, "derated", 0.5),
       StatusInterval("alpha-u02", 0, 12 * H, "unavailable", None, "fault")]
WINDOWS = [ExclusionWindow("alpha", 2 * H, 3 * H, "grid_outage")]


def test_the_fingerprint_does_not_depend_on_order() -> None:
    c = contract()
    a = fingerprint(c, "2026-10", IVS, WINDOWS)
    assert len(a) == 64 and int(a, 16) >= 0
    assert fingerprint(c, "2026-10", list(reversed(IVS)), WINDOWS) == a
    assert fingerprint(c, "2026-10", IVS, WINDOWS, engine_version=ENGINE_VERSION) == a


@pytest.mark.parametrize("change", [
    "interval end", "state", "derate", "cause", "late interval", "window", "period",
    "engine", "terms"])
def test_every_input_changes_the_fingerprint(change: str) -> None:
    c = contract()
    base = fingerprint(c, "2026-10", IVS, WINDOWS)
    ivs, windows, period, engine, terms = list(IVS), list(WINDOWS), "2026-10", ENGINE_VERSION, c
    if change == "interval end":
        ivs[0] = StatusInterval("alpha-u01", 0, 9 * H, "available")
    elif change == "state":
        ivs[0] = StatusInterval("alpha-u01", 0, 10 * H, "unknown")
    elif change == "derate":
        ivs[1] = StatusInterval("alpha-u01", 10 * H, 12 * H, "derated", 0.6)
    elif change == "cause":
        ivs[2] = StatusInterval("alpha-u02", 0, 12 * H, "unavailable", None, "grid_outage")
    elif change == "late interval":
        ivs.append(StatusInterval("alpha-u01", 12 * H, 13 * H, "available"))
    elif change == "window":
        windows.append(ExclusionWindow("alpha-u02", 0, H, "grid_outage"))
    elif change == "period":
        period = "2026-11"
    elif change == "engine":
        engine = "availability-rules/2"
    else:
        terms = contract(text=CONTRACT.replace("default_pct: 97.0", "default_pct: 97.5"))
    assert fingerprint(terms, period, ivs, windows, engine_version=engine) != base


def test_recipients_are_no_input_of_the_report() -> None:
    plain = contract()
    told = contract("report_recipients: [ops@alpha.example, cfo@alpha.example]\n")
    assert told.report_recipients == ("ops@alpha.example", "cfo@alpha.example")
    assert fingerprint(plain, "2026-10", IVS) == fingerprint(told, "2026-10", IVS)


def test_a_recipient_must_be_an_address() -> None:
    with pytest.raises(InvalidInput, match=r"c.yaml:20: report_recipients\[0\]: 'ops' is "
                                           "not an email address"):
        contract("report_recipients: [ops]\n")


# -- differences -------------------------------------------------------------------------------


def period(pct: float | None, ld: float, u1: float | None, lost: float = 0.0,
           excluded: float = 0.0) -> dict[str, object]:
    return {"period": "2026-10", "availability_pct": pct, "guaranteed_pct": 97.0,
            "shortfall_pct": None if pct is None else max(0.0, round(97.0 - pct, 3)),
            "ld": ld, "bonus": 0.0,
            "units": [{"asset_id": "alpha-u01", "window_hours": 745.0,
                       "excluded_hours": excluded, "lost_hours": lost,
                       "availability_pct": u1},
                      {"asset_id": "alpha-u02", "window_hours": 745.0,
                       "excluded_hours": 0.0, "lost_hours": 0.0, "availability_pct": 100.0}]}


def test_the_differences_name_each_changed_figure() -> None:
    before = period(96.4, 12000.0, 92.8, lost=53.6)
    after = period(98.3, 0.0, 96.6, lost=24.0, excluded=29.6)
    diffs = differences(before, after, "EUR")
    assert [d.text for d in diffs] == [
        "availability 96.400 % → 98.300 %",
        "shortfall 0.600 pp → 0.000 pp",
        "LD EUR 12,000.00 → EUR 0.00",
        "alpha-u01 availability 92.800 % → 96.600 %",
        "alpha-u01 excluded 0.000 h → 29.600 h",
        "alpha-u01 lost 53.600 h → 24.000 h",
    ]
    assert (diffs[2].scope, diffs[2].field, diffs[2].before, diffs[2].after) == (
        "contract", "ld", 12000.0, 0.0)
    assert differences(after, after, "EUR") == []
    assert differences_line(diffs, limit=2) == ("availability 96.400 % → 98.300 %, shortfall "
                                                "0.600 pp → 0.000 pp and 4 more")
    assert differences_line([]) == "no figure changed"


def test_a_period_without_counted_time_reads_n_a() -> None:
    diffs = differences(period(None, 0.0, None), period(99.0, 0.0, 98.0), "EUR")
    assert diffs[0].text == "availability n/a → 99.000 %"
    assert diffs[0].before is None


def test_the_version_email_has_the_figures_the_changes_and_the_links() -> None:
    after = period(98.3, 0.0, 96.6)
    diffs = differences(period(96.4, 12000.0, 92.8), after, "EUR")
    links = {"pdf": "http://h/api/v1/reports/archive/LTSA-ALPHA/2026-10/v2.pdf"}
    subject, body = version_email("LTSA-ALPHA", "Alpha", after, "EUR", 2, diffs, links)
    assert subject == "Compliance report LTSA-ALPHA 2026-10 (version 2)"
    assert "Availability: 98.300 % (guaranteed 97.000 %)" in body
    assert "Liquidated damages: EUR 0.00" in body
    assert "  - LD EUR 12,000.00 → EUR 0.00\n" in body
    assert "  PDF: http://h/api/v1/reports/archive/LTSA-ALPHA/2026-10/v2.pdf" in body
    subject, body = version_email("LTSA-ALPHA", "Alpha", after, "EUR", 1, [], links)
    assert subject == "Compliance report LTSA-ALPHA 2026-10"
    assert "Changes" not in body


def test_the_files_ride_along_up_to_the_cap_and_the_e_mail_says_when_not() -> None:
    assert attachments_fit(DEFAULT_ATTACH_MAX_BYTES, DEFAULT_ATTACH_MAX_BYTES)
    assert not attachments_fit(DEFAULT_ATTACH_MAX_BYTES + 1, DEFAULT_ATTACH_MAX_BYTES)
    assert not attachments_fit(0, DEFAULT_ATTACH_MAX_BYTES)  # no files: nothing to attach
    assert not attachments_fit(1, 0)  # 0: never attach
    line = too_large_line(12_582_912, DEFAULT_ATTACH_MAX_BYTES)
    assert line == ("The report's files are not attached: together 12.0 MiB, more than the "
                    "10.0 MiB a report e-mail may carry (attach_max_bytes). Download them "
                    "below.")
    assert "together 2,048 bytes, more than the 1,000 bytes" in too_large_line(2048, 1000)
    assert "attach_max_bytes is 0" in too_large_line(2048, 0)
    links = {"pdf": "http://h/v1.pdf"}
    _, body = version_email("LTSA-ALPHA", "Alpha", period(98.3, 0.0, 96.6), "EUR", 1, [],
                            links, line)
    assert f"\n\n{line}\n\nDownload (sign in to the dashboard first):\n  PDF: " \
           "http://h/v1.pdf\n" in body


# -- configuration -----------------------------------------------------------------------------


def test_the_reports_file_defaults_and_refusals() -> None:
    assert parse_reports_config("", "r.yaml") == ReportsConfig()
    assert ReportsConfig().settlement_delay_us == 48 * H
    cfg = parse_reports_config("settlement_delay_h: 6\narchive_start: 2026-01-01\n"
                               "daily_summary: [svc@example.test]\ndaily_summary_at: '06:30'\n"
                               "daily_summary_tz: Europe/Stockholm\n", "r.yaml")
    assert (cfg.settlement_delay_us, cfg.archive_start, cfg.daily_summary) == (
        6 * H, dt.date(2026, 1, 1), ("svc@example.test",))
    with pytest.raises(InvalidInput, match=r"r\.yaml:1: settlement_delay_hours"):
        parse_reports_config("settlement_delay_hours: 6\n", "r.yaml")
    with pytest.raises(InvalidInput, match=r"r.yaml:1: daily_summary\[0\]"):
        parse_reports_config("daily_summary: [svc]\n", "r.yaml")
    with pytest.raises(InvalidInput, match=r"r\.yaml:1: settlement_delay_h"):
        parse_reports_config("settlement_delay_h: -1\n", "r.yaml")
    assert ReportsConfig().attach_max_bytes == 10 * 1024 * 1024
    assert parse_reports_config("attach_max_bytes: 0\n", "r.yaml").attach_max_bytes == 0
    assert parse_reports_config("settlement_delay_h: 6\nattach_max_bytes: 26214400\n",
                                "r.yaml").attach_max_bytes == 25 * 1024 * 1024


@pytest.mark.parametrize(("value", "problem"), [
    ("-1", "greater than or equal to 0"),
    ("104857601", "less than or equal to 104857600"),
    ("10MB", "valid integer"),
    ("1500.5", "valid integer"),
    ("'1000'", "valid integer"),
    ("true", "valid integer"),
    ("null", "valid integer"),
])
def test_a_bad_attachment_cap_is_refused_with_file_key_and_problem(value: str,
                                                                  problem: str) -> None:
    with pytest.raises(InvalidInput, match=r"r\.yaml:2: attach_max_bytes") as refused:
        parse_reports_config(f"settlement_delay_h: 6\nattach_max_bytes: {value}\n", "r.yaml")
    assert problem in str(refused.value)


def test_the_daily_summary_is_due_from_its_local_time() -> None:
    cfg = ReportsConfig(daily_summary=("svc@example.test",), daily_summary_at="06:30",
                        daily_summary_tz="Europe/Stockholm")
    # 06:30 in Stockholm on 6 December is 05:30 UTC
    assert summary_day_due(cfg, utc(2026, 12, 6, 5, 29)) is None
    assert summary_day_due(cfg, utc(2026, 12, 6, 5, 30)) == dt.date(2026, 12, 6)
    assert summary_day_due(cfg, utc(2026, 12, 6, 22, 59)) == dt.date(2026, 12, 6)
    assert summary_day_due(cfg, utc(2026, 12, 6, 23, 30)) is None  # 00:30 on the 7th
    assert summary_day_due(ReportsConfig(), utc(2026, 12, 6, 12)) is None  # nobody to tell
