"""`GET /repair-priority`: the open episodes of the caller's sites ranked by marginal LD per
hour — on a real Redis holding what the flows' Redis sink writes (each site's whole list at
`repair_key(site)`, and the site snapshots whose contract KPIs the rows carry). A scoped
caller sees its own sites only (404 for another's by `?site=`, as for none); a role that may
not see contract money gets the same order with the amounts null; currencies are never
compared: one group after the other."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.settings import Settings
from contracts.repair import RepairPriority
from flows.outputs import RepairList
from tests.api import hot_state
from tests.api.accounts import auth

URL = "/api/v1/repair-priority"
T0 = 1_790_000_000_000


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


def priority(site: str, asset: str, marginal: float, *, since_s: int = 0,
             currency: str = "EUR", kind: str = "ltsa", mwh: float = 1.0) -> RepairPriority:
    _, _, contract_id = hot_state.SITES[site]
    m = Decimal(repr(marginal))
    return RepairPriority(
        episode_id=f"{asset}:{T0 + since_s * 1000}", asset_id=asset, unit_id=asset,
        site_id=site, contract_id=contract_id, kind=kind,  # type: ignore[arg-type]
        currency=currency, state="unavailable", derate_fraction=None, cause="fault",
        since_ms=T0 + since_s * 1000, lost_hours=2.5, lost_mwh=mwh, as_of_ms=T0 + 9_000_000,
        period="2026-10", contract_year=2, hours=1.0, marginal_ld_per_hour=m,
        ld_now=Decimal(1000), ld_after=Decimal(1000) + m, availability_now_pct=96.5,
        availability_after_pct=96.4, guaranteed_pct=97.0, cap_left=Decimal(5000),
        zero_reason=None if marginal else ("technical" if kind == "technical"
                                           else "above_guarantee"))


@pytest.fixture
def world(api_settings: Settings) -> None:
    """Nordvik (EUR): u01 at 800/h, u02 at 800/h but older, a technical-like u03; Elbe (EUR):
    one at 1,200/h; Mesa (USD): one at 5,000/h — a bigger number, in another currency."""
    hot_state.write(
        api_settings.require_redis(),
        *(hot_state.snapshot(s, 96.5, ld=1234.0) for s in hot_state.SITES),
        RepairList("nordvik", T0, (
            priority("nordvik", "nordvik-u01", 800.0, since_s=600),
            priority("nordvik", "nordvik-u02", 800.0, since_s=60),
            priority("nordvik", "nordvik-u03", 0.0, kind="technical", mwh=3.0))),
        RepairList("elbe", T0, (priority("elbe", "elbe-u01", 1200.0),)),
        RepairList("mesa", T0, (priority("mesa", "mesa-u01", 5000.0, currency="USD"),)))


def get(client: TestClient, settings: Settings, user: str, query: str = "") -> Any:
    r = client.get(URL + query, headers=auth(settings, user))
    assert r.status_code == 200, r.text
    return r.json()


def test_the_fleet_is_ranked_by_money_per_hour_within_each_currency(
        client: TestClient, api_settings: Settings, world: None) -> None:
    body = get(client, api_settings, "admin")
    assert [(r["rank"], r["asset_id"]) for r in body["items"]] == [
        (1, "elbe-u01"), (2, "nordvik-u02"), (3, "nordvik-u01"), (4, "mesa-u01"),
        (5, "nordvik-u03")]
    assert body["currencies"] == ["EUR", "USD"] and body["total"] == 5 and body["money"]
    top = body["items"][0]
    assert (top["site_id"], top["customer"], top["state"], top["cause"], top["currency"]) == (
        "elbe", "Elbe Netz GmbH", "unavailable", "fault", "EUR")
    assert (top["marginal_ld_per_hour"], top["ld_now"], top["ld_after"]) == (
        1200.0, 1000.0, 2200.0)
    # the period's numbers as the dashboard shows them, from the site's snapshot
    assert (top["period"], top["guaranteed_pct"], top["projected_pct"],
            top["projected_ld"], top["ld_year_to_date"], top["stale"]) == (
        "2026-10", 97.0, 96.5, 1234.0, 1234.0, False)


def test_limit_and_one_site(client: TestClient, api_settings: Settings, world: None) -> None:
    body = get(client, api_settings, "admin", "?limit=2")
    assert [r["asset_id"] for r in body["items"]] == ["elbe-u01", "nordvik-u02"]
    assert body["total"] == 5
    body = get(client, api_settings, "admin", "?site=nordvik&limit=500")
    assert [r["asset_id"] for r in body["items"]] == ["nordvik-u02", "nordvik-u01",
                                                      "nordvik-u03"]
    assert body["currencies"] == ["EUR"]


def test_a_scoped_caller_sees_only_its_sites_and_a_viewer_no_money(
        client: TestClient, api_settings: Settings, world: None) -> None:
    manager = get(client, api_settings, "nordvik-manager")
    assert {r["site_id"] for r in manager["items"]} == {"nordvik"}
    assert manager["money"] and manager["items"][0]["marginal_ld_per_hour"] == 800.0
    viewer = get(client, api_settings, "nordvik-viewer")
    assert [r["asset_id"] for r in viewer["items"]] == [r["asset_id"] for r in manager["items"]]
    assert not viewer["money"]
    for row in viewer["items"]:
        assert (row["marginal_ld_per_hour"], row["ld_now"], row["ld_after"], row["cap_left"],
                row["projected_ld"], row["ld_year_to_date"]) == (None,) * 6
    for user in ("nordvik-viewer", "de-engineer"):
        r = client.get(URL + "?site=mesa", headers=auth(api_settings, user))
        assert r.status_code == 404, r.text
    assert get(client, api_settings, "nordvik-in-de")["items"] == []


def test_no_list_yet_is_an_empty_answer(client: TestClient, api_settings: Settings) -> None:
    assert get(client, api_settings, "admin") == {"items": [], "total": 0, "currencies": [],
                                                  "money": True}


@pytest.mark.parametrize("query", ["?limit=0", "?limit=501", "?limit=two", "?site=",
                                   f"?site={'x' * 201}"])
def test_bad_parameters_are_422(client: TestClient, api_settings: Settings,
                                query: str) -> None:
    r = client.get(URL + query, headers=auth(api_settings))
    assert r.status_code == 422, r.text
