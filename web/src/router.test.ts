import { describe, expect, it } from "vitest";
import { assetHref, hashOf, parseHash } from "./router";

describe("hash routes", () => {
  it.each([
    ["", "overview", null],
    ["#/", "overview", null],
    ["#/site/nordvik", "site", "nordvik"],
    ["#/asset/elbe-u01-i1-b3", "asset", "elbe-u01-i1-b3"],
    ["#/control/nordvik", "control", "nordvik"],
    ["#/control", "overview", null],
    ["#/alarms", "alarms", null],
    ["#/quality", "quality", null],
    ["#/contracts", "contracts", null],
    ["#/notifications", "notifications", null],
    ["#/wall", "wall", null],
    ["#/login", "login", null],
    ["#/nonsense/x/y", "overview", null],
    ["#/site", "overview", null],
    ["#/analytics/historian", "historian", null],
    ["#/analytics/faults", "faults", null],
    ["#/analytics/battery-health", "battery-health", null],
    ["#/analytics/comms", "comms", null],
    ["#/analytics/vendors", "vendors", null],
    ["#/comms", "overview", null],
    ["#/analytics/nonsense", "overview", null],
    ["#/analytics", "overview", null],
    ["#/historian", "overview", null],
  ])("%s is %s", (hash, name, id) => {
    const { route, token } = parseHash(hash);
    expect(route.name).toBe(name);
    expect(route.id).toBe(id);
    expect(token).toBeNull();
  });

  it("takes the token out of make up's link", () => {
    const parsed = parseHash("#token=eyJ.abc.def");
    expect(parsed.token).toBe("eyJ.abc.def");
    expect(parsed.route.name).toBe("overview");
    expect(parsed.clean).toBe("#/");
  });

  it("takes a token given to a route, keeping the other parameters", () => {
    const parsed = parseHash("#/wall?every=10&token=abc");
    expect(parsed).toEqual({ route: { name: "wall", id: null, params: { every: "10" } },
                             token: "abc", clean: "#/wall?every=10" });
  });

  it("round-trips routes and escapes ids", () => {
    expect(hashOf({ name: "site", id: "a b", params: {} })).toBe("#/site/a%20b");
    expect(parseHash(hashOf({ name: "site", id: "a b", params: {} })).route.id).toBe("a b");
    expect(assetHref("x-u1")).toBe("#/asset/x-u1");
    expect(hashOf({ name: "faults", id: null, params: {} })).toBe("#/analytics/faults");
    expect(hashOf({ name: "battery-health", id: null, params: { site: "elbe" } })).toBe(
      "#/analytics/battery-health?site=elbe");
    expect(parseHash("#/analytics/historian?x=1").clean).toBe("#/analytics/historian?x=1");
  });
});
