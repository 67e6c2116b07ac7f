"""Active alarms (limit and trend breaches) and early-warning alerts of the caller's sites,
and what operators do to alarms — each action in the audit log:

    GET  /alarms                          filter by site, severity, state
    POST /alarms/{breach_id}/acknowledge  {"comment": …}
    POST /alarms/{breach_id}/shelve       {"reason": …, "until_ms": …}  at most 7 days
    POST /alarms/{breach_id}/unshelve
    GET  /alerts                          LD risk, telemetry gaps, data instability …"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.deps import CtxDep, FleetDep, Reader, RedisDep, require
from api.errors import ERRORS
from api.pagination import CursorQ, LimitQ, Page, page
from api.views import AlarmView, alarm_view
from connectors.alarm_store import NoSuchAlarm, act_on_alarm, active_alarms
from connectors.redis_store import alerts_key
from contracts.alarms import Action, AlarmRefused
from contracts.events import Alert, Severity

router = APIRouter(tags=["alarms"], responses=ERRORS)
StateQ = Literal["active_unacknowledged", "active_acknowledged", "shelved"]


@router.get("/alarms")
async def list_alarms(fleet: FleetDep, redis: RedisDep, caller: Reader,
                      site_id: str | None = None, severity: Severity | None = None,
                      state: StateQ | None = None, limit: LimitQ = 100,
                      cursor: CursorQ = None) -> Page[AlarmView]:
    """Most severe first, then newest."""
    sites = caller.site_ids(fleet)
    if site_id is not None:
        sites &= {site_id}
    alarms = [alarm_view(a) for a in await active_alarms(redis, sorted(sites),
                                                          int(time.time() * 1000))
              if (severity is None or a.breach.severity == severity)
              and (state is None or a.state == state)]
    return page(alarms, cursor, limit)


class Acknowledge(BaseModel):
    comment: str | None = Field(None, max_length=500)


class Shelve(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    until_ms: int = Field(gt=0)


async def _act(ctx: CtxDep, redis: RedisDep, caller: Principal, breach_id: str,
               action: Action, comment: str | None = None,
               until_ms: int | None = None) -> AlarmView:
    # The breach id names its asset ("rule:severity:asset:raised_ms"): that gives the site.
    parts = breach_id.split(":")
    asset = ctx.fleet.assets.get(parts[2]) if len(parts) == 4 else None
    if asset is None or not caller.scope.sees(ctx.fleet.site(asset.site_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active alarm {breach_id!r}")
    now_ms = int(time.time() * 1000)
    details: dict[str, object] = {"comment": comment} if comment else {}
    if until_ms is not None:
        details["until_ms"] = until_ms
    try:
        alarm = await act_on_alarm(redis, asset.site_id, breach_id, action, by=caller.subject,
                                   now_ms=now_ms, comment=comment, shelve_until_ms=until_ms)
    except NoSuchAlarm:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active alarm {breach_id!r}") \
            from None
    except AlarmRefused as exc:
        await run_in_threadpool(ctx.audit.append, caller.subject, f"alarm.{action}",
                                target=breach_id, outcome="refused",
                                details={**details, "why": str(exc)}, now_ms=now_ms)
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    await run_in_threadpool(ctx.audit.append, caller.subject, f"alarm.{action}",
                            target=breach_id, details=details, now_ms=now_ms)
    return alarm_view(alarm)


Acker = Annotated[Principal, Depends(require(Permission.ALARMS_ACKNOWLEDGE))]
Shelver = Annotated[Principal, Depends(require(Permission.ALARMS_SHELVE))]


@router.post("/alarms/{breach_id}/acknowledge",
             responses={409: {"description": "already acknowledged, or cleared"}})
async def acknowledge(breach_id: str, body: Acknowledge, ctx: CtxDep, redis: RedisDep,
                      caller: Acker) -> AlarmView:
    return await _act(ctx, redis, caller, breach_id, "acknowledge", body.comment)


@router.post("/alarms/{breach_id}/shelve",
             responses={409: {"description": "cleared, or a shelf not within 7 days"}})
async def shelve(breach_id: str, body: Shelve, ctx: CtxDep, redis: RedisDep,
                 caller: Shelver) -> AlarmView:
    return await _act(ctx, redis, caller, breach_id, "shelve", body.reason, body.until_ms)


@router.post("/alarms/{breach_id}/unshelve", responses={409: {"description": "not shelved"}})
async def unshelve(breach_id: str, ctx: CtxDep, redis: RedisDep,
                   caller: Shelver) -> AlarmView:
    return await _act(ctx, redis, caller, breach_id, "unshelve")


@router.get("/alerts")
async def list_alerts(fleet: FleetDep, redis: RedisDep, caller: Reader,
                      site_id: str | None = None,
                      kind: Annotated[str | None, Query(max_length=40)] = None,
                      limit: LimitQ = 100, cursor: CursorQ = None) -> Page[Alert]:
    """Active early warnings, newest first."""
    sites = sorted(caller.site_ids(fleet) & ({site_id} if site_id else
                                             caller.site_ids(fleet)))
    pipe = redis.pipeline(transaction=False)
    for s in sites:
        pipe.hvals(alerts_key(s))
    alerts = [Alert.model_validate_json(v) for values in await pipe.execute() for v in values]
    alerts = [a for a in alerts if kind is None or a.kind == kind]
    alerts.sort(key=lambda a: (-a.raised_ms, a.alert_id))
    return page(alerts, cursor, limit)
