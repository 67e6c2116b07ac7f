"""Built-in local users for the embedded default (an enterprise deployment signs users in
through its identity provider instead, oidc.py): a YAML file of usernames, argon2 password
hashes, roles and scopes, validated like every config file (file, line, key, problem).

    users:
      - username: ana
        password_hash: $argon2id$v=19$m=65536,t=3,p=4$…   # `bessmon users add` writes it
        role: engineer
        customers: [Nordvik Energi AB]   # or ["*"]: every customer
        regions: ["*"]                   # or a list of regions
        email: ana@example.test          # optional: where notifications for her go

The file is read at start and again whenever it changes on disk (users added with the CLI
take effect without a restart)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth.permissions import Role
from api.auth.principal import Principal, Scope
from contracts.notify import Email
from contracts.yamltext import ID_PATTERN, YamlDocument, read_text, validate

_HASHER = PasswordHasher()
# A hash to verify against when the username is unknown: the answer takes as long either way.
_DUMMY_HASH = _HASHER.hash("bessmon: no such user")


class User(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(pattern=ID_PATTERN)
    password_hash: str = Field(min_length=20)
    role: Role
    customers: tuple[str, ...] = Field(min_length=1)
    regions: tuple[str, ...] = Field(min_length=1)
    disabled: bool = False
    email: Email | None = None  # the notifier's `user:<name>` target (docs/notifications.md)

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: str) -> str:
        if not value.startswith("$argon2"):
            raise ValueError("must be an argon2 hash (bessmon users add writes one)")
        return value

    def principal(self) -> Principal:
        return Principal(self.username, self.role, Scope.of(self.customers, self.regions),
                         "local")


class UsersFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    users: tuple[User, ...] = ()

    @field_validator("users")
    @classmethod
    def _unique(cls, users: tuple[User, ...]) -> tuple[User, ...]:
        seen: set[str] = set()
        for user in users:
            if user.username in seen:
                raise ValueError(f"username {user.username!r} is listed twice")
            seen.add(user.username)
        return users


def parse_users(text: str, source: str) -> UsersFile:
    return validate(YamlDocument(text, source), UsersFile, "a 'users' list")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


class UserDirectory:
    """The users file, reloaded when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        users = parse_users(read_text(self.path), str(self.path)).users
        self._users, self._stamp = {u.username: u for u in users}, stamp

    def all(self) -> list[User]:
        with self._lock:
            self._load()
            return list(self._users.values())

    def get(self, username: str) -> User | None:
        with self._lock:
            self._load()
            return self._users.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is theirs and they are enabled, else None — in the
        same time for an unknown user as for a wrong password."""
        user = self.get(username)
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return user if user is not None and not user.disabled else None


def add_user(path: Path, username: str, password: str, role: Role, customers: list[str],
             regions: list[str], email: str | None = None) -> User:
    """Add or replace a user in the file (written whole, atomically, owner-only)."""
    current = list(parse_users(read_text(path), str(path)).users) if path.exists() else []
    user = User(username=username, password_hash=hash_password(password), role=role,
                customers=tuple(customers), regions=tuple(regions), email=email)
    _write(path, [u for u in current if u.username != username] + [user])
    return user


def set_disabled(path: Path, username: str, disabled: bool) -> bool:
    """Disable or enable a user; False when there is no such user."""
    current = list(parse_users(read_text(path), str(path)).users) if path.exists() else []
    if not any(u.username == username for u in current):
        return False
    _write(path, [u.model_copy(update={"disabled": disabled}) if u.username == username
                  else u for u in current])
    return True


def _write(path: Path, users: list[User]) -> None:
    UsersFile(users=tuple(users))  # still valid as a whole
    text = yaml.safe_dump({"users": [u.model_dump(exclude_defaults=True) for u in users]},
                          sort_keys=False, allow_unicode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)
