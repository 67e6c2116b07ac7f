"""The historian's routes (api/routes/historian.py) on the real app, a real Redis and the
embedded history store filled through its own write methods, two of its three days archived
(connectors/archive/): what is exported is the history — read back from CSV and from
Parquet — the downsampled series hold it whole, the caller's scope bounds both, and every
invalid request is refused with the parameter named."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from connectors.archive import archive_root
from connectors.archive.writer import Archiver
from connectors.audit import AuditLog
from connectors.history import SqliteHistoryStore, TelemetryRow
from connectors.settings import Settings
from contracts.fleet import load_fleet
from tests.api.accounts import auth
from tests.api.errors import assert_refused

FLEET = load_fleet(Settings().fleet_file)
TZ = FLEET.site("nordvik").tz
D1, D2, D3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 4)
MINUTE = 60_000
SERIES = [(a, t) for a in ("nordvik-u01", "nordvik-u02") for t in ("soc_pct", "active_power_kw")]
FROM, TO = "2026-03-02T00:00:00+01:00", "2026-03-05T00:00:00+01:00"  # D1..D3, local
SPAN = f"from={FROM.replace('+', '%2B')}&to={TO.replace('+', '%2B')}"
WANTED = "assets=nordvik-u01,nordvik-u02&tags=soc_pct,active_power_kw"


def local_ms(day: dt.date, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), TZ).timestamp() * 1000)


def rows(day: dt.date) -> list[TelemetryRow]:
    """Each series' 20 minutes around 23:50 local: the day's last ten and the next one's
    first ten, across the archive's day boundary."""
    start = local_ms(day, 23, 50)
    return [TelemetryRow(a, FLEET.assets[a].site_id, t, start + i * MINUTE, 60 - i % 3,
                         i - 0.5, i + 0.75, i + 0.1 * len(t), i + 0.3)
            for a, t in [*SERIES, ("elbe-u01", "soc_pct")] for i in range(20)]


@pytest.fixture(scope="module")
def api(redis_url: str, accounts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient, Settings, SqliteHistoryStore]]:
    users, key = accounts
    settings = Settings(REDIS_URL=redis_url, run_dir=tmp_path_factory.mktemp("historian"),
                        users_file=users, jwt_key_file=key)
    history = SqliteHistoryStore(settings.run_dir / "history.db")
    for day in (D1 - dt.timedelta(days=1), D1, D2, D3):
        history.write_telemetry(rows(day))
    summary = Archiver(archive_root(settings), history, FLEET, ["soc_pct", "active_power_kw"],
                       lambda _site: None).run(local_ms(D3, 12), ["nordvik"], since=D1)
    assert summary.written == 2  # D1, D2; D3 is in the history only
    with TestClient(create_app(settings)) as client:
        yield client, settings, history
    history.close()


def expected(history: SqliteHistoryStore, series: list[tuple[str, str]] = SERIES
             ) -> list[TelemetryRow]:
    start, end = local_ms(D1), local_ms(D3 + dt.timedelta(days=1))
    return [r for a, t in series for r in history.telemetry(a, t, start, end, MINUTE)]


def test_the_csv_export_is_the_history_and_is_audited(
        api: tuple[TestClient, Settings, SqliteHistoryStore]) -> None:
    client, settings, history = api
    audit = AuditLog(client.app.state.ctx.store)  # type: ignore[attr-defined]
    answer = client.get(f"/api/v1/telemetry/export?{WANTED}&{SPAN}&format=csv",
                        headers=auth(settings, "nordvik-manager"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == \
        'attachment; filename="telemetry-2026-03-01T230000Z-2026-03-04T230000Z.csv"'
    records = list(csv.DictReader(io.StringIO(answer.text)))
    got = [TelemetryRow(r["asset_id"], r["site_id"], r["tag"],
                        int(dt.datetime.fromisoformat(r["time"]).timestamp() * 1000),
                        int(r["count"]), float(r["min"]), float(r["max"]), float(r["mean"]),
                        float(r["last"])) for r in records]
    want = expected(history)
    # Per series: D1's first ten minutes (written with the day before), D1's and D2's 20,
    # D3's last ten (its next ten are after `to`).
    assert len(want) == 4 * 60
    assert got == want
    entry = audit.entries(limit=100_000)[-1]
    assert (entry.actor, entry.action, entry.target) == \
        ("nordvik-manager", "telemetry.export", "nordvik-u01,nordvik-u02")
    assert entry.details == {"tags": ["soc_pct", "active_power_kw"], "format": "csv",
                             "from_ms": local_ms(D1),
                             "to_ms": local_ms(D3 + dt.timedelta(days=1))}


def test_the_parquet_export_is_the_history(
        api: tuple[TestClient, Settings, SqliteHistoryStore]) -> None:
    client, settings, history = api
    answer = client.get(f"/api/v1/telemetry/export?{WANTED}&{SPAN}&format=parquet",
                        headers=auth(settings, "contract_manager"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(answer.content))
    assert table.schema.names == ["time", "site_id", "asset_id", "tag", "count", "min", "max",
                                  "mean", "last"]
    got = [TelemetryRow(r["asset_id"], r["site_id"], r["tag"],
                        int(r["time"].timestamp() * 1000), r["count"], r["min"], r["max"],
                        r["mean"], r["last"]) for r in table.to_pylist()]
    assert got == expected(history)


def test_the_historian_downsamples_every_series_to_at_most_n_points(
        api: tuple[TestClient, Settings, SqliteHistoryStore]) -> None:
    client, settings, history = api
    answer = client.get(f"/api/v1/analytics/historian?{WANTED}&{SPAN}&points=7",
                        headers=auth(settings, "nordvik-viewer"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["step_ms"] % MINUTE == 0 and body["from_ms"] == local_ms(D1)
    assert [(s["asset_id"], s["tag"]) for s in body["series"]] == SERIES
    assert {s["unit"] for s in body["series"]} == {"%", "kW"}
    for s in body["series"]:
        minutes = expected(history, [(s["asset_id"], s["tag"])])
        assert 0 < len(s["points"]) <= 7
        assert sum(p["count"] for p in s["points"]) == sum(r.count for r in minutes)
        assert min(p["min"] for p in s["points"]) == min(r.min for r in minutes)
        assert max(p["max"] for p in s["points"]) == max(r.max for r in minutes)
        for p in s["points"]:
            inside = [r for r in minutes if p["start_ms"] <= r.start_ms
                      < p["start_ms"] + body["step_ms"]]
            assert p["count"] == sum(r.count for r in inside)
            assert p["avg"] == pytest.approx(sum(r.mean * r.count for r in inside)
                                             / p["count"])
    # Fine enough for every minute: the per-minute rows themselves.
    fine = client.get(f"/api/v1/analytics/historian?assets=nordvik-u01&tags=soc_pct&{SPAN}"
                      "&points=5000", headers=auth(settings, "viewer")).json()
    assert fine["step_ms"] == MINUTE
    assert [(p["start_ms"], p["min"], p["avg"], p["max"]) for p in fine["series"][0]["points"]] \
        == [(r.start_ms, r.min, r.mean, r.max)
            for r in expected(history, [("nordvik-u01", "soc_pct")])]


@pytest.mark.parametrize(("user", "path", "status", "detail"), [
    # Another customer's asset is answered as one that does not exist.
    ("nordvik-manager", "/api/v1/telemetry/export?assets=nordvik-u01,elbe-u01&tags=soc_pct",
     404, "no asset 'elbe-u01'"),
    ("de-engineer", "/api/v1/analytics/historian?assets=nordvik-u01&tags=soc_pct", 404,
     "no asset 'nordvik-u01'"),
    ("nordvik-in-de", "/api/v1/analytics/historian?assets=nordvik-u01&tags=soc_pct", 404,
     "no asset 'nordvik-u01'"),
    # Exports are `reports.export`'s, as the compliance reports.
    ("nordvik-viewer", "/api/v1/telemetry/export?assets=nordvik-u01&tags=soc_pct", 403,
     "role viewer may not reports.export"),
    ("engineer", "/api/v1/telemetry/export?assets=nordvik-u01&tags=soc_pct", 403,
     "role engineer may not reports.export"),
])
def test_the_callers_scope_and_role_bound_both_routes(
        api: tuple[TestClient, Settings, SqliteHistoryStore], user: str, path: str,
        status: int, detail: str) -> None:
    client, settings, _ = api
    answer = client.get(f"{path}&{SPAN}", headers=auth(settings, user))
    assert (answer.status_code, answer.json()["detail"]) == (status, detail)


def test_a_caller_sees_their_own_sites_series(
        api: tuple[TestClient, Settings, SqliteHistoryStore]) -> None:
    client, settings, _ = api
    answer = client.get(f"/api/v1/analytics/historian?assets=elbe-u01&tags=soc_pct&{SPAN}",
                        headers=auth(settings, "de-engineer"))
    assert answer.status_code == 200
    assert sum(p["count"] for p in answer.json()["series"][0]["points"]) > 0


EXPORT = "/api/v1/telemetry/export"
HISTORIAN = "/api/v1/analytics/historian"
OK_RANGE = "from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z"
BAD: list[tuple[str, str, int, str]] = [
    (EXPORT, f"assets=atlantis-u01&tags=soc_pct&{OK_RANGE}", 404, "no asset 'atlantis-u01'"),
    (EXPORT, f"assets=nordvik-u01&tags=soc_pct,pressure_bar&{OK_RANGE}", 422, "query.tags"),
    (EXPORT, f"assets=nordvik-u01&tags=soc_pct&{OK_RANGE}&format=xlsx", 422, "query.format"),
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=2026-03-03T00:00:00Z"
             "&to=2026-03-03T00:00:00Z", 422, "query.to"),
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=2026-03-03T00:00:00Z"
             "&to=2026-03-02T00:00:00Z", 422, "query.to"),
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=2026-01-01T00:00:00Z"
             "&to=2026-02-01T00:00:01Z", 422, "query.to"),  # 31 days and a second
    (HISTORIAN, "assets=nordvik-u01&tags=soc_pct&from=2025-01-01T00:00:00Z"
                "&to=2026-02-06T00:00:00Z", 422, "query.to"),  # 401 days
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=2026-03-02T00:00:00"
             "&to=2026-03-03T00:00:00Z", 422, "query.from"),  # no offset
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=yesterday&to=2026-03-03T00:00:00Z", 422,
     "query.from"),
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=1960-01-01T00:00:00Z"
             "&to=2026-03-03T00:00:00Z", 422, "query.from"),
    (EXPORT, f"tags=soc_pct&{OK_RANGE}", 422, "query.assets"),
    (EXPORT, f"assets=nordvik-u01&{OK_RANGE}", 422, "query.tags"),
    (EXPORT, "assets=nordvik-u01&tags=soc_pct&from=2026-03-02T00:00:00Z", 422, "query.to"),
    (EXPORT, f"assets=nordvik-u01,,nordvik-u02&tags=soc_pct&{OK_RANGE}", 422, "query.assets"),
    (EXPORT, f"assets=nordvik-u01&tags=soc%20pct&{OK_RANGE}", 422, "query.tags"),
    (HISTORIAN, f"assets=nordvik-u01&tags=soc_pct&{OK_RANGE}&points=1", 422, "query.points"),
    (HISTORIAN, f"assets=nordvik-u01&tags=soc_pct&{OK_RANGE}&points=5001", 422,
     "query.points"),
    (HISTORIAN, f"assets=nordvik-u01&tags=soc_pct&{OK_RANGE}&points=many", 422,
     "query.points"),
    # 6 assets × 10 tags: more than the historian's 50 series.
    (HISTORIAN, "assets=" + ",".join(f"nordvik-u0{i}" for i in range(1, 7))
     + "&tags=status_code,active_power_kw,available_power_kw,available_energy_kwh,soc_pct,"
       f"soh_pct,load_pct,alarm_word,temperature_c,cell_temp_max_c&{OK_RANGE}", 422,
     "query.tags"),
]


@pytest.mark.parametrize(("path", "query", "status", "named"), BAD,
                         ids=[f"{p.rsplit('/', 1)[1]}-{i}" for i, (p, *_) in enumerate(BAD)])
def test_every_invalid_request_is_refused_naming_what_is_wrong(
        api: tuple[TestClient, Settings, SqliteHistoryStore], path: str, query: str,
        status: int, named: str) -> None:
    client, settings, _ = api
    assert_refused(client.get(f"{path}?{query}", headers=auth(settings, "admin")), status,
                   named)


def test_an_unknown_tag_is_named_with_the_known_ones(
        api: tuple[TestClient, Settings, SqliteHistoryStore]) -> None:
    client, settings, _ = api
    answer = client.get(f"{EXPORT}?assets=nordvik-u01&tags=soc_pct,pressure_bar&{OK_RANGE}",
                        headers=auth(settings, "admin"))
    (error,) = answer.json()["errors"]
    assert error["msg"].startswith("unknown tag 'pressure_bar' (known: active_power_kw, ")


@pytest.mark.parametrize("path", [EXPORT, HISTORIAN])
def test_no_credential_no_answer(api: tuple[TestClient, Settings, SqliteHistoryStore],
                                 path: str) -> None:
    client, _, _ = api
    answer = client.get(f"{path}?assets=nordvik-u01&tags=soc_pct&{OK_RANGE}")
    assert answer.status_code == 401


def test_an_unencoded_plus_of_the_offset_is_read_as_one(
        api: tuple[TestClient, Settings, SqliteHistoryStore]) -> None:
    client, settings, _ = api
    answer = client.get(f"{HISTORIAN}?assets=nordvik-u01&tags=soc_pct&from={FROM}&to={TO}",
                        headers=auth(settings, "admin"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["from_ms"] == local_ms(D1)
