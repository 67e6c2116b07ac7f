"""Status rules: from the tags a device reports for an asset to the asset's status.

The code table is data (`StatusRules.codes`), shared with the simulator, so a device type with
other codes is a new table, not new code."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts.events import Cause, State, TagValue
from contracts.monitoring import StatusConfig


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    derate_fraction: float | None = None
    cause: Cause | None = None

    @property
    def loss(self) -> float:
        """Share of capacity lost (0..1). `unknown` counts as lost: no data, no credit."""
        if self.state == "available":
            return 0.0
        if self.state == "derated":
            return 1.0 - (self.derate_fraction or 0.0)
        return 1.0


UNKNOWN = Status("unknown")
COMMS_LOSS = Status("unknown", cause="comms_loss")


@dataclass(frozen=True, slots=True)
class CodeRule:
    state: State
    cause: Cause | None = None


DEFAULT_CODES: Mapping[int, CodeRule] = {
    0: CodeRule("available"),  # running
    1: CodeRule("available"),  # standby, ready to dispatch
    2: CodeRule("derated"),  # running below rating; fraction from the available capacity tag
    3: CodeRule("unavailable", "fault"),  # tripped / isolated
    4: CodeRule("unavailable", "scheduled_maintenance"),
    5: CodeRule("unavailable", "grid_outage"),
}


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """While `tag` is non-zero (its `bit` is set) the asset is at most `state` (with
    `fraction` when derated)."""

    tag: str
    state: State
    cause: Cause | None = None
    fraction: float | None = None
    bit: int | None = None

    def active(self, value: TagValue | None) -> bool:
        number = _number(value)
        if number is None:
            return False
        return bool(int(number) >> self.bit & 1) if self.bit is not None else number != 0


@dataclass(frozen=True, slots=True)
class StatusRules:
    code_tag: str = "status_code"
    available_power_tag: str = "available_power_kw"
    available_energy_tag: str = "available_energy_kwh"
    codes: Mapping[int, CodeRule] = field(default_factory=lambda: DEFAULT_CODES)
    # A running asset whose available capacity is below this share of its rating is derated.
    derate_below: float = 0.995
    alarms: tuple[AlarmRule, ...] = ()

    @classmethod
    def of(cls, config: StatusConfig) -> StatusRules:
        return cls(config.code_tag, config.available_power_tag, config.available_energy_tag,
                   {code: CodeRule(c.state, c.cause) for code, c in config.codes.items()},
                   config.derate_below,
                   tuple(AlarmRule(a.tag, a.state, a.cause, a.derate_fraction, a.bit)
                         for a in config.alarms))

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag the rules read (a status is the same while these are)."""
        return (self.code_tag, self.available_power_tag, self.available_energy_tag,
                *(a.tag for a in self.alarms))


def _number(value: TagValue | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def classify(
    tags: Mapping[str, TagValue],
    rated_power_kw: float | None,
    rated_energy_kwh: float | None,
    rules: StatusRules = StatusRules(),
) -> Status:
    """Status of one asset from one poll's tags: by its status code, then made worse by any
    active alarm rule (the worst wins: unavailable over the lowest derate; the first rule
    listed among equals gives the cause)."""
    status = _by_code(tags, rated_power_kw, rated_energy_kwh, rules)
    if not rules.alarms or status.state == "unknown":
        return status
    for alarm in rules.alarms:
        if not alarm.active(tags.get(alarm.tag)):
            continue
        candidate = Status(alarm.state, alarm.fraction, alarm.cause)
        if candidate.loss > status.loss:
            status = candidate
    return status


def _by_code(
    tags: Mapping[str, TagValue],
    rated_power_kw: float | None,
    rated_energy_kwh: float | None,
    rules: StatusRules,
) -> Status:
    code = _number(tags.get(rules.code_tag))
    if code is None or int(code) not in rules.codes:
        return UNKNOWN
    rule = rules.codes[int(code)]
    if rule.state not in ("available", "derated"):
        return Status(rule.state, None, rule.cause)
    fraction = _available_fraction(tags, rated_power_kw, rated_energy_kwh, rules)
    if rule.state == "derated" or (fraction is not None and fraction < rules.derate_below):
        if fraction is None:
            return Status("unknown", None, rule.cause)
        if fraction <= 0.0:
            return Status("unavailable", None, rule.cause)
        return Status("derated", fraction, rule.cause)
    return Status("available", None, rule.cause)


def _available_fraction(
    tags: Mapping[str, TagValue],
    rated_power_kw: float | None,
    rated_energy_kwh: float | None,
    rules: StatusRules,
) -> float | None:
    if rated_power_kw:
        value = _number(tags.get(rules.available_power_tag))
        if value is not None:
            return min(1.0, max(0.0, value / rated_power_kw))
    if rated_energy_kwh:
        value = _number(tags.get(rules.available_energy_tag))
        if value is not None:
            return min(1.0, max(0.0, value / rated_energy_kwh))
    return None
