"""What the site step of the telemetry flow puts out — one union that the sinks sort by type
(flows/redis_sink.py, flows/history_sink.py, flows/kafka_sink.py via `to_kafka`), kept apart
from the state that makes it so that a sink needs nothing of the state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors.history.rows import (
    AvailabilityRow,
    StatusIntervalRow,
    TelemetryMinute,
    TelemetryRow,
)
from contracts.events import (
    Alert,
    BreachEvent,
    DeadLetter,
    DeadLetterTally,
    DeviceHealth,
    DeviceStats,
    PeriodAvailability,
    SiteAvailability,
    StatusChange,
    TicketEvent,
    UnavailabilityEpisode,
)
from contracts.repair import RepairPriority
from contracts.status import Status


@dataclass(frozen=True, slots=True)
class LatestValues:
    """A unit's newest tag values and every asset's live status and availability (last hour,
    today), for the hot state."""

    site_id: str
    unit_id: str
    ts_ms: int
    readings: tuple[tuple[str, dict[str, float]], ...]
    assets: tuple[tuple[str, Status, float | None, float | None], ...] = ()


Aggregates = dict[tuple[str, str], list[float]]  # (asset, tag) → [n, min, max, Σ, last]


def block_of(aggregates: Aggregates) -> tuple[tuple[tuple[str, str], ...], np.ndarray]:
    """Aggregates as a `TelemetryMinute`'s series and values (the mean Σ / n)."""
    values = np.array(list(aggregates.values()), dtype=np.float64).reshape(-1, 5)
    values[:, 3] /= values[:, 0]
    return tuple(aggregates), values


@dataclass(frozen=True, slots=True, eq=False)
class UnitMinute(TelemetryMinute):
    """A unit's closed minute for the history: count, min, max, mean and last of every tag
    of its assets, as arrays. One item per unit-minute rather than a row per tag: at
    1-minute polls (replays) every poll closes one, and the history packs a unit's minutes
    an hour per tag (connectors/history/minute_blobs.py)."""

    def __setstate__(self, state: list[object]) -> None:
        # A recovery snapshot from before unit-minutes were arrays: site, start and
        # (asset, tag) → [n, min, max, Σ, last].
        if len(state) == 3 and isinstance(state[2], dict):
            state = [state[0], state[1], *block_of(state[2])]
        for name, value in zip(("site_id", "start_ms", "series", "values"), state, strict=True):
            object.__setattr__(self, name, value)


@dataclass(frozen=True, slots=True)
class SiteTicket:
    """The newest version of a ticket on one of the site's assets, for the hot state."""

    site_id: str
    ticket: TicketEvent


@dataclass(frozen=True, slots=True)
class RepairList:
    """A site's open unavailability episodes ranked by what one more hour of each costs
    under its contract (contracts/repair.py), whole, at each KPI step (empty when none is
    open): the hot state's `repair_key(site)`."""

    site_id: str
    as_of_ms: int | None  # the site's final time the episodes were priced at
    items: tuple[RepairPriority, ...]

    def to_json(self) -> dict[str, object]:
        return {"site_id": self.site_id, "as_of_ms": self.as_of_ms,
                "items": [item.to_json() for item in self.items]}


Output = (StatusChange | StatusIntervalRow | SiteAvailability | DeadLetter | LatestValues
          | BreachEvent | Alert | UnavailabilityEpisode | PeriodAvailability | AvailabilityRow
          | TelemetryRow | UnitMinute | SiteTicket | DeadLetterTally | RepairList
          | DeviceHealth | DeviceStats)  # the last two: the device-health input's
