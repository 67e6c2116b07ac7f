"""Sites of the fleet with their latest availability snapshot."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from api.deps import FleetDep, PrincipalDep, RedisDep
from connectors.redis_store import site_key
from contracts.events import SiteAvailability

router = APIRouter(prefix="/sites", tags=["sites"])


class SiteSummary(BaseModel):
    id: str
    name: str | None
    customer: str
    region: str
    timezone: str
    units: int
    availability: SiteAvailability | None  # null until the flows have seen the site


@router.get("")
async def list_sites(fleet: FleetDep, redis: RedisDep, _: PrincipalDep) -> list[SiteSummary]:
    keys = [site_key(s.id) for s in fleet.sites]
    values = await redis.mget(keys) if keys else []
    return [
        SiteSummary(id=s.id, name=s.name, customer=s.customer, region=s.region,
                    timezone=s.timezone, units=len(s.units),
                    availability=SiteAvailability.model_validate_json(v) if v else None)
        for s, v in zip(fleet.sites, values, strict=True)
    ]


@router.get("/{site_id}")
async def get_site(site_id: str, fleet: FleetDep, redis: RedisDep,
                   _: PrincipalDep) -> SiteSummary:
    site = next((s for s in fleet.sites if s.id == site_id), None)
    if site is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id!r}")
    value = await redis.get(site_key(site.id))
    return SiteSummary(id=site.id, name=site.name, customer=site.customer, region=site.region,
                       timezone=site.timezone, units=len(site.units),
                       availability=SiteAvailability.model_validate_json(value) if value
                       else None)
