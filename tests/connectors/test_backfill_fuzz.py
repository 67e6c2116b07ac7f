"""Fuzzing `bessmon backfill`: exports in CSV, JSON Lines and Parquet (telemetry wide and
long, status) made from the simulator's recorded physics, then broken the ways exports
break — cells replaced by wrong types, NaN/inf, huge or out-of-range numbers, impossible,
out-of-range, future, offset-less, ambiguous or non-existent local times, unknown assets,
control characters; rows cut short, extended, duplicated or put out of order; columns
dropped, renamed or repeated; files truncated, emptied, re-encoded, sprinkled with NUL or
non-UTF-8 bytes, or replaced by random bytes; Parquet columns of other types; broken
mappings — and run through the real command (`infra.cli.main`, in-process) into the real
broker.

The property: the command never raises; it exits 0 or 2. Exit 2 names the file (the export
or the mapping) and, for a bad cell, its row and column, on one line; nothing from a refused
file reaches Kafka. Files that are still valid (among them the unmutated ones and harmless
variations: CRLF, a byte-order mark, blank lines, extra columns, other column orders) import
exactly what they hold."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.backfill.service import check, prepare
from connectors.kafka import ensure_topics, read_topic
from connectors.settings import EXAMPLE_MONITORING, Settings, get_settings
from contracts.errors import InvalidInput
from contracts.events import MAX_MS, MIN_DEVICE_MS, StatusChange, TelemetrySample
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from infra.cli import main
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.record import record

TZ = ZoneInfo("Europe/Stockholm")
START = int(dt.datetime(2026, 9, 1, tzinfo=TZ).timestamp() * 1000)
STEP = 60_000
MINUTES = 3
TAGS = {"SOC": "soc_pct", "P_kW": "active_power_kw", "State": "status_code",
        "Temp": "temperature_c"}
EXAMPLES = 500
MONITORING = load_monitoring(EXAMPLE_MONITORING)

Expected = list[tuple[str, int, tuple[tuple[str, tuple[tuple[str, float], ...]], ...]]]


def _fleet_text() -> str:
    return fleet_yaml(generate_fleet(1, units_per_site=2, inverters_per_unit=1,
                                     blocks_per_inverter=1))


FLEET = Fleet.model_validate(yaml.safe_load(_fleet_text()))
SAMPLES = list(record(FLEET, START, START + MINUTES * STEP, STEP, seed=4, device_type=None))
NAMES = {"Unit A": "nordvik-u01", "Unit B": "nordvik-u02"}


@dataclass
class Export:
    """An export as rows of values, written out by `form`; what a valid one holds."""

    kind: str  # telemetry | status
    form: str  # csv | jsonl | parquet
    columns: list[str]
    rows: list[dict[str, Any]]
    mapping: dict[str, Any]
    types: dict[str, pa.DataType] = field(default_factory=dict)  # Parquet column types
    expected: Expected | list[tuple[str, int, str, float | None, str | None]] = field(
        default_factory=list)


def _local(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, TZ)


def _expected_samples() -> Expected:
    return [(s.device_id, s.ts_ms, tuple((a.id, tuple(sorted(
        (t, float(v)) for t, v in a.tags.items() if t in TAGS.values()))) for a in s.assets))
        for s in SAMPLES]


def telemetry_export(variant: int) -> Export:
    """Wide CSV with a local pattern, wide CSV with ISO offsets and asset names, long JSONL
    in epoch ms, wide JSONL in epoch s, wide Parquet with a timestamp column, long Parquet
    in epoch ms."""
    back = {v: k for k, v in NAMES.items()}
    wide = variant in (0, 1, 3, 4)
    rows: list[dict[str, Any]] = []
    for s in SAMPLES:
        for a in s.assets:
            when: Any = {0: _local(s.ts_ms).strftime("%Y-%m-%d %H:%M:%S"),
                         1: _local(s.ts_ms).isoformat(), 2: s.ts_ms, 3: s.ts_ms / 1000,
                         4: _local(s.ts_ms), 5: s.ts_ms}[variant]
            asset = back.get(a.id, a.id) if variant in (1, 2) else a.id
            if wide:
                row = {"time": when, "asset": asset}
                for column, tag in TAGS.items():
                    value = a.tags.get(tag)
                    row[column] = (None if value is None else float(value)) \
                        if variant in (3, 4) else ("" if value is None else value)
                rows.append(row)
            else:
                rows += [{"time": when, "asset": asset, "signal": column,
                          "value": float(a.tags[tag])}
                         for column, tag in TAGS.items() if tag in a.tags]
    timestamp = {0: {"column": "time", "format": "%Y-%m-%d %H:%M:%S",
                     "timezone": "Europe/Stockholm"},
                 1: {"column": "time"}, 2: {"column": "time", "format": "epoch_ms"},
                 3: {"column": "time", "format": "epoch_s"}, 4: {"column": "time"},
                 5: {"column": "time", "format": "epoch_ms"}}[variant]
    mapping: dict[str, Any] = {"kind": "telemetry", "timestamp": timestamp,
                               "asset": {"column": "asset"}}
    if variant in (1, 2):
        mapping["asset"]["names"] = NAMES
    if wide:
        mapping["columns"] = TAGS
        columns = ["time", "asset", *TAGS]
    else:
        mapping.update(tag_column="signal", value_column="value", tag_names=TAGS)
        columns = ["time", "asset", "signal", "value"]
    form = {0: "csv", 1: "csv", 2: "jsonl", 3: "jsonl", 4: "parquet", 5: "parquet"}[variant]
    types = {"time": pa.timestamp("ms", tz="UTC"), "asset": pa.string(),
             **{c: pa.float64() for c in TAGS}} if variant == 4 else \
        {"time": pa.int64(), "asset": pa.string(), "signal": pa.string(),
         "value": pa.float64()}
    return Export("telemetry", form, columns, rows, mapping, types, _expected_samples())


def status_export(variant: int) -> Export:
    """A status export: each unit available, then derated by a fault, then in maintenance,
    as CSV (ISO times), JSON Lines (epoch ms) or Parquet (timestamps)."""
    day = 86_400_000
    rows: list[dict[str, Any]] = []
    expected = []
    for i, unit in enumerate(("nordvik-u01", "nordvik-u02")):
        spans = [(START, START + day, "available", None, None),
                 (START + day, START + day + 6 * 3_600_000 + i * 1000, "derated", 0.5,
                  "fault"),
                 (START + 2 * day, START + 2 * day + 3_600_000, "unavailable", None,
                  "scheduled_maintenance")]
        for start, end, state, fraction, cause in spans:
            when: Callable[[int], Any] = {0: lambda ms: _local(ms).isoformat(),
                                          1: lambda ms: ms, 2: _local}[variant]
            rows.append({"unit": unit, "from": when(start), "to": when(end), "st": state,
                         "frac": fraction if variant else ("" if fraction is None
                                                           else str(fraction)),
                         "why": cause if variant else (cause or "")})
            expected.append((unit, start, state, fraction, cause))
    fmt = {} if variant != 1 else {"format": "epoch_ms"}
    mapping = {"kind": "status", "timestamp": {"column": "from", **fmt},
               "asset": {"column": "unit"},
               "status": {"state": "st", "end": "to", "derate_fraction": "frac",
                          "cause": "why"}}
    types = {"unit": pa.string(), "from": pa.timestamp("us", tz="Europe/Stockholm"),
             "to": pa.timestamp("us", tz="Europe/Stockholm"), "st": pa.string(),
             "frac": pa.float64(), "why": pa.string()}
    return Export("status", ("csv", "jsonl", "parquet")[variant],
                  ["unit", "from", "to", "st", "frac", "why"], rows, mapping, types, expected)


BASES: list[Callable[[], Export]] = [
    *(lambda v=v: telemetry_export(v) for v in range(6)),
    *(lambda v=v: status_export(v) for v in range(3))]


# -- writing ------------------------------------------------------------------------------

def _csv_text(value: Any) -> str:
    return "" if value is None else str(value)


def write(export: Export, path: Path) -> None:
    if export.form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(export.columns)
        for row in export.rows:
            writer.writerow([_csv_text(row.get(c)) for c in export.columns])
        path.write_bytes(out.getvalue().encode("utf-8", "surrogatepass"))
    elif export.form == "jsonl":
        lines = []
        for row in export.rows:
            text = json.dumps({c: row[c] for c in export.columns if c in row},
                              allow_nan=True, default=str)
            for marker, literal in LITERAL_OF.items():
                text = text.replace(json.dumps(marker), literal)
            lines.append(text)
        path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    else:
        arrays = [_column([row.get(c) for row in export.rows], export.types.get(c))
                  for c in export.columns]
        table = pa.Table.from_arrays(arrays, names=export.columns)  # names may repeat
        pq.write_table(table, path, row_group_size=max(1, len(export.rows) // 3))


def _column(values: list[Any], kind: pa.DataType | None) -> pa.Array:
    """A Parquet column of the export's type; when a mutated value does not fit it, of the
    type Arrow infers, or else of text (a column has one type)."""
    for attempt in (kind, None):
        try:
            return pa.array(values, type=attempt)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            continue
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


# Stand-ins for what no encoder writes, replaced in the JSON text.
LITERAL_OF = {"\u2603nan": "NaN", "\u2603inf": "Infinity", "\u2603-inf": "-Infinity",
              "\u2603big": "1e999", "\u2603digits": "9" * 5000,
              "\u2603deep": "[" * 3000 + "]" * 3000, "\u2603surrogate": '"\\ud800"'}


# -- mutations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What a mutation makes of a valid export: `valid` (imports what it held), `invalid`
    (refused; `row`/`column` when a cell is to blame and must be named), or `either`."""

    expect: str
    row: int | None = None
    column: str | None = None
    note: str = ""


def _row_number(export: Export, index: int) -> int:
    return index + 2 if export.form == "csv" else index + 1


HOSTILE_NUMBERS: tuple[Any, ...] = (
    "full", "\u2603nan", "\u2603inf", "\u2603-inf", "\u2603big", "\u2603digits", 10**30,
    -1e308, 1e308, 10**400, [], {}, [1.5], {"v": 1}, True, "1e999", "NaN", "-inf", "\x00",
    "1\x002", "\u2603deep", "\u2603surrogate", "0x10", "١٢", "1_000", "é" * 300,
    "9" * 200_000, " 12.5 ", "+3", ".5", "5.", "-0", math.nan, math.inf, -math.inf)
OUT_OF_RANGE: dict[str, tuple[float, ...]] = {
    "SOC": (100.5, -0.1, 1e6), "P_kW": (10_001.0, -1e9), "Temp": (-273.0, 151.0, 9e99)}
# Times no mapping of these exports reads as valid: wrong types, out of range, in the
# future, impossible dates, no offset, a NUL, nanoseconds, a local time the clocks skip or
# pass twice.
BAD_TIMES: tuple[Any, ...] = (
    "yesterday", "", None, "1969-12-31T23:59:59+00:00", "1999-12-31T23:59:59+00:00",
    "2100-01-01T00:00:00.001+00:00", "2099-01-01T00:00:00+00:00", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59", "2026-02-30T00:00:00+00:00", "2026-09-01T00:00:00",
    "2026-09-01T00:00:00+02:00\x00", "2026-09-01T00:00:00.1234567+02:00", "2026-03-29 02:30:00",
    "2026-10-25 02:30:00", -1, 0, 10**30, 10**17, 1e308, "\u2603nan", "\u2603inf", "1e3",
    True, 4_102_444_800_001, 946_684_799_999, [], {"t": 1}, 1.5, "\u2603surrogate")
BAD_ASSETS: tuple[Any, ...] = ("ghost", "", None, "nordvik", "\x00nordvik-u01", 12, 1.5, True,
                               [], "nordvik-u01 ", "NORDVIK-U01", "é" * 300, "\u2603surrogate")
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_UNREADABLE_JSON = ("\u2603digits", "\u2603deep")  # refused by the JSON reader: no column


def number_is_valid(value: Any, tag: str) -> bool:
    """Whether a value is a reading the importer must take: a finite number (or its ASCII
    decimal text) within the tag's physically possible range."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            return False
        value = float(value)
    if not isinstance(value, int | float):
        return False
    try:
        number = float(value)
    except OverflowError:
        return False
    spec = MONITORING.tags.get(tag)
    low = -math.inf if spec is None or spec.min is None else spec.min
    high = math.inf if spec is None or spec.max is None else spec.max
    return math.isfinite(number) and low <= number <= high


def _cell(rng: random.Random, export: Export) -> tuple[Export, Outcome]:
    """One cell replaced, and what that makes of the export."""
    index = rng.randrange(len(export.rows))
    row = dict(export.rows[index])
    rows = [*export.rows[:index], row, *export.rows[index + 1:]]
    m = export.mapping
    target = rng.choice(["time", "asset", "value", "value", "range"]
                        + (["tag"] if "tag_column" in m else [])
                        if export.kind == "telemetry" else ["time", "asset", "state"])
    if target == "time":
        column = rng.choice([m["timestamp"]["column"], m["status"]["end"]]) \
            if export.kind == "status" else m["timestamp"]["column"]
        value = rng.choice(BAD_TIMES)
    elif target == "asset":
        column, value = m["asset"]["column"], rng.choice(BAD_ASSETS)
    elif target in ("value", "range"):
        if "columns" in m:
            column = rng.choice([c for c in TAGS if row.get(c) not in ("", None)])
            tag = TAGS[column]
        else:
            column, tag = "value", TAGS[row["signal"]]
        options = OUT_OF_RANGE.get(column if "columns" in m else row["signal"], (1e300,))
        value = rng.choice(HOSTILE_NUMBERS if target == "value" else options)
        if export.form == "csv" and value not in (None, []):
            value = str(value)
        row[column] = value
        as_read = value
        if export.form == "parquet":  # as the column's type makes it (True → 1.0)
            as_read = _column([r.get(column) for r in rows],
                              export.types.get(column))[index].as_py()
        if number_is_valid(as_read, tag):
            return replace(export, rows=rows), Outcome("either", note=f"{value!r} valid")
    elif target == "tag":
        column = "signal"
        value = rng.choice(["", None, "\x00", "x" * 300, 5, True, [], "a\nb",
                            "\u2603surrogate"])
    else:
        column = rng.choice(["st", "frac", "why"])
        choices: dict[str, list[Any]] = {
            "st": ["broken", "", None, 1, "Available", "\x00"],
            "frac": [1.5, -0.1, "\u2603nan", "half", True, 10**30],
            "why": ["gremlins", 7, "\x00", "FAULT"]}
        value = rng.choice(choices[column])
        if column == "frac" and export.form == "csv":
            value = str(value)
    row[column] = value
    number = _row_number(export, index)
    named: str | None = column
    if export.form == "parquet":
        # One type per column: a value of another type changes the column's (the others
        # become text, still valid), so the row stays certain, the problem may be another.
        named = None
    if export.form == "jsonl" and value in _UNREADABLE_JSON:
        named = None
    if export.form == "csv" and isinstance(value, str) and len(value) > 131_072:
        named = None  # longer than a CSV field may be: the line is refused as a whole
    if export.form == "parquet" and column in ("signal", "frac"):
        # …and text or a number where a name or a fraction was may be one
        return replace(export, rows=rows), Outcome("either", note=f"{value!r}"[:80])
    return replace(export, rows=rows), Outcome("invalid", number, named, f"{value!r}"[:80])


def _structure(rng: random.Random, export: Export) -> tuple[Export, Outcome]:
    """Rows or columns broken, reordered, or harmlessly varied."""
    choice = rng.randrange(10)
    rows = list(export.rows)
    if choice == 0:  # a mapped column missing (a JSON line may leave out a value)
        gone = rng.choice(export.columns)
        essential = gone in (export.mapping["timestamp"]["column"],
                             export.mapping["asset"]["column"])
        return replace(export, columns=[c for c in export.columns if c != gone],
                       rows=[{k: v for k, v in r.items() if k != gone} for r in rows]), \
            Outcome("invalid" if export.form != "jsonl" or essential else "either")
    if choice == 1:  # no rows at all
        return replace(export, rows=[]), Outcome("invalid")
    if choice == 2:  # a row twice: the second one is refused
        i = rng.randrange(len(rows))
        rows.insert(i, dict(rows[i]))
        return replace(export, rows=rows), Outcome("invalid", _row_number(export, i + 1))
    if choice == 3:  # out of order
        rows.reverse()
        return replace(export, rows=rows), Outcome("invalid")
    if choice == 4:  # an unmapped column more (harmless)
        return replace(export, columns=[*export.columns, "note"],
                       rows=[{**r, "note": "x"} for r in rows],
                       types={**export.types, "note": pa.string()}), Outcome("valid")
    if choice == 5:  # other column order (harmless)
        columns = list(export.columns)
        rng.shuffle(columns)
        return replace(export, columns=columns), Outcome("valid")
    if choice == 6:  # a column name repeated
        if export.form == "jsonl":
            return export, Outcome("valid")
        return replace(export, columns=[*export.columns, export.columns[0]]), \
            Outcome("invalid")
    if choice == 7:  # a mapped column renamed
        old = rng.choice(export.columns)
        new = rng.choice([old.upper(), old + " ", " " + old, "", "\x00"])
        return replace(export, columns=[new if c == old else c for c in export.columns],
                       rows=[{(new if k == old else k): v for k, v in r.items()}
                             for r in rows],
                       types={(new if k == old else k): v for k, v in export.types.items()}), \
            Outcome("either")
    if choice == 8 and export.form == "parquet":  # a column of another type
        column = rng.choice(export.columns)
        kind = rng.choice(["string", "bool", "list", "struct", "binary", "null", "ns",
                           "far", "date", "decimal"])
        values = [r.get(column) for r in rows]
        if kind == "string":
            new_type: pa.DataType = pa.string()
            values = [None if v is None else str(v) for v in values]
        elif kind == "bool":
            new_type, values = pa.bool_(), [bool(i % 2) for i in range(len(rows))]
        elif kind == "list":
            new_type, values = pa.list_(pa.int64()), [[i] for i in range(len(rows))]
        elif kind == "struct":
            new_type = pa.struct([("a", pa.int64())])
            values = [{"a": i} for i in range(len(rows))]
        elif kind == "binary":
            new_type, values = pa.binary(), [b"\xff\x00" for _ in rows]
        elif kind == "null":
            new_type, values = pa.null(), [None for _ in rows]
        elif kind == "ns":  # nanoseconds no datetime holds
            new_type = pa.timestamp("ns", tz="UTC")
            values = [START * 1_000_000 + 1 + i for i in range(len(rows))]
        elif kind == "far":  # beyond datetime's years
            new_type, values = pa.timestamp("ms"), [10**17 for _ in rows]
        elif kind == "date":
            new_type, values = pa.date32(), [20_000 for _ in rows]
        else:
            new_type = pa.decimal128(38, 2)
            values = [None for _ in rows]
        return replace(export, rows=[{**r, column: v} for r, v in zip(rows, values,
                                                                       strict=True)],
                       types={**export.types, column: new_type}), Outcome("either")
    # a row cut short or extended (CSV), a line of another shape (JSON Lines)
    i = rng.randrange(len(rows))
    if export.form == "csv":
        return replace(export, rows=rows), Outcome("invalid", _row_number(export, i),
                                                   note=f"fields:{i}")
    return export, Outcome("valid")


def _bytes(rng: random.Random, data: bytes, form: str) -> tuple[bytes, Outcome]:
    """The written file broken (or harmlessly varied) as bytes."""
    choice = rng.randrange(12)
    if choice == 0:
        return data[: rng.randrange(0, max(1, len(data)))], Outcome("either")
    if choice == 1:
        return rng.randbytes(rng.randrange(0, 400)), Outcome("either")
    if choice == 2:
        return b"", Outcome("invalid")
    if choice == 3 and form != "parquet":
        at = rng.randrange(len(data))
        return data[:at] + rng.choice([b"\x00", b"\xff", b"\xe9", b"\xc3"]) + data[at:], \
            Outcome("invalid")
    if choice == 4 and form != "parquet":
        return data.replace(b"\n", b"\r\n"), Outcome("valid")
    if choice == 5 and form != "parquet":
        return b"\xef\xbb\xbf" + data, Outcome("valid")
    if choice == 6 and form != "parquet":
        return data + b"\n\n", Outcome("valid")
    if choice == 7 and form == "csv":
        lines = data.split(b"\n")
        i = rng.randrange(1, max(2, len(lines) - 1))
        lines[i] = lines[i].replace(b",", b',"', 1)
        return b"\n".join(lines), Outcome("invalid")
    if choice == 8 and form != "parquet":
        return data.decode("utf-8", "surrogatepass").encode("utf-16"), Outcome("invalid")
    if choice == 9 and form == "jsonl":
        lines = data.split(b"\n")
        i = rng.randrange(len(lines) - 1)
        lines[i] = rng.choice([b"[1,2]", b"{", b"null", b'"text"', b'{"time":1,"time":2}',
                               lines[i][: len(lines[i]) // 2]])
        return b"\n".join(lines), Outcome("invalid", i + 1)
    if choice == 10 and form != "parquet":
        return data + b"x" * rng.choice([10, 200_000]), Outcome("invalid")
    if form == "parquet":
        raw = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw), Outcome("either")
    return data, Outcome("valid")


BAD_MAPPINGS: tuple[Callable[[dict[str, Any]], Any], ...] = (
    lambda m: {**m, "kind": "alarms"},
    lambda m: {**m, "timestamp": {**m["timestamp"], "timezone": "Mars/Olympus_Mons"}},
    lambda m: {**m, "timestamp": {**m["timestamp"], "format": "%Q-%Y"}},
    lambda m: {**m, "timestamp": {**m["timestamp"], "format": "yyyy-mm-dd"}},
    lambda m: {**m, "timestamp": {"column": m["timestamp"]["column"],
                                  "format": "%Y-%m-%d %H:%M:%S"}},
    lambda m: {**m, "unknown_key": 1},
    lambda m: {**m, "asset": "asset"},
    lambda m: {**m, "device_type": "no-such-type"},
    lambda m: {**m, "columns": {"SOC": ""}} if "columns" in m else {**m, "kind": 1},
    lambda m: {**m, "columns": {"SOC": "soc\x00pct"}} if "columns" in m else {**m, "asset": 1},
    lambda m: {**m, "tag_names": {"SOC": "s" * 300}} if "tag_column" in m else
    {**m, "timestamp": None},
    lambda m: [m],
    lambda m: "kind: telemetry\ntimestamp: {column: time\n",
    lambda m: b"\xff\xfekind: telemetry\n",
    lambda m: "",
)


@dataclass
class Case:
    export: Export
    data: bytes
    mapping: bytes
    outcome: Outcome
    bad_mapping: bool
    what: str


def make_case(rng: random.Random, tmp: Path) -> Case:
    export = rng.choice(BASES)()
    outcome = Outcome("valid")
    what = f"{export.kind}/{export.form}/{export.mapping['timestamp']}"
    roll = rng.random()
    fields_short: int | None = None
    if roll < 0.4:
        export, outcome = _cell(rng, export)
        what += f" cell {outcome}"
    elif roll < 0.65:
        export, outcome = _structure(rng, export)
        what += f" structure {outcome}"
        if outcome.note.startswith("fields:"):
            fields_short = int(outcome.note.partition(":")[2])
    path = tmp / f"in.{export.form}"
    write(export, path)
    data = path.read_bytes()
    if fields_short is not None:  # a row with a field too few or too many
        lines = data.split(b"\n")
        line = lines[fields_short + 1]
        lines[fields_short + 1] = line.rsplit(b",", 1)[0] if rng.random() < 0.5 else \
            line + b",extra"
        data = b"\n".join(lines)
    if 0.65 <= roll < 0.85:
        data, outcome = _bytes(rng, data, export.form)
        what += f" bytes {outcome}"
    mapping = yaml.safe_dump(export.mapping, allow_unicode=True).encode()
    bad_mapping = False
    if roll >= 0.95:
        broken = rng.choice(BAD_MAPPINGS)(export.mapping)
        mapping = broken if isinstance(broken, bytes) else (
            broken.encode() if isinstance(broken, str) else
            yaml.safe_dump(broken, allow_unicode=True).encode())
        bad_mapping = True
        outcome = Outcome("either")  # a mapping naming a missing column blames the export
        what += " bad mapping"
    return Case(export, data, mapping, outcome, bad_mapping, what)


# -- the run ------------------------------------------------------------------------------

@dataclass
class Topics:
    bootstrap: str
    telemetry: str
    status: str


def run_cli(source: Path, mapping: Path, fleet: Path, topics: Topics, run_dir: Path
            ) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", topics.bootstrap)
        env.setenv("BESSMON_TOPIC_TELEMETRY", topics.telemetry)
        env.setenv("BESSMON_TOPIC_STATUS", topics.status)
        env.setenv("BESSMON_RUN_DIR", str(run_dir))
        get_settings.cache_clear()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["backfill", "--source", str(source), "--mapping", str(mapping),
                           "--fleet", str(fleet)])
        get_settings.cache_clear()
    return status, out.getvalue(), err.getvalue()


def _ranges() -> dict[str, tuple[float, float]]:
    return {name: (-math.inf if spec.min is None else spec.min,
                   math.inf if spec.max is None else spec.max)
            for name, spec in MONITORING.tags.items()}


def check_refusal(case: Case, source: Path, mapping: Path, message: str) -> None:
    """The refusal names the export or the mapping, on one line of bounded length, and the
    row and column a broken cell is in."""
    assert message.startswith((f"{source}", f"{mapping}")), \
        f"{message!r} names neither file ({case.what})"
    assert "\n" not in message and len(message) < 1_000, f"{message!r} ({case.what})"
    if message.startswith(f"{source}:"):
        assert re.match(rf"{re.escape(str(source))}(:\d+)?: \S", message), message
    outcome = case.outcome
    if outcome.row is not None and not case.bad_mapping:
        expected = f"{source}:{outcome.row}: " + (f"{outcome.column}: " if outcome.column
                                                  else "")
        assert message.startswith(expected), f"{message!r} is not about {expected!r} " \
                                             f"({case.what})"


def _key(sample: TelemetrySample) -> tuple[str, int, tuple[tuple[str, tuple[tuple[str, float],
                                                                            ...]], ...]]:
    return (sample.device_id, sample.ts_ms, tuple(
        (a.id, tuple(sorted((t, float(v)) for t, v in a.tags.items()))) for a in sample.assets))


def check_sample(sample: TelemetrySample, ranges: dict[str, tuple[float, float]]) -> None:
    """What an accepted export sends is possible: times in range and not ahead of now,
    assets of the device's unit, finite values within their tag's range."""
    assert MIN_DEVICE_MS <= sample.ts_ms <= min(MAX_MS, int(time.time() * 1000) + 60_000)
    for reading in sample.assets:
        assert FLEET.assets[reading.id].unit_id == sample.device_id
        for tag, value in reading.tags.items():
            low, high = ranges.get(tag, (-math.inf, math.inf))
            assert isinstance(value, float | int) and math.isfinite(value) and \
                low <= value <= high, (tag, value)


KAFKA_RUNS = 16  # accepted exports sent through the broker (each takes ~0.5 s)


def test_mutated_exports_are_imported_whole_or_refused_whole(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every export is checked by the importer in-process and, when refused, by the command
    (exit 2 and the same one line); the first KAFKA_RUNS accepted ones are sent by the
    command to the broker, and the topics hold exactly what they held."""
    suffix = uuid.uuid4().hex[:8]
    good = Topics(kafka_bootstrap, f"t-{suffix}.good.telemetry", f"t-{suffix}.good.status")
    fuzz = Topics(kafka_bootstrap, f"t-{suffix}.fuzz.telemetry", f"t-{suffix}.fuzz.status")
    ensure_topics(kafka_bootstrap, [good.telemetry, good.status, fuzz.telemetry, fuzz.status],
                  partitions=2)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(_fleet_text())
    work = tmp_path / "work"
    work.mkdir()
    checking = Settings(run_dir=tmp_path / "check", monitoring_file=EXAMPLE_MONITORING)
    ranges = _ranges()
    valid_samples = set(_expected_samples())
    sent_to: dict[str, Counter[str]] = {"good": Counter(), "fuzz": Counter()}
    results: Counter[str] = Counter()
    kafka_runs = [0]
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**64))
    def run(seed: int) -> None:
        rng = random.Random(seed)
        case = make_case(rng, work)
        source = work / f"export-{seed}.{case.export.form}"
        source.write_bytes(case.data)
        mapping = work / f"mapping-{seed}.yaml"
        mapping.write_bytes(case.mapping)
        expect = case.outcome.expect
        try:  # the command's first pass, in-process
            importer = prepare(checking, FLEET, source, mapping)
            records: list[TelemetrySample | StatusChange] = list(
                importer.samples() if importer.mapping.kind == "telemetry" else
                (change for change, _ in importer.intervals()))
            refusal = None
        except InvalidInput as exc:
            refusal = str(exc)
        if refusal is not None:
            results[f"{expect}: refused"] += 1
            assert expect != "valid", f"valid export refused ({case.what}): {refusal}"
            check_refusal(case, source, mapping, refusal)
            status, _, err = run_cli(source, mapping, fleet, fuzz, tmp_path / "run")
            assert (status, err.strip().splitlines()[-1]) == (2, f"bessmon: {refusal}"), \
                case.what
            return
        results[f"{expect}: imported"] += 1
        assert expect != "invalid", f"invalid export imported ({case.what})"
        for record_ in records:
            if isinstance(record_, TelemetrySample):
                check_sample(record_, ranges)
                assert expect != "valid" or _key(record_) in valid_samples, case.what
            else:
                assert record_.asset_id in FLEET.assets
        if expect == "valid":
            assert len(records) == len(case.export.expected), case.what
        if kafka_runs[0] >= KAFKA_RUNS:
            return
        kafka_runs[0] += 1
        status, out, err = run_cli(source, mapping, fleet, good if expect == "valid" else fuzz,
                                   tmp_path / "run")
        assert (status, out.strip()) == (0, f"sent {len(records):,} records from {source}"), \
            f"{case.what}: {err[-2000:]}"
        sent_to["good" if expect == "valid" else "fuzz"][case.export.kind] += len(records)

    run()
    for name, topics in (("good", good), ("fuzz", fuzz)):
        for kind, topic in (("telemetry", topics.telemetry), ("status", topics.status)):
            expected = sent_to[name][kind]
            messages = read_topic(kafka_bootstrap, topic, timeout_s=30, to_end=True)
            assert len(messages) == expected, (name, kind)  # nothing from a refused file
            for message in messages:
                if kind == "status":
                    change = StatusChange.model_validate_json(message.value() or b"")
                    assert change.asset_id in FLEET.assets
                    continue
                sample = TelemetrySample.model_validate_json(message.value() or b"")
                check_sample(sample, ranges)
                assert name == "fuzz" or _key(sample) in valid_samples
    runs = sum(results.values())
    assert runs >= EXAMPLES
    print(f"\n{runs} exports in {time.monotonic() - started:.1f} s: "
          f"{dict(sorted(results.items()))}; {kafka_runs[0]} imports sent to the broker: "
          f"{ {k: dict(v) for k, v in sent_to.items()} }")


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


WIDE = ("kind: telemetry\ntimestamp: {column: time}\nasset: {column: asset}\n"
        "columns: {SOC: soc_pct}\n")
LOCAL = ("kind: telemetry\ntimestamp: {column: time, format: '%Y-%m-%d %H:%M:%S', "
         "timezone: Europe/Stockholm}\nasset: {column: asset}\ncolumns: {SOC: soc_pct}\n")
LONG = ("kind: telemetry\ntimestamp: {column: t, format: epoch_ms}\nasset: {column: a}\n"
        "tag_column: s\nvalue_column: v\n")
STATUS = ("kind: status\ntimestamp: {column: from, format: epoch_ms}\nasset: {column: unit}\n"
          "status: {state: st, end: to}\n")
T = "2026-09-01T00:00:00+02:00"
# What the fuzzing found: each was a crash (a traceback, not exit 2), an import of what
# cannot be true, or a valid file refused.
FOUND: list[tuple[str, bytes, str, str | None]] = [
    ("empty.parquet", b"", WIDE, ": not a readable Parquet file: Parquet file size is 0 bytes"),
    ("cut.parquet", _parquet(pa.table({"time": [1], "asset": ["x"], "SOC": [1.0]}))[:-30],
     WIDE, ": not a readable Parquet file: Parquet magic bytes not found"),
    ("ns.parquet", _parquet(pa.table({"time": pa.array([START * 1_000_000 + 1],
                                                       pa.timestamp("ns", tz="UTC")),
                                      "asset": ["nordvik-u01"], "SOC": [50.0]})),
     WIDE, ":1: time: cannot be read: Nanosecond resolution"),
    ("far.parquet", _parquet(pa.table({"time": pa.array([10**17], pa.timestamp("ms")),
                                       "asset": ["nordvik-u01"], "SOC": [50.0]})),
     WIDE, ":1: time: cannot be read: "),
    ("wide.csv", f"time,asset,SOC\n{T},nordvik-u01,{'9' * 200_000}\n".encode(), WIDE,
     ":2: not valid CSV: field larger than field limit (131072)"),
    ("big.jsonl", f'{{"t": {START}, "a": "nordvik-u01", "s": "soc_pct", "v": 1{"0" * 400}}}\n'
     .encode(), LONG, ":1: v: a 401-digit integer is too large for a number"),
    ("end.jsonl", f'{{"unit": "nordvik-u01", "from": {START}, "to": {10**30}, "st": '
     '"available"}\n'.encode(), STATUS, ":1: to: 1000000000000000000000000000000 is after "
     "2100-01-01"),
    ("nul.jsonl", f'{{"t": {START}, "a": "nordvik-u01", "s": null, "v": 5}}\n'.encode(), LONG,
     ":1: s: missing tag name"),
    ("twice.csv", f"time,asset,SOC\n{T},nordvik-u01,50\n{T},nordvik-u01,51\n".encode(), WIDE,
     f":3: SOC: soc_pct of nordvik-u01 at {_local(START).astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S}"
     ".000Z was given before (row 2)"),
    ("extra.csv", f"time,asset,SOC\n{T},nordvik-u01,50,7\n".encode(), WIDE,
     ":2: 4 fields, the header has 3"),
    ("range.csv", f"time,asset,SOC\n{T},nordvik-u01,150\n".encode(), WIDE,
     ":2: SOC: 150 is outside the possible range [0, 100] of soc_pct"),
    ("digits.csv", f"time,asset,SOC\n{T},nordvik-u01,١٢\n".encode(), WIDE,
     ":2: SOC: '١٢' is not a number"),
    ("gap.csv", b"time,asset,SOC\n2026-03-29 02:30:00,nordvik-u01,50\n", LOCAL,
     ":2: time: '2026-03-29 02:30:00' does not exist in Europe/Stockholm"),
    ("fold.csv", b"time,asset,SOC\n2026-10-25 02:30:00,nordvik-u01,50\n", LOCAL,
     ":2: time: '2026-10-25 02:30:00' is ambiguous in Europe/Stockholm"),
    ("overlap.jsonl", (f'{{"unit": "nordvik-u01", "from": {START}, "to": {START + 7200_000}, '
                       '"st": "available"}\n'
                       f'{{"unit": "nordvik-u01", "from": {START + 3600_000}, "to": '
                       f'{START + 9000_000}, "st": "unavailable"}}\n').encode(), STATUS,
     ":2: from: nordvik-u01's interval from"),
    ("bom.jsonl", f'\ufeff{{"t": {START}, "a": "nordvik-u01", "s": "soc_pct", "v": 5}}\n'
     .encode(), LONG, None),
    ("tag.csv", f"time,asset,SOC\n{T},nordvik-u01,50\n".encode(),
     "kind: telemetry\ntimestamp: {column: time}\nasset: {column: asset}\n"
     f"columns: {{SOC: {'s' * 300}}}\n", "m.yaml:4: columns.SOC: 'sssss"),
]


@pytest.mark.parametrize(("name", "data", "mapping_text", "refusal"), FOUND,
                         ids=[f[0] for f in FOUND])
def test_what_the_fuzzing_found(name: str, data: bytes, mapping_text: str,
                                refusal: str | None, tmp_path: Path) -> None:
    source = tmp_path / name
    source.write_bytes(data)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(mapping_text)
    settings_ = Settings(run_dir=tmp_path / "run", monitoring_file=EXAMPLE_MONITORING)
    if refusal is None:
        assert check(prepare(settings_, FLEET, source, mapping)) == 1
        return
    with pytest.raises(InvalidInput) as refused:
        check(prepare(settings_, FLEET, source, mapping))
    message = str(refused.value).replace(f"{tmp_path}/", "")
    assert message.startswith(refusal if refusal.startswith("m.yaml") else name + refusal), \
        message
