"""The safety state machine of one battery unit (issue 13, point 2). Pure: no I/O, no clock.

    BOOT ──reconciled──► IDLE ──start──► RUNNING
      │                   ▲  ▲             │
      │ (resume)          │  └─stale/idle──┤
      │                   │ reset(reason)  │ critical breach / device fault
      │                   │                ▼
      └──────────────► STOPPED ◄── stop ── ERROR (any state) ── reset(reason) ──► IDLE

- **BOOT** is where every unit starts, cold or restored from its persisted form. It issues
  nothing and waits for a *fresh* device report; that report is the reconciliation: the unit
  adopts what the device is doing (running → RUNNING, idle → IDLE, fault → ERROR), except that
  a persisted ERROR or STOPPED is resumed as it was (a restart never clears a latch) and that
  a critical breach or stale telemetry never lets it reach RUNNING.
- **IDLE**: reconciled, not authorised to run. A device that runs anyway is told to stop.
- **RUNNING**: authorised to run, capped by the derate of the active major breaches.
- **ERROR**: entered automatically (critical breach, device fault) with an immediate Stop;
  left only by a manual reset with a reason, once no critical breach is active.
- **STOPPED**: entered by hand (operator stop, emergency stop); left only by a reset with a
  reason.

Every event is handled in two steps: `_observe` updates what is known (breaches, freshness,
time, the device's mode) whatever the state; then the one handler of the current state
returns a `Decision` — the next state and the commands to issue. `step` validates the
decision against `TRANSITIONS` and the running guard (`running_blocker`); a refused one
leaves the state unchanged, is logged and comes back as a `Refusal` with its reason (a Stop it
carried is still issued: stopping never makes a unit less safe). Time comes only from the
events (`Tick.now_ms`, report and breach times), never from a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, cast, get_args

from contracts.events import Severity

log = logging.getLogger(__name__)

PERSIST_VERSION = 1


class State(Enum):
    BOOT = "BOOT"
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    ERROR = "ERROR"
    STOPPED = "STOPPED"


class DeviceMode(Enum):
    """What the device says it is doing."""

    RUNNING = "running"
    IDLE = "idle"
    FAULT = "fault"


# Legal changes of state (staying in the same state is always legal). Only BOOT and IDLE lead
# to RUNNING; only a reset (→ IDLE) leaves ERROR; STOPPED is left by a reset or latched harder
# into ERROR. Every state may go to ERROR except ERROR itself (it stays).
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.BOOT: frozenset({State.IDLE, State.RUNNING, State.ERROR, State.STOPPED}),
    State.IDLE: frozenset({State.RUNNING, State.ERROR, State.STOPPED}),
    State.RUNNING: frozenset({State.IDLE, State.ERROR, State.STOPPED}),
    State.ERROR: frozenset({State.IDLE}),
    State.STOPPED: frozenset({State.IDLE, State.ERROR}),
}


def is_legal(src: State, dst: State) -> bool:
    return src is dst or dst in TRANSITIONS[src]


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceReport:
    """One reading of the device: its mode, and whether the telemetry behind it is fresh."""

    ts_ms: int
    device: DeviceMode
    fresh: bool = True


@dataclass(frozen=True)
class BreachRaised:
    breach_id: str
    severity: Severity
    ts_ms: int
    derate: float | None = None  # a major's cap (None: `Config.major_derate_fraction`)


@dataclass(frozen=True)
class BreachCleared:
    breach_id: str
    ts_ms: int


@dataclass(frozen=True)
class OperatorStart:
    actor: str
    reason: str


@dataclass(frozen=True)
class OperatorStop:
    actor: str
    reason: str


@dataclass(frozen=True)
class OperatorReset:
    actor: str
    reason: str


@dataclass(frozen=True)
class EStop:
    actor: str
    reason: str


@dataclass(frozen=True)
class Tick:
    now_ms: int


@dataclass(frozen=True)
class Interlocks:
    """The interlocks in force now (ids): those forbidding running, those forbidding a
    start. A unit running under a run interlock is stopped (→ IDLE); neither kind lets a
    unit start."""

    run: tuple[str, ...] = ()
    start: tuple[str, ...] = ()


Event = (
    DeviceReport
    | BreachRaised
    | BreachCleared
    | OperatorStart
    | OperatorStop
    | OperatorReset
    | EStop
    | Tick
    | Interlocks
)

# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    reason: str
    immediate: bool = True  # False: the graceful sequence (ramp down) is allowed


@dataclass(frozen=True)
class Derate:
    fraction: float  # of nameplate power; 1.0 lifts the derate
    reason: str


@dataclass(frozen=True)
class Run:
    max_fraction: float  # the derate in force when the run is authorised
    reason: str


Command = Stop | Derate | Run


# --- configuration, snapshot, outcome -------------------------------------------------------


@dataclass(frozen=True)
class Config:
    stale_after_ms: int = 10_000  # a fresh report older than this (by Tick) is stale
    major_derate_fraction: float = 0.5  # the cap while a major breach is active
    derate_hold_ms: int = 60_000  # majors all cleared this long before the cap is lifted


@dataclass(frozen=True)
class Snapshot:
    """Everything the machine knows about one unit. Immutable; `step` returns a new one."""

    unit_id: str
    state: State = State.BOOT
    resume: State | None = None  # the persisted state a restored unit returns to (in BOOT)
    reconciled: bool = False  # a fresh device report has been seen since (re)start
    device: DeviceMode | None = None
    fresh: bool = False
    last_fresh_ms: int | None = None
    now_ms: int | None = None
    breaches: tuple[tuple[str, Severity], ...] = ()  # active, sorted by id
    derate: float = 1.0
    majors_cleared_ms: int | None = None  # when the last active major cleared
    run_interlocks: tuple[str, ...] = ()
    start_interlocks: tuple[str, ...] = ()

    @property
    def critical_active(self) -> bool:
        return any(sev == "critical" for _, sev in self.breaches)

    @property
    def major_active(self) -> bool:
        return any(sev == "major" for _, sev in self.breaches)


@dataclass(frozen=True)
class Refusal:
    event: Event
    state: State
    wanted: State
    reason: str


@dataclass(frozen=True)
class Outcome:
    snapshot: Snapshot
    commands: tuple[Command, ...] = ()
    refusal: Refusal | None = None
    previous: State = State.BOOT

    @property
    def state(self) -> State:
        return self.snapshot.state


@dataclass(frozen=True)
class Decision:
    next: State
    commands: tuple[Command, ...] = ()
    refuse: str | None = None  # the event itself is refused (state unchanged)
    derate: float | None = None  # the cap the commands put in force


def running_blocker(s: Snapshot) -> str | None:
    """Why the unit may not be RUNNING now, or None. Checked on every step."""
    if not s.reconciled:
        return "not reconciled with a device report since (re)start"
    if not s.fresh:
        return "telemetry is stale"
    if s.critical_active:
        return "a critical breach is active"
    if s.device is DeviceMode.FAULT:
        return "the device reports a fault"
    if s.run_interlocks:
        return f"interlock {', '.join(s.run_interlocks)}"
    return None


def start_blocker(s: Snapshot) -> str | None:
    """Why the unit may not be started now (from IDLE), or None."""
    blocker = running_blocker(s)
    if blocker is None and s.start_interlocks:
        blocker = f"interlock {', '.join(s.start_interlocks)}"
    return blocker


# --- the common observation step ------------------------------------------------------------


def _observe(s: Snapshot, e: Event, cfg: Config) -> Snapshot:
    if isinstance(e, DeviceReport):
        now = e.ts_ms if s.now_ms is None else max(s.now_ms, e.ts_ms)
        if e.fresh:  # a fresh report is the reconciliation (BOOT's handler acts on it)
            return replace(
                s, device=e.device, fresh=True, last_fresh_ms=e.ts_ms, now_ms=now, reconciled=True
            )
        return replace(s, device=e.device, fresh=False, now_ms=now)
    if isinstance(e, Tick):
        stale = s.last_fresh_ms is None or e.now_ms - s.last_fresh_ms > cfg.stale_after_ms
        s = replace(s, now_ms=e.now_ms, fresh=s.fresh and not stale)
        if (
            not s.major_active
            and s.derate < 1.0
            and s.majors_cleared_ms is not None
            and e.now_ms - s.majors_cleared_ms >= cfg.derate_hold_ms
        ):
            s = replace(s, derate=1.0, majors_cleared_ms=None)
        return s
    if isinstance(e, BreachRaised):
        active = dict(s.breaches)
        active[e.breach_id] = e.severity
        s = replace(s, breaches=tuple(sorted(active.items())))
        if e.severity == "major":
            cap = cfg.major_derate_fraction if e.derate is None else e.derate
            s = replace(s, derate=min(s.derate, cap), majors_cleared_ms=None)
        return s
    if isinstance(e, Interlocks):
        return replace(s, run_interlocks=e.run, start_interlocks=e.start)
    if isinstance(e, BreachCleared):
        active = dict(s.breaches)
        was = active.pop(e.breach_id, None)
        s = replace(s, breaches=tuple(sorted(active.items())))
        if was == "major" and not s.major_active:
            s = replace(s, majors_cleared_ms=e.ts_ms)
        return s
    return s


# --- one handler per state ------------------------------------------------------------------


def _stop_if_running(s: Snapshot, reason: str) -> tuple[Command, ...]:
    return (Stop(reason),) if s.device is DeviceMode.RUNNING else ()


def _common_safety(s: Snapshot, e: Event) -> Decision | None:
    """What every state not yet latched does alike: critical breach or device fault → ERROR
    with an immediate stop; emergency stop → STOPPED; operator stop → STOPPED."""
    if isinstance(e, BreachRaised) and e.severity == "critical":
        return Decision(State.ERROR, (Stop(f"critical breach {e.breach_id}"),))
    if isinstance(e, DeviceReport) and e.fresh and e.device is DeviceMode.FAULT:
        return Decision(State.ERROR, (Stop("device reports a fault"),))
    if isinstance(e, EStop):
        return Decision(State.STOPPED, (Stop(f"emergency stop by {e.actor}: {e.reason}"),))
    if isinstance(e, OperatorStop):
        return Decision(State.STOPPED, (Stop(f"stop by {e.actor}: {e.reason}", immediate=False),))
    return None


def _on_boot(prev: Snapshot, s: Snapshot, e: Event) -> Decision:
    common = _common_safety(s, e)
    if common is not None:
        return common
    if isinstance(e, OperatorStart | OperatorReset):
        return Decision(State.BOOT, refuse="reconciling: waiting for a fresh device report")
    if not (isinstance(e, DeviceReport) and e.fresh):
        return Decision(State.BOOT)  # hold: issue nothing until the device is seen
    # The reconciliation.
    if s.critical_active:
        return Decision(State.ERROR, (Stop("critical breach active at reconciliation"),))
    if s.resume in (State.ERROR, State.STOPPED):
        return Decision(s.resume, _stop_if_running(s, f"resumed {s.resume.value}"))
    if e.device is DeviceMode.RUNNING:
        blocker = running_blocker(s)
        if blocker is not None:
            return Decision(State.IDLE, (Stop(f"reconciled running, but {blocker}"),))
        if s.derate < 1.0:
            return Decision(
                State.RUNNING, (Derate(s.derate, "major breach active"),), derate=s.derate
            )
        return Decision(State.RUNNING)
    return Decision(State.IDLE)


def _on_idle(prev: Snapshot, s: Snapshot, e: Event) -> Decision:
    common = _common_safety(s, e)
    if common is not None:
        return common
    if isinstance(e, OperatorStart):
        if not e.actor or not e.reason:
            return Decision(State.IDLE, refuse="a start needs an actor and a reason")
        blocker = start_blocker(s)
        if blocker is not None:
            return Decision(State.IDLE, refuse=f"cannot start: {blocker}")
        return Decision(State.RUNNING, (Run(s.derate, f"start by {e.actor}: {e.reason}"),))
    if isinstance(e, OperatorReset):
        return Decision(State.IDLE, refuse="nothing to reset in IDLE")
    if isinstance(e, DeviceReport) and e.fresh and e.device is DeviceMode.RUNNING:
        return Decision(State.IDLE, (Stop("running while not authorised (IDLE)"),))
    return Decision(State.IDLE)


def _on_running(prev: Snapshot, s: Snapshot, e: Event) -> Decision:
    common = _common_safety(s, e)
    if common is not None:
        return common
    if not s.fresh:
        return Decision(State.IDLE, (Stop("telemetry is stale: hold safe"),))
    if s.run_interlocks:
        return Decision(State.IDLE, (Stop(f"interlock {', '.join(s.run_interlocks)}"),))
    if isinstance(e, OperatorStart):
        return Decision(State.RUNNING, refuse="already RUNNING")
    if isinstance(e, OperatorReset):
        return Decision(State.RUNNING, refuse="nothing to reset in RUNNING")
    if isinstance(e, DeviceReport) and e.device is DeviceMode.IDLE:
        return Decision(State.IDLE)  # stopped by itself or locally: adopt, do not restart
    if s.derate != prev.derate:
        why = "major breach active" if s.derate < 1.0 else "major breaches cleared, hold over"
        return Decision(State.RUNNING, (Derate(s.derate, why),), derate=s.derate)
    return Decision(State.RUNNING)


def _latched(state: State) -> Callable[[Snapshot, Snapshot, Event], Decision]:
    """ERROR and STOPPED: nothing but a reset with a reason leaves them; every stop is
    honoured again; a device found running is stopped again."""

    def handler(prev: Snapshot, s: Snapshot, e: Event) -> Decision:
        if isinstance(e, BreachRaised) and e.severity == "critical":
            return Decision(State.ERROR, (Stop(f"critical breach {e.breach_id}"),))
        if isinstance(e, DeviceReport) and e.fresh and e.device is DeviceMode.FAULT:
            return Decision(State.ERROR, _stop_if_running(s, "device reports a fault"))
        if isinstance(e, EStop):
            return Decision(state, (Stop(f"emergency stop by {e.actor}: {e.reason}"),))
        if isinstance(e, OperatorStop):
            return Decision(state, (Stop(f"stop by {e.actor}: {e.reason}"),))
        if isinstance(e, OperatorStart):
            return Decision(state, refuse=f"{state.value}: a reset with a reason comes first")
        if isinstance(e, OperatorReset):
            if not e.actor or not e.reason.strip():
                return Decision(state, refuse="a reset needs an actor and a reason")
            if s.critical_active:
                return Decision(state, refuse="a critical breach is still active")
            if s.device is DeviceMode.FAULT:
                return Decision(state, refuse="the device still reports a fault")
            return Decision(State.IDLE)
        if isinstance(e, DeviceReport) and e.fresh and e.device is DeviceMode.RUNNING:
            return Decision(state, (Stop(f"running while {state.value}"),))
        return Decision(state)

    return handler


HANDLERS: Mapping[State, Callable[[Snapshot, Snapshot, Event], Decision]] = {
    State.BOOT: _on_boot,
    State.IDLE: _on_idle,
    State.RUNNING: _on_running,
    State.ERROR: _latched(State.ERROR),
    State.STOPPED: _latched(State.STOPPED),
}


# --- the step -------------------------------------------------------------------------------


def step(snapshot: Snapshot, event: Event, cfg: Config | None = None) -> Outcome:
    """Apply one event: observe it, ask the current state's handler, validate its decision."""
    cfg = cfg or Config()
    prev = snapshot
    s = _observe(snapshot, event, cfg)
    decision = HANDLERS[s.state](prev, s, event)
    reason = decision.refuse
    if reason is None and not is_legal(s.state, decision.next):
        reason = f"illegal transition {s.state.value} → {decision.next.value}"
    if reason is None and decision.next is State.RUNNING:
        reason = running_blocker(s)
    if reason is not None:
        refusal = Refusal(event, s.state, decision.next, reason)
        log.warning(
            "unit %s: refused %s in %s (wanted %s): %s",
            s.unit_id,
            type(event).__name__,
            s.state.value,
            decision.next.value,
            reason,
        )
        stops = tuple(c for c in decision.commands if isinstance(c, Stop))
        return Outcome(s, stops, refusal, previous=prev.state)
    nxt = replace(s, state=decision.next)
    if decision.next is not State.BOOT:
        nxt = replace(nxt, resume=None)
    if nxt.state is not s.state:
        log.info(
            "unit %s: %s → %s on %s",
            s.unit_id,
            s.state.value,
            nxt.state.value,
            type(event).__name__,
        )
    return Outcome(nxt, decision.commands, None, previous=prev.state)


@dataclass
class UnitStateMachine:
    """A mutable holder of one unit's snapshot, for the service loop and the tests."""

    unit_id: str
    config: Config = field(default_factory=Config)
    snapshot: Snapshot = field(init=False)

    def __post_init__(self) -> None:
        self.snapshot = Snapshot(self.unit_id)

    @property
    def state(self) -> State:
        return self.snapshot.state

    def handle(self, event: Event) -> Outcome:
        out = step(self.snapshot, event, self.config)
        self.snapshot = out.snapshot
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self.snapshot)

    @classmethod
    def restore(cls, data: Mapping[str, Any], config: Config | None = None) -> UnitStateMachine:
        snap = from_dict(data)
        m = cls(snap.unit_id, config or Config())
        m.snapshot = snap
        return m


# --- persistence ----------------------------------------------------------------------------


def to_dict(s: Snapshot) -> dict[str, Any]:
    """A JSON-able form of the snapshot. Freshness is not kept: a restored unit has none."""
    return {
        "v": PERSIST_VERSION,
        "unit_id": s.unit_id,
        "state": s.state.value,
        "resume": s.resume.value if s.resume is not None else None,
        "breaches": [[bid, sev] for bid, sev in s.breaches],
        "derate": s.derate,
        "majors_cleared_ms": s.majors_cleared_ms,
        "now_ms": s.now_ms,
    }


def from_dict(data: Mapping[str, Any]) -> Snapshot:
    """Restore a unit: always in BOOT, not reconciled, telemetry stale, and remembering the
    state to resume — the persisted one, or, for a unit persisted while still in BOOT, the
    state that unit was itself going to resume (so a latch survives any number of restarts)."""
    if data.get("v") != PERSIST_VERSION:
        raise ValueError(f"unknown persisted version {data.get('v')!r}")
    state = State(data["state"])
    resume = State(data["resume"]) if data.get("resume") is not None else None
    severities = get_args(Severity)
    breaches: list[tuple[str, Severity]] = []
    for bid, sev in data.get("breaches", []):
        if sev not in severities:
            raise ValueError(f"unknown severity {sev!r}")
        breaches.append((str(bid), cast(Severity, sev)))
    derate = float(data.get("derate", 1.0))
    if not 0.0 <= derate <= 1.0:
        raise ValueError(f"derate {derate} outside [0, 1]")
    return Snapshot(
        unit_id=str(data["unit_id"]),
        state=State.BOOT,
        resume=resume if state is State.BOOT else state,
        reconciled=False,
        fresh=False,
        breaches=tuple(sorted(breaches)),
        derate=derate,
        majors_cleared_ms=data.get("majors_cleared_ms"),
        now_ms=data.get("now_ms"),
    )
