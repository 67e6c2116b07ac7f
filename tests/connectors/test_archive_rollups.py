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
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.routes.vendors import vendor_table
from connectors.archive import layout
from connectors.archive.historian import Historian
from connectors.archive.query import ArchiveReader
from connectors.archive.tables import DAILY
from connectors.archive.writer import Archiver, RunSummary
from connectors.history import SqliteHistoryStore, TelemetryRow
from connectors.settings import EXAMPLE_FLEET
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

    shutil.rmtree(root / DAILY.name)  # the same archive, read from its minutes only
    h = Historian(history, ArchiveReader(root), FLEET)
    assert not any(s.rolled_up for s in h.segments(SITE, start, end, rollups=True))
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
    assert [(r.day, r.part is not None) for r in first.rollups] == [(d, True) for d in DAYS]
    # A piece per series and UTC day the local day touches: two (local midnight is 23:00
    # or 22:00 UTC).
    assert {r.rows for r in first.rollups} == {len(ASSETS) * len(TAGS) * 2}
    assert all(r.part is None for r in archive(root, history).rollups)  # unchanged: nothing

    # An archive written before the roll-ups: the next run back-fills every archived day,
    # not only those of its look-back window.
    for day in DAYS:
        shutil.rmtree(layout.day_dir(root, DAILY.name, SITE.id, day))
    again = Archiver(root, history, FLEET, TAGS, lambda _site: None).run(
        NOW, [SITE.id], lookback_days=1)
    assert sorted(r.day for r in again.rollups if r.part is not None) == DAYS
    assert rolled_up(root) == DAYS

    # Late rows: a part of the changed roll-ups only; compaction merges them like any table.
    history.write_telemetry(minutes(DAYS[0], random.Random(5), offset=7.0)[:10])
    late = archive(root, history)
    (changed,) = [r for r in late.rollups if r.part is not None]
    assert (changed.day, changed.rows) == (DAYS[0], 1)  # only u01's first piece moved
    directory = layout.day_dir(root, DAILY.name, SITE.id, DAYS[0])
    assert len(layout.parts(directory)) == 2
    Archiver(root, history, FLEET, TAGS, lambda _site: None).compact([SITE.id])
    assert len(layout.parts(directory)) == 1
    assert all(r.part is None for r in archive(root, history).rollups)
