"""Tenant isolation: a caller scoped to some customers and regions reaches their sites' data
and nothing else — not by listing, not by id, not over the WebSocket, not by export or report,
not by acting on an alarm — and API keys are scoped exactly like users.

The example fleet has three sites of three customers: nordvik (Nordvik Energi AB, SE3), elbe
(Elbe Netz GmbH, DE) and mesa (Sonoran Power LLC, US-AZ). Hot state for all three is written
through the flows' own Redis sink; callers are the scoped users of tests/api/accounts.py and
API keys with the same scopes. Another customer's thing by id is 404 with the same answer as
a thing that does not exist (never 403, which would confirm it exists; never its data)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.auth.permissions import ROLE_PERMISSIONS, Permission
from api.context import ApiContext
from api.main import create_app
from connectors.audit import AuditLog
from connectors.history import open_history
from connectors.redis_store import alarm_handling_key
from connectors.settings import Settings
from contracts.events import UnavailabilityEpisode
from contracts.fleet import Fleet
from tests.api import hot_state
from tests.api.accounts import USERS, auth, token
from tests.api.hot_state import SITES

FLEET_ORDER = ["nordvik", "elbe", "mesa"]
LD = {"nordvik": 100.0, "elbe": 2_000.0, "mesa": 30_000.0}
PERIOD = {"nordvik": "2026-01", "elbe": "2026-Q1", "mesa": "CY2"}
CONTRACT = {site: contract for site, (_, _, contract) in SITES.items()}
UNIT = {site: f"{site}-u01" for site in SITES}

# A caller: a user of accounts.py, or an API key of (role, customers, regions) → sites seen.
Spec = tuple[str, ...]
CALLERS: list[tuple[Spec, list[str]]] = [
    (("user", "nordvik-viewer"), ["nordvik"]),
    (("user", "nordvik-manager"), ["nordvik"]),
    (("user", "de-engineer"), ["elbe"]),
    (("user", "nordvik-in-de"), []),
    (("key", "viewer", "Nordvik Energi AB", "*"), ["nordvik"]),
    (("key", "engineer", "*", "DE"), ["elbe"]),
    (("key", "viewer", "Nordvik Energi AB", "DE"), []),
    (("key", "contract_manager", "Sonoran Power LLC", "US-AZ"), ["mesa"]),
]
# Callers with every per-site permission, scoped to Nordvik: a user and an API key.
MANAGERS: list[Spec] = [("user", "nordvik-manager"),
                        ("key", "service_manager", "Nordvik Energi AB", "*")]


def spec_id(spec: Any) -> str:
    return "-".join(spec) if isinstance(spec, tuple) else ",".join(spec) or "none"


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture
def world(api_settings: Settings) -> dict[str, Any]:
    """Every site with a snapshot (and LD money), an active alarm and an alert."""
    breaches = {s: hot_state.breach(s, UNIT[s]) for s in SITES}
    alerts = {s: hot_state.alert(s, UNIT[s]) for s in SITES}
    hot_state.write(api_settings.require_redis(),
                    *(hot_state.snapshot(s, 95.0, ld=LD[s]) for s in SITES),
                    *breaches.values(), *alerts.values())
    return {"breaches": breaches, "alerts": alerts}


def role_of(spec: Spec) -> str:
    return USERS[spec[1]][0] if spec[0] == "user" else spec[1]


def bearer(client: TestClient, settings: Settings, spec: Spec) -> str:
    """The caller's credential: a user's token, or an API key an admin made for it."""
    if spec[0] == "user":
        return token(settings, spec[1])
    _, role, customers, regions = spec
    made = client.post("/api/v1/api-keys", headers=auth(settings), json={
        "name": f"integrator {role}", "role": role, "customers": [customers],
        "regions": [regions]})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def get(client: TestClient, credential: str, url: str) -> Any:
    response = client.get(url, headers={"Authorization": f"Bearer {credential}"})
    assert response.status_code == 200, response.text
    return response.json()


def fleet(client: TestClient) -> Fleet:
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx.fleet


@pytest.mark.parametrize(("spec", "sees"), CALLERS, ids=[spec_id(c) for c, _ in CALLERS])
def test_listings_show_only_the_callers_sites(client: TestClient, api_settings: Settings,
                                              world: dict[str, Any], spec: Spec,
                                              sees: list[str]) -> None:
    credential = bearer(client, api_settings, spec)
    money = Permission.CONTRACTS_READ in ROLE_PERMISSIONS[role_of(spec)]  # type: ignore[index]

    me = get(client, credential, "/api/v1/auth/me")
    assert me["sites"] == sees

    overview = get(client, credential, "/api/v1/fleet")
    assert [s["id"] for s in overview["sites"]] == sees
    kpis = overview["kpis"]
    assert kpis["sites"] == len(sees)
    assert kpis["units"] == sum(len(fleet(client).site(s).units) for s in sees)
    # Fleet KPIs add up the caller's sites only: no other customer's money in the sum.
    assert kpis["ld_year_to_date"] == (({"EUR": sum(LD[s] for s in sees)} if sees else {})
                                       if money else None)

    sites = get(client, credential, "/api/v1/sites")
    assert [s["id"] for s in sites["items"]] == sees and sites["next_cursor"] is None
    for site, (customer, region, _) in SITES.items():
        by_customer = get(client, credential, f"/api/v1/sites?customer={customer}")
        by_region = get(client, credential, f"/api/v1/sites?region={region}")
        expected = [site] if site in sees else []
        assert [s["id"] for s in by_customer["items"]] == expected
        assert [s["id"] for s in by_region["items"]] == expected

    alarms = get(client, credential, "/api/v1/alarms")["items"]
    assert sorted(a["breach_id"] for a in alarms) == sorted(
        world["breaches"][s].breach_id for s in sees)
    alerts = get(client, credential, "/api/v1/alerts")["items"]
    assert sorted(a["alert_id"] for a in alerts) == sorted(
        world["alerts"][s].alert_id for s in sees)
    for site in SITES:  # asking for another site by filter gives nothing, not its data
        expected_alarms = [world["breaches"][site].breach_id] if site in sees else []
        assert [a["breach_id"] for a in get(
            client, credential, f"/api/v1/alarms?site_id={site}")["items"]] == expected_alarms
        expected_alerts = [world["alerts"][site].alert_id] if site in sees else []
        assert [a["alert_id"] for a in get(
            client, credential, f"/api/v1/alerts?site_id={site}")["items"]] == expected_alerts

    if money:
        contracts = get(client, credential, "/api/v1/contracts")
        assert [c["id"] for c in contracts] == [CONTRACT[s] for s in sees]


@pytest.mark.parametrize(("spec", "sees"), CALLERS, ids=[spec_id(c) for c, _ in CALLERS])
def test_faults_and_their_hours_are_of_the_callers_sites_only(
        client: TestClient, api_settings: Settings, spec: Spec, sees: list[str]) -> None:
    """The faults timeline and its reliability table (tests/api/test_faults.py): another
    customer's episodes are not in the timeline, their assets' hours not in the table."""
    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    history = open_history(api_settings)
    history.write_episodes([UnavailabilityEpisode(
        episode_id=f"{UNIT[s]}:{start + 3_600_000}", asset_id=UNIT[s], site_id=s,
        start_ms=start + 3_600_000, end_ms=start + 7_200_000, state="unavailable",
        cause="fault", lost_hours=1.0, lost_mwh=5.0) for s in SITES])
    history.close()
    credential = bearer(client, api_settings, spec)
    body = get(client, credential, "/api/v1/analytics/faults?from=2026-01-01T00:00:00Z"
                                   "&to=2026-01-08T00:00:00Z&group_by=site")
    # One failure each, at the same time: by asset id, and by site id.
    assert [e["site_id"] for e in body["episodes"]] == sorted(sees)
    assert [g["key"] for g in body["groups"]] == [[s] for s in sorted(sees)]
    assert body["total"]["failures"] == len(sees)
    assert body["total"]["assets"] == sum(
        1 for a in fleet(client).assets.values() if a.site_id in sees and a.kind != "site")


@pytest.mark.parametrize(("spec", "sees"), CALLERS, ids=[spec_id(c) for c, _ in CALLERS])
def test_the_vendor_table_is_of_the_callers_sites_only(
        client: TestClient, api_settings: Settings, spec: Spec, sees: list[str]) -> None:
    """Vendor benchmarking (tests/api/test_vendors.py): another customer's units are neither
    in a vendor's row nor in the total."""
    credential = bearer(client, api_settings, spec)
    body = get(client, credential, "/api/v1/analytics/vendors?from=2026-01-01T00:00:00Z"
                                   "&to=2026-01-08T00:00:00Z")
    units = [a for a in fleet(client).assets.values() if a.site_id in sees and a.kind == "unit"]
    assert body["total"]["assets"] == len(units)
    assert sorted(v["key"][0] for v in body["vendors"]) == \
        sorted({a.vendor or "unknown" for a in units})


def other_things(site: str, world: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]
                                                                 | None]]:
    """(method, url, the id in it, body) for one site's things, each reachable by id."""
    unit = UNIT[site]
    block = f"{unit}-i1-b2"
    contract = CONTRACT[site]
    breach = world["breaches"][site].breach_id
    span = "start=1767225600000&end=1767830400000"
    iso_span = "from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z"  # the same week
    until = hot_state.now_ms() + 3_600_000
    return [
        ("GET", f"/api/v1/sites/{site}", site, None),
        ("GET", f"/api/v1/sites/{site}/assets", site, None),
        ("GET", f"/api/v1/assets/{site}", site, None),
        ("GET", f"/api/v1/assets/{unit}", unit, None),
        ("GET", f"/api/v1/assets/{block}", block, None),
        ("GET", f"/api/v1/assets/{unit}/tickets", unit, None),
        ("GET", f"/api/v1/assets/{unit}/availability?{span}", unit, None),
        ("GET", f"/api/v1/assets/{block}/status?{span}", block, None),
        ("GET", f"/api/v1/assets/{unit}/telemetry?tag=soc_pct&{span}&step=3600000", unit, None),
        ("GET", f"/api/v1/assets/{unit}/episodes?{span}", unit, None),
        ("GET", f"/api/v1/telemetry/export?assets={unit}&tags=soc_pct&{iso_span}", unit, None),
        ("GET", f"/api/v1/analytics/historian?assets={block}&tags=soc_pct&{iso_span}", block,
         None),
        ("GET", f"/api/v1/analytics/faults?site={site}&{iso_span}", site, None),
        ("GET", f"/api/v1/analytics/vendors?site={site}&{iso_span}", site, None),
        ("GET", f"/api/v1/analytics/comms?site={site}&{iso_span}", site, None),
        ("GET", f"/api/v1/contracts/{contract}/compliance?period={PERIOD[site]}", contract,
         None),
        ("GET", f"/api/v1/reports/compliance?contract_id={contract}&period={PERIOD[site]}"
                "&format=csv", contract, None),
        ("POST", f"/api/v1/alarms/{breach}/acknowledge", breach, {"comment": "mine now"}),
        ("POST", f"/api/v1/alarms/{breach}/shelve", breach, {"reason": "x", "until_ms": until}),
    ]


def ghost(ident: str) -> str:
    """An id of the same shape that names nothing in the fleet."""
    for site in SITES:
        ident = ident.replace(site, "atlantis")
    return ident.replace("LTSA-ELBE", "LTSA-ATLANTIS").replace("LTSA-MESA", "LTSA-ATLANTIS")


@pytest.mark.parametrize("spec", MANAGERS, ids=spec_id)
def test_another_customers_things_by_id_are_not_found(
        client: TestClient, api_settings: Settings, world: dict[str, Any],
        spec: Spec, redis_client: redis.Redis) -> None:
    credential = bearer(client, api_settings, spec)
    headers = {"Authorization": f"Bearer {credential}"}
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    audited_before = len(AuditLog(ctx.store).entries(limit=10_000))
    for site in ("elbe", "mesa"):
        customer = SITES[site][0]
        for method, url, ident, body in other_things(site, world):
            theirs = client.request(method, url, headers=headers, json=body)
            assert theirs.status_code == 404, (url, theirs.text)
            assert customer not in theirs.text and str(LD[site]) not in theirs.text
            # The same answer as for a thing that does not exist at all.
            missing = client.request(method, url.replace(ident, ghost(ident)),
                                     headers=headers, json=body)
            assert missing.status_code == 404, missing.text
            assert theirs.json() == {**missing.json(),
                                     "detail": missing.json()["detail"].replace(ghost(ident),
                                                                                ident)}
        assert not redis_client.exists(alarm_handling_key(site)), "an alarm was acted on"
    assert len(AuditLog(ctx.store).entries(limit=10_000)) == audited_before, \
        "nothing of another customer was downloaded or handled"
    # The same calls on the caller's own site succeed: the 404s were the scope, not the route.
    for method, url, _, body in other_things("nordvik", world):
        own = client.request(method, url, headers=headers, json=body)
        assert own.status_code == 200, (url, own.text)


def test_an_engineer_acts_on_alarms_of_their_region_only(
        client: TestClient, api_settings: Settings, world: dict[str, Any],
        redis_client: redis.Redis) -> None:
    headers = auth(api_settings, "de-engineer")
    nordvik = world["breaches"]["nordvik"].breach_id
    elbe = world["breaches"]["elbe"].breach_id
    refused = client.post(f"/api/v1/alarms/{nordvik}/acknowledge", headers=headers, json={})
    assert refused.json() == {"detail": f"no active alarm {nordvik!r}", "status": 404}
    assert not redis_client.exists(alarm_handling_key("nordvik"))
    done = client.post(f"/api/v1/alarms/{elbe}/acknowledge", headers=headers, json={})
    assert done.status_code == 200 and done.json()["acknowledged_by"] == "de-engineer"


# -- the live feed -------------------------------------------------------------------------


def authed(ws: Any, credential: str) -> None:
    ws.send_json({"type": "auth", "token": credential})
    ready = ws.receive_json()
    assert ready["type"] == "ready", ready


def until_pong(ws: Any) -> list[dict[str, Any]]:
    """Every frame before the answer to a ping (what was queued for the client by then)."""
    ws.send_json({"type": "ping"})
    frames = []
    while (msg := ws.receive_json())["type"] != "pong":
        frames.append(msg)
    return frames


def site_of(frame: dict[str, Any]) -> str | None:
    data = frame["data"]
    if frame["channel"] == "alarms":
        data = data["breach"] if data.get("kind") == "breach" else data
    site: str | None = data.get("site_id")
    return site


@pytest.mark.parametrize(("spec", "sees"), CALLERS, ids=[spec_id(c) for c, _ in CALLERS])
def test_websocket_channels_of_other_sites_do_not_exist(
        client: TestClient, api_settings: Settings, world: dict[str, Any], spec: Spec,
        sees: list[str]) -> None:
    credential = bearer(client, api_settings, spec)
    with client.websocket_connect("/api/v1/ws") as ws:
        authed(ws, credential)
        for site in SITES:
            for channel in (f"site:{site}", f"asset:{site}", f"asset:{UNIT[site]}",
                            f"asset:{UNIT[site]}-i2-b8"):
                ws.send_json({"type": "subscribe", "channel": channel})
                answer = ws.receive_json()
                if site in sees:
                    assert (answer["type"], answer["channel"]) == ("snapshot", channel)
                else:
                    assert answer == {"type": "error", "message": f"unknown channel {channel!r}"}
        for channel in ("fleet", "alarms", "alerts"):
            ws.send_json({"type": "subscribe", "channel": channel})
            snap = ws.receive_json()
            assert snap["type"] == "snapshot"
            assert sorted({site_of({"channel": channel, "data": d}) for d in snap["data"]},
                          key=str) == sorted(sees)


@pytest.mark.parametrize(("spec", "sees"), CALLERS, ids=[spec_id(c) for c, _ in CALLERS])
def test_websocket_deltas_of_other_customers_are_not_delivered(
        client: TestClient, api_settings: Settings, world: dict[str, Any], spec: Spec,
        sees: list[str]) -> None:
    credential = bearer(client, api_settings, spec)
    channels = ("fleet", "alarms", "alerts")
    with client.websocket_connect("/api/v1/ws") as ws, \
            client.websocket_connect("/api/v1/ws") as admin:
        for socket, cred in ((ws, credential), (admin, token(api_settings, "admin"))):
            authed(socket, cred)
            for channel in channels:
                socket.send_json({"type": "subscribe", "channel": channel})
                assert socket.receive_json()["type"] == "snapshot"

        # What the flows publish for every site (and a fleet-wide alert), then operators'
        # handling of each site's new alarm (published by the API).
        fresh = {s: hot_state.breach(s, f"{UNIT[s]}-i1", severity="critical") for s in SITES}
        hot_state.write(api_settings.require_redis(),
                        *(hot_state.snapshot(s, 50.0, ld=LD[s]) for s in SITES),
                        *fresh.values(), *(hot_state.alert(s, f"{UNIT[s]}-i2") for s in SITES),
                        hot_state.alert(None, "bess.telemetry.raw"))
        for s in SITES:
            acked = client.post(f"/api/v1/alarms/{fresh[s].breach_id}/acknowledge",
                                headers=auth(api_settings), json={"comment": "on it"})
            assert acked.status_code == 200, acked.text

        # The admin (unscoped) gets the last message: by then the hub has dispatched every
        # message to every subscriber.
        last = fresh["mesa"].breach_id
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the admin never got the last handling"
            msg = admin.receive_json()
            if msg["type"] == "update" and msg["channel"] == "alarms" and \
                    msg["data"].get("handling", {}).get("breach_id") == last:
                break

        frames = [f for f in until_pong(ws) if f["type"] == "update"]
        got = {(f["channel"], site_of(f)) for f in frames}
        assert got == {(c, s) for c in channels for s in sees}, frames
        seqs = [f["seq"] for f in frames if f["channel"] == "fleet"]
        assert seqs == sorted(seqs)

    # A client resuming from seq 0 replays the log: filtered the same way.
    with client.websocket_connect("/api/v1/ws") as ws:
        authed(ws, credential)
        ws.send_json({"type": "subscribe", "channel": "fleet", "since": 0})
        assert ws.receive_json()["type"] == "resume"
        replayed = [f for f in until_pong(ws) if f["type"] == "update"]
        assert {site_of(f) for f in replayed} == set(sees)
