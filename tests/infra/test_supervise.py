"""The restart policy of `bessmon up` (infra/supervise.py): doubling delays for a part that
keeps dying, a fresh start for one that had run a while, never giving up."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infra.supervise import Backoff, Supervised

B = Backoff(first_s=1.0, max_s=60.0, stable_s=60.0)


def test_quick_deaths_double_the_delay_up_to_the_cap() -> None:
    life, now, delays = Supervised(started_s=0.0), 0.0, []
    for _ in range(9):
        now += 0.5  # dies half a second after each start
        delays.append(life.died(now, 1, B))
        assert not life.is_due(now) and life.is_due(now + delays[-1])
        now += delays[-1]
        life.restarted(now)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert life.restarts == 9 and life.last_status == 1 and life.due_s is None


def test_a_part_that_ran_a_while_comes_back_at_once() -> None:
    life = Supervised(started_s=0.0)
    for k in range(5):  # five quick deaths: the delay has grown
        life.died(1.0 + k * 100, -9, B)
        life.restarted(1.0 + k * 100 + 32)
    assert life.died(1000.0, -9, B) == 1.0  # ran 500+ s: from the first delay again
    assert life.last_status == -9


@given(st.lists(st.floats(min_value=0.0, max_value=200.0), min_size=1, max_size=40))
@example([0.94, 0.94, 60.0])  # ran 60 s by the arguments, 59.99999999999999 by the clock
def test_the_delay_stays_within_bounds_and_the_part_always_comes_back(runs: list[float]) -> None:
    life, now, started = Supervised(started_s=0.0), 0.0, 0.0
    for ran in runs:
        now += ran
        delay = life.died(now, 1, B)
        assert B.first_s <= delay <= B.max_s
        if now - started >= B.stable_s:  # how long it ran by the clock it is given
            assert delay == B.first_s
        now += delay
        assert life.is_due(now)
        life.restarted(now)
        started = now
    assert life.restarts == len(runs)


@pytest.mark.parametrize("bad", [dict(first_s=0), dict(first_s=10, max_s=5), dict(stable_s=0)])
def test_a_backoff_that_makes_no_sense_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**bad)
