"""Decoding, normalizing and validating raw telemetry: every record becomes a `Poll` of
canonical, plausible values, a dead letter that says why, or both (a poll without the values
that were refused, and a dead letter carrying the whole record)."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from pydantic import ValidationError

from contracts.events import DeadLetter, TelemetrySample, dead_letter
from contracts.fleet import Fleet
from contracts.monitoring import MonitoringConfig, TagMapping


def as_text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as it came off a topic, with where it came from (for dead letters)."""

    key: bytes | None
    value: bytes | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def dead(self, source: str, reason: str, detail: str, ts_ms: int) -> DeadLetter:
        return dead_letter(source=source, reason=reason, detail=detail, ts_ms=ts_ms,
                           key=as_text(self.key) or None, topic=self.topic,
                           partition=self.partition, offset=self.offset,
                           payload=as_text(self.value))


def decode_sample(record: RawRecord, now_ms: int) -> TelemetrySample | DeadLetter:
    """Parse one `bess.telemetry.raw` record; anything not a valid sample is kept whole in a
    dead letter that says why."""
    if not record.value:
        return record.dead("flows.telemetry", "empty", "record has no value", now_ms)
    try:
        return TelemetrySample.model_validate_json(record.value)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return record.dead("flows.telemetry", "malformed_json", first["msg"], now_ms)
        where = ".".join(str(p) for p in first["loc"])
        return record.dead("flows.telemetry", "schema",
                           f"{where}: {first['msg']} ({exc.error_count()} problem(s))", now_ms)


Readings = tuple[tuple[str, dict[str, float]], ...]  # (asset id, canonical tags) of a poll


@dataclass(frozen=True, slots=True)
class Poll:
    """One device poll, normalized: canonical numeric tags per asset of one battery unit."""

    device_id: str
    site_id: str
    unit_id: str
    ts_ms: int
    readings: Readings
    device_type: str | None = None


# A raw tag's canonical tag, compiled: value = raw · scale + offset within [low, high], the
# bounds finite (±float max at most) so that one comparison also refuses inf and NaN.
_Target = tuple[str, float, float, float, float]  # tag, scale, offset, low, high
_LARGEST = sys.float_info.max


class Normalizer:
    """Maps each device type's tags to canonical tags and refuses what cannot be true."""

    def __init__(self, config: MonitoringConfig, fleet: Fleet) -> None:
        self.assets = fleet.assets
        self.max_skew_ms = int(config.quality.max_clock_skew_s * 1000)
        bounds = {name: (-_LARGEST if spec.min is None else max(spec.min, -_LARGEST),
                         _LARGEST if spec.max is None else min(spec.max, _LARGEST))
                  for name, spec in config.tags.items()}

        def compile_map(tags: Mapping[str, TagMapping]) -> dict[str, _Target]:
            return {raw: (m.tag, m.scale, m.offset, *bounds[m.tag]) for raw, m in tags.items()}

        self.maps: dict[str | None, dict[str, _Target]] = {
            None: compile_map({name: TagMapping(tag=name) for name in config.tags})}
        for name, device_type in config.device_types.items():
            self.maps[name] = compile_map(device_type.tags)

    def normalize(self, sample: TelemetrySample, record: RawRecord,
                  now_ms: int | None) -> tuple[Poll | None, DeadLetter | None]:
        """`now_ms` is the clock the record cannot be ahead of — when it was produced, or
        received (None when neither is known); a timestamp further ahead of it than the
        allowed skew is refused: one sample from the future would move the site's
        watermark there and turn every honest sample after it late."""

        def dead(reason: str, detail: str) -> DeadLetter:
            return record.dead("flows.telemetry", reason, detail, sample.ts_ms)

        if now_ms is not None and sample.ts_ms > now_ms + self.max_skew_ms:
            return None, dead("clock_skew", f"timestamp {sample.ts_ms} is "
                              f"{(sample.ts_ms - now_ms) / 1000:.1f} s ahead of the receiving "
                              f"clock (allowed {self.max_skew_ms / 1000:.0f} s)")
        mapping = self.maps.get(sample.device_type)
        if mapping is None:
            return None, dead("unknown_device_type",
                              f"device type {sample.device_type!r} has no tag map")
        unit_id: str | None = None
        readings: list[tuple[str, dict[str, float]]] = []
        refused: list[str] = []
        assets = self.assets
        for reading in sample.assets:
            asset = assets.get(reading.id)
            if asset is None or asset.unit_id is None:
                return None, dead("unknown_asset", f"asset {reading.id!r} is no unit, inverter "
                                  "or block of the fleet")
            if unit_id is not None and asset.unit_id != unit_id:
                return None, dead("mixed_units", f"one poll reports units {unit_id} and "
                                  f"{asset.unit_id}")
            unit_id = asset.unit_id
            tags: dict[str, float] = {}
            for raw_tag, raw_value in reading.tags.items():
                target = mapping.get(raw_tag)
                if target is None:
                    continue  # not monitored; the raw record stays on the topic
                kind = type(raw_value)
                if kind is float or kind is int:  # bool and str are refused below
                    tag, scale, offset, low, high = target
                    value = _scaled(raw_value, scale, offset)  # type: ignore[arg-type]
                    if low <= value <= high:  # False for NaN; inf is beyond the bounds
                        tags[tag] = value
                        continue
                refused.append(_refusal(reading.id, raw_tag, raw_value, target))
            readings.append((reading.id, tags))
        assert unit_id is not None  # a sample has at least one asset
        if record.key is not None and record.key != sample.device_id.encode():
            # Connectors key every record by its device: a record saying otherwise was not
            # written by one, and would open state for a device that does not exist.
            return None, dead("key_mismatch", f"record key {as_text(record.key)[:200]!r} is not "
                              f"its device_id {sample.device_id!r}")
        poll = Poll(sample.device_id, self.assets[unit_id].site_id, unit_id, sample.ts_ms,
                    tuple(readings), sample.device_type)
        if refused:
            return poll, dead("impossible_value", "; ".join(refused))
        return poll, None


def _scaled(raw_value: float, scale: float, offset: float) -> float:
    """The canonical value, always a float (an int beyond 2**63 would overflow the history's
    columns further down); NaN for an int too large for a float, which the bounds refuse."""
    try:
        return float(raw_value) * scale + offset
    except OverflowError:
        return math.nan


def _refusal(asset_id: str, raw_tag: str, raw_value: object, target: _Target) -> str:
    """Why a value was refused, for the dead letter."""
    kind = type(raw_value)
    if kind is not float and kind is not int:
        return f"{asset_id}.{raw_tag}={repr(raw_value)[:40]} is not a number"
    tag, scale, offset, low, high = target
    value = _scaled(cast(float, raw_value), scale, offset)
    if not math.isfinite(value):
        return f"{asset_id}.{raw_tag}={str(raw_value)[:40]} is not finite"
    return (f"{asset_id}.{tag}={value:g} is outside the possible range [{_bound(low)}, "
            f"{_bound(high)}]")


def _bound(value: float) -> str:
    return "None" if abs(value) == _LARGEST else repr(value)
