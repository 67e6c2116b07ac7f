// #/analytics/historian — the historian explorer: pick assets (site by site, from the fleet
// the caller sees) and tags, see each series over a time range from a year down to minutes,
// downsampled by the server to about one bucket per pixel (GET /analytics/historian: every
// zoom — buttons, mouse wheel, a drag across the chart — or pan asks again for the range on
// screen, so zooming in shows finer data), the assets' status below on the same time axis
// and their active alarms as markers; export exactly what is on screen as CSV or Parquet
// (GET /telemetry/export, `reports.export`).
import { ApiError } from "../api";
import { Disposer, P, type App, type View } from "../app";
import type { HistorianChart, Marker, TimelineChart } from "../charts";
import { attr, h, reconcile, text } from "../dom";
import { saveFile } from "../download";
import { COMMON_TAGS, ago, dateTime, duration, tagLabel } from "../format";
import type { AssetDetail, AssetNode, HistorianAnswer } from "../generated/api";
import { DAY_MS, PRESETS, chartBlocked, exportBlocked, exportQuery, historianQuery,
         lastRange, lines, newestPoint, pan, plotPct, PLOT, selectionFromParams, stepLabel,
         subRange, zoom, type ExportFormat,
         type Range, type Selection } from "../historian";
import { SEVERITY_COLOURS } from "../status";
import { segments } from "../timeline";
import type { Severity, StatusInterval } from "../types";
import { analyticsHeader } from "./analytics-header";
import { statusHistory } from "./history-panel";

const DEFAULT_SPAN_MS = DAY_MS;
const DRAG_MIN_PX = 8; // a shorter drag is a click

/** The battery units, inverters and DC blocks of a site's tree, in tree order. */
function assetsOf(node: AssetNode, depth = 0): { id: string; kind: string; depth: number }[] {
  const own = node.kind === "site" ? [] : [{ id: node.id, kind: node.kind, depth }];
  return [...own, ...node.children.flatMap((c) => assetsOf(c, node.kind === "site" ? 0
    : depth + 1))];
}

export function historianView(app: App, params: Record<string, string> = {}): View {
  const d = new Disposer();
  const given = selectionFromParams(params); // a link's selection (the asset page's)
  const chosen: string[] = [...given.assets]; // assets, in the order picked
  const tags = new Set<string>(given.tags.length ? given.tags : ["soc_pct"]);
  const tagChoices = new Set<string>([...COMMON_TAGS, ...tags]);
  let range: Range = lastRange(DEFAULT_SPAN_MS, app.clock.now());
  let seq = 0;
  let chart: HistorianChart | null = null;
  let timeline: TimelineChart | null = null;
  let answer: HistorianAnswer | null = null;
  const canExport = app.can(P.reports);

  const head = analyticsHeader("historian", "Historian explorer", {
    who: "Engineers and service managers.",
    decision: "What did these tags do, and when — find where a fault began, compare units " +
      "and sites, and take the data away for a deeper analysis.",
    sources: "The per-minute rows of every tag (count, min, mean, max, last) from the " +
      "history store, which the flows write as each minute closes, and the Parquet archive " +
      "for the closed days it holds — downsampled by the server; status from the status " +
      "intervals; alarms: the active ones, live.",
  });

  // The asset picker: a site, then its units, inverters and blocks.
  const siteSelect = h("select", { class: "site-pick", "aria-label": "site" },
    h("option", { value: "" }, "site…"),
    ...app.fleet.all().map(({ site }) => h("option", { value: site.id }, site.name ?? site.id)));
  const assetList = h("div", { class: "asset-pick", role: "group", "aria-label": "assets" });
  const chosenList = h("div", { class: "chosen", "aria-label": "chosen assets" });
  const tagList = h("div", { class: "tag-pick", role: "group", "aria-label": "tags" });
  // Range and zoom.
  const rangeText = h("span", { class: "range-text", role: "status" });
  const button = (cls: string, label: string, title: string, onclick: () => void) =>
    h("button", { type: "button", class: `secondary ${cls}`, title, onclick }, label);
  const toolbar = h("div", { class: "range-bar" },
    ...PRESETS.map(([label, span]) => button("preset", label, `the last ${label}`,
      () => setRange(lastRange(span, app.clock.now())))),
    button("pan-back", "◀", "back in time by half the range",
      () => setRange(pan(range, -0.5, app.clock.now()))),
    button("zoom-in", "+ zoom in", "a quarter of the range, about its middle",
      () => setRange(zoom(range, 0.25, app.clock.now()))),
    button("zoom-out", "− zoom out", "four times the range",
      () => setRange(zoom(range, 4, app.clock.now()))),
    button("pan-forward", "▶", "forward in time by half the range",
      () => setRange(pan(range, 0.5, app.clock.now()))),
    rangeText);
  // Export.
  const exportNote = h("p", { class: "export-note meta" });
  const exportStatus = h("span", { class: "export-status", role: "status" });
  const exportButton = (format: ExportFormat, label: string) => h("button", {
    type: "button", class: `export export-${format}`, "data-format": format,
    onclick: () => void saveFile(app.api, exportStatus, "/telemetry/export",
                                 exportQuery(selection(), range, format)) }, label);
  const exports = [exportButton("csv", "Export CSV"), exportButton("parquet", "Export Parquet")];
  // Charts.
  const chartEl = h("div", { class: "chart historian", "aria-label": "historian chart",
                             "data-state": "idle" });
  const dragBox = h("div", { class: "drag-select", hidden: true });
  const chartWrap = h("div", { class: "chart-wrap", title: "drag across the chart to zoom to " +
                               "that range; the mouse wheel zooms too" }, chartEl, dragBox);
  const note = h("p", { class: "chart-note historian-note", role: "status" });
  const timelineEl = h("div", { class: "chart timeline historian-status",
                                "aria-label": "status timeline" });
  const statusNote = h("p", { class: "chart-note" });

  const el = h("div", { class: "view analytics historian" }, head.el,
    h("section", { class: "panel pickers" },
      h("div", { class: "picker" }, h("h2", {}, "Assets"), siteSelect, assetList, chosenList),
      h("div", { class: "picker" }, h("h2", {}, "Tags"), tagList)),
    h("section", { class: "panel" }, toolbar, chartWrap, note,
      h("div", { class: "export-bar" }, ...(canExport ? exports : []), exportStatus),
      exportNote),
    h("section", { class: "panel" }, h("h2", {}, "Status and alarms"), timelineEl, statusNote));

  const selection = (): Selection => ({ assets: [...chosen], tags: [...tags] });

  const drawPickers = (siteAssets: { id: string; kind: string; depth: number }[] | null) => {
    if (siteAssets) {
      reconcile(assetList, siteAssets, (a) => a.id,
        (a) => h("label", { class: "check", "data-asset": a.id, "data-depth": a.depth },
          h("input", { type: "checkbox", value: a.id, onchange: (ev: Event) => {
            const on = (ev.target as HTMLInputElement).checked;
            const at = chosen.indexOf(a.id);
            if (on && at < 0) chosen.push(a.id);
            if (!on && at >= 0) chosen.splice(at, 1);
            if (on) void learnTags(a.id);
            changed();
          } }), ` ${a.id} `, h("span", { class: "muted" }, a.kind)),
        (label, a) => {
          const box = label.querySelector("input");
          if (box) box.checked = chosen.includes(a.id);
        });
    }
    reconcile(chosenList, chosen, (id) => id,
      (id) => h("button", { type: "button", class: "chip secondary chosen-asset",
                            "data-asset": id, title: "remove", onclick: () => {
        const at = chosen.indexOf(id);
        if (at >= 0) chosen.splice(at, 1);
        for (const box of assetList.querySelectorAll<HTMLInputElement>("input")) {
          if (box.value === id) box.checked = false;
        }
        changed();
      } }, `${id} ×`), () => {});
    reconcile(tagList, [...tagChoices].sort(), (t) => t,
      (t) => h("label", { class: "check", "data-tag": t },
        h("input", { type: "checkbox", value: t, onchange: (ev: Event) => {
          if ((ev.target as HTMLInputElement).checked) tags.add(t);
          else tags.delete(t);
          changed();
        } }), ` ${tagLabel(t)}`),
      (label, t) => {
        const box = label.querySelector("input");
        if (box) box.checked = tags.has(t);
      });
  };

  /** The tags an asset reports now join the choices. */
  const learnTags = async (assetId: string) => {
    try {
      const detail = await app.api.get<AssetDetail>(`/assets/${encodeURIComponent(assetId)}`);
      if (d.disposed) return;
      const before = tagChoices.size;
      for (const t of Object.keys(detail.values)) tagChoices.add(t);
      if (tagChoices.size !== before) drawPickers(null);
    } catch { /* the common tags stay */ }
  };

  siteSelect.addEventListener("change", async () => {
    const siteId = siteSelect.value;
    if (!siteId) {
      assetList.replaceChildren();
      return;
    }
    try {
      const tree = await app.api.get<AssetNode>(`/sites/${encodeURIComponent(siteId)}/assets`);
      if (!d.disposed && siteSelect.value === siteId) drawPickers(assetsOf(tree));
    } catch (err) {
      assetList.replaceChildren(h("p", { class: "empty" },
        err instanceof ApiError ? err.detail : String(err)));
    }
  });

  const drawExport = () => {
    const reason = exportBlocked(selection(), range, canExport);
    for (const b of exports) {
      b.disabled = reason !== null;
      attr(b, "title", reason);
    }
    const n = chosen.length * tags.size;
    text(exportNote, reason ?? `Exports what is on screen: ${n} series, one row per minute, ` +
      "over exactly the range shown.");
  };

  const drawRange = () => {
    text(rangeText, `${dateTime(range.from)} – ${dateTime(range.to)} (${duration(
      range.to - range.from)})`);
    attr(chartEl, "data-from", String(range.from));
    attr(chartEl, "data-to", String(range.to));
  };

  const markers = (): Marker[] => app.alarms.list(app.clock.now())
    .filter((a) => chosen.includes(a.asset_id) && a.raised_ms >= range.from &&
                   a.raised_ms < range.to)
    .slice(0, 50)
    .map((a) => ({ atMs: a.raised_ms, label: `${a.asset_id}: ${a.message}`,
                   colour: SEVERITY_COLOURS[a.severity as Severity] ?? "#e5484d" }));

  const load = () => {
    drawRange();
    drawExport();
    const blocked = chartBlocked(selection());
    const mine = ++seq;
    if (blocked) {
      text(note, blocked);
      attr(chartEl, "data-state", "idle");
      answer = null;
      chart?.update([], [range.from, range.to], []);
      timeline?.update([], [], [range.from, range.to]);
      text(head.freshness, "nothing chosen yet");
      return;
    }
    if (!chart) return; // drawn when the charts have loaded
    attr(chartEl, "data-state", "loading");
    text(note, "loading…");
    const points = Math.max(2, chartEl.clientWidth - PLOT.left - PLOT.right);
    const asked = range;
    app.api.get<HistorianAnswer>("/analytics/historian", historianQuery(selection(), asked,
                                                                       points))
      .then((got) => {
        if (d.disposed || mine !== seq) return;
        answer = got;
        const drawn = lines(got);
        chart?.update(drawn, [asked.from, asked.to], markers());
        const total = got.series.reduce((n, s) => n + s.points.length, 0);
        attr(chartEl, "data-state", "ready");
        attr(chartEl, "data-step", String(got.step_ms));
        attr(chartEl, "data-points", String(total));
        const empty = drawn.filter((l) => l.count === 0).map((l) => l.name);
        text(note, `${stepLabel(got.step_ms)} · min–max band around the mean` +
          (empty.length ? ` · no data in this range for ${empty.join(", ")}` : ""));
        const newest = newestPoint(got);
        text(head.freshness, newest === null ? "no data in this range"
          : `newest minute on screen ${dateTime(newest)} (${ago(app.clock.now() - newest)}); ` +
            "the history store is as fresh as the flows' last closed minute");
      })
      .catch((err) => {
        if (d.disposed || mine !== seq) return;
        attr(chartEl, "data-state", "error");
        text(note, err instanceof ApiError ? err.detail : String(err));
      });
    const statusEnd = Math.min(asked.to, app.clock.now());
    Promise.all(chosen.map((id) => statusHistory(app.api, id, asked.from, asked.to)))
      .then((perLane: StatusInterval[][]) => {
        if (d.disposed || mine !== seq) return;
        timeline?.update([...chosen], segments(perLane, asked.from, statusEnd),
                         [asked.from, asked.to]);
        const count = perLane.reduce((n, l) => n + l.length, 0);
        text(statusNote, count ? "" : "No status intervals in this range.");
      })
      .catch(() => { text(statusNote, "The status history is not reachable just now."); });
  };

  const setRange = (next: Range) => {
    range = next;
    load();
  };
  const changed = () => {
    drawPickers(null);
    load();
  };

  // Drag across the plot to zoom to that part of the range.
  let dragFrom: number | null = null;
  const xOf = (ev: PointerEvent) => ev.clientX - chartWrap.getBoundingClientRect().left;
  const plotWidth = () => chartWrap.clientWidth - PLOT.left - PLOT.right;
  const drawDrag = (x: number) => {
    if (dragFrom === null) return;
    const a = Math.max(PLOT.left, Math.min(dragFrom, x));
    const b = Math.min(chartWrap.clientWidth - PLOT.right, Math.max(dragFrom, x));
    dragBox.hidden = b - a < DRAG_MIN_PX;
    dragBox.style.left = `${a}px`;
    dragBox.style.width = `${Math.max(0, b - a)}px`;
  };
  chartWrap.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    dragFrom = xOf(ev);
    chartWrap.setPointerCapture?.(ev.pointerId);
  });
  chartWrap.addEventListener("pointermove", (ev) => drawDrag(xOf(ev)));
  chartWrap.addEventListener("pointerup", (ev) => {
    const from = dragFrom;
    dragFrom = null;
    dragBox.hidden = true;
    const to = xOf(ev);
    if (from === null || Math.abs(to - from) < DRAG_MIN_PX) return;
    setRange(subRange(range, plotPct(from, PLOT.left, plotWidth()),
                      plotPct(to, PLOT.left, plotWidth()), app.clock.now()));
  });
  chartWrap.addEventListener("pointercancel", () => {
    dragFrom = null;
    dragBox.hidden = true;
  });

  void import("../charts").then((charts) => {
    if (d.disposed) return;
    chart = charts.historianChart(chartEl, (startPct, endPct) =>
      setRange(subRange(range, startPct, endPct, app.clock.now())));
    timeline = charts.timelineChart(timelineEl);
    d.add(() => {
      chart?.dispose();
      timeline?.dispose();
      chart = timeline = null;
    });
    load();
  });
  d.add(app.alarms.changed.on(() => {
    if (answer) chart?.update(lines(answer), [range.from, range.to], markers());
  }));
  for (const id of chosen) void learnTags(id);
  drawPickers(null);
  load();
  return { el, destroy: () => d.dispose() };
}
