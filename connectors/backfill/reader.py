"""Rows of an export, whatever its format: CSV (header row), JSON Lines, or Parquet — each
row a dict of column → value, with its row number for error messages."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contracts.errors import InvalidInput
from contracts.textfiles import text_lines

FORMATS = ("csv", "jsonl", "parquet")


def format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise InvalidInput(str(path), "", f"unknown format {path.suffix!r}; expected .csv, "
                           ".jsonl or .parquet")
    return fmt


def count_rows(path: Path) -> int | None:
    """Rows in the file, when cheap to know (for the progress bar)."""
    fmt = format_of(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        lines = sum(1 for _ in f)
    return lines - 1 if fmt == "csv" else lines


def rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row): CSV rows count from 2 (after the header), JSON lines from 1,
    Parquet rows from 1."""
    fmt = format_of(path)
    if fmt == "csv":
        lines = (line.removeprefix("\ufeff") if number == 1 else line
                 for number, line in text_lines(path))
        reader = csv.DictReader(lines)
        for row in reader:
            yield reader.line_num, dict(row)
    elif fmt == "jsonl":
        for number, line in text_lines(path):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(str(path), "", f"not JSON: {exc.msg}", number) from None
            if not isinstance(value, dict):
                raise InvalidInput(str(path), "", "each line must be a JSON object", number)
            yield number, value
    else:
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                number += 1
                yield number, row
