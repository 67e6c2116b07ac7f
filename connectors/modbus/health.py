"""Per-device health from the outcome of its polls — pure, no I/O, no clock of its own.

- `offline`: the last `offline_after` polls failed, or the connection to its gateway is down
  (refused, lost, waiting to reconnect): nothing comes from the device.
- `degraded`: not offline, but among the last `window` polls some failed, took longer than
  the latency budget or answered values that cannot be true (left out of their samples):
  data comes, with holes or late.
- `online`: the last `window` polls all answered within the budget.

A device coming back therefore goes offline → degraded → online: it is trusted again only
after `window` clean polls. Every change is one `DeviceHealth` event. The figures of its
polls over time (latency, drops, retries) are counted apart, by `contracts.comms.PollWindow`."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Literal

from contracts.events import DeviceHealth

HealthState = Literal["online", "degraded", "offline"]


class HealthTracker:
    def __init__(self, device_id: str, *, window: int = 10, offline_after: int = 3,
                 latency_budget_s: float = 1.0, connector: str = "modbus",
                 site_id: str | None = None, gateway: str | None = None) -> None:
        if window < 1 or offline_after < 1:
            raise ValueError("window and offline_after must be at least 1")
        self.device_id = device_id
        self.connector = connector
        self.site_id, self.gateway = site_id, gateway  # told in its events
        self.latency_budget_s = latency_budget_s
        self.offline_after = offline_after
        self.state: HealthState | None = None
        self.consecutive_failures = 0
        self._recent: deque[bool] = deque(maxlen=window)  # True: answered within budget

    def success(self, ts_ms: int, latency_s: float,
                refused: Sequence[str] = ()) -> DeviceHealth | None:
        """A poll answered after `latency_s`, with the values `refused` as impossible (their
        details); the event if the state changed."""
        self.consecutive_failures = 0
        slow = latency_s > self.latency_budget_s
        self._recent.append(not slow and not refused)
        if refused:
            reason = (f"{len(refused)} impossible value{'s' if len(refused) > 1 else ''} "
                      f"refused: " + "; ".join(refused[:3]) + ("; …" if len(refused) > 3 else ""))
        elif slow:
            reason = f"poll took {latency_s:.3f} s (budget {self.latency_budget_s:g} s)"
        else:
            reason = "answering"
        return self._settle(ts_ms, reason, connection_down=False)

    def failure(self, ts_ms: int, reason: str, *, connection_down: bool) -> DeviceHealth | None:
        """A poll failed (after its retries); the event if the state changed."""
        self.consecutive_failures += 1
        self._recent.append(False)
        return self._settle(ts_ms, reason, connection_down=connection_down)

    def _settle(self, ts_ms: int, reason: str, *, connection_down: bool) -> DeviceHealth | None:
        state: HealthState
        if connection_down or self.consecutive_failures >= self.offline_after:
            state = "offline"
        elif not all(self._recent):
            state = "degraded"
            if reason == "answering":
                bad = self._recent.count(False)
                reason = (f"{bad} of the last {len(self._recent)} polls failed, were slow or "
                          "answered impossible values")
        else:
            state = "online"
        if state == self.state:
            return None
        previous, self.state = self.state, state
        return DeviceHealth(device_id=self.device_id, connector=self.connector, state=state,
                            previous=previous, ts_ms=ts_ms, reason=reason[:500],
                            consecutive_failures=self.consecutive_failures,
                            site_id=self.site_id, gateway=self.gateway)
