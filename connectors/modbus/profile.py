"""Device profiles: where each tag of each asset sits in a device's holding registers.

Points are data (a frozen dataclass each, a tuple per asset kind), loaded from YAML files shared
by the simulator (which encodes values) and the connector (which decodes them)."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contracts.errors import InvalidInput
from contracts.fleet import Unit
from contracts.yamltext import YamlDocument, read_text, validate

Datatype = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
AssetKind = Literal["unit", "inverter", "block"]
MAX_READ = 125  # registers per Modbus read (spec limit)
MAX_GAP = 32  # unused registers read along rather than starting another request

_STRUCT: dict[str, tuple[str, int]] = {
    "int16": (">h", 1), "uint16": (">H", 1), "int32": (">i", 2), "uint32": (">I", 2),
    "float32": (">f", 2), "float64": (">d", 4),
}


class Point(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    offset: int = Field(ge=0)
    datatype: Datatype
    scale: float = 1.0
    unit: str | None = None

    @property
    def count(self) -> int:
        return _STRUCT[self.datatype][1]


class Slot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base: int = Field(ge=0)
    stride: int = Field(0, ge=0)
    max: int = Field(1, ge=1)


class DeviceProfile(BaseModel):
    """A device type: its register layout per asset kind and the points of each kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    description: str = ""
    word_order: Literal["big", "little"] = "big"
    layout: dict[AssetKind, Slot]
    points: dict[AssetKind, Annotated[tuple[Point, ...], Field(min_length=1)]]

    @field_validator("points")
    @classmethod
    def _fit_layout(cls, points: dict[AssetKind, tuple[Point, ...]],
                    info: ValidationInfo) -> dict[AssetKind, tuple[Point, ...]]:
        layout: dict[AssetKind, Slot] = info.data.get("layout") or {}
        for kind, kind_points in points.items():
            if kind not in layout:
                raise ValueError(f"'{kind}' has points but no slot in layout")
            span = max(p.offset + p.count for p in kind_points)
            slot = layout[kind]
            if slot.max > 1 and span > slot.stride:
                raise ValueError(f"'{kind}' points span {span} registers, more than its "
                                 f"layout stride {slot.stride}")
        return points

    def encode(self, point: Point, value: float) -> list[int]:
        """Engineering value → registers (what a device would hold)."""
        fmt, _ = _STRUCT[point.datatype]
        raw = value / point.scale
        if point.datatype.startswith("float"):
            data = struct.pack(fmt, raw)
        else:
            data = struct.pack(fmt, round(raw))
        words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
        return words[::-1] if self.word_order == "little" else words

    def decode(self, point: Point, registers: Sequence[int]) -> float:
        """Registers → engineering value."""
        words = list(registers)
        if self.word_order == "little":
            words.reverse()
        data = b"".join(w.to_bytes(2, "big") for w in words)
        raw = struct.unpack(_STRUCT[point.datatype][0], data)[0]
        value = float(raw) * point.scale
        return value if math.isfinite(value) else math.nan


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


def read_groups(profile: DeviceProfile, assets: Sequence[MappedAsset]) -> list[tuple[int, int]]:
    """Coalesce every point's registers into as few reads as possible: `(address, count)`
    ranges of at most 125 registers. Gaps of up to `MAX_GAP` unused registers are read
    along: a few bytes more cost far less than another round trip."""
    spans = sorted(
        (a.base + p.offset, a.base + p.offset + p.count)
        for a in assets for p in profile.points[a.kind]
    )
    groups: list[list[int]] = []
    for start, end in spans:
        if groups and start - groups[-1][1] <= MAX_GAP and end - groups[-1][0] <= MAX_READ:
            groups[-1][1] = max(groups[-1][1], end)
        else:
            groups.append([start, end])
    return [(start, end - start) for start, end in groups]


def parse_profile(text: str, source: str) -> DeviceProfile:
    return validate(YamlDocument(text, source), DeviceProfile, "id, layout and points")


def load_profiles(directory: Path) -> dict[str, DeviceProfile]:
    """Every `*.yaml` profile in a directory, by id."""
    profiles: dict[str, DeviceProfile] = {}
    for path in sorted(directory.glob("*.yaml")):
        profile = parse_profile(read_text(path), str(path))
        if profile.id in profiles:
            raise InvalidInput(str(path), "id", f"profile id {profile.id!r} defined twice")
        profiles[profile.id] = profile
    return profiles
