"""Evidence that the control loop protects: faults that harm equipment whose own protections
are gone, injected into the simulated fleet, end with zero damage on the protected units and
with damage on their passive twins (observed only) — so the suite can fail.

Real parts throughout (infra/rig.py): the simulator's Modbus gateways and physics at 60×
speed, the Modbus connector (which executes commands and enforces the hard limits), the
flows (which raise the breaches), the control loop; the broker is paused for 25 s and the
control loop killed with SIGKILL and restarted while the faults go on. All scenarios run at
once on different units of one fleet (`protection_loss` takes away the unit controller's own
thermal derate, SOC limits and power clamp; the other conditions push it):

| scenario | protected | passive twin |
|---|---|---|
| overheat while runaway charging | nordvik-u01 | mesa-u01 |
| SOC runaway | nordvik-u02 | mesa-u02 |
| overload | nordvik-u03 | mesa-u03 |
| combined: heat leak, HVAC failure, overload | nordvik-u04 | mesa-u04 |
| comms lost while overheating | elbe-u01 | elbe-u05 |
| overheat + runaway across the control loop's SIGKILL | nordvik-u05 | — |
| unit trip, HVAC failure, DC block isolation, derate | nordvik-u06, elbe-u03, elbe-u04 | — |
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from connectors.redis_store import control_key
from connectors.settings import EXAMPLE_CONTROL
from contracts.control import UnitControlView
from infra.rig import Rig

pytestmark = pytest.mark.solo  # reaction times at 60× speed: nothing else on the machine

SPEED = 60.0
HOURS = 3 * 3600  # every fault outlasts the test (simulated seconds)
PROTECTED_AND_TWINS = {
    "overheat": (["nordvik-u01"], ["mesa-u01"], ["protection_loss", "heat_leak",
                                                 "soc_runaway"]),
    "soc_runaway": (["nordvik-u02"], ["mesa-u02"], ["protection_loss", "soc_runaway"]),
    "overload": (["nordvik-u03"], ["mesa-u03"], ["protection_loss", "overload"]),
    "combined": (["nordvik-u04"], ["mesa-u04"], ["protection_loss", "heat_leak",
                                                 "hvac_failure", "overload"]),
    "comms_loss": (["elbe-u01"], ["elbe-u05"], ["protection_loss", "heat_leak",
                                               "soc_runaway", "comms_drop"]),
    "control_killed": (["nordvik-u05"], [], ["protection_loss", "heat_leak", "overload"]),
}
HARMLESS = {"nordvik-u06": ["trip"], "elbe-u03": ["hvac_failure", "block_isolation"],
            "elbe-u04": ["derate"]}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    run_dir = tmp_path_factory.mktemp("protection")
    control = run_dir / "control.yaml"
    control.write_text(EXAMPLE_CONTROL.read_text() + "units:\n  elbe-u05: passive\n")
    r = Rig.start(run_dir, speed=SPEED, control_file=control)
    yield r
    r.stop()


def views(rig: Rig) -> dict[str, UnitControlView]:
    client = redis.Redis.from_url(rig.redis_service.address)
    try:
        out = {}
        for site in ("nordvik", "elbe", "mesa"):
            for raw in client.hvals(control_key(site)):
                v = UnitControlView.model_validate_json(raw)
                out[v.unit_id] = v
        return out
    finally:
        client.close()


def inject(rig: Rig, unit: str, kind: str) -> None:
    """`block_isolation`: a trip of the unit's first DC block."""
    target, kind = (f"{unit}-i1-b1", "trip") if kind == "block_isolation" else (unit, kind)
    rig.sim("POST", "/faults", {"asset_id": target, "kind": kind, "duration_s": HOURS})


def test_no_damage_where_protected_damage_where_only_observed(rig: Rig) -> None:
    protected = [u for p, _, _ in PROTECTED_AND_TWINS.values() for u in p]
    rig.wait("every protected unit reconciled and running", lambda: all(
        (v := views(rig).get(u)) is not None and v.state == "RUNNING" for u in protected), 60)
    for units, twins, kinds in PROTECTED_AND_TWINS.values():
        for unit in units + twins:
            for kind in kinds:
                if kind != "comms_drop":
                    inject(rig, unit, kind)
    for unit, kinds in HARMLESS.items():
        for kind in kinds:
            inject(rig, unit, kind)
    time.sleep(5)  # the comms drop once the loop has had a chance to act on the rest
    for unit in ("elbe-u01", "elbe-u05"):
        inject(rig, unit, "comms_drop")

    start = time.monotonic()
    def at(t: float) -> None:
        time.sleep(max(0.0, start + t - time.monotonic()))

    at(40)  # the loop and the connector act on the breaches and limits
    rig.pause_broker()  # nothing reaches the flows or the loop: the connector and the
    at(65)              # units' watchdogs hold the line
    rig.resume_broker()
    at(72)
    rig.kill("control", signal.SIGKILL)
    at(80)
    rig.restart("control")
    rig.wait("the control loop back", rig.control_alive, 60)
    at(115)

    damage = rig.sim("GET", "/damage")["units"]
    harmed = {u: d["seconds"] for u, d in damage.items()
              if any(s > 0 for s in d["seconds"].values())}
    for name, (units, twins, _) in PROTECTED_AND_TWINS.items():
        for unit in units:
            assert unit not in harmed, f"{name}: protected {unit} damaged: {harmed[unit]}"
        for twin in twins:
            assert twin in harmed, f"{name}: passive {twin} took no damage (the scenario " \
                                   "proves nothing)"
    for unit in HARMLESS:
        assert unit not in harmed
    v = views(rig)
    assert v["nordvik-u06"].state == "ERROR"  # a unit trip latches until reset by hand
    # How the protected units were kept safe, from the audit log (which outlives the loop's
    # restart): stops on critical breaches or hard limits, interlocks holding a direction at
    # 0, and every automatic action's result read back or reported failed.
    rows = sqlite3.connect(rig.settings.api_db_path).execute(
        "SELECT actor, action, target, outcome, details FROM audit").fetchall()
    said = [(actor, action, target, json.loads(details)) for actor, action, target, _, details
            in rows if target in protected]
    stops = [d["reason"] for _, action, _, d in said if action == "control.auto.stop"]
    how = sorted({(action, str(d.get("reason", d.get("outcome", "")))[:60]) for _, action, _, d
                  in said})
    assert any("critical breach" in r for r in stops) or any(
        "hard limit" in json.dumps(d) for _, action, _, d in said if action == "control.result"
    ), f"neither a stop on a critical breach nor a hard limit among {how}"
    assert any(action == "control.auto.limits" and "interlocks:" in d["reason"]
               for _, action, _, d in said)
    results = [d for _, action, _, d in said if action == "control.result"]
    assert results and all(d["outcome"] in ("written", "timeout", "mismatch", "failed",
                                            "refused") for d in results)


def test_the_passive_twins_were_left_alone(rig: Rig, tmp_path: Path) -> None:
    """Observed only: not one command went to a passive unit, whatever happened to it."""
    from connectors.kafka import read_topic
    from contracts.control import ControlCommand

    sent = [ControlCommand.model_validate_json(m.value() or b"") for m in read_topic(
        rig.settings.require_kafka(), rig.settings.topic_commands, idle_s=1, timeout_s=20)]
    assert sent, "no command at all: the loop did nothing"
    assert not [c for c in sent if c.unit_id.startswith("mesa") or c.unit_id == "elbe-u05"]
