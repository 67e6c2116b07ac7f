// The controller-health-and-comms page's pure parts: the window presets, the page's address
// and GET /analytics/comms's query, the poll figures in words, the hours per state, each
// device's states over the window as the spans of its small timeline, and the sources'
// freshness.
import { dateTime, num } from "./format";
import type { CommsDevice, CommsFiguresView, CommsSource } from "./generated/api";
import { DAY_MS, isoUtc, lastRange, type Range } from "./historian";

export type CommsState = "online" | "degraded" | "offline";
/** Worst first, as the API orders gateways; the hours and the legend in this order too. */
export const STATES: readonly CommsState[] = ["offline", "degraded", "online"];
/** The windows offered: the API takes at most 31 days (one stats window a minute per
 * device adds up fast). */
export const WINDOWS: readonly [string, number][] = [["1 d", DAY_MS], ["7 d", 7 * DAY_MS],
  ["31 d", 31 * DAY_MS]];
export const DEFAULT_WINDOW = "1 d";

export interface CommsPage {
  site: string; // "" for every site
  window: string; // a WINDOWS label
}

const ID = /^[A-Za-z0-9_.:-]{1,128}$/; // the API's ids

/** The page's state from its address (`#/analytics/comms?site=…&window=7 d`): a malformed
 * site and an unknown window dropped. */
export function pageFromParams(params: Record<string, string>): CommsPage {
  const site = params.site !== undefined && ID.test(params.site) ? params.site : "";
  const window = WINDOWS.some(([l]) => l === params.window) ? params.window! : DEFAULT_WINDOW;
  return { site, window };
}

/** The address's parameters: only those that differ from the defaults. */
export function pageParams(p: CommsPage): Record<string, string> {
  const out: Record<string, string> = {};
  if (p.site) out.site = p.site;
  if (p.window !== DEFAULT_WINDOW) out.window = p.window;
  return out;
}

/** The last window up to now, in whole minutes (the default's span for an unknown label). */
export function commsRange(label: string, nowMs: number): Range {
  const span = (WINDOWS.find(([l]) => l === label) ??
    WINDOWS.find(([l]) => l === DEFAULT_WINDOW)!)[1];
  return lastRange(span, nowMs);
}

/** GET /analytics/comms's query: the range, the site if one is chosen. */
export function commsQuery(p: CommsPage, r: Range): Record<string, string> {
  const q: Record<string, string> = { from: isoUtc(r.from), to: isoUtc(r.to) };
  if (p.site) q.site = p.site;
  return q;
}

/** A rate (0–1) as a percentage with one decimal: "25.0 %"; "–" without polls. */
export function rate(value: number | null | undefined): string {
  return value == null || !Number.isFinite(value) ? "–" : `${(value * 100).toFixed(1)} %`;
}

/** Milliseconds: "40 ms", "1,250 ms"; "–" without an answered poll. */
export function millis(value: number | null | undefined): string {
  return value == null || !Number.isFinite(value) ? "–"
    : `${Math.round(value).toLocaleString("en-US")} ms`;
}

/** Latency p50 · p95 · max: "40 · 80 · 400 ms"; "–" without an answered poll. */
export function latencyText(f: CommsFiguresView): string {
  const values = [f.latency_p50_ms, f.latency_p95_ms, f.latency_max_ms];
  if (values.every((v) => v == null)) return "–";
  return `${values.map((v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US")))
    .join(" · ")} ms`;
}

/** The polls behind the rates: "180 polls, 30 dropped, 51 retries"; "no polls" (no stats
 * window in the range). An OPC UA device's polls are its session's liveness checks. */
export function pollsText(f: CommsFiguresView): string {
  if (f.polls === 0) return "no polls";
  return `${f.polls.toLocaleString("en-US")} polls, ${f.failed.toLocaleString("en-US")} ` +
    `dropped, ${f.retries.toLocaleString("en-US")} retries`;
}

/** Hours per state, worst first, the states with none left out: "offline 2.0 h · online
 * 21.0 h"; "–" when the window holds no known state. */
export function hoursText(hours: Record<string, number>): string {
  const parts = STATES.filter((s) => (hours[s] ?? 0) > 0)
    .map((s) => `${s} ${num(hours[s], 1)} h`);
  return parts.length ? parts.join(" · ") : "–";
}

/** Devices per state, worst first: "1 offline · 2 online"; unknown ones as "unknown". */
export function devicesText(byState: Record<string, number>): string {
  const order = [...STATES, ...Object.keys(byState).filter((s) =>
    !(STATES as readonly string[]).includes(s)).sort()];
  return order.filter((s) => (byState[s] ?? 0) > 0).map((s) => `${byState[s]} ${s}`)
    .join(" · ") || "no devices";
}

export interface StateSpan {
  state: CommsState | "unknown";
  startMs: number;
  endMs: number;
}

/** A device's states over the range, as its timeline draws them: from the state it was in
 * at `from` (the first change's previous; with no change in the range, the state it is in
 * now) through each change, up to `min(to, now)`; "unknown" where nothing says. */
export function stateSpans(d: CommsDevice, r: Range, nowMs: number): StateSpan[] {
  const stop = Math.min(r.to, nowMs);
  const changes = d.changes.filter((c) => c.ts_ms >= r.from && c.ts_ms < stop)
    .sort((a, b) => a.ts_ms - b.ts_ms);
  let state: StateSpan["state"] = changes.length ? changes[0]!.previous ?? "unknown"
    : d.state !== null && (d.since_ms === null || d.since_ms < stop) ? d.state : "unknown";
  let at = r.from;
  const spans: StateSpan[] = [];
  for (const c of changes) {
    if (c.ts_ms > at) spans.push({ state, startMs: at, endMs: c.ts_ms });
    state = c.state;
    at = c.ts_ms;
  }
  if (stop > at) spans.push({ state, startMs: at, endMs: stop });
  // Adjacent spans of one state (a repeated report) are one.
  return spans.reduce<StateSpan[]>((out, s) => {
    const prev = out[out.length - 1];
    if (prev && prev.state === s.state && prev.endMs === s.startMs) prev.endMs = s.endMs;
    else out.push({ ...s });
    return out;
  }, []);
}

/** The sources' freshness: "redis: newest 2026-03-02 05:01 · history: none in the range". */
export function sourcesFreshness(sources: readonly CommsSource[]): string {
  return sources.map((s) => `${s.name}: ${s.newest_ms === null ? "none in the range"
    : `newest ${dateTime(s.newest_ms)}`}`).join(" · ");
}
