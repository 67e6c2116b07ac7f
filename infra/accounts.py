"""The embedded default's sign-in: when no users file exists yet, `bessmon up` makes one with
a user per role (all customers) and a viewer scoped to one customer, each with a random
password written to `<run dir>/credentials.txt` (owner-only), and signs the admin in for the
dashboard link it prints. An existing users file is left alone."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from api.auth.permissions import Role
from api.auth.tokens import TokenIssuer
from api.auth.users import UserDirectory, add_user
from connectors.settings import Settings
from contracts.fleet import Fleet


def demo_users(fleet: Fleet) -> list[tuple[str, Role, list[str], list[str]]]:
    first = fleet.sites[0]
    return [("admin", "admin", ["*"], ["*"]), ("noc", "viewer", ["*"], ["*"]),
            ("engineer", "engineer", ["*"], ["*"]),
            ("service", "service_manager", ["*"], ["*"]),
            ("contracts", "contract_manager", ["*"], ["*"]),
            (f"viewer-{first.id}", "viewer", [first.customer], ["*"])]


def ensure_users(settings: Settings, fleet: Fleet) -> Path | None:
    """Make the demo users if there is no users file; the credentials file, or None."""
    path = settings.users_path
    if path.exists():
        return None
    lines = ["# bessmon up: the users it made (username  role  scope  password)"]
    for name, role, customers, regions in demo_users(fleet):
        password = secrets.token_urlsafe(12)
        add_user(path, name, password, role, customers, regions)
        lines.append(f"{name}  {role}  customers={','.join(customers)} "
                     f"regions={','.join(regions)}  {password}")
    credentials = settings.run_dir / "credentials.txt"
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return credentials


def admin_token(settings: Settings) -> str:
    """A token for the first admin of the users file (the dashboard link)."""
    users = UserDirectory(settings.users_path)
    admin = next((u for u in users.all() if u.role == "admin" and not u.disabled), None)
    if admin is None:
        raise RuntimeError(f"{settings.users_path} has no enabled admin to sign in")
    token, _ = TokenIssuer(settings.jwt_key_path, settings.token_ttl_s).issue(
        admin.principal())
    return token

