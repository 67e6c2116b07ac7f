"""The control loop's logic (control/loop.py) on the example fleet, without I/O: what each
input makes it send, answer, audit and raise."""

from __future__ import annotations

import json
from itertools import count, pairwise
from pathlib import Path

import pytest

from connectors.settings import EXAMPLE_CONTROL, EXAMPLE_FLEET, EXAMPLE_MONITORING
from contracts.control import (
    CHARGE_LIMIT_TAG,
    DISCHARGE_LIMIT_TAG,
    HEARTBEAT_TAG,
    LIMIT_TAG,
    MODE_STOP,
    MODE_TAG,
    SETPOINT_TAG,
    CommandResult,
    ControlCommand,
    ControlConfig,
    load_control,
    parse_control,
)
from contracts.errors import InvalidInput
from contracts.events import AssetReading, BreachEvent, TelemetrySample
from contracts.fleet import Fleet, load_fleet
from contracts.monitoring import load_monitoring
from control.loop import Action, Answer, Audit, ControlLoop, Raise, Send
from control.state_machine import State

T0 = 1_780_000_000_000
FLEET = load_fleet(EXAMPLE_FLEET)
UNIT = FLEET.sites[0].units[0]  # nordvik-u01: mode normal in the example config
PASSIVE_UNIT = next(s for s in FLEET.sites if s.id == "mesa").units[0]


def make(cfg: ControlConfig | None = None, fleet: Fleet = FLEET,
         restored: dict[str, dict[str, object]] | None = None) -> ControlLoop:
    ids = count(1)
    return ControlLoop(fleet, cfg or load_control(EXAMPLE_CONTROL),
                       load_monitoring(EXAMPLE_MONITORING), restored=restored,
                       new_id=lambda: f"c{next(ids)}")


def sample(unit_id: str, ts: int, *, mode: int = 0, status: int = 0, soc: float = 50.0,
           cell: float = 30.0, alarm: int = 0) -> TelemetrySample:
    unit = next(u for s in FLEET.sites for u in s.units if u.id == unit_id)
    assets = [AssetReading(id=unit_id, tags={"status_code": status, MODE_TAG: mode,
                                             "soc_pct": soc, "alarm_word": alarm})]
    for inv in unit.inverters:
        assets.append(AssetReading(id=inv.id, tags={"status_code": 0, "temperature_c": 30.0}))
        for b in inv.blocks:
            assets.append(AssetReading(id=b.id, tags={"status_code": 0, "cell_temp_max_c": cell}))
    return TelemetrySample(device_id=unit_id, ts_ms=ts, assets=tuple(assets))


def breach(asset_id: str, severity: str, ts: int, *, state: str = "raised",
           rule: str = "cell-temp-high", kind: str = "limit", value: float = 56.0,
           tag: str = "cell_temp_max_c") -> BreachEvent:
    return BreachEvent.model_validate({
        "breach_id": f"{rule}:{severity}:{asset_id}:{ts}", "rule_id": rule, "kind": kind,
        "asset_id": asset_id, "site_id": "nordvik", "tag": tag, "severity": severity,
        "state": state, "raised_ms": ts, "ts_ms": ts, "value": value, "threshold": 55.0,
        "message": "m"})


def command(kind: str, ts: int, unit_id: str = UNIT.id, **extra: object) -> ControlCommand:
    return ControlCommand.model_validate({"command_id": f"op-{kind}-{ts}", "unit_id": unit_id,
                                          "kind": kind, "actor": "eng@example.test",
                                          "reason": "test", "ts_ms": ts, **extra})


def writes(actions: list[Action]) -> list[dict[str, float]]:
    return [{w.tag: w.value for w in a.command.writes} for a in actions if isinstance(a, Send)]


def running(loop: ControlLoop, unit_id: str = UNIT.id) -> None:
    loop.on_sample(sample(unit_id, T0), T0)
    assert loop.units[unit_id].state is State.RUNNING


def test_a_running_unit_is_adopted_and_its_direction_limits_written() -> None:
    loop = make()
    out = loop.on_sample(sample(UNIT.id, T0), T0)
    assert loop.units[UNIT.id].state is State.RUNNING
    rated = UNIT.rated_power_kw
    assert writes(out) == [{CHARGE_LIMIT_TAG: rated, DISCHARGE_LIMIT_TAG: rated}]
    # The heartbeat goes out on the next tick, then every heartbeat_s.
    beats = [w for w in writes(loop.tick(T0 + 100)) if HEARTBEAT_TAG in w]
    assert beats == [{HEARTBEAT_TAG: 1}]
    assert not [w for w in writes(loop.tick(T0 + 1000)) if HEARTBEAT_TAG in w]
    assert [w for w in writes(loop.tick(T0 + 2100)) if HEARTBEAT_TAG in w] == \
        [{HEARTBEAT_TAG: 2}]


def test_a_critical_breach_stops_the_unit_at_once_audited_and_alerted() -> None:
    loop = make()
    running(loop)
    block = UNIT.inverters[0].blocks[0].id
    out = loop.on_breach(breach(block, "critical", T0 + 500), T0 + 500)
    assert writes(out) == [{SETPOINT_TAG: 0.0, MODE_TAG: MODE_STOP}]
    assert loop.units[UNIT.id].state is State.ERROR
    audits = [a for a in out if isinstance(a, Audit)]
    assert {a.action for a in audits} == {"control.auto.stop", "control.state"}
    alerts = [a.alert for a in out if isinstance(a, Raise)]
    assert [(a.kind, a.state) for a in alerts] == [("control_action", "raised")]
    # The device stops; the unit stays latched until a reset with a reason…
    loop.on_sample(sample(UNIT.id, T0 + 1000, mode=MODE_STOP), T0 + 1000)
    out = loop.on_command(command("start", T0 + 1100), T0 + 1100)
    answer = next(a.result for a in out if isinstance(a, Answer))
    assert answer.outcome == "refused" and "reset" in answer.detail
    # … which is refused while the breach is active, and accepted once it cleared.
    out = loop.on_command(command("reset", T0 + 1200), T0 + 1200)
    assert next(a.result for a in out if isinstance(a, Answer)).outcome == "refused"
    loop.on_breach(breach(block, "critical", T0 + 500, state="cleared"), T0 + 1300)
    out = loop.on_command(command("reset", T0 + 1400), T0 + 1400)
    assert next(a.result for a in out if isinstance(a, Answer)).outcome == "accepted"
    assert loop.units[UNIT.id].state is State.IDLE


def test_a_major_breach_derates_along_a_ramp_and_the_hold_lifts_it() -> None:
    cfg = load_control(EXAMPLE_CONTROL).model_copy(update={"ramp_kw_per_s": 500.0,
                                                           "derate_hold_s": 5.0})
    loop = make(cfg)
    running(loop)
    block = UNIT.inverters[0].blocks[0].id
    loop.on_breach(breach(block, "major", T0 + 100, value=46.0), T0 + 100)
    limits = []
    for t in range(200, 8000, 100):
        if t % 1000 == 0:
            loop.on_sample(sample(UNIT.id, T0 + t), T0 + t)
        limits += [w[LIMIT_TAG] for w in writes(loop.tick(T0 + t)) if LIMIT_TAG in w]
    rated = UNIT.rated_power_kw
    assert limits[-1] == pytest.approx(0.5 * rated)
    assert all(b < a for a, b in pairwise(limits))  # down, step by step
    steps = [a - b for a, b in zip([rated, *limits], limits, strict=False)]
    assert max(steps) <= 500 * 0.1 + 1e-6  # at most ramp × tick
    # Cleared: the cap holds derate_hold_s, then ramps back up.
    loop.on_breach(breach(block, "major", T0 + 100, state="cleared"), T0 + 8000)
    ups = []
    for t in range(8100, 20_000, 100):
        if t % 1000 == 0:
            loop.on_sample(sample(UNIT.id, T0 + t), T0 + t)
        ups += [w[LIMIT_TAG] for w in writes(loop.tick(T0 + t)) if LIMIT_TAG in w]
    assert ups and ups[-1] == pytest.approx(rated)
    assert loop.units[UNIT.id].machine.snapshot.derate == 1.0


def test_a_trend_heading_for_its_limit_soon_derates_before_it() -> None:
    loop = make()
    block = UNIT.inverters[0].blocks[0].id
    loop.on_sample(sample(UNIT.id, T0, cell=50.0), T0)
    # 2 °C/min from 50 °C: 55 °C in 150 s, under the rule's 900 s → derate to 60 %.
    loop.on_breach(breach(block, "major", T0 + 100, rule="cell-temp-rising", kind="trend",
                          value=2.0), T0 + 100)
    assert loop.units[UNIT.id].machine.snapshot.derate == pytest.approx(0.6)


def test_a_warning_does_nothing() -> None:
    loop = make()
    running(loop)
    out = loop.on_breach(breach(UNIT.id, "warning", T0 + 100, rule="soc-high", tag="soc_pct",
                                value=96.0), T0 + 100)
    assert writes(out) == [] and loop.units[UNIT.id].state is State.RUNNING


def test_passive_units_are_observed_only() -> None:
    loop = make()
    u = PASSIVE_UNIT
    out = loop.on_sample(sample(u.id, T0), T0)
    block = u.inverters[0].blocks[0].id
    out += loop.on_breach(breach(block, "critical", T0 + 100), T0 + 100)
    for t in range(200, 5000, 100):
        out += loop.tick(T0 + t)
    assert writes(out) == []
    assert loop.units[u.id].state is State.ERROR  # what it would do is still shown
    assert loop.view(loop.units[u.id], T0).mode == "passive"


def test_interlocks_hold_a_direction_at_zero_and_stale_telemetry_stops() -> None:
    loop = make()
    running(loop)
    out = loop.on_sample(sample(UNIT.id, T0 + 1000, soc=97.5), T0 + 1000)
    assert writes(out) == [{CHARGE_LIMIT_TAG: 0.0}]
    view = loop.view(loop.units[UNIT.id], T0 + 1000)
    assert [i.id for i in view.interlocks] == ["no-charge-soc-max"]
    out = loop.on_sample(sample(UNIT.id, T0 + 2000, soc=90.0), T0 + 2000)
    assert writes(out) == [{CHARGE_LIMIT_TAG: UNIT.rated_power_kw}]
    # HVAC failed and a cell above 40 °C: no discharge.
    out = loop.on_sample(sample(UNIT.id, T0 + 3000, alarm=4, cell=41.0), T0 + 3000)
    assert writes(out) == [{DISCHARGE_LIMIT_TAG: 0.0}]
    # No telemetry for longer than stale_after_s: stopped, IDLE.
    out = loop.tick(T0 + 3000 + 10_500)
    assert {MODE_TAG: MODE_STOP, SETPOINT_TAG: 0.0} in writes(out)
    assert loop.units[UNIT.id].state is State.IDLE


def test_an_idle_unit_restarts_after_the_hold_when_nothing_blocks_it() -> None:
    loop = make()
    loop.on_sample(sample(UNIT.id, T0, mode=MODE_STOP), T0)  # e.g. stopped by its watchdog
    assert loop.units[UNIT.id].state is State.IDLE
    started: list[dict[str, float]] = []
    for t in range(100, 40_000, 100):
        if t % 1000 == 0:  # the device follows the start one poll later
            run_ms = loop.units[UNIT.id].run_ms
            mode = 0 if run_ms is not None and t > 1000 + run_ms - T0 else MODE_STOP
            loop.on_sample(sample(UNIT.id, T0 + t, mode=mode), T0 + t)
        started += [w for w in writes(loop.tick(T0 + t)) if MODE_TAG in w]
    assert started == [{LIMIT_TAG: UNIT.rated_power_kw, MODE_TAG: 0}]
    assert loop.units[UNIT.id].state is State.RUNNING


def test_an_estop_latches_and_is_answered_and_audited() -> None:
    loop = make()
    running(loop)
    out = loop.on_command(command("estop", T0 + 100), T0 + 100)
    assert writes(out) == [{SETPOINT_TAG: 0.0, MODE_TAG: MODE_STOP}]
    answer = next(a.result for a in out if isinstance(a, Answer))
    assert (answer.outcome, answer.by, answer.kind) == ("accepted", "control", "estop")
    audit = next(a for a in out if isinstance(a, Audit) and a.action == "control.estop")
    assert audit.actor == "eng@example.test" and audit.details["reason"] == "test"
    assert loop.units[UNIT.id].state is State.STOPPED
    for t in range(200, 60_000, 1000):  # never restarted by itself
        loop.on_sample(sample(UNIT.id, T0 + t, mode=MODE_STOP), T0 + t)
        assert not [w for w in writes(loop.tick(T0 + t)) if w.get(MODE_TAG) == 0]
    view = loop.view(loop.units[UNIT.id], T0)
    assert [c.outcome for c in view.commands if c.kind == "estop"] == ["accepted"]


def test_an_operator_stop_ramps_down_then_stops() -> None:
    loop = make()
    running(loop)
    loop.on_command(command("stop", T0 + 100), T0 + 100)
    out: list[Action] = []
    for t in range(200, 5000, 100):
        out += loop.tick(T0 + t)
    ws = [w for w in writes(out) if HEARTBEAT_TAG not in w]
    assert ws[-1] == {LIMIT_TAG: 0.0, MODE_TAG: MODE_STOP}
    assert loop.units[UNIT.id].state is State.STOPPED


def test_results_update_the_command_and_a_failed_one_raises_an_alarm() -> None:
    loop = make()
    running(loop)
    block = UNIT.inverters[0].blocks[0].id
    out = loop.on_breach(breach(block, "critical", T0 + 100), T0 + 100)
    sent = next(a.command for a in out if isinstance(a, Send))
    bad = CommandResult(command_id=sent.command_id, unit_id=UNIT.id, kind="write",
                        by="connector", outcome="mismatch", detail="held 5", attempts=3,
                        read_back={MODE_TAG: 0.0}, ts_ms=T0 + 200)
    out = loop.on_result(bad, T0 + 200)
    alerts = [a.alert for a in out if isinstance(a, Raise)]
    assert [(a.kind, a.state) for a in alerts] == [("control_command_failed", "raised")]
    assert any(isinstance(a, Audit) and a.outcome == "failed" for a in out)
    view = loop.view(loop.units[UNIT.id], T0)
    assert next(c for c in view.commands if c.command_id == sent.command_id).outcome == \
        "mismatch"
    good = bad.model_copy(update={"outcome": "written", "read_back": {MODE_TAG: 2.0}})
    alerts = [a.alert for a in loop.on_result(good, T0 + 300) if isinstance(a, Raise)]
    assert [(a.kind, a.state) for a in alerts] == [("control_command_failed", "cleared")]


def test_a_connectors_hard_limit_trip_latches_the_unit() -> None:
    loop = make()
    running(loop)
    trip = CommandResult(command_id="hl-1", unit_id=UNIT.id, kind="estop", by="connector",
                         outcome="written", actor="connector",
                         reason="hard limit cell-overtemp: cell_temp_max_c 58 above 57",
                         ts_ms=T0 + 100)
    loop.on_result(trip, T0 + 100)
    assert loop.units[UNIT.id].state is State.STOPPED


def test_state_survives_a_restart_in_boot_and_resumes_the_latch() -> None:
    loop = make()
    running(loop)
    loop.on_command(command("estop", T0 + 100), T0 + 100)
    loop.on_command(command("mode", T0 + 200, mode="derated"), T0 + 200)
    saved = json.loads(json.dumps(loop.persisted()))
    again = make(restored=saved)
    uc = again.units[UNIT.id]
    assert uc.state is State.BOOT and again.mode(uc) == "derated"
    again.on_sample(sample(UNIT.id, T0 + 5000), T0 + 5000)  # the device runs: stopped again
    assert uc.state is State.STOPPED


def test_a_broken_persisted_unit_starts_from_boot() -> None:
    loop = make(restored={UNIT.id: {"machine": {"v": 99}}})
    assert loop.units[UNIT.id].state is State.BOOT


def test_commands_for_unknown_units_are_refused() -> None:
    out = make().on_command(command("estop", T0, unit_id="nope"), T0)
    assert [a.result.outcome for a in out if isinstance(a, Answer)] == ["refused"]


@pytest.mark.parametrize(("text", "where"), [
    ("default_mode: fast\n", "default_mode"),
    ("interlocks:\n  - {id: x, forbid: run, when: [{tag: soc_pct}]}\n", "interlocks"),
    ("hard_limits:\n  - {id: x, tag: soc_pct}\n", "hard_limits"),
    ("major_derate: 2\n", "major_derate"),
    ("reactions:\n  - {rule: a}\n  - {rule: a}\n", "reactions"),
])
def test_a_broken_control_file_is_refused_with_its_key(text: str, where: str,
                                                        tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_control(text, "control.yaml")
    assert "control.yaml" in str(info.value) and where in str(info.value)


def test_setpoints_leave_the_loop_within_the_nameplate() -> None:
    from contracts.control import DeviceWrite
    from control.loop import safe_writes

    got = safe_writes(1000.0, [DeviceWrite(tag=LIMIT_TAG, value=5000.0),
                               DeviceWrite(tag=CHARGE_LIMIT_TAG, value=-3.0),
                               DeviceWrite(tag=SETPOINT_TAG, value=-4000.0),
                               DeviceWrite(tag=MODE_TAG, value=7.0),
                               DeviceWrite(tag=HEARTBEAT_TAG, value=65537.0)])
    assert [(w.tag, w.value) for w in got] == [
        (LIMIT_TAG, 1000.0), (CHARGE_LIMIT_TAG, 0.0), (SETPOINT_TAG, -1000.0),
        (MODE_TAG, MODE_STOP), (HEARTBEAT_TAG, 1)]


def test_the_devices_outcome_stays_whichever_arrives_first() -> None:
    """The connector executes an estop at once: its read-back may reach the loop before the
    loop reads the command itself. Either order ends with one entry, written and read back."""
    for result_first in (True, False):
        loop = make()
        running(loop)
        estop = command("estop", T0 + 100)
        written = CommandResult(command_id=estop.command_id, unit_id=UNIT.id, kind="estop",
                                by="connector", outcome="written", actor=estop.actor,
                                reason=estop.reason, read_back={MODE_TAG: 2.0},
                                ts_ms=T0 + 110)
        if result_first:
            loop.on_result(written, T0 + 110)
            loop.on_command(estop, T0 + 120)
        else:
            loop.on_command(estop, T0 + 100)
            loop.on_result(written, T0 + 110)
        view = loop.view(loop.units[UNIT.id], T0 + 200)
        mine = [c for c in view.commands if c.command_id == estop.command_id]
        assert [(c.outcome, c.read_back) for c in mine] == [("written", {MODE_TAG: 2.0})]
        assert view.state == "STOPPED"


def test_the_view_follows_what_the_device_reports() -> None:
    loop = make()
    running(loop)
    loop.on_command(command("estop", T0 + 100), T0 + 100)
    uc = loop.units[UNIT.id]
    uc.changed = False  # the view was published
    loop.on_sample(sample(UNIT.id, T0 + 1000, mode=MODE_STOP), T0 + 1000)
    assert uc.changed and loop.view(uc, T0 + 1000).device == "idle"


def test_status_and_alert_alarms_are_for_people_not_for_the_loop() -> None:
    """A unit that trips is a critical status alarm if so configured, and a control action
    an alarm too: the loop reads them on the alarms topic and must not react to its own."""
    loop = make()
    running(loop)
    for kind, rule in (("status", "status.unavailable"), ("alert", "alert.control_action")):
        event = breach(UNIT.id, "critical", T0 + 500).model_copy(
            update={"kind": kind, "rule_id": rule})
        assert loop.on_breach(event, T0 + 500) == []
    assert loop.units[UNIT.id].state is State.RUNNING


def test_a_control_alert_raised_again_clears_the_one_before_under_its_own_time() -> None:
    """One control alert per kind and unit: a second one clears the first with the time
    and severity it was raised with, so the alarm it is clears under the same id."""
    loop = make()
    running(loop)
    block = UNIT.inverters[0].blocks[0].id
    first = [a.alert for a in loop.on_breach(breach(block, "major", T0 + 500), T0 + 500)
             if isinstance(a, Raise)]
    second = [a.alert for a in loop.on_breach(breach(block, "critical", T0 + 900), T0 + 900)
              if isinstance(a, Raise)]
    assert [(a.state, a.severity) for a in first] == [("raised", "minor")]
    cleared, raised = second
    assert (cleared.state, cleared.raised_ms, cleared.severity) == \
        ("cleared", first[0].raised_ms, first[0].severity)
    assert (raised.state, raised.raised_ms, raised.severity) == ("raised", T0 + 900, "major")
