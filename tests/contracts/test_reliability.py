"""Reliability math (contracts/reliability.py): a small episode table worked out by hand, the
edges of the window, open and overlapping episodes, and properties against the obvious
minute-by-minute walk: downtime never exceeds asset-hours, and a window split in two adds up
to the whole."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import Cause, State
from contracts.fleet import parse_fleet
from contracts.reliability import (
    AssetInfo,
    Episode,
    GroupBy,
    Level,
    Reliability,
    ReliabilityTable,
    fleet_population,
    reliability,
)

H = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FROM, TO = T0, T0 + 100 * H  # a 100-hour window


def at(hours: float) -> int:
    return T0 + round(hours * H)


U1 = AssetInfo("u1", "unit", "site-a", "Nordcell", "NC-4000")
U2 = AssetInfo("u2", "unit", "site-a", "Voltara", "VX-2")
I1 = AssetInfo("i1", "inverter", "site-b", "Ampyra", "AP-1250")
B1 = AssetInfo("b1", "block", "site-b")  # no vendor, no model: "unknown"
POPULATION = [U1, U2, I1, B1]
EPISODES = [
    Episode("u1", at(10), at(14), "unavailable", "fault"),  # failure, repaired: 4 h
    Episode("u1", at(50), at(56), "unavailable", "fault"),  # failure, repaired: 6 h
    Episode("u1", at(60), at(70), "derated", "fault"),  # derated 10 h: no failure
    Episode("u2", at(-5), at(3), "unavailable", "forced_outage"),  # began before: 3 h in it
    Episode("u2", at(20), at(22), "unknown", "comms_loss"),  # no data: 2 h of comms time
    Episode("u2", at(95), None, "unavailable", "fault"),  # failure, still open: 5 h in it
    Episode("i1", at(30), at(31.5), "unavailable", "grid_outage"),  # failure, 1.5 h
    Episode("b1", at(40), at(140), "unavailable", "fault"),  # failure, open at `to`: 60 h
    Episode("b1", at(45), at(50), "unavailable", "fault"),  # inside the one above: no second
]


def table(group_by: GroupBy = "cause", only_cause: str | None = None,
          episodes: list[Episode] = EPISODES, population: list[AssetInfo] = POPULATION,
          start: int = FROM, end: int = TO) -> ReliabilityTable:
    return reliability(episodes, population, start, end, group_by, only_cause=only_cause)


def numbers(row: Reliability) -> dict[str, object]:
    """A row as the figures a reader sees (hours)."""
    return {"key": row.key, "assets": row.assets, "asset_hours": row.asset_hours,
            "operating_hours": row.operating_hours, "failures": row.failures,
            "downtime_hours": row.downtime_hours, "repairs": row.repairs,
            "repair_hours": row.repair_hours, "open": row.open, "derated": row.derated,
            "derated_hours": row.derated_hours, "comms_hours": row.comms_hours,
            "mttr_hours": row.mttr_hours, "mtbf_hours": row.mtbf_hours}


def row(key: tuple[str, ...], assets: int, asset_hours: float, operating_hours: float,
        failures: int, downtime_hours: float, repairs: int, repair_hours: float, open: int,
        derated: int = 0, derated_hours: float = 0.0, comms_hours: float = 0.0
        ) -> dict[str, object]:
    """The expected figures; MTTR and MTBF follow from them by their definitions."""
    return {"key": key, "assets": assets, "asset_hours": asset_hours,
            "operating_hours": operating_hours, "failures": failures,
            "downtime_hours": downtime_hours, "repairs": repairs, "repair_hours": repair_hours,
            "open": open, "derated": derated, "derated_hours": derated_hours,
            "comms_hours": comms_hours,
            "mttr_hours": repair_hours / repairs if repairs else None,
            "mtbf_hours": operating_hours / failures if failures else None}


# Per asset, by hand (window 100 h each, 400 asset-hours):
#   u1: down 4 + 6 = 10 h → operating 90; 2 failures, 2 repairs (4 + 6 = 10 h); derated 10 h
#   u2: down 3 (of the 8-h outage from −5 h) + 5 (95 h → 100 h) = 8 h, comms 2 h
#       → operating 100 − 8 − 2 = 90; 1 failure (at 95 h: the one at −5 h began before),
#       1 repair of 8 h (its whole length), 1 open
#   i1: down 1.5 h → operating 98.5; 1 failure, 1 repair of 1.5 h
#   b1: 40 h → 140 h and 45 h → 50 h are one outage: down 60 h → operating 40; 1 failure,
#       open at `to`, no repair
TOTAL = row((), 4, 400.0, 90 + 90 + 98.5 + 40,  # operating 318.5
            2 + 1 + 1 + 1,  # 5 failures → MTBF 318.5 / 5 = 63.7
            10 + 8 + 1.5 + 60,  # 79.5 h down
            2 + 1 + 1, 10 + 8 + 1.5,  # 4 repairs, 19.5 h → MTTR 4.875
            2, derated=1, derated_hours=10.0, comms_hours=2.0)


def test_the_total_is_the_hand_computed_one() -> None:
    total = table().total
    assert numbers(total) == TOTAL
    assert total.mtbf_hours == pytest.approx(63.7) and total.mttr_hours == 4.875


def test_by_cause_each_cause_against_the_whole_populations_hours() -> None:
    # Every cause's MTBF divides the population's 318.5 operating hours.
    assert [numbers(r) for r in table("cause").groups] == [
        # fault: u1's 2 + u2's open one + b1's = 4 failures; down 10 + 5 + 60 = 75 h;
        # repairs u1's 2 (10 h) → MTTR 5; open u2, b1; u1's derating; MTBF 318.5 / 4
        row(("fault",), 4, 400.0, 318.5, 4, 75.0, 2, 10.0, 2, derated=1, derated_hours=10.0),
        # grid_outage: i1's, 1.5 h → MTTR 1.5, MTBF 318.5
        row(("grid_outage",), 4, 400.0, 318.5, 1, 1.5, 1, 1.5, 0),
        # forced_outage: began before `from` — no failure, 3 h down, its 8-h repair
        row(("forced_outage",), 4, 400.0, 318.5, 0, 3.0, 1, 8.0, 0),
        # comms_loss: no data for 2 h, neither failure nor downtime
        row(("comms_loss",), 4, 400.0, 318.5, 0, 0.0, 0, 0.0, 0, comms_hours=2.0),
    ]
    assert table("cause").groups[0].mtbf_hours == 79.625


def test_by_vendor_model_level_and_site() -> None:
    nordcell = row(("Nordcell",), 1, 100.0, 90.0, 2, 10.0, 2, 10.0, 0, derated=1,
                   derated_hours=10.0)  # MTTR 5, MTBF 45
    voltara = row(("Voltara",), 1, 100.0, 90.0, 1, 8.0, 1, 8.0, 1, comms_hours=2.0)
    ampyra = row(("Ampyra",), 1, 100.0, 98.5, 1, 1.5, 1, 1.5, 0)
    unknown = row(("unknown",), 1, 100.0, 40.0, 1, 60.0, 0, 0.0, 1)  # MTTR None, MTBF 40
    # Most failures first, then most downtime.
    assert [numbers(r) for r in table("vendor").groups] == [nordcell, unknown, voltara, ampyra]
    assert [r.key for r in table("model").groups] == [
        ("Nordcell", "NC-4000"), ("unknown", "unknown"), ("Voltara", "VX-2"),
        ("Ampyra", "AP-1250")]
    assert [numbers(r) for r in table("level").groups] == [
        # u1 + u2: 200 h, operating 90 + 90, failures 2 + 1, down 10 + 8, repairs 2 + 1
        # (10 + 8 h) → MTTR 6, MTBF 60
        row(("unit",), 2, 200.0, 180.0, 3, 18.0, 3, 18.0, 1, derated=1, derated_hours=10.0,
            comms_hours=2.0),
        row(("block",), 1, 100.0, 40.0, 1, 60.0, 0, 0.0, 1),
        row(("inverter",), 1, 100.0, 98.5, 1, 1.5, 1, 1.5, 0),
    ]
    assert table("level").groups[0].mttr_hours == 6.0
    assert table("level").groups[0].mtbf_hours == 60.0
    assert [numbers(r) for r in table("site").groups] == [
        # site-a: u1 + u2 as above
        row(("site-a",), 2, 200.0, 180.0, 3, 18.0, 3, 18.0, 1, derated=1, derated_hours=10.0,
            comms_hours=2.0),
        # site-b: i1 + b1: operating 98.5 + 40, failures 2, down 1.5 + 60 → MTBF 69.25
        row(("site-b",), 2, 200.0, 138.5, 2, 61.5, 1, 1.5, 1),
    ]


def test_one_cause_only_keeps_operating_time_net_of_every_cause() -> None:
    fault = table("vendor", only_cause="fault")
    assert [numbers(r) for r in fault.groups] == [
        row(("Nordcell",), 1, 100.0, 90.0, 2, 10.0, 2, 10.0, 0, derated=1,
            derated_hours=10.0),
        row(("unknown",), 1, 100.0, 40.0, 1, 60.0, 0, 0.0, 1),
        # Voltara: only its open fault (5 h); the forced outage and comms loss still take
        # their 3 + 2 h off its operating time
        row(("Voltara",), 1, 100.0, 90.0, 1, 5.0, 0, 0.0, 1),
        row(("Ampyra",), 1, 100.0, 98.5, 0, 0.0, 0, 0.0, 0),  # its grid outage not counted
    ]
    assert numbers(fault.total) == row((), 4, 400.0, 318.5, 4, 75.0, 2, 10.0, 2, derated=1,
                                       derated_hours=10.0)
    # The cause filter's total is the cause's row of the table by cause.
    assert numbers(fault.total) == {**numbers(table("cause").groups[0]), "key": ()}
    assert table("cause", only_cause="unknown").groups == ()


# -- edges ---------------------------------------------------------------------------------

ONE = [AssetInfo("u9", "unit", "s")]


def one(*episodes: tuple[float, float | None, State]) -> Reliability:
    return table("level", episodes=[Episode("u9", at(s), None if e is None else at(e), state)
                                    for s, e, state in episodes], population=ONE).total


def test_an_outage_over_both_edges_is_all_downtime_and_no_failure() -> None:
    total = one((-10, 110, "unavailable"))
    assert (total.failures, total.downtime_hours, total.operating_hours) == (0, 100.0, 0.0)
    assert (total.repairs, total.open, total.mttr_hours, total.mtbf_hours) == (0, 1, None, None)


def test_an_open_outage_is_a_failure_without_a_repair() -> None:
    total = one((70, None, "unavailable"))
    assert (total.failures, total.downtime_hours, total.open) == (1, 30.0, 1)
    assert (total.repairs, total.mttr_hours, total.mtbf_hours) == (0, None, 70.0)


def test_no_failure_no_mtbf() -> None:
    total = one()
    assert (total.asset_hours, total.operating_hours, total.failures) == (100.0, 100.0, 0)
    assert (total.mtbf_hours, total.mttr_hours) == (None, None)
    derated = one((10, 20, "derated"))  # derating is operation, not failure
    assert (derated.failures, derated.derated, derated.derated_hours) == (0, 1, 10.0)
    assert (derated.operating_hours, derated.mtbf_hours) == (100.0, None)


def test_overlapping_and_repeated_episodes_of_an_asset_count_once() -> None:
    # 10 → 30 and 20 → 40 (one outage 10 → 40), and the same episode twice (50 → 60).
    total = one((10, 30, "unavailable"), (20, 40, "unavailable"), (50, 60, "unavailable"),
                (50, 60, "unavailable"))
    assert (total.failures, total.downtime_hours) == (2, 30.0 + 10.0)
    assert (total.repairs, total.repair_hours, total.mttr_hours) == (2, 40.0, 20.0)
    assert total.mtbf_hours == (100 - 40) / 2
    # Unknown time inside an outage is taken off operating time once.
    both = one((10, 30, "unavailable"), (20, 40, "unknown"))
    assert (both.downtime_hours, both.comms_hours, both.operating_hours) == (20.0, 20.0, 70.0)


def test_the_windows_edges_are_half_open() -> None:
    # Ending at `from`: before the window. Starting at `to`: after it. Ending at `to`: repaired
    # in it. Starting at `from`: a failure of it.
    assert numbers(one((-5, 0, "unavailable"))) == numbers(one())
    assert numbers(one((100, 120, "unavailable"))) == numbers(one())
    at_edges = one((0, 2, "unavailable"), (99, 100, "unavailable"))
    assert (at_edges.failures, at_edges.repairs, at_edges.open) == (2, 2, 0)
    assert at_edges.downtime_hours == 3.0


def test_an_asset_counts_from_its_commissioning() -> None:
    late = [AssetInfo("u9", "unit", "s", in_service_ms=at(50))]
    total = table("level", episodes=[Episode("u9", at(40), at(60), "unavailable")],
                  population=late).total
    # 50 h in service; the outage from before it counts 10 h of downtime, no failure.
    assert (total.asset_hours, total.downtime_hours, total.failures, total.repairs) == \
        (50.0, 10.0, 0, 1)
    future = [AssetInfo("u9", "unit", "s", in_service_ms=at(200))]
    assert numbers(table("level", episodes=[], population=future).total) == \
        row((), 0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: table(start=TO, end=TO), "empty window"),
    (lambda: table(episodes=[Episode("x9", at(1), at(2), "unavailable")]),
     "episode of 'x9', an asset not in the population"),
    (lambda: table("vendors"),  # type: ignore[arg-type]
     "group_by 'vendors' is not one of cause, vendor, model, level, site"),
])
def test_what_cannot_be_computed_is_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_the_population_of_a_fleet_file() -> None:
    fleet = parse_fleet("""\
sites:
  - id: s1
    customer: c
    region: r
    timezone: Europe/Stockholm
    units:
      - id: s1-u1
        rated_power_kw: 1
        rated_energy_kwh: 2
        commissioned: 2024-03-01
        vendor: Nordcell
        model: NC-4000
        inverters:
          - id: s1-u1-i1
            rated_power_kw: 1
            vendor: Ampyra
            blocks: [{id: s1-u1-i1-b1, rated_energy_kwh: 2}]
  - id: s2
    customer: c
    region: r
    timezone: UTC
    units:
      - {id: s2-u1, rated_power_kw: 1, rated_energy_kwh: 2, commissioned: 2024-03-01}
""")
    midnight = int(dt.datetime(2024, 3, 1, tzinfo=fleet.site("s1").tz).timestamp() * 1000)
    assert fleet_population(fleet, ["s1"]) == [
        AssetInfo("s1-u1", "unit", "s1", "Nordcell", "NC-4000", midnight),
        AssetInfo("s1-u1-i1", "inverter", "s1", "Ampyra", None, midnight),
        AssetInfo("s1-u1-i1-b1", "block", "s1", "Nordcell", "NC-4000", midnight),  # its unit's
    ]
    assert [a.asset_id for a in fleet_population(fleet, ["s2", "s1"])] == [
        "s1-u1", "s1-u1-i1", "s1-u1-i1-b1", "s2-u1"]


# -- properties ----------------------------------------------------------------------------

M = 60_000  # the properties' times are whole minutes, so a walk minute by minute is exact
LEVELS: list[Level] = ["unit", "inverter", "block"]
STATES: list[State] = ["unavailable", "derated", "unknown", "available"]
CAUSES: list[Cause | None] = ["fault", "grid_outage", None]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[AssetInfo], list[Episode], int, int, int]:
    """A few assets, their episodes (overlapping, open, over the edges), a window and a
    point inside it."""
    n = draw(st.integers(1, 4))
    population = [AssetInfo(f"a{i}", draw(st.sampled_from(LEVELS)),
                            draw(st.sampled_from(["s1", "s2"])),
                            draw(st.sampled_from(["Nordcell", "Voltara", None])),
                            draw(st.sampled_from(["X", None])),
                            draw(st.sampled_from([0, 30 * M, 90 * M])))
                  for i in range(n)]
    episodes = []
    for _ in range(draw(st.integers(0, 8))):
        start = draw(st.integers(-30, 150)) * M
        length = draw(st.one_of(st.none(), st.integers(1, 80)))
        episodes.append(Episode(f"a{draw(st.integers(0, n - 1))}", start,
                                None if length is None else start + length * M,
                                draw(st.sampled_from(STATES)), draw(st.sampled_from(CAUSES))))
    start = draw(st.integers(0, 40)) * M
    end = start + draw(st.integers(2, 100)) * M
    middle = draw(st.integers(start // M + 1, end // M - 1)) * M
    return population, episodes, start, end, middle


ADDITIVE = ("assets", "asset_ms", "operating_ms", "failures", "downtime_ms", "repairs",
            "repair_ms", "derated", "derated_ms", "comms_ms")


def _down(episodes: list[Episode], asset: str, minute: int, states: tuple[str, ...]) -> bool:
    t = minute * M
    return any(e.asset_id == asset and e.state in states and e.start_ms <= t
               and (e.end_ms is None or t < e.end_ms) for e in episodes)


@settings(max_examples=150, deadline=None)
@given(worlds(), st.sampled_from(["cause", "vendor", "model", "level", "site"]))
def test_a_window_split_in_two_adds_up_and_never_exceeds_its_hours(
        world: tuple[list[AssetInfo], list[Episode], int, int, int], group_by: GroupBy) -> None:
    population, episodes, start, end, middle = world
    whole = reliability(episodes, population, start, end, group_by)
    first = reliability(episodes, population, start, middle, group_by)
    second = reliability(episodes, population, middle, end, group_by)
    for name in ADDITIVE:
        if name == "assets":  # an asset in service in either half is in the whole
            continue
        assert getattr(whole.total, name) == \
            getattr(first.total, name) + getattr(second.total, name), name
    for r in (*whole.groups, whole.total):
        assert 0 <= r.downtime_ms <= r.asset_ms and 0 <= r.comms_ms <= r.asset_ms
        assert 0 <= r.operating_ms <= r.asset_ms - max(r.downtime_ms, r.comms_ms)
        assert 0 <= r.derated_ms <= r.asset_ms
    if group_by != "cause":  # the groups partition the population: they add up to the total
        for name in ADDITIVE:
            assert sum(getattr(g, name) for g in whole.groups) == getattr(whole.total, name)

    # The obvious walk, minute by minute, asset by asset.
    asset_minutes = down = comms = operating = 0
    for a in population:
        for minute in range(max(start, a.in_service_ms) // M, end // M):
            asset_minutes += 1
            out = _down(episodes, a.asset_id, minute, ("unavailable",))
            nodata = _down(episodes, a.asset_id, minute, ("unknown",))
            down += out
            comms += nodata
            operating += not (out or nodata)
    assert (whole.total.asset_ms, whole.total.downtime_ms, whole.total.comms_ms,
            whole.total.operating_ms) == (asset_minutes * M, down * M, comms * M,
                                          operating * M)
