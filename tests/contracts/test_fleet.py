"""Fleet files: the example loads; every invalid file is refused with its exact message."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import InvalidInput
from contracts.fleet import load_fleet, parse_fleet

VALID = """\
sites:
  - id: nordvik
    name: Nordvik Storage
    customer: Nordvik Energi AB
    region: SE3
    timezone: Europe/Stockholm
    units:
      - id: nordvik-u01
        rated_power_kw: 2500
        rated_energy_kwh: 5000
        commissioned: 2024-09-20
        inverters:
          - id: nordvik-u01-i1
            rated_power_kw: 2500
            blocks:
              - {id: nordvik-u01-i1-b1, rated_energy_kwh: 1250}
      - id: nordvik-u02
        rated_power_kw: 2500
        rated_energy_kwh: 5000
        commissioned: 2024-09-20
        site_color: blue
"""


def test_the_spec_layout_loads_with_its_hierarchy() -> None:
    fleet = parse_fleet(VALID, "fleet.yaml")
    assets = fleet.assets
    assert set(assets) == {"nordvik", "nordvik-u01", "nordvik-u01-i1", "nordvik-u01-i1-b1",
                           "nordvik-u02"}
    block = assets["nordvik-u01-i1-b1"]
    assert (block.kind, block.site_id, block.unit_id, block.parent_id) == (
        "block", "nordvik", "nordvik-u01", "nordvik-u01-i1")
    assert assets["nordvik"].children == ("nordvik-u01", "nordvik-u02")
    assert fleet.unit("nordvik-u02").inverters == ()  # inverters may be absent
    assert str(fleet.site("nordvik").tz) == "Europe/Stockholm"


WITH_VENDORS = VALID.replace(
    "        commissioned: 2024-09-20\n        inverters:",
    "        commissioned: 2024-09-20\n        vendor: Nordcell\n        model: NC-4000\n"
    "        inverters:", 1).replace(
    "            rated_power_kw: 2500\n            blocks:",
    "            rated_power_kw: 2500\n            vendor: Ampyra\n            model: AP 1250\n"
    "            blocks:", 1)


def test_units_and_inverters_name_their_vendor_and_model() -> None:
    assets = parse_fleet(WITH_VENDORS, "fleet.yaml").assets
    by_id = {a: (assets[a].vendor, assets[a].model) for a in assets}
    assert by_id == {
        "nordvik": (None, None),
        "nordvik-u01": ("Nordcell", "NC-4000"),
        "nordvik-u01-i1": ("Ampyra", "AP 1250"),
        "nordvik-u01-i1-b1": ("Nordcell", "NC-4000"),  # a DC block is its unit's
        "nordvik-u02": (None, None),  # absent: unknown
    }


LABEL = "must be 1-64 printable characters, not starting or ending with a blank"


@pytest.mark.parametrize(("value", "message"), [
    ("4000", "must be a valid string (got 4000)"),  # a YAML number: quote it
    ("' NC-4000'", f"{LABEL} (got ' NC-4000')"),
    ("''", f"{LABEL} (got '')"),
    ("x" * 65, f"{LABEL} (got '{'x' * 65}')"),
    ("\"NC\\t4000\"", f"{LABEL} (got 'NC\\t4000')"),
])
def test_a_model_that_is_no_name_is_refused(value: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(WITH_VENDORS.replace("model: NC-4000", f"model: {value}"), "fleet.yaml")
    assert str(caught.value) == f"fleet.yaml:13: sites[0].units[0].model: {message}"


def test_the_example_fleet_loads(example_fleet: object) -> None:
    from contracts.fleet import Fleet

    assert isinstance(example_fleet, Fleet)
    assert len(example_fleet.sites) == 3
    assert all(len(u.inverters) == 2 for s in example_fleet.sites for u in s.units)


INVALID = [
    # (replace this, with that, expected message)
    ("rated_power_kw: 2500\n        rated_energy_kwh: 5000\n        commissioned: 2024-09-20\n"
     "        inverters:",
     "rated_power_kw: -1\n        rated_energy_kwh: 5000\n        commissioned: 2024-09-20\n"
     "        inverters:",
     "fleet.yaml:9: sites[0].units[0].rated_power_kw: must be greater than 0 (got -1)"),
    ("timezone: Europe/Stockholm", "timezone: Europe/Stockholmm",
     "fleet.yaml:6: sites[0].timezone: unknown IANA time zone 'Europe/Stockholmm'"),
    ("    customer: Nordvik Energi AB\n", "",
     "fleet.yaml:2: sites[0].customer: required key is missing"),
    ("id: nordvik-u02", "id: nordvik-u01",
     "fleet.yaml:17: sites[0].units[1].id: duplicate asset id 'nordvik-u01'"),
    ("{id: nordvik-u01-i1-b1, rated_energy_kwh: 1250}",
     "{id: nordvik-u01-i1-b1, rated_energy_kwh: lots}",
     "fleet.yaml:16: sites[0].units[0].inverters[0].blocks[0].rated_energy_kwh: must be a valid "
     "number (got 'lots')"),
    ("commissioned: 2024-09-20\n        inverters:", "commissioned: 2024-13-40\n        inverters:",
     "fleet.yaml:11: sites[0].units[0].commissioned: '2024-13-40' is not "
     "a date: month must be in 1..12"),
    ("- id: nordvik\n", "- id: nord vik\n",
     "fleet.yaml:2: sites[0].id: must be 1-64 letters, digits, '.', '_' or '-', starting with a "
     "letter or digit (got 'nord vik')"),
    ("    name: Nordvik Storage\n", "    name: Nordvik Storage\n   broken: [\n",
     "fleet.yaml:4: not valid YAML: expected <block end>, but found '<block mapping start>'"),
]


@pytest.mark.parametrize(("old", "new", "message"), INVALID,
                         ids=[m.split(": ", 2)[1] for _, _, m in INVALID])
def test_invalid_fleet_is_refused_with_file_key_and_problem(old: str, new: str,
                                                            message: str) -> None:
    assert old in VALID
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(VALID.replace(old, new, 1), "fleet.yaml")
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "message"), [
    ("", "fleet.yaml: must be a mapping with a 'sites' list"),
    ("sites: []\n", "fleet.yaml:1: sites: must not be empty"),
    ("- a\n- b\n", "fleet.yaml:1: must be a mapping with a 'sites' list"),
])
def test_degenerate_files(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(text, "fleet.yaml")
    assert str(caught.value) == message


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.yaml: cannot read: No such file"):
        load_fleet(tmp_path / "missing.yaml")
