"""The generated demo portfolio (infra/sim/portfolio.py): deterministic for a seed, every
contract valid and its site's, varied like a real fleet; up to three sites it is today's demo
fleet; `bessmon up --fleet fleet-30` runs 30 sites, each with its contract."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest

from connectors.settings import EXAMPLE_FLEET
from contracts.contract import Contract, fleet_contracts, load_contracts, parse_contract
from contracts.errors import InvalidInput
from contracts.fleet import Fleet, load_fleet, parse_fleet
from infra.cli import build_parser
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.portfolio import (
    FLEET_PRESETS,
    contract_yaml,
    generate_portfolio,
    write_portfolio,
)

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CURRENCY = {"SE": "SEK", "NO": "NOK", "DK": "DKK", "FI": "EUR", "DE": "EUR", "NL": "EUR",
            "ES": "EUR", "GB": "GBP", "US": "USD", "AU": "AUD"}  # by the region's country
ZONE = {"SE": "Europe/Stockholm", "NO": "Europe/Oslo", "DK": "Europe/Copenhagen",
        "FI": "Europe/Helsinki", "DE": "Europe/Berlin", "NL": "Europe/Amsterdam",
        "ES": "Europe/Madrid", "GB": "Europe/London", "US": "America/", "AU": "Australia/"}


def parsed(sites: int, seed: int) -> tuple[Fleet, dict[str, Contract]]:
    """The portfolio as its files read it back: the real parsers, nothing else."""
    portfolio = generate_portfolio(sites, seed)
    fleet = parse_fleet(fleet_yaml(portfolio.fleet), "fleet.yaml")
    return fleet, {site_id: parse_contract(contract_yaml(data), f"{site_id}.yaml")
                   for site_id, data in portfolio.contracts.items()}


def test_a_seed_gives_the_same_portfolio_every_time_and_another_seed_another() -> None:
    first, again, other = (generate_portfolio(30, 7), generate_portfolio(30, 7),
                           generate_portfolio(30, 8))
    assert first == again
    assert fleet_yaml(first.fleet) == fleet_yaml(again.fleet)
    assert [contract_yaml(c) for c in first.contracts.values()] == \
        [contract_yaml(c) for c in again.contracts.values()]
    assert other.fleet != first.fleet and other.contracts != first.contracts


@pytest.mark.parametrize(("sites", "seed"), [(4, 0), (7, 3), (30, 0), (30, 99), (60, 5)])
def test_every_contract_validates_belongs_to_its_site_and_makes_sense(sites: int,
                                                                     seed: int) -> None:
    fleet, contracts = parsed(sites, seed)
    assert len(fleet.sites) == sites
    assert set(contracts) == {s.id for s in fleet.sites}
    assert fleet_contracts(contracts, fleet) == contracts
    assert len({c.id for c in contracts.values()}) == sites
    for site in fleet.sites:
        c = contracts[site.id]
        country = site.region.split("-")[0][:2]
        assert c.site == site.id
        assert c.ld.currency == CURRENCY[country], site.id
        assert site.timezone.startswith(ZONE[country]), site.id
        assert site.lat is not None and site.lon is not None
        assert (site.lat < 0) == (country == "AU") and (site.lon < -60) == (country == "US")
        assert 3 <= len(site.units) <= 8
        assert all(dt.date(2019, 1, 1) - dt.timedelta(days=60) <= u.commissioned
                   <= dt.date(2025, 12, 31) for u in site.units)
        # The contract starts at commercial operation, once the first units are energised,
        # and is running now (the demo shows an open period of every contract).
        assert min(u.commissioned for u in site.units) <= c.start
        assert dt.date(2019, 1, 1) <= c.start <= dt.date(2025, 12, 31)
        assert 17 <= c.term_years <= 25
        guarantees = [c.guarantee.default_pct, *c.guarantee.by_contract_year.values()]
        assert all(90 <= g < 100 for g in guarantees)
        assert all(g >= c.guarantee.default_pct for g in c.guarantee.by_contract_year.values())
        assert all(y <= c.term_years for y in c.guarantee.by_contract_year)
        one_step = float(c.ld.rate_per_pct) * c.ld.step_pct  # one step's LD
        assert c.ld.rate_per_pct > 0 and float(c.ld.cap_per_contract_year) > one_step
        assert c.ld.cap_per_contract_year >= c.ld.rate_per_pct  # a whole point at least
        if c.bonus is not None:
            assert max(guarantees) < c.bonus.threshold_pct < 100
            assert 0 < c.bonus.rate_per_pct <= c.ld.rate_per_pct
            assert c.bonus.cap_per_contract_year >= c.bonus.rate_per_pct
        assert 0 < c.early_warning_margin_pct <= 1.0
        assert "grid_outage" in c.availability.excluded_causes
        assert "scheduled_maintenance" not in c.availability.excluded_causes
        assert c.availability.maintenance_allowance_hours > 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_thirty_sites_look_like_a_real_portfolio(seed: int) -> None:
    fleet, contracts = parsed(FLEET_PRESETS["fleet-30"], seed)
    sites = fleet.sites
    assert len({s.id for s in sites}) == len({s.name for s in sites}) == 30
    assert all(SLUG.match(s.id) for s in sites)
    customers = Counter(s.customer for s in sites)
    assert 8 <= len(customers) <= 12 and min(customers.values()) >= 2
    assert len({s.region for s in sites}) >= 8 and len({s.timezone for s in sites}) >= 6
    assert len({u.commissioned.year for s in sites for u in s.units}) >= 6
    assert len({len(s.units) for s in sites}) >= 4
    assert len({s.units[0].rated_energy_kwh for s in sites}) >= 4
    terms = list(contracts.values())
    assert len({c.ld.currency for c in terms}) >= 3
    assert {c.measurement_period for c in terms} == {"month", "quarter", "contract_year"}
    assert len({c.start for c in terms}) >= 25
    assert len({c.start.year for c in terms}) >= 6  # so the sites are in different years
    assert len({c.term_years for c in terms}) >= 4
    assert {c.availability.weight for c in terms} == {"equal", "power", "energy"}
    assert {c.availability.derate for c in terms} == {"pro_rata", "available"}
    assert {c.availability.data_gap_policy for c in terms} == \
        {"available", "unavailable", "excluded"}
    assert len({c.availability.excluded_causes for c in terms}) >= 3
    assert len({c.availability.maintenance_allowance_hours for c in terms}) >= 4
    assert len({c.guarantee.default_pct for c in terms}) >= 4
    assert 0 < sum(bool(c.guarantee.by_contract_year) for c in terms) < 30
    assert 0 < sum(c.bonus is not None for c in terms) < 30
    assert len({c.ld.step_pct for c in terms}) >= 2
    assert len({c.early_warning_margin_pct for c in terms}) >= 3
    # Rates scale with the site's power (in the same currency, bigger sites pay more).
    for currency in {c.ld.currency for c in terms}:
        same = sorted((sum(u.rated_power_kw for u in fleet.site(c.site).units),
                       float(c.ld.rate_per_pct)) for c in terms if c.ld.currency == currency)
        if len(same) >= 5:
            low, high = same[: len(same) // 2], same[len(same) // 2:]
            assert sum(r for _, r in high) / len(high) > sum(r for _, r in low) / len(low)


def test_more_sites_than_places_repeat_places_as_later_phases() -> None:
    portfolio = generate_portfolio(100, 0)
    fleet = Fleet.model_validate(portfolio.fleet)
    ids = [s.id for s in fleet.sites]
    assert len(set(ids)) == 100 and len({s.name for s in fleet.sites}) == 100
    assert any(i.endswith("-2") for i in ids) and set(portfolio.contracts) == set(ids)


@pytest.mark.parametrize("sites", [1, 2, 3])
def test_up_to_three_sites_are_todays_demo_sites_and_contracts(sites: int,
                                                              tmp_path: Path) -> None:
    for seed in (0, 42):
        portfolio = generate_portfolio(sites, seed)
        assert portfolio.fleet == generate_fleet(sites) and portfolio.contracts == {}
    stale = tmp_path / "contracts" / "old.yaml"  # from an earlier run with more sites
    stale.parent.mkdir()
    stale.write_text("id: X\n")
    fleet_file, contracts_dir = write_portfolio(generate_portfolio(sites, 0), tmp_path)
    assert contracts_dir is None and not stale.exists()
    assert [s.id for s in load_fleet(fleet_file).sites] == ["nordvik", "elbe", "mesa"][:sites]
    if sites == 3:
        assert fleet_file.read_text() == EXAMPLE_FLEET.read_text()


def test_the_run_directory_gets_the_fleet_and_a_contract_file_per_site(tmp_path: Path) -> None:
    fleet_file, contracts_dir = write_portfolio(generate_portfolio(30, 3), tmp_path)
    assert contracts_dir == tmp_path / "contracts"
    fleet = load_fleet(fleet_file)
    contracts = load_contracts(contracts_dir)
    assert sorted(p.stem for p in contracts_dir.glob("*.yaml")) == sorted(contracts)
    assert fleet_contracts(contracts, fleet) == contracts
    assert set(contracts) == {s.id for s in fleet.sites}
    # A smaller run afterwards leaves none of them behind.
    write_portfolio(generate_portfolio(5, 3), tmp_path)
    assert len(load_contracts(contracts_dir)) == 5


def test_a_site_has_both_coordinates_or_neither_within_range() -> None:
    site = ("sites:\n  - id: s1\n    customer: C\n    region: GB\n    timezone: Europe/London\n"
            "{}    units:\n      - {{id: s1-u01, rated_power_kw: 1, rated_energy_kwh: 2, "
            "commissioned: 2024-01-01}}\n")
    fleet = parse_fleet(site.format("    lat: 51.5\n    lon: -0.1\n"), "fleet.yaml")
    assert (fleet.sites[0].lat, fleet.sites[0].lon) == (51.5, -0.1)
    assert parse_fleet(site.format(""), "fleet.yaml").sites[0].lat is None
    for extra, message in [
            ("    lat: 91\n    lon: 0\n", "sites[0].lat: must be less than or equal to 90"),
            ("    lat: 1\n    lon: -180.5\n", "sites[0].lon: must be greater than or equal"),
            ("    lat: yes\n    lon: 1\n", "sites[0].lat: must be a valid number"),
            ("    lat: 51.5\n", "sites[0]: lat and lon go together")]:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            parse_fleet(site.format(extra), "fleet.yaml")


def test_up_takes_the_fleet_30_preset_or_a_site_count_not_both() -> None:
    args = build_parser().parse_args(["up", "--fleet", "fleet-30"])
    assert FLEET_PRESETS[args.fleet_preset] == 30 and args.sites is None
    assert build_parser().parse_args(["up", "--sites", "12"]).fleet_preset is None
    for wrong in (["up", "--fleet", "fleet-31"], ["up", "--sites", "4", "--fleet", "fleet-30"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(wrong)


@pytest.mark.parametrize("sites", [4, 5, 8, 13])
def test_small_portfolios_have_every_measurement_period(sites: int) -> None:
    for seed in range(10):
        contracts = generate_portfolio(sites, seed).contracts
        periods = Counter(c["measurement_period"] for c in contracts.values())
        assert set(periods) == {"month", "quarter", "contract_year"}
        assert max(periods.values()) - min(periods.values()) <= 1
