// #/ — every site the caller may see: for a small fleet a tile each — live availability
// (today, month to date, contract year to date) against its guarantee, LD exposure, warning
// level, units by state, freshness; above DENSE_ABOVE sites (or when chosen) one table row
// each, sortable and filterable, the whole fleet on one screen. The fleet's KPIs on top;
// early warnings and the newest alarms beside. Layout, sort and filters stay in the address
// (#/?layout=table&sort=today&warning=ld_risk&customer=…).
import { Disposer, P, type App, type View } from "../app";
import { alarmList, updateWarningBadge } from "../components";
import { attr, frameThrottle, h, reconcile, text } from "../dom";
import { CONTRACT_NOTES, fleetKpis, siteContract, type SiteEntry } from "../fleet";
import { DENSE_ABOVE, filterOptions, filterSites, layoutFor, LAYOUT_CHOICES, parseTableState, siteName,
         sortSites, tableParams, toggleSort, type SortKey, type TableState,
         type WarningFilter } from "../fleet-table";
import { freshness } from "../freshness";
import { ago, money, pct, words } from "../format";
import { hashOf, parseHash, siteHref } from "../router";
import { againstGuarantee, siteLevel, stateOf, STATE_LABELS, WARNING_LABELS } from "../status";
import type { Alert, State } from "../types";

const TILE_WINDOWS = [["today", "Today"], ["month_to_date", "Month to date"],
                      ["contract_year_to_date", "Contract year"]] as const;

export function kpiStrip(app: App): { el: HTMLElement; update(): void } {
  const showMoney = app.can(P.contracts);
  const cell = (cls: string, label: string) =>
    h("div", { class: `kpi ${cls}` }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, label));
  const el = h("section", { class: "kpis", "aria-label": "fleet KPIs" },
    cell("avail-today", "fleet today"), cell("avail-mtd", "month to date"),
    cell("avail-cytd", "contract year to date"),
    h("div", { class: "kpi units" }, h("span", { class: "value states" }),
      h("span", { class: "label" }, "units")),
    h("div", { class: "kpi levels" }, h("span", { class: "value levels-value" }),
      h("span", { class: "label" }, "sites by warning level")),
    showMoney ? cell("ld-total", "LD, contract year to date") : null,
    cell("alarms-kpi", "active alarms"),
    cell("stale-kpi", "sites with stale data"));
  const update = () => {
    const k = fleetKpis(app.fleet.all(), app.clock.now(), showMoney);
    text(el.querySelector(".avail-today .value"), pct(k.windows.today));
    text(el.querySelector(".avail-mtd .value"), pct(k.windows.month_to_date));
    text(el.querySelector(".avail-cytd .value"), pct(k.windows.contract_year_to_date));
    const states = el.querySelector(".states");
    if (states) {
      reconcile(states, (["available", "derated", "unavailable", "unknown"] as State[]),
        (s) => s, (s) => h("span", { class: "count", "data-state": s }),
        (e, s) => {
          text(e, `${k.unitsByState[s]} ${STATE_LABELS[s]}`);
          e.classList.toggle("zero", k.unitsByState[s] === 0);
        });
    }
    const levels = el.querySelector(".levels-value");
    if (levels) {
      reconcile(levels, (["ok", "watch", "ld_risk"] as const), (l) => l,
        (l) => h("span", { class: "count", "data-warning": l }),
        (e, l) => {
          text(e, `${k.warningLevels[l]} ${words(l)}`);
          e.classList.toggle("zero", k.warningLevels[l] === 0);
        });
    }
    if (k.ldYearToDate) {
      const parts = Object.entries(k.ldYearToDate).map(([c, v]) => money(v, c));
      text(el.querySelector(".ld-total .value"), parts.length ? parts.join(" · ") : "–");
      attr(el.querySelector(".ld-total .value"), "title", parts.join(" · ") || null);
    }
    const now = app.clock.now();
    const all = app.alarms.list(now);
    const critical = all.filter((a) => a.severity === "critical").length;
    text(el.querySelector(".alarms-kpi .value"), String(all.length));
    text(el.querySelector(".alarms-kpi .label"), critical ? `active alarms · ${critical} critical`
      : "active alarms");
    attr(el.querySelector(".alarms-kpi"), "data-critical", critical ? "yes" : null);
    text(el.querySelector(".stale-kpi .value"), String(k.staleSites));
    attr(el.querySelector(".stale-kpi"), "data-stale", k.staleSites ? "yes" : null);
  };
  return { el, update };
}

function tile(entry: SiteEntry): HTMLElement {
  const site = entry.site;
  return h("a", { class: "site-tile", href: siteHref(site.id), "data-site": site.id },
    h("header", {},
      h("h2", { class: "name" }, site.name ?? site.id),
      h("span", { class: "chip warning" })),
    h("div", { class: "meta" }, `${site.customer} · ${site.region} · ${site.units} units`),
    h("div", { class: "windows" }, ...TILE_WINDOWS.map(([key, label]) =>
      h("div", { class: "win", "data-window": key },
        h("span", { class: "value" }, "–"), h("span", { class: "label" }, label)))),
    h("div", { class: "contract" }),
    h("div", { class: "ld" }),
    h("div", { class: "units", "aria-label": "battery units" }),
    h("div", { class: "counts" }),
    h("div", { class: "freshness" }));
}

export function updateTile(el: HTMLElement, entry: SiteEntry, app: App): void {
  const snap = entry.snapshot;
  const sc = siteContract(snap);
  const contract = sc.kind === "contract" ? sc.kpis : null;
  const level = snap ? siteLevel(snap.units_by_state) : "unknown";
  attr(el, "data-level", level);
  attr(el, "data-warning", contract?.warning_level ?? "none");
  updateWarningBadge(el.querySelector(".chip.warning"), sc);
  for (const [key] of TILE_WINDOWS) {
    const win = el.querySelector(`.win[data-window="${key}"]`);
    const value = snap?.windows[key] ?? null;
    text(win?.querySelector(".value"), pct(value));
    attr(win, "data-vs", againstGuarantee(value, contract?.guaranteed_pct) ?? "none");
  }
  text(el.querySelector(".contract"), contract
    ? `guarantee ${pct(contract.guaranteed_pct)} · ${contract.period}: ${pct(contract.actual_pct)}` +
      ` → projected ${pct(contract.projected_pct)}`
    : sc.kind === "contract" ? "" : CONTRACT_NOTES[sc.kind]);
  const ldEl = el.querySelector<HTMLElement>(".ld");
  if (ldEl) {
    const show = app.can(P.contracts) && contract !== null;
    ldEl.hidden = !show;
    if (show && contract) {
      text(ldEl, `LD year to date ${money(contract.ld_year_to_date, contract.currency)} · ` +
        `projected ${money(contract.projected_ld, contract.currency)}`);
      attr(ldEl, "data-ld", (contract.ld_year_to_date ?? 0) > 0 || (contract.projected_ld ?? 0) > 0
        ? "yes" : null);
    }
  }
  const units = el.querySelector(".units");
  if (units) {
    reconcile(units, snap?.units ?? [], (u) => u.id,
      (u) => h("span", { class: "unit-cell", "data-asset": u.id }),
      (cell, u) => {
        attr(cell, "data-state", stateOf(u.state));
        attr(cell, "title", `${u.id}: ${u.state}${u.cause ? ` (${words(u.cause)})` : ""}` +
          ` — last hour ${pct(u.last_hour_pct)}, today ${pct(u.today_pct)}`);
      });
  }
  const n = snap?.units_by_state ?? {};
  text(el.querySelector(".counts"), snap
    ? `${n.available ?? 0} available · ${n.derated ?? 0} derated · ` +
      `${n.unavailable ?? 0} unavailable · ${n.unknown ?? 0} unknown` : "no data yet");
  updateFreshness(el, snap?.ts_ms ?? null, app);
}

export function updateFreshness(el: HTMLElement, tsMs: number | null, app: App): void {
  const f = freshness(tsMs, app.clock.now());
  attr(el, "data-stale", f.stale ? "true" : "false");
  const label = el.querySelector(".freshness");
  attr(label, "data-stale", f.stale ? "true" : "false");
  text(label, f.ageMs === null ? "STALE — no data yet"
    : f.stale ? `STALE — last data ${ago(f.ageMs)}` : `updated ${ago(f.ageMs)}`);
}

function warningRow(a: Alert, app: App): HTMLElement {
  return h("div", { class: "warning-row", role: "listitem", "data-kind": a.kind,
                    "data-severity": a.severity },
    h("span", { class: "sev", "data-severity": a.severity }, words(a.kind)),
    h("span", { class: "msg" }, a.message),
    a.site_id ? h("a", { href: siteHref(a.site_id) }, a.site_id) : null,
    h("span", { class: "raised" }, ago(app.clock.now() - a.raised_ms)));
}

const COLUMNS: readonly { key: SortKey | null; label: string; cls: string; money?: true }[] = [
  { key: null, label: "State", cls: "state" }, { key: "name", label: "Site", cls: "name" },
  { key: null, label: "Customer · region", cls: "where" },
  { key: "today", label: "Today", cls: "num today" },
  { key: "mtd", label: "Month to date", cls: "num mtd" },
  { key: null, label: "Guarantee", cls: "num guarantee" },
  { key: null, label: "Projected", cls: "num projected" },
  { key: "warning", label: "Warning", cls: "warning" },
  { key: "ld", label: "LD year to date / projected", cls: "num ld", money: true },
  { key: null, label: "Units", cls: "units" },
  { key: null, label: "Data", cls: "freshness" },
];

const WARNING_FILTERS: readonly [WarningFilter | "", string][] = [["", "every level"],
  ["ld_risk", WARNING_LABELS.ld_risk], ["watch", WARNING_LABELS.watch],
  ["ok", WARNING_LABELS.ok], ["none", "no warning level"]];

function siteRow(entry: SiteEntry, showMoney: boolean): HTMLElement {
  const site = entry.site;
  return h("tr", { class: "site-row", "data-site": site.id },
    h("td", { class: "state" }, h("span", { class: "swatch", "aria-hidden": "true" }),
      h("span", { class: "word" })),
    h("th", { class: "name", scope: "row" },
      h("a", { href: siteHref(site.id), title: `${siteName(entry)} — ${site.customer}, ` +
        `${site.region}, ${site.units} units` }, siteName(entry))),
    h("td", { class: "where", title: `${site.customer} · ${site.region}` },
      `${site.customer} · ${site.region}`),
    h("td", { class: "num today" }), h("td", { class: "num mtd" }),
    h("td", { class: "num guarantee" }), h("td", { class: "num projected" }),
    h("td", { class: "warning" }, h("span", { class: "chip warning" })),
    showMoney ? h("td", { class: "num ld" }) : null,
    h("td", { class: "units" }), h("td", { class: "freshness" }));
}

function updateRow(tr: HTMLElement, entry: SiteEntry, app: App): void {
  const snap = entry.snapshot;
  const sc = siteContract(snap);
  const k = sc.kind === "contract" ? sc.kpis : null;
  const level = snap ? siteLevel(snap.units_by_state) : "unknown";
  attr(tr, "data-level", level);
  attr(tr, "data-warning", k?.warning_level ?? "none");
  text(tr.querySelector(".state .word"), STATE_LABELS[level]);
  for (const [cls, key] of [["today", "today"], ["mtd", "month_to_date"]] as const) {
    const cell = tr.querySelector(`.${cls}`);
    const v = snap?.windows[key] ?? null;
    text(cell, pct(v));
    attr(cell, "data-vs", againstGuarantee(v, k?.guaranteed_pct) ?? "none");
  }
  text(tr.querySelector(".guarantee"), k ? pct(k.guaranteed_pct) : "–");
  const projected = tr.querySelector(".projected");
  text(projected, k ? pct(k.projected_pct) : "–");
  attr(projected, "title", k ? `${k.period}: ${pct(k.actual_pct)} so far, projected ` +
    `${pct(k.projected_pct)} against ${pct(k.guaranteed_pct)}` : sc.kind === "contract" ? null
    : CONTRACT_NOTES[sc.kind] || null);
  attr(projected, "data-vs", againstGuarantee(k?.projected_pct ?? null, k?.guaranteed_pct) ??
    "none");
  updateWarningBadge(tr.querySelector(".chip.warning"), sc);
  const ld = tr.querySelector(".ld");
  if (ld) {
    text(ld, k ? `${money(k.ld_year_to_date, k.currency)} / ${money(k.projected_ld, k.currency)}`
      : "–");
    attr(ld, "data-ld", k && ((k.ld_year_to_date ?? 0) > 0 || (k.projected_ld ?? 0) > 0)
      ? "yes" : null);
  }
  const units = tr.querySelector(".units");
  if (units) {
    const n = snap?.units_by_state ?? {};
    reconcile(units, (["available", "derated", "unavailable", "unknown"] as State[]), (s) => s,
      (s) => h("span", { class: "n", "data-state": s, title: STATE_LABELS[s] }),
      (e, s) => {
        text(e, String(n[s] ?? 0));
        e.classList.toggle("zero", (n[s] ?? 0) === 0);
      });
    attr(units, "title", snap ? `${n.available ?? 0} available · ${n.derated ?? 0} derated · ` +
      `${n.unavailable ?? 0} unavailable · ${n.unknown ?? 0} unknown` : "no data yet");
  }
  updateFreshness(tr, snap?.ts_ms ?? null, app);
}

/** The dense layout's controls and table. */
function siteTable(app: App, state: () => TableState, change: (next: TableState) => void):
    { tools: HTMLElement; el: HTMLElement; draw(entries: SiteEntry[], dense: boolean): void } {
  const showMoney = app.can(P.contracts);
  const layoutButtons = LAYOUT_CHOICES.map((c) => h("button", {
    type: "button", class: "secondary", "data-layout": c,
    onclick: () => change({ ...state(), layout: c }) }, c === "auto" ? "Auto" : c === "tiles"
      ? "Tiles" : "Table"));
  const select = (name: string, label: string, onchange: (v: string) => void) =>
    h("select", { name, "aria-label": label, onchange: (ev: Event) =>
      onchange((ev.target as HTMLSelectElement).value) });
  const warning = select("warning", "warning level", (v) =>
    change({ ...state(), warning: (v || null) as WarningFilter | null }));
  warning.replaceChildren(...WARNING_FILTERS.map(([v, label]) => h("option", { value: v }, label)));
  const customer = select("customer", "customer", (v) => change({ ...state(), customer: v || null }));
  const region = select("region", "region", (v) => change({ ...state(), region: v || null }));
  const shown = h("span", { class: "shown", role: "status" });
  const filters = h("div", { class: "table-filters" }, h("span", { class: "label" }, "Show"),
    warning, customer, region, shown);
  const tools = h("div", { class: "overview-tools" },
    h("div", { class: "layout-choice", role: "group", "aria-label": "layout" },
      h("span", { class: "label" }, "Layout"), ...layoutButtons), filters);
  const headers = new Map<SortKey, HTMLElement>();
  const body = h("tbody", {});
  const table = h("table", { class: "site-table" },
    h("caption", { class: "visually-hidden" }, "Sites: sort by a column's button"),
    h("thead", {}, h("tr", {}, ...COLUMNS.filter((c) => showMoney || !c.money).map((c) => {
      if (!c.key) return h("th", { scope: "col", class: c.cls }, c.label);
      const key = c.key;
      const th = h("th", { scope: "col", class: c.cls, "aria-sort": "none" },
        h("button", { type: "button", class: "sort", "data-sort": key,
                      onclick: () => change(toggleSort(state(), key)) }, c.label));
      headers.set(key, th);
      return th;
    }))), body);
  const empty = h("p", { class: "empty", hidden: true }, "No site matches the filters.");
  const el = h("section", { class: "site-table-wrap", "aria-label": "sites" }, table, empty);
  let optionsKey = "";
  const options = (sel: HTMLElement, all: string, values: string[], value: string | null) => {
    sel.replaceChildren(h("option", { value: "" }, all),
      ...values.map((v) => h("option", { value: v }, v)));
    (sel as HTMLSelectElement).value = value && values.includes(value) ? value : "";
  };
  return {
    tools, el,
    draw(entries, dense) {
      const s = state();
      for (const b of layoutButtons) attr(b, "aria-pressed", b.dataset.layout === s.layout
        ? "true" : "false");
      attr(layoutButtons[0] ?? null, "title", `tiles up to ${DENSE_ABOVE} sites, a table above`);
      filters.hidden = !dense;
      if (!dense) {
        reconcile(body, [] as SiteEntry[], (e) => e.site.id, (e) => siteRow(e, showMoney),
          () => undefined);
        return;
      }
      const opts = filterOptions(entries);
      const key = JSON.stringify(opts);
      if (key !== optionsKey) {
        optionsKey = key;
        options(customer, "every customer", opts.customers, s.customer);
        options(region, "every region", opts.regions, s.region);
      }
      (warning as HTMLSelectElement).value = s.warning ?? "";
      (customer as HTMLSelectElement).value = s.customer ?? "";
      (region as HTMLSelectElement).value = s.region ?? "";
      for (const [k, th] of headers) {
        attr(th, "aria-sort", k === s.sort ? (s.descending ? "descending" : "ascending")
          : "none");
      }
      const rows = sortSites(filterSites(entries, s), s.sort, s.descending);
      reconcile(body, rows, (e) => e.site.id, (e) => siteRow(e, showMoney),
        (tr, e) => updateRow(tr, e, app));
      empty.hidden = rows.length > 0;
      text(shown, rows.length === entries.length ? `${entries.length} sites`
        : `${rows.length} of ${entries.length} sites`);
    },
  };
}

let firstTileMarked = false;

export function overviewView(app: App): View {
  const d = new Disposer();
  let state = parseTableState(parseHash(location.hash).route.params);
  const kpis = kpiStrip(app);
  const grid = h("section", { class: "site-grid", "aria-label": "sites" });
  const table = siteTable(app, () => state, (next: TableState) => {
    state = next;
    // The address says the layout, sort and filters (a wall or a link opens them again);
    // replaced, not pushed, and no hashchange: the view stays.
    history.replaceState(null, "", `${location.pathname}${location.search}` +
      hashOf({ name: "overview", id: null, params: tableParams(state) }));
    draw.request();
  });
  const warnings = h("div", { class: "warnings", role: "list" });
  const alarms = alarmList(app, () => true, { limit: 6, compact: true });
  d.add(alarms.destroy);
  const el = h("div", { class: "view overview" }, kpis.el, table.tools,
    h("div", { class: "overview-body" }, h("div", { class: "sites" }, grid, table.el),
      h("aside", { class: "side" },
        h("section", { class: "panel" }, h("h2", {}, h("a", { href: "#/alarms" }, "Active alarms")),
          alarms.el),
        h("section", { class: "panel" }, h("h2", {}, "Early warnings"), warnings))));
  const draw = frameThrottle(() => {
    const entries = app.fleet.all();
    const dense = layoutFor(state.layout, entries.length) === "table";
    el.classList.toggle("dense", dense);
    // The dense overview fits the screen: the page never scrolls (a wall cannot).
    document.body.classList.toggle("fit-screen", dense);
    grid.hidden = dense;
    table.el.hidden = !dense;
    reconcile(grid, dense ? [] : entries, (e) => e.site.id, tile,
      (e, entry) => updateTile(e, entry, app));
    table.draw(entries, dense);
    kpis.update();
    if (!firstTileMarked && entries.length > 0) {
      firstTileMarked = true; // time to first render: navigation start → first site, once
      performance.mark("bessmon:first-tile");
    }
    const list = app.warnings.list().slice(0, 12);
    warnings.replaceChildren(...(list.length ? list.map((a) => warningRow(a, app))
      : [h("p", { class: "empty" }, "No early warnings.")]));
  });
  d.add(app.fleet.changed.on(() => draw.request()));
  d.add(app.warnings.changed.on(() => draw.request()));
  d.add(app.alarms.changed.on(() => draw.request()));
  d.add(app.tick.on(() => draw.request()));
  d.add(() => draw.cancel());
  d.add(() => document.body.classList.remove("fit-screen"));
  draw.request();
  return { el, destroy: () => d.dispose() };
}
