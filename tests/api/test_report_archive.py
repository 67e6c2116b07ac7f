"""The scheduled compliance reports end to end, on the example fleet and its contracts with a
real SQLite history: `bessmon report run-due` generates each due period's report once into
the archive, late data makes version 2 with its differences, a crash never leaves a half
version, new versions reach the contract's recipients by e-mail (outbox → the real
Dispatcher → a real SMTP server), and the API lists (scoped) and serves (hashed, audited)
the archive.

History: every battery unit of Nordvik (Europe/Stockholm, monthly, contract year 2 from
2026-10-01, guarantee 98 %) and Elbe (quarterly, contract year 3 from 2026-07-01) is
available but for a 4-hour fault on days 5, 10, 15, … of each month; nordvik-u02 has no data
on 2026-10-20 (local), which counts as unavailable (`data_gap_policy: unavailable`) until
late data fills it in as available: exactly 24 lost hours less."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from fastapi.testclient import TestClient

from api.history_evaluation import evaluate_history
from api.main import create_app
from api.reports.archive import ReportArchive, Scheduler, archive_root, render
from connectors.audit import AuditLog
from connectors.history import SqliteHistoryStore, StatusIntervalRow
from connectors.notify.dispatcher import Dispatcher
from connectors.notify.outbox import Outbox
from connectors.notify.senders import SendersConfig, parse_smtp_url
from connectors.settings import EXAMPLE_CONTRACTS, EXAMPLE_FLEET, Settings
from contracts.contract import fleet_contracts, load_contracts
from contracts.fleet import load_fleet
from contracts.reporting import ReportsConfig, too_large_line
from infra.cli import main
from infra.ports import free_port
from tests.api.accounts import auth

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = "2026-11-05T00:00:00Z"  # October (Nordvik) and 2026-Q3 (Elbe) are due, 48 h settled
NOW_MS = int(dt.datetime(2026, 11, 5, tzinfo=dt.UTC).timestamp() * 1000)
RECIPIENTS = ("asset-owner@nordvik.example", "finance@nordvik.example")
GAP_DAY = dt.date(2026, 10, 20)
DAY_MS = 86_400_000


def local_ms(day: dt.date, hour: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour), tzinfo=STOCKHOLM).timestamp() * 1000)


def seed_history(path: Path) -> None:
    fleet = load_fleet(EXAMPLE_FLEET)
    rows = []
    for unit in (a for a in fleet.assets.values() if a.kind == "unit"
                 and a.site_id in ("nordvik", "elbe")):
        day = dt.date(2026, 6, 25)
        while day < dt.date(2026, 11, 10):
            start, end = local_ms(day), local_ms(day + dt.timedelta(days=1))
            if unit.id == "nordvik-u02" and day == GAP_DAY:
                pass  # no data: counts as unavailable
            elif day.day % 5 == 0:
                rows.append(StatusIntervalRow(unit.id, unit.site_id, start, start + 20 * 3_600_000,
                                              "available"))
                rows.append(StatusIntervalRow(unit.id, unit.site_id, start + 20 * 3_600_000, end,
                                              "unavailable", None, "fault"))
            else:
                rows.append(StatusIntervalRow(unit.id, unit.site_id, start, end, "available"))
            day += dt.timedelta(days=1)
    with SqliteHistoryStore(path) as history:
        history.write_status(rows)


def late_data(path: Path) -> None:
    with SqliteHistoryStore(path) as history:
        history.write_status([StatusIntervalRow(
            "nordvik-u02", "nordvik", local_ms(GAP_DAY), local_ms(GAP_DAY + dt.timedelta(days=1)),
            "available")])


def make_settings(base: Path, **extra: Any) -> Settings:
    """The example fleet; its contracts, Nordvik's with report recipients; a seeded history."""
    contracts = base / "contracts"
    shutil.copytree(EXAMPLE_CONTRACTS, contracts)
    with open(contracts / "nordvik.yaml", "a", encoding="utf-8") as f:
        f.write(f"report_recipients: [{', '.join(RECIPIENTS)}]\n")
    run_dir = base / "run"
    run_dir.mkdir()
    seed_history(run_dir / "history.db")
    return Settings(run_dir=run_dir, fleet_file=EXAMPLE_FLEET, contracts_dir=contracts,
                    **extra)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = make_settings(tmp_path)
    monkeypatch.delenv("BESSMON_REPORTS_FILE", raising=False)
    monkeypatch.setattr("infra.cli.get_settings", lambda: s)
    return s


def run_due(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()
    code = main(["report", "run-due", "--now", NOW, *args])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out.splitlines()


def scheduler(settings: Settings, *, final_ms: int | None = None,
              config: ReportsConfig | None = None) -> Scheduler:
    fleet = load_fleet(settings.fleet_file)
    return Scheduler(fleet, fleet_contracts(load_contracts(settings.contracts_dir), fleet),
                     SqliteHistoryStore(settings.run_dir / "history.db"),
                     ReportArchive(archive_root(settings.run_dir)),
                     Outbox(settings.notify_db_path), config or ReportsConfig(),
                     lambda _site: final_ms, "http://bessmon.test/")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and p.parent != root)


# -- run-due -----------------------------------------------------------------------------------


def test_run_due_generates_each_due_report_once(settings: Settings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    lines = run_due(capsys)
    assert [line.split(":")[0] for line in lines] == [
        "generated LTSA-ELBE 2026-Q3 v1", "generated LTSA-NORDVIK 2026-10 v1",
        f"delivered LTSA-NORDVIK 2026-10 v1 to {', '.join(RECIPIENTS)}"]
    root = archive_root(settings.run_dir)
    assert tree(root) == [f"{c}/{p}/v1/report.{f}" for c, p in
                          (("LTSA-ELBE", "2026-Q3"), ("LTSA-NORDVIK", "2026-10"))
                          for f in ("csv", "pdf", "xlsx")]
    archive = ReportArchive(root)
    v = archive.latest("LTSA-NORDVIK", "2026-10")
    assert v is not None and v.version == 1 and v.differences == []
    for fmt in ("pdf", "xlsx", "csv"):
        path = archive.path("LTSA-NORDVIK", "2026-10", 1, fmt)  # type: ignore[arg-type]
        assert v.files[fmt].sha256 == sha(path)
        assert v.files[fmt].bytes == path.stat().st_size
    # the report is the API's: the same evaluation of the same history, byte for byte
    fleet = load_fleet(EXAMPLE_FLEET)
    contract = load_contracts(settings.contracts_dir)["nordvik"]
    with SqliteHistoryStore(settings.run_dir / "history.db") as history:
        evaluation = evaluate_history(fleet, contract, history, "2026-10", None)
    assert render(evaluation)["csv"] == archive.path(
        "LTSA-NORDVIK", "2026-10", 1, "csv").read_bytes()
    assert lines[1] == (f"generated LTSA-NORDVIK 2026-10 v1: availability "
                        f"{v.summary['availability_pct']:.3f} %, LD EUR "
                        f"{v.summary['ld']:,.2f}")
    assert v.summary["ld"] > 0  # below the guarantee: the differences below have LD to show
    assert (v.delivered_ms is not None, v.recipients) == (True, RECIPIENTS)
    outbox = Outbox(settings.notify_db_path)
    assert sorted(m.id for m in outbox.log()) == [
        f"report:LTSA-NORDVIK:2026-10:v1:{a}" for a in sorted(RECIPIENTS)]
    # running it again makes nothing, sends nothing
    assert run_due(capsys) == []
    assert tree(root) == [f"{c}/{p}/v1/report.{f}" for c, p in
                          (("LTSA-ELBE", "2026-Q3"), ("LTSA-NORDVIK", "2026-10"))
                          for f in ("csv", "pdf", "xlsx")]
    assert len(archive.versions()) == 2 and len(outbox.log()) == 2


def test_late_data_makes_version_2_with_its_differences(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    run_due(capsys, "--contract", "LTSA-NORDVIK")
    archive = ReportArchive(archive_root(settings.run_dir))
    v1 = archive.latest("LTSA-NORDVIK", "2026-10")
    assert v1 is not None
    v1_pdf = sha(archive.path("LTSA-NORDVIK", "2026-10", 1, "pdf"))
    late_data(settings.run_dir / "history.db")
    lines = run_due(capsys, "--contract", "LTSA-NORDVIK")
    v2 = archive.latest("LTSA-NORDVIK", "2026-10")
    assert v2 is not None and v2.version == 2 and v2.fingerprint != v1.fingerprint
    before, after = v1.summary, v2.summary
    assert after["availability_pct"] > before["availability_pct"]
    assert after["ld"] < before["ld"]
    u02 = {d["field"]: d for d in v2.differences if d["scope"] == "nordvik-u02"}
    assert u02["lost_hours"]["before"] - u02["lost_hours"]["after"] == pytest.approx(24.0)
    assert {d["scope"] for d in v2.differences} == {"contract", "nordvik-u02"}
    contract = {d["field"]: d for d in v2.differences if d["scope"] == "contract"}
    assert contract["ld"]["text"] == (f"LD EUR {before['ld']:,.2f} → EUR {after['ld']:,.2f}")
    assert contract["availability_pct"]["text"] == (
        f"availability {before['availability_pct']:.3f} % → {after['availability_pct']:.3f} %")
    assert lines == [
        f"generated LTSA-NORDVIK 2026-10 v2: availability {after['availability_pct']:.3f} %, "
        f"LD EUR {after['ld']:,.2f}; changes: {contract['availability_pct']['text']}, "
        f"{contract['shortfall_pct']['text']}, {contract['ld']['text']}, "
        + ", ".join(d["text"] for d in v2.differences[3:]),
        f"delivered LTSA-NORDVIK 2026-10 v2 to {', '.join(RECIPIENTS)}"]
    # version 1 is kept as it was
    assert sha(archive.path("LTSA-NORDVIK", "2026-10", 1, "pdf")) == v1_pdf
    assert [v.version for v in archive.versions("LTSA-NORDVIK", "2026-10")] == [2, 1]
    ids = sorted(m.id for m in Outbox(settings.notify_db_path).log())
    assert ids == sorted(f"report:LTSA-NORDVIK:2026-10:v{n}:{a}" for n in (1, 2)
                         for a in RECIPIENTS)
    assert run_due(capsys, "--contract", "LTSA-NORDVIK") == []


def test_an_approved_exclusion_makes_a_new_version(settings: Settings) -> None:
    """The exclusion windows are an input: a grid outage excluded over a fault changes the
    figures, hence a version 2; a window in another month changes nothing of October."""
    from contracts.intervals import ExclusionWindow

    windows: list[ExclusionWindow] = []
    s = scheduler(settings)
    s.windows_of = lambda _c: windows
    s.run_due(NOW_MS, "LTSA-NORDVIK")
    nov = local_ms(dt.date(2026, 11, 2)) * 1000
    windows.append(ExclusionWindow("nordvik", nov, nov + 3_600_000_000, "grid_outage"))
    assert s.run_due(NOW_MS, "LTSA-NORDVIK").lines == []
    fault = local_ms(dt.date(2026, 10, 5), 20) * 1000
    windows.append(ExclusionWindow("nordvik", fault, fault + 4 * 3_600_000_000, "grid_outage"))
    result = s.run_due(NOW_MS, "LTSA-NORDVIK")
    assert [line.split(":")[0] for line in result.lines] == [
        "generated LTSA-NORDVIK 2026-10 v2", f"delivered LTSA-NORDVIK 2026-10 v2 to "
        f"{', '.join(RECIPIENTS)}"]
    v2 = s.archive.latest("LTSA-NORDVIK", "2026-10")
    assert v2 is not None and any(d["field"] == "excluded_hours" for d in v2.differences)
    # revoked: the inputs are version 1's again, and the latest version must say so
    windows.pop()
    result = s.run_due(NOW_MS, "LTSA-NORDVIK")
    v1, v3 = s.archive.get("LTSA-NORDVIK", "2026-10", 1), s.archive.latest("LTSA-NORDVIK",
                                                                           "2026-10")
    assert v1 is not None and v3 is not None and v3.version == 3
    assert v3.summary == v1.summary and v3.files["csv"] == v1.files["csv"]
    assert [(d["scope"], d["field"], d["before"], d["after"]) for d in v3.differences] == [
        (d["scope"], d["field"], d["after"], d["before"]) for d in v2.differences]
    assert s.run_due(NOW_MS, "LTSA-NORDVIK").lines == []


def test_a_period_waits_for_the_flows_to_make_it_final(settings: Settings) -> None:
    final = int(dt.datetime(2026, 10, 31, 12, tzinfo=dt.UTC).timestamp() * 1000)
    s = scheduler(settings, final_ms=final)
    result = s.run_due(NOW_MS, "LTSA-NORDVIK")
    assert (result.lines, result.notes) == ([], [
        "waiting LTSA-NORDVIK 2026-10: the history is final only up to "
        "2026-10-31T13:00:00+01:00"])
    assert s.archive.versions() == []
    # no snapshot of the site yet (the flows run, but have not said)
    s.final_ms_of = lambda _site: 0
    assert s.run_due(NOW_MS, "LTSA-NORDVIK").notes == [
        "waiting LTSA-NORDVIK 2026-10: the flows have not said how far the history is final "
        "yet (no site snapshot)"]
    # final: the report is made
    s.final_ms_of = lambda _site: NOW_MS
    assert [v.name for v in s.run_due(NOW_MS, "LTSA-NORDVIK").generated] == [
        "LTSA-NORDVIK 2026-10 v1"]


def test_a_period_without_any_status_of_the_site_has_no_report(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """Mesa has no history at all (a fresh stack): its contract year 2 (to 2026-02-28)
    is reported by nobody; run-due says so, and makes nothing."""
    (settings.run_dir / "reports.yaml").write_text("archive_start: 2025-03-01\n")
    lines = run_due(capsys, "--contract", "LTSA-MESA")
    assert lines == ["no data LTSA-MESA CY2: the history holds no status of the site in it"]
    assert ReportArchive(archive_root(settings.run_dir)).versions() == []


def test_a_crash_never_leaves_a_half_version(settings: Settings,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = archive_root(settings.run_dir)
    s = scheduler(settings)
    # 1. killed while writing the files: a temporary directory, no version
    with monkeypatch.context() as m:
        def no_rename(*_args: object) -> None:
            raise OSError(28, "No space left on device")
        m.setattr("api.reports.archive.os.rename", no_rename)
        result = s.run_due(NOW_MS, "LTSA-NORDVIK")
    assert result.problems == ["LTSA-NORDVIK: OSError: [Errno 28] No space left on device"]
    assert result.generated == [] and s.archive.versions() == []
    assert [p.name[:7] for p in (root / "LTSA-NORDVIK" / "2026-10").iterdir()] == [".tmp-v1"]
    assert Outbox(settings.notify_db_path).log() == []  # nothing announced
    # 2. killed after the rename, before the index: a v1 directory no row names
    original = s.archive.add_version

    def crash(**kwargs: Any) -> Any:
        def boom() -> None:
            raise RuntimeError("killed")
        return original(**kwargs, before_commit=boom)

    monkeypatch.setattr(s.archive, "add_version", crash)
    result = s.run_due(NOW_MS, "LTSA-NORDVIK")
    assert result.problems == ["LTSA-NORDVIK: RuntimeError: killed"]
    assert s.archive.versions() == []
    assert sorted(p.name for p in (root / "LTSA-NORDVIK" / "2026-10").iterdir()) == ["v1"]
    # 3. the next run makes version 1 whole, and nothing is left over
    monkeypatch.setattr(s.archive, "add_version", original)
    result = s.run_due(NOW_MS, "LTSA-NORDVIK")
    assert result.problems == [] and [v.name for v in result.generated] == [
        "LTSA-NORDVIK 2026-10 v1"]
    assert tree(root) == [f"LTSA-NORDVIK/2026-10/v1/report.{f}" for f in ("csv", "pdf", "xlsx")]
    v1 = result.generated[0]
    for fmt in ("pdf", "xlsx", "csv"):
        assert sha(s.archive.path("LTSA-NORDVIK", "2026-10", 1, fmt)) == v1.files[fmt].sha256  # type: ignore[arg-type]


def test_two_runs_at_once_make_one_version(settings: Settings) -> None:
    results = []

    def one() -> None:
        results.append(scheduler(settings).run_due(NOW_MS, "LTSA-NORDVIK"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r.generated) for r in results) == [0, 1]
    assert len(ReportArchive(archive_root(settings.run_dir)).versions()) == 1
    assert len(Outbox(settings.notify_db_path).log()) == len(RECIPIENTS)


def test_run_due_refuses_an_unknown_contract_and_a_time_without_offset(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "run-due", "--contract", "NOPE"]) == 2
    assert capsys.readouterr().err == (f"bessmon: --contract: no contract 'NOPE' in "
                                       f"{settings.contracts_dir}\n")
    with pytest.raises(SystemExit):
        main(["report", "run-due", "--now", "2026-11-05T00:00:00"])
    assert "needs a UTC offset" in capsys.readouterr().err


def test_the_default_archive_start_is_the_contract_year_of_the_first_run(
        settings: Settings) -> None:
    """Elbe's contract year 3 starts 2026-07-01: run first in November, its archive starts
    there, and keeps that start: a run in contract year 4 still considers the end of year 3
    (no gap at the anniversary); a configured `archive_start` reaches further back."""
    s = scheduler(settings)
    s.run_due(NOW_MS, "LTSA-ELBE")
    assert [v.period for v in s.archive.versions("LTSA-ELBE")] == ["2026-Q3"]
    year_4 = int(dt.datetime(2027, 8, 1, tzinfo=dt.UTC).timestamp() * 1000)
    result = s.run_due(year_4, "LTSA-ELBE")
    assert sorted(v.period for v in s.archive.versions("LTSA-ELBE")) == ["2026-Q3", "2026-Q4"]
    # (the seeded history ends in November 2026: the 2027 quarters are due but hold no data)
    assert result.notes == [f"no data LTSA-ELBE {q}: the history holds no status of the site "
                            "in it" for q in ("2027-Q1", "2027-Q2")]
    s.config = ReportsConfig(archive_start=dt.date(2026, 4, 1))
    s.run_due(NOW_MS, "LTSA-ELBE")
    assert sorted(v.period for v in s.archive.versions("LTSA-ELBE")) == [
        "2026-Q2", "2026-Q3", "2026-Q4"]


# -- e-mail ------------------------------------------------------------------------------------


@dataclass
class Inbox:
    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), msg))
        return "250 2.0.0 OK queued"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def dispatch(settings: Settings, port: int) -> int:
    config = SendersConfig(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"),
                           smtp_from="bessmon@example.test", http_timeout_s=5,
                           attachments_root=archive_root(settings.run_dir))
    dispatcher = Dispatcher(Outbox(settings.notify_db_path), config, lease_ms=10_000)
    try:
        return dispatcher.dispatch_once().sent
    finally:
        dispatcher.close()


def test_new_versions_are_e_mailed_to_the_recipients_once(
        settings: Settings, smtp: tuple[Inbox, int],
        capsys: pytest.CaptureFixture[str]) -> None:
    inbox, port = smtp
    (settings.run_dir / "reports.yaml").write_text(
        "base_url: https://bessmon.example/\ndaily_summary: [service@example.test]\n"
        "daily_summary_at: '00:00'\n")
    lines = run_due(capsys)
    assert lines[-1] == "delivered daily summary 2026-11-05 to service@example.test"
    assert dispatch(settings, port) == 3
    by_to = {rcpt[0]: msg for rcpt, msg in inbox.received}
    assert sorted(by_to) == sorted([*RECIPIENTS, "service@example.test"])
    mail = by_to[RECIPIENTS[0]]
    assert mail["Subject"] == "Compliance report LTSA-NORDVIK 2026-10"
    assert mail["X-Bessmon-Event-Id"] == f"report:LTSA-NORDVIK:2026-10:v1:{RECIPIENTS[0]}"
    body = text(mail)
    v1 = ReportArchive(archive_root(settings.run_dir)).latest("LTSA-NORDVIK", "2026-10")
    assert v1 is not None
    # the report itself rides along: each file exactly as archived, by the archive's name
    assert attachments(mail) == archived(settings, "v1")
    for rcpt, other in inbox.received:
        if rcpt[0] in RECIPIENTS:
            assert attachments(other) == archived(settings, "v1")
    assert ("Attached: LTSA-NORDVIK-2026-10-v1.pdf, LTSA-NORDVIK-2026-10-v1.xlsx, "
            "LTSA-NORDVIK-2026-10-v1.csv.\n") in body and "Not attached" not in body
    assert f"Availability: {v1.summary['availability_pct']:.3f} % (guaranteed 98.000 %)" in body
    assert f"Liquidated damages: EUR {v1.summary['ld']:,.2f}" in body
    assert ("  PDF: https://bessmon.example/api/v1/reports/archive/LTSA-NORDVIK/2026-10/"
            "v1.pdf\n") in body
    assert "  Dashboard: https://bessmon.example/#/contracts\n" in body
    summary = by_to["service@example.test"]
    assert summary["Subject"] == "Fleet availability summary 2026-11-05"
    assert "LTSA-NORDVIK (nordvik) 2026-11:" in summary.get_content()
    assert attachments(summary) == {}
    # twice: nothing more in the outbox, nothing more sent
    assert run_due(capsys) == []
    assert dispatch(settings, port) == 0 and len(inbox.received) == 3
    # late data: version 2 goes out, with its changes
    late_data(settings.run_dir / "history.db")
    run_due(capsys)
    assert dispatch(settings, port) == 2
    v2_mail = inbox.received[-1][1]
    assert v2_mail["Subject"] == "Compliance report LTSA-NORDVIK 2026-10 (version 2)"
    assert "Changes from the previous version:\n  - availability " in text(v2_mail)
    assert attachments(v2_mail) == archived(settings, "v2") != archived(settings, "v1")
    # the delivery log shows them, of Nordvik's scope
    sent = [m for m in Outbox(settings.notify_db_path).log() if m.id.startswith("report:")]
    assert len(sent) == 4 and all(m.state == "sent" and m.sites == ("nordvik",) for m in sent)


def text(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def attachments(mail: EmailMessage) -> dict[str, tuple[str, bytes]]:
    """file name → (MIME type, bytes) of the message's attachments."""
    out = {}
    for part in mail.iter_attachments():
        assert isinstance(part, EmailMessage)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes) and part.get_filename() is not None
        out[str(part.get_filename())] = (part.get_content_type(), data)
    return out


def archived(settings: Settings, version: str) -> dict[str, tuple[str, bytes]]:
    """What the archive holds of Nordvik's October report `version`, as attachments."""
    folder = archive_root(settings.run_dir) / "LTSA-NORDVIK" / "2026-10" / version
    types = {"pdf": "application/pdf", "csv": "text/csv",
             "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    return {f"LTSA-NORDVIK-2026-10-{version}.{fmt}": (kind, (folder / f"report.{fmt}")
                                                         .read_bytes())
            for fmt, kind in types.items()}


def test_a_file_changed_after_archiving_is_not_attached_and_the_e_mail_says_so(
        settings: Settings, smtp: tuple[Inbox, int],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The version is archived and handed to the outbox; then its XLSX is changed on disk
    and its CSV removed before the notifier sends: the PDF goes, the others do not, the
    text says which and why, and the message is delivered (no retries)."""
    inbox, port = smtp
    run_due(capsys, "--contract", "LTSA-NORDVIK")
    folder = archive_root(settings.run_dir) / "LTSA-NORDVIK" / "2026-10" / "v1"
    pdf = (folder / "report.pdf").read_bytes()
    (folder / "report.xlsx").write_bytes((folder / "report.xlsx").read_bytes() + b"\0")
    (folder / "report.csv").unlink()
    assert dispatch(settings, port) == len(RECIPIENTS)
    mail = inbox.received[0][1]
    assert attachments(mail) == {"LTSA-NORDVIK-2026-10-v1.pdf": ("application/pdf", pdf)}
    body = text(mail)
    assert ("Attached: LTSA-NORDVIK-2026-10-v1.pdf.\n"
            "Not attached: LTSA-NORDVIK-2026-10-v1.xlsx: the archived file changed after the "
            "report was made (its SHA-256 differs). Use its download link above.\n"
            "Not attached: LTSA-NORDVIK-2026-10-v1.csv: the archived file is missing. Use its "
            "download link above.\n") in body
    assert "/api/v1/reports/archive/LTSA-NORDVIK/2026-10/v1.xlsx\n" in body
    sent = [m for m in Outbox(settings.notify_db_path).log() if m.id.startswith("report:")]
    assert [(m.state, m.attempts) for m in sent] == [("sent", 1)] * len(RECIPIENTS)
    assert all(m.detail is not None and "not attached: LTSA-NORDVIK-2026-10-v1.xlsx"
               in m.detail for m in sent)
    assert dispatch(settings, port) == 0


def test_files_above_the_cap_are_not_attached_and_the_e_mail_gives_the_links(
        settings: Settings, smtp: tuple[Inbox, int],
        capsys: pytest.CaptureFixture[str]) -> None:
    inbox, port = smtp
    reports_yaml = settings.run_dir / "reports.yaml"
    reports_yaml.write_text("base_url: https://bessmon.example/\nattach_max_bytes: 1000\n")
    run_due(capsys, "--contract", "LTSA-NORDVIK")
    v1 = ReportArchive(archive_root(settings.run_dir)).latest("LTSA-NORDVIK", "2026-10")
    assert v1 is not None
    total = sum(f.bytes for f in v1.files.values())
    assert total > 1000
    assert dispatch(settings, port) == len(RECIPIENTS)
    mail = inbox.received[0][1]
    assert attachments(mail) == {}
    body = text(mail)
    line = too_large_line(total, 1000)
    assert line.startswith("The report's files are not attached: together ")
    assert f"{line}\n\nDownload (sign in to the dashboard first):\n" in body
    assert ("  PDF: https://bessmon.example/api/v1/reports/archive/LTSA-NORDVIK/2026-10/"
            "v1.pdf\n") in body
    assert all(m.attachments == () for m in Outbox(settings.notify_db_path).log())
    # the cap raised, version 2 rides along; a bad cap is refused, saying where and why
    late_data(settings.run_dir / "history.db")
    reports_yaml.write_text(f"attach_max_bytes: {10 * 1024 * 1024}\n")
    run_due(capsys, "--contract", "LTSA-NORDVIK")
    v2 = ReportArchive(archive_root(settings.run_dir)).latest("LTSA-NORDVIK", "2026-10")
    assert v2 is not None and v2.version == 2
    reports_yaml.write_text("attach_max_bytes: -5\n")
    capsys.readouterr()
    assert main(["report", "run-due", "--now", NOW]) == 2
    assert f"{reports_yaml}:1: attach_max_bytes: must be greater than or equal to 0" in \
        capsys.readouterr().err
    assert dispatch(settings, port) == len(RECIPIENTS)
    assert attachments(inbox.received[-1][1]) == archived(settings, "v2")


# -- the API -----------------------------------------------------------------------------------


@pytest.fixture
def api(api_settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    base = make_settings(tmp_path / "stack")
    settings = api_settings.model_copy(update={"run_dir": base.run_dir,
                                               "contracts_dir": base.contracts_dir})
    s = scheduler(settings)
    s.run_due(NOW_MS)
    late_data(settings.run_dir / "history.db")
    s.run_due(NOW_MS)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_the_archive_lists_versions_in_the_callers_scope(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    answer = client.get("/api/v1/reports/archive", headers=auth(settings, "admin"))
    assert answer.status_code == 200, answer.text
    items = answer.json()
    assert [(i["contract_id"], i["period"], i["version"]) for i in items] == [
        ("LTSA-ELBE", "2026-Q3", 1), ("LTSA-NORDVIK", "2026-10", 2),
        ("LTSA-NORDVIK", "2026-10", 1)]
    v2 = items[1]
    root = archive_root(settings.run_dir)
    assert [(f["format"], f["sha256"], f["url"]) for f in v2["files"]] == [
        (fmt, sha(root / "LTSA-NORDVIK" / "2026-10" / "v2" / f"report.{fmt}"),
         f"/api/v1/reports/archive/LTSA-NORDVIK/2026-10/v2.{fmt}")
        for fmt in ("csv", "pdf", "xlsx")]
    assert len(v2["fingerprint"]) == 64 and v2["currency"] == "EUR"
    assert v2["differences"][0]["field"] == "availability_pct"
    assert items[2]["differences"] == [] and v2["recipients"] == list(RECIPIENTS)
    # narrowed
    one = client.get("/api/v1/reports/archive?contract_id=LTSA-NORDVIK&period=2026-10",
                     headers=auth(settings, "admin")).json()
    assert [i["version"] for i in one] == [2, 1]
    # scoped: Nordvik's manager sees Nordvik's only; Elbe's is as unknown as none
    mine = client.get("/api/v1/reports/archive", headers=auth(settings, "nordvik-manager"))
    assert {i["contract_id"] for i in mine.json()} == {"LTSA-NORDVIK"}
    for contract in ("LTSA-ELBE", "NO-SUCH"):
        other = client.get(f"/api/v1/reports/archive?contract_id={contract}",
                           headers=auth(settings, "nordvik-manager"))
        assert other.status_code == 404
        assert other.json()["detail"] == f"no contract {contract!r}"


def test_an_archived_file_downloads_with_its_hash_and_is_audited(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    audit = AuditLog(client.app.state.ctx.store)  # type: ignore[attr-defined]
    before = len(audit.entries(limit=100_000))
    answer = client.get("/api/v1/reports/archive/LTSA-NORDVIK/2026-10/v1.pdf",
                        headers=auth(settings, "nordvik-manager"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    digest = hashlib.sha256(answer.content).hexdigest()
    path = archive_root(settings.run_dir) / "LTSA-NORDVIK" / "2026-10" / "v1" / "report.pdf"
    assert answer.headers["x-content-sha256"] == digest == sha(path)
    assert answer.headers["content-disposition"] == \
        'attachment; filename="LTSA-NORDVIK-2026-10-v1.pdf"'
    entries = audit.entries(limit=100_000)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.actor, entry.action, entry.target) == ("nordvik-manager", "report.download",
                                                         "LTSA-NORDVIK")
    assert entry.details == {"period": "2026-10", "format": "pdf", "version": 1,
                             "archived": True, "sha256": digest,
                             "bytes": len(answer.content)}
    # another's contract, an unknown version: 404, not audited
    for url in ("/api/v1/reports/archive/LTSA-ELBE/2026-Q3/v1.csv",
                "/api/v1/reports/archive/LTSA-NORDVIK/2026-10/v3.csv"):
        assert client.get(url, headers=auth(settings, "nordvik-manager")).status_code == 404
    assert client.get("/api/v1/reports/archive/LTSA-ELBE/2026-Q3/v1.csv",
                      headers=auth(settings, "admin")).status_code == 200
    assert len(audit.entries(limit=100_000)) == before + 2
    # a file changed behind the archive's back is not served
    path.write_bytes(b"%PDF-1.4 forged")
    damaged = client.get("/api/v1/reports/archive/LTSA-NORDVIK/2026-10/v1.pdf",
                         headers=auth(settings, "admin"))
    assert damaged.status_code == 409 and "does not match" in damaged.json()["detail"]
