// The vendor-benchmarking page's pure parts: the page's address and GET
// /analytics/vendors's query (the battery-health page's windows: a benchmark is meant for
// months), a row's cells as the table reads them, and the sources' freshness.
import { DEFAULT_WINDOW, WINDOWS, windowRange } from "./battery-health";
import { groupLabel, hours } from "./faults";
import { dateTime, num, pct } from "./format";
import type { DataSource, VendorBenchRow } from "./generated/api";
import { isoUtc, type Range } from "./historian";

export { WINDOWS, windowRange };
export const LEVELS = ["unit", "inverter"] as const;
export type Level = (typeof LEVELS)[number];
/** By vendor, or by vendor and model. */
export type By = "vendor" | "model";

export interface VendorsPage {
  site: string; // "" for every site
  level: Level;
  by: By;
  window: string; // a WINDOWS label
}

const ID = /^[A-Za-z0-9_.:-]{1,128}$/; // the API's ids

/** The page's state from its address (`#/analytics/vendors?site=…&level=inverter&by=model
 * &window=90 d`): anything malformed or unknown dropped for its default. */
export function pageFromParams(params: Record<string, string>): VendorsPage {
  const site = params.site !== undefined && ID.test(params.site) ? params.site : "";
  const level: Level = params.level === "inverter" ? "inverter" : "unit";
  const by: By = params.by === "model" ? "model" : "vendor";
  const window = WINDOWS.some(([l]) => l === params.window) ? params.window! : DEFAULT_WINDOW;
  return { site, level, by, window };
}

/** The address's parameters: only those that differ from the defaults. */
export function pageParams(p: VendorsPage): Record<string, string> {
  const out: Record<string, string> = {};
  if (p.site) out.site = p.site;
  if (p.level !== "unit") out.level = p.level;
  if (p.by !== "vendor") out.by = p.by;
  if (p.window !== DEFAULT_WINDOW) out.window = p.window;
  return out;
}

/** GET /analytics/vendors's query: the range, the level, the site if one is chosen. (Both
 * tables come in one answer: the toggle asks nothing.) */
export function vendorsQuery(p: VendorsPage, r: Range): Record<string, string> {
  const q: Record<string, string> = { from: isoUtc(r.from), to: isoUtc(r.to), level: p.level };
  if (p.site) q.site = p.site;
  return q;
}

/** The table's columns: the cell's class, its head, and what the head's title explains. */
export const COLUMNS: readonly [string, string, string][] = [
  ["key", "Vendor", ""],
  ["assets", "Assets", "battery units (or inverters, at the inverter level)"],
  ["mw", "MW", "installed: rated power"],
  ["mwh", "MWh", "installed: rated energy (an inverter's: its DC blocks')"],
  ["availability", "Availability", "time-based, power-weighted; causes outside the vendor's " +
   "hands and time without data excluded"],
  ["lost", "Lost MWh / MWh", "rated MW × lost hours, per installed MWh"],
  ["failures", "Failures / MW-yr", "failures per installed MW and year of service"],
  ["mtbf", "MTBF", "mean time between failures (as the faults page counts)"],
  ["mttr", "MTTR", "mean time to repair (as the faults page counts)"],
  ["efficiency", "Efficiency", "round trip: discharged ÷ charged at the grid side"],
  ["cycles", "Cycles", "equivalent full cycles: discharged MWh ÷ installed MWh"],
  ["fade", "Fade / yr", "SOH points lost a year (daily means' slope, energy-weighted)"],
];

/** A row's cells, in COLUMNS' order. */
export function rowCells(r: VendorBenchRow): string[] {
  return [groupLabel(r.key), String(r.assets), num(r.installed_mw, 1), num(r.installed_mwh, 1),
    pct(r.availability_pct), num(r.lost_mwh_per_mwh, 3), num(r.failures_per_mw_year, 2),
    hours(r.reliability.mtbf_hours), hours(r.reliability.mttr_hours), pct(r.efficiency_pct, 1),
    num(r.cycles, 2), r.fade_pct_per_year === null ? "–"
      : `${num(r.fade_pct_per_year, 2)} (${r.assets_with_fade})`];
}

/** The sources' freshness: "history store: status intervals up to 2026-03-10 23:59 · …";
 * "none in the window" for a source that had no data. */
export function sourcesFreshness(sources: readonly DataSource[]): string {
  return sources.map((s) => `${s.name} ${s.latest_ms === null ? "none in the window"
    : `up to ${dateTime(s.latest_ms)}`}`).join(" · ");
}
