"""Tokens of an enterprise identity provider (Azure AD / Entra ID, Okta, Keycloak, …):
RS256 or ES256 JWTs verified against the provider's JWKS URL (keys fetched and cached by
PyJWT's `PyJWKClient`, fetched again when a token names an unknown key id), with the
configured issuer and audience. The role and scope come from claims:

    BESSMON_OIDC_ROLE_CLAIM       (default "roles")    a role name, or a list of them: the
                                                       most privileged one of ours counts
    BESSMON_OIDC_CUSTOMERS_CLAIM  (default "bessmon_customers")   a list, "*" for any
    BESSMON_OIDC_REGIONS_CLAIM    (default "bessmon_regions")     a list, "*" for any

A token without one of our roles, or without both scope claims, is refused: nothing is
granted by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from api.auth.permissions import ROLES, Role
from api.auth.principal import Principal, Scope
from api.auth.tokens import LEEWAY_S, InvalidToken

ALGORITHMS = ["RS256", "ES256"]


@dataclass(frozen=True)
class OidcSettings:
    jwks_url: str
    issuer: str
    audience: str
    role_claim: str = "roles"
    customers_claim: str = "bessmon_customers"
    regions_claim: str = "bessmon_regions"


class OidcVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=3600,
                                     timeout=10)

    def issued_by_us(self, token: str) -> bool:
        """Whether the token names this provider as its issuer (read unverified, to choose
        the verifier; the verifier then checks everything)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return False
        return claims.get("iss") == self.settings.issuer

    def verify(self, token: str) -> Principal:
        s = self.settings
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            # The key decides the algorithm, not the token's header: a header naming RS256
            # over an EC key's id is refused here rather than failing inside PyJWT (500).
            if key.algorithm_name not in ALGORITHMS:
                raise InvalidToken("invalid token")
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[key.algorithm_name], audience=s.audience,
                issuer=s.issuer, leeway=LEEWAY_S, options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        # Precise about the claims of a token whose signature holds (its holder learns nothing
        # new), so that a misconfigured identity provider is found from the answer alone.
        except jwt.InvalidAudienceError:
            raise InvalidToken("token is not for this API (wrong audience)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks its {exc.claim!r} claim") from None
        except jwt.PyJWKClientError:
            raise InvalidToken("token signed by a key the identity provider does not list") \
                from None
        except jwt.InvalidTokenError:
            raise InvalidToken("invalid token") from None
        role = _role(claims.get(s.role_claim))
        customers, regions = claims.get(s.customers_claim), claims.get(s.regions_claim)
        if role is None:
            raise InvalidToken(f"token has no bessmon role in claim {s.role_claim!r}")
        if not (_names(customers) and _names(regions)):
            raise InvalidToken(f"token lacks its scope claims {s.customers_claim!r} and "
                               f"{s.regions_claim!r}")
        assert isinstance(customers, list) and isinstance(regions, list)
        return Principal(str(claims["sub"]), role, Scope.of(customers, regions), "oidc",
                         claims.get("jti"))


def _role(value: object) -> Role | None:
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    ours = [r for r in ROLES if r in names]
    return ours[-1] if ours else None  # ROLES runs from least to most privileged


def _names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
