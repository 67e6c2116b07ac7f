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

Validated like every input file: `file:line: key: problem`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.yamltext import YamlDocument, read_text, validate


class _Map(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimestampColumn(_Map):
    column: str
    format: str = "iso"
    timezone: str | None = None

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
    column: str
    names: dict[str, str] = Field(default_factory=dict)


class StatusColumns(_Map):
    state: str
    end: str
    derate_fraction: str | None = None
    cause: str | None = None


class Mapping(_Map):
    kind: Literal["telemetry", "status"]
    timestamp: TimestampColumn
    asset: AssetColumn
    columns: dict[str, str] = Field(default_factory=dict)
    tag_column: str | None = None
    value_column: str | None = None
    tag_names: dict[str, str] = Field(default_factory=dict)
    status: StatusColumns | None = None
    device_type: Annotated[str, Field(min_length=1)] | None = None  # None: canonical tags

    @model_validator(mode="after")
    def _shape(self) -> Mapping:
        wide, long = bool(self.columns), bool(self.tag_column)
        if self.kind == "telemetry":
            if wide == long:
                raise ValueError("telemetry needs either `columns` (wide) or `tag_column` "
                                 "and `value_column` (long)")
            if long and not self.value_column:
                raise ValueError("`tag_column` needs a `value_column`")
        elif self.status is None:
            raise ValueError("kind status needs a `status` section")
        return self


def load_mapping(path: Path) -> Mapping:
    return validate(YamlDocument(read_text(path), str(path)), Mapping,
                    "kind, timestamp, asset, …")
