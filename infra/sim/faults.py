"""What goes wrong in the simulated fleet, and when: faults as Poisson processes by kind,
scheduled maintenance windows, derates — deterministic for a seed, in simulation time.

Pure: `FaultProcess.due(now_s)` returns the events that started since the last call (each
with its end), in time order; the simulator applies them to its models."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Literal

from contracts.fleet import Fleet

Kind = Literal["inverter_trip", "block_isolation", "hvac_failure", "comms_drop", "derate",
               "maintenance"]
DAY_S = 86_400.0


@dataclass(frozen=True)
class FaultRates:
    """Average occurrences per asset per day, and how long each lasts (min, max seconds)."""

    inverter_trip: tuple[float, float, float] = (0.02, 300, 7_200)  # per inverter
    block_isolation: tuple[float, float, float] = (0.005, 3_600, 86_400)  # per DC block
    hvac_failure: tuple[float, float, float] = (0.003, 7_200, 43_200)  # per unit
    comms_drop: tuple[float, float, float] = (0.02, 60, 1_800)  # per unit
    derate: tuple[float, float, float] = (0.01, 3_600, 21_600)  # per unit
    maintenance_every_days: float = 90.0  # one window per unit, staggered across the fleet
    maintenance_hours: float = 8.0

    def scaled(self, factor: float) -> FaultRates:
        """Everything `factor` times as frequent (demos, tests)."""
        def scale(r: tuple[float, float, float]) -> tuple[float, float, float]:
            return (r[0] * factor, r[1], r[2])

        return FaultRates(scale(self.inverter_trip), scale(self.block_isolation),
                          scale(self.hvac_failure), scale(self.comms_drop),
                          scale(self.derate), self.maintenance_every_days / max(factor, 1e-9),
                          self.maintenance_hours)

    def with_durations(self, factor: float) -> FaultRates:
        """Every fault and maintenance window `factor` times as long. Demos at real time
        use frequent, short faults (`scaled(100).with_durations(0.1)`): more often alone
        would keep a large part of the fleet down at once."""
        if factor <= 0:
            raise ValueError("the duration factor must be positive")

        def stretch(r: tuple[float, float, float]) -> tuple[float, float, float]:
            return (r[0], r[1] * factor, r[2] * factor)

        return FaultRates(stretch(self.inverter_trip), stretch(self.block_isolation),
                          stretch(self.hvac_failure), stretch(self.comms_drop),
                          stretch(self.derate), self.maintenance_every_days,
                          self.maintenance_hours * factor)


@dataclass(frozen=True, order=True)
class FaultEvent:
    start_s: float
    end_s: float
    kind: Kind
    asset_id: str
    severity: float = 1.0  # derate: the share of capacity kept (0.5 = half)


@dataclass
class FaultProcess:
    fleet: Fleet
    start_s: float
    rates: FaultRates = field(default_factory=FaultRates)
    seed: int = 0
    _queue: list[FaultEvent] = field(default_factory=list)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        units = [u for s in self.fleet.sites for u in s.units]
        for i, unit in enumerate(units):
            self._next(unit.id, "hvac_failure", self.start_s)
            self._next(unit.id, "comms_drop", self.start_s)
            self._next(unit.id, "derate", self.start_s)
            for inverter in unit.inverters:
                self._next(inverter.id, "inverter_trip", self.start_s)
                for block in inverter.blocks:
                    self._next(block.id, "block_isolation", self.start_s)
            every = self.rates.maintenance_every_days * DAY_S
            if every > 0:
                first = self.start_s + every * (i + 0.5) / max(1, len(units))
                heapq.heappush(self._queue, FaultEvent(
                    first, first + self.rates.maintenance_hours * 3600, "maintenance",
                    unit.id))

    def _next(self, asset_id: str, kind: Kind, after_s: float) -> None:
        per_day, shortest, longest = getattr(self.rates, kind)
        if per_day <= 0:
            return
        start = after_s + self._rng.expovariate(per_day / DAY_S)
        duration = self._rng.uniform(shortest, longest)
        severity = self._rng.uniform(0.4, 0.8) if kind == "derate" else 1.0
        heapq.heappush(self._queue, FaultEvent(start, start + duration, kind, asset_id,
                                               severity))

    def due(self, now_s: float) -> list[FaultEvent]:
        """The events that started by `now_s` and were not returned yet, oldest first."""
        out = []
        while self._queue and self._queue[0].start_s <= now_s:
            event = heapq.heappop(self._queue)
            out.append(event)
            if event.kind == "maintenance":
                every = self.rates.maintenance_every_days * DAY_S
                heapq.heappush(self._queue, FaultEvent(
                    event.start_s + every, event.end_s + every, "maintenance", event.asset_id))
            else:
                self._next(event.asset_id, event.kind, event.end_s)
        return out
