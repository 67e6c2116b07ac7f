import { describe, expect, it } from "vitest";
import type { RepairRow } from "../generated/api";
import { perHour, sortRepairs } from "./repair";

const row = (rank: number, over: Partial<RepairRow> = {}): RepairRow => ({
  episode_id: `e${rank}`, asset_id: `a${rank}`, unit_id: `a${rank}`, site_id: "s",
  contract_id: "c", kind: "ltsa", currency: "EUR", state: "unavailable", derate_fraction: null,
  cause: "fault", since_ms: 1000, lost_hours: 1, lost_mwh: 1, as_of_ms: 0, period: "2026-10",
  contract_year: 1, hours: 1, marginal_ld_per_hour: 100, ld_now: 0, ld_after: 100,
  availability_now_pct: 96, availability_after_pct: 95.9, guaranteed_pct: 97, cap_left: 1,
  zero_reason: null, rank, site_name: "S", customer: "C", region: "R", stale: false,
  actual_pct: null, projected_pct: null, projected_ld: null, ld_year_to_date: null,
  warning_level: null, ...over });

const ids = (rows: RepairRow[]) => rows.map((r) => r.episode_id);

describe("repair priority sorting", () => {
  const rows = [row(3, { site_name: "Alpha", since_ms: 50, lost_hours: 9 }),
                row(1, { site_name: "Mesa", since_ms: 900, lost_hours: 2 }),
                row(2, { site_name: "Alpha", since_ms: 10, lost_hours: 2 })];

  it("keeps the server's ranking for LD per hour, reversed on demand", () => {
    expect(ids(sortRepairs(rows, "ld"))).toEqual(["e1", "e2", "e3"]);
    expect(ids(sortRepairs(rows, "ld", true))).toEqual(["e3", "e2", "e1"]);
  });

  it("sorts by site, since (oldest first) and lost hours (most first), ranking among equals", () => {
    expect(ids(sortRepairs(rows, "site"))).toEqual(["e2", "e3", "e1"]);
    expect(ids(sortRepairs(rows, "since"))).toEqual(["e2", "e3", "e1"]);
    expect(ids(sortRepairs(rows, "lost"))).toEqual(["e3", "e1", "e2"]);
    expect(ids(sortRepairs(rows, "lost", true))).toEqual(["e1", "e2", "e3"]);
    expect(ids(rows)).toEqual(["e3", "e1", "e2"]); // the input is left as it was
  });

  it("says why an hour costs nothing, and hides what the role may not see", () => {
    expect(perHour(row(1, { marginal_ld_per_hour: 0, zero_reason: "cap_reached" })))
      .toBe("0 · LD cap reached");
    expect(perHour(row(1, { marginal_ld_per_hour: null }))).toBe("–");
    expect(perHour(row(1, { kind: "technical", marginal_ld_per_hour: 0 }))).toBe("no LTSA");
    expect(perHour(row(1, { marginal_ld_per_hour: 1200 }))).toMatch(/1,200.* \/ h$/);
  });
});
