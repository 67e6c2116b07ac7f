"""The archive of the scheduled compliance reports (api/reports/archive.py, README
"Scheduled reports"):

    GET /reports/archive                         ?contract_id=&period=  the versions
                                                 (`contracts.read`), newest first
    GET /reports/archive/{contract_id}/{period}/v{version}.{fmt}
                                                 one archived file (`reports.export`;
                                                 audited), its sha256 in X-Content-SHA256

A caller sees the reports of the contracts of their sites only; another's is 404, as an
unknown one. A file whose bytes no longer match the index's sha256 is not served (409)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.deps import CtxDep, require
from api.errors import ERRORS
from api.reports.archive import (
    MEDIA_TYPES,
    ArchivedVersion,
    ReportArchive,
    archive_root,
    file_name,
)
from api.views import ArchivedFileOut, ArchivedReport, ReportDifference
from contracts.contract import Contract

router = APIRouter(tags=["contracts"], responses=ERRORS)
ContractReader = Annotated[Principal, Depends(require(Permission.CONTRACTS_READ))]
Exporter = Annotated[Principal, Depends(require(Permission.REPORTS_EXPORT))]
ContractQ = Annotated[str | None, Query(min_length=1, max_length=64)]
PeriodQ = Annotated[str | None, Query(min_length=2, max_length=12,
                                      pattern=r"^(\d{4}-\d{2}|\d{4}-Q[1-4]|CY\d{1,3})$",
                                      description="2026-10, 2026-Q2 or CY3")]

_archives: dict[Path, ReportArchive] = {}
_lock = threading.Lock()


def _archive(root: Path) -> ReportArchive:
    """One archive object per process and directory (its connections are per thread)."""
    with _lock:
        archive = _archives.get(root)
        if archive is None:
            archive = _archives[root] = ReportArchive(root)
        return archive


def _visible(ctx: CtxDep, caller: Principal) -> dict[str, Contract]:
    """The contracts of the caller's sites, by id."""
    return {c.id: c for site_id, c in ctx.contracts.items()
            if caller.scope.sees(ctx.fleet.site(site_id))}


def _out(v: ArchivedVersion, contract: Contract) -> ArchivedReport:
    base = f"/api/v1/reports/archive/{v.contract_id}/{v.period}/v{v.version}"
    s = v.summary
    return ArchivedReport(
        contract_id=v.contract_id, site_id=v.site_id, period=v.period, version=v.version,
        created_ms=v.created_ms, fingerprint=v.fingerprint,
        availability_pct=s.get("availability_pct"), guaranteed_pct=s["guaranteed_pct"],
        ld=s["ld"], bonus=s["bonus"], currency=contract.ld.currency,
        files=[ArchivedFileOut(format=fmt, sha256=f.sha256, bytes=f.bytes,
                               url=f"{base}.{fmt}")
               for fmt, f in v.files.items() if fmt in MEDIA_TYPES],
        differences=[ReportDifference.model_validate(d) for d in v.differences],
        delivered_ms=v.delivered_ms, recipients=list(v.recipients))


@router.get("/reports/archive")
async def archive_list(ctx: CtxDep, caller: ContractReader, contract_id: ContractQ = None,
                       period: PeriodQ = None) -> list[ArchivedReport]:
    """The archived versions of the caller's contracts' reports: by contract, newest
    period first, newest version first. `?contract_id=` of a contract the caller does not
    see is 404."""
    visible = _visible(ctx, caller)
    if contract_id is not None and contract_id not in visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contract {contract_id!r}")
    archive = _archive(archive_root(ctx.settings.run_dir))
    versions = await run_in_threadpool(archive.versions, contract_id, period,
                                       contract_ids=list(visible))
    return [_out(v, visible[v.contract_id]) for v in versions]


@router.get("/reports/archive/{contract_id}/{period}/v{version}.{fmt}", response_class=Response,
            responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()},
                             "description": "the archived report file",
                             "headers": {"X-Content-SHA256": {
                                 "description": "the file's sha256 (hex), as archived",
                                 "schema": {"type": "string"}}}},
                       409: {"description": "the file no longer matches its archived hash"}})
async def archive_file(contract_id: str, period: str,
                       version: Annotated[int, PathParam(ge=1, le=1_000_000)],
                       fmt: Literal["pdf", "xlsx", "csv"], ctx: CtxDep,
                       caller: Exporter) -> Response:
    """One archived report file, exactly as it was generated and e-mailed; the download is
    in the audit log."""
    contract = _visible(ctx, caller).get(contract_id)
    archive = _archive(archive_root(ctx.settings.run_dir))
    v = None if contract is None else await run_in_threadpool(archive.get, contract_id,
                                                               period, version)
    if v is None or fmt not in v.files:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no archived report {contract_id} {period} v{version}")
    path = archive.path(contract_id, period, version, fmt)
    try:
        data = await run_in_threadpool(path.read_bytes)
    except FileNotFoundError:
        data = b""
    digest = hashlib.sha256(data).hexdigest()
    if digest != v.files[fmt].sha256:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"archived report {contract_id} {period} v{version}.{fmt} is "
                            "missing or damaged: it does not match its archived sha256")
    await run_in_threadpool(ctx.audit.append, caller.subject, "report.download",
                            target=contract_id, details={
                                "period": period, "format": fmt, "version": version,
                                "archived": True, "sha256": digest, "bytes": len(data)},
                            now_ms=int(time.time() * 1000))
    name = file_name(v, fmt)
    return Response(data, media_type=MEDIA_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-SHA256": digest, "ETag": f'"{digest}"'})
