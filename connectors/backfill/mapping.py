"""How an export's columns become telemetry samples or status changes, as data (YAML):

    kind: telemetry            # telemetry | status
    timestamp:
      column: time
      format: iso              # iso (with offset) | epoch_ms | epoch_s | a strptime pattern
      timezone: Europe/Stockholm   # for patterns and ISO times without an offset
    asset:
      column: asset            # the asset id, or a name mapped through `names`
      names: {"Unit 1": nordvik-u01}
    # telemetry, "wide" — one column per tag:
    columns: {SOC: soc_pct, P_kW: active_power_kw, State: status_code}
    # telemetry, "long" — a tag column and a value column:
    # tag_column: signal
    # value_column: value
    # tag_names: {BattSOC: soc_pct}
    # status:
    # status: {state: state, derate_fraction: derate, cause: cause, end: end_time}

Validated like every input file: `file:line: key: problem`. Column names are non-empty; tag
names (the values of `columns` and `tag_names`, and `device_type`) are 1..200 printable
characters; `format` is iso, epoch_ms, epoch_s or a strptime pattern, and a pattern without
`%z` needs a `timezone`; no two columns map to one tag."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from contracts.yamltext import YamlDocument, read_text, validate

Column = Annotated[str, Field(min_length=1)]


def _tag_name(value: str) -> str:
    """As contracts.events.Name: what a tag in a telemetry sample may be called."""
    if not 1 <= len(value) <= 200 or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        raise ValueError(f"{value[:60]!r} is no tag name: 1 to 200 printable characters")
    return value


Name = Annotated[str, AfterValidator(_tag_name)]
FORMATS = ("iso", "epoch_ms", "epoch_s")


class _Map(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimestampColumn(_Map):
    column: Column
    format: str = "iso"
    timezone: str | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value in FORMATS:
            return value
        sample = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        try:
            if "%" not in value:
                raise ValueError
            dt.datetime.strptime(sample.strftime(value), value)
        except ValueError:
            raise ValueError(f"{value!r} is neither {', '.join(FORMATS)} nor a strptime "
                             "pattern such as '%Y-%m-%d %H:%M:%S'") from None
        return value

    @model_validator(mode="after")
    def _zone_for_patterns(self) -> TimestampColumn:
        if self.format not in FORMATS and "%z" not in self.format and self.timezone is None:
            raise ValueError(f"the pattern {self.format!r} has no %z: name the `timezone` "
                             "its times are in")
        return self

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class AssetColumn(_Map):
    column: Column
    names: dict[str, Column] = Field(default_factory=dict)


class StatusColumns(_Map):
    state: Column
    end: Column
    derate_fraction: Column | None = None
    cause: Column | None = None


class Mapping(_Map):
    kind: Literal["telemetry", "status"]
    timestamp: TimestampColumn
    asset: AssetColumn
    columns: dict[Column, Name] = Field(default_factory=dict)
    tag_column: Column | None = None
    value_column: Column | None = None
    tag_names: dict[str, Name] = Field(default_factory=dict)
    status: StatusColumns | None = None
    device_type: Name | None = None  # None: canonical tags

    @model_validator(mode="after")
    def _shape(self) -> Mapping:
        wide, long = bool(self.columns), bool(self.tag_column)
        if self.kind == "telemetry":
            if wide == long:
                raise ValueError("telemetry needs either `columns` (wide) or `tag_column` "
                                 "and `value_column` (long)")
            if long and not self.value_column:
                raise ValueError("`tag_column` needs a `value_column`")
            tags = list(self.columns.values())
            twice = next((t for t in tags if tags.count(t) > 1), None)
            if twice is not None:
                raise ValueError(f"two columns map to tag {twice!r}")
        elif self.status is None:
            raise ValueError("kind status needs a `status` section")
        return self


def load_mapping(path: Path) -> Mapping:
    return validate(YamlDocument(read_text(path), str(path)), Mapping,
                    "kind, timestamp, asset, …")
