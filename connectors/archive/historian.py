"""Telemetry history for analytics, whichever place holds it: the archive (Parquet, through
DuckDB) for the days archived, the history store's read methods for the others — the recent
days not closed or not exported yet. A range is cut at the site's local day boundaries into
segments of one kind each, read in time order and put together; no segment is read twice.

Figures of whole days — the energy a power tag moved, buckets of whole days (count, min, max,
mean combine exactly) — are read from the archive's daily roll-ups (tables.py `DAILY`) for
the archived days that have them and lie whole in the range; the minutes are read only for
the rest (a range's partial first and last days, days not archived or not rolled up)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from connectors.archive import layout
from connectors.archive.query import ArchiveReader, one_kind
from connectors.archive.tables import DAILY, EXPOSURE, TELEMETRY, telemetry_record, to_arrow
from connectors.history.rows import TelemetryRow
from connectors.history.store import HistoryStore
from contracts.battery_health import BandSpec, band_of
from contracts.benchmarking import Energy, integrate_minutes
from contracts.fleet import Fleet, Site

MINUTE_MS = 60_000
DAY_MS = 86_400_000
Series = tuple[str, str]  # (asset_id, tag)


@dataclass(frozen=True)
class Segment:
    """`[start_ms, end_ms)` of one site, read from the archive's `files` (when given) or
    from the history store."""

    start_ms: int
    end_ms: int
    files: tuple[Path, ...] = ()
    rollups: tuple[Path, ...] = ()  # whole days: their daily roll-ups, read instead

    @property
    def archived(self) -> bool:
        return bool(self.files)

    @property
    def rolled_up(self) -> bool:
        return bool(self.rollups)


def merge_bucket(earlier: TelemetryRow, later: TelemetryRow) -> TelemetryRow:
    """One bucket from two parts of it (a bucket across a segment boundary)."""
    n = earlier.count + later.count
    mean = ((earlier.mean * earlier.count + later.mean * later.count) / n if n > 0
            else (earlier.mean + later.mean) / 2)
    return TelemetryRow(later.asset_id, later.site_id, later.tag, earlier.start_ms, n,
                        min(earlier.min, later.min), max(earlier.max, later.max), mean,
                        later.last)


class Historian:
    def __init__(self, history: HistoryStore, reader: ArchiveReader, fleet: Fleet) -> None:
        self.history = history
        self.reader = reader
        self.fleet = fleet

    def segments(self, site: Site, start_ms: int, end_ms: int, *, rollups: bool = False
                 ) -> list[Segment]:
        """The range cut into runs of days of one kind: archived, in the history store only
        — and with `rollups`, archived days lying whole in the range that have roll-ups."""
        days = layout.days_overlapping(start_ms, end_ms, site.tz)
        archived = self.reader.archived_days(TELEMETRY, site.id, days)
        if not archived:
            return [Segment(start_ms, end_ms)] if days else []
        rolled = self.reader.archived_days(DAILY, site.id, archived) if rollups else set()
        out: list[Segment] = []
        for day in days:
            day_start, day_end = layout.day_bounds(day, site.tz)
            s, e = max(start_ms, day_start), min(end_ms, day_end)
            whole = (s, e) == (day_start, day_end)
            seg = Segment(s, e)
            if day in rolled and whole:
                seg = Segment(s, e, rollups=tuple(self.reader.files(DAILY, site.id, [day])))
            elif day in archived:
                seg = Segment(s, e, tuple(self.reader.files(TELEMETRY, site.id, [day])))
            last = out[-1] if out else None
            if last is not None and (last.archived, last.rolled_up) == (
                    seg.archived, seg.rolled_up) and last.end_ms == s:
                out[-1] = Segment(last.start_ms, e, last.files + seg.files,
                                  last.rollups + seg.rollups)
            else:
                out.append(seg)
        return out

    def _site(self, asset_id: str) -> Site:
        return self.fleet.site(self.fleet.assets[asset_id].site_id)

    def minute_rows(self, asset_id: str, tag: str, start_ms: int, end_ms: int
                    ) -> Iterator[TelemetryRow]:
        """The series' per-minute rows in `[start_ms, end_ms)`, oldest first."""
        for seg in self.segments(self._site(asset_id), start_ms, end_ms):
            if seg.archived:
                yield from self.reader.telemetry(seg.files, [asset_id], [tag], seg.start_ms,
                                                 seg.end_ms)
            else:
                yield from self.history.telemetry(asset_id, tag, seg.start_ms, seg.end_ms,
                                                  MINUTE_MS)

    def minute_table(self, asset_ids: Sequence[str], tags: Sequence[str], start_ms: int,
                     end_ms: int) -> pa.Table:
        """The per-minute rows of every series of `asset_ids` × `tags` in `[start_ms,
        end_ms)` as one Arrow table (the archive's telemetry columns), by series — assets and
        tags in the order given — then time: one archive query per site and run of archived
        days, the history store's minutes for the rest."""
        parts: list[pa.Table] = []
        by_site: dict[str, list[str]] = {}
        for asset_id in asset_ids:
            by_site.setdefault(self.fleet.assets[asset_id].site_id, []).append(asset_id)
        for site_id, assets in by_site.items():
            for seg in self.segments(self.fleet.site(site_id), start_ms, end_ms):
                if seg.archived:
                    parts.append(self.reader.telemetry_table(seg.files, assets, tags,
                                                             seg.start_ms, seg.end_ms))
                else:
                    parts.append(to_arrow(TELEMETRY, [
                        telemetry_record(r) for asset_id in assets for tag in tags
                        for r in self.history.telemetry(asset_id, tag, seg.start_ms,
                                                        seg.end_ms, MINUTE_MS)]))
        if not parts:
            return TELEMETRY.schema.empty_table()
        table = pa.concat_tables(parts)
        order = pc.sort_indices(pa.table({
            "a": pc.index_in(table["asset_id"], value_set=pa.array(list(asset_ids))),
            "t": pc.index_in(table["tag"], value_set=pa.array(list(tags))),
            "s": table["start_ms"]}), sort_keys=[("a", "ascending"), ("t", "ascending"),
                                                 ("s", "ascending")])
        return table.take(order)

    def buckets(self, series: Sequence[Series], start_ms: int, end_ms: int, step_ms: int
                ) -> dict[Series, list[TelemetryRow]]:
        """Each series re-aggregated to `step_ms` (buckets on multiples of it since the
        epoch; a multiple of a minute), oldest first; a series without data has none. With
        `step_ms` whole days, the days rolled up are read from their roll-ups."""
        whole_days = step_ms % DAY_MS == 0
        out: dict[Series, dict[int, TelemetryRow]] = {s: {} for s in series}
        by_site: dict[str, list[Series]] = {}
        for asset_id, tag in series:
            by_site.setdefault(self.fleet.assets[asset_id].site_id, []).append((asset_id, tag))
        for site_id, site_series in by_site.items():
            assets = sorted({a for a, _ in site_series})
            tags = sorted({t for _, t in site_series})
            for seg in self.segments(self.fleet.site(site_id), start_ms, end_ms,
                                     rollups=whole_days):
                if seg.rolled_up:
                    rows = [r for r in self.reader.daily_buckets(
                        seg.rollups, assets, tags, seg.start_ms, seg.end_ms, step_ms)
                        if (r.asset_id, r.tag) in out]
                elif seg.archived:
                    rows = [r for r in self.reader.telemetry_buckets(
                        seg.files, assets, tags, seg.start_ms, seg.end_ms, step_ms)
                        if (r.asset_id, r.tag) in out]
                else:
                    rows = [r for asset_id, tag in site_series
                            for r in self.history.telemetry(asset_id, tag, seg.start_ms,
                                                            seg.end_ms, step_ms)]
                for r in rows:
                    buckets = out[(r.asset_id, r.tag)]
                    before = buckets.get(r.start_ms)
                    buckets[r.start_ms] = r if before is None else merge_bucket(before, r)
        return {s: [b[k] for k in sorted(b)] for s, b in out.items()}

    def _by_site(self, asset_ids: Iterable[str]) -> dict[str, list[str]]:
        by_site: dict[str, list[str]] = {}
        for asset_id in asset_ids:
            by_site.setdefault(self.fleet.assets[asset_id].site_id, []).append(asset_id)
        return by_site

    def throughput(self, asset_ids: Sequence[str], tag: str, start_ms: int, end_ms: int,
                   step_ms: int) -> dict[str, dict[int, float]]:
        """Per asset with data, the energy its power `tag` (kW) moved either way (kWh,
        charged plus discharged) in each bucket of `step_ms` (aligned as `buckets`') in
        `[start_ms, end_ms)`: from the roll-ups for whole days rolled up (`step_ms` whole
        days), the archived minutes for other archived days, the history store's minutes for
        the rest."""
        out: dict[str, dict[int, float]] = {}

        def add(asset_id: str, bucket_ms: int, kwh: float) -> None:
            buckets = out.setdefault(asset_id, {})
            buckets[bucket_ms] = buckets.get(bucket_ms, 0.0) + kwh

        for site_id, assets in self._by_site(asset_ids).items():
            for seg in self.segments(self.fleet.site(site_id), start_ms, end_ms,
                                     rollups=step_ms % DAY_MS == 0):
                if seg.archived or seg.rolled_up:
                    for asset_id, bucket_ms, kwh in self.reader.throughput(
                            seg.rollups or seg.files, assets, tag, seg.start_ms, seg.end_ms,
                            step_ms, daily=seg.rolled_up):
                        add(asset_id, bucket_ms, kwh)
                    continue
                for asset_id in assets:
                    for r in self.history.telemetry(asset_id, tag, seg.start_ms, seg.end_ms,
                                                    MINUTE_MS):
                        add(asset_id, r.start_ms // step_ms * step_ms, abs(r.mean) / 60)
        return out

    def band_minutes(self, kinds: Sequence[Mapping[str, BandSpec]], start_ms: int,
                     end_ms: int) -> list[dict[str, list[int]]]:
        """For each of `kinds` (owner → its spec, contracts/battery_health.py `BandSpec`:
        one tag, edges and magnitude for all of a kind; the assets and scale each its own),
        per owner with data, the minutes in `[start_ms, end_ms)` in each band of its spec:
        at each minute the largest of its assets' values. The whole days whose exposure
        roll-ups (tables.py `EXPOSURE`) hold every owner's very spec of a kind are read
        from them (for every kind in one query); the rest is counted from the minutes — in
        DuckDB for the days archived, here from the history store's for the others."""
        results: list[dict[str, list[int]]] = [{} for _ in kinds]
        owners = {o for specs in kinds for o in specs}
        for site_id, site_owners in self._by_site(sorted(owners)).items():
            site = self.fleet.site(site_id)
            mine = [{o: specs[o] for o in site_owners if o in specs} for specs in kinds]
            rolled = self._exposure_days(site, mine, start_ms, end_ms)
            for out, specs, days in zip(results, mine, rolled, strict=True):
                if specs:
                    self._count_bands(site, specs, days, start_ms, end_ms, out)
        return [{o: m for o, m in out.items() if any(m)} for out in results]

    def _count_bands(self, site: Site, specs: Mapping[str, BandSpec],
                     rolled: Mapping[int, dict[str, list[int]]], start_ms: int, end_ms: int,
                     out: dict[str, list[int]]) -> None:
        """`band_minutes` of one kind at one site into `out`: the days `rolled` up (by day
        start) from their roll-ups, the others from the minutes."""
        tag, edges, magnitude = one_kind(specs.values())

        def add(owner: str, minutes: Sequence[int]) -> None:
            total = out.setdefault(owner, [0] * (len(edges) + 1))
            for i, n in enumerate(minutes):
                total[i] += n

        ranges: list[tuple[int, int]] = []  # what is counted from the minutes
        for day in layout.days_overlapping(start_ms, end_ms, site.tz):
            day_start, day_end = layout.day_bounds(day, site.tz)
            if day_start in rolled:
                for owner, minutes in rolled[day_start].items():
                    add(owner, minutes)
                continue
            s, e = max(start_ms, day_start), min(end_ms, day_end)
            if ranges and ranges[-1][1] == s:
                ranges[-1] = (ranges[-1][0], e)
            else:
                ranges.append((s, e))
        for s, e in ranges:
            for seg in self.segments(site, s, e):
                if seg.archived:
                    for owner, minutes in self.reader.band_minutes(
                            seg.files, specs, seg.start_ms, seg.end_ms).items():
                        add(owner, minutes)
                    continue
                values: dict[tuple[str, int], float] = {}  # (owner, minute) → largest
                for owner, spec in specs.items():
                    for asset_id in spec.assets:
                        for r in self.history.telemetry(asset_id, tag, seg.start_ms,
                                                        seg.end_ms, MINUTE_MS):
                            v = (abs(r.mean) if magnitude else r.mean) * spec.scale
                            key = (owner, r.start_ms)
                            values[key] = max(v, values.get(key, v))
                for (owner, _), v in values.items():
                    out.setdefault(owner, [0] * (len(edges) + 1))[band_of(v, edges)] += 1

    def _exposure_days(self, site: Site, kinds: Sequence[Mapping[str, BandSpec]],
                       start_ms: int, end_ms: int) -> list[dict[int, dict[str, list[int]]]]:
        """Per kind, the whole days of `[start_ms, end_ms)` (by start) whose exposure
        roll-ups hold every owner's spec of the kind, with their minutes per band by
        owner — read in one query for all kinds."""
        days = layout.days_overlapping(start_ms, end_ms, site.tz)
        whole = [d for d in self.reader.archived_days(EXPOSURE, site.id, days)
                 if start_ms <= layout.day_bounds(d, site.tz)[0]
                 and layout.day_bounds(d, site.tz)[1] <= end_ms]
        rows = self.reader.exposure(self.reader.files(EXPOSURE, site.id, whole),
                                    [(o, s) for specs in kinds for o, s in specs.items()],
                                    start_ms, end_ms)
        out: list[dict[int, dict[str, list[int]]]] = []
        for specs in kinds:
            keys = {o: s.key for o, s in specs.items()}
            rolled: dict[int, dict[str, list[int]]] = {}
            for day in whole:
                day_start = layout.day_bounds(day, site.tz)[0]
                got = {o: rows.get((o, key, day_start)) for o, key in keys.items()}
                if specs and all(m is not None for m in got.values()):
                    rolled[day_start] = {o: m for o, m in got.items() if m is not None}
            out.append(rolled)
        return out

    def energy(self, asset_ids: Sequence[str], tag: str, start_ms: int, end_ms: int
               ) -> dict[str, tuple[Energy, int]]:
        """Per asset with data, the energy its power `tag` (kW, > 0 discharging) moved in
        `[start_ms, end_ms)` — from the roll-ups of the whole days rolled up, summed from
        the minutes in the archive for the other days archived, integrated here from the
        history store's minutes for the rest — and its latest minute."""
        out: dict[str, tuple[Energy, int]] = {}

        def add(asset_id: str, energy: Energy, latest_ms: int) -> None:
            before = out.get(asset_id)
            out[asset_id] = (energy, latest_ms) if before is None else (
                before[0] + energy, max(before[1], latest_ms))

        by_site: dict[str, list[str]] = {}
        for asset_id in asset_ids:
            by_site.setdefault(self.fleet.assets[asset_id].site_id, []).append(asset_id)
        for site_id, assets in by_site.items():
            for seg in self.segments(self.fleet.site(site_id), start_ms, end_ms,
                                     rollups=True):
                if seg.rolled_up:
                    for asset_id, (charge, discharge, latest) in self.reader.daily_energy(
                            seg.rollups, assets, tag, seg.start_ms, seg.end_ms).items():
                        add(asset_id, Energy(charge, discharge), latest)
                    continue
                if seg.archived:
                    for asset_id, (charge, discharge, latest) in self.reader.energy(
                            seg.files, assets, tag, seg.start_ms, seg.end_ms).items():
                        add(asset_id, Energy(charge, discharge), latest)
                    continue
                for asset_id in assets:
                    rows = self.history.telemetry(asset_id, tag, seg.start_ms, seg.end_ms,
                                                  MINUTE_MS)
                    if rows:
                        add(asset_id, integrate_minutes(r.mean for r in rows),
                            rows[-1].start_ms)
        return out
