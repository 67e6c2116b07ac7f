// #/analytics/battery-health — battery health: per battery unit of the caller's sites (or of
// one site) over a window of 90 days, a year or 400 days, its fade fit — SOH lost a year and
// per 1,000 equivalent full cycles with their 95 % bands — the projected date of reaching the
// warranty's end-of-life SOH with its earliest and latest, the augmentation hint, and the
// hours per temperature and C-rate band. The units in a sortable table, soonest end of life
// first; a click shows one's detail: its SOH series with the fitted line, its figures, its
// exposure, or why there is no fit. Over REST (GET /analytics/battery-health), again on every
// change and every 15 minutes (SOH moves by hundredths a day). The site, unit and window are
// in the address (#/analytics/battery-health?site=nordvik&unit=nordvik-u01&window=1 y). The
// detail downloads the unit's warranty evidence pack for the window, as PDF or XLSX (GET
// /analytics/warranty-pack, `reports.export`).
import { Disposer, P, type App, type View } from "../app";
import { DEFAULT_SORT, WINDOWS, eolRange, eolText, exposureRows, fitNotes, fittedLine,
         healthQuery, rateText, sortUnits, stateFromParams, stateParams, toggleSort,
         warrantyBlocked, warrantyQuery, windowRange, type HealthState, type PackFormat,
         type Sort, type SortKey } from "../battery-health";
import type { SohChart } from "../charts";
import { saveFile } from "../download";
import { attr, h, reconcile, text } from "../dom";
import { clock, dateTime, num, pct } from "../format";
import type { BatteryHealthAnswer, ExposureBand, UnitHealth } from "../generated/api";
import type { Range } from "../historian";
import { assetHref, hashOf, siteHref } from "../router";
import { analyticsHeader, answers, siteFilter } from "./analytics-header";

export const HEALTH_REFRESH_MS = 15 * 60_000;

const COLUMNS: readonly [SortKey | null, string, string][] = [
  ["unit", "Unit", ""], ["site", "Site", ""], [null, "Vendor · model", ""],
  ["soh", "SOH now", "the fitted SOH at the last sample (else the last bucket's mean)"],
  ["per_year", "Fade / year", "points of SOH a year at the duty seen, 95 % band"],
  ["per_1000_efc", "Fade / 1,000 EFC", "points of SOH per 1,000 equivalent full cycles, " +
   "95 % band"],
  ["eol", "End of life", "the projected date of reaching the threshold"],
  [null, "Range", "the projected date's earliest and latest (95 % band of the fade)"]];

function unitRow(onPick: (id: string) => void): (u: UnitHealth) => HTMLElement {
  return (u) => h("tr", { class: "unit-health", "data-unit": u.unit_id,
                          onclick: () => onPick(u.unit_id) },
    h("td", { class: "unit" }, h("button", { type: "button", class: "link pick" }, u.unit_id)),
    h("td", { class: "site" }), h("td", { class: "vendor" }), h("td", { class: "soh n" }),
    h("td", { class: "per-year n" }), h("td", { class: "per-efc n" }),
    h("td", { class: "eol" }), h("td", { class: "eol-range" }));
}

function fillUnit(tr: HTMLElement, u: UnitHealth, chosen: string): void {
  const c = tr.children;
  attr(tr, "aria-selected", u.unit_id === chosen ? "true" : "false");
  attr(tr, "data-fit", u.fit ? u.fit.method : "none");
  text(c[1], u.site_id);
  text(c[2], [u.vendor ?? "unknown vendor", u.model].filter(Boolean).join(" · "));
  text(c[3], pct(u.fit?.soh_now_pct ?? u.soh[u.soh.length - 1]?.avg ?? null));
  text(c[4], rateText(u.fit?.at_duty_per_year));
  text(c[5], u.fit ? (u.fit.per_1000_efc ? rateText(u.fit.per_1000_efc) : "none apart") : "–");
  text(c[6], eolText(u));
  attr(c[6] ?? null, "title", u.fit ? `reaching ${pct(u.threshold_pct, 0)} SOH ` +
    `(${u.threshold_source === "contract" ? "the contract's warranty" : "the default"})`
    : u.no_fit_reason);
  text(c[7], eolRange(u));
}

function exposureTable(caption: string, cls: string): { el: HTMLElement;
                                                        draw(bands: ExposureBand[]): void } {
  const body = h("tbody", {});
  const el = h("table", { class: `exposure ${cls}` },
    h("thead", {}, h("tr", {}, h("th", {}, caption), h("th", { class: "n" }, "Hours"),
      h("th", {}, "Share"))), body);
  return {
    el,
    draw(bands) {
      reconcile(body, exposureRows(bands), (r) => r.label,
        (r) => h("tr", { "data-band": r.label }, h("td", {}, r.label), h("td", { class: "n" }),
          h("td", {}, h("span", { class: "bar" }), h("span", { class: "share" }))),
        (tr, r) => {
          text(tr.children[1], r.hours >= 1000 ? Math.round(r.hours).toLocaleString("en-US")
            : num(r.hours, 1));
          const bar = tr.querySelector<HTMLElement>(".bar");
          if (bar) bar.style.width = `${(r.share * 8).toFixed(2)}rem`;
          text(tr.querySelector(".share"), `${Math.round(r.share * 100)} %`);
        });
    },
  };
}

export function batteryHealthView(app: App, params: Record<string, string> = {}): View {
  const d = new Disposer();
  const state: HealthState = stateFromParams(params);
  let sort: Sort = DEFAULT_SORT;
  let range: Range = windowRange(state.window, app.clock.now());
  let chart: SohChart | null = null;
  let last: BatteryHealthAnswer | null = null;
  const canExport = app.can(P.reports);

  const head = analyticsHeader("battery-health", "Battery health", {
    who: "Asset owners and contract managers (and the service managers who support them).",
    decision: "When to claim on a battery warranty and when to augment: how fast each unit " +
      "is ageing — with time and with cycling — when it will reach the warranty's " +
      "end-of-life SOH, how much energy to add to keep the contracted capacity, and the " +
      "temperatures and C-rates it lived through.",
    sources: "The historian (the analytics archive's closed days and the history store's " +
      "recent ones) of each unit's reported SOH and active power and its DC blocks' cell " +
      "temperature; the fit, projection and exposure worked out by the server; the " +
      "end-of-life threshold from the site's contract (warranty), else 70 %.",
  });

  const sites = siteFilter(app, state.site, (site) => {
    state.site = site;
    if (state.site && last?.units.find((u) => u.unit_id === state.unit)?.site_id !==
        state.site) state.unit = "";
    remember();
    load();
  });
  const windowButtons = WINDOWS.map(([label]) => h("button", {
    type: "button", class: "secondary span", "data-window": label, onclick: () => {
      state.window = label;
      remember();
      load();
    } }, `last ${label}`));
  const stateLine = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const ask = answers(d, stateLine);

  const headers = new Map<SortKey, HTMLElement>();
  const body = h("tbody", {});
  const table = h("table", { class: "unit-health-table" },
    h("caption", { class: "visually-hidden" }, "Battery units: sort by a column's button, " +
      "pick a unit for its detail"),
    h("thead", {}, h("tr", {}, ...COLUMNS.map(([key, label, title]) => {
      if (!key) return h("th", { scope: "col", title: title || null }, label);
      const th = h("th", { scope: "col", "aria-sort": "none", title: title || null },
        h("button", { type: "button", class: "sort", "data-sort": key, onclick: () => {
          sort = toggleSort(sort, key);
          draw();
        } }, label));
      headers.set(key, th);
      return th;
    }))), body);
  const tableNote = h("p", { class: "meta unit-count" });

  // The detail of the unit picked.
  const detailTitle = h("h2", { class: "detail-title" }, "Unit");
  const detailHint = h("p", { class: "meta detail-hint" }, "Pick a unit in the table.");
  const chartEl = h("div", { class: "chart soh", "aria-label": "state of health chart",
                             "data-state": "idle" });
  const chartNote = h("p", { class: "chart-note soh-note" });
  const figures = h("dl", { class: "health-figures" });
  const reasons = h("ul", { class: "fit-reasons", "aria-label": "about the fit" });
  const hint = h("p", { class: "augmentation" });
  const temperature = exposureTable("Temperature", "temperature");
  const cRate = exposureTable("C-rate", "c-rate");
  // The warranty evidence pack of the unit shown, over the page's window.
  const packStatus = h("span", { class: "export-status", role: "status" });
  const packButton = (format: PackFormat, label: string) => h("button", {
    type: "button", class: `warranty-pack warranty-${format}`, "data-format": format,
    onclick: () => {
      if (state.unit) void saveFile(app.api, packStatus, "/analytics/warranty-pack",
                                    warrantyQuery(state.unit, range, format));
    } }, label);
  const packs = [packButton("pdf", "Warranty pack (PDF)"), packButton("xlsx", "(XLSX)")];
  const packNote = h("p", { class: "export-note meta warranty-note" },
    warrantyBlocked(canExport) ?? "The unit's availability, throughput, cycles, SOH, " +
    "temperature and SOC excursions over the window shown, against the contract's warranty " +
    "terms — the workbook with the data behind each figure.");
  const detailBody = h("div", { class: "detail-body", hidden: true },
    h("div", { class: "export-bar warranty-bar" }, ...(canExport ? packs : []), packStatus),
    packNote,
    chartEl, chartNote, reasons, figures, hint,
    h("div", { class: "exposures" },
      h("div", {}, h("h3", {}, "Hours per temperature band"), temperature.el),
      h("div", {}, h("h3", {}, "Hours per C-rate band"), cRate.el)),
    h("p", { class: "meta" }, "Temperature: the hottest DC block's mean cell temperature per " +
      "fit bucket; C-rate: |power| ÷ rated energy per power bucket. Bucket means smooth " +
      "short peaks; a gap counts nowhere."));
  const detail = h("section", { class: "panel unit-detail", "aria-label": "unit detail" },
    detailTitle, detailHint, detailBody);

  const el = h("div", { class: "view analytics battery-health" }, head.el,
    h("section", { class: "panel filters table-filters" }, sites, ...windowButtons,
      stateLine),
    h("section", { class: "panel" }, h("h2", {}, "Units by projected end of life"), table,
      tableNote),
    detail);

  /** The address says the site, unit and window; replaced, not pushed, and no hashchange:
   * the view stays. */
  const remember = () => {
    history.replaceState(null, "", `${location.pathname}${location.search}` +
      hashOf({ name: "battery-health", id: null, params: stateParams(state) }));
  };

  const pick = (id: string) => {
    state.unit = id;
    remember();
    draw();
  };

  const figure = (label: string, value: string, cls: string, title?: string) =>
    [h("dt", { title: title ?? null }, label), h("dd", { class: cls }, value)];

  const drawDetail = (u: UnitHealth | undefined) => {
    detailBody.hidden = u === undefined;
    detailHint.hidden = u !== undefined;
    if (detail.dataset.unit !== u?.unit_id) text(packStatus, ""); // another unit's download
    attr(detail, "data-unit", u?.unit_id ?? null);
    if (!u) {
      text(detailTitle, "Unit");
      text(detailHint, state.unit ? `${state.unit} is not in this answer (another site?). ` +
        "Pick a unit in the table." : "Pick a unit in the table.");
      chart?.update([], [], 70, [range.from, range.to]);
      attr(chartEl, "data-state", "idle");
      return;
    }
    detailTitle.replaceChildren(h("a", { href: assetHref(u.unit_id) }, u.unit_id),
      h("span", { class: "muted" }, " at "), h("a", { href: siteHref(u.site_id) }, u.site_id),
      h("span", { class: "muted" }, ` · ${num(u.rated_energy_mwh, 1)} MWh rated · ` +
        `commissioned ${u.commissioned}`));
    const f = u.fit;
    const p = u.projection;
    const threshold = `${pct(u.threshold_pct, 0)} (${u.threshold_source === "contract"
      ? "the contract's warranty" : "default: no warranty in the contract"})`;
    figures.replaceChildren(
      ...figure("End-of-life SOH", threshold, "threshold"),
      ...(f ? [
        ...figure("SOH now (fitted)", pct(f.soh_now_pct), "soh-now"),
        ...figure("Fade a year at the duty seen", `${rateText(f.at_duty_per_year)} points`,
                  "at-duty", "what the projection uses; 95 % band"),
        ...figure("Calendar fade a year", f.per_year && f.method === "time_and_cycles"
          ? `${rateText(f.per_year)} points` : "not apart", "per-year"),
        ...figure("Fade per 1,000 EFC", f.per_1000_efc
          ? `${rateText(f.per_1000_efc)} points` : "none apart", "per-efc"),
        ...figure("Cycles in the window", `${num(f.efc, 1)} EFC (${num(f.efc_per_year, 0)} a ` +
          "year)", "efc"),
        ...figure("Fit", `${f.method === "time_and_cycles" ? "time and cycles" : "time only"}` +
          ` · ${f.samples} samples · rms error ${num(f.rmse_pct, 3)} points`, "method"),
      ] : [...figure("Cycles in the window", `${num(u.efc, 1)} EFC`, "efc")]),
      ...figure("Projected end of life", p === null ? "no fit" : p.reached
        ? "reached already" : p.date ?? "not within reach", "eol-date"),
      ...(p && !p.reached ? figure("Earliest · latest",
        `${p.earliest ?? "–"} · ${p.latest ?? "open"}`, "eol-band") : []));
    reconcile(reasons, fitNotes(u), (n) => n, (n) => h("li", {}, n), () => undefined);
    text(hint, u.augmentation ? `Augmentation: ${u.augmentation.text}.`
      : f ? "Augmentation: none needed before the contract's end at this fade (or no " +
        "contract to say when that is)." : "");
    temperature.draw(u.temperature_hours);
    cRate.draw(u.c_rate_hours);
    chart?.update(u.soh.map((s) => ({ startMs: s.start_ms, min: s.min, avg: s.avg,
                                      max: s.max })),
                  fittedLine(u), u.threshold_pct, [range.from, range.to]);
    attr(chartEl, "data-state", chart ? "ready" : "loading");
    attr(chartEl, "data-points", String(u.soh.length));
    text(chartNote, u.soh.length ? "SOH per bucket (min–max band around the mean); dashed: " +
      "the fit at the duty seen" : "No SOH data in this window.");
  };

  const draw = () => {
    for (const b of windowButtons) {
      attr(b, "aria-pressed", b.dataset.window === state.window ? "true" : "false");
    }
    for (const [k, th] of headers) {
      attr(th, "aria-sort", k === sort.key ? (sort.descending ? "descending" : "ascending")
        : "none");
    }
    if (!last) return;
    const units = sortUnits(last.units, sort);
    reconcile(body, units, (u) => u.unit_id, unitRow(pick), (tr, u) =>
      fillUnit(tr, u, state.unit));
    const fitted = units.filter((u) => u.fit !== null).length;
    text(tableNote, `${units.length} unit${units.length === 1 ? "" : "s"}, ${fitted} with ` +
      "a fit; the fade a year is at the duty seen (calendar and cycling together), the " +
      "range is the projected date's at the ends of its 95 % band.");
    attr(el, "data-units", String(units.length));
    drawDetail(units.find((u) => u.unit_id === state.unit));
  };

  const load = () => {
    range = windowRange(state.window, app.clock.now());
    const asked = range;
    const request = app.api.get<BatteryHealthAnswer>("/analytics/battery-health",
                                                     healthQuery(state, asked));
    ask(request, `${dateTime(asked.from)} – ${dateTime(asked.to)}`, (got) => {
      last = got;
      draw();
      text(head.freshness, `as of ${clock(app.clock.now())}, again every ` +
        `${HEALTH_REFRESH_MS / 60_000} min; ` + (got.data_to_ms === null
        ? "no SOH data in this window"
        : `newest SOH data up to ${dateTime(got.data_to_ms)}`));
    });
    draw();
  };


  void import("../charts").then((charts) => {
    if (d.disposed) return;
    chart = charts.sohChart(chartEl);
    d.add(() => {
      chart?.dispose();
      chart = null;
    });
    draw();
  });
  d.interval(load, HEALTH_REFRESH_MS);
  load();
  return { el, destroy: () => d.dispose() };
}
