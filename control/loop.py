"""The control loop's logic, free of I/O: what each battery unit's state machine
(control/state_machine.py) is told, and what its decisions mean for the equipment.

Inputs, each a method returning the `Action`s to carry out (control/service.py does the I/O):

- `on_sample`: a device's poll from `bess.telemetry.raw` → the unit's latest values, its
  interlocks (contracts/control.py, evaluated on every poll), and a device report (running,
  idle or fault; fresh or stale) for the state machine;
- `on_breach`: a `bess.breaches` event → the reaction its rule calls for (warning: none;
  major: derate; critical: stop; a trend heading for its limit soon: a pre-emptive derate);
- `on_command`: an operator's command from `bess.commands` (estop, stop, start, reset, mode),
  answered accepted or refused on `bess.command.results`;
- `on_result`: what a connector made of a command: read back equal, or an alarm; a hard-limit
  trip of a connector latches the unit STOPPED;
- `tick`: time — staleness, the derate hold, ramps, the restart of units stopped for a
  transient cause, the watchdog heartbeat.

The state machine's commands become setpoint writes (`write` commands for the connector that
owns the device): Stop → setpoint 0 and stop mode at once (an operator's graceful stop ramps
the power limit to 0 first); Derate → the power limit, ramped at `ramp_kw_per_s`; Run → the
power limit in force, then the unit's own dispatch (auto mode). Interlocks forbidding charge
or discharge hold that direction's limit at 0. In mode `passive` nothing is sent: the loop
only says what it would do (the view and the log). Every automatic action and every
operator's command is an audit entry; every result a connector reports is one too (heartbeats
excepted, unless they fail)."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import uuid4

from contracts.control import (
    CHARGE_LIMIT_TAG,
    CONTROL_LOOP,
    DISCHARGE_LIMIT_TAG,
    HEARTBEAT_TAG,
    LIMIT_TAG,
    MODE_AUTO,
    MODE_FOLLOW,
    MODE_STOP,
    MODE_TAG,
    MODES,
    SETPOINT_TAG,
    ActiveLimit,
    CommandResult,
    CommandSummary,
    ControlCommand,
    ControlConfig,
    ControlMode,
    DeviceWrite,
    Interlock,
    InterlockView,
    UnitControlView,
    UnitReading,
    active_interlocks,
    breach_reaction,
    time_to_limit_s,
)
from contracts.events import Alert, BreachEvent, Severity, TelemetrySample
from contracts.fleet import Fleet, Unit
from contracts.monitoring import MonitoringConfig
from control.state_machine import (
    BreachCleared,
    BreachRaised,
    Config,
    Derate,
    DeviceMode,
    DeviceReport,
    EStop,
    Event,
    Interlocks,
    OperatorReset,
    OperatorStart,
    OperatorStop,
    Outcome,
    Run,
    State,
    Stop,
    Tick,
    UnitStateMachine,
    start_blocker,
)

log = logging.getLogger(__name__)
HEARTBEAT_REASON = "heartbeat"
STOP_REPEAT_MS = 1000  # a stop sent this recently is not sent again
RUN_GRACE_MS = 3000  # polls this soon after a start may predate it: not a stop
AUTO_START_MODES: frozenset[ControlMode] = frozenset({"normal", "derated", "charge_only"})


@dataclass(frozen=True)
class Send:
    """A command to put on `bess.commands` (setpoints for the device's connector)."""

    command: ControlCommand


@dataclass(frozen=True)
class Answer:
    """The control loop's answer to an operator's command, for `bess.command.results`."""

    result: CommandResult


@dataclass(frozen=True)
class Audit:
    actor: str
    action: str
    target: str
    outcome: Literal["ok", "refused", "failed"]
    details: dict[str, Any]


@dataclass(frozen=True)
class Raise:
    """An alert for `bess.alerts` (and the alerts people see)."""

    alert: Alert


Action = Send | Answer | Audit | Raise


@dataclass
class UnitControl:
    """What the loop holds of one unit besides its state machine."""

    unit: Unit
    site_id: str
    machine: UnitStateMachine
    mode_override: ControlMode | None = None  # set through the API; else the config's
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # by asset id
    last_ts_ms: int | None = None
    interlocks: tuple[Interlock, ...] = ()
    limit_kw: float | None = None  # the power limit last written
    target_kw: float | None = None  # where the ramp goes
    ramp_ms: int | None = None  # when the ramp last moved
    charge_kw: float | None = None  # the direction limits last written
    discharge_kw: float | None = None
    pending_stop: str | None = None  # a graceful stop: ramp to 0, then stop (its reason)
    idle_since_ms: int | None = None
    run_ms: int | None = None  # when the loop last started it
    stop_ms: int | None = None  # when it last sent a stop
    heartbeat: int = 0
    heartbeat_ms: int = 0
    commands: deque[CommandSummary] = field(default_factory=lambda: deque(maxlen=20))
    last_refusal: str | None = None
    alerted: dict[str, Alert] = field(default_factory=dict)  # raised and not cleared, by id
    changed: bool = True

    @property
    def state(self) -> State:
        return self.machine.state


def safe_writes(rated_kw: float, writes: list[DeviceWrite]) -> tuple[DeviceWrite, ...]:
    """The last guard before a setpoint leaves the loop: power limits within [0, nameplate],
    a power setpoint within ±nameplate, a mode one of the three the controller knows (an
    unknown one becomes stop), a heartbeat a 16-bit counter. Finite by construction
    (`DeviceWrite`)."""
    out = []
    for w in writes:
        value = w.value
        if w.tag in (LIMIT_TAG, CHARGE_LIMIT_TAG, DISCHARGE_LIMIT_TAG):
            value = min(max(value, 0.0), rated_kw)
        elif w.tag == SETPOINT_TAG:
            value = min(max(value, -rated_kw), rated_kw)
        elif w.tag == MODE_TAG and value not in (MODE_AUTO, MODE_FOLLOW, MODE_STOP):
            value = MODE_STOP
        elif w.tag == HEARTBEAT_TAG:
            value = int(value) % 65536
        out.append(w if value == w.value else DeviceWrite(tag=w.tag, value=value))
    return tuple(out)


def device_mode(unit: Mapping[str, float]) -> DeviceMode:
    """What the unit controller says it does: a fault status (3) is a fault; stop mode or
    maintenance (4) is idle; anything else runs (follows its dispatch or a setpoint)."""
    status = unit.get("status_code")
    if status == 3:
        return DeviceMode.FAULT
    if unit.get(MODE_TAG) == MODE_STOP or status == 4:
        return DeviceMode.IDLE
    return DeviceMode.RUNNING


class ControlLoop:
    def __init__(self, fleet: Fleet, cfg: ControlConfig,
                 monitoring: MonitoringConfig | None = None, *,
                 restored: Mapping[str, Mapping[str, Any]] | None = None,
                 new_id: Callable[[], str] = lambda: uuid4().hex) -> None:
        self.fleet, self.cfg, self.monitoring = fleet, cfg, monitoring
        self.new_id = new_id
        self.sm_config = Config(stale_after_ms=round(cfg.stale_after_s * 1000),
                                major_derate_fraction=cfg.major_derate,
                                derate_hold_ms=round(cfg.derate_hold_s * 1000))
        self.kinds = {a.id: a.kind for a in fleet.assets.values()}
        self.unit_of = {a.id: a.unit_id for a in fleet.assets.values() if a.unit_id}
        self.units: dict[str, UnitControl] = {}
        restored = restored or {}
        for site in fleet.sites:
            for unit in site.units:
                data = restored.get(unit.id)
                machine = UnitStateMachine(unit.id, self.sm_config)
                override: ControlMode | None = None
                if data is not None:
                    try:
                        machine = UnitStateMachine.restore(data["machine"], self.sm_config)
                        mode = data.get("mode_override")
                        override = next((m for m in MODES if m == mode), None)
                    except (KeyError, TypeError, ValueError) as exc:
                        log.error("unit %s: persisted state refused (%s): starting from BOOT "
                                  "with nothing remembered", unit.id, exc)
                self.units[unit.id] = UnitControl(unit, site.id, machine, override)

    # -- helpers -------------------------------------------------------------------------

    def mode(self, uc: UnitControl) -> ControlMode:
        return uc.mode_override or self.cfg.mode_of(uc.unit.id, uc.site_id)

    def reading(self, uc: UnitControl) -> UnitReading | None:
        if uc.last_ts_ms is None:
            return None
        unit: Mapping[str, float] = uc.values.get(uc.unit.id, {})
        inverters = tuple(v for a, v in uc.values.items() if self.kinds.get(a) == "inverter")
        blocks = tuple(v for a, v in uc.values.items() if self.kinds.get(a) == "block")
        return UnitReading(uc.last_ts_ms, unit, inverters, blocks)

    def cap_kw(self, uc: UnitControl) -> float:
        fraction = uc.machine.snapshot.derate
        if self.mode(uc) == "derated":
            fraction = min(fraction, self.cfg.derated_fraction)
        return fraction * uc.unit.rated_power_kw

    def _write(self, uc: UnitControl, now_ms: int, reason: str, writes: list[DeviceWrite],
               *, audit: str | None) -> list[Action]:
        """Setpoints for the device's connector — or, in passive mode, only what would be."""
        if self.mode(uc) == "passive":
            if audit is not None:
                log.info("unit %s (passive): would %s: %s", uc.unit.id, audit, reason)
            return []
        command = ControlCommand(command_id=self.new_id(), unit_id=uc.unit.id, kind="write",
                                 actor=CONTROL_LOOP, reason=reason[:500], ts_ms=now_ms,
                                 writes=safe_writes(uc.unit.rated_power_kw, writes))
        out: list[Action] = [Send(command)]
        if audit is not None:
            uc.commands.appendleft(CommandSummary(
                command_id=command.command_id, kind="write", actor=CONTROL_LOOP,
                reason=command.reason, ts_ms=now_ms, writes=command.writes))
            uc.changed = True
            out.append(Audit(CONTROL_LOOP, f"control.auto.{audit}", uc.unit.id, "ok",
                             {"reason": command.reason, "command_id": command.command_id,
                              "writes": {w.tag: w.value for w in writes}}))
        return out

    def _alert(self, uc: UnitControl, kind: Literal["control_action", "control_command_failed"],
               severity: Severity, now_ms: int, message: str,
               state: Literal["raised", "cleared"] = "raised") -> list[Action]:
        alert_id = f"{kind}:{uc.unit.id}"
        if self.mode(uc) == "passive":
            return []  # nothing was done
        # One alert per kind and unit at a time; its clearing carries what it was raised
        # with (time, severity), so that the alarm it also is clears under the same id.
        active = uc.alerted.pop(alert_id, None)
        out: list[Action] = []
        if active is not None:
            out.append(Raise(active.model_copy(update={
                "state": "cleared", "ts_ms": max(now_ms, active.raised_ms),
                "message": (message if state == "cleared" else
                            f"{active.message} (superseded)")[:500] or active.message})))
        if state == "raised":
            raised = Alert(alert_id=alert_id, kind=kind, scope_id=uc.unit.id,
                           site_id=uc.site_id, severity=severity, state=state,
                           raised_ms=now_ms, ts_ms=now_ms, message=message[:500])
            uc.alerted[alert_id] = raised
            out.append(Raise(raised))
        return out

    def _apply(self, uc: UnitControl, out: Outcome, now_ms: int) -> list[Action]:
        """Carry out what the state machine decided."""
        actions: list[Action] = []
        if out.refusal is not None:
            uc.last_refusal = out.refusal.reason
            uc.changed = True
        for c in out.commands:
            if isinstance(c, Stop) and c.immediate:
                uc.pending_stop, uc.target_kw = None, None
                if uc.stop_ms is not None and now_ms - uc.stop_ms < STOP_REPEAT_MS:
                    continue  # one poll's many breaches (a unit's blocks): one stop
                uc.stop_ms = now_ms
                actions += self._write(uc, now_ms, c.reason, [
                    DeviceWrite(tag=SETPOINT_TAG, value=0.0),
                    DeviceWrite(tag=MODE_TAG, value=MODE_STOP)], audit="stop")
                actions += self._alert(uc, "control_action", "major", now_ms,
                                       f"{uc.unit.id} stopped: {c.reason}")
            elif isinstance(c, Stop):
                uc.pending_stop, uc.target_kw = c.reason, 0.0
                uc.ramp_ms = now_ms
                if uc.limit_kw is None:
                    uc.limit_kw = uc.unit.rated_power_kw
            elif isinstance(c, Derate):
                uc.target_kw, uc.ramp_ms = self.cap_kw(uc), now_ms
                if uc.limit_kw is None:
                    uc.limit_kw = uc.unit.rated_power_kw
                if c.fraction < 1.0:
                    actions += self._alert(uc, "control_action", "minor", now_ms,
                                           f"{uc.unit.id} derated to {c.fraction:.0%}: "
                                           f"{c.reason}")
                else:
                    actions += self._alert(uc, "control_action", "minor", now_ms, c.reason,
                                           "cleared")
            elif isinstance(c, Run):
                uc.run_ms, uc.stop_ms = now_ms, None
                cap = self.cap_kw(uc)
                uc.limit_kw = uc.target_kw = cap
                uc.pending_stop = None
                actions += self._write(uc, now_ms, c.reason, [
                    DeviceWrite(tag=LIMIT_TAG, value=round(cap, 1)),
                    DeviceWrite(tag=MODE_TAG, value=MODE_AUTO)], audit="run")
        if out.state is not out.previous:
            uc.changed = True
            uc.idle_since_ms = now_ms if out.state is State.IDLE else None
            actions.append(Audit(CONTROL_LOOP, "control.state", uc.unit.id, "ok",
                                 {"from": out.previous.value, "to": out.state.value}))
            if out.state is State.RUNNING and uc.machine.snapshot.derate >= 1.0:
                actions += self._alert(uc, "control_action", "minor", now_ms,
                                       f"{uc.unit.id} running", "cleared")
        return actions

    def _handle(self, uc: UnitControl, event: Event, now_ms: int) -> list[Action]:
        before = uc.machine.snapshot
        out = uc.machine.handle(event)
        after = out.snapshot
        if (after.breaches, after.fresh, after.derate, after.device) != \
                (before.breaches, before.fresh, before.derate, before.device):
            uc.changed = True  # what the view shows
        return self._apply(uc, out, now_ms)

    # -- inputs --------------------------------------------------------------------------

    def on_sample(self, sample: TelemetrySample, now_ms: int) -> list[Action]:
        unit_id = next((self.unit_of[a.id] for a in sample.assets if a.id in self.unit_of),
                       None)
        uc = self.units.get(unit_id) if unit_id else None
        if uc is None:
            return []
        for a in sample.assets:
            if self.unit_of.get(a.id) == unit_id:
                numbers = {t: float(v) for t, v in a.tags.items()
                           if isinstance(v, int | float) and not isinstance(v, bool)
                           and math.isfinite(v)}
                uc.values.setdefault(a.id, {}).update(numbers)
        uc.last_ts_ms = max(uc.last_ts_ms or 0, sample.ts_ms)
        fresh = now_ms - sample.ts_ms <= self.sm_config.stale_after_ms
        actions = self._interlocks(uc, now_ms, stale=not fresh)
        device = device_mode(uc.values.get(uc.unit.id, {}))
        if device is DeviceMode.IDLE and uc.state is State.RUNNING and uc.run_ms is not None \
                and sample.ts_ms < uc.run_ms + RUN_GRACE_MS:
            device = DeviceMode.RUNNING  # a poll from before the start reached the device
        actions += self._handle(uc, DeviceReport(sample.ts_ms, device, fresh), now_ms)
        return actions + self._direction_limits(uc, now_ms)

    def _interlocks(self, uc: UnitControl, now_ms: int, *, stale: bool) -> list[Action]:
        active = active_interlocks(self.cfg, self.reading(uc), stale)
        actions: list[Action] = []
        if active != uc.interlocks:
            uc.interlocks, uc.changed = active, True
            actions += self._handle(uc, Interlocks(
                tuple(i.id for i in active if i.forbid == "run"),
                tuple(i.id for i in active if i.forbid == "start")), now_ms)
        return actions

    def _direction_limits(self, uc: UnitControl, now_ms: int) -> list[Action]:
        """Hold charging or discharging at 0 while an interlock (or charge-only mode) forbids
        it; the rated power (or the charge-only import limit) otherwise."""
        if uc.machine.snapshot.reconciled is False:
            return []
        rated, mode = uc.unit.rated_power_kw, self.mode(uc)
        forbidden = {i.forbid for i in uc.interlocks}
        charge = 0.0 if "charge" in forbidden else rated
        if mode == "charge_only" and self.cfg.charge_only_import_kw is not None:
            charge = min(charge, self.cfg.charge_only_import_kw)
        discharge = 0.0 if "discharge" in forbidden or mode == "charge_only" else rated
        writes = []
        if charge != uc.charge_kw:
            writes.append(DeviceWrite(tag=CHARGE_LIMIT_TAG, value=round(charge, 1)))
        if discharge != uc.discharge_kw:
            writes.append(DeviceWrite(tag=DISCHARGE_LIMIT_TAG, value=round(discharge, 1)))
        if not writes or mode == "passive":
            return []
        uc.charge_kw, uc.discharge_kw = charge, discharge
        why = ", ".join(f"{i.id} ({i.forbid})" for i in uc.interlocks
                        if i.forbid in ("charge", "discharge"))
        reason = f"interlocks: {why}" if why else f"mode {mode}: direction limits"
        return self._write(uc, now_ms, reason, writes, audit="limits")

    def on_breach(self, b: BreachEvent, now_ms: int) -> list[Action]:
        if b.kind != "limit" and b.kind != "trend":
            return []  # a status or an alert raised as an alarm: for people, not the loop
        uc = self.units.get(self.unit_of.get(b.asset_id, ""))
        if uc is None:
            return []
        if b.state == "cleared":
            return self._handle(uc, BreachCleared(b.breach_id, b.ts_ms), now_ms)
        ttl = self._time_to_limit(uc, b) if b.kind == "trend" else None
        r = breach_reaction(self.cfg, b.rule_id, b.kind, b.severity, time_to_limit_s=ttl)
        return self._handle(uc, BreachRaised(b.breach_id, r.severity, b.ts_ms, r.derate),
                            now_ms)

    def _time_to_limit(self, uc: UnitControl, b: BreachEvent) -> float | None:
        """How soon the tag of a trend breach reaches the most severe level of a limit on
        the same tag, at the breach's rate (per minute)."""
        if self.monitoring is None:
            return None
        value = uc.values.get(b.asset_id, {}).get(b.tag)
        kind = self.kinds.get(b.asset_id)
        if value is None:
            return None
        best: float | None = None
        for rule in self.monitoring.limits:
            if rule.tag != b.tag or rule.asset_kind != kind or not rule.levels:
                continue
            ttl = time_to_limit_s(value, b.value, rule.levels[-1].threshold, rule.direction)
            if ttl is not None and (best is None or ttl < best):
                best = ttl
        return best

    def on_command(self, cmd: ControlCommand, now_ms: int) -> list[Action]:
        if cmd.kind == "write":
            return []  # setpoints: the connector's (ours, or another loop's)
        uc = self.units.get(cmd.unit_id)
        if uc is None:
            return [Answer(self._result(cmd, "refused", f"unknown unit {cmd.unit_id!r}",
                                        now_ms))]
        summary = CommandSummary(command_id=cmd.command_id, kind=cmd.kind, actor=cmd.actor,
                                 reason=cmd.reason, ts_ms=cmd.ts_ms)
        event: Event
        if cmd.kind == "estop":
            event = EStop(cmd.actor, cmd.reason)
        elif cmd.kind == "stop":
            event = OperatorStop(cmd.actor, cmd.reason)
        elif cmd.kind == "start":
            event = OperatorStart(cmd.actor, cmd.reason)
        elif cmd.kind == "reset":
            event = OperatorReset(cmd.actor, cmd.reason)
        else:
            assert cmd.mode is not None
            uc.mode_override, uc.changed = cmd.mode, True
            uc.charge_kw = uc.discharge_kw = None  # re-sent in the new mode
            event = OperatorStop(cmd.actor, f"mode stopped: {cmd.reason}") \
                if cmd.mode == "stopped" else Tick(now_ms)
        # The connector may have reported on it already (an estop it executed before the
        # loop read the command): then that entry stays, with the device's outcome.
        if not any(c.command_id == cmd.command_id for c in uc.commands):
            uc.commands.appendleft(summary)
        out = uc.machine.handle(event)
        actions = self._apply(uc, out, now_ms)
        refusal = out.refusal.reason if out.refusal is not None else None
        outcome: Literal["accepted", "refused"] = "refused" if refusal else "accepted"
        detail = refusal or f"{uc.state.value}, mode {self.mode(uc)}"
        for i, c in enumerate(uc.commands):
            if c.command_id == cmd.command_id and c.by != "connector":
                uc.commands[i] = c.model_copy(update={"outcome": outcome, "by": "control",
                                                      "detail": detail})
        uc.changed = True
        actions.append(Answer(self._result(cmd, outcome, detail, now_ms)))
        details = {"reason": cmd.reason, "command_id": cmd.command_id, "decision": detail}
        if cmd.mode is not None:
            details["mode"] = cmd.mode
        actions.append(Audit(cmd.actor, f"control.{cmd.kind}", cmd.unit_id,
                             "refused" if refusal else "ok", details))
        if cmd.mode is not None:
            actions += self._direction_limits(uc, now_ms)
            if self.mode(uc) == "derated" and uc.state is State.RUNNING:
                uc.target_kw, uc.ramp_ms = self.cap_kw(uc), now_ms
        return actions

    def _result(self, cmd: ControlCommand, outcome: Literal["accepted", "refused"],
                detail: str, now_ms: int) -> CommandResult:
        return CommandResult(command_id=cmd.command_id, unit_id=cmd.unit_id, kind=cmd.kind,
                             by="control", outcome=outcome, detail=detail[:2000],
                             ts_ms=now_ms, actor=cmd.actor, reason=cmd.reason,
                             latency_ms=max(0.0, float(now_ms - cmd.ts_ms)))

    def on_result(self, r: CommandResult, now_ms: int) -> list[Action]:
        uc = self.units.get(r.unit_id)
        if uc is None or r.by != "connector":
            return []
        heartbeat = r.reason == HEARTBEAT_REASON
        ok = r.outcome == "written"
        if heartbeat and ok:
            return []
        actions: list[Action] = []
        known = False
        for i, s in enumerate(uc.commands):
            if s.command_id == r.command_id:
                uc.commands[i] = s.model_copy(update={
                    "outcome": r.outcome, "by": "connector", "detail": r.detail,
                    "read_back": dict(r.read_back)})
                known = True
                break
        if not known and not heartbeat:
            uc.commands.appendleft(CommandSummary(
                command_id=r.command_id, kind=r.kind, actor=r.actor or "connector",
                reason=r.reason or r.detail[:500] or "-", ts_ms=r.ts_ms, outcome=r.outcome,
                by="connector", detail=r.detail, read_back=dict(r.read_back)))
        uc.changed = True
        actions.append(Audit(r.actor or "connector", "control.result", r.unit_id,
                             "ok" if ok else "failed",
                             {"command_id": r.command_id, "outcome": r.outcome,
                              "reason": r.reason, "read_back": dict(r.read_back),
                              "detail": r.detail,
                              "attempts": r.attempts, "latency_ms": r.latency_ms}))
        if ok:
            actions += self._alert(uc, "control_command_failed", "major", now_ms, "", "cleared")
        else:
            actions += self._alert(uc, "control_command_failed", "major", now_ms,
                                   f"{r.unit_id}: {r.kind} {r.outcome}: {r.detail}")
        if r.kind == "estop" and r.actor == "connector" and not known:
            # A connector's hard limit stopped the unit: latch it until reset by hand.
            actions += self._handle(uc, EStop("connector", r.reason or r.detail), now_ms)
        return actions

    def tick(self, now_ms: int) -> list[Action]:
        actions: list[Action] = []
        for uc in self.units.values():
            actions += self._handle(uc, Tick(now_ms), now_ms)
            actions += self._ramp(uc, now_ms)
            actions += self._auto_start(uc, now_ms)
            if self.mode(uc) != "passive" and uc.machine.snapshot.reconciled and \
                    now_ms - uc.heartbeat_ms >= self.cfg.heartbeat_s * 1000:
                uc.heartbeat, uc.heartbeat_ms = (uc.heartbeat + 1) % 65536, now_ms
                actions += self._write(uc, now_ms, HEARTBEAT_REASON,
                                       [DeviceWrite(tag=HEARTBEAT_TAG, value=uc.heartbeat)],
                                       audit=None)
        return actions

    def _ramp(self, uc: UnitControl, now_ms: int) -> list[Action]:
        if uc.target_kw is None or uc.limit_kw is None:
            return []
        if uc.limit_kw == uc.target_kw and uc.pending_stop is None:
            return []
        step = self.cfg.ramp_kw_per_s * max(0, now_ms - (uc.ramp_ms or now_ms)) / 1000
        if step <= 0 and uc.limit_kw != uc.target_kw:
            return []
        uc.ramp_ms = now_ms
        goal = uc.target_kw
        new = max(goal, uc.limit_kw - step) if goal < uc.limit_kw else min(goal,
                                                                          uc.limit_kw + step)
        writes = []
        if new != uc.limit_kw:
            uc.limit_kw = new
            writes.append(DeviceWrite(tag=LIMIT_TAG, value=round(new, 1)))
        reason = f"ramp to {goal:.0f} kW"
        if uc.pending_stop is not None and new <= 0.0:
            writes.append(DeviceWrite(tag=MODE_TAG, value=MODE_STOP))
            reason, uc.pending_stop = f"graceful stop: {uc.pending_stop}", None
        if not writes:
            return []
        uc.changed = True
        return self._write(uc, now_ms, reason, writes, audit="ramp")

    def _auto_start(self, uc: UnitControl, now_ms: int) -> list[Action]:
        """A unit IDLE for a transient cause (stale telemetry, an interlock, the device
        stopped by its watchdog) starts again in the modes that dispatch, once nothing blocks
        it for `restart_hold_s`. ERROR and STOPPED are never left without a reset."""
        mode = self.mode(uc)
        if mode not in AUTO_START_MODES or uc.state is not State.IDLE:
            return []
        if start_blocker(uc.machine.snapshot) is not None:
            uc.idle_since_ms = now_ms  # the hold counts from when nothing blocks
            return []
        if uc.idle_since_ms is None:
            uc.idle_since_ms = now_ms
        if now_ms - uc.idle_since_ms < self.cfg.restart_hold_s * 1000:
            return []
        return self._handle(uc, OperatorStart(CONTROL_LOOP, f"mode {mode}: nothing blocks "
                                              f"it for {self.cfg.restart_hold_s:g} s"), now_ms)

    # -- state out -----------------------------------------------------------------------

    def view(self, uc: UnitControl, now_ms: int) -> UnitControlView:
        s = uc.machine.snapshot
        return UnitControlView(
            unit_id=uc.unit.id, site_id=uc.site_id, state=s.state.value, mode=self.mode(uc),
            device=s.device.value if s.device is not None else None, fresh=s.fresh,
            derate=s.derate, power_limit_kw=uc.limit_kw,
            interlocks=tuple(InterlockView(id=i.id, forbid=i.forbid, message=i.message)
                             for i in uc.interlocks),
            limits=tuple(ActiveLimit(breach_id=b, severity=sev) for b, sev in s.breaches),
            last_command=uc.commands[0] if uc.commands else None,
            commands=tuple(uc.commands), last_refusal=uc.last_refusal, updated_ms=now_ms)

    def persisted(self) -> dict[str, dict[str, Any]]:
        """What survives a restart: each machine (restored in BOOT) and the mode set by
        hand."""
        return {u: {"machine": uc.machine.to_dict(), "mode_override": uc.mode_override}
                for u, uc in self.units.items()}
