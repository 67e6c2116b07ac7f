"""Users of every role for API tests, with known passwords, and tokens for them."""

from __future__ import annotations

from pathlib import Path

from api.auth.permissions import ROLES, Role
from api.auth.tokens import TokenIssuer
from api.auth.users import add_user
from connectors.settings import Settings

# username → (role, customers, regions); passwords are f"pw-{username}"
USERS: dict[str, tuple[Role, list[str], list[str]]] = {
    **{role: (role, ["*"], ["*"]) for role in ROLES},
    # Scoped: one customer (Nordvik), one region (DE: Elbe), both (nothing: Elbe is DE).
    "nordvik-viewer": ("viewer", ["Nordvik Energi AB"], ["*"]),
    "de-engineer": ("engineer", ["*"], ["DE"]),
    "nordvik-in-de": ("viewer", ["Nordvik Energi AB"], ["DE"]),
    # Scoped to Nordvik with every per-site permission (alarms, contracts, reports).
    "nordvik-manager": ("service_manager", ["Nordvik Energi AB"], ["*"]),
}


def write_users(settings: Settings) -> Path:
    for name, (role, customers, regions) in USERS.items():
        add_user(settings.users_path, name, f"pw-{name}", role, customers, regions)
    return settings.users_path


def token(settings: Settings, username: str) -> str:
    from api.auth.users import UserDirectory

    user = UserDirectory(settings.users_path).get(username)
    assert user is not None, username
    issued, _ = TokenIssuer(settings.jwt_key_path, settings.token_ttl_s).issue(user.principal())
    return issued


def auth(settings: Settings, username: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, username)}"}
