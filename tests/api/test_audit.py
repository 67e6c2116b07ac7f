"""The audit log: actions through the API land in it, each entry hash-chained to the one
before; `bessmon audit verify` passes on the untouched log and finds every kind of tampering
(an edit, a deletion, entries cut off the end, a rewritten chain) — on the real SQLite file,
through the real command."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.api_store import ApiStore
from connectors.audit import AuditLog, entry_hash
from connectors.settings import REPO_ROOT, Settings
from tests.api.accounts import auth


def verify_cli(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BESSMON_API_DB": str(settings.api_db_path)}
    return subprocess.run([sys.executable, "-m", "infra.cli", "audit", "verify"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def logged(api_settings: Settings) -> Iterator[Settings]:
    """A log with real entries: sign-ins (one failed), an API key made and revoked."""
    with TestClient(create_app(api_settings)) as client:
        for password in ("wrong-password", "pw-admin"):
            client.post("/api/v1/auth/token", data={"username": "admin", "password": password})
        made = client.post("/api/v1/api-keys", headers=auth(api_settings),
                           json={"name": "scada-export", "role": "viewer", "customers": ["*"],
                                 "regions": ["DE"]})
        assert made.status_code == 201, made.text
        assert client.delete(f"/api/v1/api-keys/{made.json()['id']}",
                             headers=auth(api_settings)).status_code == 200
        entries = client.get("/api/v1/audit", headers=auth(api_settings)).json()["items"]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        ("admin", "login", "failed"), ("admin", "login", "ok"),
        ("admin", "api_key.create", "ok"), ("admin", "api_key.revoke", "ok")]
    assert all("wrong-password" not in str(e) and "pw-admin" not in str(e) for e in entries)
    assert entries[2]["details"]["regions"] == ["DE"]
    yield api_settings


def test_an_untouched_log_verifies(logged: Settings) -> None:
    result = verify_cli(logged)
    assert result.returncode == 0, result.stderr
    assert "4 entries, chain intact; newest entry 4" in result.stdout


def sql(settings: Settings, statement: str, *args: object) -> None:
    with sqlite3.connect(settings.api_db_path) as conn:
        conn.execute(statement, args)


def test_an_edited_entry_is_found(logged: Settings) -> None:
    sql(logged, "UPDATE audit SET outcome = 'ok' WHERE seq = 1")
    result = verify_cli(logged)
    assert result.returncode == 1
    assert "entry 1: content does not match its hash (edited)" in result.stderr


def test_a_deleted_entry_is_found(logged: Settings) -> None:
    sql(logged, "DELETE FROM audit WHERE seq = 2")
    result = verify_cli(logged)
    assert result.returncode == 1
    assert "entry 2 missing (deleted)" in result.stderr
    assert "entry 3: does not follow the entry before it" in result.stderr


def test_entries_cut_off_the_end_are_found(logged: Settings) -> None:
    sql(logged, "DELETE FROM audit WHERE seq >= 3")
    result = verify_cli(logged)
    assert result.returncode == 1
    assert "entries after 2 up to 4 missing (cut off the end)" in result.stderr


def test_a_rewritten_chain_differs_from_the_head(logged: Settings) -> None:
    """Someone edits entry 4 and recomputes its hash: the chain is consistent again, but
    the head written at the time still names the old hash."""
    store = ApiStore(logged.api_db_path)
    row = store.connect().execute("SELECT * FROM audit WHERE seq = 4").fetchone()
    seq, ts_ms, _actor, action, target, outcome, details, prev, _ = row
    forged = entry_hash(prev, seq, ts_ms, "someone-else", action, target, outcome, details)
    sql(logged, "UPDATE audit SET actor = 'someone-else', hash = ? WHERE seq = 4", forged)
    result = verify_cli(logged)
    assert result.returncode == 1
    assert "entry 4: differs from the head file" in result.stderr


def test_appends_from_two_processes_keep_one_chain(api_settings: Settings,
                                                   tmp_path: Path) -> None:
    """Two writers at once (two API processes on one machine): one gap-free chain."""
    script = ("import sys, time\nfrom pathlib import Path\n"
              "from connectors.audit import AuditLog\nfrom connectors.api_store import ApiStore\n"
              "log = AuditLog(ApiStore(Path(sys.argv[1])))\n"
              "for i in range(100):\n    log.append(sys.argv[2], 'test.append', "
              "target=str(i), now_ms=int(time.time() * 1000))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(api_settings.api_db_path),
                               name], cwd=REPO_ROOT) for name in ("p1", "p2")]
    assert [p.wait(120) for p in procs] == [0, 0]
    entries = AuditLog(ApiStore(api_settings.api_db_path)).entries(limit=1000)
    assert [e.seq for e in entries] == list(range(1, 201))
    assert sorted(e.actor for e in entries) == ["p1"] * 100 + ["p2"] * 100
    assert verify_cli(api_settings).returncode == 0
