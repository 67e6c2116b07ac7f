"""The API's durable state, in one SQLite file (WAL; every API process of a machine and the
control loop share it): integrators' API keys, the audit log, which the control loop
writes too, and the exclusion windows' workflow (`ExclusionStore`, docs/exclusions.md).
`BESSMON_API_DB`, default `<run dir>/api.db`."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.events import Cause
from contracts.exclusions import Exclusion, ExclusionState
from contracts.exclusions import approved_windows as _approved
from contracts.intervals import ExclusionWindow

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    role TEXT NOT NULL,
    customers TEXT NOT NULL,
    regions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exclusions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contract_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    proposed_by TEXT NOT NULL,
    proposed_ms INTEGER NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    decision_comment TEXT,
    revoked_by TEXT,
    revoked_ms INTEGER,
    revoke_comment TEXT,
    revisions TEXT NOT NULL DEFAULT '[]',
    source TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS exclusions_by_contract ON exclusions (contract_id, state);
CREATE TABLE IF NOT EXISTS exclusion_evidence (
    exclusion_id INTEGER NOT NULL REFERENCES exclusions (id),
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_ms INTEGER NOT NULL,
    PRIMARY KEY (exclusion_id, sha256)
);
"""


class ThreadConnections:
    """One SQLite connection per thread (sqlite3 connections are not shared across threads)
    to a WAL file several processes may open at once; autocommit, a 30 s busy timeout."""

    def __init__(self, path: Path, *, synchronous: str) -> None:
        self.path, self.synchronous = path, synchronous
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            for _ in range(50):  # several processes may open a fresh file at once
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    threading.Event().wait(0.05)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class ApiStore:
    """A connection per thread (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conns = ThreadConnections(path, synchronous="NORMAL")
        with self.connect() as conn:
            conn.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        return self._conns.connect()

    def close(self) -> None:
        self._conns.close()


# -- exclusion windows (docs/exclusions.md) ---------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """A file attached to an exclusion; its bytes are at `<run dir>/evidence/<sha256>`."""

    sha256: str
    name: str
    size: int
    content_type: str
    uploaded_by: str
    uploaded_ms: int


@dataclass(frozen=True)
class ExclusionRecord:
    """An exclusion with everything the workflow recorded about it."""

    exclusion: Exclusion
    site_id: str
    proposed_ms: int
    decided_by: str | None
    decided_ms: int | None
    decision_comment: str | None
    revoked_by: str | None
    revoked_ms: int | None
    revoke_comment: str | None
    revisions: list[dict[str, Any]]
    source: str | None
    evidence: list[Evidence] = field(default_factory=list)


_COLUMNS = ("id, contract_id, scope_id, start_us, end_us, category, reason, state, "
            "proposed_by, site_id, proposed_ms, decided_by, decided_ms, decision_comment, "
            "revoked_by, revoked_ms, revoke_comment, revisions, source")


class ExclusionStore:
    """Exclusions and their evidence in the API's store. Every write names the state it
    expects (`WHERE state = ?`), so two decisions racing each other cannot both win."""

    def __init__(self, store: ApiStore) -> None:
        self.store = store

    def propose(self, *, contract_id: str, site_id: str, scope_id: str, start_us: int,
                end_us: int | None, category: Cause, reason: str, proposed_by: str,
                now_ms: int, source: str | None = None) -> ExclusionRecord:
        cursor = self.store.connect().execute(
            "INSERT INTO exclusions (contract_id, site_id, scope_id, start_us, end_us, "
            "category, reason, state, proposed_by, proposed_ms, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'proposed', ?, ?, ?)",
            (contract_id, site_id, scope_id, start_us, end_us, category, reason, proposed_by,
             now_ms, source))
        record = self.get(contract_id, int(cursor.lastrowid or 0))
        assert record is not None
        return record

    def get(self, contract_id: str, exclusion_id: int) -> ExclusionRecord | None:
        row = self.store.connect().execute(
            f"SELECT {_COLUMNS} FROM exclusions WHERE contract_id = ? AND id = ?",
            (contract_id, exclusion_id)).fetchone()
        return None if row is None else self._record(row)

    def by_source(self, source: str) -> ExclusionRecord | None:
        row = self.store.connect().execute(
            f"SELECT {_COLUMNS} FROM exclusions WHERE source = ?", (source,)).fetchone()
        return None if row is None else self._record(row)

    def of_contract(self, contract_id: str, state: ExclusionState | None = None
                    ) -> list[ExclusionRecord]:
        query = f"SELECT {_COLUMNS} FROM exclusions WHERE contract_id = ?"
        args: list[Any] = [contract_id]
        if state is not None:
            query += " AND state = ?"
            args.append(state)
        rows = self.store.connect().execute(query + " ORDER BY id", args).fetchall()
        return [self._record(r) for r in rows]

    def decide(self, contract_id: str, exclusion_id: int, *, expected: ExclusionState,
               new: ExclusionState, by: str, now_ms: int, comment: str | None,
               revisions: Sequence[dict[str, Any]] = ()) -> ExclusionRecord | None:
        """Move from `expected` to `new` (approve, reject, withdraw or revoke); None when
        the exclusion is no longer in `expected` (someone else decided first)."""
        columns = ("revoked_by = ?, revoked_ms = ?, revoke_comment = ?" if new == "revoked"
                   else "decided_by = ?, decided_ms = ?, decision_comment = ?")
        conn = self.store.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT revisions FROM exclusions WHERE contract_id = ? AND "
                               "id = ? AND state = ?",
                               (contract_id, exclusion_id, expected)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return None
            kept = [*json.loads(row[0]), *revisions]
            conn.execute(f"UPDATE exclusions SET state = ?, {columns}, revisions = ? "
                         "WHERE contract_id = ? AND id = ?",
                         (new, by, now_ms, comment, json.dumps(kept), contract_id,
                          exclusion_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self.get(contract_id, exclusion_id)

    def set_end(self, contract_id: str, exclusion_id: int, end_us: int) -> bool:
        """An open-ended proposal gets its end (its ticket was resolved); False when it is no
        longer proposed or already has an end."""
        cursor = self.store.connect().execute(
            "UPDATE exclusions SET end_us = ? WHERE contract_id = ? AND id = ? AND "
            "state = 'proposed' AND end_us IS NULL AND start_us < ?",
            (end_us, contract_id, exclusion_id, end_us))
        return cursor.rowcount == 1

    def add_evidence(self, exclusion_id: int, evidence: Evidence) -> bool:
        """False when the same file (by hash) is already attached."""
        cursor = self.store.connect().execute(
            "INSERT OR IGNORE INTO exclusion_evidence VALUES (?, ?, ?, ?, ?, ?, ?)",
            (exclusion_id, evidence.sha256, evidence.name, evidence.size,
             evidence.content_type, evidence.uploaded_by, evidence.uploaded_ms))
        return cursor.rowcount == 1

    def evidence(self, exclusion_id: int) -> list[Evidence]:
        rows = self.store.connect().execute(
            "SELECT sha256, name, size, content_type, uploaded_by, uploaded_ms FROM "
            "exclusion_evidence WHERE exclusion_id = ? ORDER BY uploaded_ms, sha256",
            (exclusion_id,)).fetchall()
        return [Evidence(*r) for r in rows]

    def _record(self, row: tuple[Any, ...]) -> ExclusionRecord:
        exclusion = Exclusion(*row[:9])
        return ExclusionRecord(exclusion, site_id=row[9], proposed_ms=row[10],
                               decided_by=row[11], decided_ms=row[12],
                               decision_comment=row[13], revoked_by=row[14],
                               revoked_ms=row[15], revoke_comment=row[16],
                               revisions=json.loads(row[17]), source=row[18],
                               evidence=self.evidence(exclusion.id))


SELECT_APPROVED = (
    "SELECT id, contract_id, scope_id, start_us, end_us, category, reason, state, "
    "proposed_by FROM exclusions WHERE contract_id = ? AND state = 'approved' AND "
    "end_us IS NOT NULL")


def approved_windows(store: ApiStore, contract_id: str) -> list[ExclusionWindow]:
    """The contract's approved exclusion windows, in time order: what the compliance, the
    reports and the flows evaluate with (availability rules §3)."""
    rows = store.connect().execute(SELECT_APPROVED, (contract_id,)).fetchall()
    return _approved([Exclusion(*r) for r in rows])


def read_approved_windows(path: Path, contract_id: str) -> list[ExclusionWindow]:
    """`approved_windows` from another process (the flows), read-only and never waiting on
    a writer for long: sqlite3.Error when the file cannot be read now (try again later)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    try:
        rows = conn.execute(SELECT_APPROVED, (contract_id,)).fetchall()
    finally:
        conn.close()
    return _approved([Exclusion(*r) for r in rows])
