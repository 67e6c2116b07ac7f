"""Limit and trend breaches of canonical tags, in event time: the logic of the breach step,
free of Bytewax so it can be tested exhaustively.

The caller feeds `BreachEngine.observe` one asset's canonical tags per poll (a battery unit,
its inverters and DC blocks) and gets back `BreachEvent`s, raised or cleared. The engine keeps
one small state per (rule, asset); it is deterministic (event time only) and picklable, so a
Bytewax recovery snapshot restores it and a replay re-emits the same events and ids.

Choices, each tested in tests/flows/test_breaches.py:

- A sample with no usable value for a rule's tag (missing, not an int or float — `bool`
  included —, NaN or ±inf) leaves that rule's state as it was: a crossing timer keeps running,
  an active breach stays active. Continuity is judged on the samples that carry a value.
- A sample older than the newest one seen for its asset is ignored (the caller guarantees
  per-asset order and sends late samples to the dead-letter topic). An equal timestamp is
  observed like any other sample.
- Limits. A level is crossed when the value is strictly beyond its threshold (max: above,
  min: below). A breach is raised at the first sample at or after the moment a level has been
  crossed continuously for `min_duration_s`: `raised_ms` is that sample's time (with
  `min_duration_s: 0`, the first crossing sample). It is raised at the most severe level so
  qualified. An active breach holds its level while the value stays beyond that level's
  threshold less the hysteresis (max: value > threshold − hysteresis); once inside it, the
  breach falls to the most severe lower level it still holds (de-escalation, immediate) or
  clears when it holds none. A more severe level crossed for `min_duration_s` escalates.
  Escalating or de-escalating clears the active breach and raises one at the new severity at
  the same `ts_ms`.
- Trends. The rate is per minute between the oldest kept sample inside the trailing
  `window_s` (`ts ≥ now − window`; samples are kept at least window/32 apart) and the newest,
  judged only when those two span at least half the window. A breach is raised when the rate
  in the rule's direction is strictly above `max_rate_per_min`, and cleared when strictly
  below `clear_rate_per_min` (default: the raise rate). Too short a span judges nothing: an
  active trend breach stays active across a gap. The event's `value` is the signed rate
  (negative when falling), `threshold` the raise rate.

`breach_id = f"{rule_id}:{severity}:{asset_id}:{raised_ms}"`; the cleared event carries the
same id, its own `ts_ms` and the value (limits) or rate (trends) that cleared it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from contracts.events import BreachEvent, Severity, TagValue
from contracts.fleet import Asset
from contracts.monitoring import LimitRule, MonitoringConfig, TrendRule

MS_PER_MIN = 60_000


# -- rules compiled once --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Limit:
    """A limit rule in the shape the hot path wants: thresholds signed so that "beyond" is
    always `signed value > signed threshold` (min rules are mirrored)."""

    rule: LimitRule
    tag: str
    unit: str
    sign: float  # +1 for max, −1 for min
    signed: tuple[float, ...]  # thresholds × sign, least severe first
    hysteresis: float
    min_duration_ms: int

    @classmethod
    def of(cls, rule: LimitRule, unit: str) -> _Limit:
        sign = 1.0 if rule.direction == "max" else -1.0
        return cls(rule, rule.tag, unit, sign, tuple(sign * lv.threshold for lv in rule.levels),
                   rule.hysteresis, round(rule.min_duration_s * 1000))


@dataclass(frozen=True, slots=True)
class _Trend:
    rule: TrendRule
    tag: str
    unit: str
    sign: float  # +1 rising, −1 falling
    window_ms: int
    raise_rate: float
    clear_rate: float

    @classmethod
    def of(cls, rule: TrendRule, unit: str) -> _Trend:
        clear = rule.max_rate_per_min if rule.clear_rate_per_min is None \
            else rule.clear_rate_per_min
        return cls(rule, rule.tag, unit, 1.0 if rule.direction == "rising" else -1.0,
                   max(1, round(rule.window_s * 1000)), rule.max_rate_per_min, clear)


# -- state per (rule, asset) ----------------------------------------------------------------


@dataclass(slots=True)
class _LimitState:
    # Per level, when its current uninterrupted crossing began (None: not crossed). Levels
    # nest — a more severe level crossed means every lesser one is — so since[0] is None
    # means no level is crossed.
    since: list[int | None]
    level: int = -1  # level index of the active breach; −1: none
    event: BreachEvent | None = None  # the active breach's "raised" event


@dataclass(slots=True)
class _TrendState:
    samples: deque[tuple[int, float]] = field(default_factory=deque)  # within the window
    event: BreachEvent | None = None


@dataclass(slots=True)
class _Track:
    """One asset's rule states and the newest sample time seen for it."""

    asset_id: str
    site_id: str
    last_ts_ms: int
    limits: tuple[tuple[_Limit, _LimitState], ...]
    trends: tuple[tuple[_Trend, _TrendState], ...]


# -- the engine -----------------------------------------------------------------------------


class BreachEngine:
    """Limit and trend breaches for the assets it is given (the whole fleet, or only the
    assets of the key a Bytewax step owns: the pickled state grows with the assets seen)."""

    def __init__(self, config: MonitoringConfig, assets: Mapping[str, Asset]) -> None:
        limits: dict[str, list[_Limit]] = {}
        trends: dict[str, list[_Trend]] = {}
        for rule in config.limits:
            limits.setdefault(rule.asset_kind, []).append(_Limit.of(rule, _unit(config,
                                                                                rule.tag)))
        for trule in config.trends:
            trends.setdefault(trule.asset_kind, []).append(_Trend.of(trule, _unit(config,
                                                                                  trule.tag)))
        self._limits = {kind: tuple(rules) for kind, rules in limits.items()}
        self._trends = {kind: tuple(rules) for kind, rules in trends.items()}
        watched = limits.keys() | trends.keys()
        # Only assets some rule watches: every other asset costs one failed lookup per poll.
        self._assets: dict[str, tuple[str, str]] = {
            a.id: (a.kind, a.site_id) for a in assets.values() if a.kind in watched}
        self._tracks: dict[str, _Track] = {}

    def observe(self, asset_id: str, ts_ms: int, tags: Mapping[str, TagValue]
                ) -> list[BreachEvent]:
        """The breaches raised and cleared by one asset's poll at `ts_ms`, in rule order."""
        track = self._tracks.get(asset_id)
        if track is None:
            track = self._track(asset_id, ts_ms)
            if track is None:
                return []
        elif ts_ms < track.last_ts_ms:
            return []
        track.last_ts_ms = ts_ms
        out: list[BreachEvent] = []
        isfinite = math.isfinite
        for lim, lst in track.limits:
            value = tags.get(lim.tag)
            if type(value) is not float:  # the usual case, a finite float, inlined
                value = _number(value)
                if value is None:
                    continue
            elif not isfinite(value):
                continue
            if lst.level < 0 and lst.since[0] is None and value * lim.sign <= lim.signed[0]:
                continue  # the quiet case: nothing crossed, nothing active
            self._limit(track, lim, lst, ts_ms, value, out)
        for trend, tst in track.trends:
            value = tags.get(trend.tag)
            if type(value) is not float:
                value = _number(value)
                if value is None:
                    continue
            elif not isfinite(value):
                continue
            self._trend(track, trend, tst, ts_ms, value, out)
        return out

    def active(self) -> list[BreachEvent]:
        """The "raised" events of the breaches active now, by asset then rule."""
        out: list[BreachEvent] = []
        for track in self._tracks.values():
            out += [st.event for _, st in track.limits if st.event is not None]
            out += [tst.event for _, tst in track.trends if tst.event is not None]
        return sorted(out, key=lambda e: (e.asset_id, e.rule_id))

    # -- internals ---------------------------------------------------------------------

    def _track(self, asset_id: str, ts_ms: int) -> _Track | None:
        known = self._assets.get(asset_id)
        if known is None:
            return None
        kind, site_id = known
        track = _Track(
            asset_id, site_id, ts_ms,
            tuple((lim, _LimitState([None] * len(lim.signed)))
                  for lim in self._limits.get(kind, ())),
            tuple((trend, _TrendState()) for trend in self._trends.get(kind, ())),
        )
        self._tracks[asset_id] = track
        return track

    def _limit(self, track: _Track, lim: _Limit, st: _LimitState, ts_ms: int, value: float,
               out: list[BreachEvent]) -> None:
        signed_value = value * lim.sign
        since = st.since
        levels = len(since)
        for i in range(levels):
            if signed_value > lim.signed[i]:
                if since[i] is None:
                    since[i] = ts_ms
            else:
                for j in range(i, levels):  # nested: no more severe level is crossed either
                    since[j] = None
                break
        qualified = -1  # the most severe level crossed for min_duration
        for i in range(levels - 1, -1, -1):
            start = since[i]
            if start is not None and ts_ms - start >= lim.min_duration_ms:
                qualified = i
                break
        level = st.level
        if level < 0 or qualified > level:
            new = qualified
        elif signed_value > lim.signed[level] - lim.hysteresis:
            new = level  # held, possibly inside the threshold but within the hysteresis
        else:
            new = -1  # down to the most severe lesser level still held, if any
            for j in range(level - 1, -1, -1):
                if signed_value > lim.signed[j] - lim.hysteresis:
                    new = j
                    break
        if new == level:
            return
        rule, unit = lim.rule, lim.unit
        tag = rule.tag
        if st.event is not None:
            active = st.event
            if new > level:
                why = f"escalated to {rule.levels[new].severity}"
            else:
                inside = rule.levels[level].threshold - lim.sign * lim.hysteresis
                why = (f"back to {_q(value, unit)}, "
                       f"{'at or below' if lim.sign > 0 else 'at or above'} {_q(inside, unit)}")
                if new >= 0:
                    why += f": down to {rule.levels[new].severity}"
            out.append(active.model_copy(update={
                "state": "cleared", "ts_ms": ts_ms, "value": value,
                "message": f"{tag} {active.severity} cleared: {why}"}))
        st.level = new
        st.event = None
        if new >= 0:
            lv = rule.levels[new]
            side = "above" if lim.sign > 0 else "below"
            if new < level:
                message = (f"{tag} {_q(value, unit)}, back from {rule.levels[level].severity} "
                           f"but still {lv.severity} (limit {_q(lv.threshold, unit)}, "
                           f"hysteresis {_q(lim.hysteresis, unit)})")
            else:
                held = "" if lim.min_duration_ms == 0 \
                    else f" for {_num(lim.min_duration_ms / 1000)} s"
                message = (f"{tag} {_q(value, unit)} {side} the {lv.severity} limit "
                           f"{_q(lv.threshold, unit)}{held}")
            st.event = _event(rule.id, "limit", track, tag, lv.severity, ts_ms, value,
                              lv.threshold, message)
            out.append(st.event)

    def _trend(self, track: _Track, trend: _Trend, st: _TrendState, ts_ms: int, value: float,
               out: list[BreachEvent]) -> None:
        samples = st.samples
        # Keep at most ~32 samples per window (the rate needs only the oldest in it): small
        # state for recovery snapshots, at a cost of ≤ 1/32 of the window in precision.
        if not samples or ts_ms - samples[-1][0] >= trend.window_ms // 32:
            samples.append((ts_ms, value))
        horizon = ts_ms - trend.window_ms
        while samples and samples[0][0] < horizon:
            samples.popleft()
        if not samples:
            return
        first_ms, first = samples[0]
        span = ts_ms - first_ms
        if 2 * span < trend.window_ms:
            return  # too short to judge (also: fewer than two samples)
        rate = (value - first) * MS_PER_MIN / span
        directed = rate * trend.sign
        if st.event is None:
            if directed <= trend.raise_rate:
                return  # the quiet case
        elif directed >= trend.clear_rate:
            return  # still rising (falling) too fast: the breach holds
        rule, unit = trend.rule, trend.unit
        verb = "rising" if trend.sign > 0 else "falling"
        per_min = f"{_num(abs(rate))} {unit}/min" if unit else f"{_num(abs(rate))}/min"
        if st.event is None:
            message = f"{rule.tag} {verb} {per_min}"
            if rule.limit is not None:
                message += f", {_projection(value, rate, rule.limit, trend.sign, unit)}"
            st.event = _event(rule.id, "trend", track, rule.tag, rule.severity, ts_ms, rate,
                              trend.raise_rate, message)
            out.append(st.event)
        else:
            clear_at = f"{_num(trend.clear_rate)} {unit}/min" if unit \
                else f"{_num(trend.clear_rate)}/min"
            out.append(st.event.model_copy(update={
                "state": "cleared", "ts_ms": ts_ms, "value": rate,
                "message": f"{rule.tag} {verb} cleared: {per_min}, below {clear_at}"}))
            st.event = None


def _event(rule_id: str, kind: Literal["limit", "trend"], track: _Track, tag: str,
           severity: Severity, ts_ms: int, value: float, threshold: float, message: str
           ) -> BreachEvent:
    return BreachEvent(
        breach_id=f"{rule_id}:{severity}:{track.asset_id}:{ts_ms}", rule_id=rule_id,
        kind=kind, asset_id=track.asset_id, site_id=track.site_id, tag=tag, severity=severity,
        state="raised", raised_ms=ts_ms, ts_ms=ts_ms, value=value, threshold=threshold,
        message=message)


def _number(value: TagValue | None) -> float | None:
    """The value as a finite float, or None when it cannot be judged (see module doc)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    return None


def _projection(value: float, rate: float, limit: float, sign: float, unit: str) -> str:
    """When the tag reaches `limit` at `rate` (per minute), e.g. "55 degC in ~4 min"."""
    if (limit - value) * sign <= 0:
        return f"{_q(limit, unit)} already {'reached' if value == limit else 'passed'}"
    minutes = (limit - value) / rate
    if minutes < 1:
        when = f"~{math.floor(minutes * 60 + 0.5)} s"
    elif minutes < 120:
        when = f"~{math.floor(minutes + 0.5)} min"
    else:
        when = f"~{math.floor(minutes / 60 + 0.5)} h"
    return f"{_q(limit, unit)} in {when}"


def _unit(config: MonitoringConfig, tag: str) -> str:
    spec = config.tags.get(tag)
    return spec.unit if spec is not None else ""


def _num(x: float) -> str:
    """At most two decimals, no trailing zeros: 47.25, 2.6, 55."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _q(x: float, unit: str) -> str:
    return f"{_num(x)} {unit}" if unit else _num(x)
