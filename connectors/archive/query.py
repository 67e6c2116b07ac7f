"""DuckDB over the archive: embedded, no server, the Parquet files opened read-only — and
only those of the partitions a query needs (its sites' local days), listed before DuckDB
sees them; inside a file, rows sorted by asset and tag let DuckDB skip the row groups of
other series by their statistics.

A day's parts are versions (layout.py): each row is taken from the latest part holding its
key, so a day read halfway through a compaction gives the same rows as before and after."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from connectors.archive import layout
from connectors.archive.tables import Table
from connectors.history.rows import TelemetryRow

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

    def files(self, table: Table, site_id: str, days: Iterable[dt.date]) -> list[Path]:
        """The parts of these days of one site (partition pruning: no other file is read)."""
        return [p for day in days
                for p in layout.parts(layout.day_dir(self.root, table.name, site_id, day))]

    def archived_days(self, table: Table, site_id: str, days: Iterable[dt.date]
                      ) -> set[dt.date]:
        return {day for day in days
                if layout.parts(layout.day_dir(self.root, table.name, site_id, day))}

    @staticmethod
    def _one_version(sql: str, files: Sequence[Path]) -> str:
        """`sql` without the search for each row's latest version when no day has two
        parts (a compacted archive, mostly): a key is unique within a part, and that search
        is most of a query's time."""
        if len({p.parent for p in files}) == len(files):
            return sql.replace(LATEST_ONLY, "")
        return sql

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(":memory:", config={"threads": self.threads})

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
