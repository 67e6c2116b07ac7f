// Status intervals (GET /assets/{id}/status) turned into what the charts draw: availability
// per time bucket, and timeline bars per lane.
import type { State, StatusInterval } from "./types";

/** The share of capacity lost in an interval; null where the state is unknown (no data). */
export function lossOf(i: Pick<StatusInterval, "state" | "derate_fraction">): number | null {
  switch (i.state) {
    case "available": return 0;
    case "unavailable": return 1;
    case "derated": return 1 - Math.min(1, Math.max(0, i.derate_fraction ?? 0));
    default: return null;
  }
}

export interface Bucket {
  startMs: number;
  pct: number | null; // technical availability over the known time of the bucket
}

/** Availability per `stepMs` bucket of [startMs, min(endMs, nowMs)): derated time counts pro
 * rata, unknown time is left out; a bucket without known time is null. Open intervals (end
 * null) last until `nowMs`. */
export function bucketAvailability(intervals: StatusInterval[], startMs: number, endMs: number,
                                   stepMs: number, nowMs: number): Bucket[] {
  const stop = Math.min(endMs, nowMs);
  const n = Math.max(0, Math.ceil((stop - startMs) / stepMs));
  const known = new Array<number>(n).fill(0);
  const lost = new Array<number>(n).fill(0);
  for (const i of intervals) {
    const loss = lossOf(i);
    if (loss === null) continue;
    const a = Math.max(startMs, i.start_ms);
    const b = Math.min(stop, i.end_ms ?? nowMs);
    if (!(b > a)) continue;
    for (let k = Math.floor((a - startMs) / stepMs); k < n; k++) {
      const bs = startMs + k * stepMs;
      const be = Math.min(stop, bs + stepMs);
      if (bs >= b) break;
      const overlap = Math.min(b, be) - Math.max(a, bs);
      if (overlap > 0) {
        known[k] = (known[k] ?? 0) + overlap;
        lost[k] = (lost[k] ?? 0) + overlap * loss;
      }
    }
  }
  return known.map((t, k) => ({
    startMs: startMs + k * stepMs,
    pct: t > 0 ? 100 * (1 - (lost[k] ?? 0) / t) : null,
  }));
}

/** The weighted mean of several assets' buckets (a site from its units, by rated energy);
 * assets without a value in a bucket are left out of it. */
export function weightedBuckets(series: { weight: number; buckets: Bucket[] }[]): Bucket[] {
  const first = series[0];
  if (!first) return [];
  return first.buckets.map((b, k) => {
    let sum = 0;
    let weight = 0;
    for (const s of series) {
      const v = s.buckets[k]?.pct;
      if (v != null) {
        sum += s.weight * v;
        weight += s.weight;
      }
    }
    return { startMs: b.startMs, pct: weight ? sum / weight : null };
  });
}

export interface Segment {
  lane: number;
  startMs: number;
  endMs: number;
  state: State;
  cause: string | null;
  derateFraction: number | null;
}

/** Bars for a timeline of several lanes, clipped to [startMs, nowMs]. */
export function segments(lanes: StatusInterval[][], startMs: number, nowMs: number): Segment[] {
  const out: Segment[] = [];
  lanes.forEach((intervals, lane) => {
    for (const i of intervals) {
      const a = Math.max(startMs, i.start_ms);
      const b = Math.min(nowMs, i.end_ms ?? nowMs);
      if (b > a) out.push({ lane, startMs: a, endMs: b, state: i.state, cause: i.cause,
                            derateFraction: i.derate_fraction });
    }
  });
  return out;
}
