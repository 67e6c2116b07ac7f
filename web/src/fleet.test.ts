import { describe, expect, it } from "vitest";
import { FleetStore, fleetKpis, fromFleetChannel, newer, siteContract } from "./fleet";
import { contract, snapshot, summary } from "./fixtures.test-support";

const NOW = 1_800_000_000_000;

describe("fleet KPIs", () => {
  it("weights the sites' windows by energy and sums LD by currency", () => {
    const entries = [
      { site: summary("nordvik", 30_000, 6), snapshot: null },
      { site: summary("elbe", 20_000, 5), snapshot: snapshot("elbe", 90, NOW, {
          contract: contract({ ld_year_to_date: 1000, warning_level: "ld_risk" }) }) },
      { site: summary("mesa", 10_000, 4), snapshot: snapshot("mesa", 100, NOW - 31_000, {
          contract: contract({ ld_year_to_date: 500, currency: "EUR", warning_level: "watch" }),
          units_by_state: { available: 3, derated: 1, unavailable: 0, unknown: 0 } }) },
    ];
    const kpis = fleetKpis(entries, NOW, true);
    expect(kpis.windows.last_hour).toBeCloseTo((90 * 20_000 + 100 * 10_000) / 30_000, 9);
    expect(kpis.ldYearToDate).toEqual({ EUR: 1500 });
    expect(kpis.staleSites).toBe(2); // nordvik: no data; mesa: 31 s old
    expect(kpis.units).toBe(15);
    expect(kpis.unitsByState).toEqual({ available: 5, derated: 1, unavailable: 0, unknown: 0 });
    expect(kpis.warningLevels).toEqual({ ok: 0, watch: 1, ld_risk: 1 });
    expect(fleetKpis(entries, NOW, false).ldYearToDate).toBeNull();
  });

  it("leaves technical availability out of the contract counts", () => {
    const kpis = fleetKpis([{ site: summary("x", 1), snapshot: snapshot("x", 99, NOW, {
      contract: contract({ contract_id: "technical-x", kind: "technical" }) }) }], NOW, true);
    expect(kpis.warningLevels).toEqual({ ok: 0, watch: 0, ld_risk: 0 });
    expect(kpis.ldYearToDate).toEqual({});
  });
});

describe("fleet store", () => {
  it("keeps the newest snapshot of each visible site and nothing else", () => {
    const store = new FleetStore();
    const changes: (string | null)[] = [];
    store.changed.on((id) => changes.push(id));
    store.load({ kpis: {} as never, sites: [summary("a", 1), summary("b", 1)] });
    expect(store.apply(snapshot("a", 99, 2_000))).toBe(true);
    expect(store.apply(snapshot("a", 50, 1_000))).toBe(false); // older: a repeat
    expect(store.apply(snapshot("zzz", 50, 3_000))).toBe(false); // not visible to us
    expect(store.get("a")?.snapshot?.windows.last_hour).toBe(99);
    expect(store.size).toBe(2);
    expect(changes).toEqual([null, "a"]);
    store.load({ kpis: {} as never, sites: [summary("b", 1)] });
    expect(store.size).toBe(1);
  });

  it("a reload keeps a newer snapshot than the one the reload brought", () => {
    const store = new FleetStore();
    store.load({ kpis: {} as never, sites: [summary("a", 1)] });
    store.apply(snapshot("a", 98, 5_000));
    store.load({ kpis: {} as never, sites: [summary("a", 1, 2, snapshot("a", 90, 4_000))] });
    expect(store.get("a")?.snapshot?.ts_ms).toBe(5_000);
    expect(newer(null, snapshot("a", 1, 1))).toBe(true);
  });
});

describe("a site's contract", () => {
  it("tells a contract from technical availability and from KPIs not worked out yet", () => {
    expect(siteContract(null)).toEqual({ kind: "none" });
    expect(siteContract(snapshot("a", 99, 1))).toEqual({ kind: "pending" });
    expect(siteContract(snapshot("a", 99, 1, { contract: contract({
      contract_id: "technical-a", kind: "technical" }) }))).toEqual({ kind: "technical" });
    const kpis = contract();
    expect(siteContract(snapshot("a", 99, 1, { contract: kpis }))).toEqual(
      { kind: "contract", kpis });
  });
});

describe("the fleet channel's sites", () => {
  it("turn their unit rows back into unit objects, every field in place", () => {
    const snap = snapshot("elbe", 97, NOW, { units: [
      { id: "elbe-u01", state: "derated", cause: "fault", derate_fraction: 0.25,
        last_hour_pct: 81.5, today_pct: 96.125 },
      { id: "elbe-u02", state: "available", cause: null, derate_fraction: null,
        last_hour_pct: null, today_pct: 100 },
    ] });
    const row = (u: (typeof snap.units)[number]) =>
      [u.id, u.state, u.cause ?? null, u.derate_fraction ?? null, u.last_hour_pct,
       u.today_pct] as [unknown, unknown, unknown, unknown, unknown, unknown];
    const wire = { ...snap, units: snap.units.map(row) };
    expect(fromFleetChannel(wire)).toEqual(snap);
  });
});
