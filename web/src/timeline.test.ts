import { describe, expect, it } from "vitest";
import { bucketAvailability, lossOf, segments, weightedBuckets } from "./timeline";
import type { StatusInterval } from "./types";

const iv = (start: number, end: number | null, state: StatusInterval["state"],
            derate: number | null = null): StatusInterval =>
  ({ start_ms: start, end_ms: end, state, derate_fraction: derate, cause: null });

describe("availability from status intervals", () => {
  it("counts a derate pro rata and leaves unknown time out", () => {
    expect(lossOf(iv(0, 1, "available"))).toBe(0);
    expect(lossOf(iv(0, 1, "unavailable"))).toBe(1);
    expect(lossOf(iv(0, 1, "derated", 0.25))).toBe(0.75);
    expect(lossOf(iv(0, 1, "unknown"))).toBeNull();
  });

  it("buckets time, open intervals lasting until now", () => {
    const intervals = [iv(0, 50, "available"), iv(50, 100, "unavailable"),
                       iv(100, 150, "derated", 0.5), iv(150, null, "unknown")];
    const b = bucketAvailability(intervals, 0, 400, 100, 250);
    expect(b.map((x) => x.startMs)).toEqual([0, 100, 200]); // nothing after now
    expect(b[0]?.pct).toBeCloseTo(50, 9);
    expect(b[1]?.pct).toBeCloseTo(50, 9); // half derated at 0.5, then unknown: left out
    expect(b[2]?.pct).toBeNull(); // unknown all along
  });

  it("clips intervals that started before the range", () => {
    const b = bucketAvailability([iv(-1_000, null, "available")], 0, 200, 100, 200);
    expect(b.map((x) => x.pct)).toEqual([100, 100]);
  });

  it("weights assets into a site's trend, skipping assets without a value", () => {
    const site = weightedBuckets([
      { weight: 3, buckets: [{ startMs: 0, pct: 100 }, { startMs: 1, pct: null }] },
      { weight: 1, buckets: [{ startMs: 0, pct: 60 }, { startMs: 1, pct: 80 }] },
    ]);
    expect(site).toEqual([{ startMs: 0, pct: 90 }, { startMs: 1, pct: 80 }]);
    expect(weightedBuckets([])).toEqual([]);
  });

  it("turns lanes of intervals into bars within the window", () => {
    const bars = segments([[iv(-50, 20, "available"), iv(20, null, "derated", 0.5)],
                           [iv(200, 300, "unavailable")]], 0, 100);
    expect(bars).toEqual([
      { lane: 0, startMs: 0, endMs: 20, state: "available", cause: null, derateFraction: null },
      { lane: 0, startMs: 20, endMs: 100, state: "derated", cause: null, derateFraction: 0.5 },
    ]);
  });
});
