// What the API sends, as the dashboard reads it. Generated from the server's models
// (contracts/live.py, contracts/events.py, api/) into ./generated/api.ts by
// `python -m infra.gen_types`; hand-written here only what the server types loosely (a `str`
// where the dashboard relies on the values) or has no model of.

import type * as api from "./generated/api";
import type {
  BreachEvent,
  ContractKpis,
  TicketRef,
  UnavailabilityEpisode,
  UnitAvailability,
  SiteAvailability,
} from "./generated/api";

export type {
  ActiveLimit,
  AlarmHandling,
  AlarmMessage,
  Alert,
  AssetLive,
  BreachEvent,
  BreachMessage,
  CommandSummary,
  CommandsAccepted,
  ContractKpis,
  DataQuality,
  DeadLetterRow,
  DeliveryOut,
  FleetKpis,
  FleetOverview,
  HandlingMessage,
  InterlockView,
  LiveStatus,
  Me,
  NotifyRules,
  NotifyRulesCheck,
  QualityTotals,
  ServerFrame,
  SiteControl,
  SiteQuality,
  SiteSummary,
  StackHealth,
  StackPart,
  TicketEvent,
  TicketRef,
  UnitAvailability,
  UnitControl,
  UnitControlView,
  UnitLatest,
} from "./generated/api";

export type State = UnitAvailability["state"];
export type WarningLevel = ContractKpis["warning_level"];
export type Severity = BreachEvent["severity"];
export type AlarmState = "active_unacknowledged" | "active_acknowledged" | "shelved";
export type TicketStatus = TicketRef["status"];
export type AssetKind = "site" | "unit" | "inverter" | "block";

export const WINDOWS = ["last_hour", "today", "month_to_date", "contract_year_to_date",
  "trailing_7d", "trailing_30d"] as const;
export type WindowName = (typeof WINDOWS)[number];

/** A site's snapshot: the `site:<id>` channel, `SiteSummary.availability`, and the `fleet`
 * channel's once its units are objects again (fleet.ts `fromFleetChannel`). */
export type SiteSnapshot = SiteAvailability;
/** The `fleet` channel's site: a snapshot with its units as rows (contracts/live.py). */
export type FleetSite = api.FleetSite;
export type Episode = UnavailabilityEpisode;

/** The REST models below type these fields as plain strings; the dashboard narrows them. */
export type AssetNode = Omit<api.AssetNode, "kind" | "state" | "children"> & {
  kind: AssetKind;
  state: State | null;
  children: AssetNode[];
};

export type AlarmView = Omit<api.AlarmView, "severity" | "state"> & {
  severity: Severity;
  state: AlarmState;
};

export type AssetDetail = Omit<api.AssetDetail, "kind" | "alarms"> & {
  kind: AssetKind;
  alarms: AlarmView[];
};

export type StatusInterval = Omit<api.StatusInterval, "state"> & { state: State };

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
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
  monitored_from_ms: number | null; // earlier time has no data, never billed
}

