"""One battery unit's status in event time (issue 4, item 2): samples of the unit and its
inverters and blocks may arrive in any order within the allowed lateness; as the site's
watermark passes, the statuses become final — each asset's status intervals, with
`unknown`/`comms_loss` where the unit fell silent for `stale_after` — and are handed on as
status changes (bess.status, history, episodes) and as interval pieces (the contract
accumulators). Pure: no clock, no I/O; picklable for recovery."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from contracts.status import COMMS_LOSS, UNKNOWN, Status


@dataclass(frozen=True, slots=True)
class Change:
    """An asset's final status from `ts_ms` on; the previous one held since
    `previous_since_ms`."""

    asset_id: str
    ts_ms: int
    status: Status
    previous: Status | None
    previous_since_ms: int | None


@dataclass(frozen=True, slots=True)
class Piece:
    """An asset's final status over `[start_ms, end_ms)`."""

    asset_id: str
    start_ms: int
    end_ms: int
    status: Status


@dataclass
class UnitTimeline:
    unit_id: str
    asset_ids: tuple[str, ...]  # the unit first, then its inverters and blocks
    stale_after_ms: int
    pending: list[tuple[int, dict[str, Status]]] = field(default_factory=list)  # by ts
    final_ms: int | None = None  # statuses are final before this instant
    last_sample_ms: int | None = None  # the newest finalized sample
    current: dict[str, tuple[int, Status]] = field(default_factory=dict)  # open intervals

    def add(self, ts_ms: int, statuses: dict[str, Status]) -> str | None:
        """Take a sample's statuses; returns None, or why it was refused: "late" (its time is
        final already) or "duplicate" (a sample with this timestamp was taken)."""
        if ts_ms == self.last_sample_ms:
            return "duplicate"
        if self.final_ms is not None and ts_ms < self.final_ms:
            return "late"
        i = bisect.bisect_left(self.pending, ts_ms, key=lambda p: p[0])
        if i < len(self.pending) and self.pending[i][0] == ts_ms:
            return "duplicate"
        self.pending.insert(i, (ts_ms, statuses))
        return None

    def finalize(self, to_ms: int) -> tuple[list[Change], list[Piece]]:
        """Make everything before `to_ms` final: the changes, and the pieces that cover
        exactly `[previous to_ms, to_ms)` for every asset that has a status there."""
        changes: list[Change] = []
        pieces: list[Piece] = []
        since = self.final_ms
        if since is not None and to_ms <= since:
            return changes, pieces
        take = 0
        while take < len(self.pending) and self.pending[take][0] < to_ms:
            ts_ms, statuses = self.pending[take]
            take += 1
            self._silence(ts_ms, changes, pieces, since)
            for asset_id in self.asset_ids:
                self._set(asset_id, ts_ms, statuses.get(asset_id, UNKNOWN), changes, pieces,
                          since)
            self.last_sample_ms = ts_ms
        del self.pending[:take]
        self._silence(to_ms, changes, pieces, since)
        for asset_id, (start, status) in self.current.items():
            lo = start if since is None else max(start, since)
            if lo < to_ms:
                pieces.append(Piece(asset_id, lo, to_ms, status))
        self.final_ms = to_ms
        return changes, pieces

    def _silence(self, until_ms: int, changes: list[Change], pieces: list[Piece],
                 since: int | None) -> None:
        """No sample from the unit for `stale_after` before `until_ms`: communication lost
        from the last sample + `stale_after` on."""
        last = self.last_sample_ms
        if last is None or until_ms - last <= self.stale_after_ms:
            return
        for asset_id in self.asset_ids:
            self._set(asset_id, last + self.stale_after_ms, COMMS_LOSS, changes, pieces, since)

    def _set(self, asset_id: str, ts_ms: int, status: Status, changes: list[Change],
             pieces: list[Piece], since: int | None) -> None:
        now = self.current.get(asset_id)
        if now is not None and now[1] == status:
            return
        if now is not None:
            lo = now[0] if since is None else max(now[0], since)
            if lo < ts_ms:
                pieces.append(Piece(asset_id, lo, ts_ms, now[1]))
        changes.append(Change(asset_id, ts_ms, status, now[1] if now else None,
                              now[0] if now else None))
        self.current[asset_id] = (ts_ms, status)
