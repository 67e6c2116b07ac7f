"""The faults-and-trips route (api/routes/faults.py) on the real app, a real Redis and the
embedded history store filled through its own write methods: the timeline is the stored
episodes of the window, the reliability table is contracts/reliability.py's on the same
episodes (and a few of its figures are checked by hand), every filter narrows both, the
caller's scope bounds them, and every invalid request is refused with the parameter named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.history import SqliteHistoryStore
from connectors.settings import Settings
from contracts.events import Cause, State, TicketRef, UnavailabilityEpisode
from contracts.fleet import load_fleet
from contracts.reliability import (
    UNKNOWN,
    Episode,
    GroupBy,
    Reliability,
    fleet_population,
    reliability,
)
from tests.api.accounts import auth
from tests.api.errors import assert_refused

FLEET = load_fleet(Settings().fleet_file)
H = 3_600_000
FROM_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
TO_MS = FROM_MS + 240 * H  # ten days
SPAN = "from=2026-03-01T00:00:00Z&to=2026-03-11T00:00:00Z"
URL = "/api/v1/analytics/faults"
TICKET = TicketRef(provider="jira", ticket_id="OPS-1", status="resolved",
                   summary="u01 tripped on an insulation fault", url="https://jira.example/OPS-1")


def episode(asset_id: str, start_h: float, end_h: float | None, state: State,
            cause: Cause | None, *tickets: TicketRef) -> UnavailabilityEpisode:
    start = FROM_MS + round(start_h * H)
    end = None if end_h is None else FROM_MS + round(end_h * H)
    hours = ((end_h if end_h is not None else 240) - start_h)
    return UnavailabilityEpisode(
        episode_id=f"{asset_id}:{start}", asset_id=asset_id,
        site_id=FLEET.assets[asset_id].site_id, start_ms=start, end_ms=end, state=state,
        cause=cause, lost_hours=hours, lost_mwh=hours * 5.0, tickets=tickets)


INSIDE = [  # every episode overlapping the window (hours from its start)
    episode("nordvik-u01", 5, 9, "unavailable", "fault", TICKET),
    episode("nordvik-u01", 100, 103, "unavailable", "fault"),
    episode("nordvik-u05", -10, 4, "unavailable", "forced_outage"),  # began before
    episode("nordvik-u02-i1", 50, 51, "unavailable", "grid_outage"),
    episode("nordvik-u02-i1-b3", 60, 80, "derated", "fault"),
    episode("nordvik-u03", 70, 72, "unknown", "comms_loss"),
    episode("nordvik-u06", 230, None, "unavailable", None),  # open, no cause yet
    episode("elbe-u01", 20, 30, "unavailable", "fault"),
    episode("elbe-u02-i2", 200, 260, "unavailable", "fault"),  # lasts past `to`
    episode("mesa-u01", 10, 12, "unavailable", "fault"),
]
OUTSIDE = [
    episode("nordvik-u04", -50, -40, "unavailable", "fault"),
    episode("nordvik-u04", 240, 242, "unavailable", "scheduled_maintenance"),
]


@pytest.fixture(scope="module")
def api(redis_url: str, accounts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient, Settings]]:
    users, key = accounts
    settings = Settings(REDIS_URL=redis_url, run_dir=tmp_path_factory.mktemp("faults"),
                        users_file=users, jwt_key_file=key)
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    history.write_episodes([*INSIDE, *OUTSIDE])
    with TestClient(create_app(settings)) as client:
        yield client, settings
    history.close()


def get(api: tuple[TestClient, Settings], query: str, user: str = "admin") -> dict[str, Any]:
    client, settings = api
    answer = client.get(f"{URL}?{SPAN}&{query}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def as_json(r: Reliability) -> dict[str, Any]:
    return {"key": list(r.key), "assets": r.assets, "asset_hours": r.asset_hours,
            "operating_hours": r.operating_hours, "failures": r.failures,
            "downtime_hours": r.downtime_hours, "repairs": r.repairs,
            "repair_hours": r.repair_hours, "mttr_hours": r.mttr_hours,
            "mtbf_hours": r.mtbf_hours, "open": r.open, "derated": r.derated,
            "derated_hours": r.derated_hours, "comms_hours": r.comms_hours}


def expected(sites: list[str], group_by: GroupBy = "cause", cause: str | None = None,
             vendor: str | None = None, level: str | None = None) -> dict[str, Any]:
    """contracts/reliability.py on the same episodes and population."""
    population = [a for a in fleet_population(FLEET, sites)
                  if (vendor is None or (a.vendor or UNKNOWN) == vendor)
                  and (level is None or a.level == level)]
    ids = {a.asset_id for a in population}
    table = reliability([Episode(e.asset_id, e.start_ms, e.end_ms, e.state, e.cause)
                         for e in [*INSIDE, *OUTSIDE] if e.asset_id in ids],
                        population, FROM_MS, TO_MS, group_by, only_cause=cause)
    return {"groups": [as_json(g) for g in table.groups], "total": as_json(table.total)}


def timeline(body: dict[str, Any]) -> list[str]:
    return [e["episode_id"] for e in body["episodes"]]


def newest_first(episodes: list[UnavailabilityEpisode]) -> list[str]:
    return [e.episode_id for e in sorted(episodes, key=lambda e: (-e.start_ms, e.asset_id))]


ALL_SITES = ["nordvik", "elbe", "mesa"]


def test_the_timeline_is_the_windows_episodes_and_the_table_the_pure_functions(
        api: tuple[TestClient, Settings]) -> None:
    body = get(api, "")
    assert (body["from_ms"], body["to_ms"], body["group_by"]) == (FROM_MS, TO_MS, "cause")
    assert timeline(body) == newest_first(INSIDE) and body["episodes_total"] == len(INSIDE)
    assert {k: body[k] for k in ("groups", "total")} == expected(ALL_SITES)
    # By hand: failures are the unavailable episodes starting in the window — nordvik-u01
    # twice, nordvik-u02-i1, nordvik-u06, elbe-u01, elbe-u02-i2, mesa-u01; repairs those
    # ending in it: u01's 4 h and 3 h, u05's 14 h (begun before), i1's 1 h, elbe-u01's 10 h,
    # mesa-u01's 2 h → MTTR 34 / 6 h.
    total = body["total"]
    assert (total["failures"], total["repairs"], total["open"]) == (7, 6, 2)
    assert total["mttr_hours"] == pytest.approx(34 / 6)
    assert (total["derated"], total["derated_hours"], total["comms_hours"]) == (1, 20.0, 2.0)
    # Most failures first (fault 5; the open one without a cause 1, 10 h down; grid_outage
    # 1, 1 h down), then most downtime (forced_outage 4 h in the window, comms_loss none).
    assert [g["key"] for g in body["groups"]] == [
        ["fault"], ["unknown"], ["grid_outage"], ["forced_outage"], ["comms_loss"]]


def test_an_episode_carries_its_asset_its_vendor_and_its_tickets(
        api: tuple[TestClient, Settings]) -> None:
    by_id = {e["episode_id"]: e for e in get(api, "")["episodes"]}
    u01 = by_id[INSIDE[0].episode_id]
    unit = FLEET.unit("nordvik-u01")
    assert u01 == {
        "episode_id": INSIDE[0].episode_id, "asset_id": "nordvik-u01", "level": "unit",
        "site_id": "nordvik", "vendor": unit.vendor, "model": unit.model, "cause": "fault",
        "state": "unavailable", "start_ms": FROM_MS + 5 * H, "end_ms": FROM_MS + 9 * H,
        "duration_hours": 4.0, "lost_hours": 4.0, "lost_mwh": 20.0,
        "tickets": [TICKET.model_dump()]}
    assert unit.vendor is not None  # the example fleet names them
    block = by_id[INSIDE[4].episode_id]  # a DC block: its unit's vendor
    assert (block["level"], block["vendor"], block["model"]) == (
        "block", FLEET.unit("nordvik-u02").vendor, FLEET.unit("nordvik-u02").model)
    inverter = by_id[INSIDE[3].episode_id]
    assert inverter["vendor"] == FLEET.unit("nordvik-u02").inverters[0].vendor
    open_one = by_id[INSIDE[6].episode_id]
    assert (open_one["end_ms"], open_one["duration_hours"], open_one["cause"]) == (
        None, None, None)


@pytest.mark.parametrize("group_by", ["cause", "vendor", "model", "level", "site"])
def test_every_grouping_is_the_pure_functions(api: tuple[TestClient, Settings],
                                              group_by: GroupBy) -> None:
    body = get(api, f"group_by={group_by}")
    assert body["group_by"] == group_by
    assert {k: body[k] for k in ("groups", "total")} == expected(ALL_SITES, group_by)


def test_filters_narrow_the_timeline_and_the_table(api: tuple[TestClient, Settings]) -> None:
    elbe = get(api, "site=elbe&group_by=level")
    assert timeline(elbe) == newest_first([e for e in INSIDE if e.site_id == "elbe"])
    assert {k: elbe[k] for k in ("groups", "total")} == expected(["elbe"], "level")

    inverters = get(api, "level=inverter&group_by=site")
    assert timeline(inverters) == newest_first(
        [e for e in INSIDE if FLEET.assets[e.asset_id].kind == "inverter"])
    assert {k: inverters[k] for k in ("groups", "total")} == \
        expected(ALL_SITES, "site", level="inverter")

    fault = get(api, "cause=fault&group_by=vendor")
    assert timeline(fault) == newest_first([e for e in INSIDE if e.cause == "fault"])
    assert {k: fault[k] for k in ("groups", "total")} == \
        expected(ALL_SITES, "vendor", cause="fault")
    no_cause = get(api, "cause=unknown")
    assert timeline(no_cause) == [INSIDE[6].episode_id]

    # nordvik-u05 is one of nordvik's extension units, of its own product.
    vendor = FLEET.unit("nordvik-u05").vendor
    assert vendor is not None
    of_vendor = get(api, f"vendor={vendor}&site=nordvik&group_by=model")
    assert INSIDE[2].episode_id in timeline(of_vendor)
    assert all(e["vendor"] == vendor for e in of_vendor["episodes"])
    assert {k: of_vendor[k] for k in ("groups", "total")} == \
        expected(["nordvik"], "model", vendor=vendor)

    newest = get(api, "limit=2")
    assert timeline(newest) == newest_first(INSIDE)[:2]
    assert newest["episodes_total"] == len(INSIDE)
    assert newest["total"] == get(api, "")["total"]


@pytest.mark.parametrize(("user", "sites"), [
    ("nordvik-manager", ["nordvik"]), ("de-engineer", ["elbe"]), ("nordvik-in-de", []),
    ("viewer", ALL_SITES)])
def test_a_caller_sees_the_episodes_and_hours_of_their_sites_only(
        api: tuple[TestClient, Settings], user: str, sites: list[str]) -> None:
    body = get(api, "group_by=site", user)
    assert timeline(body) == newest_first([e for e in INSIDE if e.site_id in sites])
    assert {k: body[k] for k in ("groups", "total")} == expected(sites, "site")
    assert sorted(g["key"][0] for g in body["groups"]) == sorted(sites)


@pytest.mark.parametrize(("user", "query", "status", "detail"), [
    # Another customer's site is answered as one that does not exist.
    ("nordvik-manager", "site=elbe", 404, "no site 'elbe'"),
    ("nordvik-manager", "site=atlantis", 404, "no site 'atlantis'"),
    ("de-engineer", "site=nordvik", 404, "no site 'nordvik'"),
    ("nordvik-in-de", "site=nordvik", 404, "no site 'nordvik'"),
])
def test_the_callers_scope_bounds_the_site(api: tuple[TestClient, Settings], user: str,
                                           query: str, status: int, detail: str) -> None:
    client, settings = api
    answer = client.get(f"{URL}?{SPAN}&{query}", headers=auth(settings, user))
    assert (answer.status_code, answer.json()["detail"]) == (status, detail)


def test_a_vendor_of_no_asset_of_the_callers_sites_is_named_with_theirs(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    mine = sorted({a.vendor or UNKNOWN for a in fleet_population(FLEET, ["nordvik"])})
    others = sorted({a.vendor or UNKNOWN for a in fleet_population(FLEET, ALL_SITES)}
                    - set(mine))
    assert others, "the example fleet has makers nordvik does not have"
    answer = client.get(f"{URL}?{SPAN}&vendor={others[0]}",
                        headers=auth(settings, "nordvik-manager"))
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error == {"loc": "query.vendor",
                     "msg": f"no asset of your sites has vendor {others[0]!r} "
                            f"(yours: {', '.join(mine)})"}
    # The admin has it.
    assert client.get(f"{URL}?{SPAN}&vendor={others[0]}",
                      headers=auth(settings)).status_code == 200


OK_RANGE = "from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z"
BAD: list[tuple[str, int, str]] = [
    ("to=2026-03-03T00:00:00Z", 422, "query.from"),
    ("from=2026-03-02T00:00:00Z", 422, "query.to"),
    ("from=2026-03-02T00:00:00&to=2026-03-03T00:00:00Z", 422, "query.from"),  # no offset
    ("from=soon&to=2026-03-03T00:00:00Z", 422, "query.from"),
    ("from=2026-03-03T00:00:00Z&to=2026-03-03T00:00:00Z", 422, "query.to"),
    ("from=2026-03-03T00:00:00Z&to=2026-03-02T00:00:00Z", 422, "query.to"),
    ("from=2025-01-01T00:00:00Z&to=2026-02-05T00:00:01Z", 422, "query.to"),  # 400 d + 1 s
    (f"{OK_RANGE}&level=rack", 422, "query.level"),
    (f"{OK_RANGE}&group_by=colour", 422, "query.group_by"),
    (f"{OK_RANGE}&cause=meteor", 422, "query.cause"),
    (f"{OK_RANGE}&vendor=", 422, "query.vendor"),
    (f"{OK_RANGE}&vendor={'x' * 65}", 422, "query.vendor"),
    (f"{OK_RANGE}&vendor=Acme", 422, "query.vendor"),
    (f"{OK_RANGE}&site=", 422, "query.site"),
    (f"{OK_RANGE}&limit=0", 422, "query.limit"),
    (f"{OK_RANGE}&limit=10001", 422, "query.limit"),
    (f"{OK_RANGE}&limit=all", 422, "query.limit"),
    (f"{OK_RANGE}&site=atlantis", 404, "no site 'atlantis'"),
]


@pytest.mark.parametrize(("query", "status", "named"), BAD, ids=[q for q, _, _ in BAD])
def test_every_invalid_request_is_refused_naming_what_is_wrong(
        api: tuple[TestClient, Settings], query: str, status: int, named: str) -> None:
    client, settings = api
    assert_refused(client.get(f"{URL}?{query}", headers=auth(settings)), status, named)


def test_a_window_of_400_days_is_answered_and_no_credential_is_not(
        api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    longest = "from=2025-01-01T00:00:00Z&to=2026-02-05T00:00:00Z"
    assert client.get(f"{URL}?{longest}", headers=auth(settings)).status_code == 200
    assert client.get(f"{URL}?{SPAN}").status_code == 401
