"""Rows of an export, whatever its format: CSV (header row), JSON Lines, or Parquet — each
row a dict of column → value, with its row number for error messages (CSV: the line a row
ends on, the header being line 1; JSON Lines: the line; Parquet: the row, from 1).

Whatever cannot be read is refused (`InvalidInput`) with the file, the line or row, and
what is wrong, never guessed at: text that is not UTF-8; CSV that is not strict CSV (a stray
quote, one left open to the end of the file, a NUL, a field over 128 KiB, a row with more or
fewer fields than the header, a column named twice); a JSON line that is not one JSON object
(or names a key twice, or nests too deeply); a file that is not Parquet, or a Parquet value
that has no Python equivalent (nanoseconds, a year beyond 9999). A UTF-8 byte-order mark,
blank lines and quoted line breaks are allowed."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contracts.errors import InvalidInput
from contracts.textfiles import text_lines

FORMATS = ("csv", "jsonl", "parquet")
BOM = "\ufeff"


def format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise InvalidInput(str(path), "", f"unknown format {path.suffix!r}; expected .csv, "
                           ".jsonl or .parquet")
    return fmt


def _problem(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut (readers quote whole pages of bytes)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def _parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInput(str(path), "", f"not a readable Parquet file: {_problem(exc)}") \
            from None


def count_rows(path: Path) -> int | None:
    """Rows in the file, when cheap to know (for the progress bar)."""
    fmt = format_of(path)
    if fmt == "parquet":
        parquet = _parquet(path)
        try:
            return int(parquet.metadata.num_rows)
        finally:
            parquet.close()
    with path.open("rb") as f:
        lines = sum(1 for _ in f)
    return max(lines - 1, 0) if fmt == "csv" else lines


def columns(path: Path) -> list[str] | None:
    """The columns every row has: the CSV header or the Parquet schema (None for JSON Lines,
    whose lines may each leave keys out). A column named twice is refused."""
    fmt = format_of(path)
    if fmt == "jsonl":
        return None
    if fmt == "csv":
        reader = _Csv(path)
        try:
            return reader.header
        finally:
            reader.close()
    parquet = _parquet(path)
    try:
        names = [str(n) for n in parquet.schema_arrow.names]
    finally:
        parquet.close()
    _refuse_repeats(str(path), names, None)
    return names


def _refuse_repeats(source: str, names: list[str], line: int | None) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(source, "header", f"column {name!r} appears twice", line)
        seen.add(name)


def rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row), in the file's order."""
    fmt = format_of(path)
    if fmt == "csv":
        yield from _csv_rows(path)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path)
    else:
        yield from _parquet_rows(path)


class _Csv:
    """Strict CSV over the file's lines (decoded one at a time: exports can be large). A
    quoted field may hold line breaks (the row is numbered by its last line); one still
    open at the end of the file is an unclosed quote, refused with the line it opened on."""

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        self._lines = text_lines(path)
        self.reader = csv.reader(self._text(), strict=True)
        try:
            first = self.next()
            if first is None:
                raise InvalidInput(self.source, "", "empty file: no header row", 1)
            _refuse_repeats(self.source, first[1], 1)
        except InvalidInput:
            self.close()
            raise
        self.header = first[1]

    def _text(self) -> Iterator[str]:
        for number, line in self._lines:
            yield line.removeprefix(BOM) if number == 1 else line

    def close(self) -> None:
        close = getattr(self._lines, "close", None)  # a generator: its file closes now
        if close is not None:
            close()

    def next(self) -> tuple[int, list[str]] | None:
        reader = self.reader
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            if str(exc) == "unexpected end of data":
                raise InvalidInput(self.source, "", "unterminated quote: the quoted field "
                                   "opened on this line runs to the end of the file",
                                   first) from None
            raise InvalidInput(self.source, "", f"not valid CSV: {_problem(exc)}",
                               reader.line_num) from None
        return reader.line_num, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = _Csv(path)
    header = reader.header
    try:
        while (found := reader.next()) is not None:
            line, row = found
            if not row or all(not cell.strip() for cell in row):
                continue  # a blank line
            if len(row) != len(header):
                raise InvalidInput(str(path), "", f"{len(row)} fields, the header has "
                                   f"{len(header)}", line)
            yield line, dict(zip(header, row, strict=True))
    finally:
        reader.close()


class _RepeatedKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names no key twice (which value would count is a guess)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(f"key {key!r} appears twice")
        out[key] = value
    return out


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in text_lines(path):
        if number == 1:
            line = line.removeprefix(BOM)
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_object)
        except json.JSONDecodeError as exc:
            raise InvalidInput(str(path), "", f"not JSON: {exc.msg} (column {exc.colno})",
                               number) from None
        except _RepeatedKey as exc:
            raise InvalidInput(str(path), "", f"not one JSON object: {exc}", number) from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise InvalidInput(str(path), "", f"not JSON: {_problem(exc, 100)}",
                               number) from None
        except RecursionError:
            raise InvalidInput(str(path), "", "not JSON this importer reads: nested too "
                               "deeply", number) from None
        if not isinstance(value, dict):
            raise InvalidInput(str(path), "", "each line must be a JSON object", number)
        yield number, value


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa

    parquet = _parquet(path)
    names = [str(n) for n in parquet.schema_arrow.names]
    _refuse_repeats(str(path), names, None)
    number = 0
    batches = parquet.iter_batches(batch_size=10_000)
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise InvalidInput(str(path), "", f"rows from {number + 1} on cannot be read: "
                                   f"{_problem(exc)}", number + 1) from None
            values = [_column(path, name, batch.column(i), number)
                      for i, name in enumerate(names)]
            for offset, row in enumerate(zip(*values, strict=True)):
                yield number + offset + 1, dict(zip(names, row, strict=True))
            number += batch.num_rows
    finally:
        parquet.close()


def _column(path: Path, name: str, column: Any, before: int) -> list[Any]:
    """A column of a batch as Python values; a value without one (a timestamp of
    nanoseconds or beyond year 9999) refused with its row."""
    try:
        return list(column.to_pylist())
    except (ValueError, OverflowError, TypeError, ArithmeticError):
        pass
    for offset, scalar in enumerate(column):
        try:
            scalar.as_py()
        except (ValueError, OverflowError, TypeError, ArithmeticError) as exc:
            raise InvalidInput(str(path), name, f"cannot be read: {_problem(exc, 120)}",
                               before + offset + 1) from None
    raise InvalidInput(str(path), name, "cannot be read", before + 1)  # pragma: no cover
