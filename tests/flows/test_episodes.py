"""Unavailability episodes and their tickets: sequences of status changes and ticket events,
and the episodes expected after each step. Times are hours after T0."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from contracts.events import (
    Cause,
    State,
    StatusChange,
    TicketEvent,
    TicketStatus,
    UnavailabilityEpisode,
)
from contracts.fleet import parse_fleet
from flows.episodes import EpisodeTracker, rated_energy_mwh, ticket_site

FLEET = parse_fleet("""
sites:
  - id: s1
    customer: Alpha
    region: SE3
    timezone: Europe/Stockholm
    units:
      - id: u1
        rated_power_kw: 2000
        rated_energy_kwh: 4000
        commissioned: 2024-01-01
        inverters:
          - id: u1-i1
            rated_power_kw: 1000
            blocks:
              - {id: u1-b1, rated_energy_kwh: 1500}
              - {id: u1-b2, rated_energy_kwh: 1500}
          - {id: u1-i2, rated_power_kw: 3000}
      - {id: u2, rated_power_kw: 1000, rated_energy_kwh: 2000, commissioned: 2024-01-01}
  - id: s2
    customer: Beta
    region: DE
    timezone: Europe/Berlin
    units:
      - {id: v1, rated_power_kw: 1000, rated_energy_kwh: 1000, commissioned: 2024-01-01}
""", "test-fleet.yaml")

T0 = 1_790_000_000_000
H = 3_600_000


def at(h: float) -> int:
    return T0 + round(h * H)


def status(asset: str, h: float, state: State, fraction: float | None = None,
           cause: Cause | None = None) -> StatusChange:
    return StatusChange(asset_id=asset, site_id="s1", ts_ms=at(h), state=state,
                        derate_fraction=fraction, cause=cause)


def ticket(tid: str, asset: str | None, opened_h: float, state: TicketStatus = "open",
           resolved_h: float | None = None, updated_h: float | None = None,
           summary: str = "") -> TicketEvent:
    updated = updated_h if updated_h is not None else max(opened_h, resolved_h or opened_h)
    return TicketEvent(provider="jira", ticket_id=tid, asset_id=asset, status=state,
                       opened_ms=at(opened_h), updated_ms=at(updated),
                       resolved_ms=None if resolved_h is None else at(resolved_h),
                       summary=summary)


# (episode id, end h, state, cause, lost hours, lost MWh, tickets as "id/status"):
# what the API shows for "why is this unit down, and who is on it".
Brief = tuple[str, float | None, str, str | None, float, float, tuple[str, ...]]
Step = tuple[StatusChange | TicketEvent, list[Brief]]


def brief(episodes: list[UnavailabilityEpisode]) -> list[Brief]:
    return [(e.episode_id.replace(str(e.start_ms), f"{(e.start_ms - T0) / H:g}h"),
             None if e.end_ms is None else (e.end_ms - T0) / H, e.state, e.cause,
             round(e.lost_hours, 9), round(e.lost_mwh, 9),
             tuple(f"{t.ticket_id}/{t.status}" for t in e.tickets)) for e in episodes]


def run(tracker: EpisodeTracker, steps: list[Step]) -> list[list[UnavailabilityEpisode]]:
    outputs = []
    for i, (event, expected) in enumerate(steps):
        if isinstance(event, StatusChange):
            out = tracker.on_status(event)
        else:
            out = tracker.on_ticket(event)
        assert brief(out) == expected, f"step {i}: {event!r}"
        outputs.append(out)
    return outputs


UNIT_EPISODE: list[Step] = [
    (ticket("J-1", "u1", -1), []),  # opened before any episode: nothing to link yet
    (status("u1", 0, "available"), []),
    # Leaves `available`: the episode opens, with the ticket open on the unit.
    (status("u1", 0, "derated", 0.25), [("u1:0h", None, "derated", None, 0, 0, ("J-1/open",))]),
    # Worse state and a first cause: 1 h at 1 − 0.25 = 0.75 h lost so far; 0.75 × 4 MWh = 3.
    (status("u1", 1, "unavailable", cause="fault"),
     [("u1:0h", None, "unavailable", "fault", 0.75, 3.0, ("J-1/open",))]),
    # A ticket on the site covers the unit (opened after the start, during the episode).
    # Lost hours as of the tracker's clock, the last status change (1 h).
    (ticket("J-2", "s1", 1.5), [("u1:0h", None, "unavailable", "fault", 0.75, 3.0,
                                 ("J-1/open", "J-2/open"))]),
    # unknown is not worse than unavailable, and the cause stays the first one: no news.
    (status("u1", 2, "unknown", cause="comms_loss"), []),
    # A linked ticket changes status: re-emitted (clock 2 h: 0.75 + 1 = 1.75 h, 7 MWh).
    (ticket("J-1", "u1", -1, "resolved", resolved_h=2.5),
     [("u1:0h", None, "unavailable", "fault", 1.75, 7.0, ("J-1/resolved", "J-2/open"))]),
    # A ticket on one of its inverters does not cover the unit.
    (ticket("J-3", "u1-i1", 2), []),
    # Closed: 0.75 (derated 0-1 h) + 1 (unavailable 1-2 h) + 1 (unknown 2-3 h) = 2.75 h;
    # 2.75 × 4 MWh = 11 MWh.
    (status("u1", 3, "available"),
     [("u1:0h", 3, "unavailable", "fault", 2.75, 11.0, ("J-1/resolved", "J-2/open"))]),
    # Opened at the end: [3 h, ∞) does not overlap [0, 3 h).
    (ticket("J-4", "u1", 3), []),
    # Arriving late, opened during the episode: the closed episode is re-emitted.
    (ticket("J-5", "u1", 2, summary="BMS trip"),
     [("u1:0h", 3, "unavailable", "fault", 2.75, 11.0,
       ("J-1/resolved", "J-2/open", "J-5/open"))]),
    # The same version again (a replay) and an older version change nothing.
    (ticket("J-5", "u1", 2, summary="BMS trip"), []),
    (ticket("J-1", "u1", -1, updated_h=-0.5), []),
    # A new version moved to another unit: the link goes.
    (ticket("J-5", "u2", 2, updated_h=4, summary="BMS trip"),
     [("u1:0h", 3, "unavailable", "fault", 2.75, 11.0, ("J-1/resolved", "J-2/open"))]),
    # A new episode links what is open then, not the ticket resolved before it.
    (status("u1", 4, "unavailable", cause="forced_outage"),
     [("u1:4h", None, "unavailable", "forced_outage", 0, 0, ("J-2/open", "J-4/open"))]),
]


CHILDREN: list[Step] = [
    (ticket("T-u1", "u1", 0), []),
    (ticket("T-u2", "u2", 0), []),
    # A block: 1.5 MWh; the unit's ticket covers it, u2's does not.
    (status("u1-b1", 1, "unavailable", cause="fault"),
     [("u1-b1:1h", None, "unavailable", "fault", 0, 0, ("T-u1/open",))]),
    # An inverter with blocks: their 3 MWh. Half capacity for 1 h: 0.5 h, 1.5 MWh.
    (status("u1-i1", 1, "derated", 0.5), [("u1-i1:1h", None, "derated", None, 0, 0,
                                           ("T-u1/open",))]),
    (status("u1-i1", 2, "available"), [("u1-i1:1h", 2, "derated", None, 0.5, 1.5,
                                        ("T-u1/open",))]),
    # An inverter without blocks: 3000 of the 1000 + 3000 kW of the unit's inverters,
    # so 3/4 of 4 MWh = 3 MWh; unavailable for 30 min: 0.5 h, 1.5 MWh.
    (status("u1-i2", 2, "unavailable"), [("u1-i2:2h", None, "unavailable", None, 0, 0,
                                          ("T-u1/open",))]),
    (status("u1-i2", 2.5, "available"), [("u1-i2:2h", 2.5, "unavailable", None, 0.5, 1.5,
                                          ("T-u1/open",))]),
    # Block: 1 → 3 h unavailable: 2 h × 1.5 MWh = 3 MWh.
    (status("u1-b1", 3, "available"), [("u1-b1:1h", 3, "unavailable", "fault", 2.0, 3.0,
                                        ("T-u1/open",))]),
    # A ticket on the inverter reaches its block's closed episode, not the unit's inverter i2.
    (ticket("T-i1", "u1-i1", 2),
     [("u1-b1:1h", 3, "unavailable", "fault", 2.0, 3.0, ("T-u1/open", "T-i1/open"))]),
    # Assets of another site, or unknown, are not this tracker's.
    (StatusChange(asset_id="v1", site_id="s2", ts_ms=at(3), state="unavailable"), []),
    (status("nope", 3, "unavailable"), []),
]


@pytest.mark.parametrize("steps", [UNIT_EPISODE, CHILDREN], ids=["unit", "children"])
def test_episode_sequences(steps: list[Step]) -> None:
    run(EpisodeTracker(FLEET, "s1"), steps)


def test_episode_ids_are_stable_and_the_fields_complete() -> None:
    out = run(EpisodeTracker(FLEET, "s1"), UNIT_EPISODE)
    opened, closed = out[2][0], out[8][0]
    assert opened.episode_id == closed.episode_id == f"u1:{T0}"
    assert (closed.asset_id, closed.site_id, closed.start_ms, closed.end_ms) == (
        "u1", "s1", T0, at(3))
    late = out[10][0].tickets[-1]
    assert (late.provider, late.ticket_id, late.summary) == ("jira", "J-5", "BMS trip")


def test_energy_of_each_kind_of_asset() -> None:
    assets = FLEET.assets
    assert rated_energy_mwh(assets, "u1") == 4.0
    assert rated_energy_mwh(assets, "u1-b1") == 1.5
    assert rated_energy_mwh(assets, "u1-i1") == 3.0  # its blocks
    assert rated_energy_mwh(assets, "u1-i2") == 3.0  # 3000 / (1000 + 3000) × 4 MWh


def test_tickets_without_a_known_asset_give_nothing_and_are_routed_to_no_site() -> None:
    tracker = EpisodeTracker(FLEET, "s1")
    tracker.on_status(status("u1", 0, "unavailable"))
    for bad in (ticket("X-1", None, 0), ticket("X-2", "ghost", 0), ticket("X-3", "v1", 0)):
        assert tracker.on_ticket(bad) == []
    assert [ticket_site(FLEET, t) for t in (ticket("X-1", None, 0), ticket("X-2", "ghost", 0),
                                            ticket("X-3", "v1", 0), ticket("X-4", "u1-b2", 0))
            ] == [None, None, "s2", "s1"]
    assert tracker.open_episodes()[0].tickets == ()
    with pytest.raises(KeyError):
        EpisodeTracker(FLEET, "nowhere")


def test_open_episodes_count_lost_hours_up_to_the_asked_time() -> None:
    tracker = EpisodeTracker(FLEET, "s1")
    tracker.on_status(status("u2", 0, "derated", 0.75))
    tracker.on_status(status("u1", 1, "unavailable"))
    tracker.on_status(status("u1-b2", 1, "available"))
    # At 4 h: u1 3 h unavailable, × 4 MWh = 12; u2 4 h at 1 − 0.75 = 1 h, × 2 MWh = 2.
    assert brief(tracker.open_episodes(at(4))) == [
        ("u1:1h", None, "unavailable", None, 3.0, 12.0, ()),
        ("u2:0h", None, "derated", None, 1.0, 2.0, ())]
    # Without a time: up to the tracker's clock, the newest change (1 h).
    assert brief(tracker.open_episodes()) == [
        ("u1:1h", None, "unavailable", None, 0, 0, ()),
        ("u2:0h", None, "derated", None, 0.25, 0.5, ())]


def test_a_moment_of_availability_does_not_split_an_episode() -> None:
    tracker = EpisodeTracker(FLEET, "s1")
    run(tracker, [
        (status("u2", 0, "unavailable"), [("u2:0h", None, "unavailable", None, 0, 0, ())]),
        (status("u2", 1, "available"), [("u2:0h", 1, "unavailable", None, 1.0, 2.0, ())]),
        # Left again in the same millisecond: the same episode goes on (and keeps its id).
        (status("u2", 1, "derated", 0.5, "environmental"),
         [("u2:0h", None, "unavailable", "environmental", 1.0, 2.0, ())]),
        (status("u2", 3, "available"),
         [("u2:0h", 3, "unavailable", "environmental", 2.0, 4.0, ())]),
        (status("u2", 2, "unavailable"), []),  # older than the asset's last change: ignored
    ])


def test_a_ticket_opened_after_the_end_drops_out_when_the_episode_closes() -> None:
    run(EpisodeTracker(FLEET, "s1"), [
        (status("u2", 0, "unavailable"), [("u2:0h", None, "unavailable", None, 0, 0, ())]),
        # Linked while the end is open: [2 h, ∞) overlaps [0, ∞) …
        (ticket("F-1", "u2", 2), [("u2:0h", None, "unavailable", None, 0, 0, ("F-1/open",))]),
        # … but not [0, 1 h).
        (status("u2", 1, "available"), [("u2:0h", 1, "unavailable", None, 1.0, 2.0, ())]),
    ])


def test_closed_episodes_are_forgotten_after_the_horizon() -> None:
    tracker = EpisodeTracker(FLEET, "s1", keep_closed_ms=24 * H)
    run(tracker, [
        (status("u2", 0, "unavailable"), [("u2:0h", None, "unavailable", None, 0, 0, ())]),
        (status("u2", 1, "available"), [("u2:0h", 1, "unavailable", None, 1.0, 2.0, ())]),
        (ticket("R-1", "u2", 0.5, "resolved", resolved_h=0.75),
         [("u2:0h", 1, "unavailable", None, 1.0, 2.0, ("R-1/resolved",))]),
        (status("u1", 24.5, "available"), []),  # 23.5 h after the end: still kept
        (ticket("L-1", "u2", 0.5), [("u2:0h", 1, "unavailable", None, 1.0, 2.0,
                                     ("L-1/open", "R-1/resolved"))]),
        (status("u1", 25.5, "available"), []),  # 24.5 h after: forgotten, with R-1
        (ticket("L-2", "u2", 0.5), []),
    ])
    assert tracker.closed == {}
    assert set(tracker.tickets) == {("jira", "L-1"), ("jira", "L-2")}


def test_state_survives_pickling_mid_sequence() -> None:
    for steps in (UNIT_EPISODE, CHILDREN):
        straight = EpisodeTracker(FLEET, "s1")
        half = len(steps) // 2
        run(straight, steps[:half])
        resumed: Any = pickle.loads(pickle.dumps(straight))
        assert run(resumed, steps[half:]) == run(straight, steps[half:])
        assert resumed.open_episodes(at(10)) == straight.open_episodes(at(10))
