"""What the device connectors (Modbus, OPC UA) refuse, and where it goes.

A decoded value that cannot be true — not finite, not a number where one is due, outside the
range its point or node declares, text that is no text, stamped at an impossible time — is
left out of its sample (the rest of the sample is still published), and so is an answer the
connector cannot decode at all (a Modbus answer with fewer registers than asked, bytes that
are no answer to the request). Each is reported on the dead-letter topic (`bess.dlq`,
`settings.topic_dlq`) as a `DeadLetter` whose `key` is the device id, with a precise detail
(the message key is its source, `connectors.modbus` or `connectors.opcua`), counted per
device and reason, and logged: the first of each device and reason at once, then a summary
per device at most once a minute. One dead letter per sample and reason lists every value it
refused, so a device answering garbage costs one dead letter a poll, not one per register.

Reasons: `impossible_value` (a value), `impossible_timestamp` (a time outside the bounds of
`contracts.events.DeviceMs`), `undecodable` (a whole answer)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from contracts.events import MAX_MS, MIN_DEVICE_MS, DeadLetter, dead_letter

log = logging.getLogger(__name__)

IMPOSSIBLE_VALUE = "impossible_value"
IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"
UNDECODABLE = "undecodable"
LOG_EVERY_S = 60.0
# What no device's text holds: C0/C1 control characters, and U+FFFD, which stands for bytes
# that were not UTF-8 (the Modbus codec decodes with errors="replace").
NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ufffd]")


@dataclass(frozen=True, slots=True)
class Refused:
    """Why one decoded value cannot be published: the dead letter's reason, and the problem
    in words (`nan is not finite`, `150.0 is outside [0.0, 100.0]`)."""

    reason: str
    problem: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused value (or answer) in its context: `detail` names the device's asset, tag
    and raw form; `record` is the same as JSON data for the dead letter's payload."""

    reason: str
    detail: str
    record: dict[str, object]
    ts_ms: int


def device_time_problem(ts_ms: int) -> str | None:
    """Why `ts_ms` cannot be a time a device reports (the bounds of `DeviceMs`), or None."""
    if MIN_DEVICE_MS <= ts_ms <= MAX_MS:
        return None
    return f"timestamp {ts_ms} ms is outside 2000-01-01..2100-01-01"


@dataclass
class Refusals:
    """Counts, logs and publishes the refusals of one connector process."""

    source: str  # connectors.modbus | connectors.opcua
    publish: Callable[[DeadLetter], None] | None = None
    monotonic: Callable[[], float] = time.monotonic
    log_every_s: float = LOG_EVERY_S
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # device → reason → values
    dead_letters: int = 0
    _logged_at: dict[str, float] = field(default_factory=dict)

    def report(self, device_id: str, rejections: Sequence[Rejection]) -> list[DeadLetter]:
        """One dead letter per reason for the rejections of one sample (or answer)."""
        by_reason: dict[str, list[Rejection]] = {}
        for r in rejections:
            by_reason.setdefault(r.reason, []).append(r)
        out = []
        for reason, group in by_reason.items():
            counts = self.counts.setdefault(device_id, Counter())
            first = reason not in counts
            counts[reason] += len(group)
            detail = f"{device_id}: " + "; ".join(r.detail for r in group)
            payload = json.dumps({"device": device_id,
                                  "refused": [r.record for r in group]},
                                 ensure_ascii=False, default=repr, allow_nan=True)
            dead = dead_letter(source=self.source, reason=reason, detail=detail,
                               ts_ms=max(r.ts_ms for r in group), payload=payload,
                               key=device_id)
            self.dead_letters += 1
            self._log(device_id, reason, detail, first)
            if self.publish is not None:
                self.publish(dead)
            out.append(dead)
        return out

    def of(self, device_id: str) -> Counter[str]:
        """What was refused from one device, by reason."""
        return self.counts.get(device_id, Counter())

    def _log(self, device_id: str, reason: str, detail: str, first: bool) -> None:
        now = self.monotonic()
        if first:
            log.warning("refused (%s, to the dead-letter topic) %s", reason, detail[:500])
            self._logged_at.setdefault(device_id, now)
            return
        if now - self._logged_at.get(device_id, now - self.log_every_s) < self.log_every_s:
            return
        self._logged_at[device_id] = now
        counts = ", ".join(f"{r} {n}" for r, n in sorted(self.counts[device_id].items()))
        log.warning("device %s: refused so far: %s; the last: %s", device_id, counts,
                    detail[:500])
