"""Status intervals and exclusion windows (availability rules §1), read from CSV and validated row
by row. Every refusal names the file, the line, the column and the problem; nothing is guessed."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from mypy_extensions import mypyc_attr

from contracts.errors import InvalidInput
from contracts.events import Cause, State
from contracts.fleet import Fleet
from contracts.native import restore, state_of
from contracts.periods import to_us
from contracts.textfiles import read_text

STATES: tuple[State, ...] = get_args(State)
CAUSES: tuple[Cause, ...] = get_args(Cause)
_FRACTION = re.compile(r"[.,](\d+)")
STATUS_COLUMNS = ("asset_id", "start", "end", "state", "derate_fraction", "cause")
EXCLUSION_COLUMNS = ("scope_id", "start", "end", "reason")


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class StatusInterval:
    """An asset's status over `[start_us, end_us)`."""

    asset_id: str
    start_us: int
    end_us: int
    state: State
    derate_fraction: float | None = None
    cause: Cause | None = None

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class ExclusionWindow:
    """A site (all its units) or a unit excluded for `reason` over `[start_us, end_us)`."""

    scope_id: str
    start_us: int
    end_us: int
    reason: Cause

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


class _Rows:
    """CSV rows as dicts with their line numbers, after checking the header."""

    def __init__(self, text: str, source: str, columns: tuple[str, ...]) -> None:
        self.source = source
        # strict: a stray quote is an error, not a character (`"a"b` is not silently `ab`)
        self.reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
        first = self._next()
        if first is None:
            raise InvalidInput(source, "", f"empty file; expected the header "
                               f"{','.join(columns)}", 1)
        header = [h.strip() for h in first[1]]
        missing = [c for c in columns if c not in header]
        unknown = [h for h in header if h not in columns]
        if missing or unknown or len(header) != len(columns):
            problem = (f"missing column {missing[0]!r}" if missing else
                       f"unknown column {unknown[0]!r}" if unknown else "repeated column")
            raise InvalidInput(source, "header", f"{problem}; expected {','.join(columns)}", 1)
        self.header = header

    def _next(self) -> tuple[int, list[str]] | None:
        """The next row and its line; a row must be one line. No field of these files holds
        a line break, so a quoted field running on to the next line is an unclosed quote
        that would swallow the rows after it."""
        reader = self.reader
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            if reader.line_num > first or str(exc) == "unexpected end of data":
                raise InvalidInput(self.source, "", "unterminated quote: the quoted field "
                                   "opened on this line runs to the end of the file",
                                   first) from None
            raise InvalidInput(self.source, "", f"not valid CSV: {exc}",
                               reader.line_num) from None
        if reader.line_num > first:
            raise InvalidInput(self.source, "", "unterminated quote: the quoted field opened "
                               f"on this line runs on to line {reader.line_num}", first)
        return first, row

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        while (found := self._next()) is not None:
            line, row = found
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(self.header):
                raise InvalidInput(self.source, "", f"{len(row)} fields, expected "
                                   f"{len(self.header)}", line)
            yield line, {k: v.strip() for k, v in zip(self.header, row, strict=True)}

    def error(self, line: int, column: str, problem: str) -> InvalidInput:
        return InvalidInput(self.source, column, problem, line)

    def moment(self, line: int, column: str, text: str) -> int:
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise self.error(line, column, f"not an ISO-8601 time: {text!r}") from None
        if any(len(digits) > 6 for digits in _FRACTION.findall(text)):
            # fromisoformat drops the 7th digit on: a time would move without a word
            raise self.error(line, column, f"{text!r} has more than 6 fractional digits of "
                             "a second; times are exact to the microsecond")
        if value.tzinfo is None:
            raise self.error(line, column, f"{text!r} has no UTC offset (add +02:00 or Z)")
        return to_us(value)

    def span(self, line: int, row: dict[str, str]) -> tuple[int, int]:
        start = self.moment(line, "start", row["start"])
        end = self.moment(line, "end", row["end"])
        if end <= start:
            raise self.error(line, "end", f"{row['end']} is not after start {row['start']}")
        return start, end


def parse_status_csv(text: str, source: str, fleet: Fleet) -> list[StatusInterval]:
    rows = _Rows(text, source, STATUS_COLUMNS)
    out: list[StatusInterval] = []
    lines: list[int] = []
    for line, row in rows:
        asset_id = row["asset_id"]
        asset = fleet.assets.get(asset_id)
        if asset is None or asset.kind == "site":
            raise rows.error(line, "asset_id", f"unknown asset {asset_id!r}" if asset is None
                             else f"{asset_id!r} is a site; status is per unit, inverter or "
                             "block")
        start, end = rows.span(line, row)
        state = row["state"]
        if state not in STATES:
            raise rows.error(line, "state", f"{state!r} is not one of {', '.join(STATES)}")
        fraction: float | None = None
        text_fraction = row["derate_fraction"]
        if state == "derated":
            if not text_fraction:
                raise rows.error(line, "derate_fraction", "required when state is derated")
            try:
                fraction = float(text_fraction)
            except ValueError:
                raise rows.error(line, "derate_fraction",
                                 f"not a number: {text_fraction!r}") from None
            if not 0.0 <= fraction <= 1.0:
                raise rows.error(line, "derate_fraction", f"{text_fraction} is outside 0..1")
        elif text_fraction:
            raise rows.error(line, "derate_fraction", f"must be empty when state is {state}")
        cause = row["cause"] or None
        if cause is not None and cause not in CAUSES:
            raise rows.error(line, "cause", f"{cause!r} is not one of {', '.join(CAUSES)}")
        out.append(StatusInterval(asset_id, start, end, state,  # type: ignore[arg-type]
                                  fraction, cause))  # type: ignore[arg-type]
        lines.append(line)
    _refuse_overlaps(rows, out, lines)
    return out


def _refuse_overlaps(rows: _Rows, intervals: list[StatusInterval], lines: list[int]) -> None:
    order = sorted(range(len(intervals)),
                   key=lambda i: (intervals[i].asset_id, intervals[i].start_us))
    for before, after in itertools.pairwise(order):
        a, b = intervals[before], intervals[after]
        if a.asset_id == b.asset_id and b.start_us < a.end_us:
            first, second = sorted((lines[before], lines[after]))
            raise rows.error(second, "start", f"interval of {a.asset_id} overlaps the one on "
                             f"line {first}")


def parse_exclusions_csv(text: str, source: str, fleet: Fleet) -> list[ExclusionWindow]:
    rows = _Rows(text, source, EXCLUSION_COLUMNS)
    out: list[ExclusionWindow] = []
    for line, row in rows:
        scope = fleet.assets.get(row["scope_id"])
        if scope is None or scope.kind not in ("site", "unit"):
            raise rows.error(line, "scope_id", f"{row['scope_id']!r} is not a site or battery "
                             "unit of the fleet")
        start, end = rows.span(line, row)
        reason = row["reason"]
        if reason not in CAUSES:
            raise rows.error(line, "reason", f"{reason!r} is not one of {', '.join(CAUSES)}")
        out.append(ExclusionWindow(row["scope_id"], start, end, reason))  # type: ignore[arg-type]
    return out


def load_status(path: Path, fleet: Fleet) -> list[StatusInterval]:
    return parse_status_csv(read_text(path), str(path), fleet)


def load_exclusions(path: Path, fleet: Fleet) -> list[ExclusionWindow]:
    return parse_exclusions_csv(read_text(path), str(path), fleet)
