// The data-quality view's rules: a site's refused records grouped by the device that sent
// them (its reasons under it), the devices and sites that send the most first.
import type { DeadLetterRow, QualityTotals } from "./types";

export interface DeviceReason {
  reason: string;
  count: number;
  first_ms: number;
  last_ms: number;
  last_detail: string;
}

export interface DeviceQuality {
  device: string; // "" for records without a key
  asset_id: string | null;
  count: number; // every reason together
  last_ms: number; // the newest of its refused records
  reasons: DeviceReason[]; // most frequent first, then the most recent
}

const byCountThenNewest = (a: { count: number; last_ms: number },
                           b: { count: number; last_ms: number }) =>
  b.count - a.count || b.last_ms - a.last_ms;

/** Tallies (device, reason) → one entry per device: most refused records first, equal
 * counts the most recent first, then by name (stable across refreshes). */
export function byDevice(tallies: readonly DeadLetterRow[]): DeviceQuality[] {
  const devices = new Map<string, DeviceQuality>();
  for (const t of tallies) {
    let d = devices.get(t.device);
    if (!d) {
      d = { device: t.device, asset_id: t.asset_id, count: 0, last_ms: 0, reasons: [] };
      devices.set(t.device, d);
    }
    d.count += t.count;
    d.last_ms = Math.max(d.last_ms, t.last_ms);
    d.asset_id ??= t.asset_id;
    d.reasons.push({ reason: t.reason, count: t.count, first_ms: t.first_ms,
                     last_ms: t.last_ms, last_detail: t.last_detail });
  }
  const out = [...devices.values()];
  for (const d of out) {
    d.reasons.sort((a, b) => byCountThenNewest(a, b) || a.reason.localeCompare(b.reason));
  }
  return out.sort((a, b) => byCountThenNewest(a, b) || a.device.localeCompare(b.device));
}

/** Sites with something to act on first (the most refused records, then the most alerts),
 * the others after them in the order given (the fleet's). */
export function sitesToShow<T extends QualityTotals>(sites: readonly T[]): T[] {
  return sites.map((s, i) => ({ s, i }))
    .sort((a, b) => b.s.records - a.s.records || b.s.alerts.length - a.s.alerts.length ||
      a.i - b.i)
    .map(({ s }) => s);
}

/** What the fleet strip shows: refused records, devices sending them, alerts. */
export function qualityTotals(parts: readonly QualityTotals[]):
    { records: number; devices: number; alerts: number } {
  let records = 0;
  let alerts = 0;
  const devices = new Set<string>();
  parts.forEach((p, i) => {
    records += p.records;
    alerts += p.alerts.length;
    for (const t of p.tallies) devices.add(`${i}\u0000${t.device}`);
  });
  return { records, devices: devices.size, alerts };
}

/** 1234567 → "1,234,567". */
export function count(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}

/** A device as the operator reads it: a record without a key says so. */
export function deviceLabel(device: string): string {
  return device === "" ? "(no key)" : device;
}
