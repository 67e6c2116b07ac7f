"""DuckDB over the archive: embedded, no server, the Parquet files opened read-only — and
only those of the partitions a query needs (its sites' local days), listed before DuckDB
sees them; inside a file, rows sorted by asset and tag let DuckDB skip the row groups of
other series by their statistics.

A day's parts are versions (layout.py): each row is taken from the latest part holding its
key, so a day read halfway through a compaction gives the same rows as before and after."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from connectors.archive import layout
from connectors.archive.tables import TELEMETRY, Table
from connectors.history.rows import TelemetryRow
from contracts.battery_health import BandSpec

DAY_MS = 86_400_000
THREADS = 2  # analytics share the machine with the live path: never every core

# $files: the partitions' parts; the latest version of each (asset, tag, minute).
TELEMETRY_ROWS = """
    SELECT site_id, asset_id, tag, start_ms, "count", "min", "max", "mean", "last"
    FROM read_parquet($files, filename = true, hive_partitioning = false)
    WHERE list_contains($assets, asset_id) AND list_contains($tags, tag)
      AND start_ms >= $start AND start_ms < $end
    QUALIFY row_number() OVER (PARTITION BY asset_id, tag, start_ms ORDER BY filename DESC) = 1
    ORDER BY asset_id, tag, start_ms"""
LATEST_ONLY = """
    QUALIFY row_number() OVER (PARTITION BY asset_id, tag, start_ms ORDER BY filename DESC) = 1"""

# Re-aggregated to `$step` (buckets aligned on its multiples since the epoch), as the
# history store's `telemetry` does: counts summed, min of mins, max of maxes, count-weighted
# mean, last of the latest minute.
TELEMETRY_BUCKETS = f"""
    WITH latest AS ({TELEMETRY_ROWS.replace("ORDER BY asset_id, tag, start_ms", "")})
    SELECT any_value(site_id), asset_id, tag, (start_ms // $step) * $step AS bucket_ms,
           sum("count"), min("min"), max("max"),
           CASE WHEN sum("count") > 0 THEN sum("mean" * "count") / sum("count")
                ELSE avg("mean") END,
           arg_max("last", start_ms)
    FROM latest
    GROUP BY asset_id, tag, bucket_ms
    ORDER BY asset_id, tag, bucket_ms"""

# Per asset: the energy charged and discharged, each minute moving mean/60 kWh (a negative
# mean charging), and the latest minute (contracts/benchmarking.py `integrate_minutes`).
TELEMETRY_ENERGY = f"""
    WITH latest AS ({TELEMETRY_ROWS.replace("ORDER BY asset_id, tag, start_ms", "")})
    SELECT asset_id, sum(greatest(-"mean", 0)) / 60, sum(greatest("mean", 0)) / 60,
           max(start_ms)
    FROM latest
    GROUP BY asset_id
    ORDER BY asset_id"""

# The daily roll-ups (tables.py `DAILY`) of one day's telemetry parts: $start/$end the local
# day, pieces cut at UTC midnights. Sums in time order: the same rows give the same bits
# however they lie in the parts (before and after a compaction), so an unchanged day has an
# unchanged fingerprint.
DAILY_OF_DAY = f"""
    WITH latest AS (
        SELECT site_id, asset_id, tag, start_ms, "count", "min", "max", "mean", "last",
               (start_ms // {DAY_MS}) * {DAY_MS} AS utc_day
        FROM read_parquet($files, filename = true, hive_partitioning = false)
        WHERE start_ms >= $start AND start_ms < $end
        {LATEST_ONLY})
    SELECT any_value(site_id), asset_id, tag, greatest(utc_day, $start) AS piece_ms,
           least(utc_day + {DAY_MS}, $end), count(*), sum("count")::BIGINT, min("min"),
           max("max"), sum("mean" * "count" ORDER BY start_ms),
           sum("mean" ORDER BY start_ms), sum(greatest(-"mean", 0) ORDER BY start_ms) / 60,
           sum(greatest("mean", 0) ORDER BY start_ms) / 60, min(start_ms),
           arg_min("mean", start_ms),
           max(start_ms), arg_max("last", start_ms)
    FROM latest
    GROUP BY asset_id, tag, utc_day
    ORDER BY asset_id, tag, piece_ms"""

# $files: daily parts; the latest version of each (asset, tag, piece).
DAILY_ROWS = f"""
    SELECT * FROM read_parquet($files, filename = true, hive_partitioning = false)
    WHERE list_contains($assets, asset_id) AND list_contains($tags, tag)
      AND start_ms >= $start AND start_ms < $end
    {LATEST_ONLY}"""

# Whole-day buckets (`$step` a multiple of a day: a piece lies in one bucket) from the
# pieces, exactly as TELEMETRY_BUCKETS makes them from the minutes.
DAILY_BUCKETS = f"""
    WITH latest AS ({DAILY_ROWS})
    SELECT any_value(site_id), asset_id, tag, (start_ms // $step) * $step AS bucket_ms,
           sum("count"), min("min"), max("max"),
           CASE WHEN sum("count") > 0 THEN sum(mean_sum) / sum("count")
                ELSE sum(plain_sum) / sum(minutes) END,
           arg_max("last", last_ms)
    FROM latest
    GROUP BY asset_id, tag, bucket_ms
    ORDER BY asset_id, tag, bucket_ms"""

DAILY_ENERGY = f"""
    WITH latest AS ({DAILY_ROWS})
    SELECT asset_id, sum(charge_kwh), sum(discharge_kwh), max(last_ms)
    FROM latest
    GROUP BY asset_id
    ORDER BY asset_id"""

# Per asset and bucket of `$step`: the energy its power moved either way (kWh, each minute
# |mean| / 60: charged plus discharged, the throughput cycles are counted from).
TELEMETRY_THROUGHPUT = f"""
    WITH latest AS ({TELEMETRY_ROWS.replace("ORDER BY asset_id, tag, start_ms", "")})
    SELECT asset_id, (start_ms // $step) * $step AS bucket_ms, sum(abs("mean")) / 60
    FROM latest
    GROUP BY asset_id, bucket_ms
    ORDER BY asset_id, bucket_ms"""

# The same from the daily roll-ups (`$step` whole days).
DAILY_THROUGHPUT = f"""
    WITH latest AS ({DAILY_ROWS})
    SELECT asset_id, (start_ms // $step) * $step AS bucket_ms,
           sum(charge_kwh + discharge_kwh)
    FROM latest
    GROUP BY asset_id, bucket_ms
    ORDER BY asset_id, bucket_ms"""


def bands_sql(edges: int, grouped: bool) -> str:
    """Per owner, the minutes of its value and how many of them lie at or above each edge
    (`$e0` … ascending): at each minute the largest of its assets' means (or of their
    magnitudes, with `$magnitude`) times its `scale` — `grouped` when an owner has several
    assets, else each asset's own. `$assets[k]` belongs to `$owners[k]`, scaled by
    `$scales[k]`. (Counts at or above each edge, not a band per minute: one group per owner
    is several times faster.)"""
    value = 'CASE WHEN $magnitude THEN abs("mean") ELSE "mean" END'
    rows = TELEMETRY_ROWS.replace("ORDER BY asset_id, tag, start_ms", "")
    per_minute = (f"""SELECT owner, max({value}) * any_value(scale) AS v
        FROM latest JOIN owned USING (asset_id)
        GROUP BY owner, start_ms""" if grouped else f"""SELECT owner, {value} * scale AS v
        FROM latest JOIN owned USING (asset_id)""")
    at_or_above = "".join(f", count_if(v >= $e{i})" for i in range(edges))
    return f"""
    WITH latest AS ({rows}),
    owned AS (SELECT unnest($assets) AS asset_id, unnest($owners) AS owner,
                     unnest($scales) AS scale),
    per_minute AS ({per_minute})
    SELECT owner, count(*){at_or_above}
    FROM per_minute
    GROUP BY owner
    ORDER BY owner"""


# The exposure roll-ups of `$assets[k]` for spec `$specs[k]` (tables.py `EXPOSURE`).
EXPOSURE_ROWS = """
    WITH wanted AS (SELECT unnest($assets) AS asset_id, unnest($specs) AS spec)
    SELECT asset_id, spec, start_ms, minutes
    FROM read_parquet($files, filename = true, hive_partitioning = false)
         JOIN wanted USING (asset_id, spec)
    WHERE start_ms >= $start AND start_ms < $end
    QUALIFY row_number() OVER (PARTITION BY asset_id, tag, start_ms, spec
                               ORDER BY filename DESC) = 1"""
EXPOSURE_LATEST = EXPOSURE_ROWS[EXPOSURE_ROWS.index("\n    QUALIFY"):]


def bands_from_counts(counts: Sequence[int]) -> list[int]:
    """Minutes per band from `bands_sql`'s counts: all minutes, then those at or above each
    edge."""
    above = [*counts, 0]
    return [above[i] - above[i + 1] for i in range(len(counts))]


def one_kind(specs: Iterable[BandSpec]) -> tuple[str, tuple[float, ...], bool]:
    """The tag, edges and magnitude that all of `specs` share (their scales may differ)."""
    kinds = {(s.tag, s.edges, s.magnitude) for s in specs}
    if len(kinds) != 1:
        raise ValueError(f"band specs of {len(kinds)} kinds in one count: {sorted(kinds)}")
    return kinds.pop()


# For the export: the minutes of several series at once, as Arrow, by series (in the order
# asked) and time.
TELEMETRY_TABLE = TELEMETRY_ROWS.replace(
    "ORDER BY asset_id, tag, start_ms",
    "ORDER BY list_position($assets, asset_id), list_position($tags, tag), start_ms")


def row(record: tuple[Any, ...]) -> TelemetryRow:
    """A result row (the archive's column order: site first) as the history store's row."""
    site_id, asset_id, tag, start_ms, n, vmin, vmax, vmean, vlast = record
    return TelemetryRow(str(asset_id), str(site_id), str(tag), int(start_ms), int(n),
                        float(vmin), float(vmax), float(vmean), float(vlast))


class ArchiveReader:
    """Reads the archive at `root`; safe beside a running archive writer (it lists whole
    parts only, and a part is never changed once renamed into place)."""

    def __init__(self, root: Path, *, threads: int = THREADS) -> None:
        self.root = root
        self.threads = threads
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def files(self, table: Table, site_id: str, days: Iterable[dt.date]) -> list[Path]:
        """The parts of these days of one site (partition pruning: no other file is read)."""
        return [p for day in days
                for p in layout.parts(layout.day_dir(self.root, table.name, site_id, day))]

    def archived_days(self, table: Table, site_id: str, days: Iterable[dt.date]
                      ) -> set[dt.date]:
        """Those of `days` with a part (the site's directory listed once: a year of days
        not archived costs one listing)."""
        site_dir = layout.day_dir(self.root, table.name, site_id, dt.date.min).parent
        try:
            present = set(os.listdir(site_dir))
        except FileNotFoundError:
            return set()
        return {day for day in days if f"day={day.isoformat()}" in present
                and layout.parts(site_dir / f"day={day.isoformat()}")}

    @staticmethod
    def _one_version(sql: str, files: Sequence[Path]) -> str:
        """`sql` without the search for each row's latest version when no day has two
        parts (a compacted archive, mostly): a key is unique within a part, and that search
        is most of a query's time."""
        if len({p.parent for p in files}) == len(files):
            return sql.replace(LATEST_ONLY, "").replace(EXPOSURE_LATEST, "")
        return sql

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the reader's one in-memory DuckDB (made at its first query: a
        database costs ~15 ms, a view's queries are many; a cursor is cheap, and one per
        query lets a view run several at once from its threads)."""
        with self._lock:
            if self._db is None:
                self._db = duckdb.connect(":memory:", config={"threads": self.threads})
            cursor = self._db.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _run(self, sql: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
        with self._connect() as db:
            return db.execute(sql, params).fetchall()

    def telemetry(self, files: Sequence[Path], asset_ids: Sequence[str], tags: Sequence[str],
                  start_ms: int, end_ms: int) -> list[TelemetryRow]:
        """The per-minute rows of these series in `[start_ms, end_ms)`, by asset, tag and
        time."""
        if not files or not asset_ids or not tags:
            return []
        params = self._params(files, asset_ids, tags, start_ms, end_ms)
        records = self._run(self._one_version(TELEMETRY_ROWS, files), params)
        return [row(r) for r in records]

    def telemetry_buckets(self, files: Sequence[Path], asset_ids: Sequence[str],
                          tags: Sequence[str], start_ms: int, end_ms: int, step_ms: int
                          ) -> list[TelemetryRow]:
        """The rows re-aggregated to `step_ms`, one per series and bucket (`start_ms` the
        bucket's)."""
        if not files or not asset_ids or not tags:
            return []
        params = {**self._params(files, asset_ids, tags, start_ms, end_ms), "step": step_ms}
        return [row(r) for r in self._run(self._one_version(TELEMETRY_BUCKETS, files),
                                          params)]

    def telemetry_table(self, files: Sequence[Path], asset_ids: Sequence[str],
                        tags: Sequence[str], start_ms: int, end_ms: int) -> pa.Table:
        """The per-minute rows of these series in `[start_ms, end_ms)` as one Arrow table
        (the archive's columns), by series in the order of `asset_ids` and `tags`, then
        time."""
        if not files or not asset_ids or not tags:
            return TELEMETRY.schema.empty_table()
        params = self._params(files, asset_ids, tags, start_ms, end_ms)
        with self._connect() as db:
            out = db.sql(self._one_version(TELEMETRY_TABLE, files),
                         params=params).to_arrow_table()
        return pa.table(out).cast(TELEMETRY.schema)

    def daily_of_day(self, files: Sequence[Path], start_ms: int, end_ms: int
                     ) -> list[tuple[Any, ...]]:
        """The roll-up records (tables.py `DAILY`, its column order) of one day's telemetry
        parts, the day being `[start_ms, end_ms)`; sorted by key."""
        if not files:
            return []
        return self._run(self._one_version(DAILY_OF_DAY, files),
                         {"files": [str(p) for p in files], "start": start_ms, "end": end_ms})

    def daily_buckets(self, files: Sequence[Path], asset_ids: Sequence[str],
                      tags: Sequence[str], start_ms: int, end_ms: int, step_ms: int
                      ) -> list[TelemetryRow]:
        """As `telemetry_buckets`, from the daily parts `files` (`step_ms` a multiple of a
        day; the pieces starting in `[start_ms, end_ms)`)."""
        if step_ms % DAY_MS:
            raise ValueError(f"a step of {step_ms} ms is not whole days")
        if not files or not asset_ids or not tags:
            return []
        params = {**self._params(files, asset_ids, tags, start_ms, end_ms), "step": step_ms}
        return [row(r) for r in self._run(self._one_version(DAILY_BUCKETS, files), params)]

    def daily_energy(self, files: Sequence[Path], asset_ids: Sequence[str], tag: str,
                     start_ms: int, end_ms: int) -> dict[str, tuple[float, float, int]]:
        """As `energy`, from the daily parts `files` (the pieces starting in the range)."""
        if not files or not asset_ids:
            return {}
        params = self._params(files, asset_ids, [tag], start_ms, end_ms)
        return {str(a): (float(c), float(d), int(t))
                for a, c, d, t in self._run(self._one_version(DAILY_ENERGY, files), params)}

    def throughput(self, files: Sequence[Path], asset_ids: Sequence[str], tag: str,
                   start_ms: int, end_ms: int, step_ms: int, *, daily: bool = False
                   ) -> list[tuple[str, int, float]]:
        """(asset, bucket start, kWh) per asset and bucket of `step_ms` with rows of the
        power `tag` in `[start_ms, end_ms)`: the energy it moved either way — from the
        minutes, or with `daily` from the daily parts `files` (`step_ms` whole days)."""
        if daily and step_ms % DAY_MS:
            raise ValueError(f"a step of {step_ms} ms is not whole days")
        if not files or not asset_ids:
            return []
        params = {**self._params(files, asset_ids, [tag], start_ms, end_ms), "step": step_ms}
        sql = DAILY_THROUGHPUT if daily else TELEMETRY_THROUGHPUT
        return [(str(a), int(b), float(kwh))
                for a, b, kwh in self._run(self._one_version(sql, files), params)]

    def band_minutes(self, files: Sequence[Path], specs: Mapping[str, BandSpec],
                     start_ms: int, end_ms: int) -> dict[str, list[int]]:
        """Per owner (`specs`: owner → its spec, contracts/battery_health.py `BandSpec`:
        one tag, edges and magnitude for all, the assets and scale each its own) with rows,
        the minutes in `[start_ms, end_ms)` in each band, as `bands_sql` counts them."""
        owners = {a: o for o, spec in specs.items() for a in spec.assets}
        if not files or not owners:
            return {}
        tag, edges, magnitude = one_kind(specs.values())
        params: dict[str, object] = {
            **self._params(files, list(owners), [tag], start_ms, end_ms),
            "owners": list(owners.values()),
            "scales": [float(specs[o].scale) for o in owners.values()],
            "magnitude": magnitude, **{f"e{i}": float(e) for i, e in enumerate(edges)}}
        grouped = len(owners) > len(specs)
        out: dict[str, list[int]] = {}
        for owner, *counts in self._run(
                self._one_version(bands_sql(len(edges), grouped), files), params):
            out[str(owner)] = bands_from_counts([int(n) for n in counts])
        return out

    def exposure(self, files: Sequence[Path], wanted: Sequence[tuple[str, BandSpec]],
                 start_ms: int, end_ms: int) -> dict[tuple[str, str, int], list[int]]:
        """The exposure roll-ups (tables.py `EXPOSURE`, the parts `files`) of the `wanted`
        (owner, spec) pairs for the days starting in `[start_ms, end_ms)`: minutes per band
        by (owner, spec key, day start)."""
        if not files or not wanted:
            return {}
        params = {"files": [str(p) for p in files], "assets": [o for o, _ in wanted],
                  "specs": [s.key for _, s in wanted], "start": start_ms, "end": end_ms}
        return {(str(a), str(k), int(t)): [int(n) for n in minutes]
                for a, k, t, minutes in self._run(self._one_version(EXPOSURE_ROWS, files),
                                                  params)}

    @staticmethod
    def _params(files: Sequence[Path], asset_ids: Sequence[str], tags: Sequence[str],
                start_ms: int, end_ms: int) -> dict[str, object]:
        return {"files": [str(p) for p in files], "assets": list(asset_ids),
                "tags": list(tags), "start": start_ms, "end": end_ms}

    def energy(self, files: Sequence[Path], asset_ids: Sequence[str], tag: str,
               start_ms: int, end_ms: int) -> dict[str, tuple[float, float, int]]:
        """Per asset with rows of the power `tag` (kW, > 0 discharging) in `[start_ms,
        end_ms)`: (charged kWh, discharged kWh, start of its latest minute)."""
        if not files or not asset_ids:
            return {}
        params = self._params(files, asset_ids, [tag], start_ms, end_ms)
        return {str(a): (float(c), float(d), int(t))
                for a, c, d, t in self._run(self._one_version(TELEMETRY_ENERGY, files),
                                            params)}
