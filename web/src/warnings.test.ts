import { describe, expect, it } from "vitest";
import { applyAlert, MAX_ALERTS, WarningStore } from "./warnings";
import type { Alert } from "./types";

const alert = (id: string, over: Partial<Alert> = {}): Alert => ({
  v: 1, alert_id: id, kind: "telemetry_gap", scope_id: "x", site_id: "s", severity: "warning",
  state: "raised", raised_ms: 1, ts_ms: 1, message: "m", details: {}, ...over });

describe("early warnings", () => {
  it("are kept while raised and dropped when cleared", () => {
    const alerts = new Map<string, Alert>();
    applyAlert(alerts, alert("a"));
    applyAlert(alerts, alert("b"));
    applyAlert(alerts, alert("a", { state: "cleared" }));
    expect([...alerts.keys()]).toEqual(["b"]);
  });

  it("put LD risk first, then the newest", () => {
    const store = new WarningStore();
    store.replace([alert("old", { raised_ms: 1 }), alert("new", { raised_ms: 5 }),
                   alert("ld", { kind: "ld_risk", raised_ms: 0 }),
                   alert("gone", { state: "cleared" })]);
    expect(store.list().map((a) => a.alert_id)).toEqual(["ld", "new", "old"]);
    expect(store.list((a) => a.kind === "ld_risk")).toHaveLength(1);
  });

  it("stay within their cap", () => {
    const alerts = new Map<string, Alert>();
    for (let i = 0; i < MAX_ALERTS + 10; i++) applyAlert(alerts, alert(`a${i}`, { raised_ms: i }));
    expect(alerts.size).toBe(MAX_ALERTS);
    expect(alerts.has("a0")).toBe(false);
  });
});
