"""`GET /metrics`: the API process's Prometheus figures (connectors/metrics.py; what each
means: docs/metrics.md), in Prometheus' text format — for a scraper holding the metrics
token (`Authorization: Bearer <metrics token>`, the one every part of the machine answers,
connectors/metrics.py) or a caller allowed `stack.read` (admins). No token: 401; a user
without the permission: 403. Not under /api/v1 and not in the OpenAPI document: it is for
Prometheus, at the path Prometheus asks for by default."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.auth.permissions import Permission
from api.deps import CtxDep, _bearer, get_principal
from connectors.metrics import bearer_ok, metrics_token

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(
    request: Request, ctx: CtxDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    token: str | None = getattr(request.app.state, "metrics_token", None)
    if token is None:  # read (or made) once, on first use
        token = request.app.state.metrics_token = await run_in_threadpool(
            metrics_token, ctx.settings)
    header = f"Bearer {creds.credentials}" if creds else None
    if not bearer_ok(header, token):
        principal = await get_principal(request, ctx, creds)  # 401 without a credential
        if not principal.can(Permission.STACK_READ):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {principal.role} may not {Permission.STACK_READ.value}")
    body = await run_in_threadpool(generate_latest, REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
