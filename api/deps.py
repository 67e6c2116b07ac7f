"""Shared dependencies of the routes, as `Annotated` aliases: the context, the caller, the
permission a route needs, and the sites the caller may see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.context import ApiContext
from api.live import LiveHub
from connectors.settings import Settings
from contracts.fleet import Asset, Fleet, Site

# The last millisecond a date can hold (9999-12-31T23:59:59.999Z): a larger number is no
# instant, and overflows the stores' 64-bit integers (a 500 instead of a 422).
MAX_EPOCH_MS = 253_402_300_799_999

_bearer = HTTPBearer(auto_error=False, description="a token from POST /api/v1/auth/token, "
                     "an identity provider's token, or an API key")


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[ApiContext, Depends(get_ctx)]


def get_settings(ctx: CtxDep) -> Settings:
    return ctx.settings


def get_fleet(ctx: CtxDep) -> Fleet:
    return ctx.fleet


def get_redis(ctx: CtxDep) -> aioredis.Redis:
    assert ctx.redis is not None, "the app is not running"
    return ctx.redis


def get_hub(ctx: CtxDep) -> LiveHub:
    assert ctx.hub is not None, "the app is not running"
    return ctx.hub


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message,
                         headers={"WWW-Authenticate": "Bearer"})


async def get_principal(
    request: Request, ctx: CtxDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    try:
        # Off the event loop: an identity provider's keys may have to be fetched.
        principal = await run_in_threadpool(ctx.auth.authenticate,
                                            creds.credentials if creds else None)
    except InvalidToken as exc:
        raise unauthorized(str(exc)) from None
    request.state.principal = principal  # for the rate limiter and the access log
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
FleetDep = Annotated[Fleet, Depends(get_fleet)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
HubDep = Annotated[LiveHub, Depends(get_hub)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, if their role has `permission` (403 otherwise)."""
    async def check(principal: PrincipalDep) -> Principal:
        if not principal.can(permission):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {principal.role} may not {permission.value}")
        return principal
    return check


Reader = Annotated[Principal, Depends(require(Permission.READ))]


def visible_site(fleet: Fleet, principal: Principal, site_id: str) -> Site:
    """The site, if the caller may see it; 404 alike for one that does not exist and one of
    another customer (no way to learn what others have)."""
    site = next((s for s in fleet.sites if s.id == site_id), None)
    if site is None or not principal.scope.sees(site):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id!r}")
    return site


def visible_asset(fleet: Fleet, principal: Principal, asset_id: str) -> Asset:
    asset = fleet.assets.get(asset_id)
    if asset is None or not principal.scope.sees(fleet.site(asset.site_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {asset_id!r}")
    return asset
