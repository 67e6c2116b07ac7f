// The sites the caller may see and their newest snapshots: loaded once from GET /fleet,
// then kept by the `fleet` channel. One entry per visible site — nothing else is added.
import { freshness } from "./freshness";
import { Signal } from "./signal";
import type { ContractKpis, FleetOverview, FleetSite, SiteSnapshot, SiteSummary, State,
              UnitAvailability, WarningLevel } from "./types";

export interface SiteEntry {
  site: SiteSummary;
  snapshot: SiteSnapshot | null;
}

/** The fleet channel's site as a snapshot: its unit rows
 * `[id, state, cause, derate_fraction, last_hour_pct, today_pct]` as objects again. */
export function fromFleetChannel(site: FleetSite): SiteSnapshot {
  return { ...site, units: site.units.map(([id, state, cause, derate, lastHour, today]) => ({
    id: id as string, state: state as State, cause: cause as UnitAvailability["cause"],
    derate_fraction: derate as number | null, last_hour_pct: lastHour as number | null,
    today_pct: today as number | null })) };
}

/** A snapshot replaces the one held unless it is older (a resumed feed may repeat one). */
export function newer(current: SiteSnapshot | null, next: SiteSnapshot): boolean {
  return current === null || next.ts_ms >= current.ts_ms;
}

/** A site's contract KPIs, if it has a contract and the flows have worked them out yet
 * ("pending" until their first final minute; "technical": no contract, availability only). */
export type SiteContract = { kind: "contract"; kpis: ContractKpis } | { kind: "technical" } |
  { kind: "pending" } | { kind: "none" };

export function siteContract(snapshot: SiteSnapshot | null | undefined): SiteContract {
  if (!snapshot) return { kind: "none" };
  const c = snapshot.contract;
  if (!c) return { kind: "pending" };
  return c.kind === "technical" ? { kind: "technical" }
    : { kind: "contract", kpis: c };
}

export const CONTRACT_NOTES: Record<Exclude<SiteContract["kind"], "contract">, string> = {
  technical: "technical availability (no contract)",
  pending: "contract KPIs after the first final minute…",
  none: "",
};

export interface Kpis {
  sites: number;
  units: number;
  staleSites: number;
  unitsByState: Record<State, number>;
  windows: Record<string, number | null>; // energy-weighted over the sites with a value
  warningLevels: Record<WarningLevel, number>;
  ldYearToDate: Record<string, number> | null; // by currency; null without money
}

/** The fleet's KPIs over its sites, as GET /fleet computes them (api/routes/sites.py). */
export function fleetKpis(entries: SiteEntry[], serverNowMs: number, money: boolean): Kpis {
  const unitsByState: Record<State, number> = { available: 0, derated: 0, unavailable: 0,
                                                unknown: 0 };
  const warningLevels: Record<WarningLevel, number> = { ok: 0, watch: 0, ld_risk: 0 };
  const weighted = new Map<string, [number, number]>();
  const ld: Record<string, number> = {};
  let units = 0;
  let staleSites = 0;
  for (const { site, snapshot } of entries) {
    units += site.units;
    if (freshness(snapshot?.ts_ms, serverNowMs).stale) staleSites += 1;
    if (!snapshot) continue;
    for (const [state, n] of Object.entries(snapshot.units_by_state)) {
      unitsByState[state as State] = (unitsByState[state as State] ?? 0) + (n ?? 0);
    }
    for (const [name, value] of Object.entries(snapshot.windows)) {
      const acc = weighted.get(name) ?? [0, 0];
      if (value != null) {
        acc[0] += site.rated_energy_kwh * value;
        acc[1] += site.rated_energy_kwh;
      }
      weighted.set(name, acc);
    }
    const c = snapshot.contract;
    if (c && c.kind === "ltsa") {
      warningLevels[c.warning_level] += 1;
      if (c.ld_year_to_date != null) ld[c.currency] = (ld[c.currency] ?? 0) + c.ld_year_to_date;
    }
  }
  const windows: Record<string, number | null> = {};
  for (const [name, [sum, weight]] of weighted) windows[name] = weight ? sum / weight : null;
  return { sites: entries.length, units, staleSites, unitsByState, windows, warningLevels,
           ldYearToDate: money ? ld : null };
}

export class FleetStore {
  private readonly entries = new Map<string, SiteEntry>();
  readonly changed = new Signal<string | null>(); // a site id, or null: everything

  load(overview: FleetOverview): void {
    const keep = new Set(overview.sites.map((s) => s.id));
    for (const id of [...this.entries.keys()]) if (!keep.has(id)) this.entries.delete(id);
    for (const site of overview.sites) {
      const held = this.entries.get(site.id)?.snapshot ?? null;
      const fresh = site.availability;
      this.entries.set(site.id, { site, snapshot: fresh && newer(held, fresh) ? fresh : held });
    }
    this.changed.emit(null);
  }

  /** A snapshot from the feed; false when it is not one of ours, or not newer. */
  apply(snapshot: SiteSnapshot): boolean {
    const entry = this.entries.get(snapshot.site_id);
    if (!entry || !newer(entry.snapshot, snapshot)) return false;
    entry.snapshot = snapshot;
    this.changed.emit(snapshot.site_id);
    return true;
  }

  replaceAll(snapshots: SiteSnapshot[]): void {
    for (const s of snapshots) {
      const entry = this.entries.get(s.site_id);
      if (entry && newer(entry.snapshot, s)) entry.snapshot = s;
    }
    this.changed.emit(null);
  }

  get(siteId: string): SiteEntry | undefined {
    return this.entries.get(siteId);
  }

  all(): SiteEntry[] {
    return [...this.entries.values()];
  }

  get size(): number {
    return this.entries.size;
  }
}
