"""Alarm states as users of alarm systems know them (after ISA-18.2, reduced to what a NOC
needs): a breach raised by the flows is an alarm that is **active and unacknowledged**; an
operator **acknowledges** it (active-acknowledged) or **shelves** it for a while with a reason
(it stays active but out of the way until the shelf expires, then is what it was before);
when its condition clears, the alarm is **cleared** — acknowledged or not — and leaves the
active list (the history keeps it).

The condition (raised / cleared) belongs to the flows (`BreachEvent`); what operators did to
an alarm belongs to the API (`AlarmHandling`, one per breach id). They are stored apart so
that neither writer can undo the other (a replayed epoch re-raising a breach keeps its
acknowledgement). Pure: the state is worked out from both, at a given time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import BreachEvent, EpochMs

AlarmState = Literal["active_unacknowledged", "active_acknowledged", "shelved", "cleared"]
Action = Literal["acknowledge", "shelve", "unshelve"]
MAX_SHELVE_MS = 7 * 24 * 3_600_000  # a shelf longer than a week hides a real problem


class AlarmHandling(BaseModel):
    """What operators did to one alarm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    breach_id: str
    acknowledged_by: str | None = None
    acknowledged_ms: EpochMs | None = None
    comment: str | None = Field(None, max_length=500)
    shelved_by: str | None = None
    shelved_until_ms: EpochMs | None = None
    shelve_reason: str | None = Field(None, max_length=500)


class AlarmRefused(ValueError):
    """An action that does not apply to the alarm in its state."""


def alarm_state(breach: BreachEvent, handling: AlarmHandling | None,
                now_ms: int) -> AlarmState:
    if breach.state == "cleared":
        return "cleared"
    if handling is None:
        return "active_unacknowledged"
    if handling.shelved_until_ms is not None and handling.shelved_until_ms > now_ms:
        return "shelved"
    return "active_acknowledged" if handling.acknowledged_ms is not None \
        else "active_unacknowledged"


def handle(breach: BreachEvent, handling: AlarmHandling | None, action: Action, *, by: str,
           now_ms: int, comment: str | None = None,
           shelve_until_ms: int | None = None) -> AlarmHandling:
    """The handling after an operator's action. AlarmRefused when it does not apply: a
    cleared alarm takes no action; an alarm is acknowledged once (the first operator and time
    stand); shelving needs a reason and an end within `MAX_SHELVE_MS`; only a shelved alarm
    can be unshelved."""
    state = alarm_state(breach, handling, now_ms)
    if state == "cleared":
        raise AlarmRefused(f"alarm {breach.breach_id} is cleared")
    current = handling or AlarmHandling(breach_id=breach.breach_id)
    if action == "acknowledge":
        if current.acknowledged_ms is not None:
            raise AlarmRefused(f"alarm {breach.breach_id} was acknowledged by "
                               f"{current.acknowledged_by}")
        return current.model_copy(update={"acknowledged_by": by, "acknowledged_ms": now_ms,
                                          "comment": comment})
    if action == "shelve":
        if not comment or not comment.strip():
            raise AlarmRefused("shelving an alarm needs a reason")
        if shelve_until_ms is None or not now_ms < shelve_until_ms <= now_ms + MAX_SHELVE_MS:
            raise AlarmRefused("a shelf ends after now and within 7 days")
        return current.model_copy(update={"shelved_by": by, "shelved_until_ms": shelve_until_ms,
                                          "shelve_reason": comment})
    if state != "shelved":
        raise AlarmRefused(f"alarm {breach.breach_id} is not shelved")
    return current.model_copy(update={"shelved_by": None, "shelved_until_ms": None,
                                      "shelve_reason": None})
