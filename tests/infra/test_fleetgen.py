"""The generated fleets name vendors and models: several across a fleet, the same for the
same seed, and the example fleet file is the generator's."""

from __future__ import annotations

from connectors.settings import EXAMPLE_FLEET
from contracts.fleet import parse_fleet
from infra.sim.fleetgen import (
    BATTERY_PRODUCTS,
    INVERTER_PRODUCTS,
    SiteProducts,
    fleet_yaml,
    generate_fleet,
)
from infra.sim.portfolio import generate_portfolio


def products(data: dict[str, object]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(battery products, inverter products) of a generated fleet, read back by the parser."""
    fleet = parse_fleet(fleet_yaml(data), "fleet.yaml")
    units = [u for s in fleet.sites for u in s.units]
    batteries = {(u.vendor, u.model) for u in units}
    inverters = {(i.vendor, i.model) for u in units for i in u.inverters}
    assert None not in {v for pair in batteries | inverters for v in pair}
    return batteries, inverters  # type: ignore[return-value]


def test_a_generated_fleet_has_several_vendors_the_same_for_the_same_seed() -> None:
    assert generate_fleet(6, seed=4) == generate_fleet(6, seed=4)
    assert generate_fleet(6, seed=4) != generate_fleet(6, seed=5)
    batteries, inverters = products(generate_fleet(6, units_per_site=2, blocks_per_inverter=1))
    assert batteries <= set(BATTERY_PRODUCTS) and inverters <= set(INVERTER_PRODUCTS)
    assert len({vendor for vendor, _ in batteries}) >= 2
    # The demo's three sites already have three battery makers and two inverter makers.
    batteries, inverters = products(generate_fleet(3))
    assert {v for v, _ in batteries} == {"Voltara", "Brightmoor", "Nordcell"}
    assert {v for v, _ in inverters} == {"Ampyra", "Tessin Drives"}


def test_a_sites_extension_units_are_its_extension_product() -> None:
    site = generate_fleet(1, units_per_site=6)["sites"][0]  # type: ignore[index]
    drawn = SiteProducts.draw(site["id"])
    assert [(u["vendor"], u["model"]) for u in site["units"]] == \
        [drawn.battery] * 4 + [drawn.extension] * 2
    assert {(i["vendor"], i["model"]) for u in site["units"] for i in u["inverters"]} == \
        {drawn.inverter}


def test_a_portfolio_names_vendors_too() -> None:
    batteries, inverters = products(generate_portfolio(8, 0).fleet)
    assert len({v for v, _ in batteries}) >= 2 and len({v for v, _ in inverters}) == 2


def test_the_example_fleet_file_is_the_generators() -> None:
    assert EXAMPLE_FLEET.read_text(encoding="utf-8") == fleet_yaml(generate_fleet(3))
