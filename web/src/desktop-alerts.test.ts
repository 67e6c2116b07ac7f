import { describe, expect, it } from "vitest";
import { alertContent, alertsOn, buttonState, MAX_SEEN, NewCriticals } from "./desktop-alerts";
import { alarm } from "./fixtures.test-support";

const critical = (id: string, over: object = {}) =>
  alarm({ breach_id: id, severity: "critical", asset_id: `asset-${id}`, site_id: "nordvik",
          message: `${id} too hot`, ...over });

describe("new critical alarms", () => {
  it("records the first snapshot without notifying it", () => {
    const t = new NewCriticals();
    expect(t.fresh([critical("a"), alarm({ breach_id: "m" })])).toEqual([]);
    expect(t.has("a")).toBe(true);
    expect(t.fresh([critical("a"), critical("b")]).map((a) => a.breach_id)).toEqual(["b"]);
  });

  it("an empty first snapshot is a baseline too", () => {
    const t = new NewCriticals();
    expect(t.fresh([])).toEqual([]);
    expect(t.fresh([critical("a")]).map((a) => a.breach_id)).toEqual(["a"]);
  });

  it("notifies an id once, also after a resync brings it again", () => {
    const t = new NewCriticals();
    t.fresh([]);
    expect(t.fresh([critical("a")])).toHaveLength(1);
    expect(t.fresh([critical("a")])).toEqual([]); // the next update
    expect(t.fresh([])).toEqual([]); // a resync without it (cleared) …
    expect(t.fresh([critical("a")])).toEqual([]); // … and one with it again: still once
  });

  it("a critical alarm raised while the feed was away arrives in the resync: notified", () => {
    const t = new NewCriticals();
    t.fresh([critical("a")]);
    expect(t.fresh([critical("a"), critical("raised-offline")]).map((a) => a.breach_id))
      .toEqual(["raised-offline"]);
  });

  it("only critical, unacknowledged, unshelved alarms", () => {
    const t = new NewCriticals();
    t.fresh([]);
    const out = t.fresh([alarm({ breach_id: "major", severity: "major" }),
                         critical("acked", { state: "active_acknowledged", acknowledged_ms: 1 }),
                         critical("shelved", { state: "shelved", shelved_until_ms: 99 }),
                         critical("new")]);
    expect(out.map((a) => a.breach_id)).toEqual(["new"]);
    // One acknowledged when first seen is never notified later either.
    expect(t.fresh([critical("acked")])).toEqual([]);
  });

  it("forgets ids of alarms gone, never active ones", () => {
    const t = new NewCriticals();
    t.fresh([critical("kept")]);
    for (let i = 0; i < MAX_SEEN + 10; i++) t.fresh([critical("kept"), critical(`x${i}`)]);
    expect(t.size).toBeLessThanOrEqual(MAX_SEEN);
    expect(t.has("kept")).toBe(true);
    expect(t.fresh([critical("kept")])).toEqual([]);
  });
});

describe("what a desktop alert says", () => {
  it("severity and asset, the message, the site's page", () => {
    expect(alertContent(critical("c1"))).toEqual({
      title: "CRITICAL — asset-c1", body: "c1 too hot", tag: "c1", href: "#/site/nordvik" });
  });

  it("the button follows the browser's permission and the user's choice", () => {
    expect(buttonState("default", "on").action).toBe("enable");
    expect(buttonState("granted", "off")).toMatchObject({ action: "enable", active: false });
    expect(buttonState("granted", "on")).toMatchObject({ action: "disable", active: true });
    expect(buttonState("denied", "on")).toMatchObject({ action: null, active: false });
    expect(buttonState("unsupported", "on").action).toBeNull();
    expect(alertsOn("granted", "on")).toBe(true);
    expect(alertsOn("default", "on")).toBe(false);
    expect(alertsOn("granted", "off")).toBe(false);
  });
});
