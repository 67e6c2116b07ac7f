"""`GET /data-quality` and `GET /data-quality/unrouted`: which device sends bad records, and
why, per site of the caller — on a real Redis holding what the flows' Redis sink writes
(dead-letter tallies, alerts of every kind, the unrouted ones and the alerts of no site).

A scoped caller (user or API key) sees its own sites' tallies and alerts and nothing of the
others: not in the listing, not by `?site=` (404, as for a site that does not exist), never
the unrouted records — those may come from any customer's device, so only a caller with
`data_quality.unrouted` whose scope is the whole fleet sees them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.auth.permissions import ROLES, Permission, Role
from api.main import create_app
from api.routes.data_quality import FLEET_WIDE
from connectors.redis_store import dead_letters_key
from connectors.settings import Settings
from contracts.events import Alert, DeadLetterTally
from tests.api import hot_state
from tests.api.accounts import auth
from tests.api.hot_state import SITES
from tests.api.test_tenant_isolation import CALLERS, Spec, bearer, spec_id

URL = "/api/v1/data-quality"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


def tally(site_id: str | None, device: str, reason: str, count: int, *,
          last_s: int = 60, detail: str = "") -> DeadLetterTally:
    return DeadLetterTally(site_id=site_id, device=device, reason=reason, count=count,
                           first_ms=T0, last_ms=T0 + last_s * 1000,
                           last_detail=detail or f"{reason} from {device or 'no key'}")


def alert(site_id: str | None, kind: str, scope_id: str, *, severity: str = "minor",
          age_s: int = 30) -> Alert:
    raised = hot_state.now_ms() - age_s * 1000
    return Alert(alert_id=f"{kind}:{scope_id}:{raised}", kind=kind,  # type: ignore[arg-type]
                 scope_id=scope_id, site_id=site_id,
                 severity=severity,  # type: ignore[arg-type]
                 state="raised", raised_ms=raised, ts_ms=raised, message=f"{kind} {scope_id}")


# Per site: tallies (written in no particular order) and the expected order of (device,
# reason): most frequent first, equal counts the most recent first, then by name.
TALLIES = {
    "nordvik": [tally("nordvik", "nordvik-u02", "schema", 7, last_s=10),
                tally("nordvik", "nordvik-u01", "malformed_json", 1200, last_s=50,
                      detail="EOF while parsing an object at line 1 column 7"),
                tally("nordvik", "ghost-7", "key_mismatch", 7, last_s=90),
                tally("nordvik", "nordvik-u01", "impossible_value", 40),
                tally("nordvik", "", "empty", 7, last_s=10)],
    "elbe": [tally("elbe", "elbe-u03", "clock_skew", 3),
             tally("elbe", "elbe-u01", "malformed_json", 9)],
    "mesa": [tally("mesa", "mesa-u05", "schema", 2)],
}
ORDER = {
    "nordvik": [("nordvik-u01", "malformed_json"), ("nordvik-u01", "impossible_value"),
                ("ghost-7", "key_mismatch"), ("", "empty"), ("nordvik-u02", "schema")],
    "elbe": [("elbe-u01", "malformed_json"), ("elbe-u03", "clock_skew")],
    "mesa": [("mesa-u05", "schema")],
}
UNROUTED = [tally(None, "rogue-9", "unknown_asset", 5), tally(None, "", "empty", 11)]


@pytest.fixture
def world(api_settings: Settings) -> dict[str, Any]:
    """Tallies of every site and unrouted ones; per site a data-quality alert of each
    severity it has, and an LD-risk alert (no data-quality matter); alerts of no site."""
    alerts = {s: [alert(s, "frozen_value", f"{s}-u02", age_s=5),
                  alert(s, "dlq_rate", s, severity="major", age_s=60),
                  alert(s, "telemetry_gap", f"{s}-u03", severity="major", age_s=10)]
              for s in SITES}
    ld_risk = {s: alert(s, "ld_risk", s, severity="warning") for s in SITES}
    fleet_wide = [alert(None, "dlq_rate", "bess.telemetry.raw", severity="major"),
                  alert(None, "ld_risk", "fleet")]
    hot_state.write(api_settings.require_redis(),
                    *(t for ts in TALLIES.values() for t in ts), *UNROUTED,
                    *(a for a_s in alerts.values() for a in a_s), *ld_risk.values(),
                    *fleet_wide)
    return {"alerts": alerts, "ld_risk": ld_risk, "fleet_wide": fleet_wide}


def get(client: TestClient, headers: dict[str, str], url: str = URL,
        status: int = 200) -> Any:
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["device"], r["reason"]) for r in rows]


def test_each_site_lists_its_devices_most_frequent_first_with_its_alerts(
        client: TestClient, api_settings: Settings, world: dict[str, Any]) -> None:
    answer = get(client, auth(api_settings, "admin"))
    assert [s["site_id"] for s in answer["sites"]] == ["nordvik", "elbe", "mesa"]  # fleet order
    for site in answer["sites"]:
        sid = site["site_id"]
        assert (site["customer"], site["region"]) == SITES[sid][:2]
        assert pairs(site["tallies"]) == ORDER[sid]
        assert site["records"] == sum(t.count for t in TALLIES[sid])
        assert site["pairs"] == len(TALLIES[sid])
        # Data-quality alerts only (no LD risk), most severe first, then newest.
        mine = world["alerts"][sid]
        assert [a["alert_id"] for a in site["alerts"]] == [mine[2].alert_id, mine[1].alert_id,
                                                           mine[0].alert_id]
    nordvik = answer["sites"][0]
    first = nordvik["tallies"][0]
    assert first == {"device": "nordvik-u01", "reason": "malformed_json", "count": 1200,
                     "first_ms": T0, "last_ms": T0 + 50_000,
                     "last_detail": "EOF while parsing an object at line 1 column 7",
                     "asset_id": "nordvik-u01"}
    # A link only for a device that is an asset of the site.
    assert {r["device"]: r["asset_id"] for r in nordvik["tallies"]} == {
        "nordvik-u01": "nordvik-u01", "nordvik-u02": "nordvik-u02", "ghost-7": None, "": None}

    unrouted = answer["unrouted"]
    assert pairs(unrouted["tallies"]) == [("", "empty"), ("rogue-9", "unknown_asset")]
    assert (unrouted["records"], unrouted["pairs"]) == (16, 2)
    assert [a["alert_id"] for a in unrouted["alerts"]] == [world["fleet_wide"][0].alert_id]
    assert get(client, auth(api_settings, "admin"), f"{URL}/unrouted") == unrouted


def test_limit_cuts_the_list_not_the_totals(client: TestClient, api_settings: Settings,
                                            world: dict[str, Any]) -> None:
    answer = get(client, auth(api_settings, "admin"), f"{URL}?limit=2&site=nordvik")
    assert [s["site_id"] for s in answer["sites"]] == ["nordvik"]
    site = answer["sites"][0]
    assert pairs(site["tallies"]) == ORDER["nordvik"][:2]
    assert (site["records"], site["pairs"]) == (1261, 5)
    assert answer["unrouted"] is None  # narrowed to one site
    unrouted = get(client, auth(api_settings, "admin"), f"{URL}/unrouted?limit=1")
    assert pairs(unrouted["tallies"]) == [("", "empty")] and unrouted["pairs"] == 2


@pytest.mark.parametrize(("spec", "sees"), CALLERS, ids=[spec_id(c) for c, _ in CALLERS])
def test_a_scoped_caller_sees_its_own_sites_only_and_no_unrouted_records(
        client: TestClient, api_settings: Settings, world: dict[str, Any], spec: Spec,
        sees: list[str]) -> None:
    headers = {"Authorization": f"Bearer {bearer(client, api_settings, spec)}"}
    answer = get(client, headers)
    assert [s["site_id"] for s in answer["sites"]] == sees
    assert answer["unrouted"] is None
    for site in answer["sites"]:
        assert pairs(site["tallies"]) == ORDER[site["site_id"]]
    text = json.dumps(answer)
    for other in SITES.keys() - set(sees):  # no trace of another customer's site
        assert other not in text and SITES[other][0] not in text
    assert "rogue-9" not in text and "bess.telemetry.raw" not in text
    for site in SITES:
        asked = client.get(f"{URL}?site={site}", headers=headers)
        if site in sees:
            assert [s["site_id"] for s in asked.json()["sites"]] == [site]
        else:  # the same answer as for a site that does not exist
            assert asked.status_code == 404, asked.text
            assert asked.json() == {"detail": f"no site {site!r}", "status": 404}
    refused = client.get(f"{URL}/unrouted", headers=headers)
    assert refused.status_code == 403
    assert "rogue-9" not in refused.text


def test_a_scoped_admin_sees_no_unrouted_records(client: TestClient, api_settings: Settings,
                                                 world: dict[str, Any]) -> None:
    """The permission is not enough: unrouted records may be any customer's."""
    key = bearer(client, api_settings, ("key", "admin", "Nordvik Energi AB", "*"))
    headers = {"Authorization": f"Bearer {key}"}
    answer = get(client, headers)
    assert [s["site_id"] for s in answer["sites"]] == ["nordvik"]
    assert answer["unrouted"] is None
    assert get(client, headers, f"{URL}/unrouted", 403) == {"detail": FLEET_WIDE,
                                                            "status": 403}


@pytest.mark.parametrize("role", ROLES)
def test_only_an_unscoped_role_with_the_permission_sees_unrouted_records(
        client: TestClient, api_settings: Settings, world: dict[str, Any], role: Role) -> None:
    answer = get(client, auth(api_settings, role))
    assert [s["site_id"] for s in answer["sites"]] == list(SITES)
    allowed = role == "admin"
    assert (answer["unrouted"] is not None) == allowed
    unrouted = client.get(f"{URL}/unrouted", headers=auth(api_settings, role))
    assert unrouted.status_code == (200 if allowed else 403)
    if not allowed:
        assert unrouted.json()["detail"] == \
            f"role {role} may not {Permission.DATA_QUALITY_UNROUTED.value}"


def test_an_empty_fleet(client: TestClient, api_settings: Settings) -> None:
    """No record refused yet, no alert: every site, each with nothing; and a caller whose
    scope matches no site gets no site at all."""
    answer = get(client, auth(api_settings, "admin"))
    assert [(s["site_id"], s["records"], s["pairs"], s["tallies"], s["alerts"])
            for s in answer["sites"]] == [(s, 0, 0, [], []) for s in SITES]
    assert answer["unrouted"] == {"records": 0, "pairs": 0, "tallies": [], "alerts": []}
    assert get(client, auth(api_settings, "nordvik-in-de")) == {"sites": [], "unrouted": None}


def test_an_undecodable_tally_is_left_out_not_a_server_error(
        client: TestClient, api_settings: Settings, world: dict[str, Any],
        redis_client: redis.Redis) -> None:
    redis_client.hset(dead_letters_key("elbe"), '["elbe-u02", "schema"]', b"{not json")
    redis_client.hset(dead_letters_key("elbe"), '["elbe-u04", "schema"]',
                      json.dumps({"v": 1, "device": "elbe-u04"}))
    answer = get(client, auth(api_settings, "admin"), f"{URL}?site=elbe")
    assert pairs(answer["sites"][0]["tallies"]) == ORDER["elbe"]


@pytest.mark.parametrize(("query", "loc"), [
    ("limit=0", "query.limit"), ("limit=501", "query.limit"), ("limit=many", "query.limit"),
    ("site=", "query.site"), (f"site={'x' * 201}", "query.site")])
def test_bad_parameters_are_named(client: TestClient, api_settings: Settings, query: str,
                                  loc: str) -> None:
    body = get(client, auth(api_settings, "admin"), f"{URL}?{query}", 422)
    assert [e["loc"] for e in body["errors"]] == [loc]
    if query.startswith("limit"):
        body = get(client, auth(api_settings, "admin"), f"{URL}/unrouted?{query}", 422)
        assert [e["loc"] for e in body["errors"]] == [loc]


def test_an_unknown_site_is_not_found(client: TestClient, api_settings: Settings) -> None:
    assert get(client, auth(api_settings, "admin"), f"{URL}?site=atlantis", 404) == {
        "detail": "no site 'atlantis'", "status": 404}
