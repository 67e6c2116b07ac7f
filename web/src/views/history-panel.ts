// The availability trend and the status timeline of an asset (and its children): status
// intervals of the last hours from the history, refreshed every minute, and the live figure
// as it comes. Bounded: a fixed window of buckets, a ring of live points.
import type { Api } from "../api";
import { Disposer } from "../app";
import type { AvailabilityChart, TimelineChart } from "../charts";
import { h } from "../dom";
import { Ring } from "../ring";
import { bucketAvailability, segments, weightedBuckets, type Bucket } from "../timeline";
import type { Page, StatusInterval } from "../types";

export const WINDOW_MS = 12 * 3_600_000;
const LIVE_EVERY_MS = 30_000;
const MAX_PAGES = 4;

/** An asset's status intervals overlapping [start, end), oldest first (at most 2,000). */
export async function statusHistory(api: Api, assetId: string, startMs: number,
                                    endMs: number): Promise<StatusInterval[]> {
  const out: StatusInterval[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const answer: Page<StatusInterval> = await api.get<Page<StatusInterval>>(
      `/assets/${encodeURIComponent(assetId)}/status`,
      { start: Math.floor(startMs), end: Math.ceil(endMs), limit: 500, cursor });
    out.push(...answer.items);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return out;
}

export interface Lane {
  id: string;
  label: string;
  weight: number; // in the trend (rated energy); 0: not in it
}

export interface HistoryPanel {
  el: HTMLElement;
  /** The live availability (last hour, %) now; kept every 30 s at most. */
  live(tsMs: number, pct: number | null): void;
  refresh(): void;
}

export function historyPanel(api: Api, d: Disposer, now: () => number,
                             lanes: () => Lane[], guarantee: () => number | null): HistoryPanel {
  const trendEl = h("div", { class: "chart trend", "aria-label": "availability trend" });
  const timelineEl = h("div", { class: "chart timeline", "aria-label": "status timeline" });
  const note = h("p", { class: "chart-note" }, "Loading the status history…");
  const el = h("div", { class: "history" },
    h("section", { class: "panel" }, h("h2", {}, "Availability trend (up to 12 hours)"), trendEl),
    h("section", { class: "panel" }, h("h2", {}, "Status timeline"), timelineEl, note));
  const liveRing = new Ring<[number, number]>(Math.ceil(WINDOW_MS / LIVE_EVERY_MS));
  let trend: AvailabilityChart | null = null;
  let timeline: TimelineChart | null = null;
  let history: Bucket[] = [];
  let range: [number, number] | null = null;
  let loading = false;

  void import("../charts").then((charts) => {
    if (d.disposed) return;
    trend = charts.availabilityChart(trendEl);
    timeline = charts.timelineChart(timelineEl);
    d.add(() => {
      trend?.dispose();
      timeline?.dispose();
      trend = timeline = null;
    });
    refresh();
  });

  const drawTrend = () => {
    const t = now();
    const from = range ? range[0] : t - 15 * 60_000;
    trend?.update(history, liveRing.toArray().filter(([ts]) => ts >= from),
                  guarantee(), [from, Math.max(t, range ? range[1] : t)]);
  };

  const refresh = () => {
    if (loading || !trend || d.disposed) return;
    const list = lanes();
    if (list.length === 0) return;
    loading = true;
    const end = now();
    const start = end - WINDOW_MS;
    Promise.all(list.map((l) => statusHistory(api, l.id, start, end + 1)))
      .then((perLane) => {
        if (d.disposed) return;
        // The window: the last 12 hours, or less while the history is younger (15 min at least).
        const earliest = Math.min(...perLane.flat().map((i) => i.start_ms), end);
        const from = Math.max(start, Math.min(earliest, end - 15 * 60_000));
        range = [from, end];
        const step = Math.max(60_000, Math.round((end - from) / 72 / 60_000) * 60_000);
        const weighted = list.map((l, k) => ({ weight: l.weight,
          buckets: bucketAvailability(perLane[k] ?? [], from, end, step, end) }))
          .filter((s) => s.weight > 0);
        history = weighted.length === 1 ? weighted[0]!.buckets : weightedBuckets(weighted);
        drawTrend();
        timeline?.update(list.map((l) => l.label), segments(perLane, from, end), [from, end]);
        const count = perLane.reduce((n, l) => n + l.length, 0);
        note.textContent = count ? "" : "No final status intervals yet: the flows write them as " +
          "statuses change (the live status is above).";
      })
      .catch(() => { note.textContent = "The status history is not reachable just now."; })
      .finally(() => { loading = false; });
  };
  d.interval(refresh, 60_000);

  return {
    el,
    live(tsMs, pct) {
      const last = liveRing.last();
      if (pct == null || (last && tsMs - last[0] < LIVE_EVERY_MS)) return;
      liveRing.push([tsMs, pct]);
      drawTrend();
    },
    refresh,
  };
}
