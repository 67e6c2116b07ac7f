"""`bessmon backup` / `bessmon restore` (infra/backup.py): real SQLite stores written through
their own code, a real Redis for the alarm handlings, the CLI as a subprocess."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.auth.apikeys import ApiKeys
from api.auth.tokens import load_or_create_key as load_jwt_key
from api.auth.users import UserDirectory, add_user
from api.reports.archive import ReportArchive, archive_root
from connectors.ack_secret import ack_key_path, load_or_create_key
from connectors.api_store import ApiStore, Evidence, ExclusionStore
from connectors.audit import AuditLog, verify
from connectors.evidence import evidence_dir, store_file
from connectors.notify.outbox import Outbox
from connectors.redis_store import alarm_handling_key
from connectors.settings import REPO_ROOT, Settings
from contracts.alarms import AlarmHandling
from contracts.errors import InvalidInput
from infra.backup import MANIFEST, backup, restore

PASSWORD = "correct horse battery"
RULES = "channels: {}\nrules: []\n"
EVIDENCE = b"%PDF-1.4 the site log of the outage\n"
REDIS_DB = 13  # a database of its own: backup reads and restore writes every site's hash


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    url = f"{redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def _state(run: Path, redis_url: str | None = None) -> tuple[Settings, dict[str, str]]:
    """A run directory with some of everything, written by the stores' own code."""
    settings = Settings(run_dir=run, REDIS_URL=redis_url)
    add_user(settings.users_path, "ops", PASSWORD, "engineer", ["*"], ["*"])
    load_jwt_key(settings.jwt_key_path)
    load_or_create_key(ack_key_path(settings))
    store = ApiStore(settings.api_db_path)
    audit = AuditLog(store)
    _, key = ApiKeys(store).create("scada-export", "viewer", ["acme"], ["*"],
                                   created_by="ops", now_ms=1_000)
    audit.append("ops", "apikey.create", target="scada-export", now_ms=1_000)
    exclusions = ExclusionStore(store)
    record = exclusions.propose(contract_id="nordvik-ltsa", site_id="nordvik",
                                scope_id="nordvik-u02", start_us=0, end_us=3_600_000_000,
                                category="grid_outage", reason="grid outage", proposed_by="ops",
                                now_ms=2_000)
    sha, size = store_file(evidence_dir(run), io.BytesIO(EVIDENCE))
    exclusions.add_evidence(record.exclusion.id, Evidence(sha, "log.pdf", size,
                                                          "application/pdf", "ops", 2_100))
    audit.append("ops", "exclusion.propose", target=str(record.exclusion.id), now_ms=2_000)
    store.close()
    outbox = Outbox(settings.notify_db_path)
    outbox.enqueue("alarm:1:raised", channel="ops-mail", channel_type="email",
                   address="ops@example.com", subject="nordvik-u02 tripped", body="…",
                   now_ms=3_000)
    outbox.close()
    settings.notify_rules_path.write_text(RULES, encoding="utf-8")
    ReportArchive(archive_root(run)).close()
    report = archive_root(run) / "nordvik-ltsa" / "2026-10" / "v1" / "report.csv"
    report.parent.mkdir(parents=True)
    report.write_text("scope,availability_pct\nnordvik,97.5\n", encoding="utf-8")
    (run / "control").mkdir()
    (run / "control" / "state.json").write_text('{"v":1,"units":{}}', encoding="utf-8")
    return settings, {"api_key": key, "exclusion_id": str(record.exclusion.id),
                      "evidence": sha}


def _audit_hashes(path: Path) -> list[tuple[int, str]]:
    conn = ApiStore(path).connect()
    return [(r[0], r[1]) for r in conn.execute("SELECT seq, hash FROM audit ORDER BY seq")]


def _quiet(_line: str) -> None:
    pass


def test_online_backup_while_the_audit_log_is_written(tmp_path: Path) -> None:
    """A backup taken while another thread appends audit entries through the real audit
    code (each append writes the head file inside the write lock) restores to a chain that
    verifies: a prefix of the source's, with a head of the same moment."""
    settings, _ = _state(tmp_path / "run")
    stop, written = threading.Event(), threading.Semaphore(0)
    failures: list[BaseException] = []

    def writer() -> None:
        audit = AuditLog(ApiStore(settings.api_db_path))
        n = 0
        try:
            while not stop.is_set():
                n += 1
                audit.append("flows", "alarm.ack", target=f"b{n}", details={"n": n},
                             now_ms=10_000 + n)
                written.release()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            audit.store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(50):  # the writer is well under way before the backup starts
            assert written.acquire(timeout=60), failures
        result = backup(settings, tmp_path / "backup", say=_quiet)
        for _ in range(20):  # and goes on after it
            assert written.acquire(timeout=60), failures
    finally:
        stop.set()
        thread.join()
    assert not failures
    assert result.audit is not None and not result.problems
    copied = result.audit["entries"]
    source = _audit_hashes(settings.api_db_path)
    assert 2 + 50 <= copied < len(source)

    target = Settings(run_dir=tmp_path / "restored")
    restored = restore(target, tmp_path / "backup", say=_quiet)
    assert restored.ok, restored.problems
    assert restored.audit_entries == copied
    assert _audit_hashes(target.api_db_path) == source[:copied]
    assert verify(ApiStore(settings.api_db_path)).ok  # the source untouched by it


def test_backup_waits_for_an_append_in_progress(tmp_path: Path) -> None:
    """An append that has written the head file but not committed yet (AuditLog.append
    inside its write lock) when the backup starts: the copy waits for it, so the copied
    database and head are of one moment and the copy verifies."""
    from connectors.audit import _write_head, entry_hash

    settings, _ = _state(tmp_path / "run")
    ready, started = threading.Event(), threading.Event()
    appended: list[tuple[int, str]] = []

    def append_slowly() -> None:  # AuditLog.append, paused between the head and the commit
        log = AuditLog(ApiStore(settings.api_db_path))
        conn = log.store.connect()
        conn.execute("BEGIN IMMEDIATE")
        seq, prev = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                 ).fetchone()
        digest = entry_hash(prev, seq + 1, 5_000, "ops", "alarm.ack", None, "ok", "{}")
        conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq + 1, 5_000, "ops", "alarm.ack", None, "ok", "{}", prev, digest))
        _write_head(log.head_file, seq + 1, digest)  # ahead of the committed database
        appended.append((seq + 1, digest))
        ready.set()
        started.wait()
        threading.Event().wait(0.3)
        conn.execute("COMMIT")
        log.store.close()

    def say(line: str) -> None:
        started.set()

    thread = threading.Thread(target=append_slowly)
    thread.start()
    try:
        assert ready.wait(timeout=60)
        result = backup(settings, tmp_path / "backup", say=say)
    finally:
        started.set()
        thread.join()
    seq, digest = appended[0]
    assert not result.problems
    assert result.audit is not None and result.audit["entries"] == seq == 3
    assert result.audit["head"] == [seq, digest]


def test_restore_into_a_fresh_directory(tmp_path: Path, redis_db: str) -> None:
    settings, made = _state(tmp_path / "run", redis_db)
    client = redis.Redis.from_url(redis_db, decode_responses=True)
    handling = AlarmHandling(breach_id="b-1", acknowledged_by="ops", acknowledged_ms=4_000)
    client.hset(alarm_handling_key("nordvik"), "b-1", handling.model_dump_json())
    lines: list[str] = []
    result = backup(settings, tmp_path / "backup", say=lines.append)
    assert any(line.split()[0] == "alarm_handling" and "1 handlings" in line
               for line in lines), lines

    dest = tmp_path / "backup"
    assert dest.stat().st_mode & 0o777 == 0o700
    manifest = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["format_version"] == 1 and manifest["bessmon_version"]
    for entry in manifest["files"]:
        path = dest / entry["path"]
        assert path.stat().st_mode & 0o777 == 0o600, entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    items = {e["item"] for e in manifest["files"]}
    assert {"api_db", "audit_head", "notify_db", "users", "jwt_key", "ack_key",
            "notify_rules", "evidence", "reports", "control_state",
            "alarm_handling"} <= items
    assert "history" not in items
    assert result.audit == {"entries": 2, "head": list(_audit_hashes(
        settings.api_db_path)[-1])}

    client.flushdb()  # Redis lost its hot state
    target = Settings(run_dir=tmp_path / "fresh", REDIS_URL=redis_db)
    restored = restore(target, dest, say=lines.append)
    assert restored.ok, restored.problems
    assert restored.audit_entries == 2

    assert UserDirectory(target.users_path).authenticate("ops", PASSWORD) is not None
    assert UserDirectory(target.users_path).authenticate("ops", "wrong password") is None
    store = ApiStore(target.api_db_path)
    principal = ApiKeys(store).verify(made["api_key"], now_ms=5_000)
    assert principal.subject == "scada-export"
    assert verify(store).ok
    record = ExclusionStore(store).get("nordvik-ltsa", int(made["exclusion_id"]))
    assert record is not None and record.exclusion.reason == "grid outage"
    assert [e.sha256 for e in record.evidence] == [made["evidence"]]
    assert (evidence_dir(target.run_dir) / made["evidence"]).read_bytes() == EVIDENCE
    message = Outbox(target.notify_db_path).get("alarm:1:raised")
    assert message is not None and message.address == "ops@example.com"
    assert target.notify_rules_path.read_text(encoding="utf-8") == RULES
    assert target.jwt_key_path.read_bytes() == settings.jwt_key_path.read_bytes()
    assert ack_key_path(target).read_bytes() == ack_key_path(settings).read_bytes()
    assert ack_key_path(target).stat().st_mode & 0o777 == 0o600
    assert (archive_root(target.run_dir) / "nordvik-ltsa" / "2026-10" / "v1" /
            "report.csv").read_text(encoding="utf-8").endswith("97.5\n")
    assert (target.run_dir / "control" / "state.json").is_file()
    assert client.hget(alarm_handling_key("nordvik"), "b-1") == handling.model_dump_json()
    client.close()


def test_restored_handlings_do_not_overwrite_newer_ones(tmp_path: Path, redis_db: str) -> None:
    settings, _ = _state(tmp_path / "run", redis_db)
    client = redis.Redis.from_url(redis_db, decode_responses=True)
    key = alarm_handling_key("elbe")
    client.hset(key, mapping={"b-1": '{"old":1}', "b-2": '{"old":2}'})
    backup(settings, tmp_path / "backup", say=_quiet)
    client.hset(key, "b-1", '{"newer":1}')
    client.hdel(key, "b-2")
    lines: list[str] = []
    restore(Settings(run_dir=tmp_path / "fresh", REDIS_URL=redis_db), tmp_path / "backup",
            say=lines.append)
    assert client.hgetall(key) == {"b-1": '{"newer":1}', "b-2": '{"old":2}'}
    assert any("1 of 2 handlings restored" in line for line in lines), lines
    client.close()


@pytest.mark.parametrize("victim", ["api_db", "evidence", "users"])
def test_a_damaged_backup_is_refused_before_anything_is_written(tmp_path: Path,
                                                                victim: str) -> None:
    settings, _ = _state(tmp_path / "run")
    backup(settings, tmp_path / "backup", say=_quiet)
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text(encoding="utf-8"))
    stored = next(e["path"] for e in manifest["files"] if e["item"] == victim)
    path = tmp_path / "backup" / stored
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    path.write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    with pytest.raises(InvalidInput) as refused:
        restore(Settings(run_dir=fresh), tmp_path / "backup", say=_quiet)
    assert str(path) in str(refused.value) and "nothing was restored" in str(refused.value)
    assert not fresh.exists()


def test_an_incomplete_backup_is_refused(tmp_path: Path) -> None:
    settings, _ = _state(tmp_path / "run")
    backup(settings, tmp_path / "backup", say=_quiet)
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text(encoding="utf-8"))
    stored = next(e["path"] for e in manifest["files"] if e["item"] == "notify_db")
    (tmp_path / "backup" / stored).unlink()
    with pytest.raises(InvalidInput, match=r"notify\.db: missing from the backup"):
        restore(Settings(run_dir=tmp_path / "fresh"), tmp_path / "backup", say=_quiet)
    (tmp_path / "backup" / MANIFEST).unlink()
    with pytest.raises(InvalidInput, match=r"manifest\.json: missing"):
        restore(Settings(run_dir=tmp_path / "fresh"), tmp_path / "backup", say=_quiet)
    assert not (tmp_path / "fresh").exists()


def test_restore_over_a_state_needs_force(tmp_path: Path) -> None:
    settings, _ = _state(tmp_path / "run")
    backup(settings, tmp_path / "backup", say=_quiet)
    other, _ = _state(tmp_path / "other")  # a state of its own: other keys, other users
    AuditLog(ApiStore(other.api_db_path)).append("x", "y", now_ms=9_000)
    before = other.api_db_path.read_bytes()
    with pytest.raises(InvalidInput, match="a state is already there"):
        restore(other, tmp_path / "backup", say=_quiet)
    assert other.api_db_path.read_bytes() == before

    restored = restore(other, tmp_path / "backup", force=True, say=_quiet)
    assert restored.ok, restored.problems  # the other head file did not survive
    assert _audit_hashes(other.api_db_path) == _audit_hashes(settings.api_db_path)
    assert other.jwt_key_path.read_bytes() == settings.jwt_key_path.read_bytes()


def test_restore_writes_where_the_settings_say(tmp_path: Path) -> None:
    """BESSMON_API_DB / BESSMON_USERS_FILE at the target: the stores go there, the audit
    head beside the database, and the chain verifies there."""
    settings, made = _state(tmp_path / "run")
    backup(settings, tmp_path / "backup", say=_quiet)
    target = Settings(run_dir=tmp_path / "fresh", api_db=tmp_path / "db" / "keys.db",
                      users_file=tmp_path / "etc" / "people.yaml")
    restored = restore(target, tmp_path / "backup", say=_quiet)
    assert restored.ok, restored.problems
    assert (tmp_path / "db" / "keys.db.audit-head").is_file()
    assert not (tmp_path / "fresh" / "api.db").exists()
    assert ApiKeys(ApiStore(tmp_path / "db" / "keys.db")).verify(made["api_key"], 5_000)
    assert UserDirectory(tmp_path / "etc" / "people.yaml").authenticate("ops", PASSWORD)


def test_with_history_the_embedded_history_comes_too(tmp_path: Path) -> None:
    settings, _ = _state(tmp_path / "run")
    history = tmp_path / "run" / "history.db"
    conn = sqlite3.connect(history)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE samples (ts INTEGER, v REAL)")
    conn.executemany("INSERT INTO samples VALUES (?, ?)", [(i, i / 2) for i in range(1000)])
    conn.commit()  # and kept open: its pages partly in the -wal file still
    try:
        backup(settings, tmp_path / "backup", with_history=True, say=_quiet)
    finally:
        conn.close()
    target = Settings(run_dir=tmp_path / "fresh")
    assert restore(target, tmp_path / "backup", say=_quiet).ok
    copy = sqlite3.connect(tmp_path / "fresh" / "history.db")
    assert copy.execute("SELECT count(*), sum(v) FROM samples").fetchone() == (1000, 249750.0)
    copy.close()


def test_backup_refuses_a_directory_in_use(tmp_path: Path) -> None:
    settings, _ = _state(tmp_path / "run")
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "something").write_text("x", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not an empty directory"):
        backup(settings, tmp_path / "backup", say=_quiet)


def _cli(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BESSMON_") and k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS",
                                                          "QUESTDB_URL")}
    env["BESSMON_RUN_DIR"] = str(run_dir)
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end(tmp_path: Path) -> None:
    settings, made = _state(tmp_path / "run")
    done = _cli("backup", str(tmp_path / "backup"), run_dir=settings.run_dir)
    assert done.returncode == 0, done.stderr
    assert "REDIS_URL is not set" in done.stdout
    assert "audit log 2 entries, chain intact" in done.stdout
    assert "--with-history" in done.stdout

    again = _cli("backup", str(tmp_path / "backup"), run_dir=settings.run_dir)
    assert again.returncode == 2 and "not an empty directory" in again.stderr

    fresh = tmp_path / "fresh"
    done = _cli("restore", str(tmp_path / "backup"), "--run-dir", str(fresh),
                run_dir=tmp_path / "unused")
    assert done.returncode == 0, done.stderr
    assert "audit log 2 entries, chain intact" in done.stdout
    assert ApiKeys(ApiStore(fresh / "api.db")).verify(made["api_key"], 5_000).role == "viewer"
    assert not (tmp_path / "unused").exists()

    refused = _cli("restore", str(tmp_path / "backup"), run_dir=fresh)
    assert refused.returncode == 2 and "a state is already there" in refused.stderr
    forced = _cli("restore", str(tmp_path / "backup"), "--force", run_dir=fresh)
    assert forced.returncode == 0, forced.stderr


def test_cli_a_broken_audit_chain_exits_1(tmp_path: Path) -> None:
    settings, _ = _state(tmp_path / "run")
    conn = ApiStore(settings.api_db_path).connect()
    conn.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 1")  # tampered
    done = _cli("backup", str(tmp_path / "backup"), run_dir=settings.run_dir)
    assert done.returncode == 1 and "TAMPERED" in done.stderr
    assert "entry 1: content does not match its hash" in done.stderr
    restored = _cli("restore", str(tmp_path / "backup"), run_dir=tmp_path / "fresh")
    assert restored.returncode == 1, restored.stdout
    assert "does NOT verify" in restored.stderr and "entry 1" in restored.stderr
