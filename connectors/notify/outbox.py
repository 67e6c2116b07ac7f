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
keys stay in the sender configuration. Nor do files: an e-mail's attachments are references
(`AttachmentRef`: a path in the report archive and its SHA-256) that the sender reads when
it sends.

Every write is one statement where it can be (a claim is one UPDATE … RETURNING): while a
transaction is open, each statement gives up the interpreter lock and waits to get it back,
and with several sender threads busy that held SQLite's write lock many times longer than
the write. Enqueues are synced to disk (synchronous=FULL); claims and single deliveries
are not (see `Outbox.__init__`, `sent`): losing one of those in a power cut makes a message
due again, never lost; `enqueue_many` and `sent_many` write many rows with one sync."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast, get_args

from connectors.api_store import ThreadConnections

ChannelType = Literal["email", "webhook", "slack", "teams"]
State = Literal["pending", "sent", "failed"]
CHANNEL_TYPES: frozenset[str] = frozenset(get_args(ChannelType))
STATES: tuple[State, ...] = ("pending", "sent", "failed")

BACKOFF_FIRST_MS = 1_000
BACKOFF_MAX_MS = 5 * 60_000
DEFAULT_MAX_ATTEMPTS = 8
MAX_ERROR_CHARS = 2_000
SWEEP_MS = 1_000  # claims mark used-up leases failed at most this often

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
    event_ids TEXT,                      -- the alarm / alert ids it tells of, comma-separated
    attachments TEXT                     -- e-mail: JSON list of files to attach, by reference
);
CREATE TABLE IF NOT EXISTS consumed (  -- where the notifier goes on reading after a restart
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,        -- the first record not yet read (its messages are in)
    PRIMARY KEY (topic, partition)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_ms);
"""

_COLUMNS = ("id, channel, channel_type, address, recipient, subject, body, payload, "
            "created_ms, attempts, next_attempt_ms, claimed_until_ms, state, last_error, "
            "sent_ms, detail, updated_ms, sites, severity, event_ids, attachments")
# Columns added after the first release: added to an older file when it is opened.
_ADDED = (("sites", "TEXT"), ("severity", "TEXT"), ("event_ids", "TEXT"),
          ("attachments", "TEXT"))


@dataclass(frozen=True)
class AttachmentRef:
    """A file an e-mail carries, by reference: the outbox never holds its bytes (a report
    e-mail to ten recipients would store its PDF ten times, and the outbox is synced on
    every enqueue). The sender reads `path` — relative to the report archive's root — when
    it sends, and attaches it only if its SHA-256 is still `sha256`."""

    path: str  # relative to the report archive's root, '/'-separated
    name: str  # the attachment's file name as the recipient sees it
    content_type: str  # MIME type, parameters allowed ("text/csv; charset=utf-8")
    sha256: str  # hex, as archived
    bytes: int

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "content_type": self.content_type,
                "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttachmentRef:
        return cls(str(data["path"]), str(data["name"]), str(data["content_type"]),
                   str(data["sha256"]), int(data["bytes"]))


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
    attachments: tuple[AttachmentRef, ...] = ()  # e-mail only; other channels ignore them


@dataclass(frozen=True)
class NewMessage:
    """One message for `Outbox.enqueue_many`: the arguments of `enqueue` but the time."""

    id: str
    channel: str
    channel_type: str
    address: str
    subject: str
    body: str
    recipient: str | None = None
    payload: Mapping[str, Any] | list[Any] | None = None
    sites: Sequence[str] = ()
    severity: str | None = None
    event_ids: Sequence[str] = ()
    attachments: Sequence[AttachmentRef] = ()  # e-mail only; other channels ignore them


class Delivered(NamedTuple):
    """One outcome for `Outbox.sent_many`: the arguments of `sent`."""

    id: str
    now_ms: int
    detail: str | None = None


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
        # FULL, not NORMAL: a notification acknowledged as enqueued must survive a power cut.
        self._conns = ThreadConnections(path, synchronous="FULL")
        # … except claims (and giving them back) and deliveries, on connections of their
        # own: a delivery mark lost sends a message twice (same id), a claim lost
        # in a power cut only makes its messages due at once again — right, as their
        # dispatcher died with it. Such a commit is durable once the next synced one (an
        # enqueue, a delivery) syncs the log, which holds it before that one.
        self._claims = ThreadConnections(path, synchronous="NORMAL")
        self._swept_ms: int | None = None  # when claim() last marked used-up leases failed
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
        """Close this thread's connections."""
        self._conns.close()
        self._claims.close()

    def enqueue(self, id: str, *, channel: str, channel_type: str, address: str,
                subject: str, body: str, now_ms: int, recipient: str | None = None,
                payload: Mapping[str, Any] | list[Any] | None = None,
                sites: Sequence[str] = (), severity: str | None = None,
                event_ids: Sequence[str] = (),
                attachments: Sequence[AttachmentRef] = ()) -> bool:
        """Add a message, due at once. False when a message with this id is already there
        (whatever its state): the same transition is never sent twice. `sites`,
        `severity` and `event_ids` describe it for the delivery log (and its scope);
        `attachments` are files an e-mail carries, by reference."""
        row = _insert_row(NewMessage(id, channel, channel_type, address, subject, body,
                                     recipient, payload, sites, severity, event_ids,
                                     attachments), now_ms)
        return self.connect().execute(_INSERT + _ROW, row).rowcount == 1

    def enqueue_many(self, messages: Iterable[NewMessage], now_ms: int,
                     consumed: Mapping[tuple[str, int], int] | None = None) -> int:
        """`enqueue` for several messages at once: one statement, one commit, one fsync —
        rather than one each. Returns how many were added (the others were there already,
        or repeat an id earlier in `messages`). All are checked before any is written: one
        that cannot be sent raises ValueError and none is added. `consumed` — the next
        offset to read per (topic, partition) — is written in the same commit: a notifier
        that dies goes on after the last records whose messages are in, never before or
        after them."""
        rows = [_insert_row(m, now_ms) for m in messages]
        chunks = [rows[i:i + _CHUNK] for i in range(0, len(rows), _CHUNK)]
        if len(chunks) <= 1 and not consumed:
            return sum(self._insert(chunk) for chunk in chunks)
        with self._transaction() as conn:  # all or none, however many statements it takes
            added = sum(self._insert(chunk) for chunk in chunks)
            conn.executemany(
                "INSERT INTO consumed (topic, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
                "MAX(next_offset, excluded.next_offset)",
                [(t, p, o) for (t, p), o in (consumed or {}).items()])
            return added

    def consumed(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition), as the last commit left it."""
        return {(t, p): o for t, p, o in self.connect().execute(
            "SELECT topic, partition, next_offset FROM consumed")}

    def forget_consumed(self) -> None:
        """Read positions of another broker's topics (a new in-memory broker): dropped."""
        self.connect().execute("DELETE FROM consumed")

    def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[OutboxMessage]:
        """Take up to `limit` due messages (oldest due first) until `now_ms + lease_ms`.
        A message is due when pending, its backoff is over and no live lease holds it — a
        lease that ran out (its dispatcher died mid-send) counts as none. Messages whose
        attempts are used up and whose last lease ran out are marked failed instead."""
        if limit < 1 or lease_ms < 1:
            raise ValueError("limit and lease_ms must be positive")
        until = now_ms + lease_ms
        conn = self._claims.connect()  # not synced: see __init__
        # Each statement is a write transaction of its own, holding SQLite's write lock
        # from its start (so two claimers never read the same due rows) and no longer than
        # it runs: a claim is one UPDATE … RETURNING, not a SELECT and an UPDATE per message
        # in a transaction, which under a busy interpreter held the lock over many switches
        # between threads (every statement gives the interpreter lock up and waits for it).
        # Messages whose attempts are used up are never claimed; marking them failed can
        # wait, so it is done at most once a second.
        last = self._swept_ms
        if last is None or not last <= now_ms < last + SWEEP_MS:
            self._swept_ms = now_ms
            conn.execute(
                "UPDATE outbox SET state = 'failed', updated_ms = ?, last_error = "
                "'gave up after ' || attempts || ' attempts (the last one never finished: "
                "its dispatcher stopped mid-send)' WHERE state = 'pending' AND attempts >= ? "
                "AND claimed_until_ms > 0 AND claimed_until_ms <= ?",
                (now_ms, self.max_attempts, now_ms))
        rows = conn.execute(
            "UPDATE outbox SET claimed_until_ms = ?, attempts = attempts + 1, "
            "updated_ms = ? WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' "
            "AND next_attempt_ms <= ? AND claimed_until_ms <= ? AND attempts < ? "
            f"ORDER BY next_attempt_ms, created_ms, id LIMIT ?) RETURNING {_COLUMNS}",
            (until, now_ms, now_ms, now_ms, self.max_attempts, limit)).fetchall()
        out = [_message(r) for r in rows]  # RETURNING's order is not the SELECT's
        out.sort(key=lambda m: (m.next_attempt_ms, m.created_ms, m.id))
        return out

    def sent(self, id: str, now_ms: int, detail: str | None = None) -> None:
        """Delivered (wins over any other outcome: a late success after a retry is still
        a success). Not synced to disk on its own (a connection of the claims'): a mark
        lost in a power cut sends the message once more, with the same id, which the
        receiver drops — while a sync per message was a sixth of a busy dispatcher's time."""
        self._claims.connect().execute(
            "UPDATE outbox SET state = 'sent', sent_ms = ?, detail = ?, claimed_until_ms = 0, "
            "updated_ms = ? WHERE id = ? AND state != 'sent'",
            (now_ms, _clip(detail), now_ms, id))

    def sent_many(self, delivered: Iterable[Delivered]) -> None:
        """`sent` for several messages: one statement, one commit, one fsync."""
        rows = [(d.id, d.now_ms, _clip(d.detail)) for d in delivered]
        chunks = [rows[i:i + _CHUNK] for i in range(0, len(rows), _CHUNK)]
        with contextlib.ExitStack() as stack:
            if len(chunks) > 1:
                stack.enter_context(self._transaction())
            for chunk in chunks:
                self.connect().execute(
                    "UPDATE outbox SET state = 'sent', sent_ms = v.column2, "
                    "detail = v.column3, claimed_until_ms = 0, updated_ms = v.column2 "
                    f"FROM (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS v "
                    "WHERE outbox.id = v.column1 AND outbox.state != 'sent'",
                    [x for row in chunk for x in row])

    def release(self, ids: Sequence[str], claimed_until_ms: int, now_ms: int) -> int:
        """Give back claimed messages that were not tried (their lease would not have
        outlasted a send): due again at once, the claim not counted as an attempt. Only
        those the lease ending `claimed_until_ms` still holds: one whose lease ran out and
        that another dispatcher claimed is left alone. Returns how many were given back."""
        ids = list(ids)[:_CHUNK]  # at most a claim's worth (the rest: back when the lease ends)
        if not ids:
            return 0
        return self._claims.connect().execute(  # as a claim: not synced
            "UPDATE outbox SET claimed_until_ms = 0, attempts = MAX(attempts - 1, 0), "
            f"updated_ms = ? WHERE id IN ({', '.join(['?'] * len(ids))}) "
            "AND state = 'pending' AND claimed_until_ms = ?",
            (now_ms, *ids, claimed_until_ms)).rowcount

    def retry(self, id: str, now_ms: int, error: str) -> State:
        """A temporary failure: due again after the backoff, or failed for good once
        `max_attempts` attempts were made. Returns the message's state afterwards."""
        with self._transaction() as conn:
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
            state: State | None = None, until_ms: int | None = None,
            site: str | None = None, within_sites: Collection[str] | None = None,
            fleet_wide: bool = True, offset: int = 0) -> list[OutboxMessage]:
        """The delivery log: messages enqueued at or after `since_ms`, newest first — what
        went to whom, on which channel, when, and how it ended (state, last error).

        Narrowed by `state`; `until_ms` (enqueued at or before it); `site` (messages of that
        site); `within_sites` (only messages all of whose sites are in it — a caller's
        scope) and `fleet_wide` (False: leave out messages of no site); `offset` skips that
        many matching messages first (a page's position)."""
        query = f"SELECT {_COLUMNS} FROM outbox WHERE created_ms >= ?"
        args: list[Any] = [since_ms]
        if state is not None:
            query += " AND state = ?"
            args.append(state)
        if until_ms is not None:
            query += " AND created_ms <= ?"
            args.append(until_ms)
        if site is not None:
            query += " AND instr(',' || sites || ',', ?) > 0"
            args.append(f",{site},")
        if not fleet_wide:
            query += " AND sites IS NOT NULL AND sites != ''"
        query += " ORDER BY created_ms DESC, id"
        if within_sites is None:
            rows = self.connect().execute(query + " LIMIT ? OFFSET ?",
                                          (*args, limit, offset)).fetchall()
            return [_message(r) for r in rows]
        # Whether all of a message's sites are in scope is checked here, row by row, as the
        # rows come (the cursor reads lazily): the sites column is a comma-joined list.
        allowed = frozenset(within_sites)
        out: list[OutboxMessage] = []
        skip = offset
        for row in self.connect().execute(query, args):
            message = _message(row)
            if not all(s in allowed for s in message.sites):
                continue
            if skip:
                skip -= 1
                continue
            out.append(message)
            if len(out) >= limit:
                break
        return out

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

    def _insert(self, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        return int(self.connect().execute(
            _INSERT + " VALUES " + ", ".join([_ROW.removeprefix(" VALUES ")] * len(rows)),
            [x for row in rows for x in row]).rowcount)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock from the start, so two
        writers never read the same rows before changing them), committed or rolled back.
        Only where one statement cannot do: while it is open, every statement gives the
        interpreter lock up, and the others' writes wait as long as it takes to get back."""
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


_INSERT = ("INSERT OR IGNORE INTO outbox (id, channel, channel_type, address, recipient, "
           "subject, body, payload, created_ms, next_attempt_ms, updated_ms, sites, "
           "severity, event_ids, attachments)")
_ROW = " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_CHUNK = 500  # rows per statement (15 parameters each: far below SQLite's 32 766)


def _insert_row(m: NewMessage, now_ms: int) -> tuple[Any, ...]:
    """The INSERT's parameters for a new message, due at once; ValueError when it cannot be
    sent as it stands."""
    if not m.id:
        raise ValueError("a message needs a non-empty id (the dedup key)")
    if m.channel_type not in CHANNEL_TYPES:
        raise ValueError(f"unknown channel type {m.channel_type!r}: expected one of "
                         f"{', '.join(sorted(CHANNEL_TYPES))}")
    if not m.address:
        raise ValueError(f"message {m.id!r} has no address")
    payload_json = None if m.payload is None else json.dumps(
        m.payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    attachments_json = json.dumps([a.as_json() for a in m.attachments], separators=(",", ":"),
                                  ensure_ascii=False) if m.attachments else None
    return (m.id, m.channel, m.channel_type, m.address, m.recipient, m.subject, m.body,
            payload_json, now_ms, now_ms, now_ms, _joined(m.sites), m.severity,
            _joined(m.event_ids), attachments_json)


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
     updated_ms, sites, severity, event_ids, attachments) = row
    return OutboxMessage(id, channel, channel_type, address, recipient, subject, body,
                         None if payload is None else json.loads(payload), created_ms,
                         attempts, next_attempt_ms, claimed_until_ms, state, last_error,
                         sent_ms, detail, updated_ms, _split(sites), severity,
                         _split(event_ids),
                         tuple(AttachmentRef.from_json(a) for a in json.loads(attachments))
                         if attachments else ())
