import { describe, expect, it } from "vitest";
import { CAUSES, NO_FILTERS, episodeBars, faultsQuery, groupLabel, hours, keysOf } from "./faults";
import type { FaultEpisode, ReliabilityRow } from "./generated/api";

const H = 3_600_000;
const FROM = Date.UTC(2026, 2, 1);
const R = { from: FROM, to: FROM + 240 * H };

function ep(asset: string, site: string, startH: number, endH: number | null,
            state = "unavailable"): FaultEpisode {
  return { episode_id: `${asset}:${startH}`, asset_id: asset, level: "unit", site_id: site,
           vendor: null, model: null, cause: "fault", state, start_ms: FROM + startH * H,
           end_ms: endH === null ? null : FROM + endH * H,
           duration_hours: endH === null ? null : endH - startH, lost_hours: 1, lost_mwh: 1,
           tickets: [] };
}

function row(key: string[]): ReliabilityRow {
  return { key, assets: 1, asset_hours: 1, operating_hours: 1, failures: 0, downtime_hours: 0,
           repairs: 0, repair_hours: 0, mttr_hours: null, mtbf_hours: null, open: 0,
           derated: 0, derated_hours: 0, comms_hours: 0 };
}

describe("the faults query", () => {
  it("holds the range, the grouping and only the filters set", () => {
    expect(faultsQuery(NO_FILTERS, R, "cause")).toEqual({
      from: "2026-03-01T00:00:00.000Z", to: "2026-03-11T00:00:00.000Z", group_by: "cause",
      limit: "2000" });
    expect(faultsQuery({ site: "nordvik", vendor: "Voltara", cause: "unknown", level: "" }, R,
                       "model", 5)).toEqual({
      from: "2026-03-01T00:00:00.000Z", to: "2026-03-11T00:00:00.000Z", group_by: "model",
      limit: "5", site: "nordvik", vendor: "Voltara", cause: "unknown" });
  });

  it("knows every cause and the episodes without one", () => {
    expect(CAUSES).toContain("comms_loss");
    expect(CAUSES[CAUSES.length - 1]).toBe("unknown");
    expect(new Set(CAUSES).size).toBe(CAUSES.length);
  });
});

describe("the timeline", () => {
  it("has a lane per asset, by site then asset, and clips bars to the range", () => {
    const { lanes, bars } = episodeBars([
      ep("nordvik-u02", "nordvik", 10, 12), ep("elbe-u01", "elbe", -5, 3, "derated"),
      ep("nordvik-u01", "nordvik", 230, 250), ep("nordvik-u02", "nordvik", 20, 21)],
      R, R.to + H);
    expect(lanes).toEqual(["elbe-u01", "nordvik-u01", "nordvik-u02"]);
    expect(bars).toEqual([
      { lane: 2, startMs: FROM + 10 * H, endMs: FROM + 12 * H, state: "unavailable",
        cause: "fault", derateFraction: null },
      { lane: 0, startMs: FROM, endMs: FROM + 3 * H, state: "derated", cause: "fault",
        derateFraction: null },
      { lane: 1, startMs: FROM + 230 * H, endMs: R.to, state: "unavailable", cause: "fault",
        derateFraction: null },
      { lane: 2, startMs: FROM + 20 * H, endMs: FROM + 21 * H, state: "unavailable",
        cause: "fault", derateFraction: null }]);
  });

  it("draws an open episode until now", () => {
    const now = FROM + 100 * H;
    expect(episodeBars([ep("mesa-u01", "mesa", 90, null)], R, now).bars[0]?.endMs).toBe(now);
    expect(episodeBars([ep("mesa-u01", "mesa", 190, null)], R, now).bars).toEqual([]);
  });
});

describe("the table", () => {
  it("reads keys and hours", () => {
    expect(groupLabel([])).toBe("all");
    expect(groupLabel(["scheduled_maintenance"])).toBe("scheduled maintenance");
    expect(groupLabel(["Voltara", "VX-3"])).toBe("Voltara · VX-3");
    expect(hours(null)).toBe("–");
    expect(hours(4.75)).toBe("4.8 h");
    expect(hours(13664.8)).toBe("13,665 h");
    expect(keysOf([row(["Voltara"]), row(["unknown"]), row(["Ampere", "A1"]),
                   row(["Voltara", "VX-3"])])).toEqual(["Ampere", "Voltara", "unknown"]);
  });
});
