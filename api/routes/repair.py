"""Repair priority — what to fix first, by money at stake:

    GET /repair-priority?site=&limit=    every open unavailability episode of the caller's
                                         sites (or of one), ranked by what one more hour of
                                         it costs under its contract now

Each site's list is priced by the flows at their KPI step (contracts/repair.py: the marginal
LD of one more hour of the outage — the period's LD if the asset stays in its status one more
hour minus if it is repaired now, with the LD steps, the guarantee and the contract year's
cap) and kept whole in Redis at `repair_key(site)`; this route merges the caller's sites.

Ranking across the fleet: LTSA episodes first, **one currency group after the other**
(alphabetical by currency code) — there are no exchange rates, so an amount in EUR is never
compared with one in USD; within a group by marginal LD per hour, highest first, then the
longer episode, then episode id. Sites without an LTSA (technical availability, no money)
come last, by lost MWh. `currencies` lists the groups in that order. A role that may not see
contract money gets the same order (it is the repair priority) with the amounts null."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import FleetDep, Reader, RedisDep, visible_site
from api.errors import ERRORS
from api.views import (
    REPAIR_MONEY,
    RepairItem,
    RepairPriorityList,
    RepairRow,
    redact,
    repair_lists,
    repair_sort_key,
    shows_money,
    stale,
)
from connectors.redis_store import repair_key, site_key
from contracts.events import SiteAvailability

router = APIRouter(tags=["fleet"], responses=ERRORS)

SiteQ = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="only this site (404 if the caller has none "
                                                "of that id)")]
LimitQ = Annotated[int, Query(ge=1, le=500, description="rows at most, highest priority first")]


@router.get("/repair-priority")
async def repair_priority(fleet: FleetDep, redis: RedisDep, caller: Reader, site: SiteQ = None,
                          limit: LimitQ = 100) -> RepairPriorityList:
    """The open unavailability episodes of the caller's sites, ranked by marginal LD per hour
    of downtime (see the module docstring for mixed currencies), each with its site, asset,
    status, since when, lost hours and the period's numbers."""
    sites = [visible_site(fleet, caller, site)] if site is not None else caller.sites(fleet)
    if not sites:
        return RepairPriorityList(items=[], total=0, currencies=[], money=shows_money(caller))
    money = shows_money(caller)
    repairs = await redis.mget([repair_key(s.id) for s in sites])
    snapshots = await redis.mget([site_key(s.id) for s in sites])
    by_id = {s.id: s for s in sites}
    kpis: dict[str, SiteAvailability] = {}
    for raw in snapshots:
        if raw:
            data = json.loads(raw)
            parsed = SiteAvailability.model_validate(data if money else redact(data))
            kpis[parsed.site_id] = parsed
    items: list[RepairItem] = [item for lst in repair_lists(repairs) if lst.site_id in by_id
                               for item in lst.items if item.site_id == lst.site_id]
    items.sort(key=repair_sort_key)
    now_ms = int(time.time() * 1000)
    rows = []
    for rank, item in enumerate(items[:limit], start=1):
        s = by_id[item.site_id]
        snap = kpis.get(s.id)
        c = snap.contract if snap is not None else None
        data = item.model_dump()
        if not money:
            data.update(dict.fromkeys(REPAIR_MONEY))
        rows.append(RepairRow(
            **data, rank=rank, site_name=s.name, customer=s.customer, region=s.region,
            stale=stale(snap.ts_ms if snap else None, now_ms),
            actual_pct=c.actual_pct if c else None,
            projected_pct=c.projected_pct if c else None,
            projected_ld=c.projected_ld if c else None,
            ld_year_to_date=c.ld_year_to_date if c else None,
            warning_level=c.warning_level if c and c.kind == "ltsa" else None))
    currencies = list(dict.fromkeys(i.currency for i in items if i.kind == "ltsa"))
    return RepairPriorityList(items=rows, total=len(items), currencies=currencies, money=money)
