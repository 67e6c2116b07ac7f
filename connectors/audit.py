"""The audit log: who did what, when, to what, and how it ended — logins and failed logins,
exports and report downloads, alarm acknowledgements and shelving, API keys made and
revoked, users and configuration changed, control commands.

Append-only and tamper-evident: each entry's hash is SHA-256 over its own fields and the hash
of the entry before it, so editing any entry breaks its hash and deleting one breaks the
chain after it. The newest entry's sequence number and hash are also written to a head file
beside the database, inside the same write lock, so that cutting entries off the end is
detected too (keep a copy of the head elsewhere for stronger guarantees: `bessmon audit
verify` prints it). Appends from several API processes are serialized by SQLite's write lock.
No entry carries a secret: callers pass what was done, never credentials."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from connectors.api_store import ApiStore

GENESIS = "0" * 64
Outcome = Literal["ok", "refused", "failed"]


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts_ms: int
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(prev_hash: str, seq: int, ts_ms: int, actor: str, action: str,
               target: str | None, outcome: str, details_json: str) -> str:
    canonical = json.dumps([prev_hash, seq, ts_ms, actor, action, target, outcome,
                            details_json], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    def __init__(self, store: ApiStore) -> None:
        self.store = store
        self.head_file = store.path.with_name(store.path.name + ".audit-head")

    def append(self, actor: str, action: str, *, target: str | None = None,
               outcome: Outcome = "ok", details: dict[str, Any] | None = None,
               now_ms: int) -> AuditEntry:
        details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, default=str)
        conn = self.store.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            digest = entry_hash(prev, seq, now_ms, actor, action, target, outcome,
                                details_json)
            conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq, now_ms, actor, action, target, outcome, details_json, prev,
                          digest))
            _write_head(self.head_file, seq, digest)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return AuditEntry(seq, now_ms, actor, action, target, outcome, details or {}, prev,
                          digest)

    def entries(self, *, after_seq: int = 0, limit: int = 100, actor: str | None = None,
                action: str | None = None) -> list[AuditEntry]:
        """Entries after `after_seq`, oldest first, optionally of one actor / action."""
        query = "SELECT * FROM audit WHERE seq > ?"
        args: list[Any] = [after_seq]
        if actor is not None:
            query += " AND actor = ?"
            args.append(actor)
        if action is not None:
            query += " AND action = ?"
            args.append(action)
        rows = self.store.connect().execute(query + " ORDER BY seq LIMIT ?",
                                            (*args, limit)).fetchall()
        return [_entry(r) for r in rows]


@dataclass(frozen=True)
class Verification:
    entries: int
    head: tuple[int, str] | None  # (seq, hash) of the newest entry
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: ApiStore) -> Verification:
    """Walk the whole chain: every hash recomputed, every link and sequence number checked,
    the newest entry compared with the head file."""
    problems: list[str] = []
    prev, expected_seq, count, last = GENESIS, 1, 0, None
    rows = store.connect().execute("SELECT * FROM audit ORDER BY seq")
    for row in rows:
        e = _entry(row)
        count += 1
        if e.seq != expected_seq:
            problems.append(f"entry {expected_seq}" + (f"..{e.seq - 1}" if e.seq - 1 >
                                                          expected_seq else "")
                            + " missing (deleted)")
        if e.prev_hash != prev:
            problems.append(f"entry {e.seq}: does not follow the entry before it "
                            "(an entry before it was deleted or changed)")
        details_json = row[6]
        if entry_hash(e.prev_hash, e.seq, e.ts_ms, e.actor, e.action, e.target, e.outcome,
                      details_json) != e.hash:
            problems.append(f"entry {e.seq}: content does not match its hash (edited)")
        prev, expected_seq, last = e.hash, e.seq + 1, (e.seq, e.hash)
    head = _read_head(AuditLog(store).head_file)
    if head is not None:
        if last is None or head[0] > last[0]:
            problems.append(f"entries after {last[0] if last else 0} up to {head[0]} missing "
                            "(cut off the end)")
        elif last is not None and head[0] == last[0] and head[1] != last[1]:
            problems.append(f"entry {head[0]}: differs from the head file")
    elif last is not None:
        problems.append("the head file is missing")
    return Verification(count, last, problems)


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, ts_ms, actor, action, target, outcome, details, prev, digest = row
    return AuditEntry(seq, ts_ms, actor, action, target, outcome, json.loads(details), prev,
                      digest)


def _write_head(path: Path, seq: int, digest: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{seq} {digest}\n")
    tmp.replace(path)


def _read_head(path: Path) -> tuple[int, str] | None:
    try:
        seq, digest = path.read_text(encoding="utf-8").split()
    except (FileNotFoundError, ValueError):
        return None
    return int(seq), digest
