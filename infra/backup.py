"""Backup and restore of the state that must not be lost (`bessmon backup`, `bessmon
restore`, docs/backup.md): users, signing keys, API keys and the audit log, exclusions and
their evidence, the notification outbox, rules and preferences, the report archive, the
control loop's latched units, the ticket poller's place — and the operators' alarm handlings
(acknowledged, shelved), which live in Redis.

A backup is a directory laid out like a run directory (`api.db`, `auth/jwt-es256.pem`,
`evidence/<sha256>` …) with a `manifest.json` written last: the format, when, the bessmon
version, and every file's path, size, mode and sha256. It is taken online, while the stack
runs: every SQLite database is copied with SQLite's online backup API (one read transaction:
a consistent snapshot, writers are not stopped), the API's database while holding its write
lock so that its snapshot and the audit log's head file (written inside that lock,
connectors/audit.py) are of the same moment. Order matters where one store points into
another: a database is copied before the files its rows name (evidence after the API's
database, report files after the archive's index), and those files are written before their
rows, so every row of the copy has its file. The directory and its files are owner-only (the
keys are secrets).

Restore checks the manifest and every file's size and sha256 before it writes anything,
refuses to overwrite an existing state unless forced, writes each file where the settings
put that store (atomically, file by file), puts the alarm handlings back into Redis (not
over a newer one), and then verifies the restored audit chain against the manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from connectors.settings import Settings
from contracts.errors import InvalidInput

FORMAT = "bessmon-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 20
HANDLINGS_STORED = "redis/alarm-handling.json"
Kind = Literal["sqlite", "file", "tree"]
Say = Callable[[str], None]


@dataclass(frozen=True)
class Item:
    """One store: `path` is where it lives by the settings, `stored` where it is in a
    backup (a directory for a tree)."""

    name: str
    kind: Kind
    path: Path
    stored: str
    what: str
    skip: Callable[[str], bool] = lambda _name: False  # a tree's files left out (temporary)


def items(settings: Settings, *, with_history: bool = False) -> list[Item]:
    """Every durable store of a machine, in the order a backup copies them."""
    from api.reports.archive import archive_root
    from connectors.ack_secret import ack_key_path
    from connectors.evidence import evidence_dir
    from infra.cli.report import reports_file

    run = settings.run_dir
    api_db = settings.api_db_path
    out = [
        Item("api_db", "sqlite", api_db, "api.db",
             "API keys, the audit log, exclusions and their workflow"),
        Item("audit_head", "file", api_db.with_name(api_db.name + ".audit-head"),
             "api.db.audit-head", "the audit log's head (copied with api.db)"),
        # after api.db: an evidence file is stored before its row is added
        Item("evidence", "tree", evidence_dir(run), "evidence",
             "exclusions' evidence files", skip=lambda n: n.startswith(".")),
        Item("notify_db", "sqlite", settings.notify_db_path, "notify.db",
             "the notification outbox and delivery log"),
        # the index first, then the files (a version's files are in place before its row)
        Item("reports", "tree", archive_root(run), "reports",
             "the report archive (index and files)",
             skip=lambda n: n.startswith(".") or n.startswith("index.db")),
        Item("users", "file", settings.users_path, "users.yaml", "local users"),
        Item("jwt_key", "file", settings.jwt_key_path, "auth/jwt-es256.pem",
             "the key signing users' tokens"),
        Item("ack_key", "file", ack_key_path(settings), "auth/ack-link.key",
             "the key signing e-mails' acknowledge links"),
        Item("notify_rules", "file", settings.notify_rules_path, "notify-rules.yaml",
             "notification rules"),
        Item("notify_preferences", "file", settings.notify_preferences_path,
             "notify-preferences.yaml", "users' notification preferences"),
        Item("reports_config", "file", reports_file(settings), "reports.yaml",
             "the scheduled reports' configuration"),
        Item("control_state", "file", run / "control" / "state.json", "control/state.json",
             "the control loop's units (latched stops and errors)"),
        Item("ticket_state", "file", run / "tickets" / "poller.json", "tickets/poller.json",
             "the ticket poller's place in each service desk"),
        Item("credentials", "file", run / "credentials.txt", "credentials.txt",
             "the demo users' passwords (bessmon up)"),
    ]
    if with_history:
        out.append(Item("history", "sqlite", settings.history_path or run / "history.db",
                        "history.db", "the embedded history"))
    return out


def _index_db(item: Item) -> Path:
    return item.path / "index.db"


# -- backup ----------------------------------------------------------------------------------

@dataclass
class BackupResult:
    dest: Path
    files: int = 0
    bytes: int = 0
    audit: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)  # the source's audit chain, if broken
    notes: list[str] = field(default_factory=list)


class _Writer:
    """Files into the backup directory, owner-only, each hashed into the manifest."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.entries: list[dict[str, Any]] = []

    def target(self, stored: str) -> Path:
        path = self.dest / stored
        _private_dirs(path.parent)
        return path

    def copy_file(self, item: str, source: Path, stored: str, rel: str | None = None) -> int:
        """Copy one file; its size (FileNotFoundError if it vanished meanwhile: nothing
        kept)."""
        with open(source, "rb") as src:
            mode = os.fstat(src.fileno()).st_mode & 0o777
            target = self.target(stored)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        return self.add(item, stored, mode, rel)

    def add(self, item: str, stored: str, mode: int, rel: str | None = None) -> int:
        size, digest = _hash(self.dest / stored)
        entry: dict[str, Any] = {"item": item, "path": stored, "size": size, "sha256": digest,
                                 "mode": mode}
        if rel is not None:
            entry["rel"] = rel
        self.entries.append(entry)
        return size


def backup(settings: Settings, dest: Path, *, with_history: bool = False,
           say: Say = print) -> BackupResult:
    """Copy every store into `dest` (new, or an empty directory) and write its manifest."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(str(dest), "", "exists and is not an empty directory: a backup "
                           "goes into a new (or empty) directory")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.chmod(0o700)
    writer, result = _Writer(dest), BackupResult(dest)
    started = time.time()
    say(f"backup of {settings.run_dir} into {dest}")
    all_items = items(settings, with_history=with_history)
    by_name = {i.name: i for i in all_items}
    for item in all_items:
        if item.name == "audit_head":
            continue  # copied with api.db
        before = len(writer.entries)
        if item.kind == "sqlite":
            if not item.path.is_file():
                say(f"  {item.name:<20} none ({item.path})")
                continue
            if item.name == "api_db":
                _copy_api_db(item, by_name["audit_head"], writer, result)
            else:
                _copy_sqlite(item.name, item.path, writer, item.stored)
        elif item.kind == "file":
            if not item.path.is_file():
                say(f"  {item.name:<20} none ({item.path})")
                continue
            try:
                writer.copy_file(item.name, item.path, item.stored)
            except FileNotFoundError:
                say(f"  {item.name:<20} none ({item.path} went away meanwhile)")
                continue
        else:
            if item.name == "reports" and _index_db(item).is_file():
                _copy_sqlite(item.name, _index_db(item), writer, f"{item.stored}/index.db",
                             rel="index.db")
            _copy_tree(item, writer)
        added = writer.entries[before:]
        size = sum(e["size"] for e in added)
        detail = f"{files(len(added))}, " if item.kind == "tree" else ""
        extra = ""
        if item.name == "api_db" and result.audit is not None:
            head = result.audit["head"]
            extra = (f"; audit log {result.audit['entries']} entries"
                     + (f", head {head[0]} {head[1][:12]}…" if head else ""))
        say(f"  {item.name:<20} {detail}{human_size(size)}  ({item.path}){extra}")
    if with_history and settings.questdb_url:
        result.notes.append("the history is in QuestDB (QUESTDB_URL): back it up with "
                            "QuestDB's own tools")
    elif not with_history:
        result.notes.append("the history is not in this backup (--with-history adds the "
                            "embedded one; it can be large)")
    if settings.ack_secret is not None:
        result.notes.append("BESSMON_ACK_SECRET is set: keep it with the backup (it is not "
                            "in it)")
    _export_handlings(settings, writer, result, say)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created_ms": int(started * 1000),
        "created": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "bessmon_version": _version(), "source_run_dir": str(settings.run_dir),
        "with_history": with_history, "audit": result.audit, "notes": result.notes,
        "files": writer.entries,
    }
    aside = dest / f".{MANIFEST}.tmp"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    aside.replace(dest / MANIFEST)
    result.files = len(writer.entries)
    result.bytes = sum(e["size"] for e in writer.entries)
    return result


def _copy_api_db(item: Item, head: Item, writer: _Writer, result: BackupResult) -> None:
    """The API's database and the audit head of the same moment: its write lock is held
    (appends wait, up to their 30 s busy timeout) while the head is read and the snapshot
    taken by another connection — so neither can move on between the two."""
    from connectors.api_store import ApiStore
    from connectors.audit import verify

    lock = sqlite3.connect(item.path, timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        try:
            with contextlib.suppress(FileNotFoundError):
                writer.copy_file(head.name, head.path, head.stored)
            target = _snapshot(item.path, writer.target(item.stored))
        finally:
            lock.execute("ROLLBACK")
    finally:
        lock.close()
    store = ApiStore(target)
    try:
        checked = verify(store)
    finally:
        store.close()
    result.audit = {"entries": checked.entries,
                    "head": list(checked.head) if checked.head else None}
    result.problems = list(checked.problems)
    _finish_sqlite(target)
    writer.add(item.name, item.stored, _mode(item.path))


def _copy_sqlite(name: str, source: Path, writer: _Writer, stored: str,
                 rel: str | None = None) -> None:
    target = _snapshot(source, writer.target(stored))
    _finish_sqlite(target)
    writer.add(name, stored, _mode(source), rel)


def _snapshot(source: Path, target: Path) -> Path:
    """SQLite's online backup of `source` into the new file `target` (owner-only): all
    pages in one step, so one read transaction — a consistent copy while others write."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return target


def _finish_sqlite(path: Path) -> None:
    """One self-contained file (rollback journal, no -wal beside it), checked."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if check != "ok":
        raise InvalidInput(str(path), "", f"the copy fails SQLite's check: {check}")


def _copy_tree(item: Item, writer: _Writer) -> None:
    if not item.path.is_dir():
        return
    for path in sorted(_files(item.path)):
        rel = path.relative_to(item.path).as_posix()
        if any(item.skip(part) for part in PurePosixPath(rel).parts):
            continue
        # a file that went away meanwhile (an unindexed report version being cleaned) is
        # simply not in the backup
        with contextlib.suppress(FileNotFoundError):
            writer.copy_file(item.name, path, f"{item.stored}/{rel}", rel)


def _files(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .tmp-* report versions
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _export_handlings(settings: Settings, writer: _Writer, result: BackupResult,
                      say: Say) -> None:
    """The operators' alarm handlings (hash per site in Redis) into one JSON file."""
    if not settings.redis_url:
        say(f"  {'alarm_handling':<20} not exported: REDIS_URL is not set (acknowledgements "
            "and shelvings are in Redis)")
        return
    import redis

    from connectors.redis_store import alarm_handling_key

    prefix = alarm_handling_key("")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        sites: dict[str, dict[str, str]] = {}
        for key in sorted(_text(k) for k in client.scan_iter(match=prefix + "*", count=500)):
            handlings = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
            if handlings:
                sites[key[len(prefix):]] = dict(sorted(handlings.items()))
    finally:
        client.close()
    target = writer.target(HANDLINGS_STORED)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"key_prefix": prefix, "sites": sites}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    size = writer.add("alarm_handling", HANDLINGS_STORED, 0o600)
    count = sum(len(h) for h in sites.values())
    say(f"  {'alarm_handling':<20} {count} handlings of {len(sites)} sites, {human_size(size)} "
        "(Redis)")


# -- restore ---------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    run_dir: Path
    files: int = 0
    audit_entries: int | None = None
    audit_head: tuple[int, str] | None = None
    problems: list[str] = field(default_factory=list)  # the restored audit chain's
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_manifest(src: Path) -> dict[str, Any]:
    path = src / MANIFEST
    if not src.is_dir():
        raise InvalidInput(str(src), "", "no such backup directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(str(path), "", "missing: not a bessmon backup, or an incomplete "
                           "one (the manifest is written last); nothing was restored") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(str(path), "", f"unreadable ({exc}); nothing was restored") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(str(path), "format", f"not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(str(path), "format_version", f"{manifest.get('format_version')!r}:"
                           f" this bessmon restores version {FORMAT_VERSION}")
    if not isinstance(manifest.get("files"), list):
        raise InvalidInput(str(path), "files", "missing or not a list")
    return manifest


def check_backup(src: Path, manifest: dict[str, Any], known: dict[str, Kind]) -> None:
    """Every file of the manifest present, inside the backup, of its size and sha256 —
    InvalidInput naming the first that is not."""
    source = str(src / MANIFEST)
    seen: set[str] = set()
    items_seen: set[str] = set()
    for n, entry in enumerate(manifest["files"]):
        where = f"files[{n}]"
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), t) for k, t in
                (("item", str), ("path", str), ("size", int), ("sha256", str))):
            raise InvalidInput(source, where, "needs item, path, size and sha256")
        stored = entry["path"]
        kind = known.get(entry["item"])
        if kind is None:
            raise InvalidInput(source, where, f"unknown item {entry['item']!r}")
        if (kind == "tree") != isinstance(entry.get("rel"), str):
            raise InvalidInput(source, where, "a file of a directory (only) has a rel path")
        if kind != "tree" and entry["item"] in items_seen:
            raise InvalidInput(source, where, f"{entry['item']} listed twice")
        items_seen.add(entry["item"])
        for rel in (stored, entry.get("rel", "x")):
            pure = PurePosixPath(rel) if isinstance(rel, str) else None
            if pure is None or pure.is_absolute() or ".." in pure.parts or not pure.parts:
                raise InvalidInput(source, where, f"{rel!r} is not a path inside the backup")
        if stored in seen:
            raise InvalidInput(source, where, f"{stored} listed twice")
        seen.add(stored)
        path = src / stored
        if not path.is_file():
            raise InvalidInput(str(path), "", "missing from the backup (incomplete); nothing "
                               "was restored")
        size, digest = _hash(path)
        if size != entry["size"] or digest != entry["sha256"]:
            raise InvalidInput(str(path), "", "does not match the manifest (size or sha256): "
                               "the backup is damaged; nothing was restored")


def restore(settings: Settings, src: Path, *, force: bool = False,
            say: Say = print) -> RestoreResult:
    """Check `src` whole, then write its files where `settings` puts each store, restore
    the alarm handlings into Redis, and verify the restored audit chain."""
    manifest = read_manifest(src)
    all_items = {i.name: i for i in items(settings, with_history=True)}
    check_backup(src, manifest, {**{n: i.kind for n, i in all_items.items()},
                                 "alarm_handling": "file"})
    entries: list[dict[str, Any]] = manifest["files"]
    say(f"backup {src}: made {manifest.get('created')} by bessmon "
        f"{manifest.get('bessmon_version') or '?'} from {manifest.get('source_run_dir')}; "
        f"{files(len(entries))}, every sha256 checked")
    _refuse_running_stack(settings)
    present = {e["item"] for e in entries}
    existing = [str(item.path) for item in all_items.values()
                if (item.name != "history" or "history" in present) and _has_state(item)]
    if existing and not force:
        raise InvalidInput(existing[0], "", "a state is already there" + (
            f" (and {len(existing) - 1} more)" if len(existing) > 1 else "")
            + ": restore into a fresh run directory (--run-dir), or --force to overwrite it")
    result = RestoreResult(settings.run_dir)
    for name, item in all_items.items():
        mine = [e for e in entries if e["item"] == name]
        if not mine:
            if name != "history" and _has_state(item):
                say(f"  {name:<20} kept as it is (not in the backup): {item.path}")
            continue
        if item.kind == "sqlite" or name == "reports":
            db = item.path if item.kind == "sqlite" else _index_db(item)
            for suffix in ("-wal", "-shm", "-journal"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
        if name == "api_db":  # a head of another state would not match this one
            all_items["audit_head"].path.unlink(missing_ok=True)
        for entry in mine:
            target = item.path / entry["rel"] if item.kind == "tree" else item.path
            _install(src / entry["path"], target, int(entry.get("mode", 0o600)) & 0o777)
        size = sum(e["size"] for e in mine)
        count = f"{files(len(mine))}, " if item.kind == "tree" else ""
        say(f"  {name:<20} {count}{human_size(size)} → {item.path}")
        result.files += len(mine)
    handlings = [e for e in entries if e["item"] == "alarm_handling"]
    if handlings:
        _restore_handlings(settings, src / handlings[0]["path"], result, say)
    _verify_restored(settings, manifest, "api_db" in present, result, say)
    return result


def _has_state(item: Item) -> bool:
    if item.kind == "tree":
        return item.path.is_dir() and any(not f.name.startswith(".")
                                          for f in _files(item.path))
    return item.path.exists()


def _refuse_running_stack(settings: Settings) -> None:
    """Never under a running stack: its processes hold the databases open."""
    stack = settings.run_dir / "stack.json"
    try:
        pid = int(json.loads(stack.read_text(encoding="utf-8")).get("pid", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return
    if pid > 0 and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # left behind by a stack that is gone
        except PermissionError:
            pass
        raise InvalidInput(str(stack), "pid", f"a bessmon stack runs on this run directory "
                           f"(pid {pid}): stop it before restoring")


def _install(source: Path, target: Path, mode: int) -> None:
    """Copy `source` to `target` whole or not at all (written aside, synced, renamed)."""
    _private_dirs(target.parent)
    aside = target.with_name(f".{target.name}.{os.getpid()}.restore")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(aside, target)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise


def _restore_handlings(settings: Settings, path: Path, result: RestoreResult,
                       say: Say) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    sites: dict[str, dict[str, str]] = data.get("sites", {})
    total = sum(len(h) for h in sites.values())
    if not settings.redis_url:
        say(f"  {'alarm_handling':<20} {total} handlings NOT restored: REDIS_URL is not set "
            "(set it and run the restore again with --force)")
        result.notes.append("alarm handlings not restored: REDIS_URL is not set")
        return
    import redis

    from connectors.redis_store import alarm_handling_key

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    put = 0
    try:
        pipe = client.pipeline(transaction=False)
        for site_id, handlings in sites.items():
            for breach_id, handling in handlings.items():
                # not over a handling made since: an operator's newer action wins
                pipe.hsetnx(alarm_handling_key(site_id), breach_id, handling)
        put = sum(1 for added in pipe.execute() if added)
    finally:
        client.close()
    say(f"  {'alarm_handling':<20} {put} of {total} handlings restored into Redis"
        + (f" ({total - put} newer ones kept)" if put < total else ""))


def _verify_restored(settings: Settings, manifest: dict[str, Any], has_api_db: bool,
                     result: RestoreResult, say: Say) -> None:
    from connectors.api_store import ApiStore
    from connectors.audit import verify

    if not has_api_db:
        result.notes.append("no api.db in the backup: no audit log to verify")
        say("audit log: none in the backup")
        return
    store = ApiStore(settings.api_db_path)
    try:
        checked = verify(store)
    finally:
        store.close()
    result.audit_entries, result.audit_head = checked.entries, checked.head
    result.problems = list(checked.problems)
    expected = manifest.get("audit") or {}
    if expected.get("entries") is not None and expected["entries"] != checked.entries:
        result.problems.append(f"{checked.entries} entries restored, the backup recorded "
                               f"{expected['entries']}")
    recorded = expected.get("head")
    if recorded and (checked.head is None or list(checked.head) != list(recorded)):
        result.problems.append(f"the restored head {checked.head} is not the backup's "
                               f"{tuple(recorded)}")


# -- shared ----------------------------------------------------------------------------------

def _hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _private_dirs(folder: Path) -> None:
    """`folder` and the missing ones above it made owner-only."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700, exist_ok=True)


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bessmon")
    except PackageNotFoundError:
        return None


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
