"""Active alarms (limit and trend breaches) and early-warning alerts of the caller's sites,
and what operators do to alarms — each action in the audit log:

    GET  /alarms                          filter by site, severity, state
    POST /alarms/{breach_id}/acknowledge  {"comment": …}
    POST /alarms/{breach_id}/shelve       {"reason": …, "until_ms": …}  at most 7 days
    POST /alarms/{breach_id}/unshelve
    GET  /alarms/ack?token=…              the page of an e-mail's acknowledge link
    POST /alarms/ack                      token=… (form or JSON): acknowledge, once
    GET  /alerts                          LD risk, telemetry gaps, data instability …

The two `/alarms/ack` routes are authenticated by the link's signed token alone
(contracts/ack_links.py), never by a bearer credential: see `ack_page` below."""

from __future__ import annotations

import hashlib
import html
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.auth.users import User
from api.context import ApiContext
from api.deps import CtxDep, FleetDep, Reader, RedisDep, require
from api.errors import ERRORS
from api.pagination import CursorQ, LimitQ, Page, page
from api.views import AlarmView, alarm_view
from connectors.ack_secret import ack_secret
from connectors.alarm_store import Alarm, NoSuchAlarm, act_on_alarm, active_alarms
from connectors.redis_store import PREFIX, alerts_key
from contracts.ack_links import AckClaim, AckLinkInvalid, verify_token
from contracts.alarms import Action, AlarmRefused
from contracts.events import Alert, Severity
from contracts.fleet import Site

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


# -- acknowledging from the e-mail's signed one-time link ----------------------------------
#
# The link's token (contracts/ack_links.py, signed with connectors/ack_secret.py's secret)
# is the only authentication of these two routes: it names the site, the alarm and the
# recipient the notifier sent it to, and its expiry. GET only shows the alarm and a button
# (mail scanners and link previewers fetch links: a GET never acknowledges); POST
# acknowledges, once — the token's nonce is claimed in Redis until the token expires. A
# recipient who is a user of the users file must still be enabled, hold
# `alarms.acknowledge` and see the site, as with a bearer token; a channel (a shared
# mailbox, "channel:<name>") acknowledges as `email-link:<recipient>`. Every POST is audited.

ACK_COMMENT = "acknowledged from the e-mail link"
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_TOKEN_BODY = {"type": "object", "required": ["token"],
               "properties": {"token": {"type": "string", "description": "the link's token"}}}


class _Refusal(Exception):
    """Why a link does not acknowledge now: an HTML page of this status."""

    def __init__(self, status_code: int, title: str, why: str,
                 alarm: Alarm | None = None, claim: AckClaim | None = None) -> None:
        super().__init__(why)
        self.status_code, self.title, self.why, self.alarm = status_code, title, why, alarm
        self.claim = claim  # of an authentic link refused (expired), for the audit log


@dataclass(frozen=True)
class _Link:
    claim: AckClaim
    site: Site
    actor: str  # who the acknowledgement is recorded as
    alarm: Alarm


def _used_key(nonce: str) -> str:
    return f"{PREFIX}:ack-link:used:{hashlib.sha256(nonce.encode()).hexdigest()[:32]}"


def _verify(ctx: ApiContext, token: str, now_ms: int) -> AckClaim:
    if not token:
        raise _Refusal(400, "Invalid link", "malformed link: it carries no token")
    try:
        return verify_token(ack_secret(ctx.settings), token, now_ms)
    except AckLinkInvalid as exc:
        raise _Refusal(410 if exc.reason == "expired" else 400,
                       "Link expired" if exc.reason == "expired" else "Invalid link",
                       str(exc), claim=exc.claim) from None


async def _recipient(ctx: ApiContext, claim: AckClaim) -> tuple[str, User | None, bool]:
    """Who the link's recipient acknowledges as, their user (if any) and whether they must
    be one: "user:<name>" (or the bare name of a user) is that user; "channel:<name>", or
    any other name of no user, is `email-link:<recipient>`."""
    recipient = claim.recipient
    if recipient.startswith("channel:"):
        return f"email-link:{recipient}", None, False
    username = recipient.removeprefix("user:")
    user = await run_in_threadpool(ctx.auth.users.get, username)
    if user is None and not recipient.startswith("user:"):
        return f"email-link:{recipient}", None, False
    return username, user, True


def _authorize(username: str, user: User | None, site: Site) -> None:
    """A user acknowledges from a link as with a bearer token: enabled, allowed to
    acknowledge alarms, seeing the site."""
    if user is None:
        raise _Refusal(403, "Not allowed", f"user {username!r} no longer exists")
    principal = user.principal()
    if user.disabled:
        raise _Refusal(403, "Not allowed", f"user {username!r} is disabled")
    if not principal.can(Permission.ALARMS_ACKNOWLEDGE):
        raise _Refusal(403, "Not allowed", f"role {principal.role} may not "
                                           f"{Permission.ALARMS_ACKNOWLEDGE.value}")
    if not principal.scope.sees(site):
        raise _Refusal(403, "Not allowed", f"user {username!r} may not see site {site.id!r}")


async def _check_link(ctx: ApiContext, redis: aioredis.Redis, claim: AckClaim,
                      now_ms: int) -> _Link:
    """What a verified link would do now, or the refusal (used; no such site; a user no
    longer allowed; the alarm gone or already acknowledged)."""
    if await redis.exists(_used_key(claim.nonce)):
        raise _Refusal(410, "Link already used", "this link was already used")
    try:
        site = ctx.fleet.site(claim.site_id)
    except KeyError:
        raise _Refusal(404, "Alarm not active", "the alarm is no longer active") from None
    actor, user, is_user = await _recipient(ctx, claim)
    if is_user:
        _authorize(actor, user, site)
    alarm = next((a for a in await active_alarms(redis, [site.id], now_ms)
                  if a.breach.breach_id == claim.alarm_id), None)
    if alarm is None or alarm.state == "cleared":
        raise _Refusal(404, "Alarm not active",
                       "the alarm is no longer active (it has cleared)")
    handling = alarm.handling
    if handling is not None and handling.acknowledged_ms is not None:
        raise _Refusal(409, "Already acknowledged",
                       f"the alarm was already acknowledged by {handling.acknowledged_by} "
                       f"at {_utc(handling.acknowledged_ms)}", alarm)
    return _Link(claim, site, actor, alarm)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
          "padding:0 1rem;color:#1b1f24;line-height:1.4}"
          "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}"
          "dt{font-weight:600}dd{margin:0}"
          "button{font-size:1.1rem;padding:.6rem 1.6rem;border:0;border-radius:4px;"
          "background:#1f6feb;color:#fff;cursor:pointer}"
          ".critical,.major{color:#b42318;font-weight:700}")


def _page(status_code: int, title: str, message: str, *, alarm: Alarm | None = None,
          site: Site | None = None, token: str | None = None) -> HTMLResponse:
    """A self-contained page (no script, no outside resource); every text escaped."""
    e = html.escape
    parts = [f"<h1>{e(title)}</h1>", f"<p>{e(message)}</p>"]
    if alarm is not None:
        b = alarm.breach
        site_name = f"{site.name} ({b.site_id})" if site is not None and site.name \
            else b.site_id
        rows = (("Site", site_name), ("Asset", b.asset_id), ("Severity", b.severity),
                ("Alarm", b.message), ("Raised", _utc(b.raised_ms)), ("Alarm id", b.breach_id))
        parts.append("<dl>" + "".join(
            f"<dt>{e(k)}</dt><dd" + (f' class="{e(v)}"' if k == "Severity" else "")
            + f">{e(v)}</dd>" for k, v in rows) + "</dl>")
    if token is not None:
        parts.append('<form method="post" action="ack">'
                     f'<input type="hidden" name="token" value="{e(token)}">'
                     '<button type="submit">Acknowledge</button></form>')
    body = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="robots" content="noindex, nofollow">'
            f"<title>bessmon: {e(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
    return HTMLResponse(body, status_code)


def _refused_page(refusal: _Refusal, ctx: ApiContext) -> HTMLResponse:
    site = None
    if refusal.alarm is not None:
        site = next((s for s in ctx.fleet.sites if s.id == refusal.alarm.breach.site_id), None)
    return _page(refusal.status_code, refusal.title, refusal.why[:1].upper() + refusal.why[1:]
                 + ".", alarm=refusal.alarm, site=site)


_ACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "an HTML page", **_HTML},
    400: {"description": "a malformed link, or one with a bad signature (HTML)", **_HTML},
    403: {"description": "the recipient may no longer acknowledge this alarm (HTML)", **_HTML},
    404: {"description": "the alarm is no longer active (HTML)", **_HTML},
    409: {"description": "already acknowledged: by whom (HTML)", **_HTML},
    410: {"description": "the link has expired, or was already used (HTML)", **_HTML},
    429: {"description": "too many requests: see Retry-After", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
}


@router.get("/alarms/ack", response_class=HTMLResponse, responses=_ACK_RESPONSES)
async def ack_page(ctx: CtxDep, redis: RedisDep,
                   token: Annotated[str, Query(description="the link's token")] = ""
                   ) -> HTMLResponse:
    """The page of an e-mail's acknowledge link: the alarm and an Acknowledge button (which
    POSTs the token). Authenticated by the link's signed token, not by a bearer credential;
    never acknowledges (mail scanners and link previewers fetch links)."""
    now_ms = int(time.time() * 1000)
    try:
        link = await _check_link(ctx, redis, _verify(ctx, token, now_ms), now_ms)
    except _Refusal as refusal:
        return _refused_page(refusal, ctx)
    return _page(200, "Acknowledge this alarm?",
                 f"Acknowledging it as {link.actor} stops its escalation.",
                 alarm=link.alarm, site=link.site, token=token)


async def _posted_token(request: Request) -> str:
    """The token of a form (application/x-www-form-urlencoded) or JSON body ("" if none)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()  # bounded by the protections' request size limit
    value: object = None
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise _Refusal(400, "Invalid request", "the body is not JSON") from None
        value = data.get("token") if isinstance(data, dict) else None
    elif kind == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise _Refusal(400, "Invalid request", "the form is not readable") from None
        tokens = fields.get("token", [])
        value = tokens[0] if len(tokens) == 1 else None
    else:
        raise _Refusal(415, "Invalid request", "send the token as a form field or as JSON "
                                               '{"token": …}')
    return value if isinstance(value, str) else ""


@router.post("/alarms/ack", response_class=HTMLResponse,
             responses={**_ACK_RESPONSES, 415: {"description": "neither a form nor JSON (HTML)",
                                                **_HTML}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-www-form-urlencoded": {"schema": _TOKEN_BODY},
                 "application/json": {"schema": _TOKEN_BODY}}}})
async def ack_from_link(request: Request, ctx: CtxDep, redis: RedisDep) -> HTMLResponse:
    """Acknowledge the alarm of an e-mail's link, once (form field or JSON `token`): as the
    user it was sent to (still enabled, allowed to acknowledge, seeing the site), or as
    `email-link:<recipient>` for a channel. Authenticated by the link's signed token, not by
    a bearer credential. Every attempt is audited."""
    now_ms = int(time.time() * 1000)
    address = request.client.host if request.client else "?"
    claim: AckClaim | None = None
    actor = "email-link"
    details: dict[str, object] = {"via": "email-link", "recipient": None, "address": address}
    try:
        claim = _verify(ctx, await _posted_token(request), now_ms)
        details["recipient"] = claim.recipient
        actor, _, _ = await _recipient(ctx, claim)  # refusals too are audited as theirs
        link = await _check_link(ctx, redis, claim, now_ms)
        # One use: the first POST claims the nonce (until the token would expire anyway).
        if not await redis.set(_used_key(claim.nonce), now_ms, nx=True,
                               px=max(1, claim.expires_ms - now_ms)):
            raise _Refusal(410, "Link already used", "this link was already used")
        try:
            alarm = await act_on_alarm(redis, link.site.id, claim.alarm_id, "acknowledge",
                                       by=actor, now_ms=now_ms, comment=ACK_COMMENT)
        except NoSuchAlarm:
            raise _Refusal(404, "Alarm not active",
                           "the alarm is no longer active (it has cleared)") from None
        except AlarmRefused as exc:
            raise _Refusal(409, "Not acknowledged", str(exc), link.alarm) from None
    except _Refusal as refusal:
        if claim is None and refusal.claim is not None:  # expired: whose it was
            claim = refusal.claim
            details["recipient"] = claim.recipient
            actor, _, _ = await _recipient(ctx, claim)
        await run_in_threadpool(ctx.audit.append, actor, "alarm.acknowledge",
                                target=claim.alarm_id if claim else None, outcome="refused",
                                details={**details, "why": refusal.why}, now_ms=now_ms)
        return _refused_page(refusal, ctx)
    await run_in_threadpool(ctx.audit.append, actor, "alarm.acknowledge",
                            target=claim.alarm_id,
                            details={**details, "comment": ACK_COMMENT}, now_ms=now_ms)
    return _page(200, "Acknowledged",
                 f"Acknowledged: {alarm.breach.asset_id} — {alarm.breach.message} — by "
                 f"{actor} at {_utc(now_ms)}; its escalation stops.",
                 alarm=alarm, site=link.site)


# The router's common answers 401 (no bearer credential here) and 422 (nothing is validated
# before the route: an unreadable token or body is a 400 page) do not apply to the links.
for _route in router.routes:
    if isinstance(_route, APIRoute) and _route.path == "/alarms/ack":
        for _code in (401, 422):
            _route.responses.pop(_code, None)


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
