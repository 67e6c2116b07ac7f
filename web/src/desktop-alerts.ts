// Desktop notifications of critical alarms — which alarms deserve one, and what it says
// (pure: no DOM, no Notification API; desktop.ts shows them).
//
// One notification per alarm id, ever (for the page's life): an id seen once — in the live
// feed's first snapshot, an update, or the snapshot of a resync after a reconnect — is never
// notified again. The alarms of the first snapshot are what was already there when the page
// opened (the banner shows them): recorded, not notified. A critical alarm raised while the
// feed was away arrives in the resync's snapshot: new, so notified then.
import { siteHref } from "./router";
import type { AlarmView } from "./types";

/** Ids remembered at most (the oldest no longer active are forgotten first). */
export const MAX_SEEN = 5_000;

export class NewCriticals {
  private readonly seen = new Set<string>();
  private baselined = false;

  /** The alarms to notify now: critical, unacknowledged and unshelved, never seen before.
   * The first call records what is there and returns nothing. */
  fresh(alarms: readonly AlarmView[]): AlarmView[] {
    const out: AlarmView[] = [];
    for (const a of alarms) {
      if (a.severity !== "critical" || this.seen.has(a.breach_id)) continue;
      this.seen.add(a.breach_id);
      if (this.baselined && a.state === "active_unacknowledged") out.push(a);
    }
    this.baselined = true;
    if (this.seen.size > MAX_SEEN) this.forget(alarms);
    return out;
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }

  get size(): number {
    return this.seen.size;
  }

  /** Ids of alarms no longer active can go: a breach id is never raised again (it holds
   * its raise time), so forgetting one cannot bring a repeat. */
  private forget(active: readonly AlarmView[]): void {
    const keep = new Set(active.map((a) => a.breach_id));
    for (const id of this.seen) {
      if (this.seen.size <= MAX_SEEN) break;
      if (!keep.has(id)) this.seen.delete(id);
    }
  }
}

export interface AlertContent {
  title: string; // severity and asset
  body: string; // the alarm's message
  tag: string; // the alarm id: the OS replaces, never stacks, a repeat
  href: string; // where a click goes: the site's page
}

export function alertContent(a: AlarmView): AlertContent {
  return { title: `${a.severity.toUpperCase()} — ${a.asset_id}`, body: a.message,
           tag: a.breach_id, href: siteHref(a.site_id) };
}

export type Permission = "default" | "granted" | "denied" | "unsupported";
export type Preference = "on" | "off";

/** What the "Desktop alerts" button says and does. */
export function buttonState(permission: Permission, preference: Preference):
    { label: string; action: "enable" | "disable" | null; active: boolean } {
  if (permission === "unsupported") {
    return { label: "Desktop alerts: not supported by this browser", action: null, active: false };
  }
  if (permission === "denied") {
    return { label: "Desktop alerts: blocked in the browser's site settings", action: null,
             active: false };
  }
  if (permission === "granted" && preference === "on") {
    return { label: "Desktop alerts: on (turn off)", action: "disable", active: true };
  }
  return { label: "Desktop alerts: enable", action: "enable", active: false };
}

/** Whether to raise notifications at all: the browser allows it and the user turned them on. */
export function alertsOn(permission: Permission, preference: Preference): boolean {
  return buttonState(permission, preference).active;
}
