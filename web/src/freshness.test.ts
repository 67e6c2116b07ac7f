import { describe, expect, it } from "vitest";
import { freshness, ServerClock, STALE_AFTER_MS } from "./freshness";

describe("freshness", () => {
  it("calls data older than the API's limit stale", () => {
    expect(freshness(1_000, 1_000 + STALE_AFTER_MS)).toEqual({ stale: false, ageMs: 30_000 });
    expect(freshness(1_000, 1_001 + STALE_AFTER_MS).stale).toBe(true);
    expect(freshness(null, 5)).toEqual({ stale: true, ageMs: null });
    expect(freshness(10_000, 9_000)).toEqual({ stale: false, ageMs: 0 }); // clocks apart
  });

  it("judges age on the server's clock, not the display's", () => {
    const clock = new ServerClock();
    expect(clock.now(1_000)).toBe(1_000);
    clock.observe(61_000, 1_000); // the display runs a minute behind
    expect(clock.now(2_000)).toBe(62_000);
    clock.observe(71_000, 11_100); // a slow frame moves it a little, not all the way
    expect(clock.offset).toBeGreaterThan(59_900);
    expect(clock.offset).toBeLessThan(60_000);
  });
});
