"""A caller: who (subject), their role, and their scope — the customers and regions whose
sites they may see. Every query, export and live channel is filtered through `Scope.sees`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from api.auth.permissions import Permission, Role, allows
from contracts.fleet import Fleet, Site

ANY = "*"


@dataclass(frozen=True)
class Scope:
    """Customers and regions a caller may see; `*` in a list means any. A site is seen when
    both its customer and its region are in scope."""

    customers: frozenset[str]
    regions: frozenset[str]

    @classmethod
    def of(cls, customers: Iterable[str], regions: Iterable[str]) -> Scope:
        return cls(frozenset(customers), frozenset(regions))

    def sees(self, site: Site) -> bool:
        return (ANY in self.customers or site.customer in self.customers) and \
            (ANY in self.regions or site.region in self.regions)

    def as_claims(self) -> dict[str, list[str]]:
        return {"customers": sorted(self.customers), "regions": sorted(self.regions)}


EVERYTHING = Scope.of([ANY], [ANY])


@dataclass(frozen=True)
class Principal:
    subject: str  # a username, an identity provider's subject, or an API key's name
    role: Role
    scope: Scope
    via: Literal["local", "oidc", "api_key"]
    credential_id: str | None = None  # the token's jti or the API key's id

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    def sites(self, fleet: Fleet) -> list[Site]:
        """The fleet's sites this caller sees, in fleet order."""
        return [s for s in fleet.sites if self.scope.sees(s)]

    def site_ids(self, fleet: Fleet) -> set[str]:
        return {s.id for s in fleet.sites if self.scope.sees(s)}
