"""The limit and trend rules themselves: which level a tag's value stands at, with hysteresis
and a minimum duration, and how fast a tag moves and when it would reach a limit.

One home for this arithmetic, so that the flows (which turn it into `BreachEvent`s,
`flows/breaches.py`) and the control loop (which acts on the equipment) can never judge the
same samples differently. Pure and deterministic — event time only, no clock, no I/O — and
made of plain slotted dataclasses, so that the states pickle into a Bytewax recovery snapshot
and a replay judges exactly as the live run did. The rules are configured in
`contracts/monitoring.py` (`LimitRule`, `TrendRule`); the semantics, each tested in
tests/contracts/test_limits.py and through the flows in tests/flows/test_breaches.py:

- Usable values. A value that is missing, not an int or float (`bool` included), NaN or ±inf
  cannot be judged (`finite_number` gives None): the caller then leaves the rule's state as
  it was — a crossing timer keeps running, an active level stays active.
- Limits. A level is crossed when the value is strictly beyond its threshold (max: above,
  min: below). A level qualifies at the first sample at or after the moment it has been
  crossed continuously for `min_duration_s` (with `min_duration_s: 0`, the first crossing
  sample); the most severe qualified level is the one that stands. An active level holds
  while the value stays beyond its threshold less the hysteresis (max: value > threshold −
  hysteresis); once inside it, the level falls at once to the most severe lower level it
  still holds, or to none. A more severe level qualified escalates.
- Trends. The rate is per minute between the oldest kept sample inside the trailing
  `window_s` (`ts ≥ now − window`; samples are kept at least window/32 apart) and the newest,
  judged only when those two span at least half the window. A trend breaches when the rate
  in the rule's direction is strictly above `max_rate_per_min`, and an active one ends when
  it is strictly below `clear_rate_per_min` (default: the raise rate). Too short a span
  judges nothing, so an active trend stays active across a gap.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from contracts.events import TagValue
from contracts.monitoring import LimitRule, TrendRule

MS_PER_MIN = 60_000
NO_LEVEL = -1  # `LimitState.level` when no level stands


def finite_number(value: TagValue | None) -> float | None:
    """The value as a finite float, or None when it cannot be judged: missing, text, a bool
    (a flag is not a measurement, although Python counts it as an int), NaN or ±inf. A rule
    must not raise or clear on a reading the device could not make."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    return None


# -- limits ---------------------------------------------------------------------------------


@dataclass(slots=True)
class LimitState:
    """What one limit remembers about one asset between samples.

    `since[i]`: when level i's current uninterrupted crossing began (None: not crossed).
    Levels nest — a more severe level crossed means every lesser one is — so `since[0] is
    None` means no level is crossed. `level`: the index of the level that stands
    (`NO_LEVEL`: none). Callers that need more per asset (the flows keep the breach event)
    subclass it, so the hot path reads one object."""

    since: list[int | None]
    level: int = NO_LEVEL


@dataclass(frozen=True, slots=True)
class Limit:
    """A `LimitRule` compiled for the hot path: thresholds signed so that "beyond" is always
    `signed value > signed threshold` (min rules are mirrored), least severe first as the
    rule orders its levels."""

    rule: LimitRule
    sign: float  # +1 for max, −1 for min
    signed: tuple[float, ...]  # thresholds × sign, least severe first
    hysteresis: float
    min_duration_ms: int

    @classmethod
    def of(cls, rule: LimitRule) -> Limit:
        sign = 1.0 if rule.direction == "max" else -1.0
        return cls(rule, sign, tuple(sign * lv.threshold for lv in rule.levels),
                   rule.hysteresis, round(rule.min_duration_s * 1000))

    def new_state(self) -> LimitState:
        return LimitState([None] * len(self.signed))

    def is_quiet(self, state: LimitState, value: float) -> bool:
        """True when `step` would change nothing: no level stands or is being timed and the
        value crosses none. Most samples are quiet, so callers test this first."""
        return state.level < 0 and state.since[0] is None \
            and value * self.sign <= self.signed[0]

    def clear_threshold(self, level: int) -> float:
        """The value at or inside which `level` no longer holds (max: threshold −
        hysteresis; min: threshold + hysteresis)."""
        return self.rule.levels[level].threshold - self.sign * self.hysteresis

    def step(self, state: LimitState, ts_ms: int, value: float) -> int:
        """Judge a finite `value` at `ts_ms` (not older than the previous sample): update the
        crossing timers and `state.level`, and return the new level (`NO_LEVEL`: none)."""
        signed_value = value * self.sign
        since = state.since
        levels = len(since)
        for i in range(levels):
            if signed_value > self.signed[i]:
                if since[i] is None:
                    since[i] = ts_ms
            else:
                for j in range(i, levels):  # nested: no more severe level is crossed either
                    since[j] = None
                break
        qualified = NO_LEVEL  # the most severe level crossed for min_duration
        for i in range(levels - 1, -1, -1):
            start = since[i]
            if start is not None and ts_ms - start >= self.min_duration_ms:
                qualified = i
                break
        level = state.level
        if level < 0 or qualified > level:
            new = qualified
        elif signed_value > self.signed[level] - self.hysteresis:
            new = level  # held, possibly inside the threshold but within the hysteresis
        else:
            new = NO_LEVEL  # down to the most severe lesser level still held, if any
            for j in range(level - 1, -1, -1):
                if signed_value > self.signed[j] - self.hysteresis:
                    new = j
                    break
        state.level = new
        return new


# -- trends ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TrendState:
    """What one trend remembers about one asset: the (ts_ms, value) samples kept within its
    window, oldest first — at most ~33, whatever the poll rate, so snapshots stay small.
    Callers that need more per asset subclass it, as with `LimitState`."""

    samples: deque[tuple[int, float]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class Trend:
    """A `TrendRule` compiled for the hot path."""

    rule: TrendRule
    sign: float  # +1 rising, −1 falling
    window_ms: int
    raise_rate: float
    clear_rate: float

    @classmethod
    def of(cls, rule: TrendRule) -> Trend:
        clear = rule.max_rate_per_min if rule.clear_rate_per_min is None \
            else rule.clear_rate_per_min
        return cls(rule, 1.0 if rule.direction == "rising" else -1.0,
                   max(1, round(rule.window_s * 1000)), rule.max_rate_per_min, clear)

    def rate(self, state: TrendState, ts_ms: int, value: float) -> float | None:
        """Take a finite `value` at `ts_ms` (not older than the previous sample) into the
        window and return the signed rate per minute over it, or None while the kept samples
        span less than half the window (too short to judge, fewer than two samples too)."""
        samples = state.samples
        window = self.window_ms
        # Keep at most ~32 samples per window (the rate needs only the oldest in it): small
        # state for recovery snapshots, at a cost of ≤ 1/32 of the window in precision.
        if not samples or ts_ms - samples[-1][0] >= window // 32:
            samples.append((ts_ms, value))
        first_ms, first = samples[0]
        if first_ms < ts_ms - window:
            horizon = ts_ms - window
            while samples and samples[0][0] < horizon:
                samples.popleft()
            if not samples:
                return None
            first_ms, first = samples[0]
        span = ts_ms - first_ms
        if 2 * span < window:
            return None
        return (value - first) * MS_PER_MIN / span

    def breached(self, rate: float, active: bool) -> bool:
        """Whether the trend stands after a judged `rate`: an inactive one rises when the rate
        in the rule's direction is strictly above the raise rate, an active one holds unless
        it is strictly below the clear rate (hysteresis between the two)."""
        directed = rate * self.sign
        if active:
            return directed >= self.clear_rate
        return directed > self.raise_rate


def minutes_to_limit(value: float, rate_per_min: float, limit: float, sign: float
                     ) -> float | None:
    """Minutes until a tag at `value`, moving at `rate_per_min`, reaches `limit` in the
    direction `sign` (+1 rising, −1 falling) — the early warning a trend gives before a limit
    breaches. None when the limit is already reached or passed; `math.inf` when the tag is
    not moving towards it."""
    if (limit - value) * sign <= 0:
        return None
    if rate_per_min * sign <= 0:
        return math.inf
    return (limit - value) / rate_per_min
