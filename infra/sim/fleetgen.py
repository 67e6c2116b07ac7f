"""Generate fleet files of any size in the layout of docs/availability-rules.md §1."""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class SiteTemplate:
    id: str
    name: str
    customer: str
    region: str
    timezone: str
    units: int


TEMPLATES = (
    SiteTemplate("nordvik", "Nordvik Storage", "Nordvik Energi AB", "SE3", "Europe/Stockholm", 6),
    SiteTemplate("elbe", "Elbe Grid Battery", "Elbe Netz GmbH", "DE", "Europe/Berlin", 5),
    SiteTemplate("mesa", "Mesa Verde BESS", "Sonoran Power LLC", "US-AZ", "America/Phoenix", 4),
)


Product = tuple[str, str]  # (vendor, model)
# Invented makers and products (no real trademarks): battery systems, and inverters (PCS).
BATTERY_PRODUCTS: tuple[Product, ...] = (
    ("Nordcell", "NC-4000"), ("Nordcell", "NC-5000"), ("Voltara", "VX-2"), ("Voltara", "VX-3"),
    ("Brightmoor", "BM-Cube 2"))
INVERTER_PRODUCTS: tuple[Product, ...] = (
    ("Ampyra", "AP-1250"), ("Ampyra", "AP-2500"), ("Tessin Drives", "TD-1250"))


@dataclass(frozen=True)
class SiteProducts:
    """What a site was built with: its battery units' and inverters' products, and the
    battery product of the units added later (an extension) — another one, or the same."""

    battery: Product
    inverter: Product
    extension: Product

    @classmethod
    def draw(cls, site_id: str, seed: int = 0) -> SiteProducts:
        """The same for the same site and seed (a generator of its own: drawing them changes
        nothing else a seed gives)."""
        rng = random.Random(f"bessmon-vendors/{seed}/{site_id}")
        battery = rng.choice(BATTERY_PRODUCTS)
        inverter = rng.choice(INVERTER_PRODUCTS)
        others = [p for p in BATTERY_PRODUCTS if p != battery]
        extension = rng.choice(others) if rng.random() < 0.5 else battery
        return cls(battery, inverter, extension)


def unit_data(unit_id: str, power_kw: float, energy_kwh: float, commissioned: dt.date, *,
              inverters_per_unit: int = 2, blocks_per_inverter: int = 8,
              profile: str = "bess-unit-v1", product: Product | None = None,
              inverter_product: Product | None = None) -> dict[str, object]:
    """One battery unit as plain data: its power split evenly over its inverters, its energy
    over their DC blocks; `product` and `inverter_product` the (vendor, model) of the unit
    and of its inverters, when given."""
    inverters = [
        {
            "id": f"{unit_id}-i{i}",
            "rated_power_kw": power_kw / inverters_per_unit,
            **_named(inverter_product),
            "blocks": [
                {"id": f"{unit_id}-i{i}-b{b}",
                 "rated_energy_kwh": energy_kwh / inverters_per_unit / blocks_per_inverter}
                for b in range(1, blocks_per_inverter + 1)
            ],
        }
        for i in range(1, inverters_per_unit + 1)
    ]
    return {"id": unit_id, "rated_power_kw": power_kw, "rated_energy_kwh": energy_kwh,
            "commissioned": commissioned, "device_profile": profile, **_named(product),
            "inverters": inverters}


def _named(product: Product | None) -> dict[str, str]:
    return {} if product is None else {"vendor": product[0], "model": product[1]}


def generate_fleet(
    sites: int = 3,
    *,
    units_per_site: int | None = None,
    inverters_per_unit: int = 2,
    blocks_per_inverter: int = 8,
    profile: str = "bess-unit-v1",
    seed: int = 0,
) -> dict[str, object]:
    """A fleet as plain data; site `k ≥ 3` repeats template `k % 3` with a numbered id. Each
    site's vendors and models are `SiteProducts.draw(site, seed)`'s: its last third of units
    an extension."""
    out = []
    for k in range(sites):
        t = TEMPLATES[k % len(TEMPLATES)]
        n = k // len(TEMPLATES)
        site_id = t.id if n == 0 else f"{t.id}{n + 1}"
        commissioned = dt.date(2024, 3, 1) + dt.timedelta(days=30 * (k % 12))
        count = units_per_site or t.units
        products = SiteProducts.draw(site_id, seed)
        first = math.ceil(count * 2 / 3)  # the units built first; the rest an extension
        units = [unit_data(f"{site_id}-u{u:02d}", 2500.0, 5000.0, commissioned,
                           inverters_per_unit=inverters_per_unit,
                           blocks_per_inverter=blocks_per_inverter, profile=profile,
                           product=products.battery if u <= first else products.extension,
                           inverter_product=products.inverter)
                 for u in range(1, count + 1)]
        out.append({"id": site_id, "name": t.name if n == 0 else f"{t.name} {n + 1}",
                    "customer": t.customer, "region": t.region, "timezone": t.timezone,
                    "units": units})
    return {"sites": out}


class _FlowBlocks(yaml.SafeDumper):
    """Blocks on one line each, the rest in block style: readable and diff-friendly."""

    def ignore_aliases(self, data: object) -> bool:
        return True  # a date shared by several units is written out each time, not `*id001`


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, object]) -> yaml.Node:
    flow = set(data) == {"id", "rated_energy_kwh"}
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_FlowBlocks.add_representer(dict, _represent_dict)


def fleet_yaml(fleet: dict[str, object], source: str = "infra/sim/fleetgen.py") -> str:
    header = (f"# Example fleet served by the simulator (generated by {source}).\n"
              "# Layout: docs/availability-rules.md §1; `device_profile` names the register\n"
              "# map in infra/sim/profiles/ the unit's controller speaks; `vendor` and\n"
              "# `model` (invented names) are what the reliability analytics group by.\n")
    body: str = yaml.dump(fleet, Dumper=_FlowBlocks, sort_keys=False, width=100,
                          allow_unicode=True)
    return header + body


if __name__ == "__main__":
    import sys

    print(fleet_yaml(generate_fleet(int(sys.argv[1]) if len(sys.argv) > 1 else 3)), end="")
