"""The fleet: sites → battery units → inverters → DC blocks, loaded from YAML in the layout
of spec/availability.md §1 (more keys may be added and are ignored)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.errors import InvalidInput
from contracts.yamltext import YamlDocument

AssetId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]
AssetKind = Literal["site", "unit", "inverter", "block"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)


class Block(_Model):
    id: AssetId
    rated_energy_kwh: PositiveNumber


class Inverter(_Model):
    id: AssetId
    rated_power_kw: PositiveNumber
    blocks: tuple[Block, ...] = ()


class Unit(_Model):
    id: AssetId
    rated_power_kw: PositiveNumber
    rated_energy_kwh: PositiveNumber
    commissioned: dt.date
    device_profile: str | None = None  # register map of the unit's controller (connectors)
    inverters: tuple[Inverter, ...] = ()


class Site(_Model):
    id: AssetId
    name: str | None = None
    customer: str = Field(min_length=1)
    region: str = Field(min_length=1)
    timezone: str
    units: tuple[Unit, ...] = Field(min_length=1)

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
                                     tuple(i.id for i in unit.inverters))
                for inv in unit.inverters:
                    out[inv.id] = Asset(inv.id, "inverter", site.id, unit.id, unit.id,
                                        inv.rated_power_kw, None, tuple(b.id for b in inv.blocks))
                    for blk in inv.blocks:
                        out[blk.id] = Asset(blk.id, "block", site.id, unit.id, inv.id,
                                            None, blk.rated_energy_kwh, ())
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


_MESSAGES = {
    "missing": "required key is missing",
    "too_short": "must not be empty",
    "string_pattern_mismatch": "must be 1-64 letters, digits, '.', '_' or '-', starting with a "
    "letter or digit",
}


def describe(error: Any) -> str:
    """A pydantic error as one short sentence a user can act on."""
    kind = error["type"]
    if kind in _MESSAGES:
        problem = _MESSAGES[kind]
    else:
        problem = str(error["msg"])
        problem = problem.removeprefix("Value error, ")
        problem = problem.replace("Input should be", "must be")
        problem = problem[:1].lower() + problem[1:]
    if kind not in ("missing", "value_error") and not isinstance(error.get("input"), dict | list):
        problem += f" (got {error.get('input')!r})"
    return problem


def parse_fleet(text: str, source: str = "<fleet>") -> Fleet:
    """Validate fleet YAML text; raise `InvalidInput` naming `source`, key path and line."""
    doc = YamlDocument(text, source)
    if not isinstance(doc.data, dict):
        raise doc.error([], "must be a mapping with a 'sites' list")
    try:
        fleet = Fleet.model_validate(doc.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise doc.error(list(first["loc"]), describe(first)) from None
    duplicate = _duplicate_ids(doc.data)
    if duplicate:
        path, ident = duplicate
        raise doc.error(path, f"duplicate asset id {ident!r}")
    return fleet


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(str(path), "", f"cannot read: {exc.strerror}") from None
    return parse_fleet(text, str(path))
