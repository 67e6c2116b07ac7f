"""The fleet and its sites as the caller may see them: `GET /fleet` (overview and fleet
KPIs), `GET /sites`, `GET /sites/{id}`, `GET /sites/{id}/assets` (the asset tree with each
asset's live status)."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter

from api.deps import FleetDep, Reader, RedisDep, visible_site
from api.errors import ERRORS
from api.pagination import CursorQ, LimitQ, Page, page
from api.views import (
    AssetNode,
    FleetKpis,
    FleetOverview,
    SiteSummary,
    redact,
    shows_money,
    stale,
)
from connectors.redis_store import latest_key, site_key
from contracts.events import SiteAvailability
from contracts.fleet import Fleet, Site

router = APIRouter(tags=["fleet"], responses=ERRORS)


def _energy(site: Site) -> float:
    return sum(u.rated_energy_kwh for u in site.units)


def summary(site: Site, raw: bytes | str | None, money: bool, now_ms: int) -> SiteSummary:
    data = json.loads(raw) if raw else None
    if data is not None and not money:
        data = redact(data)
    snapshot = SiteAvailability.model_validate(data) if data is not None else None
    return SiteSummary(id=site.id, name=site.name, customer=site.customer, region=site.region,
                       timezone=site.timezone, units=len(site.units),
                       rated_power_kw=sum(u.rated_power_kw for u in site.units),
                       rated_energy_kwh=_energy(site),
                       stale=stale(snapshot.ts_ms if snapshot else None, now_ms),
                       availability=snapshot)


async def summaries(fleet: Fleet, redis: RedisDep, sites: list[Site],
                    money: bool) -> list[SiteSummary]:
    values = await redis.mget([site_key(s.id) for s in sites]) if sites else []
    now_ms = int(time.time() * 1000)
    return [summary(s, v, money, now_ms) for s, v in zip(sites, values, strict=True)]


def fleet_kpis(fleet: Fleet, items: list[SiteSummary], money: bool) -> FleetKpis:
    by_state: dict[str, int] = {"available": 0, "derated": 0, "unavailable": 0, "unknown": 0}
    levels: dict[str, int] = {}
    weighted: dict[str, list[float]] = {}
    ld: dict[str, float] = {}
    for item in items:
        a = item.availability
        if a is None:
            continue
        for state, n in a.units_by_state.items():
            by_state[state] = by_state.get(state, 0) + n
        for name, value in a.windows.items():
            acc = weighted.setdefault(name, [0.0, 0.0])
            if value is not None:
                acc[0] += item.rated_energy_kwh * value
                acc[1] += item.rated_energy_kwh
        if a.contract is not None and a.contract.kind == "ltsa":
            levels[a.contract.warning_level] = levels.get(a.contract.warning_level, 0) + 1
            if a.contract.ld_year_to_date is not None:
                ld[a.contract.currency] = ld.get(a.contract.currency, 0.0) + \
                    a.contract.ld_year_to_date
    return FleetKpis(
        sites=len(items), units=sum(i.units for i in items),
        stale_sites=sum(i.stale for i in items), units_by_state=by_state,
        windows={k: (v[0] / v[1] if v[1] else None) for k, v in weighted.items()},
        warning_levels=levels, ld_year_to_date=ld if money else None)


@router.get("/fleet")
async def fleet_overview(fleet: FleetDep, redis: RedisDep, caller: Reader) -> FleetOverview:
    """Every site the caller may see with its live snapshot, and the fleet's KPIs over them."""
    money = shows_money(caller)
    items = await summaries(fleet, redis, caller.sites(fleet), money)
    return FleetOverview(kpis=fleet_kpis(fleet, items, money), sites=items)


@router.get("/sites")
async def list_sites(fleet: FleetDep, redis: RedisDep, caller: Reader,
                     customer: str | None = None, region: str | None = None,
                     limit: LimitQ = 100, cursor: CursorQ = None) -> Page[SiteSummary]:
    """Sites in fleet order, filtered by customer and region if given."""
    sites = [s for s in caller.sites(fleet) if (customer is None or s.customer == customer)
             and (region is None or s.region == region)]
    chosen = page(sites, cursor, limit)
    return Page(items=await summaries(fleet, redis, chosen.items, shows_money(caller)),
                next_cursor=chosen.next_cursor)


@router.get("/sites/{site_id}")
async def get_site(site_id: str, fleet: FleetDep, redis: RedisDep,
                   caller: Reader) -> SiteSummary:
    site = visible_site(fleet, caller, site_id)
    return (await summaries(fleet, redis, [site], shows_money(caller)))[0]


@router.get("/sites/{site_id}/assets")
async def asset_tree(site_id: str, fleet: FleetDep, redis: RedisDep,
                     caller: Reader) -> AssetNode:
    """The site → battery unit → inverter → DC block tree, each node with its live status
    and own availability over the last hour and today."""
    site = visible_site(fleet, caller, site_id)
    latest = await redis.mget([latest_key(u.id) for u in site.units])
    status: dict[str, dict[str, Any]] = {}
    for raw in latest:
        if raw:
            status.update(json.loads(raw).get("status", {}))
    snapshot_raw = await redis.get(site_key(site.id))
    snapshot = json.loads(snapshot_raw) if snapshot_raw else None

    def node(asset_id: str) -> AssetNode:
        a = fleet.assets[asset_id]
        s = status.get(asset_id, {})
        return AssetNode(id=a.id, kind=a.kind, rated_power_kw=a.rated_power_kw,
                         rated_energy_kwh=a.rated_energy_kwh, state=s.get("state"),
                         cause=s.get("cause"), derate_fraction=s.get("derate_fraction"),
                         last_hour_pct=s.get("last_hour_pct"), today_pct=s.get("today_pct"),
                         children=[node(c) for c in a.children])

    root = node(site.id)
    if snapshot is not None:  # the site's own, and the units' effective (rolled-up) status
        root.last_hour_pct = snapshot["windows"].get("last_hour")
        root.today_pct = snapshot["windows"].get("today")
        units = {u["id"]: u for u in snapshot["units"]}
        for child in root.children:
            u = units.get(child.id)
            if u is not None:
                child.state, child.cause = u["state"], u["cause"]
                child.derate_fraction = u["derate_fraction"]
    return root
