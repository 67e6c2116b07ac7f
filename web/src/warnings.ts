// Early warnings (the `alerts` channel): LD risk, telemetry gaps, frozen values … raised
// once, cleared once, kept by alert id while raised.
import { Signal } from "./signal";
import type { Alert } from "./types";

export const MAX_ALERTS = 1000;

export function applyAlert(alerts: Map<string, Alert>, alert: Alert): boolean {
  if (alert.state === "cleared") return alerts.delete(alert.alert_id);
  alerts.set(alert.alert_id, alert);
  if (alerts.size > MAX_ALERTS) {
    const oldest = [...alerts.values()].sort((a, b) => a.raised_ms - b.raised_ms)[0];
    if (oldest) alerts.delete(oldest.alert_id);
  }
  return true;
}

export class WarningStore {
  private readonly alerts = new Map<string, Alert>();
  readonly changed = new Signal<void>();

  replace(list: Alert[]): void {
    this.alerts.clear();
    for (const a of list) if (a.state !== "cleared") applyAlert(this.alerts, a);
    this.changed.emit();
  }

  apply(alert: Alert): void {
    if (applyAlert(this.alerts, alert)) this.changed.emit();
  }

  /** Newest first; LD-risk warnings before the others. */
  list(filter?: (a: Alert) => boolean): Alert[] {
    return [...this.alerts.values()].filter((a) => !filter || filter(a))
      .sort((a, b) => Number(b.kind === "ld_risk") - Number(a.kind === "ld_risk") ||
        b.raised_ms - a.raised_ms);
  }
}
