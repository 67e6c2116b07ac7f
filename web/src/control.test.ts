import { describe, expect, it } from "vitest";
import {
  derateText, freshText, limitsText, loopText, outcomeClass, outcomeText, readBackText,
  recentCommands, sentText, siteCanStop, STATE_COLOURS, UNIT_STATES, unitCommands, validReason,
} from "./control";
import type { CommandSummary, UnitControlView } from "./types";

function command(over: Partial<CommandSummary> = {}): CommandSummary {
  return { command_id: "c1", kind: "estop", actor: "engineer", reason: "smoke", ts_ms: 1_000,
           outcome: null, by: null, detail: "", read_back: {}, writes: [], ...over };
}

function view(over: Partial<UnitControlView> = {}): UnitControlView {
  return { unit_id: "nordvik-u01", site_id: "nordvik", state: "RUNNING", mode: "normal",
           device: "running", fresh: true, derate: 1, power_limit_kw: null, interlocks: [],
           limits: [], last_command: null, commands: [], last_refusal: null, updated_ms: 0,
           ...over };
}

describe("which commands show", () => {
  it("shows nothing to a role without control.command, in any state", () => {
    for (const state of UNIT_STATES) expect(unitCommands(false, state)).toEqual([]);
    expect(siteCanStop(false, 4)).toBe(false);
  });

  it("offers an emergency stop in every state, and reset once stopped", () => {
    expect(unitCommands(true, "RUNNING")).toEqual(["estop"]);
    expect(unitCommands(true, "IDLE")).toEqual(["estop"]);
    expect(unitCommands(true, "BOOT")).toEqual(["estop"]);
    expect(unitCommands(true, "ERROR")).toEqual(["estop", "reset"]);
    expect(unitCommands(true, "STOPPED")).toEqual(["estop", "reset"]);
    expect(siteCanStop(true, 4)).toBe(true);
    expect(siteCanStop(true, 0)).toBe(false);
  });
});

describe("reasons", () => {
  it("requires 1 to 500 characters, trimmed", () => {
    expect(validReason("")).toBeNull();
    expect(validReason("   ")).toBeNull();
    expect(validReason("  smoke in container 3 ")).toBe("smoke in container 3");
    expect(validReason("x".repeat(500))).toHaveLength(500);
    expect(validReason("x".repeat(501))).toBeNull();
  });
});

describe("formatting", () => {
  it("colours every state as agreed", () => {
    expect(Object.keys(STATE_COLOURS).sort()).toEqual([...UNIT_STATES].sort());
    expect(STATE_COLOURS.RUNNING).toBe("#2ea043");
    expect(STATE_COLOURS.ERROR).not.toBe(STATE_COLOURS.STOPPED);
  });

  it("reads derates, freshness and limits", () => {
    expect(derateText(1, null)).toBe("full power");
    expect(derateText(0.5, 1000)).toBe("derated to 50 % · limit 1000 kW");
    expect(freshText(false)).toBe("telemetry stale");
    expect(limitsText([])).toBe("none");
    expect(limitsText([{ breach_id: "cell-temp-high:major:u1:5", severity: "major" }]))
      .toBe("major: cell-temp-high");
  });

  it("reads outcomes and read-backs", () => {
    expect([outcomeText(command()), outcomeClass(command())]).toEqual(["pending", "pending"]);
    const written = command({ outcome: "written", by: "connector",
                              read_back: { control_mode: 2, active_power_setpoint_kw: 0 } });
    expect(outcomeText(written)).toBe("written by the connector");
    expect(outcomeClass(written)).toBe("ok");
    expect(readBackText(written.read_back)).toBe("active power setpoint kw 0.0 · control mode 2.0");
    const refused = command({ kind: "reset", outcome: "refused", by: "control",
                              detail: "an interlock forbids start" });
    expect(outcomeText(refused)).toBe("refused by the control loop: an interlock forbids start");
    expect(outcomeClass(refused)).toBe("bad");
    expect(outcomeClass(command({ outcome: "timeout" }))).toBe("bad");
  });

  it("lists the newest commands first, the last one when there is no list", () => {
    const old = command({ command_id: "old", ts_ms: 1 });
    const fresh = command({ command_id: "new", ts_ms: 2 });
    expect(recentCommands(view({ commands: [old, fresh] })).map((c) => c.command_id))
      .toEqual(["new", "old"]);
    expect(recentCommands(view({ last_command: old })).map((c) => c.command_id)).toEqual(["old"]);
    const many = Array.from({ length: 9 }, (_, i) => command({ command_id: `c${i}`, ts_ms: i }));
    expect(recentCommands(view({ commands: many }), 3).map((c) => c.command_id))
      .toEqual(["c8", "c7", "c6"]);
  });

  it("says whether the control loop is alive", () => {
    expect(loopText(true, 1_000, 2_000)).toBe("control loop online");
    expect(loopText(false, null, 2_000)).toBe("control loop offline — never seen");
    expect(loopText(false, 0, 65_000)).toBe("control loop offline — last seen 1 min ago");
  });

  it("says what was sent", () => {
    expect(sentText("estop", ["u1"], ["abc"])).toBe("Emergency stop sent to u1: command abc");
    expect(sentText("estop", ["u1", "u2"], ["a", "b"]))
      .toBe("Emergency stop sent to 2 units: commands a, b");
    expect(sentText("reset", ["u1"], ["r"])).toBe("Reset sent to u1: command r");
  });
});
