import { describe, expect, it } from "vitest";
import { DEFAULT_SORT, WINDOWS, YEAR_MS, eolRange, eolText, exposureRows, fitNotes, fittedLine,
         healthQuery, rateText, sortUnits, stateFromParams, stateParams, toggleSort,
         warrantyBlocked, warrantyQuery, windowRange } from "./battery-health";
import type { FadeFitOut, ProjectionOut, UnitHealth } from "./generated/api";
import { hashOf } from "./router";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 7, 10, 15, 30);

function proj(over: Partial<ProjectionOut> = {}): ProjectionOut {
  return { threshold_pct: 70, threshold_source: "default", reached: false, date: "2035-01-01",
           earliest: "2034-06-01", latest: "2036-01-01", note: "", ...over };
}

function fit(over: Partial<FadeFitOut> = {}): FadeFitOut {
  const rate = { value: 2, low: 1.9, high: 2.1, std_error: 0.05 };
  return { method: "time_and_cycles", samples: 100, first_ms: NOW - YEAR_MS, last_ms: NOW,
           per_year: rate, per_1000_efc: { value: 8, low: 7.5, high: 8.5, std_error: 0.2 },
           efc: 100, efc_per_year: 100, at_duty_per_year: { ...rate, value: 2.8 },
           soh_now_pct: 92, rmse_pct: 0.01, note: "", ...over };
}

function unit(id: string, projection: ProjectionOut | null, site = "nordvik",
              over: Partial<UnitHealth> = {}): UnitHealth {
  return { unit_id: id, site_id: site, vendor: null, model: null, rated_energy_mwh: 5,
           commissioned: "2024-01-01", soh: [], soh_step_ms: DAY, fit_step_ms: DAY,
           power_step_ms: 60_000, efc: 0, fit: projection ? fit() : null,
           no_fit_reason: projection ? "" : "0 SOH samples: a fit needs at least 4",
           projection, augmentation: null, threshold_pct: 70, threshold_source: "default",
           data_to_ms: null, temperature_hours: [], c_rate_hours: [], ...over };
}

describe("the page's address", () => {
  it("round-trips the state and leaves the defaults out", () => {
    const s = { site: "nordvik", unit: "nordvik-u01", window: "400 d" };
    expect(stateFromParams(stateParams(s))).toEqual(s);
    expect(stateParams({ site: "", unit: "", window: "1 y" })).toEqual({});
    expect(hashOf({ name: "battery-health", id: null, params: stateParams(s) })).toBe(
      "#/analytics/battery-health?site=nordvik&unit=nordvik-u01&window=400%20d");
  });

  it("drops a malformed id and an unknown window", () => {
    expect(stateFromParams({ site: "no/rdvik", unit: "u 1", window: "7 d" })).toEqual(
      { site: "", unit: "", window: "1 y" });
  });
});

describe("the query", () => {
  it("asks the window up to now, and the site when one is chosen", () => {
    const r = windowRange("90 d", NOW);
    expect(r.to - r.from).toBe(90 * DAY);
    expect(r.to).toBe(Date.UTC(2026, 11, 7, 10, 16));
    expect(healthQuery({ site: "", unit: "x", window: "90 d" }, r)).toEqual({
      from: "2026-09-08T10:16:00.000Z", to: "2026-12-07T10:16:00.000Z", points: "500" });
    expect(healthQuery({ site: "elbe", unit: "", window: "90 d" }, r, 50).site).toBe("elbe");
  });

  it("offers no window beyond the API's 400 days", () => {
    for (const [label, span] of WINDOWS) {
      expect(span).toBeLessThanOrEqual(400 * DAY);
      const r = windowRange(label, NOW);
      expect(r.to - r.from).toBe(span);
    }
  });
});

describe("the units' order", () => {
  const units = [
    unit("c-late", proj({ date: "2040-01-01" })),
    unit("a-none", null),
    unit("b-reached", proj({ reached: true, date: null })),
    unit("d-soon", proj({ date: "2029-05-01" })),
    unit("e-flat", proj({ date: null, earliest: "2090-01-01", latest: null })),
    unit("f-same", proj({ date: "2029-05-01" })),
  ];

  it("puts the soonest end of life first, no fit last", () => {
    expect(sortUnits(units).map((u) => u.unit_id)).toEqual(
      ["b-reached", "d-soon", "f-same", "c-late", "e-flat", "a-none"]);
  });

  it("reverses on a second click, no fit still last", () => {
    const desc = toggleSort(DEFAULT_SORT, "eol");
    expect(desc).toEqual({ key: "eol", descending: true });
    expect(sortUnits(units, desc).map((u) => u.unit_id)).toEqual(
      ["e-flat", "c-late", "d-soon", "f-same", "b-reached", "a-none"]);
    expect(toggleSort(desc, "soh")).toEqual({ key: "soh", descending: false });
  });

  it("sorts by a figure with the units lacking it last", () => {
    const fast = unit("fast", proj(), "a", { fit: fit({ at_duty_per_year:
      { value: 5, low: 4, high: 6, std_error: 1 } }) });
    const sorted = sortUnits([...units, fast], { key: "per_year", descending: true });
    expect(sorted[0]?.unit_id).toBe("fast");
    expect(sorted[sorted.length - 1]?.unit_id).toBe("a-none");
    expect(sortUnits(units, { key: "site", descending: false })[0]?.unit_id).toBe("a-none");
  });

  it("leaves the answer as it was", () => {
    const before = units.map((u) => u.unit_id);
    sortUnits(units);
    expect(units.map((u) => u.unit_id)).toEqual(before);
  });
});

describe("the fit in words", () => {
  it("gives each rate with its 95 % band", () => {
    expect(rateText({ value: 2, low: 1.9, high: 2.1, std_error: 0 })).toBe(
      "2.00 (1.90–2.10)");
    // A band narrower than the hundredths: as many digits as it takes to show it.
    expect(rateText({ value: 2, low: 1.9952, high: 2.0048, std_error: 0 })).toBe(
      "2.000 (1.995–2.005)");
    expect(rateText({ value: 2, low: 2, high: 2, std_error: 0 })).toBe("2.00 (2.00–2.00)");
    expect(rateText({ value: 12.34, low: 10, high: 14.6, std_error: 0 })).toBe(
      "12.3 (10.0–14.6)");
    expect(rateText(null)).toBe("–");
  });

  it("says when the end of life comes, or why it does not", () => {
    const u = unit("u", proj());
    expect(eolText(u)).toBe("2035-01-01");
    expect(eolRange(u)).toBe("earliest 2034-06-01 · latest 2036-01-01");
    expect(eolRange(unit("u", proj({ latest: null })))).toBe(
      "earliest 2034-06-01 · latest open");
    expect(eolText(unit("u", proj({ reached: true, date: null })))).toBe("reached");
    expect(eolText(unit("u", proj({ date: null, earliest: null, latest: null })))).toBe(
      "no fade measured");
    expect(eolText(unit("u", null))).toBe("no fit");
    expect(eolRange(unit("u", null))).toBe("");
  });

  it("gives the reason for no fit, and the fit's notes", () => {
    expect(fitNotes(unit("u", null))).toEqual(["0 SOH samples: a fit needs at least 4"]);
    const noted = unit("u", proj({ note: "the band includes no fade: the latest date is open" }),
                       "s", { fit: fit({ note: "no cycling in the samples" }) });
    expect(fitNotes(noted)).toEqual(["no cycling in the samples",
                                     "the band includes no fade: the latest date is open"]);
    expect(fitNotes(unit("u", proj()))).toEqual([]);
  });
});

describe("the fitted line", () => {
  it("ends at the fitted SOH now and rises back at the fade a year", () => {
    const line = fittedLine(unit("u", proj()));
    expect(line).toHaveLength(2);
    expect(line[1]).toEqual([NOW, 92]);
    expect(line[0]![0]).toBe(NOW - YEAR_MS);
    expect(line[0]![1]).toBeCloseTo(94.8, 10);
    expect(fittedLine(unit("u", null))).toEqual([]);
  });
});

describe("the exposure", () => {
  it("gives each band its share of the hours with data", () => {
    const rows = exposureRows([{ label: "< 0.05 C", low: null, high: 0.05, hours: 30 },
                               { label: "≥ 1 C", low: 1, high: null, hours: 10 },
                               { label: "0.05–0.25 C", low: 0.05, high: 0.25, hours: 0 }]);
    expect(rows.map((r) => r.share)).toEqual([0.75, 0.25, 0]);
    expect(exposureRows([{ label: "x", low: null, high: null, hours: 0 }])[0]?.share).toBe(0);
  });
});

describe("the warranty pack", () => {
  it("asks for the unit over the page's window, in the format chosen", () => {
    const r = { from: Date.UTC(2026, 0, 1), to: Date.UTC(2026, 3, 1) };
    expect(warrantyQuery("nordvik-u01", r, "pdf")).toEqual({ unit: "nordvik-u01",
      from: "2026-01-01T00:00:00.000Z", to: "2026-04-01T00:00:00.000Z", format: "pdf" });
    expect(warrantyQuery("elbe-u02", r, "xlsx").format).toBe("xlsx");
  });

  it("says why a role without reports.export has no buttons", () => {
    expect(warrantyBlocked(true)).toBeNull();
    expect(warrantyBlocked(false)).toContain("reports.export");
  });
});
