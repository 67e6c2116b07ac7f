import { describe, expect, it } from "vitest";
import type { ReliabilityRow, VendorBenchRow } from "./generated/api";
import { pageFromParams, pageParams, rowCells, sourcesFreshness, vendorsQuery } from "./vendors";

const FROM = Date.UTC(2026, 2, 1);
const R = { from: FROM, to: FROM + 240 * 3_600_000 };

function reliability(over: Partial<ReliabilityRow> = {}): ReliabilityRow {
  return { key: ["Voltara"], assets: 4, asset_hours: 960, operating_hours: 924, failures: 2,
           downtime_hours: 17, repairs: 2, repair_hours: 17, mttr_hours: 8.5, mtbf_hours: 462,
           open: 0, derated: 1, derated_hours: 48, comms_hours: 0, ...over };
}

function row(over: Partial<VendorBenchRow> = {}): VendorBenchRow {
  return { key: ["Voltara"], assets: 4, installed_mw: 10, installed_mwh: 20,
           availability_pct: 96.8215, lost_mwh: 36.25, lost_mwh_per_mwh: 1.8126,
           failures_per_mw_year: 7.305, reliability: reliability(), charge_mwh: 1,
           discharge_mwh: 0.9, efficiency_pct: 90, cycles: 12.5, fade_pct_per_year: 18.2621,
           assets_with_fade: 1, ...over };
}

describe("the page's address and query", () => {
  it("keeps good values, drops the rest", () => {
    expect(pageFromParams({})).toEqual({ site: "", level: "unit", by: "vendor", window: "1 y" });
    const p = pageFromParams({ site: "elbe", level: "inverter", by: "model", window: "90 d" });
    expect(p).toEqual({ site: "elbe", level: "inverter", by: "model", window: "90 d" });
    expect(pageParams(p)).toEqual({ site: "elbe", level: "inverter", by: "model",
                                    window: "90 d" });
    expect(pageFromParams({ site: "a b", level: "block", by: "site", window: "7 d" })).toEqual(
      { site: "", level: "unit", by: "vendor", window: "1 y" });
    expect(pageParams(pageFromParams({}))).toEqual({});
  });

  it("asks for the range and level, the site if chosen (the toggle asks nothing)", () => {
    const p = pageFromParams({});
    expect(vendorsQuery(p, R)).toEqual({ from: "2026-03-01T00:00:00.000Z",
                                         to: "2026-03-11T00:00:00.000Z", level: "unit" });
    expect(vendorsQuery({ ...p, by: "model", site: "mesa", level: "inverter" }, R)).toEqual({
      from: "2026-03-01T00:00:00.000Z", to: "2026-03-11T00:00:00.000Z", level: "inverter",
      site: "mesa" });
  });
});

describe("a row", () => {
  it("reads every figure", () => {
    expect(rowCells(row())).toEqual(["Voltara", "4", "10.0", "20.0", "96.82 %", "1.813",
      "7.30", "462.0 h", "8.5 h", "90.0 %", "12.50", "18.26 (1)"]);
  });

  it("says none where a figure has no value", () => {
    expect(rowCells(row({ key: ["Ampyra", "AP-2500"], availability_pct: null,
                          lost_mwh_per_mwh: null, failures_per_mw_year: null,
                          efficiency_pct: null, cycles: null, fade_pct_per_year: null,
                          assets_with_fade: 0,
                          reliability: reliability({ mttr_hours: null, mtbf_hours: null }) })))
      .toEqual(["Ampyra · AP-2500", "4", "10.0", "20.0", "–", "–", "–", "–", "–", "–", "–",
                "–"]);
    expect(rowCells(row({ key: [] }))[0]).toBe("all");
  });
});

describe("the sources", () => {
  it("say how fresh each is, or that it had nothing", () => {
    const text = sourcesFreshness([
      { name: "history store: status intervals", feeds: [], latest_ms: null },
      { name: "telemetry soh_pct", feeds: [], latest_ms: FROM }]);
    expect(text).toMatch(/^history store: status intervals none in the window · telemetry soh_pct up to \d{4}-\d\d-\d\d \d\d:\d\d$/);
  });
});
