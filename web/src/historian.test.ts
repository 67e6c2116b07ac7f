import { describe, expect, it } from "vitest";
import type { HistorianAnswer } from "./generated/api";
import { parseHash } from "./router";
import { DAY_MS, HOUR_MS, MAX_SPAN_MS, MIN_SPAN_MS, MINUTE_MS, chartBlocked, exportBlocked,
         exportQuery, exportRows, historianHref, historianQuery, horizon, lastRange, lines, newestPoint, niceBounds, pan,
         plotPct, pointsFor, selectionFromParams, subRange, zoom, type Range } from "./historian";

const NOW = Date.UTC(2026, 2, 10, 12, 0, 30); // 12:00:30: the minute 12:00 is under way
const END = Date.UTC(2026, 2, 10, 12, 1); // the horizon
const SEL = { assets: ["nordvik-u01", "nordvik-u02"], tags: ["soc_pct"] };

const minutes = (r: Range) => [r.from % MINUTE_MS, r.to % MINUTE_MS];

describe("the visible range", () => {
  it("ends with the minute under way and is whole minutes", () => {
    expect(horizon(NOW)).toBe(END);
    expect(lastRange(DAY_MS, NOW)).toEqual({ from: END - DAY_MS, to: END });
    expect(lastRange(1, NOW)).toEqual({ from: END - MIN_SPAN_MS, to: END });
    expect(lastRange(10 * 365 * DAY_MS, NOW).to - lastRange(10 * 365 * DAY_MS, NOW).from)
      .toBe(MAX_SPAN_MS);
  });

  it("zooms in about the middle and out again", () => {
    const day = { from: END - DAY_MS - 12 * HOUR_MS, to: END - 12 * HOUR_MS };
    const middle = (day.from + day.to) / 2;
    const inner = zoom(day, 0.25, NOW);
    expect(inner.to - inner.from).toBe(6 * HOUR_MS);
    expect((inner.from + inner.to) / 2).toBe(middle);
    expect(zoom(inner, 4, NOW)).toEqual(day);
  });

  it("keeps the anchor where it is on screen", () => {
    const day = lastRange(DAY_MS, NOW);
    const left = zoom({ from: day.from - DAY_MS, to: day.to - DAY_MS }, 0.5, NOW, 0);
    expect(left.from).toBe(day.from - DAY_MS);
    expect(left.to - left.from).toBe(12 * HOUR_MS);
  });

  it("stops at ten minutes, 400 days, the epoch and now", () => {
    let r = lastRange(HOUR_MS, NOW);
    for (let i = 0; i < 20; i++) r = zoom(r, 0.5, NOW);
    expect(r.to - r.from).toBe(MIN_SPAN_MS);
    for (let i = 0; i < 40; i++) r = zoom(r, 2, NOW);
    expect(r).toEqual({ from: END - MAX_SPAN_MS, to: END });
    expect(pan(r, 1, NOW)).toEqual(r); // nothing after now
    expect(pan({ from: HOUR_MS, to: 2 * HOUR_MS }, -5, NOW)).toEqual({ from: 0, to: HOUR_MS });
  });

  it("pans by a share of the range, in whole minutes", () => {
    const r = lastRange(HOUR_MS, NOW);
    expect(pan(r, -0.5, NOW)).toEqual({ from: r.from - 30 * MINUTE_MS,
                                        to: r.to - 30 * MINUTE_MS });
    const odd = pan(r, -0.123, NOW);
    expect(minutes(odd)).toEqual([0, 0]);
    expect(odd.to - odd.from).toBe(HOUR_MS);
  });

  it("takes the dragged part of the chart", () => {
    const r = { from: END - 2 * DAY_MS, to: END - DAY_MS };
    expect(subRange(r, 25, 75, NOW)).toEqual({ from: r.from + 6 * HOUR_MS,
                                               to: r.to - 6 * HOUR_MS });
    expect(subRange(r, 75, 25, NOW)).toEqual(subRange(r, 25, 75, NOW));
    const tiny = subRange(r, 50, 50.001, NOW);
    expect(tiny.to - tiny.from).toBe(MIN_SPAN_MS);
    expect(minutes(tiny)).toEqual([0, 0]);
  });

  it("reads a drag on the plot as percentages of it", () => {
    expect(plotPct(150, 150, 1000)).toBe(0);
    expect(plotPct(400, 150, 1000)).toBe(25);
    expect(plotPct(2000, 150, 1000)).toBe(100);
    expect(plotPct(10, 150, 1000)).toBe(0);
    expect(plotPct(10, 150, 0)).toBe(0);
  });
});

describe("the queries", () => {
  const r = { from: Date.UTC(2026, 2, 2), to: Date.UTC(2026, 2, 3) };

  it("ask for the selection over the range, one bucket per pixel", () => {
    expect(historianQuery(SEL, r, 812.4)).toEqual({
      assets: "nordvik-u01,nordvik-u02", tags: "soc_pct", from: "2026-03-02T00:00:00.000Z",
      to: "2026-03-03T00:00:00.000Z", points: "812" });
    expect(pointsFor(0)).toBe(2);
    expect(pointsFor(NaN)).toBe(2);
    expect(pointsFor(99_999)).toBe(5_000);
  });

  it("export exactly what is on screen", () => {
    expect(exportQuery(SEL, r, "parquet")).toEqual({
      assets: "nordvik-u01,nordvik-u02", tags: "soc_pct", from: "2026-03-02T00:00:00.000Z",
      to: "2026-03-03T00:00:00.000Z", format: "parquet" });
    expect(exportRows(r)).toBe(1440);
  });

  it("say why a chart or an export cannot be had", () => {
    expect(chartBlocked(SEL)).toBeNull();
    expect(chartBlocked({ assets: [], tags: ["soc_pct"] })).toContain("Pick");
    const many = { assets: Array.from({ length: 51 }, (_, i) => `a${i}`), tags: ["soc_pct"] };
    expect(chartBlocked(many)).toContain("51 series");
    expect(exportBlocked(SEL, r, true)).toBeNull();
    expect(exportBlocked(SEL, r, false)).toContain("reports.export");
    expect(exportBlocked(SEL, { from: r.from, to: r.from + 32 * DAY_MS }, true))
      .toContain("31 days");
    expect(exportBlocked(SEL, { from: r.from, to: r.from + 31 * DAY_MS }, true)).toBeNull();
    const wide = { assets: Array.from({ length: 26 }, (_, i) => `a${i}`),
                   tags: ["soc_pct", "temperature_c", "active_power_kw", "soh_pct"] };
    expect(exportBlocked(wide, r, true)).toContain("50"); // the chart's limit comes first
  });
});

describe("a selection in the address", () => {
  it("round-trips and keeps only well-formed ids, once each", () => {
    const href = historianHref({ assets: ["nordvik-u01", "elbe-u01"], tags: ["soc_pct"] });
    expect(href).toBe("#/analytics/historian?assets=nordvik-u01,elbe-u01&tags=soc_pct");
    expect(parseHash(href).route.params).toEqual({ assets: "nordvik-u01,elbe-u01",
                                                  tags: "soc_pct" });
    expect(selectionFromParams(parseHash(href).route.params))
      .toEqual({ assets: ["nordvik-u01", "elbe-u01"], tags: ["soc_pct"] });
    expect(selectionFromParams({ assets: "a,,a, b ,<x>", tags: "" }))
      .toEqual({ assets: ["a", "b"], tags: [] });
    expect(selectionFromParams({})).toEqual({ assets: [], tags: [] });
    expect(historianHref({ assets: [], tags: [] })).toBe("#/analytics/historian");
  });
});

describe("the answer", () => {
  const answer: HistorianAnswer = {
    from_ms: 0, to_ms: 600_000, step_ms: 120_000, series: [
      { asset_id: "nordvik-u01", site_id: "nordvik", tag: "soc_pct", unit: "%", points: [
        { start_ms: 0, count: 2, min: 40, avg: 41, max: 42 },
        { start_ms: 240_000, count: 1, min: 45, avg: 45, max: 45 }] },
      { asset_id: "nordvik-u02", site_id: "nordvik", tag: "soc_pct", unit: "%", points: [] },
    ] };

  it("becomes one line per series, with its band", () => {
    expect(lines(answer)).toEqual([
      { name: "nordvik-u01 · state of charge", unit: "%", avg: [[0, 41], [240_000, 45]],
        band: [[0, 40, 42], [240_000, 45, 45]], count: 3 },
      { name: "nordvik-u02 · state of charge", unit: "%", avg: [], band: [], count: 0 }]);
  });

  it("gets a value axis with round ends", () => {
    expect(niceBounds(40, 100)).toEqual([40, 100]);
    expect(niceBounds(37.2, 102.9)).toEqual([20, 120]);
    expect(niceBounds(-3.1, 7.4)).toEqual([-5, 10]); // steps of 5
    expect(niceBounds(0.11, 0.29)).toEqual([0.1, 0.3]);
    expect(niceBounds(1234, 1234)).toEqual([1150, 1300]); // ± 5 %, steps of 50
    expect(niceBounds(0, 0)).toEqual([-1, 1]);
    expect(niceBounds(Infinity, -Infinity)).toEqual([0, 1]);
  });

  it("says how fresh it is", () => {
    expect(newestPoint(answer)).toBe(240_000);
    expect(newestPoint({ ...answer, series: [] })).toBeNull();
  });
});
