// #/analytics/vendors — vendor benchmarking: the caller's battery units (or inverters) by
// vendor, or by vendor and model (a toggle), over 90 days, a year or 400 days — installed MW
// and MWh, availability, lost MWh per installed MWh, failures per MW-year, MTBF, MTTR,
// round-trip efficiency, equivalent full cycles and SOH fade a year, with the fleet's total
// below; each data source's newest data in the header. Over REST (GET /analytics/vendors),
// again on every change and every 15 minutes (a benchmark is about months). The site, level,
// grouping and window are in the address (#/analytics/vendors?level=inverter&by=model).
import { Disposer, type App, type View } from "../app";
import { attr, h, reconcile, text } from "../dom";
import { clock, dateTime } from "../format";
import type { VendorBenchRow, VendorsAnswer } from "../generated/api";
import type { Range } from "../historian";
import { hashOf } from "../router";
import { COLUMNS, LEVELS, WINDOWS, pageFromParams, pageParams, rowCells, sourcesFreshness,
         vendorsQuery, windowRange, type By, type VendorsPage } from "../vendors";
import { analyticsHeader, answers, siteFilter } from "./analytics-header";

export const VENDORS_REFRESH_MS = 15 * 60_000;

function fillRow(tr: HTMLElement, r: VendorBenchRow): void {
  attr(tr, "data-key", r.key.join("/"));
  const cells = rowCells(r);
  if (tr.children.length !== cells.length) {
    tr.replaceChildren(...COLUMNS.map(([cls]) => h("td", { class: cls === "key" ? cls
      : `${cls} n` })));
  }
  cells.forEach((c, i) => text(tr.children[i], c));
}

export function vendorsView(app: App, params: Record<string, string> = {}): View {
  const d = new Disposer();
  const page: VendorsPage = pageFromParams(params);
  let range: Range = windowRange(page.window, app.clock.now());
  let last: VendorsAnswer | null = null;

  const head = analyticsHeader("vendors", "Vendor benchmarking", {
    who: "Asset owners and procurement.",
    decision: "Which maker's battery system (or inverter) to buy again, and what to hold a " +
      "vendor to: availability, reliability, efficiency and ageing on your own fleet, " +
      "normalised by installed MW and MWh so a vendor of a few big sites compares fairly " +
      "with one of many small ones.",
    sources: "The history store's status intervals and unavailability episodes (as fresh as " +
      "the flows' last write) and the per-minute active power and SOH of the historian (the " +
      "analytics archive's closed days, the history store's recent ones); the fleet file's " +
      "vendor, model and ratings. Worked out by the server.",
  });

  const sites = siteFilter(app, page.site, (site) => {
    page.site = site;
    remember();
    load();
  });
  const levelFilter = h("select", { class: "filter level", "aria-label": "level" },
    ...LEVELS.map((l) => h("option", { value: l }, l === "unit" ? "battery units"
      : "inverters (PCS)")));
  levelFilter.value = page.level;
  levelFilter.addEventListener("change", () => {
    page.level = levelFilter.value === "inverter" ? "inverter" : "unit";
    remember();
    load();
  });
  const byButtons = (["vendor", "model"] as const).map((by: By) => h("button", {
    type: "button", class: "secondary by", "data-by": by, onclick: () => {
      page.by = by;
      remember();
      draw();
    } }, by === "vendor" ? "by vendor" : "by vendor and model"));
  const windowButtons = WINDOWS.map(([label]) => h("button", {
    type: "button", class: "secondary span", "data-window": label, onclick: () => {
      page.window = label;
      remember();
      load();
    } }, `last ${label}`));
  const stateLine = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const ask = answers(d, stateLine);

  const keyHead = h("th", { scope: "col" }, "Vendor");
  const body = h("tbody", {});
  const foot = h("tfoot", {});
  const table = h("table", { class: "vendor-table" },
    h("thead", {}, h("tr", {}, ...COLUMNS.map(([cls, label, title], i) => i === 0 ? keyHead
      : h("th", { scope: "col", class: cls, title: title || null }, label)))), body, foot);
  const note = h("p", { class: "meta vendor-note" });

  const el = h("div", { class: "view analytics vendors" }, head.el,
    h("section", { class: "panel filters table-filters" }, sites, levelFilter,
      ...byButtons, ...windowButtons, stateLine),
    h("section", { class: "panel" }, h("h2", {}, "Vendors compared"), table, note));

  /** The address says the site, level, grouping and window; replaced, not pushed. */
  const remember = () => {
    history.replaceState(null, "", `${location.pathname}${location.search}` +
      hashOf({ name: "vendors", id: null, params: pageParams(page) }));
  };

  const draw = () => {
    for (const b of windowButtons) {
      attr(b, "aria-pressed", b.dataset.window === page.window ? "true" : "false");
    }
    for (const b of byButtons) attr(b, "aria-pressed", b.dataset.by === page.by ? "true" : "false");
    text(keyHead, page.by === "vendor" ? "Vendor" : "Vendor · model");
    if (!last) return;
    const rows = page.by === "vendor" ? last.vendors : last.models;
    reconcile(body, rows, (r) => r.key.join("/"), () => h("tr", { class: "vendor-row" }),
              fillRow);
    const tr = h("tr", { class: "total" });
    fillRow(tr, last.total);
    foot.replaceChildren(tr);
    attr(table, "data-by", page.by);
    attr(table, "data-level", last.level);
    text(note, `${last.total.assets} ${last.level === "unit" ? "battery unit" : "inverter"}` +
      `${last.total.assets === 1 ? "" : "s"}. Fade: the units with at least two days of SOH ` +
      "in brackets. Efficiency, cycles and fade are battery figures: none at the inverter " +
      "level. Over a few days one trip or a half-charged battery at the window's ends moves " +
      "the figures: compare over months.");
  };

  const load = () => {
    range = windowRange(page.window, app.clock.now());
    const asked = range;
    const request = app.api.get<VendorsAnswer>("/analytics/vendors", vendorsQuery(page, asked));
    ask(request, `${dateTime(asked.from)} – ${dateTime(asked.to)}`, (got) => {
      last = got;
      draw();
      text(head.freshness, `as of ${clock(app.clock.now())}, again every ` +
        `${VENDORS_REFRESH_MS / 60_000} min; ${sourcesFreshness(got.sources)}`);
    });
    draw();
  };


  d.interval(load, VENDORS_REFRESH_MS);
  load();
  return { el, destroy: () => d.dispose() };
}
