"""The archive's daily roll-ups (connectors/archive/tables.py `DAILY`): written by the
archiver with each day (and back-filled for days archived without them), idempotent and
compacted like the other tables — and the historian's figures of whole days read from them
equal to those computed from the minutes of the same archive, over local days of 24, 23 (a
DST change) and partial hours, with minutes without samples and a late rewrite."""

from __future__ import annotations

import datetime as dt
import math
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.routes.vendors import vendor_table
from connectors.archive import layout
from connectors.archive.historian import Historian
from connectors.archive.query import ArchiveReader
from connectors.archive.tables import DAILY, EXPOSURE
from connectors.archive.writer import Archiver, RunSummary
from connectors.history import SqliteHistoryStore, TelemetryRow
from connectors.settings import EXAMPLE_FLEET
from contracts.battery_health import (
    C_RATE_EDGES,
    TEMPERATURE_EDGES_C,
    band_of,
    c_rate_spec,
    temperature_spec,
)
from contracts.benchmarking import fleet_bench_assets, integrate_minutes
from contracts.fleet import load_fleet

FLEET = load_fleet(EXAMPLE_FLEET)
SITE = FLEET.site("nordvik")
TZ = SITE.tz
ASSETS = ("nordvik-u01", "nordvik-u02")
TAGS = ("active_power_kw", "soh_pct", "soc_pct")
DAYS = [dt.date(2026, 3, 28) + dt.timedelta(days=i) for i in range(4)]  # 29th: 23 hours
MINUTE, DAY = 60_000, 86_400_000
# A series without samples: its buckets' means are plain ones. Where a bucket is put
# together from two segments (a partial day's minutes and a rolled-up day, or archive and
# history store) the historian averages the two parts' plain means unweighted (it does not
# know their minutes), so only whole-day ranges compare its means exactly.
NO_SAMPLES = ("nordvik-u02", "soc_pct")


def local_ms(day: dt.date, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), TZ).timestamp() * 1000)


NOW = local_ms(DAYS[-1] + dt.timedelta(days=1), 12)  # every day of DAYS is over


def minutes(day: dt.date, rng: random.Random, offset: float = 0.0) -> list[TelemetryRow]:
    """Every minute of the local day but a few (gaps), some without samples (count 0); one
    series never has any (its means are plain ones)."""
    start, end = layout.day_bounds(day, TZ)
    out = []
    for asset in ASSETS:
        for tag in TAGS:
            for t in range(start, end, MINUTE):
                if rng.random() < 0.02:
                    continue
                mean = rng.uniform(-2500, 2500) + offset if tag == "active_power_kw" \
                    else rng.uniform(90, 99)
                n = 0 if (asset, tag) == NO_SAMPLES else rng.choice((0, 59, 60))
                out.append(TelemetryRow(asset, SITE.id, tag, t, n,
                                        mean - rng.random(), mean + rng.random(), mean,
                                        mean + rng.uniform(-1, 1)))
    return out


@pytest.fixture
def history(tmp_path: Path) -> Iterator[SqliteHistoryStore]:
    store = SqliteHistoryStore(tmp_path / "history.db")
    rng = random.Random(20)
    for day in DAYS:
        store.write_telemetry(minutes(day, rng))
    yield store
    store.close()


def archive(root: Path, history: SqliteHistoryStore) -> RunSummary:
    return Archiver(root, history, FLEET, TAGS, lambda _site: None).run(
        NOW, [SITE.id], since=DAYS[0])


def rolled_up(root: Path) -> list[dt.date]:
    return sorted(ArchiveReader(root).archived_days(DAILY, SITE.id, DAYS))


# Whole days, a range starting and ending mid-day, a range beyond the archive.
RANGES = [(local_ms(DAYS[0]), local_ms(DAYS[-1] + dt.timedelta(days=1))),
          (local_ms(DAYS[0], 13, 17), local_ms(DAYS[-1], 6, 3)),
          (local_ms(DAYS[1]), NOW)]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_whole_day_figures_from_the_rollups_equal_those_from_the_minutes(
        tmp_path: Path, history: SqliteHistoryStore, start: int, end: int) -> None:
    root = tmp_path / "archive"
    archive(root, history)
    # A late rewrite of an archived day: a second telemetry part, the roll-ups follow it.
    history.write_telemetry(minutes(DAYS[1], random.Random(3), offset=1000.0)[:500])
    archive(root, history)
    assert rolled_up(root) == DAYS
    h = Historian(history, ArchiveReader(root), FLEET)
    assert any(s.rolled_up for s in h.segments(SITE, start, end, rollups=True))
    series = [(a, t) for a in ASSETS for t in TAGS]
    energy = h.energy(list(ASSETS), "active_power_kw", start, end)
    buckets = {step: h.buckets(series, start, end, step) for step in (DAY, 2 * DAY)}
    units = [a for a in fleet_bench_assets(FLEET, [SITE.id], "unit") if a.asset_id in ASSETS]
    vendors = vendor_table(FLEET, history, h, units, "unit", start, end)
    moved = {step: h.throughput(list(ASSETS), "active_power_kw", start, end, step)
             for step in (DAY, 2 * DAY, 15 * MINUTE)}
    exposure = h.band_minutes([SPECS], start, end)[0]

    shutil.rmtree(root / DAILY.name)  # the same archive, read from its minutes only
    shutil.rmtree(root / EXPOSURE.name)
    h = Historian(history, ArchiveReader(root), FLEET)
    assert not any(s.rolled_up for s in h.segments(SITE, start, end, rollups=True))
    # The throughput and the exposure, from the roll-ups, the archive's minutes, the history
    # store's minutes (no archive) and counted here from them.
    nothing = Historian(history, ArchiveReader(tmp_path / "none"), FLEET)
    oracle_moved, oracle_exposure = counted(history, start, end)
    for step, got_moved in moved.items():
        for other in (h.throughput(list(ASSETS), "active_power_kw", start, end, step),
                      nothing.throughput(list(ASSETS), "active_power_kw", start, end, step),
                      oracle_moved(step)):
            assert got_moved.keys() == other.keys()
            for asset, kwh in got_moved.items():
                assert kwh.keys() == other[asset].keys()
                assert list(kwh.values()) == pytest.approx(list(other[asset].values()),
                                                           rel=1e-12)
    assert sum(exposure[ASSETS[0]]) > 0
    assert exposure == h.band_minutes([SPECS], start, end)[0] == \
        nothing.band_minutes([SPECS], start, end)[0] == oracle_exposure
    assert energy.keys() == h.energy(list(ASSETS), "active_power_kw", start, end).keys()
    for asset, (e, latest) in h.energy(list(ASSETS), "active_power_kw", start, end).items():
        assert energy[asset][1] == latest
        assert energy[asset][0].charge_kwh == pytest.approx(e.charge_kwh, rel=1e-12)
        assert energy[asset][0].discharge_kwh == pytest.approx(e.discharge_kwh, rel=1e-12)
        # … and both the history store's minutes, integrated.
        oracle = integrate_minutes(r.mean for r in history.telemetry(
            asset, "active_power_kw", start, end, MINUTE))
        assert e.charge_kwh == pytest.approx(oracle.charge_kwh, rel=1e-12)
    # The vendor table (efficiency, cycles, fade, freshness) alike.
    minute_path = vendor_table(FLEET, history, h, units, "unit", start, end)
    assert vendors.total.charge_mwh > 0 and vendors.total.fade_pct_per_year is not None
    assert _close(vendors.model_dump(), minute_path.model_dump())
    for step, got in buckets.items():
        want = h.buckets(series, start, end, step)
        assert got.keys() == want.keys()
        for s in series:
            assert [(b.start_ms, b.count, b.min, b.max, b.last) for b in got[s]] == \
                [(b.start_ms, b.count, b.min, b.max, b.last) for b in want[s]]
            if s == NO_SAMPLES and start != local_ms(layout.local_day(start, TZ)):
                continue
            assert [b.mean for b in got[s]] == pytest.approx([b.mean for b in want[s]],
                                                             rel=1e-12)


SPECS = {u.id: c_rate_spec(u) for u in SITE.units if u.id in ASSETS}


def counted(history: SqliteHistoryStore, start: int, end: int) -> tuple[
        Callable[[int], dict[str, dict[int, float]]], dict[str, list[int]]]:
    """The throughput per bucket (a function of the step) and the C-rate minutes per band,
    counted here from the history store's minutes."""
    rows = {a: history.telemetry(a, "active_power_kw", start, end, MINUTE) for a in ASSETS}

    def moved(step: int) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for a, minutes in rows.items():
            for r in minutes:
                bucket = out.setdefault(a, {})
                key = r.start_ms // step * step
                bucket[key] = bucket.get(key, 0.0) + abs(r.mean) / 60
        return out

    bands = {a: [0] * (len(C_RATE_EDGES) + 1) for a in ASSETS}
    for a, minutes in rows.items():
        for r in minutes:
            bands[a][band_of(abs(r.mean) * SPECS[a].scale, C_RATE_EDGES)] += 1
    return moved, bands


def test_the_hottest_cell_is_counted_minute_by_minute(tmp_path: Path) -> None:
    """A unit's temperature exposure: at each minute the hottest of its blocks' (the unit
    reporting none of its own here) — alike from the exposure roll-ups, the archive's
    minutes and the history store's."""
    unit = SITE.units[0]
    spec = temperature_spec(unit)
    blocks = spec.assets[1:]
    assert spec.assets[0] == unit.id and len(blocks) >= 2
    store = SqliteHistoryStore(tmp_path / "history.db")
    day_start, day_end = layout.day_bounds(DAYS[0], TZ)

    def temp(i: int, k: int) -> float:  # a different block the hottest each minute
        return 10.0 + i - (k if i % 2 else -k)

    # Minute 45: only the first block reports.
    store.write_telemetry([
        TelemetryRow(b, SITE.id, "cell_temp_max_c", day_start + i * MINUTE, 60, temp(i, k),
                     temp(i, k), temp(i, k), temp(i, k))
        for i in range(50) for k, b in enumerate(blocks) if i != 45 or k == 0])
    want = [0] * (len(TEMPERATURE_EDGES_C) + 1)
    for i in range(50):
        want[band_of(max(temp(i, k) for k in range(len(blocks)) if i != 45 or k == 0),
                     TEMPERATURE_EDGES_C)] += 1
    assert sum(1 for n in want if n) >= 3
    specs = {unit.id: spec}
    nothing = Historian(store, ArchiveReader(tmp_path / "none"), FLEET)
    assert nothing.band_minutes([specs], day_start, day_end) == [{unit.id: want}]
    root = tmp_path / "archive"
    Archiver(root, store, FLEET, ["cell_temp_max_c"], lambda _site: None).run(
        NOW, [SITE.id], since=DAYS[0])
    assert ArchiveReader(root).archived_days(EXPOSURE, SITE.id, DAYS) == {DAYS[0]}
    archived = Historian(store, ArchiveReader(root), FLEET)
    assert archived.band_minutes([specs], day_start, day_end) == [{unit.id: want}]
    shutil.rmtree(root / EXPOSURE.name)  # the archive's minutes
    assert archived.band_minutes([specs], day_start, day_end) == [{unit.id: want}]
    store.close()


def _close(a: object, b: object) -> bool:
    """Equal, floats within 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_rollups_are_written_once_backfilled_when_missing_and_compacted(
        tmp_path: Path, history: SqliteHistoryStore) -> None:
    root = tmp_path / "archive"
    first = archive(root, history)
    daily = [r for r in first.rollups if r.table == DAILY.name]
    assert [(r.day, r.part is not None) for r in daily] == [(d, True) for d in DAYS]
    # A piece per series and UTC day the local day touches: two (local midnight is 23:00
    # or 22:00 UTC).
    assert {r.rows for r in daily} == {len(ASSETS) * len(TAGS) * 2}
    # The exposure: each unit of the site and spec (C-rate, hottest cell), with data or not.
    exposure = [r for r in first.rollups if r.table == EXPOSURE.name]
    assert [(r.day, r.part is not None) for r in exposure] == [(d, True) for d in DAYS]
    assert {r.rows for r in exposure} == {len(SITE.units) * 2}
    assert all(r.part is None for r in archive(root, history).rollups)  # unchanged: nothing

    # An archive written before the roll-ups: the next run back-fills every archived day,
    # not only those of its look-back window.
    for day in DAYS:
        shutil.rmtree(layout.day_dir(root, DAILY.name, SITE.id, day))
        if day != DAYS[0]:
            shutil.rmtree(layout.day_dir(root, EXPOSURE.name, SITE.id, day))
    again = Archiver(root, history, FLEET, TAGS, lambda _site: None).run(
        NOW, [SITE.id], lookback_days=1)
    assert sorted((r.table, r.day) for r in again.rollups if r.part is not None) == sorted(
        [(DAILY.name, d) for d in DAYS] + [(EXPOSURE.name, d) for d in DAYS[1:]])
    assert rolled_up(root) == DAYS

    # Late rows: a part of the changed roll-ups only; compaction merges them like any table.
    history.write_telemetry(minutes(DAYS[0], random.Random(5), offset=7.0)[:10])
    late = archive(root, history)
    (changed,) = [r for r in late.rollups if r.part is not None and r.table == DAILY.name]
    assert (changed.day, changed.rows) == (DAYS[0], 1)  # only u01's first piece moved
    directory = layout.day_dir(root, DAILY.name, SITE.id, DAYS[0])
    assert len(layout.parts(directory)) == 2
    Archiver(root, history, FLEET, TAGS, lambda _site: None).compact([SITE.id])
    assert len(layout.parts(directory)) == 1
    assert all(r.part is None for r in archive(root, history).rollups)
