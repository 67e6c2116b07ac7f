"""The warranty evidence pack — for asset owners filing (or answering) a warranty claim on a
battery unit: what the unit did over a period, against the warranty's terms, with the data
behind each figure:

    GET /analytics/warranty-pack  ?unit=&from=&to=[&format=pdf|xlsx]   one battery unit's
                                  availability, throughput, cycles, average C-rate, SOH and
                                  temperature and SOC excursions against the contract file's
                                  `warranty:` terms (`reports.export`; audited)

The figures are contracts/warranty.py's, on the historian's buckets of `PACK_BUCKETS` at most
(connectors/archive/historian.py: the archive's closed days, the history store's others; the
same reading as api/routes/battery_health.py) of the unit's `active_power_kw`, `soh_pct` and
`soc_pct` and its blocks' `cell_temp_max_c` (the hottest block's mean per bucket), and on the
unit's and its children's status intervals in the history store, accounted by the contract
engine with the contract's approved exclusion windows. Time the flows have not made final
(after the site's `final_ms`) is not counted in the availability.

`from` and `to` as the historian's (ISO-8601 with a UTC offset, `[from, to)`, at most 400
days). A unit the caller may not see is 404 alike with one that does not exist; an asset that
is not a battery unit is 422."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import CtxDep, RedisDep, visible_asset
from api.errors import ERRORS, BadInput
from api.reports.warranty import (
    IntervalLine,
    WarrantyPack,
    class_hours,
    to_pdf,
    to_xlsx,
    utc,
)
from api.routes.battery_health import CELL_TEMP, POWER, SOH, clipped, hottest
from api.routes.contracts import MEDIA, Exporter
from api.routes.historian import FromQ, ToQ, bucket_step, historian, time_range
from connectors.api_store import approved_windows
from connectors.redis_store import site_key
from contracts.engine import ContractContext
from contracts.intervals import StatusInterval
from contracts.warranty import UnitPeriod, assess, booking_from_us, unit_availability

router = APIRouter(tags=["analytics"], responses=ERRORS)

PACK_MAX_DAYS = 400
PACK_BUCKETS = 10_000  # per series: whole minutes (a month: 5 min; a year: 53 min)
SOC = "soc_pct"
UnitQ = Annotated[str, Query(min_length=1, max_length=200,
                             description="the battery unit (404 if the caller has none of "
                                         "that id)")]


@router.get("/analytics/warranty-pack", response_class=Response,
            responses={200: {"content": {MEDIA["pdf"]: {}, MEDIA["xlsx"]: {}},
                             "description": "the pack's file"}})
async def warranty_pack(ctx: CtxDep, redis: RedisDep, caller: Exporter, unit: UnitQ,
                        start: FromQ, end: ToQ,
                        format: Literal["pdf", "xlsx"] = "pdf") -> Response:
    """One battery unit's warranty evidence over `[from, to)` (at most 400 days): a PDF of
    the figures against the contract file's warranty terms, with verdicts and the method, or
    a workbook with the same summary and the data behind each figure (the buckets, the
    status intervals). The download is in the audit log."""
    start_ms, end_ms = time_range(start, end, PACK_MAX_DAYS)
    asset = visible_asset(ctx.fleet, caller, unit)
    if asset.kind != "unit":
        raise BadInput("query.unit", f"{unit!r} is a {asset.kind}, not a battery unit")
    site = ctx.fleet.site(asset.site_id)
    the_unit = next(u for u in site.units if u.id == unit)
    contract = ctx.contracts.get(site.id)
    raw = await redis.get(site_key(site.id))
    final_ms = json.loads(raw).get("final_ms") if raw else None
    windows = [] if contract is None else \
        await run_in_threadpool(approved_windows, ctx.store, contract.id)

    def build() -> bytes:
        step = bucket_step(start_ms, end_ms, PACK_BUCKETS)
        blocks = [b.id for inv in the_unit.inverters for b in inv.blocks]
        rows = historian(ctx).buckets(
            [(unit, POWER), (unit, SOH), (unit, SOC), *((b, CELL_TEMP) for b in blocks)],
            start_ms, end_ms, step)
        power = clipped(rows[(unit, POWER)], start_ms, end_ms, step)
        soh = clipped(rows[(unit, SOH)], start_ms, end_ms, step)
        soc = clipped(rows[(unit, SOC)], start_ms, end_ms, step)
        temperature = hottest([rows[(b, CELL_TEMP)] for b in blocks], start_ms, end_ms, step)
        ids = [a.id for a in ctx.fleet.assets.values() if a.unit_id == unit]
        known_to = end_ms if final_ms is None else max(start_ms, min(end_ms, final_ms))
        # From the start of the contract year: the maintenance allowance used before counts.
        read_from = start_ms if contract is None else booking_from_us(
            ContractContext(ctx.fleet, contract), start_ms * 1000) // 1000
        status = ctx.history.status_intervals(ids, read_from, known_to) \
            if known_to > read_from else []
        availability = None
        if contract is not None:
            intervals = [StatusInterval(r.asset_id, max(r.start_ms, read_from) * 1000,
                                        min(r.end_ms or known_to, known_to) * 1000, r.state,
                                        r.derate_fraction, r.cause)
                         for r in status if min(r.end_ms or known_to, known_to)
                         > max(r.start_ms, read_from)]
            first = min((r.start_ms for r in status), default=None)
            availability = unit_availability(
                ctx.fleet, contract, unit, intervals, windows, start_ms * 1000,
                known_to * 1000, known_to * 1000 if first is None else first * 1000)
        lines = [IntervalLine(r.asset_id, r.start_ms, r.end_ms, r.state, r.derate_fraction,
                              r.cause) for r in status
                 if (r.end_ms is None or r.end_ms > start_ms) and r.start_ms < known_to]
        warranty = None if contract is None else contract.warranty
        assessment = assess(UnitPeriod(start_ms, end_ms, the_unit.rated_energy_kwh,
                                       the_unit.commissioned, power, soh, temperature, soc,
                                       availability), warranty)
        pack = WarrantyPack(
            unit_id=unit, site_id=site.id, site_name=site.name, customer=site.customer,
            vendor=the_unit.vendor, model=the_unit.model,
            rated_energy_mwh=the_unit.rated_energy_kwh / 1000,
            rated_power_mw=the_unit.rated_power_kw / 1000, commissioned=the_unit.commissioned,
            contract_id=None if contract is None else contract.id, start_ms=start_ms,
            end_ms=end_ms, step_ms=step, assessment=assessment, warranty=warranty,
            power=power, soh=soh, temperature=temperature, soc=soc, intervals=lines,
            class_hours=class_hours({} if availability is None
                                    else availability.totals.class_us))
        return to_xlsx(pack) if format == "xlsx" else to_pdf(pack)

    data = await run_in_threadpool(build)
    await run_in_threadpool(ctx.audit.append, caller.subject, "report.download",
                            target=unit, details={"report": "warranty-pack", "from": start,
                                                  "to": end, "format": format,
                                                  "bytes": len(data)},
                            now_ms=int(time.time() * 1000))
    days = (utc(start_ms)[:10], utc(end_ms)[:10])
    name = f"warranty-{unit}-{days[0]}-{days[1]}.{format}"
    return Response(data, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
