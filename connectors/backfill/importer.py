"""Rows of an export → telemetry samples (or status changes) on Kafka, with their original
timestamps, in the file's order. The whole file is checked first, so a bad row refuses the
file before anything is sent; sending goes through the spooling producer (nothing lost)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from connectors.backfill.mapping import Mapping
from connectors.backfill.reader import rows
from connectors.history.rows import StatusIntervalRow
from contracts.errors import InvalidInput
from contracts.events import AssetReading, Cause, State, StatusChange, TelemetrySample
from contracts.fleet import Fleet


@dataclass
class _Open:
    ts_ms: int
    assets: dict[str, dict[str, float]]


class Importer:
    def __init__(self, mapping: Mapping, fleet: Fleet, source: Path) -> None:
        self.mapping = mapping
        self.fleet = fleet
        self.source = source
        tz = mapping.timestamp.timezone
        self.tz = ZoneInfo(tz) if tz else None

    def _error(self, row: int, column: str, problem: str) -> InvalidInput:
        return InvalidInput(str(self.source), column, problem, row)

    def timestamp(self, number: int, row: dict[str, Any], column: str) -> int:
        raw = row.get(column)
        fmt = self.mapping.timestamp.format
        if raw is None or raw == "":
            raise self._error(number, column, "missing timestamp")
        try:
            if fmt == "epoch_ms":
                return int(float(raw))
            if fmt == "epoch_s":
                return round(float(raw) * 1000)
            if isinstance(raw, dt.datetime):
                moment = raw
            elif fmt == "iso":
                moment = dt.datetime.fromisoformat(str(raw))
            else:
                moment = dt.datetime.strptime(str(raw), fmt)
        except (TypeError, ValueError):
            raise self._error(number, column, f"{raw!r} does not match format {fmt!r}") from None
        if moment.tzinfo is None:
            if self.tz is None:
                raise self._error(number, column, f"{raw!r} has no UTC offset and the mapping "
                                  "names no timezone")
            moment = moment.replace(tzinfo=self.tz)
        return int(moment.timestamp() * 1000)

    def asset(self, number: int, row: dict[str, Any]) -> str:
        column = self.mapping.asset.column
        raw = row.get(column)
        name = "" if raw is None else str(raw)
        asset_id = self.mapping.asset.names.get(name, name)
        asset = self.fleet.assets.get(asset_id)
        if asset is None or asset.unit_id is None:
            raise self._error(number, column, f"{name!r} is no unit, inverter or block of the "
                              "fleet")
        return asset_id

    def number(self, number: int, row: dict[str, Any], column: str) -> float | None:
        raw = row.get(column)
        if raw is None or raw == "":
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise self._error(number, column, f"{raw!r} is not a number") from None
        if not math.isfinite(value):
            raise self._error(number, column, f"{raw!r} is not finite")
        return value

    # -- telemetry ---------------------------------------------------------------------

    def samples(self, progress: Callable[[int], None] = lambda n: None
                ) -> Iterator[TelemetrySample]:
        """One sample per device and timestamp: rows of one poll may interleave with other
        devices' rows; a device's sample is complete once a later row of it arrives."""
        m = self.mapping
        pending: dict[str, _Open] = {}
        for number, row in rows(self.source):
            progress(1)
            ts = self.timestamp(number, row, m.timestamp.column)
            asset_id = self.asset(number, row)
            device = self.fleet.assets[asset_id].unit_id
            assert device is not None
            tags: dict[str, float] = {}
            if m.columns:
                for column, tag in m.columns.items():
                    value = self.number(number, row, column)
                    if value is not None:
                        tags[tag] = value
            else:
                assert m.tag_column is not None and m.value_column is not None
                tag_name = str(row.get(m.tag_column, ""))
                value = self.number(number, row, m.value_column)
                if tag_name and value is not None:
                    tags[m.tag_names.get(tag_name, tag_name)] = value
            current = pending.get(device)
            if current is not None and current.ts_ms != ts:
                if ts < current.ts_ms:
                    raise self._error(number, m.timestamp.column, f"{device} goes back in "
                                      f"time ({ts} after {current.ts_ms}): sort the export")
                yield self._sample(device, current)
                current = None
            if current is None:
                current = pending[device] = _Open(ts, {})
            current.assets.setdefault(asset_id, {}).update(tags)
        for device, current in sorted(pending.items(), key=lambda kv: kv[1].ts_ms):
            yield self._sample(device, current)

    def _sample(self, device: str, poll: _Open) -> TelemetrySample:
        return TelemetrySample(device_id=device, device_type=self.mapping.device_type,
                               ts_ms=poll.ts_ms,
                               assets=tuple(AssetReading(id=a, tags=t)
                                            for a, t in poll.assets.items()))

    # -- status ------------------------------------------------------------------------

    def intervals(self, progress: Callable[[int], None] = lambda n: None
                  ) -> Iterator[tuple[StatusChange, StatusIntervalRow]]:
        m = self.mapping
        columns = m.status
        assert columns is not None
        states, causes = get_args(State), get_args(Cause)
        for number, row in rows(self.source):
            progress(1)
            asset_id = self.asset(number, row)
            start = self.timestamp(number, row, m.timestamp.column)
            end = self.timestamp(number, row, columns.end)
            if end <= start:
                raise self._error(number, columns.end, "is not after the start")
            state = str(row.get(columns.state, ""))
            if state not in states:
                raise self._error(number, columns.state, f"{state!r} is not one of "
                                  f"{', '.join(states)}")
            fraction = self.number(number, row, columns.derate_fraction) \
                if columns.derate_fraction else None
            if (state == "derated") != (fraction is not None) or (
                    fraction is not None and not 0 <= fraction <= 1):
                raise self._error(number, columns.derate_fraction or columns.state,
                                  "derated needs a fraction in 0..1, other states none")
            cause = str(row.get(columns.cause, "") or "") if columns.cause else ""
            if cause and cause not in causes:
                raise self._error(number, columns.cause or "", f"{cause!r} is not one of "
                                  f"{', '.join(causes)}")
            site = self.fleet.assets[asset_id].site_id
            yield (StatusChange(asset_id=asset_id, site_id=site, ts_ms=start,
                                state=state,  # type: ignore[arg-type]
                                derate_fraction=fraction,
                                cause=cause or None),  # type: ignore[arg-type]
                   StatusIntervalRow(asset_id, site, start, end,
                                     state, fraction, cause or None))  # type: ignore[arg-type]
