"""The notification outbox: one SQLite file (WAL) holding every message to send and what
became of it — the queue of the dispatcher and, at once, the delivery log users read.

Why a table and not an in-memory queue: an alarm notification must survive a restart or a
crash of the process that sends it. The row is written before anyone tries to send, and the
row's id is the routing rule's stable dedup key, so enqueueing the same alarm transition
twice (a replay, two API processes, a restart that re-evaluates) sends it once
(`INSERT OR IGNORE`).

Sending is at-least-once, by leases: `claim` marks due messages as taken until
`claimed_until_ms`, in one write transaction, so two dispatchers never send the same message
at once; a dispatcher killed mid-send never marks its message, the lease runs out and the
message is claimable again — sent a second time with the same id, which receivers drop as a
repeat (Message-ID, Idempotency-Key). Every claim counts as an attempt (so a message that
kills its dispatcher does not loop forever); temporary failures back off 1 s, 2 s, 4 s …
up to 5 min; after `max_attempts` a message is `failed` for good, as is one whose failure is
permanent (a refused recipient, a 404 endpoint). Secrets never go in here: webhook signing
keys stay in the sender configuration."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from connectors.api_store import ThreadConnections

ChannelType = Literal["email", "webhook", "slack", "teams"]
State = Literal["pending", "sent", "failed"]
CHANNEL_TYPES: frozenset[str] = frozenset(get_args(ChannelType))
STATES: tuple[State, ...] = ("pending", "sent", "failed")

BACKOFF_FIRST_MS = 1_000
BACKOFF_MAX_MS = 5 * 60_000
DEFAULT_MAX_ATTEMPTS = 8
MAX_ERROR_CHARS = 2_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,                 -- the routing rule's dedup key: stable across repeats
    channel TEXT NOT NULL,               -- the configured channel's name
    channel_type TEXT NOT NULL CHECK (channel_type IN ('email', 'webhook', 'slack', 'teams')),
    address TEXT NOT NULL,               -- e-mail address or URL
    recipient TEXT,                      -- who, as the rules name them (user, rota, team)
    subject TEXT NOT NULL,
    body TEXT NOT NULL,                  -- plain text
    payload TEXT,                        -- JSON body for webhook / Slack / Teams, if given
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, -- claims so far
    next_attempt_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    last_error TEXT,
    sent_ms INTEGER,
    detail TEXT,                         -- what the receiver answered on success
    updated_ms INTEGER NOT NULL,
    sites TEXT,                          -- the sites its events are of, comma-separated
    severity TEXT,                       -- the highest severity among its events
    event_ids TEXT                       -- the alarm / alert ids it tells of, comma-separated
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_ms);
"""

_COLUMNS = ("id, channel, channel_type, address, recipient, subject, body, payload, "
            "created_ms, attempts, next_attempt_ms, claimed_until_ms, state, last_error, "
            "sent_ms, detail, updated_ms, sites, severity, event_ids")
# Columns added after the first release: added to an older file when it is opened.
_ADDED = (("sites", "TEXT"), ("severity", "TEXT"), ("event_ids", "TEXT"))


@dataclass(frozen=True)
class OutboxMessage:
    id: str
    channel: str
    channel_type: ChannelType
    address: str
    recipient: str | None
    subject: str
    body: str
    payload: Any | None
    created_ms: int
    attempts: int
    next_attempt_ms: int
    claimed_until_ms: int
    state: State
    last_error: str | None
    sent_ms: int | None
    detail: str | None
    updated_ms: int
    sites: tuple[str, ...] = ()  # the sites its events are of (none: fleet-wide)
    severity: str | None = None
    event_ids: tuple[str, ...] = ()


def backoff_ms(attempts: int) -> int:
    """The wait after the `attempts`-th failed attempt: 1 s, 2 s, 4 s … capped at 5 min."""
    if attempts < 1:
        return 0
    return min(BACKOFF_FIRST_MS << min(attempts - 1, 30), BACKOFF_MAX_MS)


class Outbox:
    """A connection per thread (sqlite3 connections are not shared across threads); several
    processes may open the same file, SQLite's write lock serializes them."""

    def __init__(self, path: Path, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.path = path
        self.max_attempts = max_attempts
        path.parent.mkdir(parents=True, exist_ok=True)
        # FULL, not NORMAL: a notification acknowledged as enqueued (or marked sent) must
        # survive a power cut, and the write rate is tiny.
        self._conns = ThreadConnections(path, synchronous="FULL")
        conn = self.connect()
        conn.executescript(SCHEMA.split("CREATE INDEX")[0])
        have = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
        for name, kind in _ADDED:
            if name not in have:
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        conn.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        return self._conns.connect()

    def close(self) -> None:
        self._conns.close()

    def enqueue(self, id: str, *, channel: str, channel_type: str, address: str,
                subject: str, body: str, now_ms: int, recipient: str | None = None,
                payload: Mapping[str, Any] | list[Any] | None = None,
                sites: Sequence[str] = (), severity: str | None = None,
                event_ids: Sequence[str] = ()) -> bool:
        """Add a message, due at once. False when a message with this id is already there
        (whatever its state): the same transition is never sent twice. `sites`,
        `severity` and `event_ids` describe it for the delivery log (and its scope)."""
        if not id:
            raise ValueError("a message needs a non-empty id (the dedup key)")
        if channel_type not in CHANNEL_TYPES:
            raise ValueError(f"unknown channel type {channel_type!r}: expected one of "
                             f"{', '.join(sorted(CHANNEL_TYPES))}")
        if not address:
            raise ValueError(f"message {id!r} has no address")
        payload_json = None if payload is None else json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        cur = self.connect().execute(
            "INSERT OR IGNORE INTO outbox (id, channel, channel_type, address, recipient, "
            "subject, body, payload, created_ms, next_attempt_ms, updated_ms, sites, "
            "severity, event_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (id, channel, channel_type, address, recipient, subject, body, payload_json,
             now_ms, now_ms, now_ms, _joined(sites), severity, _joined(event_ids)))
        return cur.rowcount == 1

    def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[OutboxMessage]:
        """Take up to `limit` due messages (oldest due first) until `now_ms + lease_ms`.
        A message is due when pending, its backoff is over and no live lease holds it — a
        lease that ran out (its dispatcher died mid-send) counts as none. Messages whose
        attempts are used up and whose last lease ran out are marked failed instead."""
        if limit < 1 or lease_ms < 1:
            raise ValueError("limit and lease_ms must be positive")
        until = now_ms + lease_ms
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "UPDATE outbox SET state = 'failed', updated_ms = ?, last_error = "
                "'gave up after ' || attempts || ' attempts (the last one never finished: "
                "its dispatcher stopped mid-send)' WHERE state = 'pending' AND attempts >= ? "
                "AND claimed_until_ms > 0 AND claimed_until_ms <= ?",
                (now_ms, self.max_attempts, now_ms))
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ? "
                "AND claimed_until_ms <= ? AND attempts < ? "
                "ORDER BY next_attempt_ms, created_ms, id LIMIT ?",
                (now_ms, now_ms, self.max_attempts, limit))]
            conn.executemany(
                "UPDATE outbox SET claimed_until_ms = ?, attempts = attempts + 1, "
                "updated_ms = ? WHERE id = ?", [(until, now_ms, i) for i in ids])
            rows = [conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (i,)
                                 ).fetchone() for i in ids]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [_message(r) for r in rows]

    def sent(self, id: str, now_ms: int, detail: str | None = None) -> None:
        """Delivered (wins over any other outcome: a late success after a retry is still
        a success)."""
        self.connect().execute(
            "UPDATE outbox SET state = 'sent', sent_ms = ?, detail = ?, claimed_until_ms = 0, "
            "updated_ms = ? WHERE id = ? AND state != 'sent'",
            (now_ms, _clip(detail), now_ms, id))

    def retry(self, id: str, now_ms: int, error: str) -> State:
        """A temporary failure: due again after the backoff, or failed for good once
        `max_attempts` attempts were made. Returns the message's state afterwards."""
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT attempts, state FROM outbox WHERE id = ?",
                               (id,)).fetchone()
            if row is None:
                raise KeyError(id)
            attempts, state = row
            if state == "pending":
                if attempts >= self.max_attempts:
                    state = "failed"
                    error = f"gave up after {attempts} attempts: {error}"
                conn.execute(
                    "UPDATE outbox SET state = ?, last_error = ?, next_attempt_ms = ?, "
                    "claimed_until_ms = 0, updated_ms = ? WHERE id = ?",
                    (state, _clip(error), now_ms + backoff_ms(attempts), now_ms, id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cast(State, state)

    def failed(self, id: str, now_ms: int, error: str) -> None:
        """A permanent failure: never tried again."""
        self.connect().execute(
            "UPDATE outbox SET state = 'failed', last_error = ?, claimed_until_ms = 0, "
            "updated_ms = ? WHERE id = ? AND state = 'pending'", (_clip(error), now_ms, id))

    def get(self, id: str) -> OutboxMessage | None:
        row = self.connect().execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?",
                                     (id,)).fetchone()
        return None if row is None else _message(row)

    def log(self, since_ms: int = 0, limit: int = 100, *,
            state: State | None = None) -> list[OutboxMessage]:
        """The delivery log: messages enqueued at or after `since_ms`, newest first — what
        went to whom, on which channel, when, and how it ended (state, last error)."""
        query = f"SELECT {_COLUMNS} FROM outbox WHERE created_ms >= ?"
        args: list[Any] = [since_ms]
        if state is not None:
            query += " AND state = ?"
            args.append(state)
        rows = self.connect().execute(query + " ORDER BY created_ms DESC, id LIMIT ?",
                                      (*args, limit)).fetchall()
        return [_message(r) for r in rows]

    def counts(self) -> dict[State, int]:
        """Messages per state (every state present, zero when none)."""
        out: dict[State, int] = dict.fromkeys(STATES, 0)
        for state, n in self.connect().execute(
                "SELECT state, COUNT(*) FROM outbox GROUP BY state"):
            out[state] = n
        return out

    def next_due_ms(self) -> int | None:
        """When the earliest pending message becomes claimable (None when none is)."""
        row = self.connect().execute(
            "SELECT MIN(MAX(next_attempt_ms, claimed_until_ms)) FROM outbox "
            "WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def prune(self, before_ms: int) -> int:
        """Delete finished (sent or failed) messages enqueued before `before_ms`. Their ids
        are forgotten with them: keep them longer than any transition could be replayed."""
        return self.connect().execute(
            "DELETE FROM outbox WHERE state != 'pending' AND created_ms < ?",
            (before_ms,)).rowcount


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[:MAX_ERROR_CHARS - 1] + "…"


def _joined(items: Sequence[str]) -> str | None:
    return ",".join(dict.fromkeys(items)) or None


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    (id, channel, channel_type, address, recipient, subject, body, payload, created_ms,
     attempts, next_attempt_ms, claimed_until_ms, state, last_error, sent_ms, detail,
     updated_ms, sites, severity, event_ids) = row
    return OutboxMessage(id, channel, channel_type, address, recipient, subject, body,
                         None if payload is None else json.loads(payload), created_ms,
                         attempts, next_attempt_ms, claimed_until_ms, state, last_error,
                         sent_ms, detail, updated_ms, _split(sites), severity,
                         _split(event_ids))
