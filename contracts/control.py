"""The control loop's agreements: the commands on `bess.commands` and their results on
`bess.command.results`, the control configuration (modes, reactions to breaches, interlocks,
hard limits, ramps, watchdog), and the pure rules that read it — which reaction a breach
calls for, which interlocks a unit's latest values hold, whether a hard limit is crossed.

Who does what (docs/control.md):

- The **API and the CLI** put operator commands on `bess.commands` (estop, stop, start,
  reset, mode), keyed by unit id.
- The **control loop** (`control/`) reads them with the breaches and the telemetry, runs the
  state machine of each unit and puts what the equipment must do on the same topic as
  `write` commands (setpoints, in order).
- The **connector that polls the device** owns its connection: it executes `write` and
  `estop` commands (an emergency stop does not wait for the control loop: setpoint 0 and
  stop mode at once), ahead of its queued polls, verifies each write by reading it back,
  retries, and puts the outcome on `bess.command.results`. The control loop answers the
  commands it decides on (accepted or refused) on the same topic.

Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events import EpochMs, LookupName, Name, Severity
from contracts.yamltext import YamlDocument, read_text, validate

ControlMode = Literal["passive", "charge_only", "derated", "normal", "stopped"]
MODES: tuple[ControlMode, ...] = ("passive", "charge_only", "derated", "normal", "stopped")
CommandKind = Literal["estop", "stop", "start", "reset", "mode", "write"]
OPERATOR_KINDS: frozenset[str] = frozenset({"estop", "stop", "start", "reset", "mode"})
Outcome = Literal["accepted", "refused", "written", "mismatch", "timeout", "failed"]
CONTROL_LOOP = "control-loop"  # the actor of automatic actions
Reason = Annotated[str, Field(min_length=1, max_length=500)]
Finite = Annotated[float, Field(allow_inf_nan=False)]

# The unit controller's setpoints (profile bess-unit-v1; a profile of another vendor maps its
# own registers to these tags).
MODE_TAG, SETPOINT_TAG, LIMIT_TAG = "control_mode", "active_power_setpoint_kw", \
    "active_power_limit_kw"
CHARGE_LIMIT_TAG, DISCHARGE_LIMIT_TAG, HEARTBEAT_TAG = "charge_limit_kw", \
    "discharge_limit_kw", "heartbeat"
MODE_AUTO, MODE_FOLLOW, MODE_STOP = 0, 1, 2  # values of `control_mode`


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceWrite(_Event):
    """One setpoint: a writable point of the unit controller and its value."""

    tag: LookupName
    value: Finite


class ControlCommand(_Event):
    """`bess.commands`, key = unit id. An operator's command (`estop`, `stop`, `start`,
    `reset`, `mode`) or the control loop's setpoints for the connector (`write`, executed in
    order)."""

    v: Literal[1] = 1
    command_id: Name
    unit_id: Name
    kind: CommandKind
    actor: Name  # a user's subject, an API key's, or "control-loop"
    reason: Reason
    ts_ms: EpochMs
    mode: ControlMode | None = None  # kind "mode" only
    writes: tuple[DeviceWrite, ...] = Field((), max_length=16)  # kind "write" only

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        if (self.kind == "mode") != (self.mode is not None):
            raise ValueError("a mode command, and only a mode command, names a mode")
        if (self.kind == "write") != bool(self.writes):
            raise ValueError("a write command, and only a write command, carries writes")
        return self


class CommandResult(_Event):
    """`bess.command.results`, key = unit id: what became of a command. `by: connector` for
    what reached the device (`written` = every write read back equal; `mismatch`, `timeout`,
    `refused` by the device, `failed`), `by: control` for what the control loop decided
    (`accepted`, `refused` with the reason)."""

    v: Literal[1] = 1
    command_id: Name
    unit_id: Name
    kind: CommandKind
    by: Literal["control", "connector"]
    outcome: Outcome
    detail: str = Field("", max_length=2000)
    read_back: dict[LookupName, float] = Field(default_factory=dict, max_length=16)
    attempts: int = Field(0, ge=0)
    latency_ms: float = Field(0.0, ge=0)
    ts_ms: EpochMs
    actor: str = ""  # the command's
    reason: str = ""  # the command's


# --- configuration --------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Scope = Literal["unit", "any_block", "any_inverter"]


class Reaction(_Config):
    """What a breach of one limit or trend rule (the monitoring config's id) calls for.
    Warnings and minors call for nothing; a major derates, ramped; a critical stops at once
    (→ ERROR); a trend derates pre-emptively when the limit it heads for is nearer than
    `time_to_limit_s` at its rate."""

    rule: Name
    major_derate: Fraction | None = None  # None: the config's `major_derate`
    critical: Literal["stop", "derate"] = "stop"
    time_to_limit_s: float | None = Field(None, gt=0)  # trends
    preempt_derate: Fraction | None = None  # trends; None: `major_derate`


class Condition(_Config):
    """One condition of an interlock; every field given must hold. A tag's value is the
    unit's own (`of: unit`) or the extreme over its blocks or inverters (the highest for
    `above`/`at_least`, the lowest for `below`/`at_most`); a missing value does not hold."""

    tag: LookupName | None = None
    of: Scope = "unit"
    above: Finite | None = None
    at_least: Finite | None = None
    below: Finite | None = None
    at_most: Finite | None = None
    bit: int | None = Field(None, ge=0, le=31)  # the tag's bit is set
    stale: bool | None = None  # the unit's telemetry is (not) stale
    isolated_blocks_more_than: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _something(self) -> Self:
        compares = [x for x in (self.above, self.at_least, self.below, self.at_most, self.bit)
                    if x is not None]
        if compares and self.tag is None:
            raise ValueError("a comparison needs a tag")
        if self.tag is not None and not compares:
            raise ValueError(f"tag {self.tag!r} is compared with nothing (above, at_least, "
                             "below, at_most or bit)")
        if not compares and self.stale is None and self.isolated_blocks_more_than is None:
            raise ValueError("an empty condition")
        return self


class Interlock(_Config):
    """A declarative rule: while every condition holds, `forbid` is not allowed — `charge`
    or `discharge` (that direction's limit held at 0), `run` (the unit is stopped and may
    not start), `start` (a stopped unit may not start; a running one runs on)."""

    id: Name
    forbid: Literal["charge", "discharge", "run", "start"]
    when: tuple[Condition, ...] = Field(min_length=1)
    message: str = Field("", max_length=300)


class HardLimit(_Config):
    """A critical limit the connector enforces itself on every poll of a unit not in
    passive mode: crossed, the unit is stopped at once — even while the broker, the flows or
    the control loop are down (defense in depth)."""

    id: Name
    tag: LookupName
    of: Scope = "unit"
    above: Finite | None = None
    below: Finite | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.above is None) == (self.below is None):
            raise ValueError("a hard limit has exactly one of above and below")
        return self


class ControlConfig(_Config):
    """`BESSMON_CONTROL_FILE` (default infra/sim/control.yaml)."""

    default_mode: ControlMode = "passive"  # a site newly added to the fleet only observes
    sites: dict[Name, ControlMode] = Field(default_factory=dict)
    units: dict[Name, ControlMode] = Field(default_factory=dict)
    major_derate: Fraction = 0.5
    derated_fraction: Fraction = 0.5  # the cap of mode `derated`
    charge_only_import_kw: float | None = Field(None, ge=0)  # None: rated power
    reactions: tuple[Reaction, ...] = ()
    interlocks: tuple[Interlock, ...] = ()
    hard_limits: tuple[HardLimit, ...] = ()
    ramp_kw_per_s: float = Field(2000.0, gt=0)  # how fast a derate moves the power limit
    derate_hold_s: float = Field(60.0, ge=0)  # majors cleared this long before the cap lifts
    restart_hold_s: float = Field(30.0, ge=0)  # a unit stopped for a transient cause
    stale_after_s: float = Field(10.0, gt=0)
    heartbeat_s: float = Field(2.0, gt=0)  # watchdog register refresh
    write_retries: int = Field(2, ge=0, le=10)  # further attempts of a write not read back

    @model_validator(mode="after")
    def _unique(self) -> Self:
        for what, ids in (("reactions", [r.rule for r in self.reactions]),
                          ("interlocks", [i.id for i in self.interlocks]),
                          ("hard_limits", [h.id for h in self.hard_limits])):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{what}: {', '.join(dupes)} appear more than once")
        return self

    def mode_of(self, unit_id: str, site_id: str) -> ControlMode:
        return self.units.get(unit_id) or self.sites.get(site_id) or self.default_mode

    def reaction(self, rule_id: str) -> Reaction:
        for r in self.reactions:
            if r.rule == rule_id:
                return r
        return Reaction(rule=rule_id)


def parse_control(text: str, source: str) -> ControlConfig:
    return validate(YamlDocument(text, source), ControlConfig, "a control configuration")


def load_control(path: Path) -> ControlConfig:
    return parse_control(read_text(path), str(path))


# --- a unit's latest values -----------------------------------------------------------------


@dataclass(frozen=True)
class UnitReading:
    """A unit's latest values as its controller reported them: its own tags, and its
    inverters' and blocks' (one mapping per asset)."""

    ts_ms: int
    unit: Mapping[str, float] = field(default_factory=dict)
    inverters: tuple[Mapping[str, float], ...] = ()
    blocks: tuple[Mapping[str, float], ...] = ()

    def values(self, tag: str, of: Scope) -> list[float]:
        if of == "unit":
            sources: Iterable[Mapping[str, float]] = (self.unit,)
        else:
            sources = self.blocks if of == "any_block" else self.inverters
        out = []
        for s in sources:
            v = s.get(tag)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
        return out

    @property
    def isolated_blocks(self) -> int:
        """Blocks reporting fault (3) or maintenance (4)."""
        return sum(1 for b in self.blocks if b.get("status_code") in (3, 4))


def condition_holds(c: Condition, r: UnitReading | None, stale: bool) -> bool:
    if c.stale is not None and c.stale != stale:
        return False
    if c.isolated_blocks_more_than is not None and (
            r is None or r.isolated_blocks <= c.isolated_blocks_more_than):
        return False
    if c.tag is None:
        return True
    values = r.values(c.tag, c.of) if r is not None else []
    if not values:
        return False
    high, low = max(values), min(values)
    checks = (
        c.above is None or high > c.above,
        c.at_least is None or high >= c.at_least,
        c.below is None or low < c.below,
        c.at_most is None or low <= c.at_most,
        c.bit is None or any(int(v) >> c.bit & 1 for v in values),
    )
    return all(checks)


def active_interlocks(cfg: ControlConfig, r: UnitReading | None,
                      stale: bool) -> tuple[Interlock, ...]:
    """The interlocks whose conditions all hold now."""
    return tuple(i for i in cfg.interlocks if all(condition_holds(c, r, stale) for c in i.when))


def crossed_hard_limit(limits: Iterable[HardLimit], r: UnitReading) -> HardLimit | None:
    """The first hard limit the reading is beyond, or None."""
    for h in limits:
        values = r.values(h.tag, h.of)
        if not values:
            continue
        if (h.above is not None and max(values) > h.above) or \
                (h.below is not None and min(values) < h.below):
            return h
    return None


def reading_from_assets(ts_ms: int, unit_id: str, kinds: Mapping[str, str],
                        assets: Iterable[tuple[str, Mapping[str, object]]]) -> UnitReading:
    """A reading from a poll's assets (asset id, tags); `kinds` maps asset ids to "unit",
    "inverter" or "block". Non-numeric values are left out; unknown assets ignored."""
    unit: dict[str, float] = {}
    inverters, blocks = [], []
    for asset_id, tags in assets:
        numbers = {t: float(v) for t, v in tags.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        kind = kinds.get(asset_id)
        if asset_id == unit_id:
            unit = numbers
        elif kind == "inverter":
            inverters.append(numbers)
        elif kind == "block":
            blocks.append(numbers)
    return UnitReading(ts_ms, unit, tuple(inverters), tuple(blocks))


# --- reactions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreachReaction:
    """What the state machine is told of a breach: the severity it acts on (warning: none)
    and the derate a major one calls for."""

    severity: Severity
    derate: float | None = None


def breach_reaction(cfg: ControlConfig, rule_id: str, kind: Literal["limit", "trend"],
                    severity: Severity, *, time_to_limit_s: float | None = None
                    ) -> BreachReaction:
    """Warning and minor → nothing; major → a derate (the rule's or the config's); critical
    → stop (or a derate where the rule says so); a trend → a pre-emptive derate when the
    limit it heads for is nearer than the rule's `time_to_limit_s`, else its own severity's
    reaction."""
    r = cfg.reaction(rule_id)
    major = r.major_derate if r.major_derate is not None else cfg.major_derate
    if kind == "trend" and r.time_to_limit_s is not None and time_to_limit_s is not None \
            and time_to_limit_s < r.time_to_limit_s:
        preempt = r.preempt_derate if r.preempt_derate is not None else major
        return BreachReaction("major", preempt)
    if severity == "critical":
        return BreachReaction("major", major) if r.critical == "derate" \
            else BreachReaction("critical")
    if severity == "major":
        return BreachReaction("major", major)
    return BreachReaction("warning")


def time_to_limit_s(value: float, rate_per_min: float, threshold: float,
                    direction: Literal["max", "min"]) -> float | None:
    """Seconds until `value`, moving at `rate_per_min`, reaches `threshold` (0 when beyond
    it already); None when it moves away from it."""
    gap = threshold - value if direction == "max" else value - threshold
    toward = rate_per_min if direction == "max" else -rate_per_min
    if gap <= 0:
        return 0.0
    if toward <= 0:
        return None
    return gap / toward * 60.0


# --- what the control loop shows (Redis, the API, the dashboard) ----------------------------

UnitState = Literal["BOOT", "IDLE", "RUNNING", "ERROR", "STOPPED"]


class CommandSummary(_Event):
    """A command and, once known, what became of it."""

    command_id: str
    kind: CommandKind
    actor: str
    reason: str
    ts_ms: EpochMs
    outcome: Outcome | None = None  # None: no result yet
    by: Literal["control", "connector"] | None = None
    detail: str = ""
    read_back: dict[str, float] = Field(default_factory=dict)
    writes: tuple[DeviceWrite, ...] = ()


class InterlockView(_Event):
    id: str
    forbid: Literal["charge", "discharge", "run", "start"]
    message: str


class ActiveLimit(_Event):
    breach_id: str
    severity: Severity


class UnitControlView(_Event):
    """One unit as the control loop holds it: `bessmon:control:<site id>` (a Redis hash by
    unit id) and `GET /api/v1/control/units/{unit_id}`."""

    unit_id: str
    site_id: str
    state: UnitState
    mode: ControlMode
    device: Literal["running", "idle", "fault"] | None = None  # what the device reports
    fresh: bool = False  # telemetry within `stale_after_s`
    derate: float = 1.0  # the cap in force, a fraction of rated power
    power_limit_kw: float | None = None  # what the loop last set
    interlocks: tuple[InterlockView, ...] = ()
    limits: tuple[ActiveLimit, ...] = ()  # active breaches the loop acts on
    last_command: CommandSummary | None = None
    commands: tuple[CommandSummary, ...] = ()  # newest first, at most 20
    last_refusal: str | None = None
    updated_ms: EpochMs = 0
