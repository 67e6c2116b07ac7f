"""LTSA contracts of the caller's sites and their compliance (role with `contracts.read`):

    GET /contracts                               the contracts and their terms
    GET /contracts/{contract_id}/compliance      ?period=2026-10 | 2026-01..2026-12 | CY3
    GET /reports/compliance                      ?contract_id=&period=&format=xlsx|csv|pdf
                                                 (`reports.export`; audited)

Compliance is availability rules §7's JSON of the final history (api/history_evaluation.py)
plus the live KPIs of the open period (actual so far, projection, warning level, LD so far)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.deps import CtxDep, RedisDep, require
from api.errors import ERRORS, BadInput
from api.history_evaluation import evaluate_history
from api.reports.csv import to_csv
from api.reports.data import build_report
from api.reports.pdf import to_pdf
from api.reports.xlsx import to_xlsx
from api.views import Compliance, ContractSummary
from connectors.api_store import approved_windows
from connectors.redis_store import site_key
from contracts.contract import Contract
from contracts.errors import InvalidInput
from contracts.events import ContractKpis
from contracts.intervals import ExclusionWindow
from contracts.output import evaluation_json
from contracts.periods import PeriodError

router = APIRouter(tags=["contracts"], responses=ERRORS)
ContractReader = Annotated[Principal, Depends(require(Permission.CONTRACTS_READ))]
Exporter = Annotated[Principal, Depends(require(Permission.REPORTS_EXPORT))]
PeriodQ = Annotated[str, Query(min_length=2, max_length=40, pattern=r"^[0-9A-Za-z.\-]+$",
                               description="2026-10, 2026-Q2, CY3 or a range a..b")]


def _contract(ctx: CtxDep, caller: Principal, contract_id: str) -> Contract:
    for site_id, contract in ctx.contracts.items():
        if contract.id == contract_id and caller.scope.sees(ctx.fleet.site(site_id)):
            return contract
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no contract {contract_id!r}")


@router.get("/contracts")
async def list_contracts(ctx: CtxDep, caller: ContractReader) -> list[ContractSummary]:
    out = []
    for site in caller.sites(ctx.fleet):
        c = ctx.contracts.get(site.id)
        if c is not None:
            out.append(ContractSummary(id=c.id, site_id=site.id, customer=site.customer,
                                       region=site.region,
                                       measurement_period=c.measurement_period,
                                       terms=c.model_dump(mode="json")))
    return out


async def _evaluate(ctx: CtxDep, redis: RedisDep, contract: Contract,
                    period: str) -> tuple[Any, ContractKpis | None, list[ExclusionWindow]]:
    """The evaluation with the contract's approved exclusion windows (docs/exclusions.md),
    the live KPIs of the open period, and the windows (reports list them)."""
    raw = await redis.get(site_key(contract.site))
    snapshot = json.loads(raw) if raw else None
    final_ms = snapshot.get("final_ms") if snapshot else None
    windows = await run_in_threadpool(approved_windows, ctx.store, contract.id)
    try:
        evaluation = await run_in_threadpool(evaluate_history, ctx.fleet, contract,
                                             ctx.history, period, final_ms, windows)
    except (PeriodError, InvalidInput) as exc:
        problem = exc.problem if isinstance(exc, InvalidInput) else str(exc)
        raise BadInput("query.period", problem) from None
    live = snapshot.get("contract") if snapshot else None
    labels = {p.period.label for p in evaluation.periods}
    open_period = ContractKpis.model_validate(live) if live and live["period"] in labels \
        else None
    return evaluation, open_period, windows


@router.get("/contracts/{contract_id}/compliance")
async def compliance(contract_id: str, period: PeriodQ, ctx: CtxDep, redis: RedisDep,
                     caller: ContractReader) -> Compliance:
    contract = _contract(ctx, caller, contract_id)
    evaluation, open_period, _ = await _evaluate(ctx, redis, contract, period)
    since = evaluation.monitored_from_us
    return Compliance(evaluation=evaluation_json(evaluation), open_period=open_period,
                      monitored_from_ms=None if since is None else since // 1000)


MEDIA = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@router.get("/reports/compliance", response_class=Response,
            responses={200: {"content": {m: {} for m in MEDIA.values()},
                             "description": "the report file"}})
async def compliance_report(contract_id: Annotated[str, Query(max_length=64)],
                            period: PeriodQ, ctx: CtxDep, redis: RedisDep, caller: Exporter,
                            format: Literal["xlsx", "csv", "pdf"] = "pdf") -> Response:
    """The monthly compliance report (the same as `bessmon report compliance`) of the final
    history; the download is in the audit log."""
    contract = _contract(ctx, caller, contract_id)
    evaluation, _, windows = await _evaluate(ctx, redis, contract, period)

    def render() -> bytes:
        report = build_report(evaluation, windows)
        return (to_xlsx(report) if format == "xlsx" else to_pdf(report) if format == "pdf"
                else to_csv(report).encode("utf-8"))

    data = await run_in_threadpool(render)
    await run_in_threadpool(ctx.audit.append, caller.subject, "report.download",
                            target=contract.id, details={"period": period, "format": format,
                                                         "bytes": len(data)},
                            now_ms=int(time.time() * 1000))
    name = f"{contract.id}-{period}.{format}".replace("/", "-")
    return Response(data, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
