import { describe, expect, it } from "vitest";
import { stackBadge } from "./stack-health";
import type { StackHealth, StackPart } from "./types";

const part = (name: string, restarts = 0, state: StackPart["state"] = "running",
  last_exit: number | null = null): StackPart => ({ name, restarts, state, last_exit });
const health = (...parts: StackPart[]): StackHealth =>
  ({ supervised: true, updated_ms: 1, parts });

describe("stackBadge", () => {
  it("shows nothing while every part runs as started, or nothing is supervised", () => {
    expect(stackBadge(health(part("flows"), part("api")))).toBeNull();
    expect(stackBadge({ supervised: false, updated_ms: null, parts: [] })).toBeNull();
  });

  it("names a part waiting to start again first", () => {
    const b = stackBadge(health(part("flows", 2, "restarting", -9), part("api", 1, "running", 1),
      part("sim")));
    expect(b).toEqual({ state: "restarting", text: "⟳ flows restarting",
      title: "flows: restarting, restarted 2×, killed by signal 9\n" +
             "api: running, restarted 1×, exit status 1" });
  });

  it("counts the restarts of the parts that came back", () => {
    const b = stackBadge(health(part("flows", 2), part("connector", 1), part("api")));
    expect(b?.state).toBe("restarted");
    expect(b?.text).toBe("flows, connector restarted 3×");
  });

  it("shows a part restarting for the first time", () => {
    expect(stackBadge(health(part("api", 0, "restarting", 1)))?.text).toBe("⟳ api restarting");
  });
});
