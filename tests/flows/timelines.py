"""Building telemetry for flow tests: a tiny fleet and samples as the connector makes them."""

from __future__ import annotations

from contracts.events import AssetReading, TelemetrySample
from contracts.fleet import parse_fleet

FLEET = parse_fleet("""
sites:
  - id: s1
    customer: Alpha
    region: SE3
    timezone: Europe/Stockholm
    units:
      - id: u1
        rated_power_kw: 2000
        rated_energy_kwh: 4000
        commissioned: 2024-01-01
        inverters:
          - id: u1-i1
            rated_power_kw: 2000
            blocks:
              - {id: u1-b1, rated_energy_kwh: 2000}
              - {id: u1-b2, rated_energy_kwh: 2000}
      - {id: u2, rated_power_kw: 1000, rated_energy_kwh: 2000, commissioned: 2024-01-01}
  - id: s2
    customer: Beta
    region: DE
    timezone: Europe/Berlin
    units:
      - {id: v1, rated_power_kw: 1000, rated_energy_kwh: 1000, commissioned: 2024-01-01}
""", "test-fleet.yaml")

T0 = 1_790_000_000_000  # 2026-09-21T13:33:20Z: ms since the epoch


def sample(unit: str, t_s: float, code: int = 0, **child_codes: int) -> TelemetrySample:
    """One poll of `unit` at T0 + t_s seconds; `child_codes` sets inverter/block codes
    (`u1_b1=3`), the others run."""
    assets = [AssetReading(id=unit, tags={"status_code": code, "soc_pct": 50.0})]
    for asset in FLEET.assets.values():
        if asset.unit_id == unit and asset.id != unit:
            child_code = child_codes.get(asset.id.replace("-", "_"), 0)
            assets.append(AssetReading(id=asset.id, tags={"status_code": child_code}))
    return TelemetrySample(device_id=unit, ts_ms=T0 + int(t_s * 1000), assets=tuple(assets))
