// #/site/<id> — one site: its live availability and contract, the heat map of its battery
// units → inverters → DC blocks coloured by status, the availability trend and timeline,
// its active alarms, availability drops with their tickets; a link to its safety and control
// view (#/control/<id>).
import { Disposer, P, poll, type App, type View } from "../app";
import { alarmList, episodeTable, section, stateChip, ticketTable, updateStateChip,
         updateWarningBadge } from "../components";
import { attr, frameThrottle, h, reconcile, text } from "../dom";
import { CONTRACT_NOTES, siteContract } from "../fleet";
import { money, pct, words } from "../format";
import { assetHref, controlHref } from "../router";
import { againstGuarantee, dropsToShow, siteLevel, stateOf } from "../status";
import type { AssetDetail, AssetNode, Episode, Page, UnitAvailability } from "../types";
import { historyPanel } from "./history-panel";
import { updateFreshness } from "./overview";

export const SITE_WINDOWS = [["last_hour", "Last hour"], ["today", "Today"],
  ["month_to_date", "Month to date"], ["contract_year_to_date", "Contract year to date"]] as const;

function short(id: string, parent: string): string {
  return id.startsWith(`${parent}-`) ? id.slice(parent.length + 1) : id;
}

/** The heat map: a card per unit, a row per inverter, a cell per DC block. */
export function heatMap(): { el: HTMLElement; update(tree: AssetNode | null,
                                                    units: UnitAvailability[]): void } {
  const el = h("div", { class: "heatmap", "aria-label": "asset heat map" });
  const cell = (node: AssetNode, cls: string, label: string) =>
    h("a", { class: `asset-cell ${cls}`, href: assetHref(node.id), "data-asset": node.id,
             "data-kind": node.kind }, label);
  const title = (node: AssetNode, state: string) =>
    `${node.id}: ${state}${node.cause ? ` (${words(node.cause)})` : ""} — last hour ` +
    `${pct(node.last_hour_pct)}, today ${pct(node.today_pct)}`;
  return {
    el,
    update(tree, units) {
      const live = new Map(units.map((u) => [u.id, u]));
      reconcile(el, tree?.children ?? [], (n) => n.id,
        (unit) => h("div", { class: "unit-card", "data-asset": unit.id },
          h("a", { class: "unit-head", href: assetHref(unit.id) },
            h("span", { class: "id" }, short(unit.id, tree?.id ?? "")),
            h("span", { class: "state-label" }), h("span", { class: "pct" })),
          h("div", { class: "inverters" })),
        (card, unit) => {
          const u = live.get(unit.id); // the site's snapshot: newest, children rolled up
          const state = stateOf(u?.state ?? unit.state);
          attr(card, "data-state", state);
          attr(card.querySelector(".unit-head"), "title", title(unit, state));
          text(card.querySelector(".state-label"), `${state}${(u?.cause ?? unit.cause)
            ? ` · ${words(u?.cause ?? unit.cause)}` : ""}`);
          text(card.querySelector(".pct"), `today ${pct(u?.today_pct ?? unit.today_pct)}`);
          const inverters = card.querySelector(".inverters");
          if (!inverters) return;
          reconcile(inverters, unit.children, (n) => n.id,
            (inv) => h("div", { class: "inv-row" }, cell(inv, "inverter", short(inv.id, unit.id)),
              h("div", { class: "blocks" })),
            (row, inv) => {
              const invCell = row.querySelector(".inverter");
              const s = stateOf(inv.state);
              attr(invCell, "data-state", s);
              attr(invCell, "title", title(inv, s));
              const blocks = row.querySelector(".blocks");
              if (!blocks) return;
              reconcile(blocks, inv.children, (n) => n.id,
                (b) => cell(b, "block", short(b.id, inv.id)),
                (bel, b) => {
                  const bs = stateOf(b.state);
                  attr(bel, "data-state", bs);
                  attr(bel, "title", title(b, bs));
                });
            });
        });
    },
  };
}

export function siteView(app: App, siteId: string): View {
  const d = new Disposer();
  const entry = () => app.fleet.get(siteId);
  if (!entry()) {
    return { el: h("div", { class: "view" }, h("p", { class: "empty" },
      `No site ${siteId} — it does not exist, or it is not yours to see.`),
      h("a", { href: "#/" }, "Back to the fleet")), destroy: () => d.dispose() };
  }
  const site = entry()!.site;
  const showMoney = app.can(P.contracts);
  let tree: AssetNode | null = null;
  let detail: AssetDetail | null = null;
  let history: Episode[] = [];

  const header = h("header", { class: "view-head" },
    h("nav", { class: "crumbs", "aria-label": "breadcrumb" },
      h("a", { href: "#/" }, "Fleet"), " › ", h("span", {}, site.name ?? site.id)),
    h("div", { class: "title-row" },
      h("h1", { id: "view-title" }, site.name ?? site.id), stateChip(null),
      h("span", { class: "chip warning" }), h("span", { class: "freshness" }),
      h("a", { class: "control-link", href: controlHref(siteId) },
        app.can(P.control) ? "Safety & control (emergency stop)" : "Safety & control")),
    h("div", { class: "meta" }, `${site.customer} · ${site.region} · ${site.timezone} · ` +
      `${site.units} units · ${(site.rated_power_kw / 1000).toFixed(1)} MW / ` +
      `${(site.rated_energy_kwh / 1000).toFixed(1)} MWh`));
  const windows = h("section", { class: "kpis site-kpis" }, ...SITE_WINDOWS.map(([k, label]) =>
    h("div", { class: "kpi", "data-window": k }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, label))),
    h("div", { class: "kpi contract-kpi" }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, "period")),
    showMoney ? h("div", { class: "kpi ld-kpi" }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, "LD year to date · projected")) : null);
  const heat = heatMap();
  const alarms = alarmList(app, (a) => a.site_id === siteId,
                           { empty: "No active alarms at this site." });
  d.add(alarms.destroy);
  const drops = h("div", {});
  const tickets = h("div", {});
  const guarantee = () => {
    const sc = siteContract(entry()?.snapshot);
    return sc.kind === "contract" ? sc.kpis.guaranteed_pct : null;
  };
  const charts = historyPanel(app.api, d, () => app.clock.now(), () =>
    (tree?.children ?? []).map((u) => ({ id: u.id, label: u.id, weight: u.rated_energy_kwh ?? 1 })),
  guarantee);

  const el = h("div", { class: "view site", "data-site": siteId }, header, windows,
    section("Battery units → inverters → DC blocks", heat.el),
    h("div", { class: "grid2" }, section("Active alarms", alarms.el),
      section("Availability drops and their tickets", drops)),
    charts.el,
    section("Tickets", tickets));

  const draw = frameThrottle(() => {
    const snap = entry()?.snapshot ?? null;
    const sc = siteContract(snap);
    const contract = sc.kind === "contract" ? sc.kpis : null;
    const level = snap ? siteLevel(snap.units_by_state) : "unknown";
    attr(el, "data-level", level);
    updateStateChip(header.querySelector(".chip.state"), level);
    updateWarningBadge(header.querySelector(".chip.warning"), sc);
    updateFreshness(header, snap?.ts_ms ?? null, app);
    for (const [k] of SITE_WINDOWS) {
      const kpi = windows.querySelector(`[data-window="${k}"]`);
      const v = snap?.windows[k] ?? null;
      text(kpi?.querySelector(".value"), pct(v));
      attr(kpi, "data-vs", againstGuarantee(v, contract?.guaranteed_pct) ?? "none");
    }
    text(windows.querySelector(".contract-kpi .value"), contract
      ? `${contract.period}: ${pct(contract.actual_pct)} / ${pct(contract.guaranteed_pct)}`
      : sc.kind === "technical" ? "no contract" : "–");
    text(windows.querySelector(".contract-kpi .label"), contract
      ? `actual / guaranteed · projected ${pct(contract.projected_pct)}`
      : sc.kind === "contract" ? "" : CONTRACT_NOTES[sc.kind]);
    if (showMoney) {
      text(windows.querySelector(".ld-kpi .value"), contract
        ? `${money(contract.ld_year_to_date, contract.currency)} · ` +
          `${money(contract.projected_ld, contract.currency)}` : "–");
    }
    heat.update(tree, snap?.units ?? []);
    if (snap) charts.live(snap.ts_ms, snap.windows.last_hour ?? null);
  });

  const drawLists = () => {
    const now = app.clock.now();
    drops.replaceChildren(episodeTable(dropsToShow(detail?.episodes ?? [], history), now));
    tickets.replaceChildren(ticketTable((detail?.tickets ?? []).slice(0, 50), now));
  };

  let firstTree = true;
  poll(d, () => app.api.get<AssetNode>(`/sites/${encodeURIComponent(siteId)}/assets`), (t) => {
    tree = t;
    draw.request();
    if (firstTree) {
      firstTree = false;
      charts.refresh();
    }
  }, 5_000);
  poll(d, () => app.api.get<AssetDetail>(`/assets/${encodeURIComponent(siteId)}`), (x) => {
    detail = x;
    drawLists();
  }, 10_000);
  poll(d, () => {
    const now = app.clock.now();
    return app.api.get<Page<Episode>>(`/assets/${encodeURIComponent(siteId)}/episodes`,
      { start: Math.floor(now - 7 * 86_400_000), end: Math.ceil(now + 1), limit: 200 });
  }, (page) => {
    history = page.items;
    drawLists();
  }, 60_000);
  d.add(app.fleet.changed.on((id) => { if (id === null || id === siteId) draw.request(); }));
  d.add(app.tick.on(() => draw.request()));
  d.add(() => draw.cancel());
  draw.request();
  return { el, destroy: () => d.dispose() };
}
