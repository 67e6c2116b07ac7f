"""Statuses and alerts raised as alarms (contracts/alarm_sources.py): one alarm per
condition, cleared when it ends, severities from configuration; and a stateful check that
whatever sequence of statuses an asset goes through, at most one of its status alarms is
active at a time and every one raised is cleared once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.alarm_sources import StatusAlarms, alert_alarm, alert_alarms, status_severity
from contracts.events import Alert, BreachEvent
from contracts.fleet import Fleet
from contracts.monitoring import AlarmsConfig, parse_monitoring
from contracts.status import COMMS_LOSS, Status
from infra.sim.fleetgen import generate_fleet

FLEET = Fleet.model_validate(generate_fleet(1, units_per_site=2, inverters_per_unit=1,
                                            blocks_per_inverter=1))
UNIT = next(a.id for a in FLEET.assets.values() if a.kind == "unit")
INVERTER = next(a.id for a in FLEET.assets.values() if a.kind == "inverter")
SITE = FLEET.assets[UNIT].site_id
FAULT = Status("unavailable", None, "fault")
OK = Status("available")


def test_a_unit_trip_raises_one_alarm_cleared_when_it_runs_again() -> None:
    alarms = StatusAlarms(AlarmsConfig(), FLEET.assets)
    assert alarms.observe(UNIT, 1_000, OK) == []
    [raised] = alarms.observe(UNIT, 2_000, FAULT)
    assert (raised.kind, raised.state, raised.severity, raised.rule_id) == \
        ("status", "raised", "major", "status.unavailable")
    assert raised.breach_id == f"status.unavailable:major:{UNIT}:2000"
    assert raised.site_id == SITE and "fault" in raised.message and UNIT in raised.message
    assert alarms.observe(UNIT, 3_000, FAULT) == []  # the same condition: nothing new
    [cleared] = alarms.observe(UNIT, 4_000, OK)
    assert cleared.breach_id == raised.breach_id and cleared.state == "cleared"
    assert cleared.ts_ms == 4_000 and cleared.raised_ms == 2_000
    assert alarms.raised() == []


def test_a_new_cause_clears_the_old_alarm_and_raises_its_own() -> None:
    alarms = StatusAlarms(AlarmsConfig(), FLEET.assets)
    [fault] = alarms.observe(UNIT, 1_000, FAULT)
    cleared, silent = alarms.observe(UNIT, 5_000, COMMS_LOSS)
    assert cleared.breach_id == fault.breach_id and cleared.state == "cleared"
    assert silent.rule_id == "status.unknown" and "comms loss" in silent.message
    assert [e.breach_id for e in alarms.raised()] == [silent.breach_id]


def test_a_derate_is_one_condition_whatever_its_fraction() -> None:
    alarms = StatusAlarms(AlarmsConfig(), FLEET.assets)
    [raised] = alarms.observe(UNIT, 1_000, Status("derated", 0.6))
    assert raised.severity == "minor" and raised.value == 0.6 and "60 %" in raised.message
    assert alarms.observe(UNIT, 2_000, Status("derated", 0.5)) == []


def test_severities_by_level_and_cause_and_off() -> None:
    config = AlarmsConfig.model_validate({"status": {
        "unit": {"unavailable": "critical", "grid_outage": "off", "fault": "major"},
        "inverter": {"derated": "warning"}}})
    assert status_severity(config, "unit", "unavailable", "forced_outage") == "critical"
    assert status_severity(config, "unit", "unavailable", "fault") == "major"  # cause first
    assert status_severity(config, "unit", "unavailable", "grid_outage") is None
    assert status_severity(config, "inverter", "unavailable", None) is None  # not listed
    assert status_severity(config, "block", "derated", None) is None  # level not listed
    assert status_severity(config, "unit", "available", None) is None
    alarms = StatusAlarms(config, FLEET.assets)
    assert alarms.observe(UNIT, 1_000, Status("unavailable", None, "grid_outage")) == []
    [critical] = alarms.observe(UNIT, 2_000, Status("unavailable", None, "forced_outage"))
    assert critical.severity == "critical"
    assert alarms.observe(INVERTER, 1_000, FAULT) == []


def test_an_older_status_and_an_unknown_asset_change_nothing() -> None:
    alarms = StatusAlarms(AlarmsConfig(), FLEET.assets)
    alarms.observe(UNIT, 5_000, FAULT)
    assert alarms.observe(UNIT, 4_000, OK) == []
    assert alarms.observe("nowhere-u01", 1_000, FAULT) == []


def test_the_configuration_is_checked() -> None:
    with pytest.raises(ValidationError, match="status"):
        AlarmsConfig.model_validate({"status": {"unit": {"unavailable": "loud"}}})
    with pytest.raises(ValidationError):
        AlarmsConfig.model_validate({"status": {"rack": {"unavailable": "major"}}})
    with pytest.raises(ValidationError):
        AlarmsConfig.model_validate({"alerts": {"no_such_alert": "major"}})


def test_the_monitoring_file_holds_the_alarm_severities() -> None:
    config = parse_monitoring(
        "tags: {status_code: {min: 0, max: 9}}\n"
        "status: {code_tag: status_code, codes: {0: {state: available}}}\n"
        "alarms:\n  status:\n    unit: {unavailable: critical}\n"
        "  alerts: {ld_risk: critical, frozen_value: off}\n", "m.yaml")  # bare off: false
    assert config.alarms.status == {"unit": {"unavailable": "critical"}}
    assert config.alarms.alert_severity("ld_risk", "minor") == "critical"
    assert config.alarms.alert_severity("frozen_value", "minor") is None


def _alert(kind: str, state: str = "raised", site: str | None = SITE) -> Alert:
    return Alert.model_validate({
        "alert_id": f"{kind}:{UNIT}:1000", "kind": kind, "scope_id": UNIT, "site_id": site,
        "severity": "minor", "state": state, "raised_ms": 1_000,
        "ts_ms": 1_000 if state == "raised" else 9_000, "message": f"{kind} on {UNIT}",
        "details": {"gap_s": 12.5, "why": "x"}})


def test_alerts_become_alarms_raised_and_cleared_under_one_id() -> None:
    config = AlarmsConfig()
    raised = alert_alarm(config, _alert("telemetry_gap"))
    cleared = alert_alarm(config, _alert("telemetry_gap", "cleared"))
    assert isinstance(raised, BreachEvent) and isinstance(cleared, BreachEvent)
    assert raised.breach_id == cleared.breach_id == f"alert.telemetry_gap:minor:{UNIT}:1000"
    assert (raised.kind, raised.rule_id, raised.tag, raised.value) == \
        ("alert", "alert.telemetry_gap", "telemetry_gap", 12.5)
    assert cleared.state == "cleared" and cleared.ts_ms == 9_000
    # about bessmon itself, fleet-wide, or configured off: no alarm
    assert alert_alarm(config, _alert("store_outage")) is None
    assert alert_alarm(config, _alert("ld_risk", site=None)) is None
    off = AlarmsConfig.model_validate({"alerts": {"telemetry_gap": "off",
                                                  "control_action": "critical"}})
    assert alert_alarm(off, _alert("telemetry_gap")) is None
    control = alert_alarm(off, _alert("control_action"))
    assert control is not None and control.severity == "critical"
    assert len(alert_alarms(config, [_alert("ld_risk"), "not an alert",
                                     _alert("unwritable")])) == 1


STATUSES = st.sampled_from([OK, FAULT, COMMS_LOSS, Status("derated", 0.5),
                            Status("derated", 0.8, "environmental"),
                            Status("unavailable", None, "scheduled_maintenance"),
                            Status("unavailable", None, "grid_outage")])


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from([UNIT, INVERTER]), STATUSES), max_size=40))
def test_any_sequence_keeps_one_alarm_per_asset_and_clears_each_once(
        steps: list[tuple[str, Status]]) -> None:
    alarms = StatusAlarms(AlarmsConfig(), FLEET.assets)
    active: dict[str, str] = {}  # asset → breach id
    seen: set[str] = set()
    for i, (asset, status) in enumerate(steps):
        for e in alarms.observe(asset, 1_000 * (i + 1), status):
            if e.state == "raised":
                assert asset not in active, "two status alarms active for one asset"
                assert e.breach_id not in seen
                active[asset] = e.breach_id
                seen.add(e.breach_id)
            else:
                assert active.pop(asset) == e.breach_id
        # an alarm is active exactly when the asset is in a condition that raises one
        level = FLEET.assets[asset].kind
        wanted = status_severity(AlarmsConfig(), level, status.state, status.cause)
        assert (asset in active) == (wanted is not None)
    assert sorted(e.breach_id for e in alarms.raised()) == sorted(active.values())
