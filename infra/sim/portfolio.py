"""A plausible portfolio of any size for the demo: `generate_portfolio(n, seed)` is a pure
function from a site count and a seed to fleet data (docs/availability-rules.md §1) and one
LTSA per site (contracts/contract.py), each as plain data.

Up to three sites it is today's demo fleet (`generate_fleet`: nordvik, elbe, mesa) with no
contracts of its own — the hand-written ones of `infra/sim/contracts/` apply. From four sites
on, the sites are drawn from the places of a few invented customers (Nordics, Germany and the
Netherlands, the UK, Spain, US states, Australia): names, ids, regions, IANA time zones and
coordinates of the place, 3-8 battery units sized for their market, commissioning spread over
2019-2025, and an LTSA in the region's currency with its own start, term, measurement period,
weights, derate rule, data-gap policy, excluded causes, maintenance allowance, guarantee
steps, LD (rate and cap scaled to the site's power), bonus and early-warning margin.
`bessmon up --sites N` / `--fleet fleet-30` writes them into the run directory (infra/up.py).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.sim.fleetgen import SiteProducts, fleet_yaml, generate_fleet, unit_data

DEMO_SITES = 3  # up to this many: the demo fleet and its hand-written contracts
FLEET_PRESETS = {"fleet-30": 30}  # `bessmon up --fleet NAME`: that many generated sites
PERIODS = ("month", "quarter", "contract_year")
FIRST_COD, LAST_COD = dt.date(2019, 1, 1), dt.date(2025, 9, 30)  # commercial operation
LAST_COMMISSIONING = dt.date(2025, 12, 31)  # of any unit (extensions come after the COD)


@dataclass(frozen=True)
class Market:
    timezone: str
    currency: str
    per_eur: float  # units of the currency per euro (rough, for the scale of LD rates)


MARKETS = {
    "SE1": Market("Europe/Stockholm", "SEK", 11.5),
    "SE2": Market("Europe/Stockholm", "SEK", 11.5),
    "SE3": Market("Europe/Stockholm", "SEK", 11.5),
    "SE4": Market("Europe/Stockholm", "SEK", 11.5),
    "NO1": Market("Europe/Oslo", "NOK", 11.7),
    "NO5": Market("Europe/Oslo", "NOK", 11.7),
    "DK1": Market("Europe/Copenhagen", "DKK", 7.46),
    "FI": Market("Europe/Helsinki", "EUR", 1.0),
    "DE": Market("Europe/Berlin", "EUR", 1.0),
    "NL": Market("Europe/Amsterdam", "EUR", 1.0),
    "GB": Market("Europe/London", "GBP", 0.85),
    "ES": Market("Europe/Madrid", "EUR", 1.0),
    "US-AZ": Market("America/Phoenix", "USD", 1.1),
    "US-NV": Market("America/Los_Angeles", "USD", 1.1),
    "US-CA": Market("America/Los_Angeles", "USD", 1.1),
    "US-TX": Market("America/Chicago", "USD", 1.1),
    "AU-NSW": Market("Australia/Sydney", "AUD", 1.65),
    "AU-VIC": Market("Australia/Melbourne", "AUD", 1.65),
    "AU-SA": Market("Australia/Adelaide", "AUD", 1.65),
    "AU-QLD": Market("Australia/Brisbane", "AUD", 1.65),
}


@dataclass(frozen=True)
class Place:
    name: str
    region: str  # a key of MARKETS
    lat: float
    lon: float


@dataclass(frozen=True)
class Customer:
    name: str
    durations_h: tuple[float, ...]  # storage durations built in its markets
    places: tuple[Place, ...] = field(default_factory=tuple)


CUSTOMERS = (
    Customer("Nordlys Energi AB", (1.0, 1.5, 2.0), (
        Place("Skagen", "DK1", 57.72, 10.58), Place("Gävle", "SE3", 60.67, 17.14),
        Place("Kalmar", "SE4", 56.66, 16.36), Place("Vaasa", "FI", 63.10, 21.62))),
    Customer("Vestfjord Lagring AS", (1.0, 2.0), (
        Place("Hamar", "NO1", 60.79, 11.07), Place("Stord", "NO5", 59.78, 5.50),
        Place("Luleå", "SE1", 65.58, 22.15), Place("Sundsvall", "SE2", 62.39, 17.31))),
    Customer("Lausitz Speicher GmbH", (1.0, 1.5, 2.0), (
        Place("Lausitz", "DE", 51.55, 14.35), Place("Altmark", "DE", 52.75, 11.55),
        Place("Uckermark", "DE", 53.15, 13.85), Place("Emsland", "DE", 52.70, 7.30))),
    Customer("Rheinland Netzbatterie GmbH", (1.0, 2.0), (
        Place("Eifel", "DE", 50.35, 6.75), Place("Breisgau", "DE", 48.00, 7.85),
        Place("Flevoland", "NL", 52.53, 5.60), Place("Zeeland", "NL", 51.50, 3.85))),
    Customer("Albion Grid Storage Ltd", (1.0, 2.0), (
        Place("Humber", "GB", 53.70, -0.30), Place("Fenland", "GB", 52.55, 0.05),
        Place("Severn", "GB", 51.60, -2.65), Place("Medway", "GB", 51.40, 0.55))),
    Customer("Caledonia Flex Power Ltd", (1.0, 2.0), (
        Place("Kintore", "GB", 57.23, -2.35), Place("Lanark", "GB", 55.67, -3.78),
        Place("Teesside", "GB", 54.58, -1.20), Place("Solway", "GB", 54.95, -3.30))),
    Customer("Meseta Almacenamiento SL", (2.0, 4.0), (
        Place("La Mancha", "ES", 39.40, -3.20), Place("Extremadura", "ES", 38.90, -6.35),
        Place("Monegros", "ES", 41.55, -0.25), Place("Cartagena", "ES", 37.65, -1.00))),
    Customer("Sonoran Power LLC", (2.0, 4.0), (
        Place("Sonora Flats", "US-AZ", 32.90, -112.10),
        Place("Gila Bend", "US-AZ", 32.95, -112.72),
        Place("Amargosa", "US-NV", 36.60, -116.40),
        Place("Eldorado Valley", "US-NV", 35.80, -114.95))),
    Customer("Lone Star Storage Partners LP", (1.0, 2.0), (
        Place("Permian", "US-TX", 31.85, -102.35), Place("Brazos", "US-TX", 30.65, -96.35),
        Place("Nueces", "US-TX", 27.80, -97.40), Place("Panhandle", "US-TX", 35.20, -101.85))),
    Customer("Pacific Coast Energy Storage LLC", (4.0,), (
        Place("Tehachapi", "US-CA", 35.13, -118.45),
        Place("Imperial Valley", "US-CA", 32.85, -115.55),
        Place("Salinas Valley", "US-CA", 36.40, -121.30),
        Place("Kings River", "US-CA", 36.50, -119.55))),
    Customer("Southern Cross Storage Pty Ltd", (2.0, 4.0), (
        Place("Hunter Valley", "AU-NSW", -32.60, 151.20),
        Place("Riverina", "AU-NSW", -34.75, 146.50),
        Place("Latrobe Valley", "AU-VIC", -38.20, 146.40),
        Place("Eyre Peninsula", "AU-SA", -33.80, 136.50),
        Place("Darling Downs", "AU-QLD", -27.50, 151.20))),
)
SUFFIXES = ("Battery Park", "Grid Storage", "BESS", "Energy Storage", "Storage Park",
            "Battery")
UNIT_POWERS_KW = (2000.0, 2500.0, 3000.0, 3450.0, 4000.0)
CAUSES = (("force_majeure", 0.8), ("customer_request", 0.6), ("environmental", 0.35))


@dataclass(frozen=True)
class Portfolio:
    fleet: dict[str, Any]  # the fleet file's data (`sites: [...]`)
    # Contract data by site id; empty for the demo fleet (its hand-written contracts apply).
    contracts: dict[str, dict[str, Any]]


def generate_portfolio(sites: int, seed: int = 0) -> Portfolio:
    """`sites` sites (≥ 1), the same for the same seed; see the module's doc."""
    if sites < 1:
        raise ValueError(f"a portfolio has at least one site, not {sites}")
    if sites <= DEMO_SITES:
        return Portfolio(generate_fleet(sites), {})
    rng = random.Random(f"bessmon-portfolio/{seed}")
    customers = rng.sample(CUSTOMERS, min(len(CUSTOMERS), math.ceil(sites / 3)))
    orders = {c.name: rng.sample(c.places, len(c.places)) for c in customers}
    periods = _balanced(rng, PERIODS, sites)
    years = _balanced(rng, tuple(range(FIRST_COD.year, LAST_COD.year + 1)), sites)
    fleet_sites: list[dict[str, Any]] = []
    contracts: dict[str, dict[str, Any]] = {}
    for k in range(sites):
        customer = customers[k % len(customers)]
        places = orders[customer.name]
        nth = k // len(customers)
        place, phase = places[nth % len(places)], nth // len(places) + 1
        site, cod = _site(rng, customer, place, phase, years[k], seed)
        fleet_sites.append(site)
        contracts[site["id"]] = _contract(rng, site, cod, MARKETS[place.region], periods[k])
    return Portfolio({"sites": fleet_sites}, contracts)


def _balanced(rng: random.Random, values: tuple[Any, ...], n: int) -> list[Any]:
    """`n` values in random order, each value as often as the others (±1)."""
    out: list[Any] = []
    while len(out) < n:
        out += rng.sample(values, len(values))
    out = out[:n]
    rng.shuffle(out)
    return out


def slug(text: str) -> str:
    """`Gävle` → `gavle`, `La Mancha` → `la-mancha`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(ascii_text.lower().split())


def _site(rng: random.Random, customer: Customer, place: Place, phase: int,
          year: int, seed: int = 0) -> tuple[dict[str, Any], dt.date]:
    """A site and its date of commercial operation (its LTSA starts then); its vendors and
    models are `SiteProducts.draw`'s (not drawn from `rng`: they change nothing else)."""
    site_id = slug(place.name) + (f"-{phase}" if phase > 1 else "")
    name = f"{place.name} {rng.choice(SUFFIXES)}" + (f" {phase}" if phase > 1 else "")
    first = dt.date(year, 1, 1)
    last = min(dt.date(year, 12, 31), LAST_COD)
    cod = first + dt.timedelta(days=rng.randrange((last - first).days + 1))
    power = rng.choice(UNIT_POWERS_KW)
    hours = rng.choice(customer.durations_h)
    count = rng.randint(3, 8)
    # Some sites were extended later: their last units are bigger or smaller, and younger.
    extension = rng.randint(1, 2) if count >= 4 and rng.random() < 0.3 else 0
    later_power = rng.choice([p for p in UNIT_POWERS_KW if p != power])
    later = cod + dt.timedelta(days=rng.randint(180, 540))
    if later > LAST_COMMISSIONING:  # no unit of the demo is still to be commissioned
        extension = 0
    products = SiteProducts.draw(site_id, seed)
    units = []
    for u in range(1, count + 1):
        unit_id = f"{site_id}-u{u:02d}"
        if u > count - extension:
            units.append(unit_data(unit_id, later_power, later_power * hours, later,
                                   product=products.extension,
                                   inverter_product=products.inverter))
        else:  # energised in the weeks before commercial operation
            units.append(unit_data(unit_id, power, power * hours,
                                   cod - dt.timedelta(days=rng.randint(0, 45)),
                                   product=products.battery,
                                   inverter_product=products.inverter))
    jitter = rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    return {"id": site_id, "name": name, "customer": customer.name, "region": place.region,
            "timezone": MARKETS[place.region].timezone,
            "lat": round(place.lat + jitter[0], 4), "lon": round(place.lon + jitter[1], 4),
            "units": units}, cod


def _nice(amount: float) -> int:
    """Round to two significant digits: 23456 → 23000."""
    step: int = 10 ** max(0, math.floor(math.log10(amount)) - 1)
    return max(1, round(amount / step)) * step


def _contract(rng: random.Random, site: dict[str, Any], cod: dt.date, market: Market,
              period: str) -> dict[str, Any]:
    power_mw = sum(u["rated_power_kw"] for u in site["units"]) / 1000.0
    term = rng.randint(17, 25)
    default = rng.choice((95.0, 95.5, 96.0, 96.5, 97.0, 97.5, 98.0))
    # Some guarantees start higher and step down to the default over the first years.
    steps = min(rng.randint(1, 3), round((99.0 - default) / 0.5)) if rng.random() < 0.5 else 0
    by_year = {y: default + 0.5 * (steps - y + 1) for y in range(1, steps + 1)}
    causes = ["grid_outage"] + [c for c, p in CAUSES if rng.random() < p]
    rate = _nice(power_mw * rng.uniform(900.0, 2500.0) * market.per_eur)
    contract: dict[str, Any] = {
        "id": f"LTSA-{site['id'].upper()}",
        "site": site["id"],
        "start": cod,
        "term_years": term,
        "measurement_period": period,
        "availability": {
            "weight": rng.choice(("equal", "power", "energy")),
            "derate": "pro_rata" if rng.random() < 0.7 else "available",
            "data_gap_policy": rng.choices(("unavailable", "excluded", "available"),
                                           (0.4, 0.35, 0.25))[0],
            "excluded_causes": causes,
            "maintenance_allowance_hours": rng.choice((24, 36, 48, 72, 96, 120, 168)),
        },
        "guarantee": {"default_pct": default, **({"by_contract_year": by_year} if by_year
                                                  else {})},
        "ld": {"currency": market.currency, "step_pct": rng.choice((0.01, 0.05, 0.1)),
               "rate_per_pct": rate,
               "cap_per_contract_year": _nice(rate * rng.choice((10, 12, 15, 20, 25)))},
    }
    best = max([default, *by_year.values()])
    threshold = min(99.5, best + rng.choice((1.0, 1.5, 2.0)))
    if threshold > best and rng.random() < 0.4:
        bonus_rate = _nice(rate * rng.choice((0.25, 0.5)))
        contract["bonus"] = {"threshold_pct": threshold, "rate_per_pct": bonus_rate,
                             "cap_per_contract_year": _nice(bonus_rate * rng.choice((5, 10)))}
    contract["early_warning_margin_pct"] = rng.choice((0.25, 0.5, 0.75, 1.0))
    return contract


class _ContractDumper(yaml.SafeDumper):
    """Lists and the guarantee's years on one line each, like the hand-written contracts."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.Node:
    flow = bool(data) and all(isinstance(k, int) for k in data)
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_ContractDumper.add_representer(list, _represent_list)
_ContractDumper.add_representer(dict, _represent_dict)


def contract_yaml(contract: dict[str, Any], site_name: str | None = None) -> str:
    """One contract file's text (contracts/contract.py reads it back unchanged)."""
    header = (f"# LTSA of {site_name or contract['site']}, generated by infra/sim/portfolio.py.\n"
              "# Terms: docs/availability-rules.md §1.\n")
    body: str = yaml.dump(contract, Dumper=_ContractDumper, sort_keys=False, width=100,
                          allow_unicode=True)
    return header + body


def write_portfolio(portfolio: Portfolio, run_dir: Path) -> tuple[Path, Path | None]:
    """Write the portfolio's fleet to `<run dir>/fleet.yaml` and its contracts, one file per
    site, to `<run dir>/contracts/` (emptied first: no contract of an earlier run is left).
    Returns the fleet file and the contracts directory (None: the portfolio has no contracts
    of its own, it is the demo fleet)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    contracts_dir = run_dir / "contracts"
    for old in contracts_dir.glob("*.yaml"):
        old.unlink()
    fleet_file = run_dir / "fleet.yaml"
    if not portfolio.contracts:
        fleet_file.write_text(fleet_yaml(portfolio.fleet), encoding="utf-8")
        return fleet_file, None
    fleet_file.write_text(fleet_yaml(portfolio.fleet, "infra/sim/portfolio.py"),
                          encoding="utf-8")
    contracts_dir.mkdir(exist_ok=True)
    names = {s["id"]: s.get("name") for s in portfolio.fleet["sites"]}
    for site_id, contract in portfolio.contracts.items():
        (contracts_dir / f"{site_id}.yaml").write_text(contract_yaml(contract, names[site_id]),
                                                      encoding="utf-8")
    return fleet_file, contracts_dir
