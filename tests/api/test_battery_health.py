"""The battery-health route (api/routes/battery_health.py) on the real app, a real Redis and
the embedded history store, filled with a year of the simulator's physics (infra/sim/model.py
with a fixed seed and set fade rates, stepped directly in simulated time every 5 minutes),
its first half archived to Parquet (the route reads both, as connectors/archive/historian.py
puts them together):
the fitted fade rates are the simulator's within the stated tolerance, the projection and
hint follow, the contract file's warranty threshold is used, the caller's scope bounds the
answer, and every invalid request is refused with the parameter named."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.archive import archive_root
from connectors.archive.writer import Archiver
from connectors.history import SqliteHistoryStore, TelemetryRow
from connectors.settings import EXAMPLE_CONTRACTS, Settings
from contracts.fleet import load_fleet
from infra.sim.model import AUTO, STOP, Fade, UnitModel
from tests.api.accounts import auth
from tests.api.errors import assert_refused

FLEET = load_fleet(Settings().fleet_file)
SITE = FLEET.site("nordvik")
UNIT = SITE.units[0]  # nordvik-u01: 5 MWh, 2.5 MW
FADE = Fade(calendar_per_year=0.02, cycle_per_efc=0.00008)  # 2 points a year, 8 per 1,000 EFC
SEED = 20
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 360
STEP_S = 300
FROM, TO = "2026-01-01T00:00:00Z", "2026-12-27T00:00:00Z"  # the 360 days
URL = "/api/v1/analytics/battery-health"
SPAN = f"from={FROM}&to={TO}"
WARRANTY_EOL_PCT = 80.0  # nordvik's contract, as the test writes it
# The tolerance, relative to the set rates: the fit itself is exact on the model's linear fade
# (tests/contracts/test_battery_health.py); what remains is the data's: SOH reported to
# 0.01 % (the register's resolution) and averaged over daily buckets, and the cycles counted
# from the grid-side power (minute by minute), where the model fades with the cells'
# throughput (1/η more discharging, η less charging: +0.2 % over balanced cycles, so the rate
# per cycle comes out 0.2 % low). Measured with this seed: −0.0005 % a year, −0.2 % per 1,000
# EFC. Allowed: 1 %, five times the known bias — tight enough that a wrong EFC definition
# (e.g. throughput / rated energy: a factor 2) or a lost regressor fails.
TOLERANCE = 0.01


def simulate() -> tuple[list[TelemetryRow], float]:
    """nordvik-u01 over DAYS, stepped every 5 minutes; idle every other month (a grid
    connection down for works) so that cycles do not grow in step with time — else calendar
    and cycle fade could not be told apart. The SOH in 5-minute rows; the power and the
    hottest cell (as the unit's BMS reports it: the hottest of its blocks') in minute rows,
    as the flows write them (the cycles and the exposure are counted minute by minute), each
    step's value held for its 5 minutes. Returns the rows and the cycles done (the model's
    own count, at the cells)."""
    model = UnitModel(UNIT, random.Random(SEED), tz=SITE.tz, fade=FADE)
    t0 = START.timestamp()
    blocks = [b.id for inv in UNIT.inverters for b in inv.blocks]
    rows: list[TelemetryRow] = []
    for i in range(1, DAYS * 86_400 // STEP_S + 1):
        now = t0 + i * STEP_S
        model.control_mode = STOP if (i * STEP_S // 86_400 // 30) % 2 else AUTO
        model.step(now, STEP_S)
        readings = model.readings(now)
        ms = round(now * 1000) - STEP_S * 1000  # the row of the step that just ended
        soh = round(readings[UNIT.id]["soh_pct"], 2)
        power = readings[UNIT.id]["active_power_kw"]
        hottest = max(readings[b]["cell_temp_max_c"] for b in blocks)
        rows.append(TelemetryRow(UNIT.id, SITE.id, "soh_pct", ms, 1, soh, soh, soh, soh))
        for minute in range(ms, ms + STEP_S * 1000, 60_000):
            rows += [TelemetryRow(UNIT.id, SITE.id, "active_power_kw", minute, 1, power,
                                  power, power, power),
                     TelemetryRow(UNIT.id, SITE.id, "cell_temp_max_c", minute, 1, hottest,
                                  hottest, hottest, hottest)]
    return rows, model.throughput_kwh / (2 * UNIT.rated_energy_kwh)


@pytest.fixture(scope="module")
def api(redis_url: str, accounts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient, Settings, float]]:
    users, key = accounts
    run_dir = tmp_path_factory.mktemp("battery-health")
    contracts = run_dir / "contracts"
    shutil.copytree(EXAMPLE_CONTRACTS, contracts)
    with (contracts / "nordvik.yaml").open("a", encoding="utf-8") as f:
        f.write(f"warranty:\n  end_of_life_soh_pct: {WARRANTY_EOL_PCT}\n")
    settings = Settings(REDIS_URL=redis_url, run_dir=run_dir, users_file=users,
                        jwt_key_file=key, contracts_dir=contracts)
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    rows, efc = simulate()
    history.write_telemetry(rows)
    half = int((START + dt.timedelta(days=DAYS // 2)).timestamp() * 1000)
    summary = Archiver(archive_root(settings), history, FLEET,
                       ["soh_pct", "active_power_kw", "cell_temp_max_c"],
                       lambda _site: None).run(half, [SITE.id], since=START.date())
    assert summary.written >= DAYS // 2 - 1
    with TestClient(create_app(settings)) as client:
        yield client, settings, efc
    history.close()


def unit_answer(client: TestClient, settings: Settings, query: str = "",
                user: str = "nordvik-manager") -> dict[str, Any]:
    answer = client.get(f"{URL}?{SPAN}&unit={UNIT.id}{query}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    units = answer.json()["units"]
    assert [u["unit_id"] for u in units] == [UNIT.id]
    unit: dict[str, Any] = units[0]
    return unit


def test_the_fitted_fade_rates_are_the_simulators(
        api: tuple[TestClient, Settings, float]) -> None:
    client, settings, efc = api
    unit = unit_answer(client, settings)
    fit = unit["fit"]
    assert fit["method"] == "time_and_cycles" and fit["note"] == "", unit
    per_year, per_1000 = fit["per_year"], fit["per_1000_efc"]
    assert per_year["value"] == pytest.approx(100 * FADE.calendar_per_year, rel=TOLERANCE)
    assert per_1000["value"] == pytest.approx(100_000 * FADE.cycle_per_efc, rel=TOLERANCE)
    # The bands hold the set rates and are narrow: no doubt about the answer.
    assert per_year["low"] <= 100 * FADE.calendar_per_year <= per_year["high"]
    assert per_1000["low"] <= 100_000 * FADE.cycle_per_efc <= per_1000["high"]
    assert per_year["high"] - per_year["low"] < 0.1 * per_year["value"]
    # The cycles: the grid-side count is the model's cell count within 1 %.
    assert unit["efc"] == pytest.approx(efc, rel=0.01)
    assert 80 < efc < 200  # half the year idle, about 0.7 cycles a day otherwise


def test_the_projection_and_the_hint_follow_from_the_fit(
        api: tuple[TestClient, Settings, float]) -> None:
    client, settings, _ = api
    unit = unit_answer(client, settings)
    fit, projection = unit["fit"], unit["projection"]
    assert unit["threshold_pct"] == WARRANTY_EOL_PCT and unit["threshold_source"] == "contract"
    assert projection["threshold_pct"] == WARRANTY_EOL_PCT and not projection["reached"]
    rate = fit["at_duty_per_year"]["value"]
    last = dt.datetime.fromtimestamp(fit["last_ms"] / 1000, dt.UTC)
    years = (fit["soh_now_pct"] - WARRANTY_EOL_PCT) / rate
    assert projection["date"] == (last + dt.timedelta(days=years * 365.25)).date().isoformat()
    assert projection["earliest"] <= projection["date"] <= projection["latest"]
    # The contract ends in 2045: long after the unit reaches 80 %, so augmentation is due.
    hint = unit["augmentation"]
    assert hint is not None and hint["by"] == projection["date"]
    assert hint["horizon"] == "2045-10-01"
    short = WARRANTY_EOL_PCT - (fit["soh_now_pct"] - rate * (
        dt.date(2045, 10, 1) - last.date()).days / 365.25)
    assert hint["add_mwh"] == pytest.approx(UNIT.rated_energy_kwh / 1000 * short / 100)


def test_the_soh_series_exposure_and_freshness(
        api: tuple[TestClient, Settings, float]) -> None:
    client, settings, _ = api
    unit = unit_answer(client, settings, "&points=100")
    soh = unit["soh"]
    assert 90 <= len(soh) <= 100
    assert soh[0]["avg"] > soh[-1]["avg"]  # it fades
    assert all(p["min"] - 1e-9 <= p["avg"] <= p["max"] + 1e-9 for p in soh)
    to_ms = int(dt.datetime.fromisoformat(TO).timestamp() * 1000)
    assert unit["data_to_ms"] == to_ms
    hours = DAYS * 24
    for bands in (unit["temperature_hours"], unit["c_rate_hours"]):
        assert sum(b["hours"] for b in bands) == pytest.approx(hours)
    c_rate = {b["label"]: b["hours"] for b in unit["c_rate_hours"]}
    assert c_rate["< 0.05 C"] > hours / 2  # idle every other month, and between dispatches
    assert c_rate["0.25–0.5 C"] > 300  # full dispatch: 0.9 × 2.5 MW on 5 MWh, 0.45 C …
    assert c_rate["0.5–1 C"] == c_rate["≥ 1 C"] == 0  # … and never more
    assert unit["vendor"] == UNIT.vendor and unit["rated_energy_mwh"] == 5.0


def test_units_without_data_say_why_and_use_the_default_threshold(
        api: tuple[TestClient, Settings, float]) -> None:
    client, settings, _ = api
    answer = client.get(f"{URL}?{SPAN}&site=elbe", headers=auth(settings, "admin"))
    assert answer.status_code == 200, answer.text
    units = answer.json()["units"]
    assert [u["unit_id"] for u in units] == [u.id for u in FLEET.site("elbe").units]
    for u in units:
        assert u["fit"] is None and u["projection"] is None and u["augmentation"] is None
        assert u["no_fit_reason"] == "0 SOH samples: a fit needs at least 4"
        assert (u["threshold_pct"], u["threshold_source"]) == (70.0, "default")
        assert u["soh"] == [] and u["data_to_ms"] is None


def test_the_callers_scope_bounds_the_answer(api: tuple[TestClient, Settings, float]) -> None:
    client, settings, _ = api
    mine = client.get(f"{URL}?{SPAN}", headers=auth(settings, "nordvik-manager")).json()
    assert {u["site_id"] for u in mine["units"]} == {"nordvik"}
    assert len(mine["units"]) == len(SITE.units)
    everyone = client.get(f"{URL}?{SPAN}", headers=auth(settings, "admin")).json()
    assert {u["site_id"] for u in everyone["units"]} == {s.id for s in FLEET.sites}
    de = client.get(f"{URL}?{SPAN}", headers=auth(settings, "de-engineer")).json()
    assert {u["site_id"] for u in de["units"]} == {"elbe"}
    for query, detail in (("&site=elbe", "no site 'elbe'"), ("&site=atlantis", "no site "
                                                                             "'atlantis'"),
                          ("&unit=elbe-u01", "no asset 'elbe-u01'"),
                          ("&unit=nowhere-u9", "no asset 'nowhere-u9'")):
        assert_refused(client.get(f"{URL}?{SPAN}{query}",
                                  headers=auth(settings, "nordvik-viewer")), 404, detail)
    assert client.get(f"{URL}?{SPAN}").status_code == 401


@pytest.mark.parametrize(("query", "named"), [
    (f"from={FROM}", "query.to"),
    (f"from=yesterday&to={TO}", "query.from"),
    (f"from=2026-01-01T00:00:00&to={TO}", "query.from"),
    (f"from={TO}&to={FROM}", "query.to"),
    ("from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "query.to"),  # > 400 days
    (f"{SPAN}&points=1", "query.points"),
    (f"{SPAN}&unit=", "query.unit"),
    (f"{SPAN}&unit=nordvik-u01-i1", "query.unit"),  # an inverter
    (f"{SPAN}&unit=nordvik-u01&site=elbe", "query.unit"),  # visible, but not that site's
])
def test_invalid_requests_are_refused_naming_the_parameter(
        api: tuple[TestClient, Settings, float], query: str, named: str) -> None:
    client, settings, _ = api
    assert_refused(client.get(f"{URL}?{query}", headers=auth(settings, "admin")), 422, named)
