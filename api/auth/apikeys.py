"""API keys for integrators: scoped like users (a role, customers, regions), revocable, with
an optional expiry. A key is `bsk_<id>_<secret>`; only a SHA-256 of the secret is stored
(the secret is 32 random bytes: no slow hash is needed against guessing), so the key is
shown once, when made. Sent as a bearer token like a JWT."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from api.auth.permissions import Role
from api.auth.principal import Principal, Scope
from api.auth.tokens import InvalidToken
from connectors.api_store import ApiStore

PREFIX = "bsk_"
_KEY = re.compile(r"^bsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: Role
    customers: tuple[str, ...]
    regions: tuple[str, ...]
    created_by: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def active(self, now_ms: int) -> bool:
        return self.revoked_ms is None and (self.expires_ms is None or self.expires_ms > now_ms)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


class ApiKeys:
    def __init__(self, store: ApiStore) -> None:
        self.store = store

    def create(self, name: str, role: Role, customers: list[str], regions: list[str], *,
               created_by: str, now_ms: int, expires_ms: int | None = None
               ) -> tuple[ApiKey, str]:
        """A new key and its full text (shown once)."""
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        self.store.connect().execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (key_id, name, _digest(secret), role, json.dumps(customers), json.dumps(regions),
             created_by, now_ms, expires_ms))
        return self.get(key_id), f"{PREFIX}{key_id}_{secret}"  # type: ignore[return-value]

    def get(self, key_id: str) -> ApiKey | None:
        row = self.store.connect().execute(
            "SELECT id, name, role, customers, regions, created_by, created_ms, expires_ms, "
            "revoked_ms FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else _key(row)

    def list(self) -> list[ApiKey]:
        rows = self.store.connect().execute(
            "SELECT id, name, role, customers, regions, created_by, created_ms, expires_ms, "
            "revoked_ms FROM api_keys ORDER BY created_ms, id").fetchall()
        return [_key(r) for r in rows]

    def revoke(self, key_id: str, now_ms: int) -> ApiKey | None:
        self.store.connect().execute(
            "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            (now_ms, key_id))
        return self.get(key_id)

    def verify(self, token: str, now_ms: int) -> Principal:
        match = _KEY.match(token)
        if match is None:
            raise InvalidToken("invalid API key")
        key_id, secret = match.groups()
        row = self.store.connect().execute(
            "SELECT secret_sha256 FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None or not hmac.compare_digest(row[0], _digest(secret)):
            raise InvalidToken("invalid API key")
        key = self.get(key_id)
        assert key is not None
        if key.revoked_ms is not None:
            raise InvalidToken("API key revoked")
        if not key.active(now_ms):
            raise InvalidToken("API key expired")
        return Principal(key.name, key.role, Scope.of(key.customers, key.regions), "api_key",
                         key.id)


def _key(row: tuple[object, ...]) -> ApiKey:
    key_id, name, role, customers, regions, created_by, created_ms, expires_ms, revoked = row
    return ApiKey(str(key_id), str(name), role, tuple(json.loads(str(customers))),  # type: ignore[arg-type]
                  tuple(json.loads(str(regions))), str(created_by), int(created_ms),  # type: ignore[call-overload]
                  expires_ms, revoked)  # type: ignore[arg-type]
