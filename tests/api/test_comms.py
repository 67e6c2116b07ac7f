"""The controller health and comms view end to end: device-health events on a real broker →
the telemetry flow's device-health input (real Redis and history sinks) → GET
/analytics/comms on the real app. The figures are checked by hand; records the flow cannot
read or place are dead letters with their reason; the caller's scope bounds the answer, and
every invalid request is refused naming what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis
from bytewax.connectors.kafka import KafkaSource
from bytewax.testing import TestingSource, run_main
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.kafka import ensure_topics, read_topic
from connectors.settings import Settings
from contracts.events import DeadLetter, DeviceHealth, DeviceStats, HealthState
from contracts.fleet import load_fleet
from contracts.monitoring import load_monitoring
from flows.telemetry_flow import build_flow
from tests.api.accounts import auth
from tests.api.errors import assert_refused
from tests.flows.harness import produce, redis_db_url

REDIS_DB = 11  # a database of its own: the flow writes every site's comms hashes
H = 3_600_000
FROM_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SPAN = "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"
URL = "/api/v1/analytics/comms"
GW, GW_ELBE = "10.0.0.1:502", "10.0.1.1:502"


def state(device: str, at_h: float, s: HealthState, previous: HealthState | None,
          site: str | None = "nordvik", gateway: str | None = GW) -> DeviceHealth:
    return DeviceHealth(device_id=device, connector="modbus", state=s, previous=previous,
                        ts_ms=FROM_MS + round(at_h * H), reason=f"{s} at {at_h}",
                        consecutive_failures=3 if s == "offline" else 0, site_id=site,
                        gateway=gateway)


def window(device: str, at_h: float, polls: int, failed: int, retries: int,
           lat: tuple[float, float, float] | None, gateway: str = GW) -> DeviceStats:
    p50, p95, most = lat or (None, None, None)
    start = FROM_MS + round(at_h * H)
    return DeviceStats(device_id=device, connector="modbus", site_id="nordvik", gateway=gateway,
                       start_ms=start, end_ms=start + 60_000, polls=polls, failed=failed,
                       retries=retries, latency_p50_ms=p50, latency_p95_ms=p95,
                       latency_max_ms=most)


OLD_STYLE = {"v": 1, "device_id": "nordvik-u02", "connector": "modbus", "state": "online",
             "previous": None, "ts_ms": FROM_MS + H, "reason": "answering",
             "consecutive_failures": 0}  # the first version: no kind, site or gateway
EVENTS: list[DeviceHealth | DeviceStats] = [
    state("nordvik-u01", -1, "online", None),  # before the range: its state at `from`
    window("nordvik-u01", -2, 60, 0, 0, (1, 2, 3)),  # before the range: not counted
    window("nordvik-u01", 1, 60, 0, 0, (10, 20, 30)),
    state("nordvik-u01", 2, "degraded", "online"),
    state("nordvik-u01", 3, "offline", "degraded"),
    window("nordvik-u01", 3, 60, 30, 45, (100, 200, 400)),
    state("nordvik-u01", 5, "online", "offline"),
    window("nordvik-u02", 2, 60, 0, 6, (5, 5, 5)),
    window("nordvik-u01", 30, 60, 60, 60, None),  # after the range
    state("elbe-u01", 1, "offline", None, site="elbe", gateway=GW_ELBE),
]
POISON: list[tuple[bytes, bytes, str]] = [  # key, value, reason
    (b"nordvik-u03", b"{broken", "malformed_json"),
    (b"nordvik-u03", window("nordvik-u03", 1, 60, 0, 0, (1, 2, 3)).model_dump_json()
     .replace('"failed":0', '"failed":61').encode(), "schema"),
    (b"ghost", state("ghost", 1, "online", None, site=None).model_dump_json().encode(),
     "unknown_asset"),
    (b"nordvik-u03", state("nordvik-u03", 1, "online", None, site="atlantis")
     .model_dump_json().encode(), "unknown_asset"),
]


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, redis_url: str, accounts: tuple[Path, Path],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    users, key = accounts
    suffix = uuid.uuid4().hex[:8]
    settings = Settings.model_validate({
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_db_url(redis_url, REDIS_DB),
        "run_dir": tmp_path_factory.mktemp("comms"), "users_file": users, "jwt_key_file": key,
        **{f"topic_{t}": f"t-{suffix}.{t}" for t in ("device_health", "dlq", "status",
                                                      "availability", "breaches", "alerts")}})
    ensure_topics(kafka_bootstrap, [settings.topic_device_health, settings.topic_dlq], 2)
    client = redis.Redis.from_url(settings.require_redis())
    client.flushdb()
    client.close()
    records = [(e.device_id.encode(), e.model_dump_json().encode()) for e in EVENTS]
    records.insert(5, (b"nordvik-u02", orjson.dumps(OLD_STYLE)))
    produce(kafka_bootstrap, settings.topic_device_health,
            [*records, *((k, v) for k, v, _ in POISON)])
    fleet = load_fleet(settings.fleet_file)
    health = KafkaSource([kafka_bootstrap], [settings.topic_device_health], tail=False,
                         add_config={"auto.offset.reset": "earliest"})
    run_main(build_flow(settings, fleet, load_monitoring(settings.monitoring_file), {},
                        source=TestingSource([]), health_source=cast(Any, health),
                        tail=False, now_ms=None, snapshots=False))
    with TestClient(create_app(settings)) as api_client:
        yield api_client, settings


def get(api: tuple[TestClient, Settings], query: str = "", user: str = "admin"
        ) -> dict[str, Any]:
    client, settings = api
    answer = client.get(f"{URL}?{SPAN}&{query}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_gateways_and_devices_with_their_figures(api: tuple[TestClient, Settings]) -> None:
    body = get(api)
    assert [(g["gateway"], g["state"], g["site_ids"]) for g in body["gateways"]] == [
        (GW_ELBE, "offline", ["elbe"]), (GW, "online", ["nordvik"])]  # worst first
    nordvik = body["gateways"][1]
    assert nordvik["devices_by_state"] == {"online": 2}
    u01, u02 = nordvik["devices"]
    assert (u01["device_id"], u01["state"], u01["since_ms"], u01["reason"]) == (
        "nordvik-u01", "online", FROM_MS + 5 * H, "online at 5")
    # online from `from` (its state before) to 2 h and from 5 h to `to`; degraded 2–3 h
    assert u01["hours"] == {"online": 21.0, "degraded": 1.0, "offline": 2.0}
    assert [(c["ts_ms"], c["state"], c["previous"]) for c in u01["changes"]] == [
        (FROM_MS + 2 * H, "degraded", "online"), (FROM_MS + 3 * H, "offline", "degraded"),
        (FROM_MS + 5 * H, "online", "offline")]
    assert u01["figures"] == {
        "windows": 2, "polls": 120, "failed": 30, "retries": 45, "drop_rate": 0.25,
        "retry_rate": 0.375, "latency_p50_ms": pytest.approx((10 * 60 + 100 * 30) / 90),
        "latency_p95_ms": pytest.approx((20 * 60 + 200 * 30) / 90), "latency_max_ms": 400.0}
    # The first version's event, placed by the fleet; its gateway from its stats.
    assert (u02["device_id"], u02["site_id"], u02["gateway"], u02["state"]) == (
        "nordvik-u02", "nordvik", GW, "online")
    assert u02["hours"]["online"] == 23.0
    assert nordvik["figures"]["polls"] == 180 and nordvik["figures"]["retries"] == 51
    assert body["newest_ms"] == FROM_MS + 30 * H + 60_000  # the newest event, out of range
    about = body["about"]
    assert about["audience"] and about["decision"]
    assert {s["name"]: s["newest_ms"] for s in about["sources"]} == {
        "redis": FROM_MS + 30 * H + 60_000, "history": FROM_MS + 5 * H}


def test_what_the_flow_cannot_read_or_place_is_a_dead_letter(
        api: tuple[TestClient, Settings]) -> None:
    _, settings = api
    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_topic(
        settings.require_kafka(), settings.topic_dlq, idle_s=1, timeout_s=30)]
    assert sorted((d.source, d.reason, d.payload.encode()) for d in letters) == sorted(
        ("flows.device_health", reason, value) for _, value, reason in POISON)
    (schema,) = [d for d in letters if d.reason == "schema"]
    assert "61 polls failed of 60" in schema.detail
    # Nothing of theirs reached the view.
    devices = [d["device_id"] for g in get(api)["gateways"] for d in g["devices"]]
    assert "nordvik-u03" not in devices and "ghost" not in devices


@pytest.mark.parametrize(("user", "gateways"), [
    ("nordvik-viewer", [GW]), ("de-engineer", [GW_ELBE]), ("nordvik-in-de", []),
    ("viewer", [GW_ELBE, GW])])
def test_a_caller_sees_the_gateways_of_their_sites_only(
        api: tuple[TestClient, Settings], user: str, gateways: list[str]) -> None:
    assert [g["gateway"] for g in get(api, "", user)["gateways"]] == gateways


@pytest.mark.parametrize(("user", "query", "detail"), [
    ("nordvik-viewer", "site=elbe", "no site 'elbe'"),  # another customer's: as unknown
    ("nordvik-viewer", "site=atlantis", "no site 'atlantis'"),
    ("nordvik-in-de", "site=nordvik", "no site 'nordvik'"),
])
def test_the_callers_scope_bounds_the_site(api: tuple[TestClient, Settings], user: str,
                                           query: str, detail: str) -> None:
    client, settings = api
    assert_refused(client.get(f"{URL}?{SPAN}&{query}", headers=auth(settings, user)), 404,
                   detail)


def test_one_site(api: tuple[TestClient, Settings]) -> None:
    assert [g["gateway"] for g in get(api, "site=nordvik")["gateways"]] == [GW]


OK_RANGE = "from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z"
BAD: list[tuple[str, str]] = [
    ("to=2026-03-03T00:00:00Z", "query.from"),
    ("from=2026-03-02T00:00:00Z", "query.to"),
    ("from=2026-03-02T00:00:00&to=2026-03-03T00:00:00Z", "query.from"),  # no offset
    ("from=soon&to=2026-03-03T00:00:00Z", "query.from"),
    ("from=2026-03-03T00:00:00Z&to=2026-03-02T00:00:00Z", "query.to"),
    ("from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:01Z", "query.to"),  # 31 d + 1 s
    (f"{OK_RANGE}&site=", "query.site"),
    (f"{OK_RANGE}&site={'x' * 201}", "query.site"),
]


@pytest.mark.parametrize(("query", "named"), BAD, ids=[q for q, _ in BAD])
def test_every_invalid_request_is_refused_naming_what_is_wrong(
        api: tuple[TestClient, Settings], query: str, named: str) -> None:
    client, settings = api
    assert_refused(client.get(f"{URL}?{query}", headers=auth(settings)), 422, named)


def test_the_view_needs_a_credential(api: tuple[TestClient, Settings]) -> None:
    client, _ = api
    assert client.get(f"{URL}?{SPAN}").status_code == 401
