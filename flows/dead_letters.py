"""Dead letters counted by source and reason, so that an operator can act on the device that
sends bad records (the data-quality view reads the tallies from Redis).

A plain, picklable class kept by each site's step (and by the step of records that name no
site). A new (device, reason) pair is reported at once; a known pair's count at most once a
second of the receiving clock (every time when there is none, in replays), so a flood of
garbage costs one hot-state write a second, not one per record."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import DeadLetter, DeadLetterTally

MAX_PAIRS = 1_000  # (device, reason) pairs kept per site; later devices count as OTHER
OTHER = "(other devices)"
FLUSH_EVERY_MS = 1_000


@dataclass(slots=True)
class _Count:
    count: int
    first_ms: int
    last_ms: int
    last_detail: str


class DeadLetterCounts:
    def __init__(self, site_id: str | None) -> None:
        self.site_id = site_id
        self.counts: dict[tuple[str, str], _Count] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.flushed_ms: int | None = None

    def observe(self, dead: DeadLetter, now_ms: int | None) -> list[DeadLetterTally]:
        """Count one dead letter; the tallies due for the hot state."""
        device = (dead.key or "")[:200]
        pair = (device, dead.reason)
        known = self.counts.get(pair)
        if known is None and len(self.counts) >= MAX_PAIRS:
            pair = (OTHER, dead.reason)
            known = self.counts.get(pair)
        if known is None:
            self.counts[pair] = _Count(1, dead.ts_ms, dead.ts_ms, dead.detail[:500])
            self.dirty.add(pair)
            return self.flush(now_ms, force=True)
        known.count += 1
        known.first_ms = min(known.first_ms, dead.ts_ms)
        known.last_ms = max(known.last_ms, dead.ts_ms)
        known.last_detail = dead.detail[:500]
        self.dirty.add(pair)
        return self.flush(now_ms)

    def flush(self, now_ms: int | None, *, force: bool = False) -> list[DeadLetterTally]:
        """The changed tallies, when they are due (or `force`)."""
        if not self.dirty:
            return []
        if not force and now_ms is not None and self.flushed_ms is not None \
                and now_ms - self.flushed_ms < FLUSH_EVERY_MS:
            return []
        self.flushed_ms = now_ms
        out = [self.tally(pair) for pair in sorted(self.dirty)]
        self.dirty.clear()
        return out

    def tally(self, pair: tuple[str, str]) -> DeadLetterTally:
        c = self.counts[pair]
        return DeadLetterTally(site_id=self.site_id, device=pair[0], reason=pair[1],
                               count=c.count, first_ms=c.first_ms, last_ms=c.last_ms,
                               last_detail=c.last_detail)
