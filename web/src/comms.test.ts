import { describe, expect, it } from "vitest";
import { commsQuery, commsRange, devicesText, hoursText, latencyText, millis, pageFromParams,
         pageParams, pollsText, rate, stateSpans } from "./comms";
import type { CommsDevice, CommsFiguresView, CommsStateChange } from "./generated/api";

const H = 3_600_000;
const FROM = Date.UTC(2026, 2, 1);
const R = { from: FROM, to: FROM + 24 * H };

function figures(over: Partial<CommsFiguresView> = {}): CommsFiguresView {
  return { windows: 0, polls: 0, failed: 0, retries: 0, drop_rate: null, retry_rate: null,
           latency_p50_ms: null, latency_p95_ms: null, latency_max_ms: null, ...over };
}

function change(atH: number, state: CommsStateChange["state"],
                previous: CommsStateChange["previous"]): CommsStateChange {
  return { ts_ms: FROM + atH * H, state, previous, reason: `${state} at ${atH}`,
           consecutive_failures: 0 };
}

function device(changes: CommsStateChange[], state: CommsDevice["state"] = "online",
                sinceH: number | null = null): CommsDevice {
  return { device_id: "nordvik-u01", site_id: "nordvik", connector: "modbus",
           gateway: "10.0.0.1:502", state, since_ms: sinceH === null ? null : FROM + sinceH * H,
           reason: null, hours: {}, figures: figures(), changes };
}

describe("the page's address and query", () => {
  it("keeps a good site and window, drops the rest", () => {
    expect(pageFromParams({})).toEqual({ site: "", window: "1 d" });
    expect(pageFromParams({ site: "nordvik", window: "31 d" })).toEqual(
      { site: "nordvik", window: "31 d" });
    expect(pageFromParams({ site: "no/way", window: "90 d" })).toEqual(
      { site: "", window: "1 d" });
    expect(pageParams({ site: "", window: "1 d" })).toEqual({});
    expect(pageParams({ site: "elbe", window: "7 d" })).toEqual({ site: "elbe", window: "7 d" });
  });

  it("asks for the window up to the minute under way, within the API's 31 days", () => {
    const now = FROM + 10 * H + 30_500;
    for (const [label, days] of [["1 d", 1], ["7 d", 7], ["31 d", 31], ["bogus", 1]] as const) {
      const r = commsRange(label, now);
      expect(r.to).toBe(FROM + 10 * H + 60_000);
      expect(r.to - r.from).toBe(days * 24 * H);
    }
    expect(commsQuery({ site: "", window: "1 d" }, R)).toEqual(
      { from: "2026-03-01T00:00:00.000Z", to: "2026-03-02T00:00:00.000Z" });
    expect(commsQuery({ site: "mesa", window: "1 d" }, R).site).toBe("mesa");
  });
});

describe("the figures in words", () => {
  it("reads rates, latencies and polls", () => {
    expect(rate(0.25)).toBe("25.0 %");
    expect(rate(0.375)).toBe("37.5 %");
    expect(rate(null)).toBe("–");
    expect(millis(1250.4)).toBe("1,250 ms");
    expect(millis(null)).toBe("–");
    expect(latencyText(figures({ latency_p50_ms: 40, latency_p95_ms: 80.4,
                                 latency_max_ms: 1400 }))).toBe("40 · 80 · 1,400 ms");
    expect(latencyText(figures())).toBe("–");
    expect(pollsText(figures({ polls: 180, failed: 30, retries: 51 }))).toBe(
      "180 polls, 30 dropped, 51 retries");
    expect(pollsText(figures())).toBe("no polls");
  });

  it("lists the states worst first, without those with none", () => {
    expect(hoursText({ online: 21, degraded: 1, offline: 2 })).toBe(
      "offline 2.0 h · degraded 1.0 h · online 21.0 h");
    expect(hoursText({ online: 24, degraded: 0 })).toBe("online 24.0 h");
    expect(hoursText({})).toBe("–");
    expect(devicesText({ online: 2, offline: 1, unknown: 1 })).toBe(
      "1 offline · 2 online · 1 unknown");
    expect(devicesText({})).toBe("no devices");
  });
});

describe("a device's timeline", () => {
  it("starts from the state before the first change and follows each", () => {
    const d = device([change(2, "degraded", "online"), change(3, "offline", "degraded"),
                      change(5, "online", "offline")]);
    expect(stateSpans(d, R, R.to + H)).toEqual([
      { state: "online", startMs: FROM, endMs: FROM + 2 * H },
      { state: "degraded", startMs: FROM + 2 * H, endMs: FROM + 3 * H },
      { state: "offline", startMs: FROM + 3 * H, endMs: FROM + 5 * H },
      { state: "online", startMs: FROM + 5 * H, endMs: R.to }]);
  });

  it("ends now, and without a change holds the state now", () => {
    expect(stateSpans(device([], "offline", -3), R, FROM + 6 * H)).toEqual(
      [{ state: "offline", startMs: FROM, endMs: FROM + 6 * H }]);
    expect(stateSpans(device([], null), R, R.to)).toEqual(
      [{ state: "unknown", startMs: FROM, endMs: R.to }]);
  });

  it("marks unknown what nothing says, and merges a repeated report", () => {
    const d = device([change(0, "online", null), change(1, "online", "online"),
                      change(4, "offline", "online")]);
    expect(stateSpans(d, R, R.to)).toEqual([
      { state: "online", startMs: FROM, endMs: FROM + 4 * H },
      { state: "offline", startMs: FROM + 4 * H, endMs: R.to }]);
    const late = device([change(6, "online", null)]);
    expect(stateSpans(late, R, R.to)[0]).toEqual(
      { state: "unknown", startMs: FROM, endMs: FROM + 6 * H });
  });
});
