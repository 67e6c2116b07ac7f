"""The control surface: what the control loop holds of the caller's units, and the operator
commands it and the connectors act on (docs/control.md) — each one in the audit log:

    GET  /control/units/{unit_id}          the unit's state, mode, limits, last commands
    GET  /control/sites/{site_id}          every unit of the site
    POST /control/units/{unit_id}/estop    {"reason": …}  emergency stop, one unit
    POST /control/sites/{site_id}/estop    {"reason": …}  every unit of the site
    POST /control/fleet/estop              {"reason": …}  every unit the caller sees
    POST /control/units/{unit_id}/stop     {"reason": …}  (and /start, /reset)
    POST /control/units/{unit_id}/mode     {"mode": …, "reason": …}

The API decides nothing about the equipment: a command is put on `bess.commands` keyed by
its unit (so one unit's commands stay in order) and answered 202 once the broker has it.
The connector that polls the unit executes an emergency stop at once; the control loop
accepts or refuses the others; both report on `bess.command.results`, which the loop folds
into the unit's view (`commands`, with outcome and read-back). A command the broker did not
take is 503 — never a 202 for a stop that was not sent."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Literal

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, StringConstraints, ValidationError

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.context import ApiContext
from api.deps import CtxDep, FleetDep, PrincipalDep, Reader, RedisDep, visible_site
from api.errors import ERRORS
from api.views import CommandsAccepted, SiteControl, UnitControl
from connectors.kafka import CheckedProducer, DeliveryFailed, ensure_topics
from connectors.redis_store import CONTROL_ALIVE_KEY, control_key
from contracts.control import CommandKind, ControlCommand, ControlMode, UnitControlView
from contracts.fleet import Asset, Fleet

log = logging.getLogger(__name__)
router = APIRouter(prefix="/control", tags=["control"], responses=ERRORS)

CONTROL_ALIVE_S = 10.0  # the loop beats every second or two: 10 s without one is a dead loop
PUBLISH_TIMEOUT_S = 10.0
MESSAGE_TIMEOUT_MS = 8_000  # below the flush's timeout: every flush ends with its records settled
_PUBLISH_LOCK = threading.Lock()  # one publish at a time: each flush reports its own records
UNSENT = ("the command was not sent: {why}. Nothing reached the equipment — send it again, "
          "or stop the unit at the site")

ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=500)]


class Reasoned(BaseModel):
    """Every command says why (the audit log and the unit's command list show it)."""

    reason: ReasonText


class ModeChange(Reasoned):
    mode: ControlMode


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- reading what the control loop holds ---------------------------------------------------

def visible_unit(fleet: Fleet, caller: Principal, unit_id: str) -> Asset:
    """The battery unit, if the caller may see it; 404 alike for an unknown id, an asset that
    is no unit and a unit of another customer."""
    asset = fleet.assets.get(unit_id)
    if asset is None or asset.kind != "unit" or not caller.scope.sees(fleet.site(asset.site_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no unit {unit_id!r}")
    return asset


def boot_view(ctx: ApiContext, unit_id: str, site_id: str) -> UnitControlView:
    """A unit of the fleet the control loop has not reported yet: booting, in the mode the
    control configuration gives it, no commands."""
    return UnitControlView(unit_id=unit_id, site_id=site_id, state="BOOT",
                           mode=ctx.control.mode_of(unit_id, site_id))


def _view(ctx: ApiContext, unit_id: str, site_id: str,
          raw: bytes | str | None) -> UnitControlView:
    if raw is not None:
        try:
            return UnitControlView.model_validate_json(raw)
        except ValidationError as exc:  # a writer of another version: shown as not reported
            log.warning("left out an undecodable control view of %s: %s", unit_id,
                        exc.errors()[0]["msg"])
    return boot_view(ctx, unit_id, site_id)


async def _beat(redis: RedisDep) -> tuple[bool, int | None]:
    """(alive, last beat): the control loop's last beat and whether it is recent."""
    raw = await redis.get(CONTROL_ALIVE_KEY)
    try:
        beat = int(raw) if raw is not None else None
    except ValueError:
        beat = None
    return beat is not None and _now_ms() - beat <= CONTROL_ALIVE_S * 1000, beat


@router.get("/units/{unit_id}")
async def unit_control(unit_id: str, ctx: CtxDep, redis: RedisDep,
                       caller: Reader) -> UnitControl:
    """The unit as the control loop holds it; state BOOT (and the configured mode) while
    the loop has not reported it."""
    unit = visible_unit(ctx.fleet, caller, unit_id)
    raw = await redis.hget(control_key(unit.site_id), unit.id)
    alive, beat = await _beat(redis)
    return UnitControl(control_loop_alive=alive, control_loop_beat_ms=beat,
                       unit=_view(ctx, unit.id, unit.site_id, raw))


@router.get("/sites/{site_id}")
async def site_control(site_id: str, ctx: CtxDep, redis: RedisDep,
                       caller: Reader) -> SiteControl:
    """Every unit of the site, in fleet order."""
    site = visible_site(ctx.fleet, caller, site_id)
    held = await redis.hgetall(control_key(site.id))
    by_unit = {(k.decode() if isinstance(k, bytes) else k): v for k, v in held.items()}
    alive, beat = await _beat(redis)
    return SiteControl(site_id=site.id, control_loop_alive=alive, control_loop_beat_ms=beat,
                       units=[_view(ctx, u.id, site.id, by_unit.get(u.id)) for u in site.units])


# -- commands --------------------------------------------------------------------------------

def _action(request: Request) -> str:
    """The audit action of a command route: control.<last path segment> (estop, stop, …)."""
    return "control." + request.url.path.rstrip("/").rsplit("/", 1)[-1]


def _target(request: Request) -> str:
    params = request.path_params
    return str(params.get("unit_id") or params.get("site_id") or "fleet")


async def _stated_reason(request: Request) -> str | None:
    """The reason a refused caller gave, for the audit log (their body is not validated:
    the refusal comes first)."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason[:500] if isinstance(reason, str) else None


def _refusal(ctx: ApiContext, caller: Principal, request: Request, why: str,
             reason: str | None) -> None:
    details: dict[str, object] = {"why": why}
    if reason is not None:
        details["reason"] = reason
    ctx.audit.append(caller.subject, _action(request), target=_target(request),
                     outcome="refused", details=details, now_ms=_now_ms())


async def commander(request: Request, ctx: CtxDep, caller: PrincipalDep) -> Principal:
    """The caller, if their role may command (403 otherwise). Unlike other permissions, a
    refused command is audited: who tried to stop what is worth knowing."""
    if caller.can(Permission.CONTROL_COMMAND):
        return caller
    why = f"role {caller.role} may not {Permission.CONTROL_COMMAND.value}"
    await run_in_threadpool(_refusal, ctx, caller, request, why, await _stated_reason(request))
    raise HTTPException(status.HTTP_403_FORBIDDEN, why)


Commander = Annotated[Principal, Depends(commander)]


async def _not_found(request: Request, ctx: ApiContext, caller: Principal, why: str,
                     reason: str) -> HTTPException:
    """404 for a unit or site the caller does not have — audited as refused."""
    await run_in_threadpool(_refusal, ctx, caller, request, why, reason)
    return HTTPException(status.HTTP_404_NOT_FOUND, why)


def _publish(ctx: ApiContext, commands: Sequence[ControlCommand]) -> None:
    """Produce the commands and wait for the broker's acknowledgement of every one (in a
    worker thread). The producer — and the topics — are made on the first command, so the
    API starts without Kafka; a failure leaves no producer behind to be made again."""
    settings = ctx.settings
    with _PUBLISH_LOCK:
        producer = ctx.command_producer
        if producer is None:
            bootstrap = settings.require_kafka()
            ensure_topics(bootstrap, [settings.topic_commands, settings.topic_command_results],
                          settings.topic_partitions)
            config: dict[str, str | int | bool] = {"client.id": "bessmon-api-control",
                                                   "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                                                   "linger.ms": 0}
            producer = ctx.command_producer = CheckedProducer(bootstrap, **config)
        for c in commands:
            producer.produce(settings.topic_commands, c.unit_id, c.model_dump_json().encode())
        producer.flush(PUBLISH_TIMEOUT_S)


def _audit_sent(ctx: ApiContext, caller: Principal, commands: Sequence[ControlCommand],
                outcome: Literal["ok", "failed"], error: str | None) -> None:
    for c in commands:
        details: dict[str, object] = {"reason": c.reason, "command_id": c.command_id}
        if c.mode is not None:
            details["mode"] = c.mode
        if error is not None:
            details["error"] = error
        ctx.audit.append(caller.subject, f"control.{c.kind}", target=c.unit_id,
                         outcome=outcome, details=details, now_ms=c.ts_ms)


async def _send(ctx: ApiContext, caller: Principal, kind: CommandKind, unit_ids: list[str],
                reason: str, mode: ControlMode | None = None) -> CommandsAccepted:
    now_ms = _now_ms()
    try:
        commands = [ControlCommand(command_id=uuid.uuid4().hex, unit_id=u, kind=kind,
                                   actor=caller.subject, reason=reason, ts_ms=now_ms,
                                   mode=mode) for u in unit_ids]
    except ValidationError as exc:  # e.g. a subject with control characters: no actor
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"invalid command: {exc.errors()[0]['msg']}") from None
    try:
        await run_in_threadpool(_publish, ctx, commands)
    except (DeliveryFailed, KafkaException, RuntimeError) as exc:
        # RuntimeError: no KAFKA_BOOTSTRAP_SERVERS (DeliveryFailed is one too, and says so).
        error = str(exc)
        log.error("control %s of %s not sent: %s", kind, ", ".join(unit_ids), error)
        await run_in_threadpool(_audit_sent, ctx, caller, commands, "failed", error)
        why = f"the broker did not take it ({error})" \
            if isinstance(exc, DeliveryFailed | KafkaException) else error
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, UNSENT.format(why=why)) \
            from None
    await run_in_threadpool(_audit_sent, ctx, caller, commands, "ok", None)
    return CommandsAccepted(command_ids=[c.command_id for c in commands],
                            unit_ids=[c.unit_id for c in commands])


SENT: dict[int | str, dict[str, object]] = {
    503: {"description": "the broker did not take the command: nothing was sent, retry"}}


async def _unit_command(request: Request, ctx: ApiContext, caller: Principal, unit_id: str,
                        kind: CommandKind, body: Reasoned,
                        mode: ControlMode | None = None) -> CommandsAccepted:
    try:
        unit = visible_unit(ctx.fleet, caller, unit_id)
    except HTTPException:
        raise await _not_found(request, ctx, caller, f"no unit {unit_id!r}", body.reason) \
            from None
    return await _send(ctx, caller, kind, [unit.id], body.reason, mode)


@router.post("/units/{unit_id}/estop", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def estop_unit(unit_id: str, body: Reasoned, request: Request, ctx: CtxDep,
                     caller: Commander) -> CommandsAccepted:
    """Emergency stop: the unit's connector sets power 0 and stop mode at once."""
    return await _unit_command(request, ctx, caller, unit_id, "estop", body)


@router.post("/sites/{site_id}/estop", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def estop_site(site_id: str, body: Reasoned, request: Request, ctx: CtxDep,
                     fleet: FleetDep, caller: Commander) -> CommandsAccepted:
    """Emergency stop of every unit of the site: one command per unit."""
    try:
        site = visible_site(fleet, caller, site_id)
    except HTTPException:
        raise await _not_found(request, ctx, caller, f"no site {site_id!r}", body.reason) \
            from None
    return await _send(ctx, caller, "estop", [u.id for u in site.units], body.reason)


@router.post("/fleet/estop", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def estop_fleet(body: Reasoned, request: Request, ctx: CtxDep, fleet: FleetDep,
                      caller: Commander) -> CommandsAccepted:
    """Emergency stop of every unit the caller sees (their customers and regions only)."""
    units = [u.id for s in caller.sites(fleet) for u in s.units]
    if not units:
        raise await _not_found(request, ctx, caller, "no unit in your scope", body.reason)
    return await _send(ctx, caller, "estop", units, body.reason)


@router.post("/units/{unit_id}/stop", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def stop_unit(unit_id: str, body: Reasoned, request: Request, ctx: CtxDep,
                    caller: Commander) -> CommandsAccepted:
    """An orderly stop, through the control loop (ramped down; STOPPED until started)."""
    return await _unit_command(request, ctx, caller, unit_id, "stop", body)


@router.post("/units/{unit_id}/start", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def start_unit(unit_id: str, body: Reasoned, request: Request, ctx: CtxDep,
                     caller: Commander) -> CommandsAccepted:
    """Start a stopped or idle unit (the control loop refuses while an interlock forbids)."""
    return await _unit_command(request, ctx, caller, unit_id, "start", body)


@router.post("/units/{unit_id}/reset", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def reset_unit(unit_id: str, body: Reasoned, request: Request, ctx: CtxDep,
                     caller: Commander) -> CommandsAccepted:
    """Acknowledge an ERROR or an emergency stop: the unit goes to IDLE, not back to work."""
    return await _unit_command(request, ctx, caller, unit_id, "reset", body)


@router.post("/units/{unit_id}/mode", status_code=status.HTTP_202_ACCEPTED, responses=SENT)
async def set_mode(unit_id: str, body: ModeChange, request: Request, ctx: CtxDep,
                   caller: Commander) -> CommandsAccepted:
    """Change the unit's control mode (passive, charge_only, derated, normal, stopped)."""
    return await _unit_command(request, ctx, caller, unit_id, "mode", body, body.mode)
