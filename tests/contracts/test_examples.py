"""The example contracts of the simulated sites and the documented example run: they load,
and the README's command gives the numbers computed by hand here."""

from __future__ import annotations

import json

import pytest

from connectors.settings import EXAMPLE_FLEET, REPO_ROOT
from contracts.contract import load_contract
from contracts.engine import evaluate
from contracts.fleet import Fleet
from infra.cli import main

CONTRACTS = REPO_ROOT / "infra" / "sim" / "contracts"
EXAMPLES = REPO_ROOT / "docs" / "examples"


def test_the_example_contracts_differ_in_their_terms(example_fleet: Fleet) -> None:
    contracts = {p.stem: load_contract(p) for p in sorted(CONTRACTS.glob("*.yaml"))}
    assert set(contracts) == {s.id for s in example_fleet.sites}
    assert {c.measurement_period for c in contracts.values()} == {
        "month", "quarter", "contract_year"}
    assert {c.availability.weight for c in contracts.values()} == {"equal", "power", "energy"}
    assert {c.availability.data_gap_policy for c in contracts.values()} == {
        "available", "unavailable", "excluded"}
    assert len({c.ld.cap_per_contract_year for c in contracts.values()}) == 3
    assert sum(c.bonus is not None for c in contracts.values()) == 2
    assert all(c.guarantee.by_contract_year for c in contracts.values())


@pytest.mark.parametrize(("site", "period"), [("elbe", "2026-Q3"), ("mesa", "CY3")])
def test_each_example_contract_evaluates(example_fleet: Fleet, site: str, period: str) -> None:
    contract = load_contract(CONTRACTS / f"{site}.yaml")
    ev = evaluate(example_fleet, contract, [], [], period)
    p = ev.periods[0]
    # No data: elbe excludes gaps (nothing counted), mesa counts them as available.
    assert p.availability == (None if site == "elbe" else 1.0)
    assert p.ld.amount == 0


def test_the_documented_example(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["contracts", "evaluate", "--fleet", str(EXAMPLE_FLEET),
            "--contract", str(CONTRACTS / "nordvik.yaml"),
            "--status", str(EXAMPLES / "nordvik-status-2026-10.csv"),
            "--exclusions", str(EXAMPLES / "nordvik-exclusions-2026-10.csv"),
            "--period", "2026-10"]
    assert main(argv) == 0
    period = json.loads(capsys.readouterr().out)["periods"][0]
    # October: 745 h; the site's 4 h grid outage excluded for all six units.
    # u02 fault 6.5 h; u03 36 h at half capacity = 18 h; u04 60 h maintenance: 48 h of
    # allowance excluded, 12 h lost; u05 2 h without data (policy unavailable); u06 one of
    # 16 equal blocks down 24 h = 1.5 h. Energy weights are equal:
    # A = 1 − 40 / (5 · 741 + 693) = 99.0905 % ≥ 98.0 (CY2): no LD;
    # bonus 0.0905 above 99 % → 0.09 · 5 000 = 450.
    assert period["availability_pct"] == 99.09
    assert (period["contract_year"], period["guaranteed_pct"]) == (2, 98.0)
    assert (period["ld"], period["bonus"]) == (0.0, 450.0)
    lost = {u["asset_id"]: u["lost_hours"] for u in period["units"]}
    assert lost == {"nordvik-u01": 0.0, "nordvik-u02": 6.5, "nordvik-u03": 18.0,
                    "nordvik-u04": 12.0, "nordvik-u05": 2.0, "nordvik-u06": 1.5}
    assert {u["excluded_hours"] for u in period["units"] if u["asset_id"] != "nordvik-u04"} \
        == {4.0}

