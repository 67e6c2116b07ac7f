"""Exclusion windows as a workflow (docs/exclusions.md; the rules: contracts/exclusions.py):

    GET  /contracts/{contract_id}/exclusions                 ?state=   (`contracts.read`)
    POST /contracts/{contract_id}/exclusions                 propose   (`exclusions.propose`)
    POST /contracts/{contract_id}/exclusions/{n}/evidence    a file, multipart `file`
                                                             (`exclusions.propose`; ≤ 20 MiB)
    GET  /contracts/{contract_id}/exclusions/{n}/evidence/{sha256}   (`contracts.read`)
    POST /contracts/{contract_id}/exclusions/{n}/approve     {"comment"?} (`exclusions.decide`)
    POST /contracts/{contract_id}/exclusions/{n}/reject      {"comment"}  (`exclusions.decide`)
    POST /contracts/{contract_id}/exclusions/{n}/withdraw    the proposer (`exclusions.propose`)
    POST /contracts/{contract_id}/exclusions/{n}/revoke      {"comment"}  (`exclusions.decide`)

A contract is reached only through its site, in the caller's scope (404 alike for one that
does not exist and one the caller may not see). Every step is in the audit log as
`exclusion.<action>`, target `<contract>#<n>`, refusals too (outcome `refused`, the reason in
`details.why`): a role without the permission (403, before any lookup), four eyes and the
proposer rule (403), a state that does not allow the step (409).

An approval (or revocation) that touches closed periods — ended before now — evaluates them
with and without the window (api/history_evaluation.py, as the compliance does) and returns
and records the revision of each period whose numbers changed. Tickets propose windows by
themselves (`propose_from_ticket`, called by api/routes/webhooks.py)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.context import ApiContext
from api.deps import MAX_EPOCH_MS, CtxDep, PrincipalDep, RedisDep, require
from api.errors import ERRORS, BadInput
from api.history_evaluation import evaluate_history
from api.views import EvidenceOut, ExclusionOut, RevisionOut
from connectors.api_store import Evidence, ExclusionRecord, ExclusionStore, approved_windows
from connectors.evidence import (
    MAX_EVIDENCE_BYTES,
    TooLarge,
    evidence_dir,
    is_sha256,
    path_of,
    safe_content_type,
    safe_name,
    store_file,
)
from connectors.redis_store import site_key
from connectors.ticketing.mapping import TicketMapping
from contracts.contract import Contract
from contracts.events import TicketEvent
from contracts.exclusions import (
    Action,
    ExclusionState,
    InvalidExclusion,
    check,
    next_state,
    revised_range,
    revisions,
    validate,
)
from contracts.intervals import ExclusionWindow
from contracts.output import evaluation_json

log = logging.getLogger(__name__)
router = APIRouter(tags=["exclusions"], responses=ERRORS)
ContractReader = Annotated[Principal, Depends(require(Permission.CONTRACTS_READ))]
ExclusionNo = Annotated[int, Path(ge=1, le=2**62)]
# multipart framing around the file: boundaries, headers, the name
MULTIPART_OVERHEAD = 64 * 1024
Text = Annotated[str, Field(min_length=1, max_length=2000,
                             pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _target(contract_id: str, exclusion_id: object | None = None) -> str:
    return f"{contract_id[:64]}#{exclusion_id}" if exclusion_id is not None else \
        contract_id[:64]


def _acting(permission: Permission, action: str) -> Any:
    """The caller, if their role has `permission`; else 403 — audited as a refused
    `exclusion.<action>` (who tried to decide what), before any lookup."""
    async def check_role(request: Request, ctx: CtxDep, principal: PrincipalDep) -> Principal:
        if not principal.can(permission):
            why = f"role {principal.role} may not {permission.value}"
            params = request.path_params
            await run_in_threadpool(
                ctx.audit.append, principal.subject, f"exclusion.{action}",
                target=_target(str(params.get("contract_id", "")), params.get("n")),
                outcome="refused", details={"why": why}, now_ms=_now_ms())
            raise HTTPException(status.HTTP_403_FORBIDDEN, why)
        return principal
    return Depends(check_role)


Proposer = Annotated[Principal, _acting(Permission.EXCLUSIONS_PROPOSE, "propose")]
EvidenceAdder = Annotated[Principal, _acting(Permission.EXCLUSIONS_PROPOSE, "evidence")]
Withdrawer = Annotated[Principal, _acting(Permission.EXCLUSIONS_PROPOSE, "withdraw")]
Approver = Annotated[Principal, _acting(Permission.EXCLUSIONS_DECIDE, "approve")]
Rejecter = Annotated[Principal, _acting(Permission.EXCLUSIONS_DECIDE, "reject")]
Revoker = Annotated[Principal, _acting(Permission.EXCLUSIONS_DECIDE, "revoke")]


def _contract(ctx: ApiContext, caller: Principal, contract_id: str) -> Contract:
    for site_id, contract in ctx.contracts.items():
        if contract.id == contract_id and caller.scope.sees(ctx.fleet.site(site_id)):
            return contract
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contract {contract_id!r}")


def _record(ctx: ApiContext, contract: Contract, n: int) -> ExclusionRecord:
    record = ExclusionStore(ctx.store).get(contract.id, n)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no exclusion #{n} of contract {contract.id}")
    return record


def _out(r: ExclusionRecord) -> ExclusionOut:
    e = r.exclusion
    return ExclusionOut(
        id=e.id, contract_id=e.contract_id, site_id=r.site_id, scope_id=e.scope_id,
        start_ms=e.start_us // 1000, end_ms=None if e.end_us is None else e.end_us // 1000,
        category=e.category, reason=e.reason, state=e.state, proposed_by=e.proposed_by,
        proposed_ms=r.proposed_ms, decided_by=r.decided_by, decided_ms=r.decided_ms,
        decision_comment=r.decision_comment, revoked_by=r.revoked_by, revoked_ms=r.revoked_ms,
        revoke_comment=r.revoke_comment, source=r.source,
        evidence=[EvidenceOut(sha256=v.sha256, name=v.name, size=v.size,
                              content_type=v.content_type, uploaded_by=v.uploaded_by,
                              uploaded_ms=v.uploaded_ms) for v in r.evidence],
        revisions=[RevisionOut(**v) for v in r.revisions])


# the audit log's name of each step (`exclusion.<name>`)
AUDITED: dict[Action, str] = {"propose": "propose", "add_evidence": "evidence",
                              "approve": "approve", "reject": "reject", "withdraw": "withdraw",
                              "revoke": "revoke"}


async def _refuse(ctx: ApiContext, caller: Principal, action: Action, target: str,
                  refusal_kind: str, message: str, details: dict[str, Any] | None = None
                  ) -> HTTPException:
    await run_in_threadpool(ctx.audit.append, caller.subject, f"exclusion.{AUDITED[action]}",
                            target=target, outcome="refused",
                            details={"why": message, **(details or {})}, now_ms=_now_ms())
    code = status.HTTP_403_FORBIDDEN if refusal_kind == "forbidden" else \
        status.HTTP_409_CONFLICT
    return HTTPException(code, message)


# -- list and propose -------------------------------------------------------------------------

@router.get("/contracts/{contract_id}/exclusions")
async def list_exclusions(contract_id: str, ctx: CtxDep, caller: ContractReader,
                          state: ExclusionState | None = None) -> list[ExclusionOut]:
    """The contract's exclusions, oldest first; `state` filters."""
    contract = _contract(ctx, caller, contract_id)
    records = await run_in_threadpool(ExclusionStore(ctx.store).of_contract, contract.id,
                                      state)
    return [_out(r) for r in records]


class NewExclusion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope_id: str = Field(min_length=1, max_length=200)  # the contract's site or a unit
    start_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    end_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    category: str = Field(min_length=1, max_length=64)  # a cause the contract excludes
    reason: Text


FIELDS = {"scope_id": "body.scope_id", "start": "body.start_ms", "end": "body.end_ms",
          "category": "body.category"}


@router.post("/contracts/{contract_id}/exclusions", status_code=status.HTTP_201_CREATED)
async def propose(contract_id: str, body: NewExclusion, ctx: CtxDep,
                  caller: Proposer) -> ExclusionOut:
    """Propose a window (state `proposed`); 422 names the field a contract refuses."""
    contract = _contract(ctx, caller, contract_id)
    refusal = check("propose", caller.subject, caller.role, None)
    if refusal is not None:  # never: the permission table grants exactly these roles
        raise await _refuse(ctx, caller, "propose", _target(contract.id), refusal.kind,
                            refusal.message)
    try:
        category = validate(ctx.fleet, contract, body.scope_id, body.start_ms * 1000,
                            body.end_ms * 1000, body.category)
    except InvalidExclusion as exc:
        raise BadInput(FIELDS[exc.field], exc.problem) from None
    now_ms = _now_ms()
    record = await run_in_threadpool(
        lambda: ExclusionStore(ctx.store).propose(
            contract_id=contract.id, site_id=contract.site, scope_id=body.scope_id,
            start_us=body.start_ms * 1000, end_us=body.end_ms * 1000, category=category,
            reason=body.reason, proposed_by=caller.subject, now_ms=now_ms))
    await run_in_threadpool(
        ctx.audit.append, caller.subject, "exclusion.propose",
        target=_target(contract.id, record.exclusion.id),
        details={"scope_id": body.scope_id, "start_ms": body.start_ms,
                 "end_ms": body.end_ms, "category": category, "reason": body.reason},
        now_ms=now_ms)
    return _out(record)


# -- evidence -----------------------------------------------------------------------------------

EVIDENCE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/contracts/{contract_id}/exclusions/{n}/evidence",
             status_code=status.HTTP_201_CREATED, openapi_extra=EVIDENCE_BODY,
             responses={409: {"description": "the exclusion is no longer proposed"},
                        411: {"description": "no Content-Length"},
                        413: {"description": "the file is over 20 MiB"},
                        415: {"description": "not multipart/form-data"}})
async def add_evidence(contract_id: str, n: ExclusionNo, request: Request, ctx: CtxDep,
                       caller: EvidenceAdder) -> EvidenceOut:
    """Attach a file (multipart field `file`, at most 20 MiB) to a proposed exclusion; its
    SHA-256 identifies it. The same file twice is attached once."""
    contract = _contract(ctx, caller, contract_id)
    record = _record(ctx, contract, n)
    target = _target(contract.id, n)
    refusal = check("add_evidence", caller.subject, caller.role, record.exclusion)
    if refusal is not None:
        raise await _refuse(ctx, caller, "add_evidence", target, refusal.kind,
                            refusal.message)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "send the file as multipart/form-data, field `file`")
    declared = request.headers.get("content-length")
    if declared is None:
        raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, "Content-Length is required")
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad Content-Length")
    if int(declared) > MAX_EVIDENCE_BYTES + MULTIPART_OVERHEAD:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"evidence files are limited to {MAX_EVIDENCE_BYTES} bytes")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except MultiPartException as exc:
        raise BadInput("body", f"not a valid multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadInput("body.file", "a file is required (multipart field `file`)")
        try:
            sha, size = await run_in_threadpool(store_file, evidence_dir(ctx.settings.run_dir),
                                                upload.file, MAX_EVIDENCE_BYTES)
        except TooLarge:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"evidence files are limited to {MAX_EVIDENCE_BYTES} bytes"
                                ) from None
        evidence = Evidence(sha, safe_name(upload.filename),
                            size, safe_content_type(upload.content_type), caller.subject,
                            _now_ms())
    finally:
        await form.close()
    await run_in_threadpool(ExclusionStore(ctx.store).add_evidence, n, evidence)
    await run_in_threadpool(ctx.audit.append, caller.subject, "exclusion.evidence",
                            target=target, details={"sha256": sha, "name": evidence.name,
                                                    "size": size,
                                                    "content_type": evidence.content_type},
                            now_ms=evidence.uploaded_ms)
    stored = next(v for v in ExclusionStore(ctx.store).evidence(n) if v.sha256 == sha)
    return EvidenceOut(sha256=stored.sha256, name=stored.name, size=stored.size,
                       content_type=stored.content_type, uploaded_by=stored.uploaded_by,
                       uploaded_ms=stored.uploaded_ms)


@router.get("/contracts/{contract_id}/exclusions/{n}/evidence/{sha256}",
            response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the file, as an attachment"}})
async def get_evidence(contract_id: str, n: ExclusionNo, sha256: str, ctx: CtxDep,
                       caller: ContractReader) -> FileResponse:
    """An evidence file of the exclusion, as a download (Content-Disposition attachment)."""
    contract = _contract(ctx, caller, contract_id)
    _record(ctx, contract, n)
    found = next((v for v in ExclusionStore(ctx.store).evidence(n) if v.sha256 == sha256),
                 None) if is_sha256(sha256) else None
    path = path_of(evidence_dir(ctx.settings.run_dir), sha256) if found else None
    if found is None or path is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no evidence {sha256[:64]!r} on exclusion #{n}")
    await run_in_threadpool(ctx.audit.append, caller.subject, "exclusion.evidence_download",
                            target=_target(contract.id, n), details={"sha256": sha256},
                            now_ms=_now_ms())
    return FileResponse(path, media_type=found.content_type, headers={
        "Content-Disposition": f'attachment; filename="{found.name}"',
        "Cache-Control": "private, no-store"})  # nosniff: api/protections.py


# -- decisions ----------------------------------------------------------------------------------

class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Text | None = None


class Reasoned(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Text  # why: required to reject or revoke


def _revise(ctx: ApiContext, contract: Contract, record: ExclusionRecord, adding: bool,
            final_ms: int | None, now_ms: int) -> list[dict[str, Any]]:
    """The closed periods the window changes, evaluated with the approved windows without
    and with it (`adding`) or with and without it (a revocation)."""
    e = record.exclusion
    if e.end_us is None:
        return []
    label = revised_range(ctx.fleet, contract, e.start_us, e.end_us, now_ms * 1000)
    if label is None:
        return []
    others = [w for w in approved_windows(ctx.store, contract.id) if w != e.window()]
    with_it: list[ExclusionWindow] = [*others, e.window()]
    before_windows, after_windows = (others, with_it) if adding else (with_it, others)
    before = evaluation_json(evaluate_history(ctx.fleet, contract, ctx.history, label,
                                              final_ms, before_windows))
    after = evaluation_json(evaluate_history(ctx.fleet, contract, ctx.history, label,
                                             final_ms, after_windows))
    return [r.as_json() for r in revisions(before["periods"], after["periods"], e.id,
                                           contract.ld.currency)]


async def _decide(action: Action, contract_id: str, n: int, comment: str | None,
                  ctx: ApiContext, redis: Any, caller: Principal) -> ExclusionOut:
    contract = _contract(ctx, caller, contract_id)
    record = _record(ctx, contract, n)
    target = _target(contract.id, n)
    refusal = check(action, caller.subject, caller.role, record.exclusion)
    if refusal is not None:
        raise await _refuse(ctx, caller, action, target, refusal.kind, refusal.message,
                            {"comment": comment} if comment else None)
    now_ms = _now_ms()
    found: list[dict[str, Any]] = []
    if action in ("approve", "revoke"):
        raw = await redis.get(site_key(contract.site))
        final_ms = json.loads(raw).get("final_ms") if raw else None
        found = await run_in_threadpool(_revise, ctx, contract, record, action == "approve",
                                        final_ms, now_ms)
    expected = record.exclusion.state
    decided = await run_in_threadpool(
        lambda: ExclusionStore(ctx.store).decide(
            contract.id, n, expected=expected, new=next_state(action), by=caller.subject,
            now_ms=now_ms, comment=comment, revisions=found))
    if decided is None:
        raise await _refuse(ctx, caller, action, target, "conflict",
                            f"exclusion #{n} was decided meanwhile; reload it")
    await run_in_threadpool(ctx.audit.append, caller.subject, f"exclusion.{action}",
                            target=target,
                            details={"comment": comment,
                                     "revisions": [r["text"] for r in found]},
                            now_ms=now_ms)
    return _out(decided)


DECISION_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "the exclusion's state does not allow this step"}}


@router.post("/contracts/{contract_id}/exclusions/{n}/approve", responses=DECISION_ERRORS)
async def approve(contract_id: str, n: ExclusionNo, ctx: CtxDep, redis: RedisDep,
                  caller: Approver, body: Decision | None = None) -> ExclusionOut:
    """Four eyes: not by the proposer. The answer's `revisions` are the closed periods the
    approval changed."""
    return await _decide("approve", contract_id, n, body.comment if body else None, ctx,
                         redis, caller)


@router.post("/contracts/{contract_id}/exclusions/{n}/reject", responses=DECISION_ERRORS)
async def reject(contract_id: str, n: ExclusionNo, body: Reasoned, ctx: CtxDep,
                 redis: RedisDep, caller: Rejecter) -> ExclusionOut:
    return await _decide("reject", contract_id, n, body.comment, ctx, redis, caller)


@router.post("/contracts/{contract_id}/exclusions/{n}/withdraw", responses=DECISION_ERRORS)
async def withdraw(contract_id: str, n: ExclusionNo, ctx: CtxDep, redis: RedisDep,
                   caller: Withdrawer, body: Decision | None = None) -> ExclusionOut:
    """By the proposer, while it is proposed."""
    return await _decide("withdraw", contract_id, n, body.comment if body else None, ctx,
                         redis, caller)


@router.post("/contracts/{contract_id}/exclusions/{n}/revoke", responses=DECISION_ERRORS)
async def revoke(contract_id: str, n: ExclusionNo, body: Reasoned, ctx: CtxDep,
                 redis: RedisDep, caller: Revoker) -> ExclusionOut:
    """An approved window that should not have been (wrong evidence, a duplicate): it
    leaves the availability; the closed periods it changed are revised back."""
    return await _decide("revoke", contract_id, n, body.comment, ctx, redis, caller)


# -- tickets propose windows by themselves ---------------------------------------------------

def ticket_cause(mapping: TicketMapping, category: str | None) -> str | None:
    """The exclusion category a ticket category maps to (`exclusions:` of the provider's
    mapping, matched without regard to case), None when it maps to none."""
    if not category:
        return None
    folded = category.strip().casefold()
    return next((cause for name, cause in mapping.exclusions.items()
                 if name.strip().casefold() == folded), None)


def propose_from_ticket(ctx: ApiContext, event: TicketEvent, mapping: TicketMapping,
                        now_ms: int) -> ExclusionRecord | None:
    """A ticket whose category maps to an exclusion category proposes a window by itself
    (docs/exclusions.md, "Tickets"): proposer `ticket:<provider>:<id>`, scope the ticket's
    asset's unit (its site for a site), from the ticket's opening to its resolution —
    open-ended until it is resolved (such a window cannot be approved before it has an end).
    One proposal per ticket: a redelivery finds it (and gives it its end once resolved).
    None when the ticket proposes nothing (logged and audited when the contract refuses)."""
    cause = ticket_cause(mapping, event.category)
    asset = ctx.fleet.assets.get(event.asset_id or "")
    if cause is None or asset is None:
        return None
    contract = ctx.contracts.get(asset.site_id)
    if contract is None:
        return None
    source = f"ticket:{event.provider}:{event.ticket_id}"
    store = ExclusionStore(ctx.store)
    end_us = event.resolved_ms * 1000 if event.resolved_ms is not None else None
    existing = store.by_source(source)
    if existing is not None:
        e = existing.exclusion
        if end_us is not None and e.end_us is None and store.set_end(contract.id, e.id, end_us):
            ctx.audit.append(source, "exclusion.update", target=_target(contract.id, e.id),
                             details={"end_ms": event.resolved_ms}, now_ms=now_ms)
            return store.get(contract.id, e.id)
        return existing
    scope_id = asset.id if asset.kind == "site" else (asset.unit_id or asset.id)
    start_us = event.opened_ms * 1000
    try:
        category = validate(ctx.fleet, contract, scope_id, start_us, end_us, cause)
    except InvalidExclusion as exc:
        log.warning("ticket %s proposes no exclusion: %s", source, exc)
        ctx.audit.append(source, "exclusion.propose", target=_target(contract.id),
                         outcome="refused", details={"why": str(exc), "category": cause,
                                                     "scope_id": scope_id},
                         now_ms=now_ms)
        return None
    summary = event.summary.strip() or f"ticket {event.ticket_id}"
    reason = (f"{event.provider} ticket {event.ticket_id} ({event.category}): {summary}"
              + (f" {event.url}" if event.url else ""))[:2000]
    try:
        record = store.propose(contract_id=contract.id, site_id=contract.site,
                               scope_id=scope_id, start_us=start_us, end_us=end_us,
                               category=category, reason=reason, proposed_by=source,
                               now_ms=now_ms, source=source)
    except sqlite3.IntegrityError:  # the same ticket, delivered twice at once
        return store.by_source(source)
    ctx.audit.append(source, "exclusion.propose",
                     target=_target(contract.id, record.exclusion.id),
                     details={"scope_id": scope_id, "start_ms": event.opened_ms,
                              "end_ms": event.resolved_ms, "category": category,
                              "reason": reason}, now_ms=now_ms)
    return record
