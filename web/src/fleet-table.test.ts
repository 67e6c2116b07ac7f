import { describe, expect, it } from "vitest";
import type { SiteEntry } from "./fleet";
import { DEFAULT_STATE, filterOptions, filterSites, layoutFor, ldAtStake, parseTableState,
         sortSites, tableParams, toggleSort, warningOf } from "./fleet-table";
import { contract, snapshot, summary } from "./fixtures.test-support";
import type { WarningLevel } from "./types";

function site(id: string, today: number | null, opts: { mtd?: number | null;
  warning?: WarningLevel | "technical"; ld?: number | null; currency?: string; name?: string;
  customer?: string; region?: string } = {}): SiteEntry {
  const s = summary(id, 1000);
  s.name = opts.name ?? id;
  s.customer = opts.customer ?? "C";
  s.region = opts.region ?? "R";
  const c = opts.warning === undefined ? null : opts.warning === "technical"
    ? contract({ kind: "technical" })
    : contract({ warning_level: opts.warning, projected_ld: opts.ld ?? 0,
                 currency: opts.currency ?? "EUR" });
  return { site: s, snapshot: snapshot(id, today, 1, {
    windows: { today, month_to_date: opts.mtd ?? null }, contract: c }) };
}

const ids = (entries: SiteEntry[]) => entries.map((e) => e.site.id);

describe("layout", () => {
  it("is the table above the threshold unless chosen", () => {
    expect(layoutFor("auto", 3)).toBe("tiles");
    expect(layoutFor("auto", 12)).toBe("tiles");
    expect(layoutFor("auto", 13)).toBe("table");
    expect(layoutFor("auto", 30)).toBe("table");
    expect(layoutFor("tiles", 30)).toBe("tiles");
    expect(layoutFor("table", 3)).toBe("table");
  });
});

describe("sorting sites", () => {
  const entries = [site("b", 99, { mtd: 98 }), site("a", 80, { mtd: 99.5 }),
                   site("c", null), site("d", 90, { mtd: 97 })];

  it("by name, A to Z, numbers in order", () => {
    const named = [site("x10", 1, { name: "Elbe 10" }), site("x2", 1, { name: "Elbe 2" }),
                   site("x1", 1, { name: "Elbe" })];
    expect(ids(sortSites(named, "name"))).toEqual(["x1", "x2", "x10"]);
    expect(ids(sortSites(named, "name", true))).toEqual(["x10", "x2", "x1"]);
  });

  it("by availability today, lowest first; no data last either way", () => {
    expect(ids(sortSites(entries, "today"))).toEqual(["a", "d", "b", "c"]);
    expect(ids(sortSites(entries, "today", true))).toEqual(["b", "d", "a", "c"]);
  });

  it("by month to date", () => {
    expect(ids(sortSites(entries, "mtd"))).toEqual(["d", "b", "a", "c"]);
  });

  it("by warning level, the worst first, then by name", () => {
    const levels = [site("ok", 1, { warning: "ok" }), site("none", 1),
                    site("risk", 1, { warning: "ld_risk" }), site("tech", 1, { warning: "technical" }),
                    site("watch", 1, { warning: "watch" }), site("arisk", 1, { warning: "ld_risk" })];
    expect(ids(sortSites(levels, "warning"))).toEqual(["arisk", "risk", "watch", "ok", "none",
                                                       "tech"]);
    expect(warningOf(levels[3]!)).toBe("none");
  });

  it("by LD at stake, the most first, currencies never compared", () => {
    const ld = [site("a", 1, { warning: "ok", ld: 100 }), site("b", 1, { warning: "ok", ld: 5000 }),
                site("c", 1), site("d", 1, { warning: "ok", ld: 900, currency: "AUD" })];
    expect(ids(sortSites(ld, "ld"))).toEqual(["d", "b", "a", "c"]);
    expect(ldAtStake(ld[1]!)).toEqual({ amount: 5000, currency: "EUR" });
    expect(ldAtStake(ld[2]!)).toBeNull();
  });

  it("returns a new array and leaves the input alone", () => {
    const before = ids(entries);
    const out = sortSites(entries, "today");
    expect(out).not.toBe(entries);
    expect(ids(entries)).toEqual(before);
  });
});

describe("filtering sites", () => {
  const entries = [site("a", 1, { warning: "ld_risk", customer: "Nordic", region: "NO" }),
                   site("b", 1, { warning: "ok", customer: "Nordic", region: "SE" }),
                   site("c", 1, { customer: "Mesa", region: "US" })];

  it("by warning level, customer and region together", () => {
    expect(ids(filterSites(entries, { warning: null, customer: null, region: null })))
      .toEqual(["a", "b", "c"]);
    expect(ids(filterSites(entries, { warning: "ld_risk", customer: null, region: null })))
      .toEqual(["a"]);
    expect(ids(filterSites(entries, { warning: "none", customer: null, region: null })))
      .toEqual(["c"]);
    expect(ids(filterSites(entries, { warning: null, customer: "Nordic", region: "SE" })))
      .toEqual(["b"]);
    expect(ids(filterSites(entries, { warning: "ok", customer: "Mesa", region: null })))
      .toEqual([]);
  });

  it("offers each customer and region once, sorted", () => {
    expect(filterOptions(entries)).toEqual({ customers: ["Mesa", "Nordic"],
                                             regions: ["NO", "SE", "US"] });
  });
});

describe("the table's state in the address", () => {
  it("round-trips and leaves defaults out", () => {
    expect(tableParams(DEFAULT_STATE)).toEqual({});
    expect(parseTableState({})).toEqual(DEFAULT_STATE);
    const state = { layout: "table" as const, sort: "today" as const, descending: false,
                    warning: "watch" as const, customer: "Nordic", region: null };
    expect(parseTableState(tableParams(state))).toEqual(state);
  });

  it("ignores what it does not know and takes a column's natural direction", () => {
    expect(parseTableState({ layout: "huge", sort: "bogus", warning: "red" }))
      .toEqual(DEFAULT_STATE);
    expect(parseTableState({ sort: "ld" }).descending).toBe(true);
  });

  it("a click flips the same column, another starts in its natural direction", () => {
    const today = toggleSort(DEFAULT_STATE, "today");
    expect([today.sort, today.descending]).toEqual(["today", false]);
    expect(toggleSort(today, "today").descending).toBe(true);
    expect(toggleSort(today, "warning").descending).toBe(true);
  });
});
