"""Data-quality alerts in event time: telemetry gaps, frozen values and clock skew per device,
the refused share of records per scope, and flapping statuses per asset.

Plain, picklable classes for Bytewax stateful steps (one instance per key, kept by the caller).
Every alert is raised once and cleared once under the same `alert_id`
(`f"{kind}:{scope_id}:{raised_ms}"`). `raised_ms` is the event time the condition became true
as the samples alone show it, never the moment a caller happened to look, so a replay with
other tick cadences or batch boundaries re-emits the same ids.

Severities (none is a safety matter, so none is critical):
- `telemetry_gap`: major — a silent device turns its assets `unknown`, which counts as lost.
- `dlq_rate`: major — records are being thrown away; numbers downstream are incomplete.
- `frozen_value`, `clock_skew`, `data_instability`: minor — the data is suspect, not absent.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from contracts.events import Alert, AlertKind, Severity, State, StatusChange, TagValue
from contracts.monitoring import DeviceType, MonitoringConfig, QualityConfig

SEVERITY: dict[AlertKind, Severity] = {
    "telemetry_gap": "major",
    "dlq_rate": "major",
    "frozen_value": "minor",
    "clock_skew": "minor",
    "data_instability": "minor",
}
# Consecutive samples within the allowed skew that clear a clock_skew alert: one good sample
# among drifting ones (network jitter around the limit) must not clear and re-raise.
SKEW_CLEAR_SAMPLES = 3
# Below this many records in the window the refused share is not judged (1 of 3 is no rate).
DLQ_MIN_RECORDS = 20
DLQ_BUCKET_MS = 1_000  # resolution of the trailing DLQ window


def _alert(kind: AlertKind, scope_id: str, site_id: str | None, state: Literal[
        "raised", "cleared"], raised_ms: int, ts_ms: int, message: str,
           details: dict[str, float | int | str | None]) -> Alert:
    return Alert(alert_id=f"{kind}:{scope_id}:{raised_ms}", kind=kind, scope_id=scope_id,
                 site_id=site_id, severity=SEVERITY[kind], state=state, raised_ms=raised_ms,
                 ts_ms=ts_ms, message=message, details=details)


def _cleared(raised: Alert, ts_ms: int, message: str,
             details: dict[str, float | int | str | None]) -> Alert:
    return raised.model_copy(update={"state": "cleared", "ts_ms": max(ts_ms, raised.raised_ms),
                                     "message": message, "details": details})


# -- per device ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """What one device is judged against, in milliseconds; small, so that it can sit in every
    device's state without bloating snapshots."""

    poll_interval_s: float
    gap_ms: int  # silence longer than this is a gap
    frozen_after_ms: int
    max_skew_ms: int
    moving_tags: tuple[str, ...]  # sorted: iteration order must not depend on hashing

    @classmethod
    def of(cls, config: MonitoringConfig, device_type: str | None) -> DeviceLimits:
        """Limits for a device of `device_type` (None: canonical tags, default poll interval);
        an unknown type is a KeyError, since the caller dead-letters such samples earlier."""
        if device_type is None:
            poll_s = float(DeviceType.model_fields["poll_interval_s"].default)
        else:
            poll_s = config.device_types[device_type].poll_interval_s
        quality = config.quality
        return cls(poll_interval_s=poll_s,
                   gap_ms=round(quality.gap_factor * poll_s * 1000),
                   frozen_after_ms=round(quality.frozen_after_s * 1000),
                   max_skew_ms=round(quality.max_clock_skew_s * 1000),
                   moving_tags=tuple(sorted(n for n, spec in config.tags.items() if spec.moving)))


@dataclass
class _Frozen:
    value: TagValue
    since_ms: int  # first sample that showed `value`
    alert: Alert | None = None


class DeviceQuality:
    """Telemetry gap, frozen values and clock skew of one device.

    - telemetry_gap: the device is silent for more than `gap_factor × poll_interval_s`. Raised
      once per gap, at `raised_ms` = last sample + that limit, by whichever sees it first:
      `tick` (event time moved on) or the sample that ends the silence. It stays raised over
      further silences and clears at the first sample that follows its predecessor within
      the limit — samples flow again — not at the single sample that ended the silence.
      `tick` should be given the caller's watermark (allowing for lateness); a sample that
      then still arrives within the limit simply clears the alert.
    - frozen_value, per (asset, moving tag): the same value in every sample for at least
      `frozen_after_s`; raised at the first sample that shows it, cleared by the first sample
      with another value. Only samples judge it (silence is the gap alert's business, and a
      value equal before and after a silence still counts as unchanged). Its scope is
      `f"{asset_id}:{tag}"`, since several tags of one asset often freeze in the same poll.
    - clock_skew: `|ts_ms − received_ms| > max_clock_skew_s`; raised once at the sample's
      `ts_ms`, cleared after `SKEW_CLEAR_SAMPLES` consecutive samples within the limit.

    A sample not newer than the newest one seen (duplicate, out of order) is not judged at
    all: such samples are the dead-letter queue's business, and skipping them keeps every
    raise at a later event time than the last, so ids never repeat."""

    def __init__(self, device_id: str, limits: DeviceLimits, *,
                 site_id: str | None = None) -> None:
        self.device_id = device_id
        self.limits = limits
        self.site_id = site_id
        self.last_ts_ms: int | None = None
        self.gap: Alert | None = None
        self.gap_longest_ms = 0  # longest silence while the gap alert is raised
        self.gap_resumed_ms: int | None = None  # the sample that ended the last silence
        self.skew: Alert | None = None
        self.skew_worst_ms = 0
        self.skew_good = 0  # consecutive samples within the limit while raised
        self.frozen: dict[tuple[str, str], _Frozen] = {}

    def observe(self, ts_ms: int, received_ms: int,
                tags_by_asset: Mapping[str, Mapping[str, TagValue]]) -> list[Alert]:
        last = self.last_ts_ms
        if last is not None and ts_ms <= last:
            return []
        out: list[Alert] = []
        self._judge_skew(ts_ms, received_ms, out)
        self.last_ts_ms = ts_ms
        if last is not None:
            self._judge_gap(last, ts_ms, out)
        frozen = self.frozen
        frozen_after = self.limits.frozen_after_ms
        moving = self.limits.moving_tags
        for asset_id, tags in tags_by_asset.items():
            for tag in moving:
                value = tags.get(tag)
                if value is None:
                    continue
                track = frozen.get((asset_id, tag))
                # The usual case, decided here: a value that moved with no alert raised.
                if track is not None and value != track.value and track.alert is None:
                    track.value = value
                    track.since_ms = ts_ms
                elif track is None or track.alert is not None or \
                        ts_ms - track.since_ms >= frozen_after:
                    self._judge_frozen(asset_id, tag, value, ts_ms, out)
        return out

    def tick(self, now_event_ms: int) -> list[Alert]:
        """Event time reached `now_event_ms`: a device silent past the limit has a gap. A device
        never heard from is not judged (nothing says it should be reporting)."""
        last = self.last_ts_ms
        if last is None or self.gap is not None or now_event_ms - last <= self.limits.gap_ms:
            return []
        self.gap = self._gap_raised(last)
        return [self.gap]

    # -- telemetry gap -------------------------------------------------------------------

    def _gap_raised(self, last_ms: int) -> Alert:
        self.gap_longest_ms = 0
        self.gap_resumed_ms = None
        threshold_s = self.limits.gap_ms / 1000
        return _alert("telemetry_gap", self.device_id, self.site_id, "raised",
                      last_ms + self.limits.gap_ms, last_ms + self.limits.gap_ms,
                      f"device {self.device_id} silent for more than {threshold_s:g} s",
                      {"last_sample_ms": last_ms, "threshold_s": threshold_s,
                       "poll_interval_s": self.limits.poll_interval_s})

    def _judge_gap(self, last_ms: int, ts_ms: int, out: list[Alert]) -> None:
        silence = ts_ms - last_ms
        if silence > self.limits.gap_ms:
            if self.gap is None:
                self.gap = self._gap_raised(last_ms)
                out.append(self.gap)
            self.gap_resumed_ms = ts_ms
        elif self.gap is not None:
            gap = self.gap
            longest = max(self.gap_longest_ms, silence)
            out.append(_cleared(gap, ts_ms, f"device {self.device_id} reports again",
                                {**gap.details, "gap_s": longest / 1000,
                                 "resumed_ms": self.gap_resumed_ms}))
            self.gap = None
        if self.gap is not None:
            self.gap_longest_ms = max(self.gap_longest_ms, silence)

    # -- clock skew ----------------------------------------------------------------------

    def _judge_skew(self, ts_ms: int, received_ms: int, out: list[Alert]) -> None:
        skew = received_ms - ts_ms  # > 0: the device's clock is behind (or the data late)
        limit_s = self.limits.max_skew_ms / 1000
        if abs(skew) > self.limits.max_skew_ms:
            self.skew_good = 0
            if self.skew is None:
                self.skew_worst_ms = skew
                self.skew = _alert(
                    "clock_skew", self.device_id, self.site_id, "raised", ts_ms, ts_ms,
                    f"device {self.device_id} timestamps are {abs(skew) / 1000:g} s "
                    f"{'behind' if skew > 0 else 'ahead of'} the receiving clock "
                    f"(allowed {limit_s:g} s)",
                    {"skew_s": skew / 1000, "max_skew_s": limit_s})
                out.append(self.skew)
            elif abs(skew) > abs(self.skew_worst_ms):
                self.skew_worst_ms = skew
        elif self.skew is not None:
            self.skew_good += 1
            if self.skew_good >= SKEW_CLEAR_SAMPLES:
                out.append(_cleared(self.skew, ts_ms,
                                    f"device {self.device_id} clock back within {limit_s:g} s",
                                    {"skew_s": skew / 1000, "max_skew_s": limit_s,
                                     "worst_skew_s": self.skew_worst_ms / 1000}))
                self.skew = None
                self.skew_good = 0

    # -- frozen values -------------------------------------------------------------------

    def _judge_frozen(self, asset_id: str, tag: str, value: TagValue, ts_ms: int,
                      out: list[Alert]) -> None:
        key = (asset_id, tag)
        track = self.frozen.get(key)
        if track is None:
            self.frozen[key] = _Frozen(value, ts_ms)
            return
        scope = f"{asset_id}:{tag}"
        if value != track.value:
            if track.alert is not None:
                out.append(_cleared(track.alert, ts_ms, f"{asset_id} {tag} moves again",
                                    {**track.alert.details, "new_value": _detail(value),
                                     "unchanged_s": (ts_ms - track.since_ms) / 1000}))
            self.frozen[key] = _Frozen(value, ts_ms)
        elif track.alert is None and ts_ms - track.since_ms >= self.limits.frozen_after_ms:
            unchanged_s = (ts_ms - track.since_ms) / 1000
            track.alert = _alert(
                "frozen_value", scope, self.site_id, "raised", ts_ms, ts_ms,
                f"{asset_id} {tag} stuck at {value!r} for {unchanged_s:g} s",
                {"asset_id": asset_id, "tag": tag, "device_id": self.device_id,
                 "value": _detail(value), "since_ms": track.since_ms,
                 "unchanged_s": unchanged_s,
                 "frozen_after_s": self.limits.frozen_after_ms / 1000})
            out.append(track.alert)


def _detail(value: TagValue) -> float | int | str:
    return int(value) if isinstance(value, bool) else value


# -- refused records per scope ----------------------------------------------------------


class DlqRate:
    """The share of records refused (dead-lettered) over the trailing `dlq_rate_window_s`
    of one scope (a site, or the fleet).

    Records are counted in 1-second buckets of event time; the window is the newest bucket
    and the ones before it, `ceil(window / 1 s)` in all. The window's clock is the newest
    trusted `ts_ms` seen (a poll's, checked): an older record (refused records are often late
    ones) counts at that clock. A record refused whole never moves the clock — its time may
    be anything, a device's clock in 2096 — but counts at it; before any trusted time it
    counts at its own time, moved to the first trusted one when that comes.
    With fewer than `min_records` in the window nothing is judged, neither raise nor clear.
    Raised when the share exceeds `dlq_rate_max`, cleared when it falls below it."""

    def __init__(self, scope_id: str, quality: QualityConfig, *, site_id: str | None = None,
                 min_records: int = DLQ_MIN_RECORDS) -> None:
        self.scope_id = scope_id
        self.site_id = site_id
        self.window_buckets = math.ceil(quality.dlq_rate_window_s * 1000 / DLQ_BUCKET_MS)
        self.max_share = quality.dlq_rate_max
        self.min_records = min_records
        self.now_ms: int | None = None
        self.buckets: deque[list[int]] = deque()  # [bucket index, records, refused]
        self.total = 0
        self.refused = 0
        self.alert: Alert | None = None
        self.last_raised_ms: int | None = None
        self.provisional = False  # the clock is a refused record's time, not yet a trusted one

    def observe(self, ts_ms: int, accepted: bool, *, trusted: bool | None = None
                ) -> list[Alert]:
        """One record at `ts_ms`, accepted or refused; `trusted` (default: `accepted`) says
        whether its time may move the window's clock."""
        trusted = accepted if trusted is None else trusted
        if self.now_ms is None:
            self.now_ms, self.provisional = ts_ms, not trusted
        elif trusted and self.provisional:  # the first trusted time: the counts move to it
            self.now_ms, self.provisional = ts_ms, False
            self.buckets = deque([[ts_ms // DLQ_BUCKET_MS, self.total, self.refused]])
        elif trusted and ts_ms > self.now_ms:
            self.now_ms = ts_ms
        now = self.now_ms
        bucket = now // DLQ_BUCKET_MS
        if not self.buckets or self.buckets[-1][0] != bucket:
            self.buckets.append([bucket, 0, 0])
        newest = self.buckets[-1]
        newest[1] += 1
        newest[2] += 0 if accepted else 1
        self.total += 1
        self.refused += 0 if accepted else 1
        while self.buckets[0][0] <= bucket - self.window_buckets:
            _, total, refused = self.buckets.popleft()
            self.total -= total
            self.refused -= refused
        if self.total < self.min_records:
            return []
        share = self.refused / self.total
        window_s = self.window_buckets * DLQ_BUCKET_MS / 1000
        details: dict[str, float | int | str | None] = {
            "refused": self.refused, "total": self.total, "refused_share": share,
            "max_share": self.max_share, "window_s": window_s}
        # Not twice in one millisecond: a clear and a new raise there would repeat the id.
        if self.alert is None and share > self.max_share and now != self.last_raised_ms:
            self.last_raised_ms = now
            self.alert = _alert("dlq_rate", self.scope_id, self.site_id, "raised", now, now,
                                f"{self.scope_id}: {share:.1%} of records refused over the "
                                f"last {window_s:g} s (allowed {self.max_share:.1%})", details)
            return [self.alert]
        if self.alert is not None and share < self.max_share:
            cleared = _cleared(self.alert, now, f"{self.scope_id}: refused share back to "
                               f"{share:.1%}", details)
            self.alert = None
            return [cleared]
        return []


# -- flapping statuses per asset --------------------------------------------------------


class Flapping:
    """Data instability of one asset: at least `flapping_changes` state changes within
    `flapping_window_s`; cleared once the window holds fewer than half that many.

    Only changes of `state` count: a derated asset whose available capacity wobbles emits a
    StatusChange per poll but is not flapping, and a first status is no change. A change
    counts in the window `(now − window, now]`; an out-of-order change counts at the newest
    time seen. The clearing instant is computed (the moment the change that tips the count
    below half leaves the window), so `tick` — which a caller needs, as a quiet asset sends
    no more changes — only decides when the clear is noticed, not what it says."""

    def __init__(self, asset_id: str, quality: QualityConfig, *,
                 site_id: str | None = None) -> None:
        self.asset_id = asset_id
        self.site_id = site_id
        self.changes_max = quality.flapping_changes
        self.window_ms = round(quality.flapping_window_s * 1000)
        self.state: State | None = None
        self.times: deque[int] = deque()  # state changes in the window, oldest first
        self.alert: Alert | None = None

    def observe(self, change: StatusChange) -> list[Alert]:
        previous = self.state if self.state is not None else change.previous_state
        self.state = change.state
        self.site_id = self.site_id or change.site_id
        now = change.ts_ms if not self.times else max(self.times[-1], change.ts_ms)
        out = self.tick(now)
        if previous is None or previous == change.state:
            return out
        self.times.append(now)
        if self.alert is None and len(self.times) >= self.changes_max:
            window_s = self.window_ms / 1000
            self.alert = _alert(
                "data_instability", self.asset_id, self.site_id, "raised", now, now,
                f"{self.asset_id} changed state {len(self.times)} times in {window_s:g} s",
                {"changes": len(self.times), "changes_max": self.changes_max,
                 "window_s": window_s, "first_change_ms": self.times[0]})
            out.append(self.alert)
        return out

    def tick(self, now_event_ms: int) -> list[Alert]:
        out: list[Alert] = []
        while self.times and self.times[0] <= now_event_ms - self.window_ms:
            left_at = self.times.popleft() + self.window_ms
            if self.alert is not None and 2 * len(self.times) < self.changes_max:
                out.append(_cleared(self.alert, left_at, f"{self.asset_id} status steady again",
                                    {**self.alert.details, "changes": len(self.times)}))
                self.alert = None
        return out
