"""A unit's statuses in event time: order within the lateness does not matter, silence is
communication loss, late and duplicate samples are refused, pieces tile time exactly."""

from __future__ import annotations

import itertools

import pytest

from contracts.status import COMMS_LOSS, UNKNOWN, Status
from flows.status_timeline import Change, Piece, UnitTimeline

OK, DOWN = Status("available"), Status("unavailable", cause="fault")
HALF = Status("derated", 0.5)


def timeline() -> UnitTimeline:
    return UnitTimeline("u", ("u", "u-b"), stale_after_ms=10)


def feed(t: UnitTimeline, samples: list[tuple[int, Status, Status]]) -> list[str | None]:
    return [t.add(ts, {"u": unit, "u-b": block}) for ts, unit, block in samples]


SAMPLES = [(0, OK, OK), (5, OK, HALF), (8, DOWN, HALF), (12, OK, OK), (40, OK, OK), (45, OK, OK)]


def changes_of(t: UnitTimeline, to: int) -> list[Change]:
    return t.finalize(to)[0]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[:12])
def test_order_within_the_lateness_does_not_matter(order: tuple[int, ...]) -> None:
    t = timeline()
    shuffled = [SAMPLES[i] for i in order] + SAMPLES[4:]
    assert feed(t, shuffled) == [None] * len(SAMPLES)
    changes = changes_of(t, 50)
    assert [(c.asset_id, c.ts_ms, c.status) for c in changes] == [
        ("u", 0, OK), ("u-b", 0, OK), ("u-b", 5, HALF), ("u", 8, DOWN), ("u", 12, OK),
        ("u-b", 12, OK),
        # silent from 12 to 40: communication lost from 12 + 10 = 22
        ("u", 22, COMMS_LOSS), ("u-b", 22, COMMS_LOSS), ("u", 40, OK), ("u-b", 40, OK)]
    assert changes[3].previous == OK and changes[3].previous_since_ms == 0


def test_pieces_tile_each_finalized_span_exactly() -> None:
    t = timeline()
    feed(t, SAMPLES)
    pieces: list[Piece] = []
    for to in (3, 9, 9, 30, 47, 70):  # repeated and uneven steps
        pieces += t.finalize(to)[1]
    for asset in ("u", "u-b"):
        mine = sorted((p for p in pieces if p.asset_id == asset), key=lambda p: p.start_ms)
        assert mine[0].start_ms == 0 and mine[-1].end_ms == 70
        assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(mine))
    unit = [(p.start_ms, p.end_ms, p.status) for p in pieces if p.asset_id == "u"]
    lost = sum((e - s) * st.loss for s, e, st in unit)
    # u: down 8..12 (4), comms loss 22..40 (18), silent after 45: lost from 55 to 70 (15)
    assert lost == 4 + 18 + 15


def test_late_and_duplicate_samples_are_refused() -> None:
    t = timeline()
    feed(t, SAMPLES[:4])
    assert t.add(8, {"u": OK}) == "duplicate"  # pending twin
    t.finalize(10)
    assert t.add(9, {"u": OK}) == "late"
    assert t.add(10, {"u": OK}) is None  # at the watermark: still on time
    assert t.add(8, {"u": OK}) == "duplicate"  # the newest final sample again
    assert t.add(7, {"u": OK}) == "late"


def test_a_missing_child_reading_is_unknown_and_nothing_is_final_twice() -> None:
    t = timeline()
    t.add(0, {"u": OK})
    changes, _ = t.finalize(5)
    assert [(c.asset_id, c.status) for c in changes] == [("u", OK), ("u-b", UNKNOWN)]
    assert t.finalize(5) == ([], [])
    assert t.finalize(4) == ([], [])
