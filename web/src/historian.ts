// The historian explorer's pure parts: the visible time range and how it zooms and pans, the
// queries of GET /analytics/historian and GET /telemetry/export for what is on screen, and
// the answer turned into chart lines. Ranges are whole minutes (the history's rows are per
// minute), so the chart and an export of it cover the same rows.
import { duration, tagLabel } from "./format";
import type { HistorianAnswer, HistorianSeries } from "./generated/api";

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
/** Ten per-minute rows at least: narrower shows nothing finer. */
export const MIN_SPAN_MS = 10 * MINUTE_MS;
/** GET /analytics/historian: 400 days, 50 series, 2–5,000 points (docs/api.md). */
export const MAX_SPAN_MS = 400 * DAY_MS;
export const CHART_MAX_SERIES = 50;
export const MIN_POINTS = 2;
export const MAX_POINTS = 5_000;
/** GET /telemetry/export: 31 days and 100 series per request. */
export const EXPORT_MAX_MS = 31 * DAY_MS;
export const EXPORT_MAX_SERIES = 100;

/** The chart's plot area: its horizontal margins (px); the left one as the status
 * timeline's, so the two line up. */
export const PLOT = { left: 150, right: 20 };

export interface Range {
  from: number; // epoch ms, inclusive
  to: number; // epoch ms, exclusive
}

export interface Selection {
  assets: string[];
  tags: string[];
}

export type ExportFormat = "csv" | "parquet";

export const PRESETS: readonly [string, number][] = [
  ["1 h", HOUR_MS], ["6 h", 6 * HOUR_MS], ["1 d", DAY_MS], ["7 d", 7 * DAY_MS],
  ["30 d", 30 * DAY_MS], ["90 d", 90 * DAY_MS], ["1 y", 365 * DAY_MS]];

const floorMinute = (ms: number) => Math.floor(ms / MINUTE_MS) * MINUTE_MS;
const ceilMinute = (ms: number) => Math.ceil(ms / MINUTE_MS) * MINUTE_MS;
const clampSpan = (ms: number) => Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, ms));

/** The minute after `nowMs` begins: the end of every range (nothing later exists). */
export function horizon(nowMs: number): number {
  return floorMinute(nowMs) + MINUTE_MS;
}

/** A range of `span` (clamped, whole minutes) placed so that it starts at or after 0 and ends
 * at or before the horizon of `nowMs`. */
function place(from: number, span: number, nowMs: number): Range {
  const width = ceilMinute(clampSpan(span));
  const end = horizon(nowMs);
  let start = floorMinute(from);
  if (start + width > end) start = end - width;
  start = Math.max(0, start);
  return { from: start, to: start + width };
}

/** The last `span` up to now. */
export function lastRange(span: number, nowMs: number): Range {
  return place(horizon(nowMs) - span, span, nowMs);
}

/** Zoom by `factor` (< 1 in, > 1 out) about `anchor` — a fraction of the range (0.5: the
 * middle) that stays where it is on screen. */
export function zoom(r: Range, factor: number, nowMs: number, anchor = 0.5): Range {
  const span = r.to - r.from;
  const width = ceilMinute(clampSpan(span * factor));
  const at = r.from + span * Math.min(1, Math.max(0, anchor));
  return place(at - width * Math.min(1, Math.max(0, anchor)), width, nowMs);
}

/** Move by `fraction` of the range (−0.5: half a screen back in time). */
export function pan(r: Range, fraction: number, nowMs: number): Range {
  const span = r.to - r.from;
  return place(r.from + span * fraction, span, nowMs);
}

/** The part of `r` between `startPct` and `endPct` of it (the chart's drag-to-zoom). */
export function subRange(r: Range, startPct: number, endPct: number, nowMs: number): Range {
  const span = r.to - r.from;
  const a = Math.min(startPct, endPct);
  const b = Math.max(startPct, endPct);
  const from = r.from + (span * Math.max(0, a)) / 100;
  const to = r.from + (span * Math.min(100, b)) / 100;
  const centre = (from + to) / 2;
  const width = clampSpan(to - from);
  return place(centre - width / 2, width, nowMs);
}

/** A horizontal position on the chart as a percentage of its plot area (clamped 0–100). */
export function plotPct(x: number, plotLeft: number, plotWidth: number): number {
  if (!(plotWidth > 0)) return 0;
  return Math.min(100, Math.max(0, (100 * (x - plotLeft)) / plotWidth));
}

/** Buckets to ask for: about one per pixel of the chart. */
export function pointsFor(widthPx: number): number {
  const n = Math.round(Number.isFinite(widthPx) ? widthPx : 0);
  return Math.min(MAX_POINTS, Math.max(MIN_POINTS, n));
}

/** An instant as the API reads it: ISO-8601 in UTC ("2026-03-02T00:00:00.000Z"). */
export function isoUtc(ms: number): string {
  return new Date(ms).toISOString();
}

function common(sel: Selection, r: Range): Record<string, string> {
  return { assets: sel.assets.join(","), tags: sel.tags.join(","), from: isoUtc(r.from),
           to: isoUtc(r.to) };
}

/** GET /analytics/historian's query for the selection over the range. */
export function historianQuery(sel: Selection, r: Range, points: number): Record<string, string> {
  return { ...common(sel, r), points: String(pointsFor(points)) };
}

/** GET /telemetry/export's query: exactly the selection and range on screen. */
export function exportQuery(sel: Selection, r: Range, format: ExportFormat
                            ): Record<string, string> {
  return { ...common(sel, r), format };
}

const ID = /^[A-Za-z0-9_.:-]{1,128}$/; // the API's ids

/** A selection given in the address (`#/analytics/historian?assets=a,b&tags=soc_pct`): its
 * well-formed ids, each once, at most the chart's series. */
export function selectionFromParams(params: Record<string, string>): Selection {
  const ids = (text: string | undefined) =>
    [...new Set((text ?? "").split(",").map((s) => s.trim()).filter((s) => ID.test(s)))];
  const assets = ids(params.assets).slice(0, CHART_MAX_SERIES);
  const tags = ids(params.tags).slice(0, CHART_MAX_SERIES);
  return { assets, tags };
}

/** The explorer's address for a selection (the asset page links to it). */
export function historianHref(sel: Selection): string {
  const q = [["assets", sel.assets], ["tags", sel.tags]] as const;
  const query = q.filter(([, v]) => v.length)
    .map(([k, v]) => `${k}=${v.map(encodeURIComponent).join(",")}`).join("&");
  return `#/analytics/historian${query ? `?${query}` : ""}`;
}

/** Why the chart cannot be drawn for this selection, or null. */
export function chartBlocked(sel: Selection): string | null {
  if (sel.assets.length === 0 || sel.tags.length === 0) return "Pick at least one asset and one tag.";
  const n = sel.assets.length * sel.tags.length;
  if (n > CHART_MAX_SERIES) {
    return `${n} series (assets × tags): the chart draws ${CHART_MAX_SERIES} at most.`;
  }
  return null;
}

/** Why what is on screen cannot be exported, or null: the export's limits, and the
 * permission it needs. */
export function exportBlocked(sel: Selection, r: Range, allowed: boolean): string | null {
  if (!allowed) return "Exports need the reports.export permission, which your role lacks.";
  const blocked = chartBlocked(sel);
  if (blocked) return blocked;
  const n = sel.assets.length * sel.tags.length;
  if (n > EXPORT_MAX_SERIES) return `${n} series: an export holds ${EXPORT_MAX_SERIES} at most.`;
  if (r.to - r.from > EXPORT_MAX_MS) {
    return `An export covers 31 days at most (${duration(r.to - r.from)} on screen): zoom in.`;
  }
  return null;
}

/** Per-minute rows an export of the range holds per series, at most. */
export function exportRows(r: Range): number {
  return Math.ceil((r.to - r.from) / MINUTE_MS);
}

export interface Line {
  name: string;
  unit: string;
  avg: [number, number][]; // [bucket start, count-weighted mean]
  band: [number, number, number][]; // [bucket start, min, max]
  count: number; // samples behind the line
}

export function seriesName(s: Pick<HistorianSeries, "asset_id" | "tag">): string {
  return `${s.asset_id} · ${tagLabel(s.tag)}`;
}

/** The answer as chart lines, in the order asked. */
export function lines(answer: HistorianAnswer): Line[] {
  return answer.series.map((s) => ({
    name: seriesName(s), unit: s.unit,
    avg: s.points.map((p) => [p.start_ms, p.avg]),
    band: s.points.map((p) => [p.start_ms, p.min, p.max]),
    count: s.points.reduce((n, p) => n + p.count, 0),
  }));
}

/** The newest bucket's start over all series (how fresh the data on screen is), or null. */
export function newestPoint(answer: HistorianAnswer): number | null {
  let newest: number | null = null;
  for (const s of answer.series) {
    const last = s.points[s.points.length - 1];
    if (last && (newest === null || last.start_ms > newest)) newest = last.start_ms;
  }
  return newest;
}

/** A value axis from `lo` to `hi` widened to whole steps of 1, 2 or 5 × 10^n (about five of
 * them), so its first and last labels are round numbers. */
export function niceBounds(lo: number, hi: number): [number, number] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo) return [0, 1];
  if (hi === lo) {
    const pad = Math.abs(hi) * 0.05 || 1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const raw = (hi - lo) / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const round = (v: number) => Number(v.toPrecision(12)); // 0.30000000000000004 → 0.3
  return [round(Math.floor(lo / step) * step), round(Math.ceil(hi / step) * step)];
}

/** "1 min buckets", "2 h buckets". */
export function stepLabel(stepMs: number): string {
  return `${duration(stepMs)} buckets`;
}
