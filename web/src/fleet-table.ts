// The overview's dense layout for a larger fleet (issue 16): which layout a fleet gets, and
// the site table's sorting and filtering — pure functions over the fleet store's entries,
// kept in the address (#/?layout=table&sort=today&dir=asc&warning=ld_risk&customer=…).
import type { SiteEntry } from "./fleet";
import type { WarningLevel } from "./types";

/** Above this many sites the overview is a table (one screen); at or below, large tiles. */
export const DENSE_ABOVE = 12;

export type LayoutChoice = "auto" | "tiles" | "table";
export type Layout = "tiles" | "table";
export const LAYOUT_CHOICES: readonly LayoutChoice[] = ["auto", "tiles", "table"];

export function layoutFor(choice: LayoutChoice, sites: number, denseAbove = DENSE_ABOVE): Layout {
  return choice === "auto" ? (sites > denseAbove ? "table" : "tiles") : choice;
}

export type SortKey = "name" | "today" | "mtd" | "warning" | "ld";
export const SORT_KEYS: readonly SortKey[] = ["name", "today", "mtd", "warning", "ld"];

/** Each column's first order when chosen: what needs attention first — lowest availability,
 * the worst warning level, the most LD at stake; names A → Z. */
export const NATURAL_DESCENDING: Record<SortKey, boolean> = {
  name: false, today: false, mtd: false, warning: true, ld: true };

/** A warning level as a filter value: "none" for a site without one (no contract yet, only
 * technical availability, no data). */
export type WarningFilter = WarningLevel | "none";

export interface TableState {
  layout: LayoutChoice;
  sort: SortKey;
  descending: boolean;
  warning: WarningFilter | null; // null: every level
  customer: string | null;
  region: string | null;
}

export const DEFAULT_STATE: TableState = { layout: "auto", sort: "name", descending: false,
  warning: null, customer: null, region: null };

const WARNINGS: readonly WarningFilter[] = ["ok", "watch", "ld_risk", "none"];
const WARNING_RANK: Record<WarningFilter, number> = { none: 0, ok: 1, watch: 2, ld_risk: 3 };

/** The table's state from the route's parameters; anything unknown falls back to the
 * default. */
export function parseTableState(params: Record<string, string>): TableState {
  const layout = LAYOUT_CHOICES.find((c) => c === params.layout) ?? DEFAULT_STATE.layout;
  const sort = SORT_KEYS.find((k) => k === params.sort) ?? DEFAULT_STATE.sort;
  const descending = params.dir === "desc" ? true : params.dir === "asc" ? false
    : NATURAL_DESCENDING[sort];
  const warning = WARNINGS.find((w) => w === params.warning) ?? null;
  return { layout, sort, descending, warning, customer: params.customer || null,
           region: params.region || null };
}

/** The parameters that say `state` (defaults left out, so `#/` stays `#/`). */
export function tableParams(state: TableState): Record<string, string> {
  const out: Record<string, string> = {};
  if (state.layout !== "auto") out.layout = state.layout;
  if (state.sort !== "name" || state.descending) {
    out.sort = state.sort;
    out.dir = state.descending ? "desc" : "asc";
  }
  if (state.warning) out.warning = state.warning;
  if (state.customer) out.customer = state.customer;
  if (state.region) out.region = state.region;
  return out;
}

/** Clicking a column: the same column flips its direction, another starts in its natural
 * one. */
export function toggleSort(state: TableState, key: SortKey): TableState {
  return { ...state, sort: key,
           descending: state.sort === key ? !state.descending : NATURAL_DESCENDING[key] };
}

export function siteName(e: SiteEntry): string {
  return e.site.name ?? e.site.id;
}

export function warningOf(e: SiteEntry): WarningFilter {
  const c = e.snapshot?.contract;
  return c && c.kind !== "technical" ? c.warning_level : "none";
}

/** The LD at stake: the projected LD of the open period (else the year's so far), in its
 * currency; null without a contract or money. */
export function ldAtStake(e: SiteEntry): { amount: number; currency: string } | null {
  const c = e.snapshot?.contract;
  if (!c || c.kind === "technical") return null;
  const amount = c.projected_ld ?? c.ld_year_to_date;
  return amount == null ? null : { amount, currency: c.currency };
}

function windowOf(e: SiteEntry, name: string): number | null {
  return e.snapshot?.windows[name] ?? null;
}

/** The sites in the order asked for; a site without a value (no data yet) last whichever
 * the direction, then by name. LD is compared within a currency only: currencies in
 * alphabetical order, each by amount. Pure: a new array. */
export function sortSites(entries: readonly SiteEntry[], key: SortKey,
                          descending = NATURAL_DESCENDING[key]): SiteEntry[] {
  const sign = descending ? -1 : 1;
  const byName = (a: SiteEntry, b: SiteEntry) =>
    siteName(a).localeCompare(siteName(b), undefined, { numeric: true }) ||
    a.site.id.localeCompare(b.site.id);
  const numeric = (va: number | null, vb: number | null): number =>
    va === null ? (vb === null ? 0 : 1) : vb === null ? -1 : sign * (va - vb);
  const compare = (a: SiteEntry, b: SiteEntry): number => {
    switch (key) {
      case "name": return sign * byName(a, b);
      case "today": case "mtd": {
        const w = key === "today" ? "today" : "month_to_date";
        return numeric(windowOf(a, w), windowOf(b, w)) || byName(a, b);
      }
      case "warning":
        return sign * (WARNING_RANK[warningOf(a)] - WARNING_RANK[warningOf(b)]) || byName(a, b);
      case "ld": {
        const la = ldAtStake(a);
        const lb = ldAtStake(b);
        if (la && lb && la.currency !== lb.currency) return la.currency.localeCompare(lb.currency);
        return numeric(la?.amount ?? null, lb?.amount ?? null) || byName(a, b);
      }
    }
  };
  return [...entries].sort(compare);
}

/** The sites that pass the filters (warning level, customer, region). Pure. */
export function filterSites(entries: readonly SiteEntry[], state: Pick<TableState, "warning" |
                            "customer" | "region">): SiteEntry[] {
  return entries.filter((e) => (!state.warning || warningOf(e) === state.warning) &&
    (!state.customer || e.site.customer === state.customer) &&
    (!state.region || e.site.region === state.region));
}

/** The customers and regions to filter by, sorted, each once. */
export function filterOptions(entries: readonly SiteEntry[]): { customers: string[];
                                                                 regions: string[] } {
  const sorted = (values: Iterable<string>) => [...new Set(values)].sort((a, b) =>
    a.localeCompare(b));
  return { customers: sorted(entries.map((e) => e.site.customer)),
           regions: sorted(entries.map((e) => e.site.region)) };
}
