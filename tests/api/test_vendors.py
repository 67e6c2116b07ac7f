"""Vendor benchmarking (api/routes/vendors.py) on the real app, a real Redis and the embedded
history store filled through its own write methods, one day of telemetry archived
(connectors/archive/): the figures on a small known data set computed by hand, the caller's
scope bounding the table, and every invalid request refused with the parameter named."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.archive import archive_root
from connectors.archive.writer import Archiver
from connectors.history import SqliteHistoryStore, StatusIntervalRow, TelemetryRow
from connectors.settings import Settings
from contracts.events import Cause, State, UnavailabilityEpisode
from contracts.fleet import load_fleet
from tests.api.accounts import auth
from tests.api.errors import assert_refused

FLEET = load_fleet(Settings().fleet_file)
TZ = FLEET.site("nordvik").tz
H = 3_600_000
MINUTE = 60_000
FROM_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SPAN = "from=2026-03-01T00:00:00Z&to=2026-03-11T00:00:00Z"  # 240 h
URL = "/api/v1/analytics/vendors"
D1, D3 = dt.date(2026, 3, 2), dt.date(2026, 3, 4)  # D1 archived, D3 in the history only
YEAR_H = 365.25 * 24


def local_ms(day: dt.date, hour: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour), TZ).timestamp() * 1000)


def status(asset_id: str, start_h: float, end_h: float, state: State,
           cause: Cause | None = None, fraction: float | None = None) -> StatusIntervalRow:
    return StatusIntervalRow(asset_id, FLEET.assets[asset_id].site_id,
                             FROM_MS + round(start_h * H), FROM_MS + round(end_h * H), state,
                             fraction, cause)


def episode(asset_id: str, start_h: float, end_h: float, state: State, cause: Cause
            ) -> UnavailabilityEpisode:
    return UnavailabilityEpisode(
        episode_id=f"{asset_id}:{start_h}", asset_id=asset_id,
        site_id=FLEET.assets[asset_id].site_id, start_ms=FROM_MS + round(start_h * H),
        end_ms=FROM_MS + round(end_h * H), state=state, cause=cause,
        lost_hours=end_h - start_h, lost_mwh=0.0)


def minutes(asset_id: str, tag: str, start_ms: int, values: list[float]) -> list[TelemetryRow]:
    return [TelemetryRow(asset_id, FLEET.assets[asset_id].site_id, tag, start_ms + i * MINUTE,
                         60, v, v, v, v) for i, v in enumerate(values)]


# nordvik: u01-u04 Voltara VX-3, u05-u06 Brightmoor BM-Cube 2 (2.5 MW, 5 MWh each);
# their inverters Ampyra AP-2500 (1.25 MW). elbe: Voltara VX-3 and Nordcell NC-5000.
STATUS = [
    status("nordvik-u01", 0, 24, "available"),
    status("nordvik-u01", 24, 36, "unavailable", "fault"),
    status("nordvik-u01", 36, 240, "available"),
    status("nordvik-u01-i1", 0, 50, "available"),
    status("nordvik-u01-i1", 50, 55, "unavailable", "fault"),  # half of u01 for 5 h
    status("nordvik-u01-i1", 55, 240, "available"),
    status("nordvik-u02", 0, 100, "available"),
    status("nordvik-u02", 100, 124, "unavailable", "grid_outage"),  # excluded
    status("nordvik-u02", 124, 240, "available"),
    status("nordvik-u05", 0, 48, "derated", "fault", 0.5),
    status("nordvik-u05", 48, 240, "available"),
    status("elbe-u01", 0, 240, "unavailable", "fault"),
]
EPISODES = [
    episode("nordvik-u01", 24, 36, "unavailable", "fault"),
    episode("nordvik-u01-i1", 50, 55, "unavailable", "fault"),
    episode("nordvik-u02", 100, 124, "unavailable", "grid_outage"),
    episode("nordvik-u05", 0, 48, "derated", "fault"),
    episode("elbe-u01", 0, 240, "unavailable", "fault"),
]
TELEMETRY = [
    *minutes("nordvik-u01", "active_power_kw", local_ms(D1, 10), [-1000.0] * 60),  # archived
    *minutes("nordvik-u01", "active_power_kw", local_ms(D3, 10), [900.0] * 60),  # history
    *minutes("nordvik-u01", "soh_pct", local_ms(D1, 10), [95.0]),
    *minutes("nordvik-u01", "soh_pct", local_ms(D3, 10), [94.9]),
]


@pytest.fixture(scope="module")
def api(redis_url: str, accounts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient, Settings]]:
    users, key = accounts
    settings = Settings(REDIS_URL=redis_url, run_dir=tmp_path_factory.mktemp("vendors"),
                        users_file=users, jwt_key_file=key)
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    history.write_status(STATUS)
    history.write_episodes(EPISODES)
    history.write_telemetry(TELEMETRY)
    Archiver(archive_root(settings), history, FLEET, ["active_power_kw", "soh_pct"],
             lambda _site: None).run(local_ms(D1 + dt.timedelta(days=1), 12), ["nordvik"],
                                     since=D1)
    assert (archive_root(settings) / "telemetry" / "site=nordvik" / f"day={D1}").is_dir()
    assert not (archive_root(settings) / "telemetry" / "site=nordvik" / f"day={D3}").exists()
    with TestClient(create_app(settings)) as client:
        yield client, settings
    history.close()


def get(api: tuple[TestClient, Settings], query: str = "", user: str = "admin"
        ) -> dict[str, Any]:
    client, settings = api
    answer = client.get(f"{URL}?{SPAN}&{query}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(r["key"]): r for r in rows}


def test_the_battery_vendors_figures_by_hand(api: tuple[TestClient, Settings]) -> None:
    body = get(api, "site=nordvik")
    assert (body["from_ms"], body["to_ms"], body["level"]) == (FROM_MS, FROM_MS + 240 * H,
                                                                "unit")
    vendors = by_key(body["vendors"])
    assert sorted(vendors) == [("Brightmoor",), ("Voltara",)]
    voltara = vendors[("Voltara",)]
    assert (voltara["assets"], voltara["installed_mw"], voltara["installed_mwh"]) == \
        (4, 10.0, 20.0)
    # u01 lost 12 h + half of 5 h of 240; u02 lost none of 216 (24 h excluded: grid);
    # u03, u04 have no status: no data, not counted. Equal weights (2.5 MW).
    assert voltara["availability_pct"] == pytest.approx(100 * (1 - 14.5 / 456))
    assert voltara["lost_mwh"] == pytest.approx(2.5 * 14.5)
    assert voltara["lost_mwh_per_mwh"] == pytest.approx(2.5 * 14.5 / 20)
    # two failures (the grid outage is one: reliability does not judge blame), 10 MW × 240 h
    assert voltara["reliability"]["failures"] == 2
    assert voltara["reliability"]["mttr_hours"] == pytest.approx((12 + 24) / 2)
    assert voltara["failures_per_mw_year"] == pytest.approx(2 / (10 * 240 / YEAR_H))
    # an hour charging at 1 MW (archived day), an hour discharging at 0.9 MW (history)
    assert (voltara["charge_mwh"], voltara["discharge_mwh"]) == \
        (pytest.approx(1.0), pytest.approx(0.9))
    assert voltara["efficiency_pct"] == pytest.approx(90.0)
    assert voltara["cycles"] == pytest.approx(0.9 / 20)
    # SOH 95.0 → 94.9 over two days (daily means, UTC days)
    assert voltara["fade_pct_per_year"] == pytest.approx(0.1 * 365.25 / 2)
    assert voltara["assets_with_fade"] == 1

    brightmoor = vendors[("Brightmoor",)]
    assert brightmoor["availability_pct"] == pytest.approx(100 * (1 - 0.5 * 48 / 240))
    assert brightmoor["lost_mwh"] == pytest.approx(2.5 * 24)
    assert brightmoor["reliability"]["failures"] == 0
    assert brightmoor["reliability"]["derated"] == 1
    assert (brightmoor["efficiency_pct"], brightmoor["fade_pct_per_year"]) == (None, None)

    vx3 = ["Voltara", "VX-3"]  # nordvik's only Voltara product: the same figures
    assert by_key(body["models"])[tuple(vx3)] == {
        **voltara, "key": vx3, "reliability": {**voltara["reliability"], "key": vx3}}
    total = body["total"]
    assert (total["key"], total["assets"], total["installed_mw"]) == ([], 6, 15.0)
    assert total["availability_pct"] == pytest.approx(100 * (1 - (14.5 + 24) / 696))


def test_the_sources_say_how_fresh_their_data_is(api: tuple[TestClient, Settings]) -> None:
    sources = get(api, "site=nordvik")["sources"]
    assert [s["latest_ms"] for s in sources] == [
        FROM_MS + 240 * H, FROM_MS + 124 * H, local_ms(D3, 10) + 59 * MINUTE,
        local_ms(D3, 10) // 86_400_000 * 86_400_000]
    assert all(s["name"] and s["feeds"] for s in sources)


def test_the_inverter_vendors(api: tuple[TestClient, Settings]) -> None:
    body = get(api, "site=nordvik&level=inverter")
    assert body["level"] == "inverter"
    (ampyra,) = body["vendors"]
    assert (ampyra["key"], ampyra["assets"], ampyra["installed_mw"],
            ampyra["installed_mwh"]) == (["Ampyra"], 12, 15.0, 30.0)
    # only u01-i1 has status: 5 h lost of 240 (its unit's rows are not its own)
    assert ampyra["availability_pct"] == pytest.approx(100 * (1 - 5 / 240))
    assert ampyra["reliability"]["failures"] == 1
    assert (ampyra["efficiency_pct"], ampyra["cycles"], ampyra["fade_pct_per_year"]) == \
        (None, None, None)
    assert len(body["sources"]) == 2


@pytest.mark.parametrize(("user", "vendors", "assets"), [
    ("nordvik-manager", [["Brightmoor"], ["Voltara"]], 6),
    ("de-engineer", [["Nordcell"], ["Voltara"]], 5),
    ("nordvik-in-de", [], 0),
    ("viewer", [["Brightmoor"], ["Nordcell"], ["Voltara"]], 15)])
def test_a_caller_sees_the_vendors_of_their_sites_only(
        api: tuple[TestClient, Settings], user: str, vendors: list[list[str]],
        assets: int) -> None:
    body = get(api, "", user)
    assert [v["key"] for v in body["vendors"]] == vendors
    assert body["total"]["assets"] == assets
    if user == "de-engineer":  # elbe-u01 down all window, nordvik's downtime not seen
        voltara = by_key(body["vendors"])[("Voltara",)]
        assert voltara["availability_pct"] == 0.0
        assert voltara["reliability"]["failures"] == 1


@pytest.mark.parametrize(("user", "query", "status", "detail"), [
    ("nordvik-manager", "site=elbe", 404, "no site 'elbe'"),
    ("nordvik-manager", "site=atlantis", 404, "no site 'atlantis'"),
    ("de-engineer", "site=nordvik", 404, "no site 'nordvik'"),
])
def test_the_callers_scope_bounds_the_site(api: tuple[TestClient, Settings], user: str,
                                           query: str, status: int, detail: str) -> None:
    client, settings = api
    answer = client.get(f"{URL}?{SPAN}&{query}", headers=auth(settings, user))
    assert (answer.status_code, answer.json()["detail"]) == (status, detail)


@pytest.mark.parametrize(("query", "status", "named"), [
    ("to=2026-03-11T00:00:00Z", 422, "query.from"),
    ("from=2026-03-01T00:00:00Z", 422, "query.to"),
    ("from=yesterday&to=2026-03-11T00:00:00Z", 422, "query.from"),
    ("from=2026-03-01T00:00:00&to=2026-03-11T00:00:00Z", 422, "query.from"),
    ("from=2026-03-11T00:00:00Z&to=2026-03-01T00:00:00Z", 422, "query.to"),
    ("from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", 422, "query.to"),
    (f"{SPAN}&level=block", 422, "query.level"),
    (f"{SPAN}&site=", 422, "query.site"),
])
def test_every_invalid_request_is_refused_naming_what_is_wrong(
        api: tuple[TestClient, Settings], query: str, status: int, named: str) -> None:
    client, settings = api
    assert_refused(client.get(f"{URL}?{query}", headers=auth(settings)), status, named)


def test_a_window_of_400_days_is_answered_and_no_credential_is_not(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    longest = "from=2025-02-01T00:00:00Z&to=2026-03-08T00:00:00Z"
    assert client.get(f"{URL}?{longest}", headers=auth(settings)).status_code == 200
    assert client.get(f"{URL}?{SPAN}").status_code == 401
