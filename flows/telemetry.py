"""Decoding, normalizing and validating raw telemetry: every record becomes a `Poll` of
canonical, plausible values, a dead letter that says why, or both (a poll without the values
that were refused, and a dead letter carrying the whole record)."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import orjson
from pydantic import ValidationError

from contracts.events import MAX_MS, MIN_DEVICE_MS, DeadLetter, TelemetrySample, dead_letter
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

# `TelemetrySample`'s bounds, as `Normalizer.read`'s fast path checks them
_SAMPLE_KEYS = frozenset(TelemetrySample.model_fields)
_NAME_MAX = 200  # Name, LookupName
_ITEMS_MAX = 10_000  # assets of a sample, tags of an asset
_TEXT_MAX = 1_000  # a tag's text value
# orjson's integers: [-2**63, 2**64); beyond, it gives a float where pydantic gives an int
_INT_LOW, _INT_HIGH = -2.0**63, 2.0**64


def _fast_target(target: _Target) -> _Target:
    """`target` with bounds narrowed for `Normalizer.read`'s fast path (a value outside them
    is judged again against the exact ones), and a float scale and offset.

    Floats: an int times a float is float(int) times it, exactly `_scaled`'s value (no int
    of orjson's overflows a float). Bounds: orjson reads an integer beyond 64 bits as a
    float where pydantic keeps an int (with other refusal texts), so the fast path must not
    take a float of magnitude 2**63 or more as a plain value. raw · scale + offset, rounded
    as computed, never decreases as raw grows (nor increases, for a negative scale): every
    such magnitude lands at or beyond the values of raw = ±2**63, which the narrowed
    bounds exclude."""
    tag, scale, offset, low, high = target
    scale, offset = float(scale), float(offset)
    ends = (_INT_LOW * scale + offset, -_INT_LOW * scale + offset)
    return (tag, scale, offset, max(low, math.nextafter(min(ends), math.inf)),
            min(high, math.nextafter(max(ends), -math.inf)))


def _plain_name(name: str) -> bool:
    """A `Name` for sure (1 to 200 characters, no control character): `isprintable` is
    False for every character the pattern refuses (and for some more it accepts)."""
    return 0 < len(name) <= _NAME_MAX and name.isprintable()


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
        # `read`'s fast path takes a mapped tag's name and a fleet asset's id as valid: only
        # maps whose every name a sample may carry (`LookupName`: 1 to 200 characters);
        # the ids of a battery unit's assets, to their unit.
        self.fast_maps = {name: {raw: _fast_target(target) for raw, target in tags.items()}
                          for name, tags in self.maps.items()
                          if all(0 < len(raw) <= _NAME_MAX for raw in tags)}
        self.units_of = {asset_id: asset.unit_id for asset_id, asset in self.assets.items()
                         if asset.unit_id is not None and 0 < len(asset_id) <= _NAME_MAX}

    def read(self, record: RawRecord, received_ms: int,
             now_ms: int | None) -> tuple[Poll | None, DeadLetter | None]:
        """A `bess.telemetry.raw` record as a poll and/or a dead letter: exactly what
        `decode_sample(record, received_ms)` then `normalize(…, now_ms)` give (a record
        refused by the decoder: no poll, its dead letter), for about 0.6 of their cost
        (`python -m bench.decode`).

        Why a fast path: validating with pydantic (`TelemetrySample`) and then walking the
        validated models again cost about a third of the telemetry step per poll. The fast
        path parses with orjson and validates while it normalizes, in one walk of plain
        dicts, without a function call per tag. Why it falls back: it accepts only what it
        is certain `TelemetrySample` would accept and turn into the same values; anything
        else — a parse error, a key too many, missing or twice, a type or bound pydantic
        would coerce or refuse, a name outside the plain printable ones, a colon in a
        string — and every refusal but impossible values (a whole record refused is rare,
        never the hot path) go the reference way, which writes today's exact dead letter.
        tests/flows/test_fast_decode.py compares both on mutated records."""
        fast = self._fast(record, now_ms)
        if fast is not None:
            return fast
        sample = decode_sample(record, received_ms)
        if isinstance(sample, DeadLetter):
            return None, sample
        return self.normalize(sample, record, now_ms)

    def _fast(self, record: RawRecord, now_ms: int | None
              ) -> tuple[Poll, DeadLetter | None] | None:
        """`read` for a valid record of known, plausible assets of one unit (values refused
        as impossible aside): its poll and dead letter; None for anything else."""
        if not record.value:
            return None
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict or not doc.keys() <= _SAMPLE_KEYS:
            return None
        v = doc.get("v", 1)
        device_id = doc.get("device_id")
        device_type = doc.get("device_type")
        ts_ms = doc.get("ts_ms")
        entries = doc.get("assets")
        # type() is: pydantic would coerce True to 1, 1.0 to 1 and "1" to an int.
        if (type(v) is not int or v != 1 or type(ts_ms) is not int
                or not MIN_DEVICE_MS <= ts_ms <= MAX_MS
                or type(device_id) is not str or not _plain_name(device_id)
                or (device_type is not None and (type(device_type) is not str
                                                 or not _plain_name(device_type)))
                or type(entries) is not list or not 0 < len(entries) <= _ITEMS_MAX
                or (now_ms is not None and ts_ms > now_ms + self.max_skew_ms)):
            return None
        mapping = self.fast_maps.get(device_type)
        if mapping is None:
            return None
        exact = self.maps[device_type]
        units_of = self.units_of
        unit_id: str | None = None
        members = len(doc)  # of every object, as parsed
        readings: list[tuple[str, dict[str, float]]] = []
        refused: list[str] = []
        for entry in entries:
            if type(entry) is not dict or len(entry) != 2:
                return None
            asset_id = entry.get("id")
            raw_tags = entry.get("tags")
            if (type(asset_id) is not str or type(raw_tags) is not dict
                    or len(raw_tags) > _ITEMS_MAX):
                return None  # (with both keys there, no other key: len(entry) == 2)
            members += 2 + len(raw_tags)
            unit = units_of.get(asset_id)
            if unit is None or (unit != unit_id and unit_id is not None):
                return None  # unknown_asset, mixed_units: the reference's
            unit_id = unit
            tags: dict[str, float] = {}
            for raw_tag, raw_value in raw_tags.items():
                kind = type(raw_value)
                target = mapping.get(raw_tag)
                if target is not None and (kind is float or kind is int):
                    tag, scale, offset, low, high = target
                    value = raw_value * scale + offset  # `_scaled`'s, without the call
                    if low <= value <= high:
                        tags[tag] = value
                        continue
                    if kind is float and not _INT_LOW < raw_value < _INT_HIGH:
                        return None  # perhaps an integer beyond 64 bits: see `_fast_target`
                    tag, scale, offset, low, high = exact[raw_tag]
                    if low <= value <= high:
                        tags[tag] = value
                        continue
                elif target is None:  # not monitored, but it must still be a valid one
                    if not 0 < len(raw_tag) <= _NAME_MAX or (
                            len(raw_value) > _TEXT_MAX if kind is str else
                            kind is not float and kind is not int and kind is not bool):
                        return None
                    continue
                elif kind is str:
                    if len(raw_value) > _TEXT_MAX:
                        return None
                elif kind is not bool:
                    return None  # null, a list, an object
                refused.append(_refusal(asset_id, raw_tag, raw_value, exact[raw_tag]))
            readings.append((asset_id, tags))
        assert unit_id is not None  # at least one asset
        if record.value.count(b":") != members:
            # A key twice in an object: orjson keeps the last value, pydantic checks every
            # one of a dict's (`tags`). One colon per member as parsed means no key twice
            # (nor a colon in a string: such a record is left to the reference too).
            return None
        if record.key is not None and record.key != device_id.encode():
            return None  # key_mismatch: the reference's
        poll = Poll(device_id, self.assets[unit_id].site_id, unit_id, ts_ms,
                    tuple(readings), device_type)
        if refused:
            return poll, record.dead("flows.telemetry", "impossible_value", "; ".join(refused),
                                     ts_ms)
        return poll, None

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
