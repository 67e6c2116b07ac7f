"""The API's durable state, in one SQLite file (WAL; every API process of a machine and the
control loop share it): integrators' API keys and the audit log, which the control loop
writes too. `BESSMON_API_DB`, default `<run dir>/api.db`."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

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
