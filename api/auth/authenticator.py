"""From a bearer credential to a `Principal`: an API key (`bsk_…`), a token of the
configured identity provider (by its issuer), or a token this API issued to a local user —
whose user must still exist, be enabled and hold the same role (their current scope
applies)."""

from __future__ import annotations

import time

from api.auth.apikeys import ApiKeys, looks_like_key
from api.auth.oidc import OidcVerifier
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken, TokenIssuer
from api.auth.users import UserDirectory


class Authenticator:
    def __init__(self, issuer: TokenIssuer, users: UserDirectory, api_keys: ApiKeys,
                 oidc: OidcVerifier | None = None) -> None:
        self.issuer = issuer
        self.users = users
        self.api_keys = api_keys
        self.oidc = oidc

    def authenticate(self, token: str | None) -> Principal:
        """InvalidToken (message safe to show) unless the credential proves a principal."""
        if not token:
            raise InvalidToken("missing bearer token")
        if looks_like_key(token):
            return self.api_keys.verify(token, int(time.time() * 1000))
        if self.oidc is not None and self.oidc.issued_by_us(token):
            return self.oidc.verify(token)
        claimed = self.issuer.verify(token)
        user = self.users.get(claimed.subject)
        if user is None or user.disabled:
            raise InvalidToken("user no longer exists or is disabled")
        if user.role != claimed.role:
            raise InvalidToken("user's role has changed: sign in again")
        current = user.principal()
        return Principal(current.subject, current.role, current.scope, "local",
                         claimed.credential_id)
