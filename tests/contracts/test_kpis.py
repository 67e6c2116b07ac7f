"""A site's contract now (contracts/kpis.py): the windows and KPIs from the incremental
accounting, and the LD-risk early warning raised and cleared as the warning level moves."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pytest

from contracts.events import Alert, ContractKpis
from contracts.incremental import ContractAccumulator
from contracts.kpis import contract_kpis, ld_warning
from tests.contracts.builders import FLEET, at, contract, full, iv

HOUR_US = 3_600_000_000


def ten_days_losing(hours_per_day: float, **changes: object) -> ContractAccumulator:
    """u1 loses `hours_per_day` at the start of each of the first ten days of June 2026; u2
    loses nothing; final up to June 11th."""
    acc = ContractAccumulator(FLEET, contract(**changes), allowed_lateness_us=HOUR_US,
                              start_us=at("2026-06-01 00:00"))
    day = dt.timedelta(days=1)
    t = dt.datetime(2026, 6, 1)
    for _ in range(10):
        cut = t + dt.timedelta(hours=hours_per_day)
        acc.add(iv("u1", t.isoformat(), cut.isoformat(), "unavailable"))
        acc.add(iv("u1", cut.isoformat(), (t + day).isoformat()))
        acc.add(full("u2", t.isoformat(), (t + day).isoformat()))
        t += day
    acc.advance(at("2026-06-11 00:00"))
    return acc


def test_nothing_before_any_time_is_final() -> None:
    acc = ten_days_losing(2.0)
    assert contract_kpis(acc, None) == ({}, None)
    assert contract_kpis(acc, at("2026-06-01 00:00") // 1000) == ({}, None)


def test_windows_and_kpis_of_the_open_period() -> None:
    acc = ten_days_losing(2.0)
    final_ms = at("2026-06-11 00:00") // 1000
    windows, kpis = contract_kpis(acc, final_ms)
    so_far = 100.0 * (1 - 20 / 480)  # equal weights: 20 h lost of 2 × 240 h
    assert windows == pytest.approx({
        "month_to_date": so_far, "trailing_7d": 100.0 * (1 - 14 / 336),
        "trailing_30d": so_far, "contract_year_to_date": so_far})
    assert kpis is not None
    assert (kpis.contract_id, kpis.kind, kpis.currency, kpis.period, kpis.contract_year) == (
        "LTSA-T", "ltsa", "EUR", "2026-06", 3)
    assert kpis.as_of_ms == final_ms
    assert kpis.period_start_ms == at("2026-06-01 00:00") // 1000
    assert kpis.period_end_ms == at("2026-07-01 00:00") // 1000
    assert kpis.actual_pct == pytest.approx(so_far)
    assert kpis.guaranteed_pct == 97.0
    assert kpis.shortfall_pct == pytest.approx(97.0 - so_far)
    assert kpis.ld_year_to_date == pytest.approx(23200.0)  # 1.16 (steps of 0.01) · 20 000
    # The trailing week's loss rate over the rest of the month: 2 h of 48 each day.
    assert kpis.projected_pct == pytest.approx(100.0 * (1 - 2 / 48))
    assert kpis.projected_ld == pytest.approx(23200.0)
    assert kpis.warning_level == "ld_risk"
    technical = contract_kpis(acc, final_ms, kind="technical")[1]
    assert technical is not None and technical.kind == "technical"


def test_outside_the_term_only_the_windows() -> None:
    acc = ten_days_losing(0.0, term_years=1)  # the term ended on 2025-06-01
    windows, kpis = contract_kpis(acc, at("2026-06-11 00:00") // 1000)
    assert kpis is None
    assert set(windows) == {"month_to_date", "trailing_7d", "trailing_30d"}


def kpis_at(level: Literal["ok", "watch", "ld_risk"],
            kind: Literal["ltsa", "technical"] = "ltsa") -> ContractKpis:
    return ContractKpis(
        contract_id="LTSA-T", kind=kind, currency="EUR", as_of_ms=0, period="2026-06",
        period_start_ms=0, period_end_ms=1, contract_year=3, actual_pct=96.5,
        guaranteed_pct=97.0, shortfall_pct=0.5, ld_year_to_date=0.0, projected_pct=96.0,
        projected_ld=20000.0, warning_level=level)


def test_ld_warning_raised_once_per_level_and_cleared_once_back_to_ok() -> None:
    def step(active: Alert | None, kpis: ContractKpis | None, now: int
             ) -> tuple[Alert | None, list[Alert]]:
        return ld_warning(active, kpis, site_id="alpha", contract_id="LTSA-T", now_ms=now)

    assert step(None, None, 1) == (None, [])
    assert step(None, kpis_at("ok"), 1) == (None, [])
    active, out = step(None, kpis_at("watch"), 2)
    assert [(a.state, a.severity, a.details["level"]) for a in out] == [
        ("raised", "minor", "watch")]
    assert active is not None and active == out[0] and active.alert_id == "ld_risk:alpha:2"
    assert active.message == ("LTSA-T 2026-06: projected 96.00 % against 97 % guaranteed "
                              "(watch; projected LD 20,000 EUR)")
    assert step(active, kpis_at("watch"), 3) == (active, [])  # no news: nothing sent
    active, out = step(active, kpis_at("ld_risk"), 4)
    assert [(a.state, a.severity, a.details["level"], a.ts_ms) for a in out] == [
        ("cleared", "minor", "watch", 4), ("raised", "major", "ld_risk", 4)]
    assert out[0].alert_id == "ld_risk:alpha:2" and out[0].message == (
        "LTSA-T: projection back to ld_risk")
    cleared, out = step(active, kpis_at("ok"), 5)
    assert cleared is None
    assert [(a.state, a.alert_id, a.message) for a in out] == [
        ("cleared", "ld_risk:alpha:4", "LTSA-T: projection back to ok")]
    # A technical contract has no guarantee: never a warning, and one active is cleared.
    assert step(None, kpis_at("ld_risk", "technical"), 6) == (None, [])
    assert step(active, kpis_at("ld_risk", "technical"), 6)[0] is None


def test_fleet_contracts_keeps_the_contracts_of_the_fleets_sites_only() -> None:
    from contracts.contract import fleet_contracts
    from contracts.fleet import parse_fleet
    from tests.contracts.builders import contract

    fleet = parse_fleet("""
sites:
  - id: s1
    customer: A
    region: SE3
    timezone: Europe/Stockholm
    units: [{id: u1, rated_power_kw: 1, rated_energy_kwh: 1, commissioned: 2024-01-01}]
""", "f.yaml")
    mine, other = contract(site="s1", start="2025-01-01"), contract(site="s9", start="2025-01-01")
    assert fleet_contracts({"s1": mine, "s9": other}, fleet) == {"s1": mine}
    assert fleet_contracts({}, fleet) == {}
