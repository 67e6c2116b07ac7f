"""The report archive and the scheduled reports (`bessmon report run-due`, README "Scheduled
reports"): each contract's compliance report of each closed measurement period, generated
from the final history once the settlement delay has passed, kept as versions, and e-mailed
to the contract's `report_recipients` through the notifier's outbox.

Layout, under `<run dir>/reports/` (`archive_root`):

    index.db                              the index (SQLite, WAL)
    <contract id>/<period>/v<N>/report.pdf, report.xlsx, report.csv

A version exists once its row is in the index. Its files are written into a temporary
directory next to it, synced, and renamed to `v<N>` in one step before the row is added:
a crash leaves at most a `.tmp-*` directory or a `v<N>` without a row, both removed by the
next run before it writes that version again — never a half version in the index.

`run_due` for each due period (contracts/reporting.py `due_periods`): evaluates it from the
history exactly as the API does (`evaluate_history`, `build_report`) and fingerprints the
inputs the evaluation read. Inputs that gave the latest version make nothing. Others make
version N + 1 with the differences from version N — unless the report's figures are
exactly those of version N (the CSV, which holds every figure, is byte for byte the same:
e.g. an interval split in two), in which case the fingerprint is only remembered as
version N's. (Inputs back to an older version's — an exclusion revoked — make a new
version too: the latest must be of the inputs as they are.)
Then every version not yet handed to the outbox is: one e-mail per recipient, with the
version's files attached (by reference: the sender reads them and checks their SHA-256
when it sends; none when together above `attach_max_bytes`), dedup id
`report:<contract>:<period>:v<N>:<address>`, so running it twice sends nothing twice (and
a crash between the outbox and the index's mark is repaired by the next run, the outbox
dropping the repeats). The whole run holds an exclusive lock on `<root>/.lock`: two runs at
once (the schedule and a manual one) take turns, the second finding nothing to do."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from api.history_evaluation import evaluate_history
from api.reports.csv import to_csv
from api.reports.data import build_report
from api.reports.pdf import to_pdf
from api.reports.xlsx import to_xlsx
from connectors.api_store import ThreadConnections
from connectors.archive.layout import fsync_dir
from connectors.history import HistoryStore, StatusIntervalRow
from connectors.notify.outbox import AttachmentRef, NewMessage, Outbox
from connectors.settings import report_archive_dir
from contracts.contract import Contract
from contracts.engine import ContractContext, Evaluation
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.output import period_json
from contracts.periods import Period, from_us, local_midnight_us
from contracts.reporting import (
    Difference,
    ReportsConfig,
    SummaryLine,
    attachments_fit,
    daily_summary_email,
    default_archive_start,
    differences,
    differences_line,
    due_periods,
    fingerprint,
    sha256_hex,
    summary_day_due,
    too_large_line,
    version_email,
)
from contracts.yamltext import ID_PATTERN

Format = Literal["pdf", "xlsx", "csv"]
FORMATS: tuple[Format, ...] = ("pdf", "xlsx", "csv")
MEDIA_TYPES: dict[str, str] = {  # download and attachment MIME types (order: as in the API)
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
REPORT_CHANNEL = "contract-reports"  # the outbox's channel name of report e-mails
SUMMARY_CHANNEL = "daily-summary"

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    contract_id TEXT NOT NULL,
    period TEXT NOT NULL,
    version INTEGER NOT NULL,
    site_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,       -- sha256 of the inputs (contracts/reporting.py)
    files TEXT NOT NULL,             -- {"pdf": {"sha256": …, "bytes": …}, "xlsx": …, "csv": …}
    summary TEXT NOT NULL,           -- the period's figures (availability rules §7 JSON)
    differences TEXT NOT NULL,       -- from the version before: [{scope, field, before, …}]
    delivered_ms INTEGER,            -- handed to the outbox (NULL: not yet)
    recipients TEXT,                 -- JSON list of the addresses it was sent to
    PRIMARY KEY (contract_id, period, version)
);
CREATE TABLE IF NOT EXISTS fingerprints (  -- every fingerprint seen, and the version it gave
    contract_id TEXT NOT NULL,
    period TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (contract_id, period, fingerprint)
);
CREATE TABLE IF NOT EXISTS starts (        -- the archive's start per contract (first run)
    contract_id TEXT PRIMARY KEY,
    start_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS summaries (     -- daily summaries handed to the outbox
    day TEXT PRIMARY KEY,
    delivered_ms INTEGER NOT NULL
);
"""

_SAFE_NAME = re.compile(ID_PATTERN)
_COLUMNS = ("contract_id, period, version, site_id, created_ms, fingerprint, files, summary, "
            "differences, delivered_ms, recipients")


def archive_root(run_dir: Path) -> Path:
    return report_archive_dir(run_dir)


@dataclass(frozen=True)
class ArchivedFile:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ArchivedVersion:
    contract_id: str
    period: str
    version: int
    site_id: str
    created_ms: int
    fingerprint: str
    files: Mapping[str, ArchivedFile]
    summary: Mapping[str, Any]
    differences: Sequence[Mapping[str, Any]]
    delivered_ms: int | None
    recipients: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.contract_id} {self.period} v{self.version}"


class ArchiveError(RuntimeError):
    """A version cannot be stored (a contract id that is no directory name, a full disk)."""


class ReportArchive:
    """The index and the files of `root`. A connection per thread; several processes may
    open it (the API reads while `run-due` writes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._conns = ThreadConnections(root / "index.db", synchronous="FULL")
        self._conns.connect().executescript(SCHEMA)

    def close(self) -> None:
        self._conns.close()

    def _db(self) -> sqlite3.Connection:
        return self._conns.connect()

    # -- reading ---------------------------------------------------------------------------

    def versions(self, contract_id: str | None = None, period: str | None = None, *,
                 contract_ids: Collection[str] | None = None) -> list[ArchivedVersion]:
        """Versions, newest period first, then newest version first; narrowed to one
        contract and/or period, and to `contract_ids` (a caller's scope)."""
        query = f"SELECT {_COLUMNS} FROM versions WHERE 1 = 1"
        args: list[Any] = []
        if contract_id is not None:
            query += " AND contract_id = ?"
            args.append(contract_id)
        if period is not None:
            query += " AND period = ?"
            args.append(period)
        rows = [_version(r) for r in self._db().execute(query, args)]
        if contract_ids is not None:
            allowed = set(contract_ids)
            rows = [v for v in rows if v.contract_id in allowed]
        rows.sort(key=lambda v: (_period_key(v.period), v.version), reverse=True)
        rows.sort(key=lambda v: v.contract_id)  # stable: newest first within each
        return rows

    def get(self, contract_id: str, period: str, version: int) -> ArchivedVersion | None:
        row = self._db().execute(
            f"SELECT {_COLUMNS} FROM versions WHERE contract_id = ? AND period = ? "
            "AND version = ?", (contract_id, period, version)).fetchone()
        return None if row is None else _version(row)

    def latest(self, contract_id: str, period: str) -> ArchivedVersion | None:
        row = self._db().execute(
            f"SELECT {_COLUMNS} FROM versions WHERE contract_id = ? AND period = ? "
            "ORDER BY version DESC LIMIT 1", (contract_id, period)).fetchone()
        return None if row is None else _version(row)

    def path(self, contract_id: str, period: str, version: int, fmt: Format) -> Path:
        return self._period_dir(contract_id, period) / f"v{version}" / f"report.{fmt}"

    def version_of(self, contract_id: str, period: str, fp: str) -> int | None:
        """The version the inputs with this fingerprint last gave (None: never seen)."""
        row = self._db().execute(
            "SELECT version FROM fingerprints WHERE contract_id = ? AND period = ? AND "
            "fingerprint = ?", (contract_id, period, fp)).fetchone()
        return None if row is None else int(row[0])

    def undelivered(self) -> list[ArchivedVersion]:
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM versions WHERE delivered_ms IS "
                                  "NULL ORDER BY created_ms, contract_id, period, version")
        return [_version(r) for r in rows]

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The archive to this process alone (blocks while another run holds it)."""
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start_of(self, contract_id: str) -> int | None:
        row = self._db().execute("SELECT start_ms FROM starts WHERE contract_id = ?",
                                 (contract_id,)).fetchone()
        return None if row is None else int(row[0])

    def set_start(self, contract_id: str, start_ms: int) -> None:
        self._db().execute("INSERT OR IGNORE INTO starts (contract_id, start_ms) VALUES (?, ?)",
                           (contract_id, start_ms))

    def remember(self, contract_id: str, period: str, fp: str, version: int) -> None:
        self._db().execute("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)",
                           (contract_id, period, fp, version))

    def add_version(self, *, contract_id: str, site_id: str, period: str, fp: str,
                    files: Mapping[Format, bytes], summary: Mapping[str, Any],
                    diffs: Sequence[Difference], now_ms: int,
                    before_commit: Callable[[], None] | None = None) -> ArchivedVersion:
        """Store the next version of a period's report: the files first (a temporary
        directory renamed into place), then its row — one version or nothing.
        `before_commit` runs between the two (tests simulate a crash there)."""
        folder = self._period_dir(contract_id, period)
        folder.mkdir(parents=True, exist_ok=True)
        latest = self.latest(contract_id, period)
        version = 1 if latest is None else latest.version + 1
        self._clean(folder, version)
        tmp = folder / f".tmp-v{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        infos: dict[str, dict[str, Any]] = {}
        for fmt in FORMATS:
            data = files[fmt]
            with open(tmp / f"report.{fmt}", "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            infos[fmt] = {"sha256": sha256_hex(data), "bytes": len(data)}
        fsync_dir(tmp)
        os.rename(tmp, folder / f"v{version}")
        fsync_dir(folder)
        if before_commit is not None:
            before_commit()
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, "
                "NULL)", (contract_id, period, version, site_id, now_ms, fp,
                          json.dumps(infos, sort_keys=True), json.dumps(summary),
                          json.dumps([d.as_json() for d in diffs], ensure_ascii=False)))
            db.execute("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)",
                       (contract_id, period, fp, version))
        stored = self.get(contract_id, period, version)
        assert stored is not None
        return stored

    def mark_delivered(self, v: ArchivedVersion, recipients: Sequence[str], now_ms: int) -> None:
        self._db().execute(
            "UPDATE versions SET delivered_ms = ?, recipients = ? WHERE contract_id = ? AND "
            "period = ? AND version = ? AND delivered_ms IS NULL",
            (now_ms, json.dumps(list(recipients)), v.contract_id, v.period, v.version))

    def summary_sent(self, day: dt.date) -> bool:
        return self._db().execute("SELECT 1 FROM summaries WHERE day = ?",
                                  (day.isoformat(),)).fetchone() is not None

    def mark_summary(self, day: dt.date, now_ms: int) -> None:
        self._db().execute("INSERT OR IGNORE INTO summaries VALUES (?, ?)",
                           (day.isoformat(), now_ms))

    # -- internals -------------------------------------------------------------------------

    def _period_dir(self, contract_id: str, period: str) -> Path:
        if not _SAFE_NAME.fullmatch(contract_id):
            raise ArchiveError(f"contract id {contract_id!r} cannot name a directory "
                               "(letters, digits, '.', '_' and '-' only)")
        return self.root / contract_id / period

    def _clean(self, folder: Path, version: int) -> None:
        """What a crashed run left of this period: temporary directories, and a version
        directory without its row in the index."""
        for leftover in folder.glob(".tmp-v*"):
            shutil.rmtree(leftover, ignore_errors=True)
        orphan = folder / f"v{version}"
        if orphan.exists():
            shutil.rmtree(orphan)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _period_key(label: str) -> tuple[int, int, str]:
    """Periods in time order: `CY10` after `CY9`; months and quarters as written."""
    if label.startswith("CY") and label[2:].isdigit():
        return (1, int(label[2:]), "")
    return (0, 0, label)


def _version(row: tuple[Any, ...]) -> ArchivedVersion:
    (contract_id, period, version, site_id, created_ms, fp, files, summary, diffs,
     delivered_ms, recipients) = row
    return ArchivedVersion(
        contract_id, period, int(version), site_id, int(created_ms), fp,
        {k: ArchivedFile(v["sha256"], int(v["bytes"])) for k, v in json.loads(files).items()},
        json.loads(summary), json.loads(diffs), delivered_ms,
        tuple(json.loads(recipients)) if recipients else ())


# -- generation --------------------------------------------------------------------------------


class _Recording:
    """The history store as `evaluate_history` sees it, keeping the status rows it read:
    the fingerprint is made of exactly what the evaluation used."""

    def __init__(self, history: HistoryStore) -> None:
        self.history = history
        self.rows: list[StatusIntervalRow] = []

    def status_intervals(self, asset_ids: Iterable[str], start_ms: int,
                         end_ms: int) -> list[StatusIntervalRow]:
        rows = self.history.status_intervals(asset_ids, start_ms, end_ms)
        self.rows.extend(rows)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.history, name)


def evaluated(fleet: Fleet, contract: Contract, history: HistoryStore, period: Period,
              final_ms: int | None, windows: Sequence[ExclusionWindow] = ()
              ) -> tuple[Evaluation, str, list[StatusInterval]]:
    """The period's evaluation from the history and the contract's (approved) exclusion
    windows, as the API makes it, and the fingerprint of its inputs: the status rows it read
    and the windows, clipped as it clipped them (to the start of the period's contract year
    and to the period's end or `final_ms`); and those status intervals."""
    recording = _Recording(history)
    evaluation = evaluate_history(fleet, contract, recording,  # type: ignore[arg-type]
                                  period.label, final_ms, windows)
    cal = evaluation.calendar
    start_us = min(cal.year_bounds(cal.period_year(period))[0], period.start_us)
    end_us = period.end_us if final_ms is None else min(period.end_us, final_ms * 1000)
    used = []
    for r in recording.rows:
        stop = min(end_us, r.end_ms * 1000) if r.end_ms is not None else end_us
        begin = max(start_us, r.start_ms * 1000)
        if stop > begin:
            used.append(StatusInterval(r.asset_id, begin, stop, r.state, r.derate_fraction,
                                       r.cause))
    # A window outside the evaluated time changes nothing: it is left out, so a new
    # exclusion next month does not make a new version of this one.
    clipped = [ExclusionWindow(w.scope_id, max(w.start_us, start_us), min(w.end_us, end_us),
                               w.reason)
               for w in windows if w.start_us < end_us and w.end_us > start_us]
    return evaluation, fingerprint(contract, period.label, used, clipped), used


def render(evaluation: Evaluation, windows: Sequence[ExclusionWindow] = ()
           ) -> dict[Format, bytes]:
    report = build_report(evaluation, windows)
    return {"pdf": to_pdf(report), "xlsx": to_xlsx(report),
            "csv": to_csv(report).encode("utf-8")}


def file_name(v: ArchivedVersion, fmt: str) -> str:
    """The name a version's file goes by outside the archive (download, attachment)."""
    return f"{v.contract_id}-{v.period}-v{v.version}.{fmt}"


def attachment_refs(archive: ReportArchive, v: ArchivedVersion, max_bytes: int
                    ) -> tuple[tuple[AttachmentRef, ...], str | None]:
    """The version's files as the outbox's references (path in the archive, name, MIME
    type, archived SHA-256) — or none, and what the e-mail says instead, when together
    they weigh more than `max_bytes` (reports.yaml `attach_max_bytes`)."""
    formats = [fmt for fmt in FORMATS if fmt in v.files]
    total = sum(v.files[fmt].bytes for fmt in formats)
    if not formats:
        return (), None
    if not attachments_fit(total, max_bytes):
        return (), too_large_line(total, max_bytes)
    refs = tuple(AttachmentRef(
        archive.path(v.contract_id, v.period, v.version, fmt).relative_to(
            archive.root).as_posix(),
        file_name(v, fmt), MEDIA_TYPES[fmt], v.files[fmt].sha256, v.files[fmt].bytes)
        for fmt in formats)
    return refs, None


def download_links(base_url: str, v: ArchivedVersion) -> dict[str, str]:
    return {fmt: f"{base_url}api/v1/reports/archive/{v.contract_id}/{v.period}/"
                 f"v{v.version}.{fmt}" for fmt in FORMATS}


@dataclass
class RunResult:
    generated: list[ArchivedVersion] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # what was done, one line each
    notes: list[str] = field(default_factory=list)  # what is due but waits, and why
    problems: list[str] = field(default_factory=list)


@dataclass
class Scheduler:
    """What `run-due` needs: the fleet and its contracts (by site), the history, the
    archive, the outbox, the configuration, each site's `final_ms` (how far the flows have
    made time final: None when unknown, e.g. no flows ran), the links' base URL and each
    contract's approved exclusion windows (docs/exclusions.md)."""

    fleet: Fleet
    contracts: Mapping[str, Contract]
    history: HistoryStore
    archive: ReportArchive
    outbox: Outbox
    config: ReportsConfig
    final_ms_of: Callable[[str], int | None]
    base_url: str
    windows_of: Callable[[Contract], Sequence[ExclusionWindow]] = field(
        default=lambda _contract: ())
    now_ms: Callable[[], int] = field(default=lambda: int(dt.datetime.now(dt.UTC).timestamp()
                                                          * 1000))

    def run_due(self, now_ms: int, contract_id: str | None = None) -> RunResult:
        """Everything due at `now_ms` (which decides only what is due: the index and the
        outbox are stamped with the clock's time, so a run `--now` in the future does not
        hold its e-mails back)."""
        result = RunResult()
        with self.archive.lock():
            for contract in sorted(self.contracts.values(), key=lambda c: c.id):
                if contract_id is not None and contract.id != contract_id:
                    continue
                try:
                    self._generate(contract, now_ms, result)
                except Exception as exc:  # one contract's failure must not stop the others
                    result.problems.append(f"{contract.id}: {type(exc).__name__}: {exc}")
            self._deliver(contract_id, result)
            if contract_id is None:
                self._daily_summary(now_ms, result)
        return result

    def _generate(self, contract: Contract, now_ms: int, result: RunResult) -> None:
        ctx = ContractContext(self.fleet, contract)
        cal, tz = ctx.calendar, ctx.site.tz
        now_us = now_ms * 1000
        if self.config.archive_start is not None:
            start_us = local_midnight_us(self.config.archive_start, tz)
        else:
            stored = self.archive.start_of(contract.id)
            if stored is None:
                stored = default_archive_start(cal, now_us) // 1000
                self.archive.set_start(contract.id, stored)
            start_us = stored * 1000
        periods = due_periods(cal, contract.measurement_period, now_us,
                              self.config.settlement_delay_us, start_us)
        if not periods:
            return
        final_ms = self.final_ms_of(contract.site)
        for period in periods:
            if final_ms is not None and final_ms * 1000 < period.end_us:
                result.notes.append(
                    f"waiting {contract.id} {period.label}: " + (
                        f"the history is final only up to "
                        f"{from_us(final_ms * 1000, tz).isoformat(timespec='seconds')}"
                        if final_ms > 0 else "the flows have not said how far the history "
                                             "is final yet (no site snapshot)"))
                continue
            windows = self.windows_of(contract)
            evaluation, fp, rows = evaluated(self.fleet, contract, self.history, period,
                                             final_ms, windows)
            if not any(r.start_us < period.end_us and r.end_us > period.start_us
                       for r in rows):
                # Nothing of the site at all (a fresh stack's first weeks, a history that
                # starts later): no report of a period nobody monitored. The flows write
                # `unknown` for a silent site, so a real outage still has its report.
                result.notes.append(f"no data {contract.id} {period.label}: the history holds "
                                    "no status of the site in it")
                continue
            latest = self.archive.latest(contract.id, period.label)
            if latest is not None and \
                    self.archive.version_of(contract.id, period.label, fp) == latest.version:
                continue  # the latest version is of these very inputs
            files = render(evaluation, windows)
            if latest is not None and latest.files["csv"].sha256 == sha256_hex(files["csv"]):
                self.archive.remember(contract.id, period.label, fp, latest.version)
                continue
            summary = period_json(evaluation, evaluation.periods[0])
            diffs = [] if latest is None else differences(latest.summary, summary,
                                                          contract.ld.currency)
            v = self.archive.add_version(contract_id=contract.id, site_id=contract.site,
                                         period=period.label, fp=fp, files=files,
                                         summary=summary, diffs=diffs, now_ms=self.now_ms())
            result.generated.append(v)
            avail = summary["availability_pct"]
            line = (f"generated {v.name}: availability "
                    f"{'n/a' if avail is None else f'{avail:.3f} %'}, LD "
                    f"{contract.ld.currency} {summary['ld']:,.2f}")
            if diffs:
                line += f"; changes: {differences_line(diffs)}"
            result.lines.append(line)

    def _deliver(self, contract_id: str | None, result: RunResult) -> None:
        by_id = {c.id: c for c in self.contracts.values()}
        for v in self.archive.undelivered():
            if contract_id is not None and v.contract_id != contract_id:
                continue
            contract = by_id.get(v.contract_id)
            if contract is None:  # a contract no longer configured: nobody to tell
                continue
            site = self.fleet.site(contract.site)
            diffs = [Difference(str(d["scope"]), str(d["field"]), d["before"], d["after"],
                                str(d["text"])) for d in v.differences]
            refs, note = attachment_refs(self.archive, v, self.config.attach_max_bytes)
            subject, body = version_email(
                contract.id, site.name or site.id, v.summary, contract.ld.currency, v.version,
                diffs, {"dashboard": f"{self.base_url}#/contracts",
                        **download_links(self.base_url, v)}, note)
            messages = [NewMessage(
                f"report:{v.contract_id}:{v.period}:v{v.version}:{address}",
                channel=REPORT_CHANNEL, channel_type="email", address=address,
                subject=subject, body=body, recipient=address, sites=(contract.site,),
                event_ids=(f"report:{v.contract_id}:{v.period}:v{v.version}",),
                attachments=refs)
                for address in contract.report_recipients]
            stamp = self.now_ms()
            if messages:
                self.outbox.enqueue_many(messages, stamp)
            self.archive.mark_delivered(v, contract.report_recipients, stamp)
            if messages:
                result.lines.append(f"delivered {v.name} to "
                                    f"{', '.join(contract.report_recipients)}")

    def _summary_line(self, site_id: str, contract: Contract,
                      now_ms: int) -> SummaryLine | None:
        """The contract's open period so far (final data only); None outside its term."""
        cal = ContractContext(self.fleet, contract).calendar
        if cal.contract_year(now_ms * 1000) is None:
            return None
        period = cal.containing(now_ms * 1000, contract.measurement_period)
        final_ms = self.final_ms_of(site_id)
        final_ms = now_ms if final_ms is None else min(final_ms, now_ms)
        ev = evaluate_history(self.fleet, contract, self.history, period.label, final_ms,
                              self.windows_of(contract))
        p = ev.periods[0]
        return SummaryLine(contract.id, site_id, period.label,
                           None if p.availability is None else 100.0 * p.availability,
                           p.guaranteed_pct, float(p.ld.amount), contract.ld.currency)

    def _daily_summary(self, now_ms: int, result: RunResult) -> None:
        day = summary_day_due(self.config, now_ms * 1000)
        if day is None or self.archive.summary_sent(day):
            return
        lines: list[SummaryLine] = []
        for site_id, contract in sorted(self.contracts.items(), key=lambda kv: kv[1].id):
            try:
                line = self._summary_line(site_id, contract, now_ms)
            except Exception as exc:  # one contract's failure leaves it out of the summary
                result.problems.append(f"daily summary {contract.id}: "
                                       f"{type(exc).__name__}: {exc}")
                continue
            if line is not None:
                lines.append(line)
        subject, body = daily_summary_email(day, lines)
        sites = tuple(sorted(self.contracts))
        messages = [NewMessage(f"summary:{day.isoformat()}:{address}", channel=SUMMARY_CHANNEL,
                               channel_type="email", address=address, subject=subject,
                               body=body, recipient=address, sites=sites,
                               event_ids=(f"summary:{day.isoformat()}",))
                    for address in self.config.daily_summary]
        self.outbox.enqueue_many(messages, self.now_ms())
        self.archive.mark_summary(day, self.now_ms())
        result.lines.append(f"delivered daily summary {day.isoformat()} to "
                            f"{', '.join(self.config.daily_summary)}")
