"""Rows of an export → telemetry samples (or status changes) on Kafka, with their original
timestamps, in the file's order. The whole file is checked first, so a bad row refuses the
file before anything is sent; sending goes through the spooling producer (nothing lost).

Every value is checked before anything is derived from it, and refused (`InvalidInput`:
file, row, column, problem) when it is not what it must be:

- times: text in the mapping's format (ISO with at most 6 fractional digits; a pattern), a
  Parquet timestamp, or an epoch number (integer or decimal text, ASCII digits); no control
  characters; between 2000-01-01 and 2100-01-01 and not ahead of this computer's clock by
  more than the monitoring config's `max_clock_skew_s`; a local time (the mapping's
  `timezone`) that the clocks skip or pass twice is refused (export such hours with an
  offset); each device's samples, and each asset's status intervals, in time order, and an
  asset's intervals not overlapping;
- assets: text (or an integer) naming a unit, inverter or block of the fleet, through the
  mapping's `names`;
- values: finite numbers (a number, or its ASCII decimal text: no `NaN`, `1_000` or other
  scripts' digits), within the physically possible range of their canonical tag in the
  monitoring config; a tag given once per asset and time; tag names of 1..200 printable
  characters; status states and causes of the contract's vocabulary, a derate fraction in
  0..1 exactly when derated."""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from connectors.backfill.mapping import Mapping
from connectors.backfill.reader import columns, rows
from connectors.history.rows import StatusIntervalRow
from contracts.errors import InvalidInput
from contracts.events import (
    MAX_MS,
    MIN_DEVICE_MS,
    AssetReading,
    Cause,
    State,
    StatusChange,
    TelemetrySample,
)
from contracts.fleet import Fleet
from contracts.monitoring import MonitoringConfig

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FRACTION = re.compile(r"[.,](\d+)")
_TAG = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # contracts.events.Name


def shown(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr (a time in ISO 8601), cut (a cell may hold a
    megabyte)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"a {len(str(abs(value)))}-digit integer"
    text = value.isoformat() if isinstance(value, dt.date) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def iso(ms: int) -> str:
    return f"{dt.datetime.fromtimestamp(ms / 1000, dt.UTC):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"


@dataclass
class _Open:
    ts_ms: int
    row: int  # its first row
    assets: dict[str, dict[str, float]]
    given: dict[tuple[str, str], int] = field(default_factory=dict)  # (asset, tag) → row


# A tag's canonical tag and possible range: value · scale + offset within [low, high].
_Range = tuple[str, float, float, float, float]


class Importer:
    def __init__(self, mapping: Mapping, fleet: Fleet, source: Path,
                 monitoring: MonitoringConfig, *, now_ms: int | None = None) -> None:
        self.mapping = mapping
        self.fleet = fleet
        self.source = source
        tz = mapping.timestamp.timezone
        self.tz = ZoneInfo(tz) if tz else None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.latest_ms = min(MAX_MS, now + int(monitoring.quality.max_clock_skew_s * 1000))
        self.ranges = _ranges(monitoring, mapping.device_type)

    def _error(self, row: int | None, column: str, problem: str) -> InvalidInput:
        return InvalidInput(str(self.source), column, problem, row)

    # -- the file as a whole -----------------------------------------------------------

    def check_columns(self) -> None:
        """Every column the mapping reads is in the file (CSV header, Parquet schema)."""
        present = columns(self.source)
        if present is None:
            return
        m = self.mapping
        wanted = {"timestamp.column": m.timestamp.column, "asset.column": m.asset.column,
                  **{f"columns.{c}": c for c in m.columns},
                  "tag_column": m.tag_column, "value_column": m.value_column}
        if m.status is not None:
            wanted.update({"status.state": m.status.state, "status.end": m.status.end,
                           "status.derate_fraction": m.status.derate_fraction,
                           "status.cause": m.status.cause})
        line = 1 if self.source.suffix.lower() == ".csv" else None
        for key, column in wanted.items():
            if column is not None and column not in present:
                listed = ", ".join(repr(c) for c in present[:12])
                raise self._error(line, "header", f"no column {column!r} (the mapping's "
                                  f"{key}); the file has {listed or 'none'}")

    def _rows(self, progress: Callable[[int], object]) -> Iterator[tuple[int, dict[str, Any]]]:
        self.check_columns()
        count = 0
        for number, row in rows(self.source):
            progress(1)
            count += 1
            yield number, row
        if count == 0:
            raise self._error(None, "", "no rows: the export holds nothing to import")

    # -- values ------------------------------------------------------------------------

    def timestamp(self, number: int, row: dict[str, Any], column: str) -> int:
        raw = row.get(column)
        fmt = self.mapping.timestamp.format
        if raw is None or raw == "":
            raise self._error(number, column, "missing timestamp")
        if fmt in ("epoch_ms", "epoch_s"):
            ms = self._epoch(number, column, raw, 1 if fmt == "epoch_ms" else 1000)
        else:
            ms = self._moment(number, column, raw, fmt)
        if ms < MIN_DEVICE_MS:
            raise self._error(number, column, f"{shown(raw)} is before 2000-01-01: no time "
                              "a battery fleet reported")  # a device clock reset, 1970
        if ms > self.latest_ms:
            raise self._error(number, column, f"{shown(raw)} ({iso(ms)}) is in the future: "
                              "ahead of this computer's clock" if ms <= MAX_MS else
                              f"{shown(raw)} is after 2100-01-01")
        return ms

    def _epoch(self, number: int, column: str, raw: Any, scale: int) -> int:
        """Epoch milliseconds or seconds, exact (a float by its shortest decimal text),
        floored to the millisecond."""
        if isinstance(raw, bool):
            value = None
        elif isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, float):
            value = Decimal(repr(raw)) if math.isfinite(raw) else None
        elif isinstance(raw, Decimal):
            value = raw if raw.is_finite() else None
        elif isinstance(raw, str) and _NUMBER.fullmatch(raw):
            value = Decimal(raw.strip())
        else:
            value = None
        if value is None:
            raise self._error(number, column, f"{shown(raw)} is not an epoch time in "
                              f"{'milliseconds' if scale == 1 else 'seconds'}")
        if abs(value) > Decimal(10**18) / scale:
            return MAX_MS + 1 if value > 0 else -1  # far out of range either way
        return int((value * scale).to_integral_value(rounding="ROUND_FLOOR"))

    def _moment(self, number: int, column: str, raw: Any, fmt: str) -> int:
        if isinstance(raw, dt.datetime):  # a Parquet timestamp
            moment = raw
        elif isinstance(raw, str):
            control = _CONTROL.search(raw)
            if control is not None:
                raise self._error(number, column, f"{shown(raw)} contains a control character")
            if fmt == "iso" and any(len(d) > 6 for d in _FRACTION.findall(raw)):
                # fromisoformat drops the 7th digit on: a time would move without a word
                raise self._error(number, column, f"{shown(raw)} has more than 6 fractional "
                                  "digits of a second")
            try:
                if fmt == "iso":
                    moment = dt.datetime.fromisoformat(raw)
                else:
                    moment = dt.datetime.strptime(raw, fmt)
            except ValueError:
                raise self._error(number, column, f"{shown(raw)} does not match format "
                                  f"{fmt!r}") from None
        elif isinstance(raw, dt.date):
            raise self._error(number, column, f"{shown(raw)} is a date, not a time")
        else:
            raise self._error(number, column, f"{shown(raw)} is not a time (format {fmt!r})")
        if not 1999 <= moment.year <= 2100:  # before any zone arithmetic can overflow
            raise self._error(number, column, f"{shown(raw)} is outside 2000-01-01.."
                              "2100-01-01")
        if moment.tzinfo is None:
            moment = self._local(number, column, raw, moment)
        return (moment - EPOCH) // dt.timedelta(milliseconds=1)  # exact, floored

    def _local(self, number: int, column: str, raw: Any, moment: dt.datetime) -> dt.datetime:
        """A wall-clock time in the mapping's zone; one the clocks skip (spring forward) or
        pass twice (fall back) names no single moment, and is refused."""
        if self.tz is None:
            raise self._error(number, column, f"{shown(raw)} has no UTC offset and the "
                              "mapping names no timezone")
        local = moment.replace(tzinfo=self.tz)
        back = local.astimezone(dt.UTC).astimezone(self.tz).replace(tzinfo=None)
        if back != moment:
            raise self._error(number, column, f"{shown(raw)} does not exist in {self.tz} "
                              "(the clocks skip it)")
        if local.replace(fold=1).utcoffset() != local.utcoffset():
            raise self._error(number, column, f"{shown(raw)} is ambiguous in {self.tz} (the "
                              "clocks pass it twice): export times with a UTC offset")
        return local

    def asset(self, number: int, row: dict[str, Any]) -> str:
        column = self.mapping.asset.column
        raw = row.get(column)
        if raw is None or raw == "":
            raise self._error(number, column, "missing asset")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise self._error(number, column, f"{shown(raw)} is no asset name")
        name = str(raw)
        asset_id = self.mapping.asset.names.get(name, name)
        asset = self.fleet.assets.get(asset_id)
        if asset is None or asset.unit_id is None:
            raise self._error(number, column, f"{shown(name)} is no unit, inverter or block "
                              "of the fleet")
        return asset_id

    def number(self, number: int, row: dict[str, Any], column: str) -> float | None:
        raw = row.get(column)
        if raw is None or raw == "":
            return None
        value: float | None = None
        if isinstance(raw, bool):
            value = None
        elif isinstance(raw, str):
            value = float(raw) if _NUMBER.fullmatch(raw) else None
        elif isinstance(raw, int | float | Decimal):
            try:
                value = float(raw)
            except OverflowError:
                raise self._error(number, column, f"{shown(raw)} is too large for a "
                                  "number") from None
        if value is None:
            raise self._error(number, column, f"{shown(raw)} is not a number")
        if not math.isfinite(value):
            raise self._error(number, column, f"{shown(raw)} is not a finite number")
        return value

    def reading(self, number: int, column: str, tag: str, value: float) -> None:
        """Refuse a value its canonical tag cannot have."""
        target = self.ranges.get(tag)
        if target is None:
            return  # not monitored: passed on as it is
        canonical, scale, offset, low, high = target
        scaled = value * scale + offset
        if not low <= scaled <= high:
            raise self._error(number, column, f"{value:g} is outside the possible range "
                              f"[{low:g}, {high:g}] of {canonical}")

    def tag(self, number: int, row: dict[str, Any]) -> str | None:
        """The tag a long export's row names (through `tag_names`); None for none."""
        column = self.mapping.tag_column
        assert column is not None
        raw = row.get(column)
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise self._error(number, column, f"{shown(raw)} is no tag name")
        name = self.mapping.tag_names.get(raw, raw)
        if not _TAG.fullmatch(name) or not _encodable(name):
            raise self._error(number, column, f"{shown(name)} is no tag name (1 to 200 "
                              "printable characters)")
        return name

    # -- telemetry ---------------------------------------------------------------------

    def samples(self, progress: Callable[[int], object] = lambda n: None
                ) -> Iterator[TelemetrySample]:
        """One sample per device and timestamp: rows of one poll may interleave with other
        devices' rows; a device's sample is complete once a later row of it arrives."""
        m = self.mapping
        pending: dict[str, _Open] = {}
        for number, row in self._rows(progress):
            ts = self.timestamp(number, row, m.timestamp.column)
            asset_id = self.asset(number, row)
            device = self.fleet.assets[asset_id].unit_id
            assert device is not None
            tags: dict[str, tuple[float, str]] = {}  # tag → (value, column)
            if m.columns:
                for column, tag in m.columns.items():
                    value = self.number(number, row, column)
                    if value is not None:
                        self.reading(number, column, tag, value)
                        tags[tag] = (value, column)
            else:
                assert m.value_column is not None
                name = self.tag(number, row)
                value = self.number(number, row, m.value_column)
                if name is None and value is not None:
                    raise self._error(number, m.tag_column or "", "missing tag name")
                if name is not None and value is not None:
                    self.reading(number, m.value_column, name, value)
                    tags[name] = (value, m.value_column)
            current = pending.get(device)
            if current is not None and current.ts_ms != ts:
                if ts < current.ts_ms:
                    raise self._error(number, m.timestamp.column, f"{device} goes back in "
                                      f"time ({iso(ts)} after {iso(current.ts_ms)}): sort "
                                      "the export")
                yield self._sample(device, current)
                current = None
            if current is None:
                current = pending[device] = _Open(ts, number, {})
            readings = current.assets.setdefault(asset_id, {})
            for tag, (value, column) in tags.items():
                before = current.given.get((asset_id, tag))
                if before is not None:
                    raise self._error(number, column, f"{tag} of {asset_id} at {iso(ts)} was "
                                      f"given before (row {before})")
                current.given[(asset_id, tag)] = number
                readings[tag] = value
        for device, current in sorted(pending.items(), key=lambda kv: kv[1].ts_ms):
            yield self._sample(device, current)

    def _sample(self, device: str, poll: _Open) -> TelemetrySample:
        try:
            return TelemetrySample(device_id=device, device_type=self.mapping.device_type,
                                   ts_ms=poll.ts_ms,
                                   assets=tuple(AssetReading(id=a, tags=t)
                                                for a, t in poll.assets.items()))
        except ValidationError as exc:  # e.g. more than 10,000 tags in one poll
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise self._error(poll.row, "", f"the sample of {device} at {iso(poll.ts_ms)} "
                              f"cannot be sent: {where}: {first['msg']}") from None

    # -- status ------------------------------------------------------------------------

    def intervals(self, progress: Callable[[int], object] = lambda n: None
                  ) -> Iterator[tuple[StatusChange, StatusIntervalRow]]:
        m = self.mapping
        columns_ = m.status
        assert columns_ is not None
        states, causes = get_args(State), get_args(Cause)
        previous: dict[str, tuple[int, int]] = {}  # asset → (end of its last interval, row)
        for number, row in self._rows(progress):
            asset_id = self.asset(number, row)
            start = self.timestamp(number, row, m.timestamp.column)
            end = self.timestamp(number, row, columns_.end)
            if end <= start:
                raise self._error(number, columns_.end, "is not after the start")
            last = previous.get(asset_id)
            if last is not None and start < last[0]:
                raise self._error(number, m.timestamp.column, f"{asset_id}'s interval from "
                                  f"{iso(start)} begins before its previous one (row "
                                  f"{last[1]}) ends at {iso(last[0])}: an asset's intervals "
                                  "must not overlap and must come in time order")
            previous[asset_id] = (end, number)
            raw_state = row.get(columns_.state)
            state = raw_state if isinstance(raw_state, str) else ""
            if state not in states:
                raise self._error(number, columns_.state, f"{shown(raw_state)} is not one of "
                                  f"{', '.join(states)}")
            fraction = self.number(number, row, columns_.derate_fraction) \
                if columns_.derate_fraction else None
            if (state == "derated") != (fraction is not None) or (
                    fraction is not None and not 0 <= fraction <= 1):
                raise self._error(number, columns_.derate_fraction or columns_.state,
                                  "derated needs a fraction in 0..1, other states none")
            raw_cause = row.get(columns_.cause) if columns_.cause else None
            cause = "" if raw_cause is None else raw_cause
            if cause != "" and (not isinstance(cause, str) or cause not in causes):
                raise self._error(number, columns_.cause or "", f"{shown(raw_cause)} is not "
                                  f"one of {', '.join(causes)}")
            site = self.fleet.assets[asset_id].site_id
            yield (StatusChange(asset_id=asset_id, site_id=site, ts_ms=start,
                                state=state,  # type: ignore[arg-type]
                                derate_fraction=fraction,
                                cause=cause or None),  # type: ignore[arg-type]
                   StatusIntervalRow(asset_id, site, start, end,
                                     state, fraction, cause or None))  # type: ignore[arg-type]


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _ranges(monitoring: MonitoringConfig, device_type: str | None) -> dict[str, _Range]:
    """Per tag of the device type (canonical tags for None): its canonical tag, scale,
    offset and possible range."""
    def bounds(tag: str) -> tuple[float, float]:
        spec = monitoring.tags[tag]
        return (-math.inf if spec.min is None else spec.min,
                math.inf if spec.max is None else spec.max)

    if device_type is None:
        return {name: (name, 1.0, 0.0, *bounds(name)) for name in monitoring.tags}
    kind = monitoring.device_types[device_type]
    return {raw: (m.tag, m.scale, m.offset, *bounds(m.tag)) for raw, m in kind.tags.items()}
