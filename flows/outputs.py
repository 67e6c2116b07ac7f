"""What the site step of the telemetry flow puts out — one union that the sinks sort by type
(flows/redis_sink.py, flows/history_sink.py, flows/kafka_sink.py via `to_kafka`), kept apart
from the state that makes it so that a sink needs nothing of the state."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.history.rows import AvailabilityRow, StatusIntervalRow, TelemetryRow
from contracts.events import (
    Alert,
    BreachEvent,
    DeadLetter,
    DeadLetterTally,
    PeriodAvailability,
    SiteAvailability,
    StatusChange,
    TicketEvent,
    UnavailabilityEpisode,
)
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


@dataclass(frozen=True, slots=True)
class SiteTicket:
    """The newest version of a ticket on one of the site's assets, for the hot state."""

    site_id: str
    ticket: TicketEvent


Output = (StatusChange | StatusIntervalRow | SiteAvailability | DeadLetter | LatestValues
          | BreachEvent | Alert | UnavailabilityEpisode | PeriodAvailability | AvailabilityRow
          | TelemetryRow | SiteTicket | DeadLetterTally)
