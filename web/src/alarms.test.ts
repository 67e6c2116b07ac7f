import { describe, expect, it } from "vitest";
import { AlarmStore, alarmState, applyAlarmMessage, compareAlarms, MAX_ALARMS } from "./alarms";
import { alarm, breach } from "./fixtures.test-support";
import type { AlarmView } from "./types";

const handling = (id: string, over: object = {}) => ({
  v: 1 as const, breach_id: id, acknowledged_by: null, acknowledged_ms: null, comment: null,
  shelved_by: null, shelved_until_ms: null, shelve_reason: null, ...over });

describe("alarm merging", () => {
  it("adds raised breaches, applies handling, drops cleared ones", () => {
    const alarms = new Map<string, AlarmView>();
    const b = breach();
    expect(applyAlarmMessage(alarms, { kind: "breach", breach: b }, 2_000)).toBe(true);
    expect(alarms.get(b.breach_id)?.state).toBe("active_unacknowledged");
    applyAlarmMessage(alarms, { kind: "handling", site_id: "elbe", handling: handling(
      b.breach_id, { acknowledged_by: "engineer", acknowledged_ms: 2_500 }) }, 3_000);
    expect(alarms.get(b.breach_id)).toMatchObject({ state: "active_acknowledged",
                                                    acknowledged_by: "engineer" });
    // A replayed raise keeps what operators did.
    applyAlarmMessage(alarms, { kind: "breach", breach: b }, 3_100);
    expect(alarms.get(b.breach_id)?.acknowledged_by).toBe("engineer");
    expect(applyAlarmMessage(alarms, { kind: "breach",
                                       breach: { ...b, state: "cleared" } }, 4_000)).toBe(true);
    expect(alarms.size).toBe(0);
    // Handling of an alarm gone already changes nothing.
    expect(applyAlarmMessage(alarms, { kind: "handling", site_id: "elbe",
                                       handling: handling(b.breach_id) }, 5_000)).toBe(false);
  });

  it("a shelf hides an alarm until it ends", () => {
    const a = alarm({ shelved_until_ms: 10_000 });
    expect(alarmState(a, 9_999)).toBe("shelved");
    expect(alarmState(a, 10_000)).toBe("active_unacknowledged");
    expect(alarmState({ ...a, acknowledged_ms: 5 }, 10_001)).toBe("active_acknowledged");
  });

  it("orders most severe first, then newest", () => {
    const list = [alarm({ breach_id: "1", severity: "minor", raised_ms: 9 }),
                  alarm({ breach_id: "2", severity: "critical", raised_ms: 1 }),
                  alarm({ breach_id: "3", severity: "critical", raised_ms: 5 })];
    expect(list.sort(compareAlarms).map((a) => a.breach_id)).toEqual(["3", "2", "1"]);
  });

  it("never holds more than its cap", () => {
    const alarms = new Map<string, AlarmView>();
    for (let i = 0; i < MAX_ALARMS + 50; i++) {
      applyAlarmMessage(alarms, { kind: "breach", breach: breach({ breach_id: `b${i}`,
        raised_ms: i, severity: i === 0 ? "critical" : "warning" }) }, i);
    }
    expect(alarms.size).toBe(MAX_ALARMS);
    expect(alarms.has("b0")).toBe(true); // the critical one stays
  });
});

describe("alarm store", () => {
  it("finds critical alarms nobody has handled", () => {
    const store = new AlarmStore();
    store.replace([alarm({ breach_id: "c1", severity: "critical" }),
                   alarm({ breach_id: "c2", severity: "critical", acknowledged_ms: 1,
                           state: "active_acknowledged" }),
                   alarm({ breach_id: "c3", severity: "critical", shelved_until_ms: 99,
                           state: "shelved" }),
                   alarm({ breach_id: "m1", severity: "major" })]);
    expect(store.criticalUnacknowledged(50).map((a) => a.breach_id)).toEqual(["c1"]);
    // Once the shelf is over, c3 is back.
    expect(store.criticalUnacknowledged(100).map((a) => a.breach_id).sort()).toEqual(
      ["c1", "c3"]);
    store.put(alarm({ breach_id: "zzz" })); // not active: not added
    expect(store.size).toBe(4);
  });
});
