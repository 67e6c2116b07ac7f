import { describe, expect, it } from "vitest";
import { againstGuarantee, dropsToShow, paletteProperties, siteLevel, stateOf, STATE_COLOURS,
         worseState } from "./status";
import type { Episode } from "./types";

describe("status colours and levels", () => {
  it("colours a site by its worst unit", () => {
    expect(siteLevel({ available: 5, derated: 0, unavailable: 0, unknown: 0 })).toBe("available");
    expect(siteLevel({ available: 4, unknown: 1 })).toBe("unknown");
    expect(siteLevel({ available: 4, derated: 1, unknown: 1 })).toBe("derated");
    expect(siteLevel({ available: 3, derated: 1, unavailable: 1 })).toBe("unavailable");
    expect(siteLevel({})).toBe("available");
  });

  it("orders states from good to bad", () => {
    expect(worseState("available", "derated")).toBe("derated");
    expect(worseState("unavailable", "derated")).toBe("unavailable");
    expect(worseState("unknown", "available")).toBe("unknown");
  });

  it("reads anything unreported as unknown", () => {
    expect(stateOf(null)).toBe("unknown");
    expect(stateOf("bogus")).toBe("unknown");
    expect(stateOf("derated")).toBe("derated");
  });

  it("judges a window against the guarantee with the warning margin", () => {
    expect(againstGuarantee(98.2, 97.5)).toBe("ok");
    expect(againstGuarantee(97.8, 97.5)).toBe("watch");
    expect(againstGuarantee(97.5, 97.5)).toBe("watch");
    expect(againstGuarantee(97.49, 97.5)).toBe("ld_risk");
    expect(againstGuarantee(null, 97.5)).toBeNull();
    expect(againstGuarantee(99, null)).toBeNull();
  });

  it("gives the CSS every colour of the tables", () => {
    const props = paletteProperties();
    expect(props["--state-unavailable"]).toBe(STATE_COLOURS.unavailable);
    expect(props["--warning-ld_risk"]).toBeDefined();
    expect(props["--severity-critical"]).toBeDefined();
    expect(props["--bg"]).toBeDefined();
  });
});

describe("availability drops to list", () => {
  const drop = (id: string, start: number, end: number | null): Episode => ({
    v: 1, episode_id: id, asset_id: "u1", site_id: "s1", start_ms: start, end_ms: end,
    state: "unavailable", cause: "fault", lost_hours: 1, lost_mwh: 1, tickets: [] });

  it("lists each drop once, the open ones first, then the newest", () => {
    const open = [drop("b", 200, null)];
    const history = [drop("a", 100, 150), drop("b", 200, null), drop("c", 300, 350)];
    expect(dropsToShow(open, history).map((e) => e.episode_id)).toEqual(["b", "c", "a"]);
  });

  it("keeps at most the limit", () => {
    const history = Array.from({ length: 60 }, (_, i) => drop(`e${i}`, i, i + 1));
    const shown = dropsToShow([], history, 50);
    expect(shown).toHaveLength(50);
    expect(shown[0].episode_id).toBe("e59");
  });
});
