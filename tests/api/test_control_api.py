"""The control surface of the API on a real broker and Redis: who may command (engineers and
admins; everyone else 403, audited), whose units (another customer's are 404, audited),
that every command says why (422 otherwise), that a command reaches `bess.commands` as a
valid `ControlCommand` keyed by its unit — one per unit for a site or fleet stop — and is in
the audit log, that a command the broker does not take is 503 (never a 202 for a stop that
was not sent), and that the views are what the control loop wrote to Redis, or BOOT for a
unit it has not reported."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.context import ApiContext
from api.main import create_app
from connectors.audit import AuditEntry, AuditLog
from connectors.kafka import read_topic
from connectors.redis_store import CONTROL_ALIVE_KEY, control_key
from connectors.settings import Settings
from contracts.control import CommandSummary, ControlCommand, UnitControlView, load_control
from contracts.fleet import Fleet
from tests.api.accounts import auth

NORDVIK_UNITS = ["nordvik-u01", "nordvik-u02"]


@pytest.fixture
def settings_k(api_settings: Settings, kafka_bootstrap: str) -> Settings:
    """The test's API on the real broker, with command topics of the test's own."""
    suffix = uuid.uuid4().hex[:8]
    return api_settings.model_copy(update={
        "kafka_bootstrap_servers": kafka_bootstrap,
        "topic_commands": f"t-{suffix}.commands",
        "topic_command_results": f"t-{suffix}.command.results"})


@pytest.fixture
def client(settings_k: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings_k)) as c:
        yield c


def audit(client: TestClient) -> list[AuditEntry]:
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    return [e for e in AuditLog(ctx.store).entries(limit=10_000)
            if e.action.startswith("control.")]


def commands(settings: Settings, count: int | None = None) -> list[tuple[str, ControlCommand]]:
    """(key, command) of everything on the test's command topic."""
    out = []
    for m in read_topic(settings.require_kafka(), settings.topic_commands, count=count,
                        timeout_s=15, to_end=count is None):
        key, value = m.key(), m.value()
        assert key is not None and value is not None
        out.append((key.decode(), ControlCommand.model_validate_json(value)))
    return out


def post(client: TestClient, settings: Settings, path: str, user: str = "engineer",
         **body: Any) -> Any:
    return client.post(f"/api/v1/control/{path}", headers=auth(settings, user), json=body)


def units_of(fleet: Fleet, site_id: str) -> list[str]:
    return [u.id for u in fleet.site(site_id).units]


# -- permissions and scope ---------------------------------------------------------------------

@pytest.mark.parametrize("user", ["viewer", "service_manager", "contract_manager"])
def test_roles_without_control_command_are_refused_and_audited(
        client: TestClient, settings_k: Settings, user: str) -> None:
    for path in ("units/nordvik-u01/estop", "sites/nordvik/estop", "fleet/estop",
                 "units/nordvik-u01/reset"):
        response = post(client, settings_k, path, user, reason="trying")
        assert response.status_code == 403, response.text
        assert response.json()["detail"] == f"role {user} may not control.command"
    entries = audit(client)
    assert [(e.actor, e.action, e.target, e.outcome) for e in entries] == [
        (user, "control.estop", "nordvik-u01", "refused"),
        (user, "control.estop", "nordvik", "refused"),
        (user, "control.estop", "fleet", "refused"),
        (user, "control.reset", "nordvik-u01", "refused")]
    assert entries[0].details == {"why": f"role {user} may not control.command",
                                  "reason": "trying"}
    assert commands(settings_k) == []  # nothing sent (the topic may not even exist)


@pytest.mark.parametrize("user", ["engineer", "admin"])
def test_engineers_and_admins_stop_a_unit(client: TestClient, settings_k: Settings,
                                          user: str) -> None:
    before = int(time.time() * 1000)
    response = post(client, settings_k, "units/nordvik-u01/estop", user,
                    reason="smoke from the container")
    assert response.status_code == 202, response.text
    answer = response.json()
    [command_id] = answer["command_ids"]
    assert answer["unit_ids"] == ["nordvik-u01"]
    [(key, command)] = commands(settings_k, 1)
    assert key == "nordvik-u01"
    assert command.command_id == command_id and len(command_id) == 32
    assert (command.kind, command.unit_id, command.actor, command.reason, command.mode) == (
        "estop", "nordvik-u01", user, "smoke from the container", None)
    assert before <= command.ts_ms <= int(time.time() * 1000)
    [entry] = audit(client)
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        user, "control.estop", "nordvik-u01", "ok")
    assert entry.details == {"reason": "smoke from the container", "command_id": command_id}


def test_another_customers_unit_or_site_does_not_exist(client: TestClient,
                                                       settings_k: Settings) -> None:
    """de-engineer sees elbe only: nordvik's unit answers as an unknown one, and neither is
    sent; both attempts are audited."""
    for path, missing in (("units/nordvik-u01/estop", "unit 'nordvik-u01'"),
                          ("units/no-such-unit/estop", "unit 'no-such-unit'"),
                          ("units/elbe-u01-i1/estop", "unit 'elbe-u01-i1'"),  # an inverter
                          ("sites/nordvik/estop", "site 'nordvik'")):
        response = post(client, settings_k, path, "de-engineer", reason="r")
        assert response.json() == {"detail": f"no {missing}", "status": 404}
    for path in ("units/nordvik-u01", "sites/nordvik"):
        response = client.get(f"/api/v1/control/{path}", headers=auth(settings_k,
                                                                       "de-engineer"))
        assert response.status_code == 404
    assert [e.outcome for e in audit(client)] == ["refused"] * 4
    assert commands(settings_k) == []


def test_a_fleet_stop_reaches_only_the_callers_units(client: TestClient, settings_k: Settings,
                                                     example_fleet: Fleet) -> None:
    response = post(client, settings_k, "fleet/estop", "de-engineer", reason="grid event")
    assert response.status_code == 202, response.text
    elbe = units_of(example_fleet, "elbe")
    assert response.json()["unit_ids"] == elbe
    sent = commands(settings_k, len(elbe))
    assert sorted(k for k, _ in sent) == sorted(elbe)
    # … and nothing else (sorted: the units' partitions are read in no set order)
    assert sorted(commands(settings_k), key=lambda kc: kc[0]) == sorted(sent,
                                                                        key=lambda kc: kc[0])
    # A caller who sees no site has no unit to stop.
    response = post(client, settings_k, "fleet/estop", "nordvik-in-de", reason="x")
    assert response.status_code == 403  # a viewer: refused before the scope is looked at


def test_a_site_stop_is_one_command_per_unit(client: TestClient, settings_k: Settings,
                                             example_fleet: Fleet) -> None:
    response = post(client, settings_k, "sites/nordvik/estop", reason="fire alarm at site")
    assert response.status_code == 202, response.text
    units = units_of(example_fleet, "nordvik")
    answer = response.json()
    assert answer["unit_ids"] == units and len(set(answer["command_ids"])) == len(units)
    sent = commands(settings_k, len(units))
    assert {k: c.unit_id for k, c in sent} == {u: u for u in units}
    assert {c.command_id for _, c in sent} == set(answer["command_ids"])
    assert {(c.kind, c.reason) for _, c in sent} == {("estop", "fire alarm at site")}
    entries = audit(client)
    assert sorted(e.target or "" for e in entries) == sorted(units)
    assert {e.details["command_id"] for e in entries} == set(answer["command_ids"])


@pytest.mark.parametrize("kind", ["stop", "start", "reset"])
def test_unit_commands(client: TestClient, settings_k: Settings, kind: str) -> None:
    response = post(client, settings_k, f"units/nordvik-u02/{kind}", reason=f"{kind} it")
    assert response.status_code == 202, response.text
    [(key, command)] = commands(settings_k, 1)
    assert (key, command.kind, command.reason) == ("nordvik-u02", kind, f"{kind} it")
    [entry] = audit(client)
    assert entry.action == f"control.{kind}"


def test_a_mode_command_names_a_mode(client: TestClient, settings_k: Settings) -> None:
    response = post(client, settings_k, "units/nordvik-u02/mode", mode="derated",
                    reason="cooling is weak")
    assert response.status_code == 202, response.text
    [(_, command)] = commands(settings_k, 1)
    assert (command.kind, command.mode) == ("mode", "derated")
    assert audit(client)[0].details["mode"] == "derated"
    for bad in ({"mode": "turbo", "reason": "x"}, {"reason": "no mode"}):
        response = client.post("/api/v1/control/units/nordvik-u02/mode",
                               headers=auth(settings_k, "engineer"), json=bad)
        assert response.status_code == 422, response.text


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501},
                                  {"reason": 5}, {"reason": None}])
def test_a_command_says_why(client: TestClient, settings_k: Settings,
                            body: dict[str, Any]) -> None:
    response = client.post("/api/v1/control/units/nordvik-u01/estop",
                           headers=auth(settings_k, "engineer"), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"].startswith("body")
    assert audit(client) == []


def test_a_reason_of_500_characters_is_enough(client: TestClient, settings_k: Settings) -> None:
    response = post(client, settings_k, "units/nordvik-u01/estop", reason="x" * 500)
    assert response.status_code == 202, response.text


def test_a_command_the_broker_does_not_take_is_503_and_audited(
        api_settings: Settings) -> None:
    """A broker that is not there: no 202, a clear message, and the attempt audited as
    failed (the operator must know the stop was not sent)."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = api_settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port}"})
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = post(client, settings, "units/nordvik-u01/estop", reason="smoke")
        assert time.monotonic() - started < 30
        assert response.status_code == 503, response.text
        assert response.json()["detail"].startswith("the command was not sent: ")
        [entry] = audit(client)
        assert (entry.action, entry.target, entry.outcome) == ("control.estop", "nordvik-u01",
                                                               "failed")
        assert entry.details["reason"] == "smoke" and "error" in entry.details


def test_without_kafka_a_command_is_503(api_settings: Settings) -> None:
    with TestClient(create_app(api_settings)) as client:
        response = post(client, api_settings, "units/nordvik-u01/stop", reason="r")
        assert response.json() == {
            "detail": "the command was not sent: KAFKA_BOOTSTRAP_SERVERS is not set (bessmon "
                      "up sets it for you). Nothing reached the equipment — send it again, or "
                      "stop the unit at the site", "status": 503}
        assert [e.outcome for e in audit(client)] == ["failed"]


# -- the views -----------------------------------------------------------------------------------

def write_view(r: redis.Redis, view: UnitControlView) -> None:
    r.hset(control_key(view.site_id), view.unit_id, view.model_dump_json())


def test_views_are_what_the_control_loop_wrote(client: TestClient, settings_k: Settings,
                                               redis_client: redis.Redis,
                                               example_fleet: Fleet) -> None:
    now = int(time.time() * 1000)
    summary = CommandSummary(command_id="c1", kind="estop", actor="engineer", reason="smoke",
                             ts_ms=now - 2_000, outcome="written", by="connector",
                             read_back={"active_power_setpoint_kw": 0.0})
    view = UnitControlView(unit_id="nordvik-u01", site_id="nordvik", state="STOPPED",
                           mode="normal", device="idle", fresh=True, derate=0.5,
                           last_command=summary, commands=(summary,), updated_ms=now)
    write_view(redis_client, view)
    redis_client.set(CONTROL_ALIVE_KEY, str(now))
    headers = auth(settings_k, "viewer")  # reading needs `read` only

    answer = client.get("/api/v1/control/units/nordvik-u01", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"control_loop_alive": True, "control_loop_beat_ms": now,
                             "unit": view.model_dump(mode="json")}

    site = client.get("/api/v1/control/sites/nordvik", headers=headers).json()
    assert site["site_id"] == "nordvik" and site["control_loop_alive"] is True
    assert [u["unit_id"] for u in site["units"]] == units_of(example_fleet, "nordvik")
    assert site["units"][0] == view.model_dump(mode="json")
    # A unit the loop has not reported: booting, in the configured mode, no commands.
    mode = load_control(settings_k.control_file).mode_of("nordvik-u02", "nordvik")
    assert site["units"][1] == UnitControlView(unit_id="nordvik-u02", site_id="nordvik",
                                               state="BOOT", mode=mode).model_dump(mode="json")


def test_a_silent_control_loop_is_shown_offline(client: TestClient, settings_k: Settings,
                                                redis_client: redis.Redis) -> None:
    headers = auth(settings_k, "viewer")
    never = client.get("/api/v1/control/sites/mesa", headers=headers).json()
    assert (never["control_loop_alive"], never["control_loop_beat_ms"]) == (False, None)
    assert {u["state"] for u in never["units"]} == {"BOOT"}
    assert {u["mode"] for u in never["units"]} == {"passive"}  # infra/sim/control.yaml
    old = int(time.time() * 1000) - 11_000
    redis_client.set(CONTROL_ALIVE_KEY, str(old))
    unit = client.get("/api/v1/control/units/mesa-u01", headers=headers).json()
    assert (unit["control_loop_alive"], unit["control_loop_beat_ms"]) == (False, old)


def test_an_undecodable_view_is_shown_as_not_reported(client: TestClient, settings_k: Settings,
                                                      redis_client: redis.Redis) -> None:
    redis_client.hset(control_key("elbe"), "elbe-u01", b'{"unit_id": "elbe-u01", "v": 99}')
    answer = client.get("/api/v1/control/units/elbe-u01", headers=auth(settings_k, "viewer"))
    assert answer.status_code == 200
    assert answer.json()["unit"]["state"] == "BOOT"
