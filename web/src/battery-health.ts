// The battery-health page's pure parts: the window presets, the page's address and
// GET /analytics/battery-health's query, the units ordered by projected end of life, the fade
// fit and projection in words, the fitted line to draw over the SOH series, and the exposure
// bands as the table's rows.
import { num } from "./format";
import type { ExposureBand, FadeRate, UnitHealth } from "./generated/api";
import { DAY_MS, isoUtc, lastRange, type Range } from "./historian";

/** contracts/battery_health.py's year (the fit's time axis). */
export const YEAR_MS = 365.25 * DAY_MS;
/** The windows offered: fade needs months to show; the API takes at most 400 days. */
export const WINDOWS: readonly [string, number][] = [["90 d", 90 * DAY_MS],
  ["1 y", 365 * DAY_MS], ["400 d", 400 * DAY_MS]];
export const DEFAULT_WINDOW = "1 y";
/** The SOH series' buckets asked for (the API's default). */
export const SOH_POINTS = 500;

export interface HealthState {
  site: string; // "" for every site
  unit: string; // the unit whose detail is shown, "" for none
  window: string; // a WINDOWS label
}

export type SortKey = "eol" | "unit" | "site" | "soh" | "per_year" | "per_1000_efc";
export interface Sort {
  key: SortKey;
  descending: boolean;
}
/** Soonest end of life first. */
export const DEFAULT_SORT: Sort = { key: "eol", descending: false };

const ID = /^[A-Za-z0-9_.:-]{1,128}$/; // the API's ids

/** The page's state from its address (`#/analytics/battery-health?site=…&unit=…&window=1 y`):
 * malformed ids and unknown windows dropped. */
export function stateFromParams(params: Record<string, string>): HealthState {
  const id = (v: string | undefined) => (v !== undefined && ID.test(v) ? v : "");
  const window = WINDOWS.some(([l]) => l === params.window) ? params.window! : DEFAULT_WINDOW;
  return { site: id(params.site), unit: id(params.unit), window };
}

/** The address's parameters for a state: only those that differ from the defaults. */
export function stateParams(s: HealthState): Record<string, string> {
  const p: Record<string, string> = {};
  if (s.site) p.site = s.site;
  if (s.unit) p.unit = s.unit;
  if (s.window !== DEFAULT_WINDOW) p.window = s.window;
  return p;
}

/** The window's span; the default's for an unknown label. */
export function windowSpan(label: string): number {
  return (WINDOWS.find(([l]) => l === label) ?? WINDOWS.find(([l]) => l === DEFAULT_WINDOW)!)[1];
}

/** The last window up to now, in whole minutes. */
export function windowRange(label: string, nowMs: number): Range {
  return lastRange(windowSpan(label), nowMs);
}

/** GET /analytics/battery-health's query: the range, the site if one is chosen. (Every unit
 * of the site comes back: the table lists them all, the detail is one of them.) */
export function healthQuery(s: HealthState, r: Range, points = SOH_POINTS
                            ): Record<string, string> {
  const q: Record<string, string> = { from: isoUtc(r.from), to: isoUtc(r.to),
                                      points: String(points) };
  if (s.site) q.site = s.site;
  return q;
}

/** How soon a unit reaches its end of life, for sorting: at or below it already first, then
 * by projected date, then a date beyond reach (no fade measured), then no fit at all. */
export function eolRank(u: UnitHealth): [number, number] {
  const p = u.projection;
  if (p === null) return [3, 0];
  if (p.reached) return [0, 0];
  if (p.date === null) return [2, 0];
  return [1, Date.parse(p.date)];
}

function value(u: UnitHealth, key: SortKey): number | string | null {
  switch (key) {
    case "unit": return u.unit_id;
    case "site": return u.site_id;
    case "soh": return u.fit?.soh_now_pct ?? u.soh[u.soh.length - 1]?.avg ?? null;
    case "per_year": return u.fit?.at_duty_per_year?.value ?? null;
    case "per_1000_efc": return u.fit?.per_1000_efc?.value ?? null;
    default: return null;
  }
}

/** The units in the table's order; ties (and units without the value, always last) by
 * unit id. */
export function sortUnits(units: readonly UnitHealth[], sort: Sort = DEFAULT_SORT
                          ): UnitHealth[] {
  const sign = sort.descending ? -1 : 1;
  const byId = (a: UnitHealth, b: UnitHealth) => a.unit_id.localeCompare(b.unit_id);
  return [...units].sort((a, b) => {
    if (sort.key === "eol") {
      const [ra, ta] = eolRank(a);
      const [rb, tb] = eolRank(b);
      if (ra === 3 || rb === 3) return ra === rb ? byId(a, b) : ra === 3 ? 1 : -1;
      return sign * (ra - rb || ta - tb) || byId(a, b);
    }
    const va = value(a, sort.key);
    const vb = value(b, sort.key);
    if (va === null || vb === null) return va === vb ? byId(a, b) : va === null ? 1 : -1;
    const c = typeof va === "string" ? va.localeCompare(String(vb)) : va - (vb as number);
    return sign * c || byId(a, b);
  });
}

/** A click on a column's head: that column ascending, or the other way if it is the one. */
export function toggleSort(current: Sort, key: SortKey): Sort {
  return current.key === key ? { key, descending: !current.descending }
    : { key, descending: false };
}

/** A fade rate with its 95 % band: "2.00 (1.90–2.10)"; "–" without one. Two decimals (one
 * from 10 up), more when the band is narrower than that shows (up to 4). */
export function rateText(r: FadeRate | null | undefined): string {
  if (!r) return "–";
  const half = (r.high - r.low) / 2;
  const fine = half > 0 && Number.isFinite(half) ? Math.ceil(-Math.log10(half)) : 0;
  const d = Math.min(4, Math.max(Math.abs(r.value) >= 10 ? 1 : 2, fine));
  return `${num(r.value, d)} (${num(r.low, d)}–${num(r.high, d)})`;
}

/** The projected end of life in words: the date and its range, or why there is none. */
export function eolText(u: UnitHealth): string {
  const p = u.projection;
  if (p === null) return "no fit";
  if (p.reached) return "reached";
  if (p.date === null) return p.earliest ? `not before ${p.earliest}` : "no fade measured";
  return p.date;
}

/** The range of the projected date: "earliest 2031-02-01 · latest 2033-07-30" ("open" for a
 * latest the band leaves open). */
export function eolRange(u: UnitHealth): string {
  const p = u.projection;
  if (p === null || p.reached) return "";
  return `earliest ${p.earliest ?? "–"} · latest ${p.latest ?? "open"}`;
}

/** Why a unit has no fit, or what the fit and projection want the reader to know. */
export function fitNotes(u: UnitHealth): string[] {
  if (u.fit === null) return [u.no_fit_reason || "no fit"];
  return [u.fit.note, u.projection?.note ?? ""].filter((n) => n !== "");
}

/** The fitted line over the fit's samples, as drawn over the SOH series: the fitted SOH at
 * the last sample, back to the first at the fade a year at the duty seen (the fit is linear
 * in time and cycles; at a steady duty, a straight line in time). */
export function fittedLine(u: UnitHealth): [number, number][] {
  const f = u.fit;
  const rate = f?.at_duty_per_year?.value;
  if (!f || rate == null) return [];
  return [[f.first_ms, f.soh_now_pct + rate * (f.last_ms - f.first_ms) / YEAR_MS],
          [f.last_ms, f.soh_now_pct]];
}

export interface ExposureRow {
  label: string;
  hours: number;
  share: number; // of the hours with data, 0–1
}

/** The bands as the table's rows, with each one's share of the hours counted. */
export function exposureRows(bands: readonly ExposureBand[]): ExposureRow[] {
  const total = bands.reduce((n, b) => n + b.hours, 0);
  return bands.map((b) => ({ label: b.label, hours: b.hours,
                             share: total > 0 ? b.hours / total : 0 }));
}

export type PackFormat = "pdf" | "xlsx";

/** GET /analytics/warranty-pack's query: the unit and the page's window (at most 400 days,
 * as the windows offered). */
export function warrantyQuery(unit: string, r: Range, format: PackFormat
                              ): Record<string, string> {
  return { unit, from: isoUtc(r.from), to: isoUtc(r.to), format };
}

/** Why the warranty pack cannot be downloaded, or null when it can. */
export function warrantyBlocked(allowed: boolean): string | null {
  return allowed ? null
    : "Warranty packs need the reports.export permission, which your role lacks.";
}
