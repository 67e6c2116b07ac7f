// The charts (ECharts, only the parts used: line, bar and custom series on a canvas):
// availability trend, status timeline, compliance per period, the historian's series, a
// battery unit's state of health. Loaded when a view needs them, so the overview's first
// render does not wait for them. Each chart keeps only the data it is given (bounded by the
// caller) and is disposed with its view.
import { BarChart, CustomChart, LineChart } from "echarts/charts";
import { DataZoomInsideComponent, GridComponent, LegendComponent, MarkLineComponent,
         TooltipComponent } from "echarts/components";
import { graphic, init, use, type ECharts } from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import { dateTime, duration, pct, words } from "./format";
import { STATE_COLOURS, THEME, WARNING_COLOURS, againstGuarantee } from "./status";
import { PLOT, niceBounds, type Line } from "./historian";
import type { Bucket, Segment } from "./timeline";
import type { PeriodEvaluation } from "./types";

use([LineChart, BarChart, CustomChart, GridComponent, TooltipComponent, LegendComponent,
     MarkLineComponent, DataZoomInsideComponent, CanvasRenderer]);

export interface Chart {
  dispose(): void;
}

const AXIS = {
  axisLine: { lineStyle: { color: THEME.border } },
  axisLabel: { color: THEME.muted, fontSize: 13 },
  splitLine: { lineStyle: { color: THEME.border, opacity: 0.5 } },
};
const TOOLTIP = {
  backgroundColor: THEME.panel2, borderColor: THEME.border,
  textStyle: { color: THEME.text, fontSize: 13 },
};

function mount(el: HTMLElement): { chart: ECharts; dispose(): void } {
  const chart = init(el, null, { renderer: "canvas" });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(el);
  return {
    chart,
    dispose() {
      observer.disconnect();
      chart.dispose();
    },
  };
}

export interface AvailabilityChart extends Chart {
  update(history: Bucket[], live: [number, number][], guaranteePct: number | null,
         range: [number, number]): void;
}

/** Availability over time: per bucket from the status history, and the live "last hour"
 * figure as it arrives; the guarantee as a dashed line. */
export function availabilityChart(el: HTMLElement): AvailabilityChart {
  const { chart, dispose } = mount(el);
  chart.setOption({
    animation: false,
    grid: { left: 56, right: 20, top: 36, bottom: 28 },
    legend: { top: 0, right: 0, textStyle: { color: THEME.muted, fontSize: 13 } },
    tooltip: { trigger: "axis", ...TOOLTIP,
               valueFormatter: (v: unknown) => pct(typeof v === "number" ? v : null) },
    xAxis: { type: "time", ...AXIS, splitLine: { show: false } },
    yAxis: { type: "value", max: 100, ...AXIS,
             axisLabel: { ...AXIS.axisLabel, formatter: "{value} %" } },
    series: [
      { name: "from status history", type: "line", step: "end", symbol: "circle", symbolSize: 3,
        lineStyle: { width: 2, color: THEME.accent }, itemStyle: { color: THEME.accent },
        areaStyle: { color: THEME.accent, opacity: 0.12 }, data: [] },
      { name: "live, last hour", type: "line", symbol: "circle", symbolSize: 5,
        connectNulls: true,
        lineStyle: { width: 2, color: STATE_COLOURS.available },
        itemStyle: { color: STATE_COLOURS.available }, data: [] },
    ],
  });
  return {
    update(history, live, guaranteePct, range) {
      const values = [...history.map((b) => b.pct), ...live.map((p) => p[1])]
        .filter((v): v is number => v != null);
      const low = Math.min(guaranteePct ?? 100, ...values, 100);
      chart.setOption({
        xAxis: { min: range[0], max: range[1] },
        yAxis: { min: Math.max(0, Math.floor(low - 2)) },
        series: [
          { data: history.map((b) => [b.startMs, b.pct]),
            markLine: guaranteePct == null ? { data: [] } : {
              symbol: "none", silent: true,
              lineStyle: { color: WARNING_COLOURS.ld_risk, type: "dashed", width: 2 },
              label: { color: WARNING_COLOURS.ld_risk, formatter: `guarantee ${pct(guaranteePct)}`,
                       position: "insideStartTop" },
              data: [{ yAxis: guaranteePct }] } },
          { data: live },
        ],
      });
    },
    dispose,
  };
}

export interface TimelineChart extends Chart {
  update(lanes: string[], bars: Segment[], range: [number, number]): void;
}

/** Status over time, one lane per asset: a bar per status interval in its state's colour. */
export function timelineChart(el: HTMLElement): TimelineChart {
  const { chart, dispose } = mount(el);
  chart.setOption({
    animation: false,
    grid: { left: 150, right: 20, top: 8, bottom: 28 },
    tooltip: { ...TOOLTIP, formatter: (p: { data: { bar: Segment } }) => {
      const s = p.data.bar;
      const derate = s.state === "derated" && s.derateFraction != null
        ? ` at ${Math.round(s.derateFraction * 100)} %` : "";
      return `${words(s.state)}${derate}${s.cause ? ` — ${words(s.cause)}` : ""}<br>` +
        `${dateTime(s.startMs)} for ${duration(s.endMs - s.startMs)}`;
    } },
    xAxis: { type: "time", ...AXIS, splitLine: { show: false } },
    yAxis: { type: "category", inverse: true, data: [], ...AXIS,
             axisLabel: { ...AXIS.axisLabel, width: 140, overflow: "truncate" },
             splitLine: { show: false } },
    series: [{
      type: "custom", encode: { x: [1, 2], y: 0 }, data: [],
      renderItem: (params: { coordSys: { x: number; y: number; width: number; height: number } },
                   api: { value(i: number): number; coord(v: number[]): number[];
                          size(v: number[]): number[]; style(): object }) => {
        const lane = api.value(0);
        const start = api.coord([api.value(1), lane]);
        const end = api.coord([api.value(2), lane]);
        const height = (api.size([0, 1])[1] ?? 20) * 0.7;
        const c = params.coordSys;
        const shape = graphic.clipRectByRect(
          { x: start[0]!, y: start[1]! - height / 2, width: Math.max(1, end[0]! - start[0]!),
            height }, { x: c.x, y: c.y, width: c.width, height: c.height });
        return shape && { type: "rect", transition: [], shape, style: api.style() };
      },
    }],
  });
  return {
    update(lanes, bars, range) {
      chart.setOption({
        xAxis: { min: range[0], max: range[1] },
        yAxis: { data: lanes },
        series: [{ data: bars.map((b) => ({ value: [b.lane, b.startMs, b.endMs], bar: b,
                                            itemStyle: { color: STATE_COLOURS[b.state] } })) }],
      });
    },
    dispose,
  };
}

export interface ComplianceChart extends Chart {
  update(periods: PeriodEvaluation[]): void;
}

/** Actual against guaranteed availability per measurement period. */
export function complianceChart(el: HTMLElement): ComplianceChart {
  const { chart, dispose } = mount(el);
  chart.setOption({
    animation: false,
    grid: { left: 56, right: 16, top: 36, bottom: 28 },
    legend: { top: 0, right: 0, textStyle: { color: THEME.muted, fontSize: 13 } },
    tooltip: { trigger: "axis", ...TOOLTIP,
               valueFormatter: (v: unknown) => pct(typeof v === "number" ? v : null, 3) },
    xAxis: { type: "category", data: [], ...AXIS },
    yAxis: { type: "value", max: 100, ...AXIS,
             axisLabel: { ...AXIS.axisLabel, formatter: "{value} %" } },
    series: [
      { name: "actual", type: "bar", barMaxWidth: 48, data: [] },
      { name: "guaranteed", type: "line", step: "middle", symbol: "none",
        lineStyle: { color: WARNING_COLOURS.ld_risk, type: "dashed", width: 2 },
        itemStyle: { color: WARNING_COLOURS.ld_risk }, data: [] },
    ],
  });
  return {
    update(periods) {
      const low = Math.min(100, ...periods.flatMap((p) => [p.guaranteed_pct,
        p.availability_pct ?? 100]));
      chart.setOption({
        xAxis: { data: periods.map((p) => p.period) },
        yAxis: { min: Math.max(0, Math.floor(low - 2)) },
        series: [
          { data: periods.map((p) => ({ value: p.availability_pct, itemStyle: {
            color: WARNING_COLOURS[againstGuarantee(p.availability_pct, p.guaranteed_pct) ??
                                   "ok"] } })) },
          { data: periods.map((p) => p.guaranteed_pct) },
        ],
      });
    },
    dispose,
  };
}

export interface Marker {
  atMs: number;
  label: string;
  colour: string;
}

export interface HistorianChart extends Chart {
  update(lines: Line[], range: [number, number], markers: Marker[]): void;
}

const PALETTE = ["#4ea1ff", "#f5a623", "#7ed321", "#bd10e0", "#50e3c2", "#e86a92", "#c9c95a",
                 "#9b9bff"];

/** The historian's series: each bucket's mean as a line over a band from its min to its
 * max; alarms as vertical markers. The mouse wheel zooms about the pointer; `onZoom` gets the
 * part of the range now shown (percent from, to) once the wheel rests, for the caller to ask
 * the server for that range at a finer step. (A drag to select a range is the caller's:
 * the chart does not pan on a drag.) */
export function historianChart(el: HTMLElement,
                               onZoom: (startPct: number, endPct: number) => void
                               ): HistorianChart {
  const { chart, dispose } = mount(el);
  let rest: ReturnType<typeof setTimeout> | null = null;
  chart.setOption({
    animation: false,
    grid: { ...PLOT, top: 36, bottom: 28 },
    legend: { top: 0, right: 0, textStyle: { color: THEME.muted, fontSize: 13 }, data: [] },
    tooltip: { trigger: "axis", ...TOOLTIP,
               valueFormatter: (v: unknown) => typeof v === "number" ? v.toFixed(2) : "–" },
    xAxis: { type: "time", ...AXIS, splitLine: { show: false } },
    yAxis: { type: "value", scale: true, ...AXIS },
    dataZoom: [{ type: "inside", xAxisIndex: 0, filterMode: "none", start: 0, end: 100,
                 moveOnMouseMove: false, moveOnMouseWheel: false, zoomOnMouseWheel: true }],
    series: [],
  });
  chart.on("datazoom", () => {
    const zoom = (chart.getOption() as { dataZoom?: { start?: number; end?: number }[] })
      .dataZoom?.[0];
    if (rest) clearTimeout(rest);
    rest = setTimeout(() => {
      const start = zoom?.start ?? 0;
      const end = zoom?.end ?? 100;
      if (start > 0.01 || end < 99.99) onZoom(start, end);
    }, 400);
  });
  return {
    update(lines, range, markers) {
      const series = lines.flatMap((l, i) => {
        const colour = PALETTE[i % PALETTE.length]!;
        const stack = `band-${i}`;
        return [
          { name: `${l.name} min`, type: "line", stack, symbol: "none", silent: true,
            lineStyle: { opacity: 0 }, tooltip: { show: false },
            data: l.band.map(([t, lo]) => [t, lo]) },
          { name: `${l.name} range`, type: "line", stack, symbol: "none", silent: true,
            lineStyle: { opacity: 0 }, areaStyle: { color: colour, opacity: 0.15 },
            tooltip: { show: false }, data: l.band.map(([t, lo, hi]) => [t, hi - lo]) },
          { name: l.name, type: "line", symbol: l.avg.length < 60 ? "circle" : "none",
            symbolSize: 4, showSymbol: l.avg.length < 60,
            lineStyle: { width: 2, color: colour }, itemStyle: { color: colour },
            data: l.avg,
            markLine: i > 0 || markers.length === 0 ? { data: [] } : {
              symbol: "none", silent: true,
              label: { color: THEME.muted, formatter: (p: { name: string }) => p.name,
                       position: "insideEndTop" },
              data: markers.map((m) => ({ xAxis: m.atMs, name: m.label,
                                          lineStyle: { color: m.colour, type: "dashed" } })) } },
        ];
      });
      // The value axis spans the bands (stacked series would stretch it otherwise).
      let lo = Infinity;
      let hi = -Infinity;
      for (const l of lines) {
        for (const [, min, max] of l.band) {
          if (min < lo) lo = min;
          if (max > hi) hi = max;
        }
      }
      const [yMin, yMax] = niceBounds(lo, hi);
      chart.setOption({
        xAxis: { min: range[0], max: range[1] },
        yAxis: { min: yMin, max: yMax },
        legend: { data: lines.map((l) => l.name) },
        dataZoom: [{ start: 0, end: 100 }],
        series,
      }, { replaceMerge: ["series"] });
    },
    dispose() {
      if (rest) clearTimeout(rest);
      dispose();
    },
  };
}

export interface SohChart extends Chart {
  update(soh: { startMs: number; min: number; avg: number; max: number }[],
         fitted: [number, number][], thresholdPct: number, range: [number, number]): void;
}

/** A battery unit's state of health: each bucket's mean over a band from its min to its max,
 * the fitted fade as a dashed line, the end-of-life threshold as a line of its own when it is
 * near enough to be seen. */
export function sohChart(el: HTMLElement): SohChart {
  const { chart, dispose } = mount(el);
  const colour = PALETTE[0]!;
  chart.setOption({
    animation: false,
    grid: { left: 56, right: 20, top: 36, bottom: 28 },
    legend: { top: 0, right: 0, textStyle: { color: THEME.muted, fontSize: 13 },
              data: ["SOH", "fit"] },
    tooltip: { trigger: "axis", ...TOOLTIP,
               valueFormatter: (v: unknown) => pct(typeof v === "number" ? v : null) },
    xAxis: { type: "time", ...AXIS, splitLine: { show: false } },
    yAxis: { type: "value", scale: true, ...AXIS,
             axisLabel: { ...AXIS.axisLabel, formatter: "{value} %" } },
    series: [
      { name: "SOH min", type: "line", stack: "band", symbol: "none", silent: true,
        lineStyle: { opacity: 0 }, tooltip: { show: false }, data: [] },
      { name: "SOH range", type: "line", stack: "band", symbol: "none", silent: true,
        lineStyle: { opacity: 0 }, areaStyle: { color: colour, opacity: 0.15 },
        tooltip: { show: false }, data: [] },
      { name: "SOH", type: "line", symbol: "none", lineStyle: { width: 2, color: colour },
        itemStyle: { color: colour }, data: [] },
      { name: "fit", type: "line", symbol: "none",
        lineStyle: { width: 2, type: "dashed", color: PALETTE[1] },
        itemStyle: { color: PALETTE[1] }, data: [] },
    ],
  });
  return {
    update(soh, fitted, thresholdPct, range) {
      let lo = Math.min(...soh.map((p) => p.min), ...fitted.map(([, v]) => v));
      let hi = Math.max(...soh.map((p) => p.max), ...fitted.map(([, v]) => v));
      if (!Number.isFinite(lo)) [lo, hi] = [thresholdPct, 100];
      // The threshold is drawn when it is within a few points of the data.
      const showThreshold = lo - thresholdPct <= 5;
      if (showThreshold) lo = Math.min(lo, thresholdPct);
      const [yMin, yMax] = niceBounds(lo, hi);
      chart.setOption({
        xAxis: { min: range[0], max: range[1] },
        yAxis: { min: yMin, max: yMax },
        series: [
          { data: soh.map((p) => [p.startMs, p.min]) },
          { data: soh.map((p) => [p.startMs, p.max - p.min]) },
          { data: soh.map((p) => [p.startMs, p.avg]),
            markLine: !showThreshold ? { data: [] } : {
              symbol: "none", silent: true,
              lineStyle: { color: WARNING_COLOURS.ld_risk, type: "dashed", width: 2 },
              label: { color: WARNING_COLOURS.ld_risk, position: "insideStartTop",
                       formatter: `end of life ${pct(thresholdPct, 0)}` },
              data: [{ yAxis: thresholdPct }] } },
          { data: fitted },
        ],
      });
    },
    dispose,
  };
}
