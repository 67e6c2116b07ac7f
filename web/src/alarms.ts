// Active alarms: the `alarms` channel's snapshot, then breaches raised / cleared and what
// operators did (handling), merged by breach id. Cleared alarms leave; the map never holds
// more than the active set (capped, least severe and oldest dropped first).
import { severityRank } from "./status";
import { Signal } from "./signal";
import type { AlarmHandling, AlarmMessage, AlarmState, AlarmView, BreachEvent } from "./types";

export const MAX_ALARMS = 2000;

/** The state at `nowMs` (a shelf that ran out is what the alarm was before it). */
export function alarmState(a: AlarmView, nowMs: number): AlarmState {
  if (a.shelved_until_ms != null && a.shelved_until_ms > nowMs) return "shelved";
  return a.acknowledged_ms != null ? "active_acknowledged" : "active_unacknowledged";
}

export function fromBreach(b: BreachEvent, previous?: AlarmView): AlarmView {
  return {
    breach_id: b.breach_id, asset_id: b.asset_id, site_id: b.site_id, rule_id: b.rule_id,
    kind: b.kind, severity: b.severity, state: previous?.state ?? "active_unacknowledged",
    raised_ms: b.raised_ms, value: b.value, threshold: b.threshold, message: b.message,
    acknowledged_by: previous?.acknowledged_by ?? null,
    acknowledged_ms: previous?.acknowledged_ms ?? null,
    shelved_until_ms: previous?.shelved_until_ms ?? null,
    shelve_reason: previous?.shelve_reason ?? null,
  };
}

export function withHandling(a: AlarmView, h: AlarmHandling, nowMs: number): AlarmView {
  const next: AlarmView = { ...a, acknowledged_by: h.acknowledged_by,
    acknowledged_ms: h.acknowledged_ms, shelved_until_ms: h.shelved_until_ms,
    shelve_reason: h.shelve_reason };
  next.state = alarmState(next, nowMs);
  return next;
}

/** Most severe first, then newest (as GET /alarms orders them). */
export function compareAlarms(a: AlarmView, b: AlarmView): number {
  return severityRank(a.severity) - severityRank(b.severity) || b.raised_ms - a.raised_ms ||
    (a.breach_id < b.breach_id ? -1 : a.breach_id > b.breach_id ? 1 : 0);
}

/** One update into the map; true when it changed something. */
export function applyAlarmMessage(alarms: Map<string, AlarmView>, msg: AlarmMessage,
                                  nowMs: number): boolean {
  if (msg.kind === "breach") {
    const b = msg.breach;
    if (b.state === "cleared") return alarms.delete(b.breach_id);
    alarms.set(b.breach_id, fromBreach(b, alarms.get(b.breach_id)));
    trim(alarms);
    return true;
  }
  const held = alarms.get(msg.handling.breach_id);
  if (!held) return false; // a handling of an alarm already cleared
  alarms.set(held.breach_id, withHandling(held, msg.handling, nowMs));
  return true;
}

function trim(alarms: Map<string, AlarmView>): void {
  if (alarms.size <= MAX_ALARMS) return;
  const drop = [...alarms.values()].sort(compareAlarms).slice(MAX_ALARMS);
  for (const a of drop) alarms.delete(a.breach_id);
}

export class AlarmStore {
  private readonly alarms = new Map<string, AlarmView>();
  readonly changed = new Signal<void>();
  loaded = false; // a snapshot of the live feed arrived (before it: nothing known yet)

  replace(list: AlarmView[]): void {
    this.loaded = true;
    this.alarms.clear();
    for (const a of list) this.alarms.set(a.breach_id, a);
    trim(this.alarms);
    this.changed.emit();
  }

  apply(msg: AlarmMessage, nowMs: number): void {
    if (applyAlarmMessage(this.alarms, msg, nowMs)) this.changed.emit();
  }

  /** An alarm as an action's answer returned it. */
  put(a: AlarmView): void {
    if (!this.alarms.has(a.breach_id)) return;
    this.alarms.set(a.breach_id, a);
    this.changed.emit();
  }

  /** Active alarms with their state at `nowMs`, most severe first; `filter` narrows. */
  list(nowMs: number, filter?: (a: AlarmView) => boolean): AlarmView[] {
    const out: AlarmView[] = [];
    for (const a of this.alarms.values()) {
      if (filter && !filter(a)) continue;
      const state = alarmState(a, nowMs);
      out.push(state === a.state ? a : { ...a, state });
    }
    return out.sort(compareAlarms);
  }

  /** Critical alarms nobody has acknowledged or shelved: what the banner shouts about. */
  criticalUnacknowledged(nowMs: number): AlarmView[] {
    return this.list(nowMs, (a) => a.severity === "critical")
      .filter((a) => a.state === "active_unacknowledged");
  }

  get size(): number {
    return this.alarms.size;
  }
}
