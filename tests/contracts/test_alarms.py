"""Alarm states: raised → active-unacknowledged → acknowledged → cleared, shelving with a
reason and an end, and every action refused where it does not apply."""

from __future__ import annotations

import pytest

from contracts.alarms import MAX_SHELVE_MS, AlarmHandling, AlarmRefused, alarm_state, handle
from contracts.events import BreachEvent

NOW = 1_800_000_000_000


def breach(state: str = "raised") -> BreachEvent:
    return BreachEvent(breach_id="cell-temp-high:major:b1:1", rule_id="cell-temp-high",
                       kind="limit", asset_id="b1", site_id="s1", tag="cell_temp_max_c",
                       severity="major", state=state, raised_ms=NOW - 60_000,  # type: ignore[arg-type]
                       ts_ms=NOW, value=46.0, threshold=45.0, message="hot")


def test_an_alarm_goes_unacknowledged_acknowledged_cleared() -> None:
    raised = breach()
    assert alarm_state(raised, None, NOW) == "active_unacknowledged"
    acked = handle(raised, None, "acknowledge", by="ana", now_ms=NOW, comment="on it")
    assert (acked.acknowledged_by, acked.acknowledged_ms, acked.comment) == ("ana", NOW, "on it")
    assert alarm_state(raised, acked, NOW + 1) == "active_acknowledged"
    assert alarm_state(breach("cleared"), acked, NOW + 2) == "cleared"
    assert alarm_state(breach("cleared"), None, NOW + 2) == "cleared"


def test_a_shelf_hides_an_alarm_until_it_ends_then_it_is_what_it_was() -> None:
    raised = breach()
    shelved = handle(raised, None, "shelve", by="bo", now_ms=NOW, comment="sensor swap",
                     shelve_until_ms=NOW + 3_600_000)
    assert alarm_state(raised, shelved, NOW + 3_599_999) == "shelved"
    assert alarm_state(raised, shelved, NOW + 3_600_000) == "active_unacknowledged"
    acked = handle(raised, shelved, "acknowledge", by="ana", now_ms=NOW + 10)
    assert alarm_state(raised, acked, NOW + 20) == "shelved"
    back = handle(raised, acked, "unshelve", by="ana", now_ms=NOW + 30)
    assert back.shelved_until_ms is None and back.acknowledged_by == "ana"
    assert alarm_state(raised, back, NOW + 40) == "active_acknowledged"


ACKED = AlarmHandling(breach_id="x", acknowledged_by="ana", acknowledged_ms=NOW - 5)


@pytest.mark.parametrize(("state", "handling", "action", "kwargs", "message"), [
    ("cleared", None, "acknowledge", {}, "alarm cell-temp-high:major:b1:1 is cleared"),
    ("cleared", None, "shelve", {"comment": "x", "shelve_until_ms": NOW + 1},
     "alarm cell-temp-high:major:b1:1 is cleared"),
    ("raised", ACKED, "acknowledge", {}, "alarm cell-temp-high:major:b1:1 was acknowledged by ana"),
    ("raised", None, "shelve", {"shelve_until_ms": NOW + 1}, "shelving an alarm needs a reason"),
    ("raised", None, "shelve", {"comment": "  ", "shelve_until_ms": NOW + 1},
     "shelving an alarm needs a reason"),
    ("raised", None, "shelve", {"comment": "x"}, "a shelf ends after now and within 7 days"),
    ("raised", None, "shelve", {"comment": "x", "shelve_until_ms": NOW},
     "a shelf ends after now and within 7 days"),
    ("raised", None, "shelve", {"comment": "x", "shelve_until_ms": NOW + MAX_SHELVE_MS + 1},
     "a shelf ends after now and within 7 days"),
    ("raised", ACKED, "unshelve", {}, "alarm cell-temp-high:major:b1:1 is not shelved"),
])
def test_actions_that_do_not_apply_are_refused(state: str, handling: AlarmHandling | None,
                                               action: str, kwargs: dict[str, object],
                                               message: str) -> None:
    with pytest.raises(AlarmRefused) as refused:
        handle(breach(state), handling, action, by="ana", now_ms=NOW, **kwargs)  # type: ignore[arg-type]
    assert str(refused.value) == message


def test_a_week_long_shelf_is_the_longest_taken() -> None:
    shelf = handle(breach(), None, "shelve", by="bo", now_ms=NOW, comment="x",
                   shelve_until_ms=NOW + MAX_SHELVE_MS)
    assert shelf.shelved_until_ms == NOW + MAX_SHELVE_MS
