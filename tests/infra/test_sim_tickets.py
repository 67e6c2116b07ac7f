"""The simulated service desk: a ticket some minutes after a fault began (none for a fault
that clears before), resolved when the fault clears, as Jira webhooks the API's own parser
reads back for the right asset — from faults injected and random alike."""

from __future__ import annotations

import json

import pytest

from connectors.modbus.profile import load_profiles
from connectors.settings import EXAMPLE_FLEET, EXAMPLE_PROFILES
from connectors.ticketing import jira
from connectors.ticketing.signing import Unverified
from contracts.fleet import Fleet, load_fleet
from infra.sim.faults import FaultProcess, FaultRates
from infra.sim.server import Simulator
from infra.sim.tickets import TICKETED_KINDS, TicketChange, TicketDesk, jira_delivery

FLEET = load_fleet(EXAMPLE_FLEET)
PROFILES = load_profiles(EXAMPLE_PROFILES)


def changes(desk: TicketDesk, *times: float) -> list[tuple[str, str, float]]:
    return [(c.key, c.change, c.at_s) for t in times for c in desk.due(t)]


def test_a_ticket_opens_after_the_delay_and_resolves_when_the_fault_clears() -> None:
    desk = TicketDesk(delay_s=300)
    desk.fault_started(1, "inverter_trip", "nordvik-u01-i1", 1000.0, 5000.0)
    assert changes(desk, 1000, 1299.9) == []
    assert changes(desk, 1300) == [("SIM-1", "created", 1300.0)]
    assert changes(desk, 4999) == []
    assert desk.open_tickets == {"SIM-1": "nordvik-u01-i1"}
    assert changes(desk, 5000, 9000) == [("SIM-1", "resolved", 5000.0)]
    assert desk.open_tickets == {}


@pytest.mark.parametrize("end_s", [1100.0, 1300.0])
def test_a_fault_that_clears_before_the_delay_gets_no_ticket(end_s: float) -> None:
    desk = TicketDesk(delay_s=300)
    desk.fault_started(1, "block_isolation", "elbe-u01-i1-b3", 1000.0)
    desk.fault_ended(1, end_s)  # cleared early (or exactly when the ticket would open)
    assert changes(desk, 1200, 2000, 9000) == []


def test_a_cleared_fault_resolves_its_ticket_at_the_clearing() -> None:
    desk = TicketDesk(delay_s=60)
    desk.fault_started("a", "comms_drop", "mesa-u02", 0.0, 10_000.0)
    assert changes(desk, 100) == [("SIM-1", "created", 60.0)]
    desk.fault_ended("a", 700.0)
    assert changes(desk, 800) == [("SIM-1", "resolved", 700.0)]


def test_routine_derates_and_maintenance_are_not_ticketed() -> None:
    desk = TicketDesk(delay_s=60)
    assert not desk.fault_started(1, "derate", "mesa-u01", 0.0, 5000.0)
    assert not desk.fault_started(2, "maintenance", "mesa-u02", 0.0, 5000.0)
    assert changes(desk, 1000, 6000) == []


def test_changes_come_in_time_order_numbered_as_opened() -> None:
    desk = TicketDesk(delay_s=100, project="SIMABC", first_number=7)
    desk.fault_started(1, "hvac_failure", "elbe-u02", 50.0, 400.0)
    desk.fault_started(2, "trip", "nordvik", 0.0, 1000.0)
    desk.fault_started(3, "trip", "mesa-u01", 10.0, 90.0)  # clears before its ticket
    assert changes(desk, 2000) == [("SIMABC-7", "created", 100.0),
                                   ("SIMABC-8", "created", 150.0),
                                   ("SIMABC-8", "resolved", 400.0),
                                   ("SIMABC-7", "resolved", 1000.0)]


def test_the_webhooks_are_jira_deliveries_the_api_reads_for_the_asset() -> None:
    secret = b"sim-secret-0123456789"
    opened = TicketChange("SIMABC-3", 3, "created", "block_isolation", "elbe-u01-i1-b3",
                          fault_start_s=1_000.0, opened_s=1_300.0, at_s=1_300.0)
    resolved = TicketChange("SIMABC-3", 3, "resolved", "block_isolation", "elbe-u01-i1-b3",
                            fault_start_s=1_000.0, opened_s=1_300.0, at_s=5_000.5)

    def ms(sim_s: float) -> int:  # the simulation ran 60× faster from 1,000 s, started
        # at 2026-03-08T20:00:00Z (a ticket's times are 2000..2100: contracts.events)
        return round((1_773_000_000.0 + (sim_s - 1_000.0) / 60) * 1000)

    events = []
    for change in (opened, resolved):
        delivery = jira_delivery(change, ms)
        headers = {k.lower(): v for k, v in delivery.headers(secret).items()}
        jira.verify_request(headers, delivery.body, secret, 0.0)  # signed as Jira signs
        with pytest.raises(Unverified):
            jira.verify_request(headers, delivery.body, b"another-secret", 0.0)
        assert headers[jira.DELIVERY_HEADER] == delivery.delivery_id
        event = jira.normalize(json.loads(delivery.body))
        assert event is not None
        events.append(event)
    first, last = events
    assert (first.ticket_id, first.asset_id, first.status) == ("SIMABC-3", "elbe-u01-i1-b3",
                                                               "open")
    assert (last.ticket_id, last.asset_id, last.status) == ("SIMABC-3", "elbe-u01-i1-b3",
                                                            "resolved")
    assert first.opened_ms == last.opened_ms == ms(1_300.0) == 1_773_000_005_000
    assert last.resolved_ms == last.updated_ms == ms(5_000.5)
    assert first.summary == "DC block elbe-u01-i1-b3 isolated"
    assert len({jira_delivery(c, ms).delivery_id for c in (opened, resolved)}) == 2


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_an_injected_fault_is_ticketed_and_resolved_when_cleared() -> None:
    clock = Clock(1_800_000_000.0)
    sim = Simulator(FLEET, PROFILES, seed=1, speed=60, clock=clock,
                    tickets=TicketDesk(delay_s=300))
    sim.inject_fault("nordvik-u02", 3600)  # one simulated hour
    clock.t += 4  # 240 simulated seconds: no ticket yet
    sim.tick()
    assert sim.ticket_changes() == []
    clock.t += 2  # 360 s
    sim.tick()
    [created] = sim.ticket_changes()
    assert (created.change, created.asset_id, created.kind) == ("created", "nordvik-u02", "trip")
    assert sim.wall_ms(created.at_s) == 1_800_000_005_000  # 300 simulated s = 5 wall s
    clock.t += 10
    assert sim.clear_fault("nordvik-u02")
    [resolved] = sim.ticket_changes()
    assert (resolved.key, resolved.change) == (created.key, "resolved")
    assert sim.wall_ms(resolved.at_s) == 1_800_000_016_000


def test_random_faults_are_ticketed_by_kind_and_duration() -> None:
    """Over a simulated week of frequent faults, exactly the ticketed kinds that outlast the
    delay get a ticket, opened `delay` after they began and resolved when they ended."""
    site = Fleet(sites=(FLEET.sites[1],))
    rates = FaultRates().scaled(50).with_durations(0.2)
    clock = Clock(1_800_000_000.0)
    sim = Simulator(site, PROFILES, seed=9, speed=3600, clock=clock, fault_rates=rates,
                    tickets=TicketDesk(delay_s=900))
    reference = FaultProcess(site, clock.t, rates, seed=9)
    events = reference.due(clock.t + 7 * 86_400)
    got: list[TicketChange] = []
    for _ in range(7 * 24 * 4):  # a tick every simulated 15 min
        clock.t += 0.25
        sim.tick()
        got += sim.ticket_changes()
    assert {e.kind for e in events} >= TICKETED_KINDS - {"trip"} | {"derate", "maintenance"}
    created = {(c.asset_id, c.fault_start_s): c for c in got if c.change == "created"}
    resolved = {c.key: c for c in got if c.change == "resolved"}
    applied = [e for e in events if (e.asset_id, e.start_s) in created]
    assert applied and all(e.kind in TICKETED_KINDS and e.end_s - e.start_s > 900
                           for e in applied)
    for e in applied:
        ticket = created[(e.asset_id, e.start_s)]
        assert ticket.at_s == e.start_s + 900
        if e.end_s <= sim.now():
            assert resolved[ticket.key].at_s == e.end_s
        else:
            assert ticket.key not in resolved
    # Every long-enough ticketed fault got its ticket.
    missing = [e for e in events if e.kind in TICKETED_KINDS and e.end_s - e.start_s > 900
               and e.start_s + 900 <= sim.now() and (e.asset_id, e.start_s) not in created]
    assert missing == []
