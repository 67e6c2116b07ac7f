"""The simulated fleet's service desk: which faults get a ticket, when it is opened and
resolved, and the Jira webhook deliveries that tell the API about it.

A fault of a ticketed kind (a trip — random or injected —, a DC block isolation, an HVAC
failure, a comms drop) gets a ticket `delay_s` simulated seconds after it began, as a field
engineer would open one once the alarm is confirmed; a fault that clears before is not
ticketed. The ticket is resolved when its fault clears. Routine derates and planned
maintenance are not ticketed: they are the field team's own schedule, not incidents.

Each change becomes a Jira Cloud issue webhook exactly as connectors/ticketing/jira.py reads
it: `jira:issue_created` in status "To Do" (category `new` → open), then `jira:issue_updated`
in status "Done" (category `done` → resolved) with its resolution date; the asset is named by
a label `asset:<id>`, where Jira's default mapping looks (connectors/ticketing/mapping.py).

Pure: simulation times in, payloads out; `ms` turns a simulation time into the epoch
milliseconds the ticket shows (the simulator maps its accelerated clock back to the wall
clock, so tickets line up with the telemetry the connectors stamp)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from connectors.ticketing.jira import DELIVERY_HEADER, SIGNATURE_HEADER

TICKETED_KINDS = frozenset({"trip", "inverter_trip", "block_isolation", "hvac_failure",
                            "comms_drop"})
DEFAULT_DELAY_S = 300.0
JIRA_BASE_URL = "https://jira.sim.invalid"  # .invalid: never resolves (RFC 2606)

# What each kind reads like on a ticket: summary template, priority, a label.
_WORDING: dict[str, tuple[str, str, str]] = {
    "trip": ("{asset} tripped", "High", "trip"),
    "inverter_trip": ("Inverter {asset} tripped", "High", "pcs"),
    "block_isolation": ("DC block {asset} isolated", "Medium", "dc-block"),
    "hvac_failure": ("HVAC failure on {asset}", "High", "hvac"),
    "comms_drop": ("No communication with {asset}", "Medium", "comms"),
}


@dataclass(frozen=True)
class TicketChange:
    """A ticket opened (`created`) or resolved, at simulation time `at_s`."""

    key: str  # the Jira issue key, e.g. SIM-12
    number: int
    change: Literal["created", "resolved"]
    kind: str
    asset_id: str
    fault_start_s: float
    opened_s: float
    at_s: float

    @property
    def summary(self) -> str:
        return _WORDING.get(self.kind, ("{asset}: fault", "", ""))[0].format(asset=self.asset_id)


@dataclass
class _Watch:
    kind: str
    asset_id: str
    start_s: float
    end_s: float | None
    seq: int
    ticket: tuple[str, int, float] | None = None  # key, number, opened at


class TicketDesk:
    """Faults in (`fault_started`, `fault_ended`), ticket changes out (`due`), in time order.

    Ticket keys are `<project>-<n>` numbered from `first_number` in the order tickets are
    opened; give each run its own project (or numbers) when tickets of several runs meet on
    one topic."""

    def __init__(self, *, delay_s: float = DEFAULT_DELAY_S, project: str = "SIM",
                 first_number: int = 1, kinds: Iterable[str] = TICKETED_KINDS) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        self.delay_s = delay_s
        self.project = project
        self.kinds = frozenset(kinds)
        self._next_number = first_number
        self._seq = 0
        self._watches: dict[Hashable, _Watch] = {}

    def fault_started(self, fault_id: Hashable, kind: str, asset_id: str, start_s: float,
                      end_s: float | None = None) -> bool:
        """A fault began (its end, when already known, may be given); False when its kind
        is not ticketed."""
        if kind not in self.kinds:
            return False
        if fault_id in self._watches:
            raise ValueError(f"fault {fault_id!r} started twice")
        self._seq += 1
        self._watches[fault_id] = _Watch(kind, asset_id, start_s, end_s, self._seq)
        return True

    def fault_ended(self, fault_id: Hashable, end_s: float) -> None:
        """A fault cleared at `end_s` (earlier or later than first said); unknown ids (kinds
        not ticketed) are ignored."""
        watch = self._watches.get(fault_id)
        if watch is not None:
            watch.end_s = max(watch.start_s, end_s)

    @property
    def open_tickets(self) -> dict[str, str]:
        """Key → asset id of the tickets opened and not resolved yet."""
        return {w.ticket[0]: w.asset_id for w in self._watches.values() if w.ticket}

    def due(self, now_s: float) -> list[TicketChange]:
        """The changes that happened by `now_s` and were not returned yet, oldest first."""
        opening = sorted(
            (w for w in self._watches.values() if w.ticket is None
             and w.start_s + self.delay_s <= now_s
             and (w.end_s is None or w.end_s > w.start_s + self.delay_s)),
            key=lambda w: (w.start_s + self.delay_s, w.seq))
        changes: list[TicketChange] = []
        for w in opening:
            opened = w.start_s + self.delay_s
            w.ticket = (f"{self.project}-{self._next_number}", self._next_number, opened)
            self._next_number += 1
            changes.append(self._change(w, "created", opened))
        for fault_id, w in list(self._watches.items()):
            if w.end_s is None or w.end_s > now_s:
                if w.ticket is None and w.end_s is not None \
                        and w.end_s <= w.start_s + self.delay_s:
                    del self._watches[fault_id]  # will clear before its ticket: none
                continue
            if w.ticket is not None:
                changes.append(self._change(w, "resolved", w.end_s))
            del self._watches[fault_id]
        changes.sort(key=lambda c: (c.at_s, c.change == "resolved", c.number))
        return changes

    @staticmethod
    def _change(w: _Watch, change: Literal["created", "resolved"],
                at_s: float) -> TicketChange:
        assert w.ticket is not None
        key, number, opened = w.ticket
        return TicketChange(key, number, change, w.kind, w.asset_id, w.start_s, opened, at_s)


# -- Jira webhook deliveries --------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """One webhook request: its body (the bytes signed) and delivery id (the same on every
    retry, so the API answers a redelivery `duplicate`)."""

    body: bytes
    delivery_id: str
    ticket_key: str
    change: str

    def headers(self, secret: bytes) -> dict[str, str]:
        """Signed as Jira signs: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>`."""
        digest = hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={digest}",
                DELIVERY_HEADER: self.delivery_id}


def jira_time(epoch_ms: int) -> str:
    """Jira's time format: `2026-03-14T08:12:33.123+0000`."""
    when = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}+0000"


def jira_payload(change: TicketChange, ms: Callable[[float], int], *,
                 base_url: str = JIRA_BASE_URL) -> dict[str, Any]:
    """The issue webhook of a ticket change (see the module docstring)."""
    _, priority, label = _WORDING.get(change.kind, ("", "Medium", "fault"))
    project = change.key.rsplit("-", 1)[0]
    issue_id = str(10_000 + change.number)
    created, at = jira_time(ms(change.opened_s)), jira_time(ms(change.at_s))
    resolved = change.change == "resolved"
    status = ({"name": "Done", "id": "10002",
               "statusCategory": {"id": 3, "key": "done", "name": "Done"}} if resolved else
              {"name": "To Do", "id": "10000",
               "statusCategory": {"id": 2, "key": "new", "name": "To Do"}})
    began = jira_time(ms(change.fault_start_s))
    fields: dict[str, Any] = {
        "issuetype": {"id": "10004", "name": "Incident", "subtask": False},
        "project": {"key": project, "name": "Simulated fleet field service"},
        "created": created,
        "updated": at,
        "resolution": {"id": "10000", "name": "Done"} if resolved else None,
        "resolutiondate": at if resolved else None,
        "priority": {"name": priority},
        "labels": [f"asset:{change.asset_id}", label, "bessmon-sim"],
        "status": status,
        "summary": change.summary,
        "description": f"{change.summary} at {began} (simulated {change.kind}).",
    }
    payload: dict[str, Any] = {
        "timestamp": ms(change.at_s),
        "webhookEvent": "jira:issue_updated" if resolved else "jira:issue_created",
        "issue_event_type_name": "issue_generic" if resolved else "issue_created",
        "user": {"accountId": "bessmon-sim", "displayName": "bessmon simulator"},
        "issue": {"id": issue_id, "self": f"{base_url}/rest/api/2/issue/{issue_id}",
                  "key": change.key, "fields": fields},
    }
    if resolved:
        payload["changelog"] = {"items": [
            {"field": "status", "fieldtype": "jira", "fromString": "To Do", "to": "10002",
             "toString": "Done"}]}
    return payload


def jira_delivery(change: TicketChange, ms: Callable[[float], int], *,
                  base_url: str = JIRA_BASE_URL) -> Delivery:
    body = json.dumps(jira_payload(change, ms, base_url=base_url),
                      separators=(",", ":")).encode()
    return Delivery(body, f"bessmon-sim:{change.key}:{change.change}", change.key,
                    change.change)
