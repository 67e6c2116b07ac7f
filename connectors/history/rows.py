"""What the history store keeps besides the events of `contracts.events`: flat, frozen rows with
integer millisecond timestamps (UTC), one class per table.

Each row has a dedup key (in its docstring); a later write with the same key replaces the
earlier one, which is what makes replaying an epoch after a flow's crash recovery harmless and
lets an open interval's end be filled in once it is known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import orjson

from contracts.comms import PollTotals
from contracts.events import Cause, State

# "hour" and "day" are the flows' own buckets; the others are contract measurement periods
# (`contracts.periods.PeriodKind`), each row then holding one whole period.
Bucket = Literal["hour", "day", "month", "quarter", "contract_year"]
BUCKETS: frozenset[str] = frozenset(get_args(Bucket))


@dataclass(frozen=True, slots=True)
class StatusIntervalRow:
    """An asset's status over `[start_ms, end_ms)`; `end_ms` is None while it lasts.
    Key: (asset_id, start_ms)."""

    asset_id: str
    site_id: str
    start_ms: int
    end_ms: int | None
    state: State
    derate_fraction: float | None = None
    cause: Cause | None = None


@dataclass(frozen=True, slots=True)
class AvailabilityRow:
    """An asset's availability over one bucket `[start_ms, end_ms)`, in hours: the window,
    the hours excluded from it (excusable causes), the capacity-weighted hours lost, and the
    percentage (None when nothing of the window counts). Key: (asset_id, bucket, start_ms)."""

    asset_id: str
    site_id: str
    bucket: Bucket
    start_ms: int
    end_ms: int
    window_h: float
    excluded_h: float
    lost_h: float
    availability_pct: float | None

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise ValueError(f"bucket {self.bucket!r} is not one of {sorted(BUCKETS)}")


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """One numeric tag of one asset summarized over a bucket starting at `start_ms`: how many
    samples, their min, max and mean, and the last one. Key: (asset_id, tag, start_ms)."""

    asset_id: str
    site_id: str
    tag: str
    start_ms: int
    count: int
    min: float
    max: float
    mean: float
    last: float


@dataclass(frozen=True, slots=True, eq=False)
class TelemetryMinute:
    """One minute of many (asset, tag) series at once — a unit's closed minute, as the flow
    makes it: `values[i]` is series i's count, min, max, mean and last (float64, `(len(series),
    5)`). The same figures as `rows()`, without an object per tag: at 1-minute polls every
    poll closes one. Key of each row: (asset_id, tag, start_ms)."""

    site_id: str
    start_ms: int
    series: tuple[tuple[str, str], ...]  # (asset_id, tag)
    values: np.ndarray

    def rows(self) -> list[TelemetryRow]:
        site, start = self.site_id, self.start_ms
        return [TelemetryRow(asset_id, site, tag, start, int(n), low, high, mean, last)
                for (asset_id, tag), (n, low, high, mean, last)
                in zip(self.series, self.values.tolist(), strict=True)]

    def model_dump_json(self) -> str:
        """Its rows as JSON (a dead letter's text, when the store refuses it)."""
        return orjson.dumps({"site_id": self.site_id, "start_ms": self.start_ms,
                             "rows": [[a, t, *v] for (a, t), v
                                      in zip(self.series, self.values.tolist(), strict=True)]}
                            ).decode()

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, TelemetryMinute) and self.site_id == other.site_id
                and self.start_ms == other.start_ms and self.series == other.series
                and np.array_equal(self.values, other.values, equal_nan=True))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class DeviceStatsTotal:
    """One device's stats windows starting in a range, added up (`PollTotals`), with what
    its newest window says: site, connector, gateway, and when it ended."""

    device_id: str
    site_id: str
    connector: str
    gateway: str
    newest_start_ms: int
    newest_end_ms: int
    totals: PollTotals
