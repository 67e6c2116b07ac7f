"""Controller health and comms in numbers — pure, no I/O, no clock of its own.

- `PollWindow`: what a connector counts of one device's polls (attempted, dropped after
  their retries, retries, latencies of the answered ones), closed into one `DeviceStats`
  per window of `every_ms` on the epoch's grid — the first poll (or retry) of a later window
  closes it; a poll counts in the window of its scheduled time `ts_ms`.
- `PollTotals`, `combine`: the figures of many windows (a device's over a report range, a
  gateway's) — sums a store can add up in its query, and the figures that follow.
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


@dataclass(frozen=True, slots=True)
class PollTotals:
    """Sums of stats windows, from which `CommsFigures` follow: what a store can add up in
    its query, and what adds up again (a gateway's devices)."""

    windows: int = 0
    polls: int = 0
    failed: int = 0
    retries: int = 0
    answered: int = 0  # polls with a latency
    p50_sum: float = 0.0  # each window's p50 × its answered polls
    p95_sum: float = 0.0
    latency_max_ms: float | None = None

    def __add__(self, other: PollTotals) -> PollTotals:
        maxes = [m for m in (self.latency_max_ms, other.latency_max_ms) if m is not None]
        return PollTotals(self.windows + other.windows, self.polls + other.polls,
                          self.failed + other.failed, self.retries + other.retries,
                          self.answered + other.answered, self.p50_sum + other.p50_sum,
                          self.p95_sum + other.p95_sum, max(maxes) if maxes else None)

    @classmethod
    def of(cls, s: DeviceStats) -> PollTotals:
        n = s.polls - s.failed if s.latency_p50_ms is not None else 0
        return cls(1, s.polls, s.failed, s.retries, n, (s.latency_p50_ms or 0.0) * n,
                   (s.latency_p95_ms or 0.0) * n, s.latency_max_ms)

    def figures(self) -> CommsFigures:
        n, polls = self.answered, self.polls
        return CommsFigures(
            windows=self.windows, polls=polls, failed=self.failed, retries=self.retries,
            drop_rate=self.failed / polls if polls else None,
            retry_rate=self.retries / polls if polls else None,
            latency_p50_ms=self.p50_sum / n if n else None,
            latency_p95_ms=self.p95_sum / n if n else None,
            latency_max_ms=self.latency_max_ms)


def totals(stats: Iterable[DeviceStats]) -> PollTotals:
    return sum((PollTotals.of(s) for s in stats), PollTotals())


def combine(stats: Iterable[DeviceStats]) -> CommsFigures:
    return totals(stats).figures()


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
