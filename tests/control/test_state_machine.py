"""The unit state machine: table-driven sequences (the state after each event) and a Hypothesis
stateful test that fires random events and checks the safety invariants after each."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from control.state_machine import (
    TRANSITIONS,
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
    Run,
    State,
    Stop,
    Tick,
    UnitStateMachine,
    from_dict,
    is_legal,
    running_blocker,
)

B, IDLE, R, E, S = State.BOOT, State.IDLE, State.RUNNING, State.ERROR, State.STOPPED
CFG = Config(stale_after_ms=10_000, major_derate_fraction=0.5, derate_hold_ms=60_000)
T0 = 1_700_000_000_000


def report(t: int, mode: DeviceMode = DeviceMode.IDLE, fresh: bool = True) -> DeviceReport:
    return DeviceReport(T0 + t, mode, fresh)


def tick(t: int) -> Tick:
    return Tick(T0 + t)


START = OperatorStart("eng", "dispatch")
STOP = OperatorStop("eng", "maintenance")
RESET = OperatorReset("eng", "cleared on site")
ESTOP = EStop("eng", "smoke")

SEQUENCES: dict[str, list[tuple[Event, State]]] = {
    "boot, reconcile idle, start, stop, reset": [
        (tick(0), B),
        (START, B),  # refused: not reconciled
        (report(0), IDLE),
        (START, R),
        (STOP, S),
        (START, S),  # refused: reset first
        (RESET, IDLE),
    ],
    "critical breach stops a running unit into ERROR; only a reset with reason leaves": [
        (report(0), IDLE),
        (START, R),
        (BreachRaised("b1", "critical", T0 + 1), E),
        (START, E),
        (RESET, E),  # refused: critical still active
        (BreachCleared("b1", T0 + 2), E),
        (OperatorReset("eng", "  "), E),  # refused: no reason
        (RESET, IDLE),
    ],
    "stale telemetry holds safe": [
        (report(0, DeviceMode.RUNNING), R),  # cold boot adopts what the device does
        (tick(5_000), R),
        (tick(10_001), IDLE),  # stale: stop, IDLE
        (START, IDLE),  # refused: stale
        (report(11_000, DeviceMode.IDLE), IDLE),
        (START, R),
        (report(12_000, DeviceMode.RUNNING, fresh=False), IDLE),
    ],
    "device fault is ERROR; reset refused while the device still reports it": [
        (report(0, DeviceMode.RUNNING), R),
        (report(1, DeviceMode.FAULT), E),
        (RESET, E),
        (report(2, DeviceMode.IDLE), E),
        (RESET, IDLE),
    ],
    "e-stop from anywhere is STOPPED, a critical breach latches it into ERROR": [
        (ESTOP, S),  # even in BOOT
        (report(0, DeviceMode.RUNNING), S),
        (BreachRaised("b", "critical", T0 + 1), E),
        (ESTOP, E),  # ERROR stays ERROR, the stop is issued again
    ],
    "warnings and minors do nothing; majors derate without a state change": [
        (report(0, DeviceMode.RUNNING), R),
        (BreachRaised("w", "warning", T0 + 1), R),
        (BreachRaised("m", "minor", T0 + 1), R),
        (BreachRaised("M", "major", T0 + 2), R),
        (BreachCleared("M", T0 + 3), R),
        (report(30_000, DeviceMode.RUNNING), R),
        (tick(30_001), R),
    ],
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_sequences(name: str) -> None:
    m = UnitStateMachine("u1", CFG)
    for i, (event, expected) in enumerate(SEQUENCES[name]):
        m.handle(event)
        assert m.state is expected, f"after event {i} ({event}): {m.state}"


def test_commands_of_a_critical_breach_and_of_a_major() -> None:
    m = UnitStateMachine("u1", CFG)
    m.handle(report(0, DeviceMode.RUNNING))
    out = m.handle(BreachRaised("M", "major", T0 + 1))
    assert out.commands == (Derate(0.5, "major breach active"),)
    m.handle(BreachCleared("M", T0 + 2))
    m.handle(report(50_000, DeviceMode.RUNNING))
    assert m.handle(tick(50_001)).commands == ()  # hold not over yet
    m.handle(report(60_000, DeviceMode.RUNNING))
    out = m.handle(tick(60_002))
    assert [type(c) for c in out.commands] == [Derate]
    assert out.commands[0] == Derate(1.0, "major breaches cleared, hold over")
    out = m.handle(BreachRaised("C", "critical", T0 + 60_003))
    assert out.state is E
    assert out.commands == (Stop("critical breach C", immediate=True),)


def test_start_carries_the_derate_in_force() -> None:
    m = UnitStateMachine("u1", CFG)
    m.handle(report(0))
    m.handle(BreachRaised("M", "major", T0))
    out = m.handle(START)
    assert out.state is R
    assert out.commands == (Run(0.5, "start by eng: dispatch"),)


def test_a_refusal_is_returned_logged_and_leaves_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = UnitStateMachine("u1", CFG)
    m.handle(report(0))
    m.handle(STOP)
    with caplog.at_level(logging.WARNING, logger="control.state_machine"):
        out = m.handle(START)
    assert out.state is S and out.commands == ()
    assert out.refusal is not None and out.refusal.wanted is S
    assert "reset" in out.refusal.reason
    assert "refused OperatorStart in STOPPED" in caplog.text


def test_idle_stops_a_device_that_runs_unauthorised() -> None:
    m = UnitStateMachine("u1", CFG)
    m.handle(report(0))
    out = m.handle(report(1, DeviceMode.RUNNING))
    assert out.state is IDLE and [type(c) for c in out.commands] == [Stop]


def test_transition_table() -> None:
    assert not is_legal(E, R) and not is_legal(E, S) and not is_legal(S, R)
    assert not is_legal(IDLE, B) and not is_legal(R, B)
    assert all(is_legal(s, s) for s in State)
    assert {s for s in State if R in TRANSITIONS[s]} == {B, IDLE}
    assert all(E in TRANSITIONS[s] for s in State if s is not E)


@pytest.mark.parametrize(
    ("persisted", "device", "expected", "stops"),
    [
        (R, DeviceMode.RUNNING, R, 0),
        (R, DeviceMode.IDLE, IDLE, 0),
        (IDLE, DeviceMode.IDLE, IDLE, 0),
        (E, DeviceMode.RUNNING, E, 1),  # a restart never clears a latch
        (S, DeviceMode.RUNNING, S, 1),
        (S, DeviceMode.IDLE, S, 0),
        (R, DeviceMode.FAULT, E, 1),
    ],
)
def test_restore_resumes_safe(
    persisted: State, device: DeviceMode, expected: State, stops: int
) -> None:
    m = UnitStateMachine("u1", CFG)
    m.snapshot = from_dict({"v": 1, "unit_id": "u1", "state": persisted.value})
    assert m.state is B
    # Nothing before a fresh report brings it to RUNNING.
    for event in (START, tick(0), report(0, DeviceMode.RUNNING, fresh=False), START):
        assert m.handle(event).state is B
    out = m.handle(report(1, device))
    assert out.state is expected
    assert sum(isinstance(c, Stop) for c in out.commands) == stops


def test_persisted_form_is_json_and_keeps_latches_over_restarts() -> None:
    m = UnitStateMachine("u1", CFG)
    m.handle(report(0, DeviceMode.RUNNING))
    m.handle(BreachRaised("M", "major", T0 + 1))
    m.handle(BreachRaised("C", "critical", T0 + 2))
    assert m.state is E
    data = json.loads(json.dumps(m.to_dict()))
    r1 = UnitStateMachine.restore(data, CFG)
    assert r1.state is B and r1.snapshot.resume is E and not r1.snapshot.reconciled
    assert r1.snapshot.breaches == (("C", "critical"), ("M", "major"))
    assert r1.snapshot.derate == 0.5
    r2 = UnitStateMachine.restore(json.loads(json.dumps(r1.to_dict())), CFG)  # before reconcile
    assert r2.snapshot.resume is E
    assert r2.handle(report(10, DeviceMode.IDLE)).state is E


@pytest.mark.parametrize(
    "data",
    [
        {"v": 2, "unit_id": "u", "state": "IDLE"},
        {"v": 1, "unit_id": "u", "state": "FLYING"},
        {"v": 1, "unit_id": "u", "state": "IDLE", "breaches": [["b", "fatal"]]},
        {"v": 1, "unit_id": "u", "state": "IDLE", "derate": 2},
    ],
)
def test_restore_refuses_what_it_cannot_trust(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        from_dict(data)


# --- Hypothesis: random event sequences, invariants after every step -------------------------

SEVERITY = st.sampled_from(["critical", "major", "minor", "warning"])
BREACH_IDS = st.sampled_from(["b1", "b2", "b3"])
ACTOR = st.sampled_from(["", "eng"])
REASON = st.sampled_from(["", " ", "why"])


class UnitMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = UnitStateMachine("u1", CFG)
        self.now = T0
        self.last: tuple[Event, object] | None = None
        self.restored_unreconciled = False

    def fire(self, event: Event) -> None:
        before = self.m.state
        out = self.m.handle(event)
        after = out.state
        # No illegal transition is ever applied; a refusal leaves the state.
        assert is_legal(before, after), f"{before} → {after} on {event}"
        if out.refusal is not None:
            assert after is before
        # After a critical breach the unit is not RUNNING and a Stop was issued.
        if isinstance(event, BreachRaised) and event.severity == "critical":
            assert after is E
            assert any(isinstance(c, Stop) and c.immediate for c in out.commands)
        if isinstance(event, EStop):
            assert after in (S, E)
            assert any(isinstance(c, Stop) and c.immediate for c in out.commands)
        if isinstance(event, DeviceReport) and event.fresh:
            self.restored_unreconciled = False
        # Left ERROR or STOPPED only by a reset with a reason.
        if before in (E, S) and after not in (E, S):
            assert isinstance(event, OperatorReset) and event.reason.strip() and event.actor
        # RUNNING is entered only with a Run command or by adopting a fresh device report.
        if after is R and before is not R:
            assert any(isinstance(c, Run) for c in out.commands) or (
                isinstance(event, DeviceReport) and event.device is DeviceMode.RUNNING
            )

    @rule(dt=st.integers(0, 20_000))
    def tick(self, dt: int) -> None:
        self.now += dt
        self.fire(Tick(self.now))

    @rule(
        dt=st.integers(0, 5_000),
        mode=st.sampled_from(list(DeviceMode)),
        fresh=st.booleans(),
    )
    def report(self, dt: int, mode: DeviceMode, fresh: bool) -> None:
        self.now += dt
        self.fire(DeviceReport(self.now, mode, fresh))

    @rule(bid=BREACH_IDS, severity=SEVERITY)
    def raise_breach(self, bid: str, severity: str) -> None:
        self.fire(BreachRaised(bid, severity, self.now))  # type: ignore[arg-type]

    @rule(bid=BREACH_IDS)
    def clear_breach(self, bid: str) -> None:
        self.fire(BreachCleared(bid, self.now))

    @rule(actor=ACTOR, reason=REASON)
    def start(self, actor: str, reason: str) -> None:
        self.fire(OperatorStart(actor, reason))

    @rule(actor=ACTOR, reason=REASON)
    def stop(self, actor: str, reason: str) -> None:
        self.fire(OperatorStop(actor, reason))

    @rule(actor=ACTOR, reason=REASON)
    def reset(self, actor: str, reason: str) -> None:
        self.fire(OperatorReset(actor, reason))

    @rule(actor=ACTOR, reason=REASON)
    def estop(self, actor: str, reason: str) -> None:
        self.fire(EStop(actor, reason))

    @rule(run=st.sampled_from([(), ("i1",)]), start=st.sampled_from([(), ("i2",)]))
    def interlocks(self, run: tuple[str, ...], start: tuple[str, ...]) -> None:
        before = self.m.state
        out = self.m.handle(Interlocks(run, start))
        assert is_legal(before, out.state)
        if run and before is R:  # a run interlock stops a running unit
            assert out.state is IDLE and any(isinstance(c, Stop) for c in out.commands)

    @precondition(lambda self: self.m.state is not B)
    @rule()
    def restart(self) -> None:
        data = json.loads(json.dumps(self.m.to_dict()))
        self.m = UnitStateMachine.restore(data, CFG)
        self.restored_unreconciled = True

    @invariant()
    def never_running_unsafely(self) -> None:
        s = self.m.snapshot
        if s.state is R:
            assert running_blocker(s) is None
            assert s.fresh and not s.critical_active
        if self.restored_unreconciled:
            assert s.state is not R

    @invariant()
    def critical_breach_means_latched(self) -> None:
        s = self.m.snapshot
        if s.critical_active and s.state is not B:
            assert s.state in (E, S)


TestUnitMachine = UnitMachine.TestCase
TestUnitMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
