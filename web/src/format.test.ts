import { describe, expect, it } from "vitest";
import { ago, duration, money, pct, tagLabel, tagValue, words } from "./format";

describe("formatting", () => {
  it("writes percentages, or a dash for nothing", () => {
    expect(pct(97.5)).toBe("97.50 %");
    expect(pct(99.99912, 3)).toBe("99.999 %");
    expect(pct(null)).toBe("–");
    expect(pct(Number.NaN)).toBe("–");
  });

  it("writes money in its currency without cents", () => {
    expect(money(12345.67, "EUR")).toBe("€12,346");
    expect(money(0, "USD")).toBe("$0");
    expect(money(null, "EUR")).toBe("–");
    expect(money(5, "XXX-not-a-currency")).toBe("5");
  });

  it("writes durations as people say them", () => {
    expect(duration(4_400)).toBe("4 s");
    expect(duration(12 * 60_000)).toBe("12 min");
    expect(duration(185 * 60_000)).toBe("3 h 5 min");
    expect(duration(52 * 3_600_000)).toBe("2 d 4 h");
    expect(ago(-5)).toBe("0 s ago");
  });

  it("names tags and gives their units", () => {
    expect(tagLabel("cell_temp_max_c")).toBe("max cell temperature");
    expect(tagLabel("some_new_tag")).toBe("some new tag");
    expect(tagValue("cell_temp_max_c", 50)).toBe("50.0 °C");
    expect(tagValue("active_power_kw", 2500)).toBe("2500 kW");
    expect(tagValue("status_code", 3)).toBe("3");
    expect(tagValue("v_pu", 1.0123)).toBe("1.012 pu");
    expect(tagValue("f_hz", 49.987)).toBe("49.987 Hz");
    expect(tagValue("cooling_status", 2)).toBe("heating");
    expect(tagValue("cooling_status", 7)).toBe("7");
    expect(tagLabel("q_kvar")).toBe("reactive power");
    expect(words("scheduled_maintenance")).toBe("scheduled maintenance");
  });
});
