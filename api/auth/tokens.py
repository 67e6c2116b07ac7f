"""Bearer tokens the API issues to its local users: JWTs signed with ES256 by a key of this
deployment (a PEM file, created on first use, owner-only; every API process of a deployment
reads the same one), carrying the user's role and scope, valid for `token_ttl_s`.

A token is checked for its signature, issuer, audience, expiry (with 30 s of leeway for
clocks) and for the user still existing and enabled with the same role — so disabling a user
or changing their role takes effect at their next request, not when the token runs out."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api.auth.principal import Principal, Scope

ISSUER = "bessmon"
AUDIENCE = "bessmon-api"
ALGORITHM = "ES256"
LEEWAY_S = 30


class InvalidToken(Exception):
    """A token that proves nothing: the message says why (never echoing the token)."""


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return loaded


class TokenIssuer:
    def __init__(self, key_file: Path, ttl_s: float) -> None:
        self._key = load_or_create_key(key_file)
        self._public = self._key.public_key()
        self.ttl_s = ttl_s

    def issue(self, principal: Principal, *, now: float | None = None) -> tuple[str, int]:
        """A token for the principal and its lifetime in seconds."""
        now = time.time() if now is None else now
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": principal.subject, "role": principal.role,
            **principal.scope.as_claims(), "iat": int(now), "exp": int(now + self.ttl_s),
            "jti": secrets.token_urlsafe(12)}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), int(self.ttl_s)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._public, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, leeway=LEEWAY_S,
                                options={"require": ["exp", "iat", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("invalid token") from None
        return Principal(str(claims["sub"]), claims["role"],
                         Scope.of(claims.get("customers", []), claims.get("regions", [])),
                         "local", str(claims["jti"]))
