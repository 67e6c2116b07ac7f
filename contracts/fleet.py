"""The fleet: sites → battery units → inverters → DC blocks, loaded from YAML in the layout
of docs/availability-rules.md §1 (more keys may be added and are ignored).

Battery units and inverters may name their `vendor` and `model` (the reliability analytics
group by them, contracts/reliability.py); a DC block is part of its battery unit and takes
the unit's. Absent, they are None — "unknown" in analytics."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.yamltext import (
    ID_PATTERN,
    LABEL_PATTERN,
    IsoDate,
    YamlDocument,
    read_text,
    validate,
)

AssetId = Annotated[str, Field(pattern=ID_PATTERN)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]  # no `yes`
AssetKind = Literal["site", "unit", "inverter", "block"]
# A vendor's or a product model's name, as people write it ("Nordcell", "NC-4000"); strict:
# a YAML number (`model: 4000`) is refused, quote it.
Label = Annotated[str, Field(pattern=LABEL_PATTERN, strict=True)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)


class Block(_Model):
    id: AssetId
    rated_energy_kwh: PositiveNumber


class Inverter(_Model):
    id: AssetId
    rated_power_kw: PositiveNumber
    vendor: Label | None = None  # who made the inverter (PCS), and which product
    model: Label | None = None
    blocks: tuple[Block, ...] = ()


class Unit(_Model):
    id: AssetId
    rated_power_kw: PositiveNumber
    rated_energy_kwh: PositiveNumber
    commissioned: IsoDate
    device_profile: str | None = None  # register map of the unit's controller (connectors)
    vendor: Label | None = None  # who made the battery system, and which product
    model: Label | None = None
    inverters: tuple[Inverter, ...] = ()


class Site(_Model):
    id: AssetId
    name: str | None = None
    customer: str = Field(min_length=1)
    region: str = Field(min_length=1)
    timezone: str
    # Where the site is (WGS 84 degrees), for maps; optional, both or neither.
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)] | None = None
    units: tuple[Unit, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _both_coordinates(self) -> Site:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Asset:
    """One node of the hierarchy, flattened for lookups."""

    id: str
    kind: AssetKind
    site_id: str
    unit_id: str | None  # the battery unit it belongs to (itself for a unit)
    parent_id: str | None
    rated_power_kw: float | None
    rated_energy_kwh: float | None
    children: tuple[str, ...]
    vendor: str | None = None  # a unit's and an inverter's own; a block's is its unit's
    model: str | None = None


class Fleet(_Model):
    sites: tuple[Site, ...] = Field(min_length=1)

    @cached_property
    def assets(self) -> dict[str, Asset]:
        """Every asset by id, sites included."""
        out: dict[str, Asset] = {}
        for site in self.sites:
            out[site.id] = Asset(site.id, "site", site.id, None, None, None, None,
                                 tuple(u.id for u in site.units))
            for unit in site.units:
                out[unit.id] = Asset(unit.id, "unit", site.id, unit.id, site.id,
                                     unit.rated_power_kw, unit.rated_energy_kwh,
                                     tuple(i.id for i in unit.inverters), unit.vendor, unit.model)
                for inv in unit.inverters:
                    out[inv.id] = Asset(inv.id, "inverter", site.id, unit.id, unit.id,
                                        inv.rated_power_kw, None, tuple(b.id for b in inv.blocks),
                                        inv.vendor, inv.model)
                    for blk in inv.blocks:
                        out[blk.id] = Asset(blk.id, "block", site.id, unit.id, inv.id,
                                            None, blk.rated_energy_kwh, (), unit.vendor,
                                            unit.model)
        return out

    def site(self, site_id: str) -> Site:
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    def unit(self, unit_id: str) -> Unit:
        asset = self.assets[unit_id]
        if asset.kind != "unit":
            raise KeyError(unit_id)
        return next(u for u in self.site(asset.site_id).units if u.id == unit_id)


def _duplicate_ids(data: Any) -> tuple[list[str | int], str] | None:
    """Path and id of the first id that repeats anywhere in the hierarchy."""
    seen: set[str] = set()
    levels = ("sites", "units", "inverters", "blocks")

    def walk(items: Any, path: list[str | int], depth: int) -> tuple[list[str | int], str] | None:
        if not isinstance(items, list):
            return None
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            ident = item.get("id")
            if isinstance(ident, str):
                if ident in seen:
                    return [*path, i, "id"], ident
                seen.add(ident)
            if depth + 1 < len(levels):
                found = walk(item.get(levels[depth + 1]), [*path, i, levels[depth + 1]], depth + 1)
                if found:
                    return found
        return None

    if isinstance(data, dict):
        return walk(data.get("sites"), ["sites"], 0)
    return None


def parse_fleet(text: str, source: str = "<fleet>") -> Fleet:
    """Validate fleet YAML text; raise `InvalidInput` naming `source`, key path and line."""
    doc = YamlDocument(text, source)
    fleet = validate(doc, Fleet, "a 'sites' list")
    duplicate = _duplicate_ids(doc.data)
    if duplicate:
        path, ident = duplicate
        raise doc.error(path, f"duplicate asset id {ident!r}")
    return fleet


def load_fleet(path: str | Path) -> Fleet:
    return parse_fleet(read_text(Path(path)), str(path))
