"""Which device sends bad records, and why — so that an operator can act on the source (the
dashboard's data-quality view, `#/quality`):

    GET /data-quality            per site of the caller: the refused records tallied by device
                                 and reason, most frequent first, and the site's active
                                 data-quality alerts; the unrouted ones too for a caller with
                                 `data_quality.unrouted` whose scope is the whole fleet
    GET /data-quality/unrouted   only those: records that named no site of the fleet

The tallies are the flows' (flows/dead_letters.py), in Redis at `dead_letters_key(site)`;
the alerts those of `alerts_key(site)` of the data-quality kinds (api/views.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.deps import FleetDep, Reader, RedisDep, require, visible_site
from api.errors import ERRORS
from api.views import DataQuality, QualityTotals, SiteQuality, quality, sees_unrouted
from connectors.redis_store import alerts_key, dead_letters_key
from contracts.fleet import Fleet

router = APIRouter(tags=["data quality"], responses=ERRORS)

# The hash of the alerts that name no site (flows/redis_sink.py writes them there).
FLEET_ALERTS = "fleet"
SiteQ = Annotated[str | None, Query(min_length=1, max_length=200,
                                    description="only this site (404 if the caller has none "
                                                "of that id)")]
TalliesQ = Annotated[int, Query(ge=1, le=500, description="(device, reason) tallies per "
                                "site at most, most frequent first")]
UnroutedReader = Annotated[Principal, Depends(require(Permission.DATA_QUALITY_UNROUTED))]
FLEET_WIDE = ("records of no site are fleet-wide: a caller limited to some customers or "
              "regions may not see them")


def _asset_of(fleet: Fleet, site_id: str) -> Callable[[str], bool]:
    """Whether a device is an asset of the site (its battery units are the devices)."""
    def is_asset(device: str) -> bool:
        asset = fleet.assets.get(device)
        return asset is not None and asset.site_id == site_id
    return is_asset


def _unrouted(fleet: Fleet, tallies: list[bytes], alerts: list[bytes],
              limit: int) -> QualityTotals:
    return quality(tallies, alerts, limit, lambda device: device in fleet.assets)


@router.get("/data-quality")
async def data_quality(fleet: FleetDep, redis: RedisDep, caller: Reader, site: SiteQ = None,
                       limit: TalliesQ = 100) -> DataQuality:
    """Refused records by device and reason per site, with the site's active data-quality
    alerts (telemetry gaps, frozen values, clock skew, DLQ rate, data instability)."""
    sites = [visible_site(fleet, caller, site)] if site is not None else caller.sites(fleet)
    with_unrouted = site is None and sees_unrouted(caller)
    pipe = redis.pipeline(transaction=False)
    for s in sites:
        pipe.hvals(dead_letters_key(s.id))
        pipe.hvals(alerts_key(s.id))
    if with_unrouted:
        pipe.hvals(dead_letters_key(None))
        pipe.hvals(alerts_key(FLEET_ALERTS))
    values: list[list[bytes]] = await pipe.execute() if sites or with_unrouted else []
    out = []
    for i, s in enumerate(sites):
        totals = quality(values[2 * i], values[2 * i + 1], limit, _asset_of(fleet, s.id))
        out.append(SiteQuality(site_id=s.id, name=s.name, customer=s.customer,
                               region=s.region, **totals.model_dump()))
    unrouted = _unrouted(fleet, values[-2], values[-1], limit) if with_unrouted else None
    return DataQuality(sites=out, unrouted=unrouted)


@router.get("/data-quality/unrouted", responses={
    403: {"description": "the role may not, or the caller's scope is not the whole fleet"}})
async def unrouted(fleet: FleetDep, redis: RedisDep, caller: UnroutedReader,
                   limit: TalliesQ = 100) -> QualityTotals:
    """Records refused before they could be tied to a site (no battery unit of the fleet on
    their key, no asset of the fleet in them) by key and reason, and the data-quality alerts
    of no site."""
    if not sees_unrouted(caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, FLEET_WIDE)
    pipe = redis.pipeline(transaction=False)
    pipe.hvals(dead_letters_key(None))
    pipe.hvals(alerts_key(FLEET_ALERTS))
    tallies, alerts = await pipe.execute()
    return _unrouted(fleet, tallies, alerts, limit)
