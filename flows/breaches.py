"""Limit and trend breaches of canonical tags, in event time: the logic of the breach step,
free of Bytewax so it can be tested exhaustively.

The caller feeds `BreachEngine.observe` one asset's canonical tags per poll (a battery unit,
its inverters and DC blocks) and gets back `BreachEvent`s, raised or cleared. The engine keeps
one small state per (rule, asset); it is deterministic (event time only) and picklable, so a
Bytewax recovery snapshot restores it and a replay re-emits the same events and ids.

The rules themselves — which level a value stands at (hysteresis, minimum duration), a
trend's rate and its projected time to a limit, which values can be judged — live in
`contracts/limits.py`, shared with the control loop and described there. This module adds
what is the flow's own, each tested in tests/flows/test_breaches.py:

- A sample with no usable value for a rule's tag leaves that rule's state as it was.
  Continuity is judged on the samples that carry a value.
- A sample older than the newest one seen for its asset is ignored (the caller guarantees
  per-asset order and sends late samples to the dead-letter topic). An equal timestamp is
  observed like any other sample.
- Limits. A breach is raised when a level starts to stand: `raised_ms` is the time of the
  sample at which it qualified, its severity the standing level's. Escalating or
  de-escalating clears the active breach and raises one at the new severity at the same
  `ts_ms`; it is cleared when no level stands.
- Trends. A breach is raised and cleared as the trend starts and stops standing. The event's
  `value` is the signed rate (negative when falling), `threshold` the raise rate.

`breach_id = f"{rule_id}:{severity}:{asset_id}:{raised_ms}"`; the cleared event carries the
same id, its own `ts_ms` and the value (limits) or rate (trends) that cleared it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from contracts.events import BreachEvent, Severity, TagValue
from contracts.fleet import Asset
from contracts.limits import (
    MS_PER_MIN,
    Limit,
    LimitState,
    Trend,
    TrendState,
    finite_number,
    minutes_to_limit,
)
from contracts.monitoring import LimitRule, MonitoringConfig, TrendRule

# -- rules compiled once --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Limit(Limit):
    """The shared limit rule (`contracts.limits.Limit`) with what the events name: its tag
    and the tag's unit."""

    tag: str = ""
    unit: str = ""

    @classmethod
    def with_unit(cls, rule: LimitRule, unit: str) -> _Limit:
        c = Limit.of(rule)
        return cls(rule, c.sign, c.signed, c.hysteresis, c.min_duration_ms, rule.tag, unit)


@dataclass(frozen=True, slots=True)
class _Trend(Trend):
    """The shared trend rule (`contracts.limits.Trend`) with its tag and the tag's unit."""

    tag: str = ""
    unit: str = ""

    @classmethod
    def with_unit(cls, rule: TrendRule, unit: str) -> _Trend:
        c = Trend.of(rule)
        return cls(rule, c.sign, c.window_ms, c.raise_rate, c.clear_rate, rule.tag, unit)


# -- state per (rule, asset) ----------------------------------------------------------------


@dataclass(slots=True)
class _LimitState(LimitState):
    """The shared limit state plus the active breach's "raised" event."""

    event: BreachEvent | None = None


@dataclass(slots=True)
class _TrendState(TrendState):
    """The shared trend state plus the active breach's "raised" event."""

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
            limits.setdefault(rule.asset_kind, []).append(_Limit.with_unit(rule, _unit(config,
                                                                                rule.tag)))
        for trule in config.trends:
            trends.setdefault(trule.asset_kind, []).append(_Trend.with_unit(trule, _unit(config,
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
        return self.observe_poll(ts_ms, ((asset_id, tags),))

    def observe_poll(self, ts_ms: int, readings: Iterable[tuple[str, Mapping[str, TagValue]]]
                     ) -> list[BreachEvent]:
        """`observe` of each asset of a poll in turn (one call per poll: the flows' hot
        path)."""
        tracks, isfinite = self._tracks, math.isfinite
        events: list[BreachEvent] = []
        for asset_id, tags in readings:
            track = tracks.get(asset_id)
            if track is None:
                track = self._track(asset_id, ts_ms)
                if track is None:
                    continue
            elif ts_ms < track.last_ts_ms:
                continue
            track.last_ts_ms = ts_ms
            for lim, lst in track.limits:
                value = tags.get(lim.tag)
                if type(value) is not float:  # the usual case, a finite float, inlined
                    value = finite_number(value)
                    if value is None:
                        continue
                elif not isfinite(value):
                    continue
                # The quiet case, nothing crossed, nothing active: `Limit.is_quiet`, inlined.
                if lst.level < 0 and lst.since[0] is None and value * lim.sign <= lim.signed[0]:
                    continue
                self._limit(track, lim, lst, ts_ms, value, events)
            for trend, tst in track.trends:
                value = tags.get(trend.tag)
                if type(value) is not float:
                    value = finite_number(value)
                    if value is None:
                        continue
                elif not isfinite(value):
                    continue
                # `Trend.rate` and `Trend.breached` inlined for the usual case: the sample
                # is neither kept (too close to the newest kept) nor ages one out.
                samples, window = tst.samples, trend.window_ms
                if samples and ts_ms - samples[-1][0] < window // 32 and \
                        samples[0][0] >= ts_ms - window:
                    first_ms, first = samples[0]
                    span = ts_ms - first_ms
                    if 2 * span < window:
                        continue  # too short to judge
                    rate = (value - first) * MS_PER_MIN / span
                else:
                    judged = trend.rate(tst, ts_ms, value)
                    if judged is None:
                        continue
                    rate = judged
                active = tst.event is not None
                directed = rate * trend.sign
                if (directed >= trend.clear_rate if active else directed > trend.raise_rate) \
                        != active:  # the trend starts or stops standing
                    self._trend(track, trend, tst, ts_ms, value, rate, events)
        return events

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
        level = st.level
        new = lim.step(st, ts_ms, value)
        if new == level:
            return
        rule, unit = lim.rule, lim.unit
        tag = rule.tag
        if st.event is not None:
            active = st.event
            if new > level:
                why = f"escalated to {rule.levels[new].severity}"
            else:
                inside = lim.clear_threshold(level)
                why = (f"back to {_q(value, unit)}, "
                       f"{'at or below' if lim.sign > 0 else 'at or above'} {_q(inside, unit)}")
                if new >= 0:
                    why += f": down to {rule.levels[new].severity}"
            out.append(active.model_copy(update={
                "state": "cleared", "ts_ms": ts_ms, "value": value,
                "message": f"{tag} {active.severity} cleared: {why}"}))
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
               rate: float, out: list[BreachEvent]) -> None:
        """The trend at `rate` (judged) starts or stops standing."""
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


def _projection(value: float, rate: float, limit: float, sign: float, unit: str) -> str:
    """When the tag reaches `limit` at `rate` (per minute), e.g. "55 degC in ~4 min". Only
    called for a raised trend, so the tag moves towards the limit (never `math.inf`)."""
    minutes = minutes_to_limit(value, rate, limit, sign)
    if minutes is None:
        return f"{_q(limit, unit)} already {'reached' if value == limit else 'passed'}"
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
