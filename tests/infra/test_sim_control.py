"""What a control loop acts on in the simulator, and the proof that it protects the equipment:
the new registers (load, charge and discharge limits, heartbeat), the conditions that put
equipment at risk (protection loss, heat leak, overload, SOC runaway), the damage the models
count while they last — none at all while the controller's own protections work — and the
watchdog that stops a unit whose control loop went quiet, over real Modbus writes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.modbus.poller import DeviceMap, ModbusConnector
from connectors.settings import EXAMPLE_FLEET
from contracts.events import TagValue
from contracts.fleet import load_fleet
from infra.cli import main
from infra.ports import free_port
from infra.sim.model import (
    AUTO,
    COOL_SETPOINT_C,
    DAMAGE_CELL_TEMP_C,
    EFFICIENCY,
    FAULT,
    FOLLOW_SETPOINT,
    HARD_SOC,
    HEAT_LEAK_SHARE,
    HVAC_FAILURE_DERATE,
    LOSS_HEAT_SHARE,
    OVERLOAD_FACTOR,
    PROTECTION_LOST_BIT,
    STOP,
    WATCHDOG_BIT,
    Climate,
    Fault,
    Limit,
    UnitModel,
)
from infra.sim.server import Simulator, control_app
from tests.connectors.modbus_sim import device, gateway
from tests.infra.test_sim_fault_wiring import PROFILES, SITE, START, Clock, served

FLEET = load_fleet(EXAMPLE_FLEET)
MESA = FLEET.site("mesa")
UNIT = MESA.units[0]  # 2,500 kW, 5,000 kWh
RATED = UNIT.rated_power_kw
T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp()
MINUTE = 60.0
TOKEN = "t0ken-t0ken-t0ken"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
NEW_KINDS = ("protection_loss", "heat_leak", "overload", "soc_runaway")


def model(climate: Climate | None = None, /, **fields: object) -> UnitModel:
    """A settled unit (health and temperature set at T0) with `fields` set."""
    m = UnitModel(UNIT, random.Random(1), tz=MESA.tz, climate=climate or Climate())
    m.step(T0, 0.0)
    for name, value in fields.items():
        setattr(m, name, value)
    return m


def run(m: UnitModel, minutes: int, start_s: float = T0, step_s: float = MINUTE) -> float:
    """Step `m` for `minutes`; the time it ends at."""
    t = start_s
    for _ in range(round(minutes * MINUTE / step_s)):
        t += step_s
        m.step(t, step_s)
    return t


# -- the register map --------------------------------------------------------------------


def test_bess_unit_v1_serves_the_control_loops_points() -> None:
    points = {p.tag: p for p in PROFILES["bess-unit-v1"].points["unit"]}
    writable = {tag: (p.offset, p.datatype) for tag, p in points.items() if p.writable}
    assert writable == {"control_mode": (10, "uint16"),
                        "active_power_setpoint_kw": (11, "int32"),
                        "active_power_limit_kw": (13, "uint32"),
                        "charge_limit_kw": (15, "uint32"),
                        "discharge_limit_kw": (17, "uint32"),
                        "heartbeat": (19, "uint16")}
    assert (points["load_pct"].offset, points["load_pct"].datatype,
            points["load_pct"].scale, points["load_pct"].writable) == (8, "uint16", 0.1, False)
    assert (points["heartbeat"].min, points["heartbeat"].max) == (0, 65535)
    assert points["charge_limit_kw"].min == points["discharge_limit_kw"].min == 0
    assert points["alarm_word"].bits == {"e_stop": 0, "fire_alarm": 1, "hvac_fault": 2,
                                         "watchdog": 3, "protection_lost": 4}
    assert WATCHDOG_BIT == 1 << 3 and PROTECTION_LOST_BIT == 1 << 4


def test_controls_report_the_new_setpoints_and_clamp_what_is_written() -> None:
    m = model()
    assert m.controls() == {"control_mode": AUTO, "active_power_setpoint_kw": 0.0,
                            "active_power_limit_kw": RATED, "charge_limit_kw": RATED,
                            "discharge_limit_kw": RATED, "heartbeat": 0}
    assert m.apply_control("charge_limit_kw", 9_999.0) == RATED
    assert m.apply_control("charge_limit_kw", -5.0) == 0.0
    assert m.apply_control("discharge_limit_kw", 700.0) == 700.0
    assert m.apply_control("heartbeat", 65_535) == 65_535
    assert m.apply_control("heartbeat", 70_000) == 65_535
    assert m.controls()["charge_limit_kw"] == 0.0
    assert m.controls()["discharge_limit_kw"] == 700.0
    with pytest.raises(KeyError):
        m.apply_control("load_pct", 5.0)


@pytest.mark.parametrize("protection_loss", [False, True])
def test_charge_and_discharge_limits_hold_in_every_mode(protection_loss: bool) -> None:
    m = model(soc=0.5, control_mode=FOLLOW_SETPOINT, setpoint_kw=2000.0)
    if protection_loss:
        m.start_condition("protection_loss", T0 + 86_400)
    m.apply_control("discharge_limit_kw", 800.0)
    m.apply_control("charge_limit_kw", 300.0)
    t = run(m, 1)
    assert m.power_kw == 800.0
    assert m.readings(t)[UNIT.id]["load_pct"] == pytest.approx(800.0 / RATED * 100)
    m.setpoint_kw = -2000.0
    t = run(m, 1, t)
    assert m.power_kw == -300.0
    # AUTO: an overload pushes towards charging (SOC below 50 % when it starts).
    m.control_mode = AUTO
    m.soc = 0.3
    m.start_condition("overload", T0 + 86_400)
    run(m, 1, t)
    assert m.power_kw == -300.0


# -- the conditions ------------------------------------------------------------------------


def test_protection_loss_drops_the_thermal_derate_and_raises_its_alarm() -> None:
    hot = dict(control_mode=FOLLOW_SETPOINT, setpoint_kw=RATED, soc=0.8, temperature_c=52.0)
    protected, unprotected = model(**hot), model(**hot)
    unprotected.start_condition("protection_loss", T0 + 3600)
    protected.step(T0 + 1, 1.0)
    unprotected.step(T0 + 1, 1.0)
    assert protected.power_kw == pytest.approx(RATED * 0.3)  # derating: 52 °C of 45…55
    assert unprotected.power_kw == RATED
    readings = unprotected.readings(T0 + 1)[UNIT.id]
    assert readings["alarm_word"] == PROTECTION_LOST_BIT
    assert readings["available_power_kw"] == RATED
    assert protected.readings(T0 + 1)[UNIT.id]["alarm_word"] == 0
    # Its commands are still obeyed: STOP, and a written power limit.
    unprotected.control_mode = STOP
    unprotected.step(T0 + 2, 1.0)
    assert unprotected.power_kw == 0.0
    unprotected.control_mode = FOLLOW_SETPOINT
    unprotected.apply_control("active_power_limit_kw", 1000.0)
    unprotected.step(T0 + 3, 1.0)
    assert unprotected.power_kw == 1000.0
    # And when it ends, the protections are back.
    unprotected.step(T0 + 3601, 1.0)
    assert unprotected.readings(T0 + 3601)[UNIT.id]["alarm_word"] == 0


def test_protection_loss_lifts_the_hvac_failure_derate_too() -> None:
    m = model(control_mode=FOLLOW_SETPOINT, setpoint_kw=RATED, soc=0.8)
    m.limits["hvac_failure"] = Limit(HVAC_FAILURE_DERATE, T0 + 3600)
    m.step(T0 + 1, 1.0)
    assert m.power_kw == RATED * HVAC_FAILURE_DERATE
    m.start_condition("protection_loss", T0 + 3600)
    m.step(T0 + 2, 1.0)
    assert m.power_kw == RATED


def test_a_heat_leak_adds_its_share_of_the_power_to_the_heat() -> None:
    def warming(leak: bool) -> float:
        m = model(control_mode=FOLLOW_SETPOINT, setpoint_kw=2000.0, soc=0.8,
                  temperature_c=COOL_SETPOINT_C - 5)  # the HVAC idle
        if leak:
            m.start_condition("heat_leak", T0 + 3600)
        m.step(T0 + 60, 60.0)
        assert m.temperature_c is not None
        return m.temperature_c

    mass = 6.0 * UNIT.rated_energy_kwh
    extra = warming(True) - warming(False)
    assert extra == pytest.approx(60 * HEAT_LEAK_SHARE * 2000.0 / mass, rel=1e-9)
    assert HEAT_LEAK_SHARE * 2000.0 > 5 * LOSS_HEAT_SHARE * 2000.0 * (1 / EFFICIENCY - 1)


@pytest.mark.parametrize(("soc", "direction"), [(0.3, -1), (0.7, 1)])
def test_an_overload_is_clamped_to_rated_unless_protections_are_lost(
        soc: float, direction: int) -> None:
    protected, unprotected = model(soc=soc), model(soc=soc)
    for m in (protected, unprotected):
        m.start_condition("overload", T0 + 3600)
    unprotected.start_condition("protection_loss", T0 + 3600)
    t = run(protected, 2)
    run(unprotected, 2)
    assert protected.power_kw == direction * RATED
    assert unprotected.power_kw == pytest.approx(direction * OVERLOAD_FACTOR * RATED)
    assert unprotected.readings(t)[UNIT.id]["load_pct"] == pytest.approx(130.0)
    assert protected.damage == {}
    assert unprotected.damage == {"overcurrent": 120.0}
    assert unprotected.damage_events == {"overcurrent": 1}


@pytest.mark.parametrize(("soc", "end", "kind"), [(0.6, 1.0, "overcharge"),
                                                  (0.4, 0.0, "overdischarge")])
def test_a_soc_runaway_stops_at_the_hard_limit_unless_protections_are_lost(
        soc: float, end: float, kind: str) -> None:
    protected, unprotected = model(soc=soc), model(soc=soc)
    for m in (protected, unprotected):
        m.start_condition("soc_runaway", T0 + 86_400)
    unprotected.start_condition("protection_loss", T0 + 86_400)
    run(protected, 3 * 60)  # 0.9 × 2.5 MW from 0.6 (or 0.4) is at an end within 1 h
    run(unprotected, 3 * 60)
    hard = HARD_SOC[1] if end else HARD_SOC[0]
    assert protected.soc == pytest.approx(hard, abs=1e-9)  # beyond AUTO_SOC, cut at HARD_SOC
    assert protected.power_kw == pytest.approx(0.0, abs=1e-6) and protected.damage == {}
    assert unprotected.soc == end
    assert abs(unprotected.power_kw) == pytest.approx(0.9 * RATED)  # still asking for power
    assert unprotected.damage_events == {kind: 1}
    assert 60 * 60 < unprotected.damage[kind] < 2.5 * 60 * 60


def test_a_runaway_with_an_overload_drives_the_runaways_way_at_the_overloads_power() -> None:
    m = model(soc=0.6)
    m.start_condition("overload", T0 + 3600)  # alone: discharging (SOC above 50 %)
    m.start_condition("soc_runaway", T0 + 3600)  # towards the nearer end: charging
    run(m, 1)
    assert m.power_kw == -RATED  # clamped: the protections work


def test_conditions_steer_only_the_ems() -> None:
    m = model(soc=0.6, control_mode=FOLLOW_SETPOINT, setpoint_kw=500.0)
    m.start_condition("soc_runaway", T0 + 3600)
    m.start_condition("overload", T0 + 3600)
    run(m, 1)
    assert m.power_kw == 500.0
    with pytest.raises(KeyError):
        m.start_condition("gremlins", T0 + 3600)


# -- damage -------------------------------------------------------------------------------


def test_a_hot_unit_counts_cell_overtemperature_only_without_its_protections() -> None:
    """Full power through a leaking joint in a hot climate, the HVAC down: the protected unit
    derates to a halt below the damage threshold; the unprotected one cooks its cells."""
    hot = Climate(mean_c=35.0, swing_c=5.0)
    setup = dict(control_mode=FOLLOW_SETPOINT, setpoint_kw=RATED, soc=0.95)
    units = {lost: model(hot, **setup) for lost in (False, True)}
    for lost, m in units.items():
        m.start_condition("heat_leak", T0 + 86_400)
        if lost:
            m.start_condition("protection_loss", T0 + 86_400)
    t = T0
    for _ in range(90):
        t += MINUTE
        for m in units.values():
            m.step(t, MINUTE)
    assert units[False].cell_temp_max_c() < DAMAGE_CELL_TEMP_C
    assert units[False].damage == {}
    unprotected = units[True]
    assert unprotected.cell_temp_max_c() > DAMAGE_CELL_TEMP_C
    assert unprotected.damage["cell_overtemp"] >= 10 * MINUTE
    assert unprotected.damage_events["cell_overtemp"] == 1
    # Stopping it does not help at once: the enclosure holds its heat.
    unprotected.control_mode = STOP
    t += MINUTE
    unprotected.step(t, MINUTE)
    assert unprotected.damage_events["cell_overtemp"] == 1


def test_every_entry_into_damage_is_an_event() -> None:
    m = model(soc=0.5, control_mode=FOLLOW_SETPOINT, setpoint_kw=RATED)
    m.start_condition("protection_loss", T0 + 86_400)
    m.start_condition("overload", T0 + 86_400)  # (the setpoint rules: not overcurrent)
    m.soc = 0.001
    t = run(m, 3)
    assert m.soc == 0.0 and m.damage == {"overdischarge": 180.0}
    m.control_mode = STOP
    t = run(m, 1, t)
    m.control_mode = FOLLOW_SETPOINT
    m.step(t + 1, 0.0)  # no time: no damage
    t = run(m, 2, t)
    assert m.damage == {"overdischarge": 300.0}
    assert m.damage_events == {"overdischarge": 2}


ACTIONS = st.one_of(
    st.tuples(st.just("control_mode"), st.sampled_from([0, 1, 2, 7])),
    st.tuples(st.just("active_power_setpoint_kw"), st.floats(-4000, 4000)),
    st.tuples(st.sampled_from(["active_power_limit_kw", "charge_limit_kw",
                               "discharge_limit_kw"]), st.floats(0, 4000)),
    st.tuples(st.just("fault"), st.sampled_from(["heat_leak", "overload", "soc_runaway",
                                                 "hvac_failure", "derate", "trip"])),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(st.tuples(st.integers(0, 24 * 60 - 1), ACTIONS), max_size=25),
       mean_c=st.floats(5.0, 40.0), soc=st.floats(0.05, 0.95), seed=st.integers(0, 99))
def test_a_protected_unit_never_counts_damage(
        schedule: list[tuple[int, tuple[str, object]]], mean_c: float, soc: float,
        seed: int) -> None:
    """Whatever the control loop writes and whatever goes wrong — but the protections — a
    simulated day of a unit counts no damage."""
    m = UnitModel(UNIT, random.Random(seed), tz=MESA.tz,
                  climate=Climate(mean_c=mean_c, swing_c=7.0))
    m.soc = soc
    todo: dict[int, list[tuple[str, object]]] = {}
    for minute, action in schedule:
        todo.setdefault(minute, []).append(action)
    t = T0
    m.step(t, 0.0)
    for minute in range(24 * 60):
        for tag, value in todo.get(minute, ()):
            if tag != "fault":
                assert isinstance(value, int | float)
                m.apply_control(tag, value)
            elif value in ("heat_leak", "overload", "soc_runaway"):
                m.start_condition(str(value), t + 4 * 3600)
            elif value == "trip":
                m.faults[UNIT.id] = Fault(FAULT, t + 1800)
            else:
                m.limits[str(value)] = Limit(0.3, t + 6 * 3600)
        t += MINUTE
        m.step(t, MINUTE)
        assert 0.0 < m.soc < 1.0
    assert m.damage == {} and m.damage_events == {}


# -- the simulator: injection, registers, GET /damage ------------------------------------------


def test_every_new_kind_is_injected_over_http_served_and_cleared() -> None:
    clock = Clock(START)
    sim = Simulator(SITE, PROFILES, seed=2, clock=clock)
    unit = SITE.sites[0].units[2]
    with TestClient(control_app(sim, TOKEN)) as client:
        for kind in NEW_KINDS:
            answer = client.post("/faults", headers=HEADERS, json={
                "asset_id": unit.id, "duration_s": 600, "kind": kind})
            assert answer.status_code == 201, answer.json()
        model = sim.models[unit.id]
        assert set(model.conditions) == set(NEW_KINDS)  # each in its own slot: they stack
        assert {f.kind for f in sim.active.values()} == set(NEW_KINDS)
        assert served(sim, unit.id)["alarm_word"] == PROTECTION_LOST_BIT
        clock.t += 60
        sim.tick()
        tags = served(sim, unit.id)
        # A runaway with an overload, unprotected: 130 % of rated towards the nearer end.
        assert tags["load_pct"] == pytest.approx(OVERLOAD_FACTOR * 100)
        assert abs(float(str(tags["active_power_kw"]))) == pytest.approx(
            OVERLOAD_FACTOR * unit.rated_power_kw)
        assert sim.damage()["units"] == {unit.id: {"seconds": {"overcurrent": 60.0},
                                                   "events": {"overcurrent": 1}}}
        answer = client.post("/faults", headers=HEADERS, json={
            "asset_id": unit.inverters[0].id, "kind": "heat_leak"})
        assert answer.status_code == 422
        assert client.delete(f"/faults/{unit.id}", headers=HEADERS).json()["cleared"]
        assert model.conditions == {} and sim.active == {}
        assert served(sim, unit.id)["alarm_word"] == 0


def test_conditions_on_a_site_reach_each_of_its_units() -> None:
    sim = Simulator(SITE, PROFILES, seed=2, clock=Clock(START))
    sim.inject_fault("nordvik", 600, kind="protection_loss")
    assert all(not m.protected(sim.now()) for m in sim.models.values())
    assert sim.clear_fault("nordvik")
    assert all(m.protected(sim.now()) for m in sim.models.values())


def test_get_damage_needs_the_token_and_sums_the_units() -> None:
    clock = Clock(START)
    sim = Simulator(SITE, PROFILES, seed=2, clock=clock)
    unit = SITE.sites[0].units[0]
    with TestClient(control_app(sim, TOKEN)) as client:
        assert client.get("/damage").status_code == 401
        assert client.get("/damage", headers={"Authorization": "Bearer no"}).status_code == 401
        empty = client.get("/damage", headers=HEADERS).json()
        assert empty == {"units": {}, "total": {
            "seconds": {"cell_overtemp": 0.0, "overcharge": 0.0, "overdischarge": 0.0,
                        "overcurrent": 0.0},
            "events": {"cell_overtemp": 0, "overcharge": 0, "overdischarge": 0,
                       "overcurrent": 0}}}
        model = sim.models[unit.id]
        model.apply_control("control_mode", FOLLOW_SETPOINT)
        model.apply_control("active_power_setpoint_kw", RATED)
        model.soc = 0.0001
        sim.inject_fault(unit.id, 3600, kind="protection_loss")
        clock.t += 30
        sim.tick()
        body = client.get("/damage", headers=HEADERS).json()
        assert body["units"] == {unit.id: {"seconds": {"overdischarge": 30.0},
                                           "events": {"overdischarge": 1}}}
        assert body["total"]["seconds"]["overdischarge"] == 30.0
        assert body["total"]["events"]["overdischarge"] == 1


# -- the watchdog, over real Modbus writes -------------------------------------------------


def test_the_watchdog_stops_a_unit_whose_heartbeat_stopped_and_waits_for_its_mode(
        caplog: pytest.LogCaptureFixture) -> None:
    """The simulator's wall clock is a fake one: the watchdog runs on it, not on simulation
    time (×60 here: 10 wall seconds are 10 simulated minutes)."""
    clock = Clock(START)
    sim = Simulator(SITE, PROFILES, seed=4, clock=clock, speed=60.0, watchdog_s=10.0)
    site = SITE.sites[0]
    unit = site.units[1]
    model = sim.models[unit.id]

    async def scenario() -> None:
        async with gateway(sim, site.units) as port:
            m = DeviceMap.build(device(unit, port, 2), SITE, PROFILES)
            connector = ModbusConnector([m], publish=lambda s: None)
            try:
                await body(connector, m)
            finally:
                connector.close()

    async def read(connector: ModbusConnector, m: DeviceMap) -> dict[str, TagValue]:
        registers = await connector.gateway(m.device).read(
            m.device.unit_id, m.group().blocks, timeout_s=1)
        return dict(m.decode(m.group(), registers, 0).assets[0].tags)

    async def body(connector: ModbusConnector, m: DeviceMap) -> None:
        write = connector.write_setpoint
        await write(unit.id, "control_mode", FOLLOW_SETPOINT)
        await write(unit.id, "active_power_setpoint_kw", 1000.0)
        await write(unit.id, "discharge_limit_kw", 600.0)
        clock.t += 1
        sim.tick()  # without a heartbeat ever written the watchdog is not armed
        tags = await read(connector, m)
        assert (tags["active_power_kw"], tags["discharge_limit_kw"]) == (600.0, 600.0)
        assert tags["load_pct"] == pytest.approx(24.0)
        clock.t += 60
        sim.tick()
        assert not model.watchdog_tripped
        result = await write(unit.id, "heartbeat", 1)  # armed
        assert (result.address, result.read_back) == (19, 1.0)
        clock.t += 9.5
        sim.tick()
        await write(unit.id, "heartbeat", 1)  # the same value proves nothing
        clock.t += 0.5
        sim.tick()
        tags = await read(connector, m)
        assert tags["control_mode"] == STOP and tags["active_power_kw"] == 0.0
        assert tags["alarm_word"] == WATCHDOG_BIT
        clock.t += 30
        sim.tick()
        # Heartbeats again: the alarm clears, the unit stays stopped …
        await write(unit.id, "heartbeat", 2)
        clock.t += 1
        sim.tick()
        tags = await read(connector, m)
        assert (tags["control_mode"], tags["alarm_word"], tags["active_power_kw"]) == (
            STOP, 0, 0.0)
        # … until the control loop writes its mode again.
        await write(unit.id, "control_mode", FOLLOW_SETPOINT)
        await write(unit.id, "heartbeat", 3)
        clock.t += 1
        sim.tick()
        tags = await read(connector, m)
        assert (tags["control_mode"], tags["active_power_kw"]) == (FOLLOW_SETPOINT, 600.0)

    with caplog.at_level(logging.WARNING, logger="infra.sim.server"):
        asyncio.run(scenario())
    trips = [r for r in caplog.records if "watchdog tripped" in r.getMessage()]
    assert len(trips) == 1 and unit.id in trips[0].getMessage()


def test_the_watchdog_is_checked_in_every_tick_on_armed_units_only() -> None:
    clock = Clock(START)
    sim = Simulator(SITE, PROFILES, seed=4, clock=clock, watchdog_s=2.0)
    a, b = (u.id for u in SITE.sites[0].units[:2])
    sim.heartbeat(a, 7)
    clock.t += 1.9
    sim.tick()
    assert not sim.models[a].watchdog_tripped
    sim.heartbeat(a, 8)
    clock.t += 1.9
    sim.tick()
    assert not sim.models[a].watchdog_tripped
    clock.t += 0.1
    sim.tick()
    assert sim.models[a].watchdog_tripped and sim.models[a].control_mode == STOP
    assert not sim.models[b].watchdog_tripped and sim.models[b].control_mode == AUTO
    assert set(sim.heartbeats) == {a}
    with pytest.raises(ValueError, match="watchdog_s"):
        Simulator(SITE, PROFILES, watchdog_s=0)


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def control_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    sim = Simulator(SITE, PROFILES, seed=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(control_app(sim, TOKEN), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the control server did not start"
        time.sleep(0.02)
    monkeypatch.setenv("BESSMON_SIM_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("BESSMON_SIM_TOKEN", TOKEN)
    yield sim
    server.should_exit = True
    thread.join(10)


@pytest.mark.timeout(30)
def test_the_cli_injects_the_new_kinds_and_prints_the_damage(
        control_url: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    sim = control_url
    unit = SITE.sites[0].units[0].id
    for kind in NEW_KINDS:
        assert main(["sim", "fault", unit, "--kind", kind, "--for", "10m"]) == 0
        assert capsys.readouterr().out.strip() == (
            f"{kind.replace('_', ' ')} on {unit} for 600s")
    assert set(sim.models[unit].conditions) == set(NEW_KINDS)
    assert main(["sim", "damage"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == sim.damage()
    assert set(printed) == {"units", "total"}


def test_the_cli_refuses_unknown_kinds_and_a_bad_watchdog(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sim", "fault", "nordvik-u01", "--kind", "gremlins"])
    assert exited.value.code == 2
    assert "invalid choice: 'gremlins'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["sim", "--watchdog-s", "0"])
    assert exited.value.code == 2
    assert "must be a number > 0, got '0'" in capsys.readouterr().err
