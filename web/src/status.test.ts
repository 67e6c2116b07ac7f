import { describe, expect, it } from "vitest";
import { againstGuarantee, paletteProperties, siteLevel, stateOf, STATE_COLOURS,
         worseState } from "./status";

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
