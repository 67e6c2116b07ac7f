// Data shaped like the API's, for the unit tests.
import type { AlarmView, BreachEvent, ContractKpis, SiteSnapshot, SiteSummary } from "./types";

export function contract(over: Partial<ContractKpis> = {}): ContractKpis {
  return { contract_id: "LTSA-X", kind: "ltsa", currency: "EUR", as_of_ms: 1, period: "2026-10",
           period_start_ms: 0, period_end_ms: 1, contract_year: 3, actual_pct: 99,
           guaranteed_pct: 97, shortfall_pct: 0, ld_year_to_date: 0, projected_pct: 99,
           projected_ld: 0, warning_level: "ok", ...over };
}

export function snapshot(siteId: string, pct: number | null, tsMs: number,
                         over: Partial<SiteSnapshot> = {}): SiteSnapshot {
  return { v: 2, kind: "snapshot", site_id: siteId, name: siteId, customer: "C", region: "R", ts_ms: tsMs,
           final_ms: tsMs, windows: { last_hour: pct, today: pct },
           units_by_state: { available: 2, derated: 0, unavailable: 0, unknown: 0 },
           units: [], contract: null, counts: {}, ...over };
}

export function summary(id: string, energyKwh: number, units = 2,
                        availability: SiteSnapshot | null = null): SiteSummary {
  return { id, name: id, customer: "C", region: "R", timezone: "UTC", units,
           rated_power_kw: energyKwh / 2, rated_energy_kwh: energyKwh, stale: false,
           availability };
}

export function breach(over: Partial<BreachEvent> = {}): BreachEvent {
  return { v: 1, breach_id: "cell-temp-high:major:elbe-u01-i1-b3:1000", rule_id: "cell-temp-high",
           kind: "limit", asset_id: "elbe-u01-i1-b3", site_id: "elbe", tag: "cell_temp_max_c",
           severity: "major", state: "raised", raised_ms: 1000, ts_ms: 1000, value: 50,
           threshold: 45, message: "cell_temp_max_c 50 above 45", ...over };
}

export function alarm(over: Partial<AlarmView> = {}): AlarmView {
  return { breach_id: "r:major:a:1", asset_id: "a", site_id: "s", rule_id: "r", kind: "limit",
           severity: "major", state: "active_unacknowledged", raised_ms: 1, value: 1,
           threshold: 0, message: "m", acknowledged_by: null, acknowledged_ms: null,
           shelved_until_ms: null, shelve_reason: null, ...over };
}
