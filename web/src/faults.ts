// The faults-and-trips page's pure parts: the filters as GET /analytics/faults's query, the
// episodes as timeline bars (one lane per asset), and how the reliability table reads.
import { num, words } from "./format";
import type { FaultEpisode, ReliabilityRow, UnavailabilityEpisode } from "./generated/api";
import { isoUtc, type Range } from "./historian";
import type { Segment } from "./timeline";
import type { State } from "./types";

type Cause = NonNullable<UnavailabilityEpisode["cause"]>;
// Every cause the server knows (the compiler checks this against the generated types), and
// "unknown": episodes without one.
const CAUSE_SET: Record<Cause, true> = { fault: true, forced_outage: true,
  planned_corrective: true, scheduled_maintenance: true, grid_outage: true,
  force_majeure: true, customer_request: true, environmental: true, comms_loss: true };
export const CAUSES: readonly string[] = [...Object.keys(CAUSE_SET), "unknown"];
export const LEVELS = ["unit", "inverter", "block"] as const;
export const GROUPS = ["vendor", "model", "level", "site"] as const;
export type GroupBy = "cause" | (typeof GROUPS)[number];
/** Episodes drawn at most (the API's limit is 10,000; a timeline of more is unreadable). */
export const EPISODE_LIMIT = 2_000;

export interface FaultFilters {
  site: string; // "" for every one
  vendor: string;
  cause: string;
  level: string;
}

export const NO_FILTERS: FaultFilters = { site: "", vendor: "", cause: "", level: "" };

/** The query of GET /analytics/faults: the range, the filters set, the grouping. */
export function faultsQuery(f: FaultFilters, r: Range, groupBy: GroupBy,
                            limit = EPISODE_LIMIT): Record<string, string> {
  const q: Record<string, string> = { from: isoUtc(r.from), to: isoUtc(r.to),
                                      group_by: groupBy, limit: String(limit) };
  for (const key of ["site", "vendor", "cause", "level"] as const) {
    if (f[key]) q[key] = f[key];
  }
  return q;
}

/** A group's key in words: "Voltara · VX-3", "scheduled maintenance"; "all" for the total. */
export function groupLabel(key: readonly string[]): string {
  return key.length ? key.map(words).join(" · ") : "all";
}

/** Hours as the table shows them: "4.8 h", "13,665 h", "–" without a value. */
export function hours(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "–";
  return value >= 1000 ? `${Math.round(value).toLocaleString("en-US")} h` : `${num(value, 1)} h`;
}

/** The timeline: a lane per asset (by site, then asset), a bar per episode in its state's
 * colour, clipped to the range; an open episode lasts until `nowMs` (or the range's end). */
export function episodeBars(episodes: readonly FaultEpisode[], r: Range, nowMs: number
                            ): { lanes: string[]; bars: Segment[] } {
  const lanes = [...new Map(episodes.map((e) => [e.asset_id, e.site_id])).entries()]
    .sort(([a, sa], [b, sb]) => sa.localeCompare(sb) || a.localeCompare(b)).map(([a]) => a);
  const index = new Map(lanes.map((a, i) => [a, i]));
  const stop = Math.min(r.to, nowMs);
  const bars: Segment[] = [];
  for (const e of episodes) {
    const start = Math.max(r.from, e.start_ms);
    const end = Math.min(r.to, e.end_ms ?? stop);
    if (!(end > start)) continue;
    bars.push({ lane: index.get(e.asset_id) ?? 0, startMs: start, endMs: end,
                state: e.state as State, cause: e.cause, derateFraction: null });
  }
  return { lanes, bars };
}

/** The distinct values of a group's first key part (vendors from a by-vendor table). */
export function keysOf(rows: readonly ReliabilityRow[]): string[] {
  return [...new Set(rows.map((r) => r.key[0]).filter((k): k is string => !!k))].sort();
}
