"""Hot state written the way the flows write it — through `flows.redis_sink.RedisSink`, so
the keys, the hashes and the live-channel messages (with their sequence numbers) are the
real ones: site snapshots, active breaches and alerts of the example fleet's sites."""

from __future__ import annotations

import time

from contracts.events import Alert, BreachEvent, ContractKpis, SiteAvailability
from flows.redis_sink import HotState, RedisSink
from flows.sink_errors import ListReporter

# The example fleet (infra/sim/fleet.yaml): site → (customer, region, contract).
SITES = {
    "nordvik": ("Nordvik Energi AB", "SE3", "LTSA-NORDVIK"),
    "elbe": ("Elbe Netz GmbH", "DE", "LTSA-ELBE"),
    "mesa": ("Sonoran Power LLC", "US-AZ", "LTSA-MESA"),
}


def now_ms() -> int:
    return int(time.time() * 1000)


def write(redis_url: str, *items: HotState) -> None:
    """What one batch of the flows' Redis sink does with these items."""
    sink = RedisSink(redis_url, ListReporter()).build("redis", 0, 1)
    try:
        sink.write_batch(list(items))
    finally:
        sink.close()


def snapshot(site_id: str, pct: float, *, ld: float = 0.0) -> SiteAvailability:
    """A site snapshot with contract money (`ld` year to date) in it."""
    customer, region, contract_id = SITES[site_id]
    ts = now_ms()
    return SiteAvailability(
        site_id=site_id, customer=customer, region=region, ts_ms=ts,
        windows={"last_hour": pct, "today": pct},
        units_by_state={"available": 1, "derated": 0, "unavailable": 0, "unknown": 0},
        units=(), contract=ContractKpis(
            contract_id=contract_id, currency="EUR", as_of_ms=ts, period="2026-10",
            period_start_ms=0, period_end_ms=1, contract_year=2, actual_pct=pct,
            guaranteed_pct=97.0, shortfall_pct=0.0, ld_year_to_date=ld, projected_pct=pct,
            projected_ld=ld, warning_level="ok"))


def breach(site_id: str, asset_id: str, *, severity: str = "major",
           raised_ms: int | None = None, state: str = "raised") -> BreachEvent:
    """A limit breach with the id format of flows/breaches.py (rule:severity:asset:ms)."""
    raised = raised_ms or now_ms() - 60_000
    return BreachEvent(breach_id=f"cell-temp-high:{severity}:{asset_id}:{raised}",
                       rule_id="cell-temp-high", kind="limit", asset_id=asset_id,
                       site_id=site_id, tag="cell_temp_max_c",
                       severity=severity,  # type: ignore[arg-type]
                       state=state,  # type: ignore[arg-type]
                       raised_ms=raised, ts_ms=raised, value=52.0, threshold=45.0,
                       message=f"{asset_id}: cell temperature 52.0 °C over 45.0 °C")


def alert(site_id: str | None, scope_id: str, *, state: str = "raised") -> Alert:
    raised = now_ms() - 30_000
    return Alert(alert_id=f"telemetry_gap:{scope_id}:{raised}", kind="telemetry_gap",
                 scope_id=scope_id, site_id=site_id, severity="warning",
                 state=state,  # type: ignore[arg-type]
                 raised_ms=raised, ts_ms=raised, message=f"{scope_id} stopped reporting")
