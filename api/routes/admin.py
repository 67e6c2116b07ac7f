"""For admins: the audit log and integrators' API keys.

    GET    /audit               ?after_seq=&actor=&action=&limit=  oldest first
    POST   /api-keys            {"name", "role", "customers", "regions", "expires_ms"?} →
                                the key, shown this once
    GET    /api-keys
    DELETE /api-keys/{key_id}   revoke (the key stops working at once)"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth.apikeys import ApiKey
from api.auth.permissions import Permission, Role
from api.auth.principal import Principal
from api.deps import MAX_EPOCH_MS, CtxDep, require
from api.errors import ERRORS, BadInput
from api.pagination import Page
from api.views import AuditEntryOut, CreatedKey, KeyOut

router = APIRouter(tags=["admin"], responses=ERRORS)
MAX_SEQ = 2**63 - 1  # SQLite's largest integer: beyond it a query fails (500), not a 422
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
KeyAdmin = Annotated[Principal, Depends(require(Permission.API_KEYS_MANAGE))]


@router.get("/audit")
async def audit_log(ctx: CtxDep, caller: Auditor,
                    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
                    actor: Annotated[str | None, Query(max_length=100)] = None,
                    action: Annotated[str | None, Query(max_length=100)] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Page[AuditEntryOut]:
    """`next_cursor` is the `after_seq` of the next page (the log only grows)."""
    entries = await run_in_threadpool(ctx.audit.entries, after_seq=after_seq, limit=limit,
                                      actor=actor, action=action)
    items = [AuditEntryOut(seq=e.seq, ts_ms=e.ts_ms, actor=e.actor, action=e.action,
                           target=e.target, outcome=e.outcome, details=e.details, hash=e.hash)
             for e in entries]
    return Page(items=items, next_cursor=str(items[-1].seq) if len(items) == limit else None)


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    role: Role
    customers: list[str] = Field(min_length=1, max_length=100)
    regions: list[str] = Field(min_length=1, max_length=100)
    expires_ms: int | None = Field(None, gt=0, le=MAX_EPOCH_MS)


def _out(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "role": k.role, "customers": list(k.customers),
            "regions": list(k.regions), "created_by": k.created_by,
            "created_ms": k.created_ms, "expires_ms": k.expires_ms,
            "revoked_ms": k.revoked_ms}


@router.post("/api-keys", status_code=201)
async def create_key(body: NewKey, ctx: CtxDep, caller: KeyAdmin) -> CreatedKey:
    now_ms = int(time.time() * 1000)
    if body.expires_ms is not None and body.expires_ms <= now_ms:
        raise BadInput("body.expires_ms", "must be in the future")
    key, text = await run_in_threadpool(
        ctx.auth.api_keys.create, body.name, body.role, body.customers, body.regions,
        created_by=caller.subject, now_ms=now_ms, expires_ms=body.expires_ms)
    await run_in_threadpool(ctx.audit.append, caller.subject, "api_key.create", target=key.id,
                            details={"name": key.name, "role": key.role,
                                     "customers": body.customers, "regions": body.regions,
                                     "expires_ms": body.expires_ms}, now_ms=now_ms)
    return CreatedKey(**_out(key), key=text)


@router.get("/api-keys")
async def list_keys(ctx: CtxDep, caller: KeyAdmin) -> list[KeyOut]:
    return [KeyOut(**_out(k)) for k in await run_in_threadpool(ctx.auth.api_keys.list)]


@router.delete("/api-keys/{key_id}")
async def revoke_key(key_id: str, ctx: CtxDep, caller: KeyAdmin) -> KeyOut:
    now_ms = int(time.time() * 1000)
    key = await run_in_threadpool(ctx.auth.api_keys.revoke, key_id, now_ms)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id!r}")
    await run_in_threadpool(ctx.audit.append, caller.subject, "api_key.revoke", target=key_id,
                            now_ms=now_ms)
    return KeyOut(**_out(key))

