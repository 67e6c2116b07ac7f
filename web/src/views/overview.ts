// #/ — every site the caller may see as a tile: live availability (today, month to date,
// contract year to date) against its guarantee, LD exposure, warning level, units by state,
// freshness; the fleet's KPIs on top; early warnings and the newest alarms beside.
import { Disposer, P, type App, type View } from "../app";
import { alarmList, updateWarningBadge } from "../components";
import { attr, frameThrottle, h, reconcile, text } from "../dom";
import { CONTRACT_NOTES, fleetKpis, siteContract, type SiteEntry } from "../fleet";
import { freshness } from "../freshness";
import { ago, money, pct, words } from "../format";
import { siteHref } from "../router";
import { againstGuarantee, siteLevel, stateOf, STATE_LABELS } from "../status";
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

let firstTileMarked = false;

export function overviewView(app: App): View {
  const d = new Disposer();
  const kpis = kpiStrip(app);
  const grid = h("section", { class: "site-grid", "aria-label": "sites" });
  const warnings = h("div", { class: "warnings", role: "list" });
  const alarms = alarmList(app, () => true, { limit: 6, compact: true });
  d.add(alarms.destroy);
  const el = h("div", { class: "view overview" }, kpis.el,
    h("div", { class: "overview-body" }, grid,
      h("aside", { class: "side" },
        h("section", { class: "panel" }, h("h2", {}, h("a", { href: "#/alarms" }, "Active alarms")),
          alarms.el),
        h("section", { class: "panel" }, h("h2", {}, "Early warnings"), warnings))));
  const draw = frameThrottle(() => {
    const entries = app.fleet.all();
    reconcile(grid, entries, (e) => e.site.id, tile, (e, entry) => updateTile(e, entry, app));
    kpis.update();
    if (!firstTileMarked && entries.length > 0) {
      firstTileMarked = true; // time to first render: navigation start → first tile, once
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
  draw.request();
  return { el, destroy: () => d.dispose() };
}
