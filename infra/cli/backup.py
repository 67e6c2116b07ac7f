"""`bessmon backup DEST` and `bessmon restore SRC` (infra/backup.py, docs/backup.md): the
state that must not be lost — users, keys, API keys and the audit log, exclusions and their
evidence, the notification outbox, rules and preferences, the report archive, alarm
handlings — copied online into a private directory with a manifest of hashes, and restored
from one after every hash is checked, the audit chain verified at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from connectors.settings import Settings


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when done; 1 when the source's audit chain is broken (the copy is kept, and
    says so: a backup of evidence of tampering is still a backup)."""
    from infra.backup import backup, files, human_size

    result = backup(settings, args.dest, with_history=args.with_history)
    for note in result.notes:
        print(f"  note: {note}")
    audit = result.audit
    chain = ("no audit log" if audit is None else
             f"audit log {audit['entries']} entries, "
             + ("chain intact" if not result.problems else "CHAIN BROKEN"))
    print(f"backup {result.dest}: {files(result.files)}, {human_size(result.bytes)}, {chain}; "
          f"manifest {result.dest / 'manifest.json'}")
    if result.problems:
        print("bessmon: the source's audit log is TAMPERED — "
              f"{len(result.problems)} problem(s):", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when restored with an intact audit chain, 1 when the restored chain does not
    verify, 2 when the backup or the target is refused (nothing written)."""
    from infra.backup import files, restore

    if args.run_dir is not None:
        settings = settings.model_copy(update={"run_dir": args.run_dir})
    result = restore(settings, args.src, force=args.force)
    for note in result.notes:
        print(f"  note: {note}")
    head = (f"newest entry {result.audit_head[0]}, hash {result.audit_head[1]}"
            if result.audit_head else "empty")
    if result.ok:
        chain = ("" if result.audit_entries is None else
                 f"; audit log {result.audit_entries} entries, chain intact ({head})")
        print(f"restored {files(result.files)} into {result.run_dir}{chain}")
        return 0
    print(f"restored {files(result.files)} into {result.run_dir}, but the audit log does NOT "
          f"verify — {len(result.problems)} problem(s):", file=sys.stderr)
    for problem in result.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser(
        "backup", help="copy the durable state into a new directory (online)",
        description="Copy users, keys, API keys and the audit log, exclusions and evidence, "
                    "the outbox, notification rules and preferences, the report archive and "
                    "the alarm handlings (from Redis, when REDIS_URL is set) into DEST, "
                    "while the stack runs (docs/backup.md).")
    backup.add_argument("dest", type=Path, metavar="DEST",
                        help="a new (or empty) directory; made owner-only")
    backup.add_argument("--with-history", action="store_true",
                        help="also the embedded history database (large; off by default: "
                             "not needed to restore the state that must not be lost)")
    backup.set_defaults(run=cmd_backup)

    restore = sub.add_parser(
        "restore", help="restore a backup (stack stopped), then verify the audit chain",
        description="Check every file of the backup against its manifest, write them where "
                    "the settings put each store, restore the alarm handlings into Redis "
                    "(REDIS_URL), and verify the restored audit log (docs/backup.md).")
    restore.add_argument("src", type=Path, metavar="SRC", help="a directory `bessmon backup` "
                                                               "made")
    restore.add_argument("--run-dir", type=Path, help="restore into this run directory "
                         "(default BESSMON_RUN_DIR; BESSMON_API_DB and the other paths set "
                         "still win)")
    restore.add_argument("--force", action="store_true",
                         help="overwrite the state already there")
    restore.set_defaults(run=cmd_restore)
