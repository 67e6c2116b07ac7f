"""What the flows watch and how (issue 4), from one YAML file: canonical tags with their units
and physical bounds, tag maps per device type, status codes, limit and trend rules, and the
data-quality and timing settings. Validated like every input: file, line, key, problem."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.events import SEVERITY_RANK, AlertKind, Cause, Severity, State
from contracts.yamltext import ID_PATTERN, YamlDocument, read_text, validate

AssetKind = Literal["unit", "inverter", "block"]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
RuleId = Annotated[str, Field(pattern=ID_PATTERN)]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TagSpec(_Config):
    """A canonical tag: its unit, the physically possible range (outside it a value is
    refused as impossible) and whether it is expected to move (frozen-value detection)."""

    unit: str = ""
    min: Finite | None = None
    max: Finite | None = None
    moving: bool = False


class TagMapping(_Config):
    """How a device type's tag becomes a canonical tag: canonical = raw · scale + offset."""

    tag: str
    scale: Finite = 1.0
    offset: Finite = 0.0


class DeviceType(_Config):
    """Tags as one device type reports them, by its own names."""

    tags: dict[str, TagMapping]
    poll_interval_s: PositiveSeconds = 1.0  # expected; gaps are judged against it


class StatusCode(_Config):
    state: State
    cause: Cause | None = None


class StatusAlarm(_Config):
    """A device alarm — a tag that is non-zero while the alarm stands, or one `bit` of an
    alarm word — that makes the asset unavailable, or derated to `derate_fraction` of its
    rating, whatever its status code says."""

    tag: str
    bit: Annotated[int, Field(ge=0, le=63)] | None = None
    state: Literal["unavailable", "derated"]
    cause: Cause | None = None
    derate_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _fraction(self) -> StatusAlarm:
        if (self.state == "derated") != (self.derate_fraction is not None):
            raise ValueError("derate_fraction is required for a derated alarm and only then")
        return self


class StatusConfig(_Config):
    code_tag: str = "status_code"
    available_power_tag: str = "available_power_kw"
    available_energy_tag: str = "available_energy_kwh"
    codes: dict[int, StatusCode]
    alarms: tuple[StatusAlarm, ...] = ()
    derate_below: Annotated[float, Field(gt=0, le=1)] = 0.995


class LimitLevel(_Config):
    severity: Severity
    threshold: Finite


class LimitRule(_Config):
    """A tag outside a threshold for at least `min_duration_s` raises a breach at the most
    severe level crossed; it clears once back inside by `hysteresis`."""

    id: RuleId
    asset_kind: AssetKind
    tag: str
    direction: Literal["max", "min"]  # max: above the threshold is bad; min: below
    levels: tuple[LimitLevel, ...] = Field(min_length=1)
    hysteresis: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    min_duration_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    @field_validator("levels")
    @classmethod
    def _ordered(cls, levels: tuple[LimitLevel, ...], info: ValidationInfo
                 ) -> tuple[LimitLevel, ...]:
        severities = [lv.severity for lv in levels]
        if len(set(severities)) != len(severities):
            raise ValueError("each severity may appear once")
        ranked = sorted(levels, key=lambda lv: -SEVERITY_RANK[lv.severity])  # mildest first
        thresholds = [lv.threshold for lv in ranked]
        direction = info.data.get("direction")
        increasing = all(a < b for a, b in itertools.pairwise(thresholds))
        decreasing = all(a > b for a, b in itertools.pairwise(thresholds))
        if direction == "max" and not increasing:
            raise ValueError("for direction max, more severe levels need higher thresholds")
        if direction == "min" and not decreasing:
            raise ValueError("for direction min, more severe levels need lower thresholds")
        return tuple(ranked)


class TrendRule(_Config):
    """A tag changing faster than `max_rate_per_min` (per minute, over `window_s`) raises a
    breach; it clears below `clear_rate_per_min`. With `limit`, the breach says when the tag
    would reach it at that rate."""

    id: RuleId
    asset_kind: AssetKind
    tag: str
    window_s: PositiveSeconds
    max_rate_per_min: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    clear_rate_per_min: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    direction: Literal["rising", "falling"] = "rising"
    severity: Severity
    limit: Finite | None = None

    @field_validator("clear_rate_per_min")
    @classmethod
    def _below_raise(cls, value: float | None, info: ValidationInfo) -> float | None:
        raise_at = info.data.get("max_rate_per_min")
        if value is not None and raise_at is not None and value > raise_at:
            raise ValueError("must not be above max_rate_per_min")
        return value


class QualityConfig(_Config):
    """Timing and data-quality settings, all in event time except the clock-skew check."""

    allowed_lateness_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 30.0
    stale_after_s: PositiveSeconds = 10.0  # silent this long: unknown, cause comms_loss
    max_clock_skew_s: PositiveSeconds = 60.0  # device timestamp vs the receiving clock
    gap_factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 5.0  # × poll interval
    frozen_after_s: PositiveSeconds = 900.0  # a moving tag unchanged this long is frozen
    dlq_rate_window_s: PositiveSeconds = 300.0
    dlq_rate_max: Annotated[float, Field(gt=0, le=1)] = 0.01  # share of records refused
    flapping_changes: Annotated[int, Field(ge=2)] = 6  # status changes …
    flapping_window_s: PositiveSeconds = 600.0  # … within this window: data instability


def _off(value: object) -> object:
    return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


AlarmLevel = Annotated[Severity | Literal["off"], BeforeValidator(_off)]
StatusKey = Literal["unavailable", "derated", "unknown"] | Cause
# Alerts that are alarms unless configured off: the early warnings about the batteries and
# their data. A sink that cannot write (unwritable, store_outage) is about bessmon itself.
ALARM_ALERTS: frozenset[str] = frozenset({
    "ld_risk", "telemetry_gap", "frozen_value", "clock_skew", "dlq_rate", "data_instability",
    "control_action", "control_command_failed"})


LevelKind = Literal["unit", "inverter", "block"]


def _default_status() -> dict[LevelKind, dict[StatusKey, AlarmLevel]]:
    return {
        "unit": {"unavailable": "major", "derated": "minor", "unknown": "major",
                 "scheduled_maintenance": "warning"},
        "inverter": {"unavailable": "minor", "derated": "warning", "unknown": "minor",
                     "scheduled_maintenance": "off"},
        "block": {"unavailable": "minor", "derated": "warning", "unknown": "minor",
                  "scheduled_maintenance": "off"},
    }


class AlarmsConfig(_Config):
    """Which statuses and alerts are alarms, and how severe (contracts/alarm_sources.py).

    `status`: per asset level (unit, inverter, block), a severity (or `off`) by state
    (unavailable, derated, unknown — no data) or by cause (fault, comms_loss,
    scheduled_maintenance, …); a cause's entry wins over its state's. A level not listed
    raises no status alarm. `alerts`: an alert kind's severity as an alarm, or `off`; the
    kinds not listed keep their own severity (see `ALARM_ALERTS`)."""

    status: dict[LevelKind, dict[StatusKey, AlarmLevel]] = Field(
        default_factory=_default_status)
    alerts: dict[AlertKind, AlarmLevel] = Field(default_factory=dict)

    def alert_severity(self, kind: str, own: Severity) -> Severity | None:
        level = self.alerts.get(kind)  # type: ignore[call-overload]
        if level is None:
            return own if kind in ALARM_ALERTS else None
        return None if level == "off" else level


class MonitoringConfig(_Config):
    tags: dict[str, TagSpec]
    device_types: dict[str, DeviceType] = Field(default_factory=dict)
    status: StatusConfig
    limits: tuple[LimitRule, ...] = ()
    trends: tuple[TrendRule, ...] = ()
    quality: QualityConfig = QualityConfig()
    alarms: AlarmsConfig = AlarmsConfig()

    @field_validator("device_types")
    @classmethod
    def _known_targets(cls, types: dict[str, DeviceType], info: ValidationInfo
                       ) -> dict[str, DeviceType]:
        tags = info.data.get("tags") or {}
        for name, device_type in types.items():
            for raw, mapping in device_type.tags.items():
                if mapping.tag not in tags:
                    raise ValueError(f"{name}: tag {raw!r} maps to {mapping.tag!r}, which is "
                                     "not a canonical tag under `tags`")
        return types

    @field_validator("limits", "trends")
    @classmethod
    def _rules_name_known_tags(cls, rules: tuple[LimitRule | TrendRule, ...],
                               info: ValidationInfo) -> tuple[LimitRule | TrendRule, ...]:
        tags = info.data.get("tags") or {}
        seen: set[str] = set()
        for rule in rules:
            if rule.tag not in tags:
                raise ValueError(f"rule {rule.id!r} watches {rule.tag!r}, which is not a "
                                 "canonical tag under `tags`")
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return rules


def parse_monitoring(text: str, source: str) -> MonitoringConfig:
    return validate(YamlDocument(text, source), MonitoringConfig, "tags, status, …")


def load_monitoring(path: Path) -> MonitoringConfig:
    return parse_monitoring(read_text(path), str(path))
