"""Pinning a tag over the simulator's HTTP control and `bessmon sim set/release`: what tests
and demos use to make a DC block run hot, through the registers the connector reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from infra.cli import main
from infra.ports import free_port
from infra.sim.server import Simulator, control_app
from tests.infra.test_sim_fault_wiring import PROFILES, SITE, served

TOKEN = "t0ken-t0ken-t0ken"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
BLOCK = "nordvik-u01-i1-b3"


def test_a_pinned_tag_is_served_until_released() -> None:
    sim = Simulator(SITE, PROFILES, seed=1)
    with TestClient(control_app(sim, TOKEN)) as client:
        physics = served(sim, BLOCK)["cell_temp_max_c"]
        answer = client.post("/values", headers=HEADERS,
                             json={"asset_id": BLOCK, "tag": "cell_temp_max_c", "value": 50})
        assert answer.status_code == 201
        assert served(sim, BLOCK)["cell_temp_max_c"] == pytest.approx(50.0)
        assert served(sim, "nordvik-u01-i1-b4")["cell_temp_max_c"] != pytest.approx(50.0)
        assert client.get("/values", headers=HEADERS).json() == {
            BLOCK: {"cell_temp_max_c": 50.0}}

        released = client.delete(f"/values/{BLOCK}/cell_temp_max_c", headers=HEADERS)
        assert released.json() == {"asset_id": BLOCK, "tag": "cell_temp_max_c",
                                   "released": True}
        assert served(sim, BLOCK)["cell_temp_max_c"] == pytest.approx(physics, abs=1.0)
        assert client.get("/values", headers=HEADERS).json() == {}
        again = client.delete(f"/values/{BLOCK}/cell_temp_max_c", headers=HEADERS)
        assert again.json()["released"] is False


@pytest.mark.parametrize(("body", "status", "detail"), [
    ({"asset_id": "nowhere-u9", "tag": "soc_pct", "value": 5}, 404,
     "unknown asset id 'nowhere-u9'"),
    ({"asset_id": "nordvik", "tag": "soc_pct", "value": 5}, 422,
     "nordvik is a site: pin the tags of its units, inverters or DC blocks"),
    ({"asset_id": BLOCK, "tag": "temperature_c", "value": 5}, 422,
     f"{BLOCK} has no tag 'temperature_c'; it has available_energy_kwh, cell_temp_max_c, "
     "soc_pct, status_code"),
])
def test_unknown_assets_and_tags_are_refused(body: dict[str, object], status: int,
                                            detail: str) -> None:
    sim = Simulator(SITE, PROFILES, seed=1)
    with TestClient(control_app(sim, TOKEN)) as client:
        answer = client.post("/values", headers=HEADERS, json=body)
        assert (answer.status_code, answer.json()["detail"]) == (status, detail)
        assert client.delete(f"/values/{body['asset_id']}/{body['tag']}",
                             headers=HEADERS).status_code == status
    assert sim.pinned_values() == {}


def test_values_need_the_bearer_token() -> None:
    sim = Simulator(SITE, PROFILES, seed=1)
    with TestClient(control_app(sim, TOKEN)) as client:
        body = {"asset_id": BLOCK, "tag": "cell_temp_max_c", "value": 50}
        assert client.post("/values", json=body).status_code == 401
        assert client.post("/values", json=body,
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.delete(f"/values/{BLOCK}/cell_temp_max_c").status_code == 401
    assert sim.pinned_values() == {}


@pytest.fixture
def control_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Simulator, str]]:
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
    yield sim, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.timeout(30)
def test_the_cli_sets_and_releases_a_value(control_url: tuple[Simulator, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    sim, _ = control_url
    assert main(["sim", "set", BLOCK, "cell_temp_max_c", "50"]) == 0
    assert sim.pinned_values() == {BLOCK: {"cell_temp_max_c": 50.0}}
    assert f"{BLOCK} cell_temp_max_c pinned to 50.0" in capsys.readouterr().out
    assert main(["sim", "set", BLOCK, "no_such_tag", "1"]) == 2
    assert f"{BLOCK} has no tag 'no_such_tag'" in capsys.readouterr().err
    assert main(["sim", "release", BLOCK, "cell_temp_max_c"]) == 0
    assert capsys.readouterr().out.strip() == f"{BLOCK} cell_temp_max_c: released"
    assert sim.pinned_values() == {}
