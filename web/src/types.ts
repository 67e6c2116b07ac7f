// What the API sends, as the dashboard reads it (api/routes/*.py, contracts/events.py).

export type State = "available" | "derated" | "unavailable" | "unknown";
export type WarningLevel = "ok" | "watch" | "ld_risk";
export type Severity = "critical" | "major" | "minor" | "warning";
export type AlarmState = "active_unacknowledged" | "active_acknowledged" | "shelved";
export type TicketStatus = "open" | "in_progress" | "resolved";
export type AssetKind = "site" | "unit" | "inverter" | "block";

export const WINDOWS = ["last_hour", "today", "month_to_date", "contract_year_to_date",
  "trailing_7d", "trailing_30d"] as const;
export type WindowName = (typeof WINDOWS)[number];

export interface Me {
  subject: string;
  role: string;
  via: string;
  permissions: string[];
  customers: string[];
  regions: string[];
  sites: string[];
}

export interface UnitAvailability {
  id: string;
  state: State;
  cause: string | null;
  derate_fraction: number | null;
  last_hour_pct: number | null;
  today_pct: number | null;
}

export interface ContractKpis {
  contract_id: string;
  kind: "ltsa" | "technical";
  currency: string;
  as_of_ms: number;
  period: string;
  period_start_ms: number;
  period_end_ms: number;
  contract_year: number;
  actual_pct: number | null;
  guaranteed_pct: number;
  shortfall_pct: number | null;
  ld_year_to_date: number | null; // null: the caller's role may not see money
  projected_pct: number | null;
  projected_ld: number | null;
  warning_level: WarningLevel;
}

export interface SiteSnapshot {
  site_id: string;
  name: string | null;
  customer: string;
  region: string;
  ts_ms: number;
  final_ms: number | null;
  windows: Partial<Record<WindowName, number | null>>;
  units_by_state: Partial<Record<State, number>>;
  units: UnitAvailability[];
  contract: ContractKpis | null;
}

export interface SiteSummary {
  id: string;
  name: string | null;
  customer: string;
  region: string;
  timezone: string;
  units: number;
  rated_power_kw: number;
  rated_energy_kwh: number;
  stale: boolean;
  availability: SiteSnapshot | null;
}

export interface FleetKpis {
  sites: number;
  units: number;
  stale_sites: number;
  units_by_state: Record<string, number>;
  windows: Record<string, number | null>;
  warning_levels: Record<string, number>;
  ld_year_to_date: Record<string, number> | null;
}

export interface FleetOverview {
  kpis: FleetKpis;
  sites: SiteSummary[];
}

export interface AssetNode {
  id: string;
  kind: AssetKind;
  rated_power_kw: number | null;
  rated_energy_kwh: number | null;
  state: State | null;
  cause: string | null;
  derate_fraction: number | null;
  last_hour_pct: number | null;
  today_pct: number | null;
  children: AssetNode[];
}

export interface LiveStatus {
  state: State | null;
  cause: string | null;
  derate_fraction: number | null;
  last_hour_pct: number | null;
  today_pct: number | null;
}

export interface AlarmView {
  breach_id: string;
  asset_id: string;
  site_id: string;
  rule_id: string;
  severity: Severity;
  state: AlarmState;
  raised_ms: number;
  value: number;
  threshold: number;
  message: string;
  acknowledged_by: string | null;
  acknowledged_ms: number | null;
  shelved_until_ms: number | null;
  shelve_reason: string | null;
}

export interface TicketRef {
  provider: string;
  ticket_id: string;
  status: TicketStatus;
  summary: string;
  url: string | null;
}

export interface TicketEvent extends TicketRef {
  asset_id: string | null;
  priority: string | null;
  category: string | null;
  opened_ms: number;
  updated_ms: number;
  resolved_ms: number | null;
}

export interface Episode {
  episode_id: string;
  asset_id: string;
  site_id: string;
  start_ms: number;
  end_ms: number | null;
  state: State;
  cause: string | null;
  lost_hours: number;
  lost_mwh: number;
  tickets: TicketRef[];
}

export interface AssetDetail {
  id: string;
  kind: AssetKind;
  site_id: string;
  unit_id: string | null;
  parent_id: string | null;
  children: string[];
  rated_power_kw: number | null;
  rated_energy_kwh: number | null;
  ts_ms: number | null;
  values: Record<string, number>;
  status: LiveStatus;
  windows: Record<string, number | null>;
  alarms: AlarmView[];
  episodes: Episode[];
  tickets: TicketEvent[];
}

/** One asset's part of its unit's newest-values message (the asset:<id> channel). */
export interface AssetLive {
  asset_id: string;
  unit_id: string;
  site_id: string;
  ts_ms: number;
  values: Record<string, number>;
  status: LiveStatus | null;
}

export interface StatusInterval {
  start_ms: number;
  end_ms: number | null; // null: still so
  state: State;
  derate_fraction: number | null;
  cause: string | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface BreachEvent {
  breach_id: string;
  rule_id: string;
  kind: "limit" | "trend";
  asset_id: string;
  site_id: string;
  tag: string;
  severity: Severity;
  state: "raised" | "cleared";
  raised_ms: number;
  ts_ms: number;
  value: number;
  threshold: number;
  message: string;
}

export interface AlarmHandling {
  breach_id: string;
  acknowledged_by: string | null;
  acknowledged_ms: number | null;
  comment: string | null;
  shelved_by: string | null;
  shelved_until_ms: number | null;
  shelve_reason: string | null;
}

/** An update on the alarms channel. */
export type AlarmMessage =
  | { kind: "breach"; breach: BreachEvent }
  | { kind: "handling"; site_id: string; handling: AlarmHandling };

export interface Alert {
  alert_id: string;
  kind: string;
  scope_id: string;
  site_id: string | null;
  severity: Severity;
  state: "raised" | "cleared";
  raised_ms: number;
  ts_ms: number;
  message: string;
  details: Record<string, number | string | null>;
}

export interface ContractSummary {
  id: string;
  site_id: string;
  customer: string;
  region: string;
  measurement_period: "month" | "quarter" | "contract_year";
  terms: {
    start: string;
    term_years: number;
    guarantee: { default_pct: number; by_contract_year: Record<string, number> };
    ld: { currency: string; step_pct: number; rate_per_pct: number | string;
      cap_per_contract_year: number | string };
    early_warning_margin_pct: number;
    [key: string]: unknown;
  };
}

export interface PeriodEvaluation {
  period: string;
  start: string;
  end: string;
  contract_year: number;
  availability_pct: number | null;
  guaranteed_pct: number;
  shortfall_pct: number | null;
  ld: number;
  bonus: number;
}

export interface Compliance {
  evaluation: { contract_id: string; currency: string; periods: PeriodEvaluation[] };
  open_period: ContractKpis | null;
}

/** One device's refused records of one reason (GET /data-quality). */
export interface DeadLetterRow {
  device: string; // the record's key ("" for a record without one)
  reason: string;
  count: number;
  first_ms: number;
  last_ms: number;
  last_detail: string;
  asset_id: string | null; // the fleet's asset of that id, for a link
}

export interface QualityTotals {
  records: number; // refused records of every device and reason
  pairs: number; // (device, reason) tallies in all; `tallies` may hold fewer
  tallies: DeadLetterRow[]; // most frequent first
  alerts: Alert[]; // active data-quality alerts, most severe first
}

export interface SiteQuality extends QualityTotals {
  site_id: string;
  name: string | null;
  customer: string;
  region: string;
}

export interface DataQuality {
  sites: SiteQuality[];
  unrouted: QualityTotals | null; // null: not the caller's to see
}
