"""The site-availability logic without Bytewax: statuses, exact windows, staleness, refusals."""

from __future__ import annotations

import pytest

from contracts.events import DeadLetter, SiteAvailability, StatusChange, TelemetrySample
from flows.site_tracker import Output, SiteTracker
from tests.flows.timelines import FLEET, T0, sample


def feed(tracker: SiteTracker, samples: list[TelemetrySample]) -> list[Output]:
    out: list[Output] = []
    for s in samples:
        out += tracker.on_sample(s)
    return out


def last_snapshot(out: list[Output]) -> SiteAvailability:
    return [o for o in out if isinstance(o, SiteAvailability)][-1]


def changes(out: list[Output]) -> list[tuple[str, int, str, str | None]]:
    return [(o.asset_id, (o.ts_ms - T0) // 1000, o.state, o.cause)
            for o in out if isinstance(o, StatusChange)]


def test_a_fault_costs_exactly_its_duration_weighted_by_energy() -> None:
    tracker = SiteTracker(FLEET, "s1", stale_after_ms=5000)
    samples = []
    for t in range(11):
        samples.append(sample("u1", t, code=3 if 5 <= t < 8 else 0))
        samples.append(sample("u2", t))
    out = feed(tracker, samples)
    snap = tracker.snapshot()
    u1, u2 = snap.units
    assert snap.ts_ms == T0 + 10_000
    # u1 lost [5 s, 8 s) of the 10 s observed; u2 nothing.
    assert u1.last_15m_pct == pytest.approx(70.0)
    assert u2.last_15m_pct == pytest.approx(100.0)
    # Energy weighted: 1 - 4000·3 / (4000·10 + 2000·10)
    assert snap.last_15m_pct == pytest.approx(80.0)
    assert snap.today_pct == pytest.approx(80.0)
    assert ("u1", 5, "unavailable", "fault") in changes(out)
    assert ("u1", 8, "available", None) in changes(out)
    assert snap.units_by_state == {"available": 2, "derated": 0, "unavailable": 0, "unknown": 0}


def test_a_block_fault_derates_its_unit_through_the_inverter() -> None:
    tracker = SiteTracker(FLEET, "s1")
    out = feed(tracker, [sample("u1", 0), sample("u1", 1, u1_b1=3), sample("u1", 3)])
    # b1 is half of the inverter's energy: the unit loses half for [1 s, 3 s).
    mid = [o for o in out if isinstance(o, SiteAvailability)]
    assert any(u.state == "derated" and u.derate_fraction == pytest.approx(0.5)
               for s in mid for u in s.units if u.id == "u1")
    snap = last_snapshot(out)
    assert snap.units[0].state == "available"
    assert snap.units[0].last_15m_pct == pytest.approx(100 * (1 - 0.5 * 2 / 3))
    assert ("u1-b1", 1, "unavailable", "fault") in changes(out)
    assert ("u1", 1, "unavailable", "fault") not in changes(out)  # own status unchanged


def test_a_silent_unit_turns_unknown_comms_loss_and_counts_as_lost() -> None:
    tracker = SiteTracker(FLEET, "s1", stale_after_ms=5000)
    samples = [sample("u1", t) for t in range(11)] + [sample("u2", t) for t in range(3)]
    samples.sort(key=lambda s: s.ts_ms)
    out = feed(tracker, samples)
    assert ("u2", 7, "unknown", "comms_loss") in changes(out)
    snap = last_snapshot(out)
    u2 = snap.units[1]
    assert (u2.state, u2.cause) == ("unknown", "comms_loss")
    # u2 observed [0, 10 s): available until 7 s (last sample 2 s + 5 s), lost after.
    assert u2.last_15m_pct == pytest.approx(70.0)
    # It reports again: the gap stays lost, the unit is available from then on.
    out = tracker.on_sample(sample("u2", 12))
    assert ("u2", 12, "available", None) in changes(out)
    assert last_snapshot(out).units[1].last_15m_pct == pytest.approx(100 * (1 - 5 / 12))


def test_late_duplicate_and_foreign_samples_are_dead_letters_with_reasons() -> None:
    tracker = SiteTracker(FLEET, "s1")
    feed(tracker, [sample("u1", 0), sample("u1", 5)])
    out = feed(tracker, [sample("u1", 5), sample("u1", 3), sample("v1", 6)])
    assert [(d.reason, d.key) for d in out if isinstance(d, DeadLetter)] == [
        ("duplicate", "u1"), ("late", "u1"), ("unknown_asset", "v1")]
    dead = [d for d in out if isinstance(d, DeadLetter)][1]
    assert TelemetrySample.model_validate_json(dead.payload) == sample("u1", 3)  # kept whole
    assert not [o for o in out if not isinstance(o, DeadLetter)]


def test_snapshots_are_throttled_in_event_time_unless_a_status_changes() -> None:
    tracker = SiteTracker(FLEET, "s1", publish_every_ms=1000)
    first = feed(tracker, [sample("u1", 0), sample("u2", 0)])
    assert len([o for o in first if isinstance(o, SiteAvailability)]) == 2  # both new statuses
    quiet = feed(tracker, [sample("u1", 0.5), sample("u2", 0.5)])
    assert not [o for o in quiet if isinstance(o, SiteAvailability)]
    due = feed(tracker, [sample("u1", 1.0)])
    assert len([o for o in due if isinstance(o, SiteAvailability)]) == 1
    fault = feed(tracker, [sample("u2", 1.2, code=3)])
    assert len([o for o in fault if isinstance(o, SiteAvailability)]) == 1
