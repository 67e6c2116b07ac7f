"""Signing in (local users; an identity provider's users bring its token instead):

    POST /auth/token     OAuth2 password form (username, password) → a bearer JWT
    POST /auth/refresh   a fresh token for a valid local one (wall displays run for days)
    GET  /auth/me        who the caller is: role, permissions, scope, visible sites

Every sign-in, failed or not, is in the audit log (never the password); failed attempts are
limited per address and username (429 over the limit)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from api.auth.permissions import ROLE_PERMISSIONS
from api.deps import CtxDep, PrincipalDep, RedisDep, unauthorized
from api.errors import ERRORS
from api.protections import login_allowed
from api.views import Me, Token

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS)


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.post("/token")
async def sign_in(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()],
                  ctx: CtxDep, redis: RedisDep) -> Token:
    now_ms = int(time.time() * 1000)
    address = _address(request)
    if not await login_allowed(redis, address, form.username,
                               ctx.settings.login_attempts_per_minute):
        await run_in_threadpool(ctx.audit.append, form.username, "login", outcome="refused",
                                details={"address": address, "why": "too many attempts"},
                                now_ms=now_ms)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            "too many sign-in attempts: wait a minute",
                            headers={"Retry-After": "60"})
    user = await run_in_threadpool(ctx.auth.users.authenticate, form.username, form.password)
    if user is None:
        await run_in_threadpool(ctx.audit.append, form.username, "login", outcome="failed",
                                details={"address": address}, now_ms=now_ms)
        raise unauthorized("wrong username or password")
    token, ttl = ctx.auth.issuer.issue(user.principal())
    await run_in_threadpool(ctx.audit.append, user.username, "login",
                            details={"address": address}, now_ms=now_ms)
    return Token(access_token=token, expires_in=ttl)


@router.post("/refresh")
async def refresh(ctx: CtxDep, caller: PrincipalDep) -> Token:
    if caller.via != "local":
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "only tokens of this API are refreshed here: ask your identity "
                            "provider, or use the API key as it is")
    token, ttl = ctx.auth.issuer.issue(caller)
    return Token(access_token=token, expires_in=ttl)


@router.get("/me")
async def me(ctx: CtxDep, caller: PrincipalDep) -> Me:
    return Me(subject=caller.subject, role=caller.role, via=caller.via,
              permissions=sorted(p.value for p in ROLE_PERMISSIONS[caller.role]),
              customers=sorted(caller.scope.customers), regions=sorted(caller.scope.regions),
              sites=[s.id for s in caller.sites(ctx.fleet)])
