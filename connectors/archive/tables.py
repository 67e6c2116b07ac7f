"""The archive's tables: one Parquet schema each, the key that makes a row unique (a later
version of a row — an interval whose end became known — replaces the earlier one), and how
the history store's rows become Arrow columns.

Rows are written sorted by their key, so a reader filtering on an asset (and tag) skips the
row groups of the others by their min/max statistics."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connectors.history.rows import StatusIntervalRow, TelemetryRow
from contracts.events import UnavailabilityEpisode


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema
    key: tuple[str, ...]


TELEMETRY = Table("telemetry", pa.schema([
    ("site_id", pa.string()), ("asset_id", pa.string()), ("tag", pa.string()),
    ("start_ms", pa.int64()), ("count", pa.int64()), ("min", pa.float64()),
    ("max", pa.float64()), ("mean", pa.float64()), ("last", pa.float64()),
]), ("asset_id", "tag", "start_ms"))

STATUS = Table("status_intervals", pa.schema([
    ("site_id", pa.string()), ("asset_id", pa.string()), ("start_ms", pa.int64()),
    ("end_ms", pa.int64()), ("state", pa.string()), ("derate_fraction", pa.float64()),
    ("cause", pa.string()),
]), ("asset_id", "start_ms"))

# The event whole (its tickets) as JSON beside the columns analytics group by, as the
# embedded history store keeps it.
EPISODES = Table("episodes", pa.schema([
    ("episode_id", pa.string()), ("site_id", pa.string()), ("asset_id", pa.string()),
    ("start_ms", pa.int64()), ("end_ms", pa.int64()), ("state", pa.string()),
    ("cause", pa.string()), ("lost_hours", pa.float64()), ("lost_mwh", pa.float64()),
    ("event", pa.string()),
]), ("episode_id",))

# Daily roll-ups of the telemetry (derived: written from the day's telemetry parts, after
# them). One row per series and *piece*: the site's local day cut at each UTC midnight inside
# it, so that a local day is the sum of its pieces and so is a UTC day (the historian's
# buckets of whole days are aligned on UTC midnights) — both combine exactly. Per piece: the
# minute rows (`minutes`), their samples (`count`), min of mins, max of maxes, the sums that
# make the count-weighted mean (`mean_sum` = Σ mean × count) and the plain one (`plain_sum`
# = Σ mean, for minutes without samples), the value integrated as kW over each minute
# (`charge_kwh` = Σ max(−mean, 0) / 60, `discharge_kwh` = Σ max(mean, 0) / 60: the energy of
# a power tag, > 0 discharging; meaningless for other tags), and the first and last minutes
# (`first` that minute's mean, `last` the last minute's last value).
DAILY = Table("daily", pa.schema([
    ("site_id", pa.string()), ("asset_id", pa.string()), ("tag", pa.string()),
    ("start_ms", pa.int64()), ("end_ms", pa.int64()), ("minutes", pa.int64()),
    ("count", pa.int64()), ("min", pa.float64()), ("max", pa.float64()),
    ("mean_sum", pa.float64()), ("plain_sum", pa.float64()), ("charge_kwh", pa.float64()),
    ("discharge_kwh", pa.float64()), ("first_ms", pa.int64()), ("first", pa.float64()),
    ("last_ms", pa.int64()), ("last", pa.float64()),
]), ("asset_id", "tag", "start_ms"))

# Exposure roll-ups (derived, with the daily ones): per series, local day and band spec
# (contracts/battery_health.py `BandSpec`, its exact `key`), the minutes of the day in each
# band — what the battery-health view counts of each unit (`unit_band_specs`), so that a
# year of it reads no minutes. A unit without data that day has a row of zeros; a spec not
# rolled up (another rated energy) is counted from the minutes.
EXPOSURE = Table("exposure", pa.schema([
    ("site_id", pa.string()), ("asset_id", pa.string()), ("tag", pa.string()),
    ("start_ms", pa.int64()), ("end_ms", pa.int64()), ("spec", pa.string()),
    ("minutes", pa.list_(pa.int64())),
]), ("asset_id", "tag", "start_ms", "spec"))

TABLES: tuple[Table, ...] = (TELEMETRY, STATUS, EPISODES)  # exported from the history store
DERIVED: tuple[Table, ...] = (DAILY, EXPOSURE)  # made from the archive's own telemetry

Record = tuple[Any, ...]  # one row, in its table's column order


def telemetry_record(r: TelemetryRow) -> Record:
    return (r.site_id, r.asset_id, r.tag, r.start_ms, r.count, r.min, r.max, r.mean, r.last)


def status_record(r: StatusIntervalRow) -> Record:
    return (r.site_id, r.asset_id, r.start_ms, r.end_ms, r.state, r.derate_fraction, r.cause)


def episode_record(e: UnavailabilityEpisode) -> Record:
    return (e.episode_id, e.site_id, e.asset_id, e.start_ms, e.end_ms, e.state, e.cause,
            e.lost_hours, e.lost_mwh, e.model_dump_json())


def key_of(table: Table, record: Record) -> Record:
    names = table.schema.names
    return tuple(record[names.index(k)] for k in table.key)


def to_arrow(table: Table, records: Sequence[Record]) -> pa.Table:
    columns = list(zip(*records, strict=True)) if records else [()] * len(table.schema)
    return pa.Table.from_arrays(
        [pa.array(list(col), type=field.type) for col, field in zip(columns, table.schema,
                                                                    strict=True)],
        schema=table.schema)


def from_arrow(table: pa.Table) -> list[Record]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns, strict=True)) if columns else []


def sorted_by_key(table: Table, data: pa.Table) -> pa.Table:
    return data.sort_by([(k, "ascending") for k in table.key])


def fingerprint(table: Table, data: pa.Table) -> str:
    """A day's content, whatever order it was read in: sha256 of its rows sorted by key, in
    Arrow's IPC format (exact values; a pyarrow that serializes differently only makes the
    next run compare the rows themselves, and write nothing if they are the same)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(sorted_by_key(table, data))
    digest = hashlib.sha256(table.name.encode())
    digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()
