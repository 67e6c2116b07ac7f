"""Controller health and comms in numbers — pure, no I/O, no clock of its own.

- `PollWindow`: what a connector counts of one device's polls (attempted, dropped after
  their retries, retries, latencies of the answered ones), closed into one `DeviceStats`
  per window of `every_ms` on the epoch's grid — the first poll (or retry) of a later window
  closes it; a poll counts in the window of its scheduled time `ts_ms`.
- `combine`: the figures of many windows (a device's over a report range, a gateway's).
- `state_hours`: the hours a device spent in each health state over a range, from its state
  changes.
- `gateway_state`: a gateway's state from its devices'."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contracts.events import DeviceStats, HealthState

MS_PER_HOUR = 3_600_000


def nearest_rank(ordered: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile of sorted values by nearest rank (a value that occurred)."""
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class PollWindow:
    """One device's poll figures over the open window; `answered` and `failed` return the
    previous window's `DeviceStats` when the poll at `ts_ms` is the first past its end."""

    def __init__(self, device_id: str, *, connector: str, site_id: str | None, gateway: str,
                 every_ms: int) -> None:
        if every_ms < 1:
            raise ValueError("every_ms must be at least 1")
        self.device_id, self.connector = device_id, connector
        self.site_id, self.gateway = site_id, gateway
        self.every_ms = every_ms
        self.start_ms: int | None = None
        self.polls = self.failures = self.retries = 0
        self.latencies_ms: list[float] = []

    def answered(self, ts_ms: int, latency_s: float) -> DeviceStats | None:
        closed = self._roll(ts_ms)
        self.polls += 1
        self.latencies_ms.append(max(0.0, latency_s * 1000))
        return closed

    def failed(self, ts_ms: int) -> DeviceStats | None:
        closed = self._roll(ts_ms)
        self.polls += 1
        self.failures += 1
        return closed

    def retried(self, ts_ms: int, count: int = 1) -> DeviceStats | None:
        """A failed attempt of the poll at `ts_ms` tried again."""
        closed = self._roll(ts_ms)
        self.retries += count
        return closed

    def _roll(self, ts_ms: int) -> DeviceStats | None:
        start = ts_ms // self.every_ms * self.every_ms
        if self.start_ms is None:
            self.start_ms = start
            return None
        if ts_ms < self.start_ms + self.every_ms:
            return None
        closed = self.close()
        self.start_ms = start
        return closed

    def close(self) -> DeviceStats | None:
        """The open window's figures (None if it has no poll), and a fresh window."""
        if self.start_ms is None or self.polls == 0:
            self.retries, self.start_ms = 0, None
            return None
        ordered = sorted(self.latencies_ms)
        stats = DeviceStats(
            device_id=self.device_id, connector=self.connector, site_id=self.site_id,
            gateway=self.gateway, start_ms=self.start_ms,
            end_ms=self.start_ms + self.every_ms, polls=self.polls, failed=self.failures,
            retries=self.retries,
            latency_p50_ms=nearest_rank(ordered, 50) if ordered else None,
            latency_p95_ms=nearest_rank(ordered, 95) if ordered else None,
            latency_max_ms=ordered[-1] if ordered else None)
        self.polls = self.failures = self.retries = 0
        self.latencies_ms = []
        self.start_ms = None
        return stats


@dataclass(frozen=True, slots=True)
class CommsFigures:
    """Many windows' figures together. Percentiles of merged windows are not exact: p50 and
    p95 are the windows' own, weighted by the polls each answered; max is the largest."""

    windows: int
    polls: int
    failed: int
    retries: int
    drop_rate: float | None  # failed / polls
    retry_rate: float | None  # retries / polls
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None


def combine(stats: Iterable[DeviceStats]) -> CommsFigures:
    windows = polls = failed = retries = answered = 0
    p50 = p95 = 0.0
    longest: float | None = None
    for s in stats:
        windows += 1
        polls += s.polls
        failed += s.failed
        retries += s.retries
        n = s.polls - s.failed
        if n and s.latency_p50_ms is not None and s.latency_p95_ms is not None \
                and s.latency_max_ms is not None:
            answered += n
            p50 += s.latency_p50_ms * n
            p95 += s.latency_p95_ms * n
            longest = s.latency_max_ms if longest is None else max(longest, s.latency_max_ms)
    return CommsFigures(
        windows=windows, polls=polls, failed=failed, retries=retries,
        drop_rate=failed / polls if polls else None,
        retry_rate=retries / polls if polls else None,
        latency_p50_ms=p50 / answered if answered else None,
        latency_p95_ms=p95 / answered if answered else None,
        latency_max_ms=longest)


def state_hours(changes: Iterable[tuple[int, HealthState]], start_ms: int,
                end_ms: int) -> dict[HealthState, float]:
    """Hours in each state within `[start_ms, end_ms)`: a state holds from its change to the
    next (the last one to `end_ms`); time before the first change is in no state."""
    hours: dict[HealthState, float] = {"online": 0.0, "degraded": 0.0, "offline": 0.0}
    ordered = sorted(changes, key=lambda c: c[0])
    for k, (ts, state) in enumerate(ordered):
        until = ordered[k + 1][0] if k + 1 < len(ordered) else end_ms
        span = min(until, end_ms) - max(ts, start_ms)
        if span > 0:
            hours[state] += span / MS_PER_HOUR
    return hours


def gateway_state(states: Iterable[HealthState | None]) -> HealthState | None:
    """A gateway is online when all its devices are, offline when all are (the link or the
    gateway is down), degraded in between; None when none of its devices has a state yet."""
    known = [s for s in states if s is not None]
    if not known:
        return None
    if all(s == "online" for s in known):
        return "online"
    if all(s == "offline" for s in known):
        return "offline"
    return "degraded"
