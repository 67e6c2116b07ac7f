"""`bessmon users` (the API's local users) and `bessmon audit verify` (its audit log)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from connectors.settings import Settings


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the audit log is whole, 1 (with every problem) when it is not."""
    from connectors.api_store import ApiStore
    from connectors.audit import verify

    path = settings.api_db_path
    if not path.exists():
        print(f"bessmon: {path}: no audit log here (BESSMON_API_DB, BESSMON_RUN_DIR)",
              file=sys.stderr)
        return 2
    result = verify(ApiStore(path))
    head = f"newest entry {result.head[0]}, hash {result.head[1]}" if result.head else "empty"
    if result.ok:
        print(f"audit log {path}: {result.entries} entries, chain intact; {head}")
        return 0
    print(f"audit log {path}: TAMPERED — {len(result.problems)} problem(s):", file=sys.stderr)
    for problem in result.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """Local users (api/auth/users.py); every change is in the audit log."""
    import getpass

    from pydantic import ValidationError

    from api.auth.users import UserDirectory, add_user, set_disabled
    from connectors.api_store import ApiStore
    from connectors.audit import AuditLog

    path = settings.users_path
    if args.users_command == "list":
        for u in UserDirectory(path).all():
            print(f"{u.username}\t{u.role}\tcustomers={','.join(u.customers)}\t"
                  f"regions={','.join(u.regions)}" + (f"\temail={u.email}" if u.email else "")
                  + ("\tdisabled" if u.disabled else ""))
        return 0
    actor = os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli"
    audit = AuditLog(ApiStore(settings.api_db_path))
    now_ms = int(time.time() * 1000)
    if args.users_command == "add":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                print("bessmon: the passwords differ", file=sys.stderr)
                return 2
        if len(password) < 10:
            print("bessmon: a password has at least 10 characters", file=sys.stderr)
            return 2
        try:
            user = add_user(path, args.username, password, args.role, args.customer,
                            args.region, args.email)
        except ValidationError as exc:
            print(f"bessmon: {exc.errors()[0]['msg']}", file=sys.stderr)
            return 2
        audit.append(f"cli:{actor}", "user.set", target=user.username, now_ms=now_ms,
                     details={"role": user.role, "customers": list(user.customers),
                              "regions": list(user.regions), "email": user.email})
        print(f"{user.username}: {user.role}, customers {', '.join(user.customers)}, "
              f"regions {', '.join(user.regions)} (in {path})")
        return 0
    if not set_disabled(path, args.username, args.users_command == "disable"):
        print(f"bessmon: {path}: no user {args.username!r}", file=sys.stderr)
        return 2
    audit.append(f"cli:{actor}", f"user.{args.users_command}", target=args.username,
                 now_ms=now_ms)
    print(f"{args.username}: {args.users_command}d")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from api.auth.permissions import ROLES

    audit = sub.add_parser("audit", help="the API's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check the hash chain: exit 1 if tampered")
    verify.set_defaults(run=cmd_audit_verify)

    users = sub.add_parser("users", help="local users of the API (embedded default)")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="add a user, or replace one (password asked)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--customer", action="append", required=True,
                     help="a customer the user may see (repeat; '*' for all)")
    add.add_argument("--region", action="append", required=True,
                     help="a region the user may see (repeat; '*' for all)")
    add.add_argument("--email", help="where the notifier's messages for this user go")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    users_sub.add_parser("list", help="the users, their roles and scopes")
    for action in ("disable", "enable"):
        toggle = users_sub.add_parser(action, help=f"{action} a user (their tokens "
                                      f"{'stop' if action == 'disable' else 'start'} working)")
        toggle.add_argument("username")
    users.set_defaults(run=cmd_users)
