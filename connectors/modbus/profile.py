"""Device profiles: where each tag of each asset sits in a device's holding registers.

Points are data (a frozen model each, a tuple per asset kind), loaded from YAML files shared
by the simulator (which encodes values) and the connector (which decodes them). A point says
where its registers are, how to read them (datatype, word and byte order), how to turn the raw
number into an engineering value (`value = raw · scale · 10^scale_factor + value_offset`), which
poll group reads it, and whether the control loop may write it.

    id: acme-pcs-v2
    word_order: little              # the profile's default; a point may say otherwise
    byte_order: big
    poll_groups: {thermal: 10.0}    # seconds; points without a group poll at the device's rate
    layout: {unit: {base: 0}}
    points:
      unit:
        - {tag: serial_number, offset: 0, datatype: string, count: 8, group: thermal}
        - {tag: alarms, offset: 8, datatype: bitfield, bits: {door_open: 0, fan_fault: 3}}
        - {tag: temperature_c, offset: 9, datatype: int16, scale: 0.1, value_offset: -40,
           group: thermal}
        - {tag: active_power_limit_kw, offset: 10, datatype: uint32, scale: 0.1,
           writable: true, min: 0}
        - {tag: soc_pct, offset: 12, datatype: uint16, scale: 0.01, min: 0, max: 100}

A decoded value that cannot be true is left out of the poll's sample and reported (a dead
letter, connectors/refusals.py): a number that is not finite (a float register holding NaN or
±inf, a scale factor beyond ±10), a number outside the point's `min`..`max`, an enum code the
point does not list, text that is not UTF-8 or holds control characters. The "not available"
raw value (`missing`) and an empty string are no refusals: nothing is published for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors.modbus.codec import (
    INTEGERS,
    Datatype,
    EncodeError,
    Order,
    RawValue,
    natural_size,
    pack,
    packer,
    shortest_float32,
    unpack,
)
from connectors.refusals import IMPOSSIBLE_VALUE, NOT_TEXT, Refused
from contracts.errors import InvalidInput
from contracts.events import TagValue
from contracts.fleet import Unit
from contracts.yamltext import YamlDocument, read_text, validate

AssetKind = Literal["unit", "inverter", "block"]
MAX_READ = 125  # registers per Modbus read (spec limit)
MAX_GAP = 32  # unused registers read along rather than starting another request
DEFAULT_GROUP = "default"  # points without a group: polled at the device's poll_interval_s
TAG_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_EXPONENT = 10  # scale factors are -10..10 (SunSpec's sunssf range)
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
GroupName = Annotated[str, Field(pattern=TAG_PATTERN)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Point(BaseModel):
    """One value of an asset: its registers, their layout and their meaning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: Tag
    offset: int = Field(ge=0, le=0xFFFF)  # first register, from the asset's slot base
    datatype: Datatype
    count: int | None = Field(None, ge=1, le=MAX_READ)  # registers of a string / bit field
    scale: float = 1.0
    value_offset: Finite = 0.0  # added after scaling (e.g. -40 for a sensor reading from -40 °C)
    unit: str | None = None
    word_order: Order | None = None  # None: the profile's
    byte_order: Order | None = None  # None: the profile's
    bits: dict[Tag, Annotated[int, Field(ge=0, le=31)]] | None = None  # bit field: tag → bit
    enum: dict[int, Finite] | None = None  # raw code → published value; others refused
    scale_factor: Tag | None = None  # an int16 point of the same asset: ×10^its value (SunSpec)
    missing: int | None = None  # the raw value that means "not available" (tag left out)
    group: GroupName | None = None  # poll group; None = the device's own interval
    publish: bool = True  # False: read (a scale factor, a bit field's word) but not published
    writable: bool = False  # a setpoint the control loop may write
    # The possible range of the published value: a value read outside it is refused (left
    # out, dead-lettered), and so is a write before it leaves.
    min: Finite | None = None
    max: Finite | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        natural = natural_size(self.datatype)
        plain = self.scale == 1 and self.value_offset == 0
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError("scale must be a finite number other than 0")
        if self.datatype == "string":
            if self.count is None:
                raise ValueError("a string point needs count (its registers, 2 bytes each)")
            if not plain or self.bits or self.enum or self.scale_factor:
                raise ValueError("a string point takes no scale, value_offset, bits, enum or "
                                 "scale_factor")
        elif self.datatype == "bitfield":
            if self.count not in (None, 1, 2):
                raise ValueError("a bit field is 1 or 2 registers (count)")
            if not plain or self.enum or self.scale_factor:
                raise ValueError("a bit field takes no scale, value_offset, enum or "
                                 "scale_factor")
            if self.bits and max(self.bits.values()) >= 16 * self.size:
                raise ValueError(f"bit {max(self.bits.values())} is beyond a "
                                 f"{16 * self.size}-bit field")
        else:
            if self.count is not None and self.count != natural:
                raise ValueError(f"count is for string and bitfield points ({self.datatype} is "
                                 f"{natural} registers)")
            if self.bits:
                raise ValueError("bits are for bitfield points")
            if self.enum and self.datatype not in INTEGERS:
                raise ValueError("enum maps the codes of an integer point")
        if self.writable and (self.enum or self.scale_factor):
            raise ValueError("a writable point cannot use enum or scale_factor")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if (self.min is not None or self.max is not None) and \
                self.datatype in ("string", "bitfield"):
            raise ValueError(f"min and max bound numbers; a {self.datatype} point has none")
        if self.offset + self.size > 0x10000:
            raise ValueError("the point runs past register 65535")
        return self

    @property
    def size(self) -> int:
        """Registers the point takes."""
        return natural_size(self.datatype) or self.count or 1

    @property
    def poll_group(self) -> str:
        return self.group or DEFAULT_GROUP

    def scaled(self, raw: int | float, exponent: int = 0) -> float:
        """Raw number → engineering value, tidied: no 42.420000000000002 from 4242 · 0.01."""
        if self.scale == 1 and self.value_offset == 0 and exponent == 0:
            value = float(raw)
            return shortest_float32(value) if self.datatype == "float32" else value
        try:
            value = raw * self.scale * 10.0 ** exponent + self.value_offset
        except OverflowError:  # 10.0 ** 400: no value, refused as not finite
            return math.inf
        return float(f"{value:.12g}") if math.isfinite(value) else value

    def possible(self, value: float) -> Refused | None:
        """Why a published number cannot be true (not finite, outside `min`..`max`), or
        None."""
        if not math.isfinite(value):
            return Refused(IMPOSSIBLE_VALUE, f"{value!r} is not finite")
        if (self.min is not None and value < self.min) or \
                (self.max is not None and value > self.max):
            return Refused(IMPOSSIBLE_VALUE, f"{value!r} is outside [{_bound(self.min)}, "
                                             f"{_bound(self.max)}]")
        return None


class Slot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base: int = Field(ge=0, le=0xFFFF)
    stride: int = Field(0, ge=0)
    max: int = Field(1, ge=1)


class DeviceProfile(BaseModel):
    """A device type: its register layout per asset kind and the points of each kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    description: str = ""
    word_order: Order = "big"
    byte_order: Order = "big"
    max_gap: int = Field(MAX_GAP, ge=0, le=MAX_READ)  # 0: never read across unused registers
    poll_groups: dict[GroupName, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    layout: dict[AssetKind, Slot]
    points: dict[AssetKind, Annotated[tuple[Point, ...], Field(min_length=1)]]

    @field_validator("poll_groups")
    @classmethod
    def _no_default_group(cls, groups: dict[str, float]) -> dict[str, float]:
        if DEFAULT_GROUP in groups:
            raise ValueError(f"'{DEFAULT_GROUP}' is the group of points without one; it polls "
                             "at the device's poll_interval_s")
        return groups

    @field_validator("points")
    @classmethod
    def _fit_layout(cls, points: dict[AssetKind, tuple[Point, ...]],
                    info: ValidationInfo) -> dict[AssetKind, tuple[Point, ...]]:
        layout: dict[AssetKind, Slot] = info.data.get("layout") or {}
        for kind, kind_points in points.items():
            if kind not in layout:
                raise ValueError(f"'{kind}' has points but no slot in layout")
            span = max(p.offset + p.size for p in kind_points)
            slot = layout[kind]
            if slot.max > 1 and span > slot.stride:
                raise ValueError(f"'{kind}' points span {span} registers, more than its "
                                 f"layout stride {slot.stride}")
        return points

    def reference_problems(self) -> list[tuple[list[str | int], str]]:
        """What the points say about each other that does not hold: a tag twice in a kind, a
        poll group or scale factor that is not there. `(key path, problem)` pairs, so a YAML
        file can name the line."""
        problems: list[tuple[list[str | int], str]] = []
        for kind, kind_points in self.points.items():
            seen: set[str] = set()
            by_tag = {p.tag: p for p in kind_points}
            for i, p in enumerate(kind_points):
                path: list[str | int] = ["points", kind, i]
                for name, key in [(p.tag, "tag"), *((b, "bits") for b in p.bits or {})]:
                    if name in seen:
                        problems.append(([*path, key],
                                         f"tag '{name}' appears twice in the '{kind}' points"))
                    seen.add(name)
                if p.group is not None and p.group not in self.poll_groups:
                    known = ", ".join(self.poll_groups) or "none defined"
                    problems.append(([*path, "group"], f"no poll group '{p.group}' in "
                                                       f"poll_groups ({known})"))
                if p.scale_factor is not None:
                    sf = by_tag.get(p.scale_factor)
                    if sf is None or sf.datatype != "int16":
                        problems.append(([*path, "scale_factor"], f"'{p.scale_factor}' is not "
                                         f"an int16 point of the '{kind}' points"))
                    elif sf.poll_group != p.poll_group:
                        problems.append(([*path, "scale_factor"], f"'{p.scale_factor}' is "
                                         f"polled in group '{sf.poll_group}', not "
                                         f"'{p.poll_group}'"))
        return problems

    def check(self) -> DeviceProfile:
        """Raise ValueError on the first reference problem (profiles built in code)."""
        problems = self.reference_problems()
        if problems:
            path, problem = problems[0]
            raise ValueError(f"profile {self.id}: {'.'.join(map(str, path))}: {problem}")
        return self

    @property
    def by_tag(self) -> dict[AssetKind, dict[str, Point]]:
        """Points by kind and tag (not cached: `model_copy` would carry a stale copy)."""
        return {kind: {p.tag: p for p in pts} for kind, pts in self.points.items()}

    def orders(self, point: Point) -> tuple[Order, Order]:
        """(word order, byte order) of a point."""
        return point.word_order or self.word_order, point.byte_order or self.byte_order

    def raw(self, point: Point, registers: Sequence[int]) -> RawValue:
        return unpack(point.datatype, registers, *self.orders(point))

    def decode(self, point: Point, registers: Sequence[int], exponent: int = 0) -> TagValue:
        """Registers → engineering value: text, a bit field's integer, or a scaled number."""
        raw = self.raw(point, registers)
        if isinstance(raw, str) or point.datatype == "bitfield":
            return raw
        return point.scaled(raw, exponent)

    def encode(self, point: Point, value: TagValue, exponent: int = 0) -> list[int]:
        """Engineering value → registers (what a device would hold); EncodeError when the
        point cannot hold it."""
        raw: RawValue
        if point.datatype == "string":
            if not isinstance(value, str):
                raise EncodeError(f"{point.tag}: a string point takes text, not {value!r}")
            raw = value
        elif isinstance(value, str):
            raise EncodeError(f"{point.tag}: takes a number, not {value!r}")
        elif point.enum:
            codes = [code for code, v in point.enum.items() if v == value]
            if not codes:
                raise EncodeError(f"{point.tag}: {value!r} is none of the enum's values")
            raw = codes[0]
        elif point.datatype == "bitfield":
            raw = int(value)
        else:
            raw = (value - point.value_offset) / (point.scale * 10.0 ** exponent)
            if point.datatype in INTEGERS:
                if not math.isfinite(raw):
                    raise EncodeError(f"{point.tag}: {value!r} is not a number")
                raw = round(raw)
        try:
            return pack(point.datatype, raw, point.size, *self.orders(point))
        except EncodeError as exc:
            raise EncodeError(f"{point.tag}: {exc}") from None

    def encoder(self, point: Point) -> Callable[[TagValue, int], list[int]]:
        """`encode` for one point, its arithmetic and structs prepared once (simulators
        encode every point of every device at each tick). Same results and errors."""
        if point.datatype in ("string", "bitfield") or point.enum:
            return partial(self.encode, point)
        pack_raw = packer(point.datatype, point.size, *self.orders(point))
        scale, offset, tag = point.scale, point.value_offset, point.tag
        integer = point.datatype in INTEGERS

        def encode(value: TagValue, exponent: int = 0) -> list[int]:
            if isinstance(value, str):
                raise EncodeError(f"{tag}: takes a number, not {value!r}")
            raw = (value - offset) / (scale if exponent == 0 else scale * 10.0 ** exponent)
            if integer:
                if not math.isfinite(raw):
                    raise EncodeError(f"{tag}: {value!r} is not a number")
                raw = round(raw)
            try:
                return pack_raw(raw)
            except EncodeError as exc:
                raise EncodeError(f"{tag}: {exc}") from None

        return encode

    def published(self, point: Point, registers: Sequence[int],
                  exponent: int = 0) -> dict[str, TagValue] | Refused:
        """What a poll publishes for one point: its value under its tag (unless `publish` is
        off) and the booleans of a bit field — nothing for the "not available" raw value or
        an empty string; `Refused` for a value that cannot be true (see the module
        docstring). Never raises, whatever the registers hold."""
        return self.publish_raw(point, self.raw(point, registers), exponent)

    def publish_raw(self, point: Point, raw: RawValue,
                    exponent: int = 0) -> dict[str, TagValue] | Refused:
        """`published` from the raw value already unpacked."""
        if point.missing is not None and raw == point.missing:
            return {}
        if isinstance(raw, str):
            bad = NOT_TEXT.search(raw)
            if bad is not None:
                what = "bytes that are not UTF-8" if bad.group() == "\ufffd" else \
                    f"control character {bad.group()!r}"
                return Refused(IMPOSSIBLE_VALUE, f"text {raw[:40]!r} holds {what}")
            return {point.tag: raw} if raw and point.publish else {}
        if point.datatype == "bitfield":
            bits: dict[str, TagValue] = {t: bool(int(raw) >> b & 1)
                                         for t, b in (point.bits or {}).items()}
            return {point.tag: int(raw), **bits} if point.publish else bits
        if not point.publish:
            return {}
        if abs(exponent) > MAX_EXPONENT:
            return Refused(IMPOSSIBLE_VALUE, f"scale factor {exponent} is outside "
                                             f"-{MAX_EXPONENT}..{MAX_EXPONENT}")
        if point.enum is not None:
            mapped = point.enum.get(int(raw))
            if mapped is None:
                codes = ", ".join(map(str, sorted(point.enum)[:20]))
                return Refused(IMPOSSIBLE_VALUE, f"code {raw!r} is none of the enum's "
                                                 f"({codes})")
            value = float(mapped)
        else:
            value = point.scaled(raw, exponent)
        refused = point.possible(value)
        return {point.tag: value} if refused is None else refused


def _bound(value: float | None) -> str:
    return "…" if value is None else f"{value:g}"


@dataclass(frozen=True, slots=True)
class MappedAsset:
    """One asset of a device and the register address its points start at."""

    asset_id: str
    kind: AssetKind
    base: int


def map_assets(profile: DeviceProfile, unit: Unit) -> tuple[MappedAsset, ...]:
    """Assign a battery unit's assets to the profile's slots: the unit itself, its inverters in
    order, then its blocks in order across inverters."""
    inverters = [inv.id for inv in unit.inverters]
    blocks = [blk.id for inv in unit.inverters for blk in inv.blocks]
    out = [MappedAsset(unit.id, "unit", profile.layout["unit"].base)]
    children: tuple[tuple[AssetKind, list[str]], ...] = (
        ("inverter", inverters), ("block", blocks))
    for kind, ids in children:
        if not ids:
            continue
        slot = profile.layout.get(kind)
        if slot is None or len(ids) > slot.max:
            limit = 0 if slot is None else slot.max
            raise ValueError(f"unit {unit.id} has {len(ids)} {kind}s; profile {profile.id} "
                             f"holds {limit}")
        out += [MappedAsset(asset_id, kind, slot.base + i * slot.stride)
                for i, asset_id in enumerate(ids)]
    return tuple(out)


def read_blocks(profile: DeviceProfile, assets: Sequence[MappedAsset],
                group: str | None = None) -> list[tuple[int, int]]:
    """Coalesce the registers of the points of one poll group (every point when `group` is
    None) into as few reads as possible: `(address, count)` ranges of at most 125 registers.
    Gaps of up to the profile's `max_gap` unused registers are read along: a few bytes more
    cost far less than another round trip (a device whose unused registers answer with an
    exception wants `max_gap: 0`)."""
    spans = sorted(
        (a.base + p.offset, a.base + p.offset + p.size)
        for a in assets for p in profile.points.get(a.kind, ())
        if group is None or p.poll_group == group
    )
    blocks: list[list[int]] = []
    for start, end in spans:
        if blocks and start - blocks[-1][1] <= profile.max_gap and \
                max(end, blocks[-1][1]) - blocks[-1][0] <= MAX_READ:
            blocks[-1][1] = max(blocks[-1][1], end)
        else:
            blocks.append([start, end])
    return [(start, end - start) for start, end in blocks]


def parse_profile(text: str, source: str) -> DeviceProfile:
    doc = YamlDocument(text, source)
    profile = validate(doc, DeviceProfile, "id, layout and points")
    problems = profile.reference_problems()
    if problems:
        path, problem = problems[0]
        raise doc.error(path, problem)
    return profile


def load_profiles(directory: Path) -> dict[str, DeviceProfile]:
    """Every `*.yaml` profile in a directory, by id."""
    profiles: dict[str, DeviceProfile] = {}
    for path in sorted(directory.glob("*.yaml")):
        profile = parse_profile(read_text(path), str(path))
        if profile.id in profiles:
            raise InvalidInput(str(path), "id", f"profile id {profile.id!r} defined twice")
        profiles[profile.id] = profile
    return profiles
