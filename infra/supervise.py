"""When `bessmon up` starts a part of the stack again after it died: the restart policy, pure
(no processes, no clock of its own) so it can be tested on its own; `infra/up.py` applies it.

A part that dies is started again after a delay that doubles with every death in a row —
1 s, 2 s, 4 s … up to 60 s — so a part that cannot start (a broken config, a port taken)
does not spin, and one that died once comes back at once. A part that ran for 60 s before
dying starts the count again from 1 s. Only a stop asked for (Ctrl-C, SIGTERM) ends the
stack; a part never gives up being restarted, and says so in the log every time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0  # a part that ran this long before it died starts from first_s

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or self.stable_s <= 0:
            raise ValueError(f"a backoff needs 0 < first_s <= max_s and stable_s > 0: {self}")


@dataclass
class Supervised:
    """What the supervisor knows of one part: when it last started, how often it died in a
    row (quick deaths) and in all, and when it is due to start again (None: running)."""

    started_s: float
    restarts: int = 0
    in_a_row: int = 0
    due_s: float | None = None
    last_status: int | None = None

    def died(self, now_s: float, status: int, backoff: Backoff) -> float:
        """Record a death at `now_s` with exit `status`; returns the delay before the restart
        (and sets `due_s`)."""
        ran_s = now_s - self.started_s
        self.in_a_row = 1 if ran_s >= backoff.stable_s else self.in_a_row + 1
        delay = min(backoff.max_s, backoff.first_s * 2.0 ** (self.in_a_row - 1))
        self.due_s, self.last_status = now_s + delay, status
        return delay

    def restarted(self, now_s: float) -> None:
        self.started_s, self.due_s = now_s, None
        self.restarts += 1

    def is_due(self, now_s: float) -> bool:
        return self.due_s is not None and now_s >= self.due_s
