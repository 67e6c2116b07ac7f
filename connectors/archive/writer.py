"""The archive's writer: closed days of the history store, read through its query methods
(so the embedded SQLite store and QuestDB alike), into Parquet (layout.py).

A day of a site is closed when the flows have made all of it final — its local end is at or
before the site's `final_ms`, the rule the scheduled reports wait on (api/reports/archive.py)
— and it is over. Each run looks at the closed days of a look-back window (7 days unless told
`since`): a day whose content fingerprint is the one archived writes nothing; one that
changed (late data, a backfill) gets a part holding only its new and changed rows; a day of
more than `MAX_PARTS` parts is compacted into one. After a day's telemetry, its daily
roll-ups (tables.py `DAILY`) are made from the archived telemetry parts and written by the
same rules; a run also back-fills the roll-ups of every archived day of its sites that has
none (an archive written before them). The live history is only read, never
written or locked for long: each query is one short read of the store."""

from __future__ import annotations

import datetime as dt
import fcntl
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from connectors.archive import layout
from connectors.archive.query import ArchiveReader
from connectors.archive.tables import (
    DAILY,
    DERIVED,
    EPISODES,
    EXPOSURE,
    STATUS,
    TABLES,
    TELEMETRY,
    Record,
    Table,
    episode_record,
    fingerprint,
    from_arrow,
    key_of,
    sorted_by_key,
    status_record,
    telemetry_record,
    to_arrow,
)
from connectors.history.store import HistoryStore
from contracts.battery_health import BandSpec, unit_band_specs
from contracts.fleet import Fleet, Site

MINUTE_MS = 60_000
LOOKBACK_DAYS = 7
MAX_PARTS = 4  # a day with more is compacted into one
ROW_GROUP_ROWS = 16 * 1024  # about one battery unit-day of 10 tags: a series read skips the rest


class ArchiveLocked(RuntimeError):
    """Another archive run holds the archive."""


@dataclass(frozen=True)
class TableDay:
    """What one run did to one table's day: `rows` written to `part` (None: nothing new)."""

    table: str
    site_id: str
    day: dt.date
    rows_in_history: int
    rows: int = 0
    part: Path | None = None
    compacted: bool = False


@dataclass
class RunSummary:
    days: int = 0  # site-days looked at
    written: int = 0  # site-days with a part written
    results: list[TableDay] = field(default_factory=list)
    removed_temp_files: int = 0
    rollups: list[TableDay] = field(default_factory=list)  # `DAILY`, `EXPOSURE`


def read_parts(paths: Sequence[Path], table: Table) -> dict[tuple[object, ...], Record]:
    """The rows of a day's parts by key, a later part's version of a row winning."""
    merged: dict[tuple[object, ...], Record] = {}
    for path in paths:
        for record in from_arrow(pq.read_table(path, schema=table.schema, partitioning=None)):
            merged[key_of(table, record)] = record
    return merged


def write_part(path: Path, table: Table, records: Sequence[Record]) -> None:
    data = sorted_by_key(table, to_arrow(table, records))
    layout.write_atomically(path, lambda temp: pq.write_table(
        data, temp, compression="zstd", row_group_size=ROW_GROUP_ROWS))


class Archiver:
    """Exports closed days of `history` for the sites of `fleet` into the archive at `root`.
    `tags` are the canonical tags (the monitoring file's): the telemetry of a day is read
    per asset and tag. `final_ms_of(site)` is how far the flows have made the site's history
    final — None when no flows report (an imported history: final as it stands), 0 when
    they have not said yet (nothing is final)."""

    def __init__(self, root: Path, history: HistoryStore, fleet: Fleet, tags: Iterable[str],
                 final_ms_of: Callable[[str], int | None]) -> None:
        self.root = root
        self.history = history
        self.fleet = fleet
        self.tags = sorted(set(tags))
        self.final_ms_of = final_ms_of

    # -- which days --------------------------------------------------------------------

    def last_closed_day(self, site: Site, now_ms: int) -> dt.date | None:
        final_ms = self.final_ms_of(site.id)
        limit_ms = now_ms if final_ms is None else min(now_ms, final_ms)
        if limit_ms <= 0:
            return None
        day = layout.local_day(limit_ms - 1, site.tz)
        if layout.day_bounds(day, site.tz)[1] > limit_ms:
            day -= dt.timedelta(days=1)
        return day

    def closed_days(self, site: Site, now_ms: int, since: dt.date | None = None,
                    lookback_days: int = LOOKBACK_DAYS) -> list[dt.date]:
        """The closed days to look at, oldest first: from `since` (default: the look-back
        window's first) to the last closed one."""
        last = self.last_closed_day(site, now_ms)
        if last is None:
            return []
        first = since if since is not None else last - dt.timedelta(days=lookback_days - 1)
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    # -- reading the history -------------------------------------------------------------

    def _asset_ids(self, site: Site) -> list[str]:
        return sorted(a.id for a in self.fleet.assets.values() if a.site_id == site.id)

    def history_records(self, table: Table, site: Site, day: dt.date) -> list[Record]:
        """The day's rows of one table as the history store gives them: telemetry rows
        starting in the day, status intervals and episodes starting in it."""
        start_ms, end_ms = layout.day_bounds(day, site.tz)
        assets = self._asset_ids(site)
        if table is TELEMETRY:
            return [telemetry_record(r) for asset_id in assets for tag in self.tags
                    for r in self.history.telemetry(asset_id, tag, start_ms, end_ms, MINUTE_MS)]
        if table is STATUS:
            return [status_record(r)
                    for r in self.history.status_intervals(assets, start_ms, end_ms)
                    if start_ms <= r.start_ms < end_ms]
        if table is EPISODES:
            return [episode_record(e) for e in self.history.episodes(assets, start_ms, end_ms)
                    if start_ms <= e.start_ms < end_ms]
        raise ValueError(f"no table {table.name!r}")

    # -- writing ------------------------------------------------------------------------

    def export_table_day(self, table: Table, site: Site, day: dt.date) -> TableDay:
        """One table's day into the archive: nothing when its fingerprint is the archived
        one; else a part of the rows new or changed since (none: only the fingerprint)."""
        return write_table_day(self.root, table, site.id, day,
                               self.history_records(table, site, day))

    def run(self, now_ms: int, site_ids: Sequence[str] | None = None,
            since: dt.date | None = None, lookback_days: int = LOOKBACK_DAYS,
            on_day: Callable[[int, int, list[TableDay]], None] | None = None) -> RunSummary:
        """Every closed day of the window of the sites (all by default), each table; calls
        `on_day(done, total, results)` after each site-day (progress)."""
        summary = RunSummary()
        with self.lock():
            summary.removed_temp_files = remove_temp_files(self.root)
            sites = [s for s in self.fleet.sites if site_ids is None or s.id in site_ids]
            plan = [(site, day) for site in sites
                    for day in self.closed_days(site, now_ms, since, lookback_days)]
            for i, (site, day) in enumerate(plan, 1):
                results = [self.export_table_day(table, site, day) for table in TABLES]
                summary.rollups.extend(rollup_day(self.root, site, day))
                summary.days += 1
                summary.results.extend(results)
                if any(r.part is not None for r in results):
                    summary.written += 1
                if on_day is not None:
                    on_day(i, len(plan), results)
            for site in sites:  # days archived before there were roll-ups
                for day in days_without_rollups(self.root, site.id):
                    summary.rollups.extend(rollup_day(self.root, site, day))
        return summary

    def compact(self, site_ids: Sequence[str] | None = None) -> list[Path]:
        """Every day of more than one part merged into one; the days' directories."""
        done = []
        with self.lock():
            remove_temp_files(self.root)
            for table in (*TABLES, *DERIVED):
                for directory in sorted((self.root / table.name).glob("site=*/day=*")):
                    site_id = directory.parent.name.removeprefix("site=")
                    if site_ids is not None and site_id not in site_ids:
                        continue
                    if len(layout.parts(directory)) > 1:
                        compact_day(directory, table)
                        done.append(directory)
        return done

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time (part numbers would collide): an exclusive `flock`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ArchiveLocked(f"{self.root}: another archive run is writing it") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def write_table_day(root: Path, table: Table, site_id: str, day: dt.date,
                    records: Sequence[Record]) -> TableDay:
    """`records`, the whole of a table's day, into the archive: nothing when their
    fingerprint is the archived one; else a part of the rows new or changed since (none: only
    the fingerprint); a day of more than `MAX_PARTS` parts compacted."""
    directory = layout.day_dir(root, table.name, site_id, day)
    fp = fingerprint(table, to_arrow(table, records))
    fp_file = directory / layout.FINGERPRINT
    existing = layout.parts(directory)
    done = TableDay(table.name, site_id, day, len(records))
    if not records and not existing:
        return done  # nothing of the day anywhere: no empty directories
    if fp_file.is_file() and fp_file.read_text(encoding="ascii").strip() == fp:
        return done
    archived = read_parts(existing, table)
    new = [r for r in records if archived.get(key_of(table, r)) != r]
    part = None
    if new:
        part = layout.next_part(directory)
        write_part(part, table, new)
    layout.write_atomically(fp_file, lambda temp: temp.write_text(fp + "\n", encoding="ascii"))
    compacted = False
    if len(layout.parts(directory)) > MAX_PARTS:
        compact_day(directory, table)
        compacted = True
    return TableDay(table.name, site_id, day, len(records), len(new), part, compacted)


def rollup_day(root: Path, site: Site, day: dt.date) -> list[TableDay]:
    """The day's roll-ups (tables.py `DAILY` and `EXPOSURE`) made from its archived
    telemetry parts and written as any table's day (fingerprint, changed rows only,
    compaction). DuckDB on one thread: the same parts give the same sums to the bit, so an
    unchanged day writes nothing."""
    start_ms, end_ms = layout.day_bounds(day, site.tz)
    reader = ArchiveReader(root, threads=1)
    files = reader.files(TELEMETRY, site.id, [day])
    records = [tuple(r) for r in reader.daily_of_day(files, start_ms, end_ms)]
    return [write_table_day(root, DAILY, site.id, day, records),
            write_table_day(root, EXPOSURE, site.id, day,
                            exposure_records(reader, files, site, start_ms, end_ms))]


def exposure_records(reader: ArchiveReader, files: Sequence[Path], site: Site, start_ms: int,
                     end_ms: int) -> list[Record]:
    """Each unit's exposure (contracts/battery_health.py `unit_band_specs`) over the day
    `[start_ms, end_ms)` from its telemetry parts `files`; zeros for a unit without data
    (none at all without parts)."""
    if not files:
        return []
    out: list[Record] = []
    by_kind: dict[tuple[str, tuple[float, ...], bool], dict[str, BandSpec]] = {}
    for unit in site.units:
        for spec in unit_band_specs(unit):
            by_kind.setdefault((spec.tag, spec.edges, spec.magnitude), {})[unit.id] = spec
    for (tag, edges, _), specs in by_kind.items():
        counted = reader.band_minutes(files, specs, start_ms, end_ms)
        out.extend((site.id, unit_id, tag, start_ms, end_ms, spec.key,
                    counted.get(unit_id, [0] * (len(edges) + 1)))
                   for unit_id, spec in specs.items())
    return out


def days_without_rollups(root: Path, site_id: str) -> list[dt.date]:
    """The days of a site whose telemetry is archived and whose roll-ups (either kind) were
    never written (an archive older than them): what a run back-fills."""
    out = []
    for directory in sorted((root / TELEMETRY.name / f"site={site_id}").glob("day=*")):
        day = dt.date.fromisoformat(directory.name.removeprefix("day="))
        if layout.parts(directory) and not all(
                (layout.day_dir(root, t.name, site_id, day) / layout.FINGERPRINT).is_file()
                for t in DERIVED):
            out.append(day)
    return out


def compact_day(directory: Path, table: Table) -> Path:
    """The day's parts merged into one new part (the latest version of each row), then the
    old parts removed. A crash in between leaves the old parts beside the merged one: readers
    take each row's latest version, so they read the same rows either way."""
    old = layout.parts(directory)
    merged = layout.next_part(directory)
    write_part(merged, table, list(read_parts(old, table).values()))
    for path in old:
        path.unlink()
    layout.fsync_dir(directory)
    return merged


def remove_temp_files(root: Path) -> int:
    """Temporary files of interrupted writes (only while holding the lock: a running
    writer's own would be taken from under it)."""
    n = 0
    for path in layout.temp_files(root):
        path.unlink(missing_ok=True)
        n += 1
    return n
