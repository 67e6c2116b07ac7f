// #/asset/<id> — a battery unit, inverter or DC block (a site id shows the site view): its
// live values and status, its children by status, availability trend and status timeline,
// active alarms, and its availability drops with the tickets linked to them.
import { Disposer, poll, type App, type View } from "../app";
import { alarmList, episodeTable, section, stateChip, ticketTable, updateStateChip,
         valuesList } from "../components";
import { attr, frameThrottle, h, reconcile, text } from "../dom";
import { ago, pct, words } from "../format";
import { historianHref } from "../historian";
import { assetHref, siteHref } from "../router";
import { dropsToShow, stateOf } from "../status";
import type { AssetDetail, AssetLive, AssetNode, Episode, LiveStatus, Page } from "../types";
import { historyPanel, type Lane } from "./history-panel";
import { siteView } from "./site";

const KIND_NAMES: Record<string, string> = { site: "site", unit: "battery unit",
                                             inverter: "inverter", block: "DC block" };

function find(node: AssetNode | null, id: string): AssetNode | null {
  if (!node) return null;
  if (node.id === id) return node;
  for (const c of node.children) {
    const hit = find(c, id);
    if (hit) return hit;
  }
  return null;
}

function siteOf(app: App, assetId: string): string | null {
  // Asset ids start with their site's ("elbe-u01-i1-b3"); the fleet says which sites exist.
  let best: string | null = null;
  for (const { site } of app.fleet.all()) {
    if ((assetId === site.id || assetId.startsWith(`${site.id}-`)) &&
        (!best || site.id.length > best.length)) best = site.id;
  }
  return best;
}

export function assetView(app: App, assetId: string): View {
  if (app.fleet.get(assetId)) return siteView(app, assetId);
  const d = new Disposer();
  let detail: AssetDetail | null = null;
  let tree: AssetNode | null = null;
  let live: AssetLive | null = null;
  let history: Episode[] = [];
  let missing = false;

  const crumbs = h("nav", { class: "crumbs", "aria-label": "breadcrumb" },
    h("a", { href: "#/" }, "Fleet"));
  const header = h("header", { class: "view-head" }, crumbs,
    h("div", { class: "title-row" }, h("h1", { id: "view-title" }, assetId), stateChip(null),
      h("span", { class: "kind" }), h("span", { class: "freshness" }),
      h("a", { class: "to-historian", href: historianHref({ assets: [assetId], tags: [] }) },
        "history in the explorer →")),
    h("div", { class: "meta" }));
  const windows = h("section", { class: "kpis asset-kpis" },
    h("div", { class: "kpi", "data-window": "last_hour" }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, "last hour")),
    h("div", { class: "kpi", "data-window": "today" }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, "today")));
  const values = h("div", {});
  const children = h("div", { class: "children" });
  const alarms = alarmList(app, (a) => a.asset_id === assetId ||
    a.asset_id.startsWith(`${assetId}-`), { empty: "No active alarms on this asset." });
  d.add(alarms.destroy);
  const drops = h("div", {});
  const tickets = h("div", {});
  const lanes = (): Lane[] => {
    const node = find(tree, assetId);
    if (!node) return [];
    const own: Lane = { id: node.id, label: node.id, weight: 1 };
    return [own, ...node.children.map((c) => ({ id: c.id, label: c.id, weight: 0 }))];
  };
  const charts = historyPanel(app.api, d, () => app.clock.now(), lanes, () => null);
  const notFound = h("p", { class: "empty", hidden: true },
    `No asset ${assetId} — it does not exist, or it is not yours to see.`);

  const el = h("div", { class: "view asset", "data-asset": assetId }, notFound, header,
    h("div", { class: "grid3" }, section("Live values", windows, values),
      section("Below it", children), section("Active alarms", alarms.el)),
    h("div", { class: "grid2" }, section("Availability drops and their tickets", drops),
      section("Tickets", tickets)),
    charts.el);

  const status = (): LiveStatus | null => {
    // A unit's colour is its effective status (children rolled up), from the site snapshot.
    const siteId = detail?.site_id ?? siteOf(app, assetId);
    const unit = siteId ? app.fleet.get(siteId)?.snapshot?.units.find((u) => u.id === assetId)
      : undefined;
    const own = live?.status ?? detail?.status ?? null;
    if (unit) return { ...(own ?? { last_hour_pct: null, today_pct: null }), state: unit.state,
                       cause: unit.cause, derate_fraction: unit.derate_fraction };
    return own;
  };

  const drawCrumbs = () => {
    if (!detail) return;
    const trail: [string, string][] = [];
    const site = app.fleet.get(detail.site_id)?.site;
    trail.push([siteHref(detail.site_id), site?.name ?? detail.site_id]);
    if (detail.unit_id && detail.unit_id !== assetId) trail.push([assetHref(detail.unit_id), detail.unit_id]);
    if (detail.parent_id && detail.parent_id !== detail.unit_id &&
        detail.parent_id !== detail.site_id) trail.push([assetHref(detail.parent_id), detail.parent_id]);
    crumbs.replaceChildren(h("a", { href: "#/" }, "Fleet"), ...trail.flatMap(([href, label]) =>
      [" › ", h("a", { href }, label)]), " › ", h("span", {}, assetId));
  };

  const draw = frameThrottle(() => {
    notFound.hidden = !missing;
    header.hidden = missing;
    const s = status();
    const state = stateOf(s?.state ?? null);
    attr(el, "data-state", state);
    updateStateChip(header.querySelector(".chip.state"), state, s?.cause, s?.derate_fraction);
    const ts = live?.ts_ms ?? detail?.ts_ms ?? null;
    const f = header.querySelector(".freshness");
    text(f, ts ? `values ${ago(app.clock.now() - ts)}` : "no values yet");
    text(windows.querySelector('[data-window="last_hour"] .value'), pct(s?.last_hour_pct));
    text(windows.querySelector('[data-window="today"] .value'), pct(s?.today_pct));
    const node = find(tree, assetId);
    reconcile(children, node?.children ?? [], (n) => n.id,
      (c) => h("a", { class: "asset-cell child", href: assetHref(c.id),
                      "data-asset": c.id, "data-kind": c.kind },
        h("span", { class: "id" }, c.id), h("span", { class: "state-label" }),
        h("div", { class: "grandchildren" })),
      (cel, c) => {
        const cs = stateOf(c.state);
        attr(cel, "data-state", cs);
        text(cel.querySelector(".state-label"), `${cs}${c.cause ? ` · ${words(c.cause)}` : ""}` +
          ` · today ${pct(c.today_pct)}`);
        const g = cel.querySelector(".grandchildren");
        if (g) {
          reconcile(g, c.children, (n) => n.id,
            (gc) => h("span", { class: "mini-cell", "data-asset": gc.id }),
            (gel, gc) => {
              attr(gel, "data-state", stateOf(gc.state));
              attr(gel, "title", `${gc.id}: ${gc.state ?? "unknown"}`);
            });
        }
      });
    if (node && node.children.length === 0) {
      children.replaceChildren(h("p", { class: "empty" }, "A DC block: nothing below it."));
    }
    if (s) charts.live(ts ?? app.clock.now(), s.last_hour_pct);
  });

  const drawValues = () => {
    values.replaceChildren(valuesList(live?.values ?? detail?.values ?? {}));
  };

  const drawLists = () => {
    const now = app.clock.now();
    drops.replaceChildren(episodeTable(dropsToShow(detail?.episodes ?? [], history), now));
    tickets.replaceChildren(ticketTable((detail?.tickets ?? []).slice(0, 50), now));
  };

  const path = `/assets/${encodeURIComponent(assetId)}`;
  let treeTimer = false;
  poll(d, () => app.api.get<AssetDetail>(path), (x) => {
    const first = detail === null;
    detail = x;
    missing = false;
    text(header.querySelector(".kind"), KIND_NAMES[x.kind] ?? x.kind);
    text(header.querySelector(".meta"), [
      x.rated_power_kw != null ? `${x.rated_power_kw} kW` : null,
      x.rated_energy_kwh != null ? `${x.rated_energy_kwh} kWh` : null,
      x.unit_id && x.unit_id !== x.id ? `in ${x.unit_id}` : null].filter(Boolean).join(" · "));
    drawCrumbs();
    if (!live) drawValues();
    drawLists();
    draw.request();
    if (first && !treeTimer) {
      treeTimer = true;
      let firstTree = true;
      poll(d, () => app.api.get<AssetNode>(`/sites/${encodeURIComponent(x.site_id)}/assets`),
        (t) => {
          tree = t;
          draw.request();
          if (firstTree) {
            firstTree = false;
            charts.refresh();
          }
        }, 5_000);
    }
  }, 10_000, (err) => {
    if ((err as { status?: number }).status === 404) {
      missing = true;
      draw.request();
    }
  });
  poll(d, () => {
    const now = app.clock.now();
    return app.api.get<Page<Episode>>(`${path}/episodes`,
      { start: Math.floor(now - 7 * 86_400_000), end: Math.ceil(now + 1), limit: 200 });
  }, (page) => {
    history = page.items;
    drawLists();
  }, 60_000);
  d.add(app.live.subscribe(`asset:${assetId}`, {
    snapshot: (data) => {
      live = (data as AssetLive | null) ?? live;
      drawValues();
      draw.request();
    },
    update: (data) => {
      live = data as AssetLive;
      drawValues();
      draw.request();
    },
  }));
  d.add(app.fleet.changed.on(() => draw.request()));
  d.add(app.tick.on(() => draw.request()));
  d.add(() => draw.cancel());
  draw.request();
  return { el, destroy: () => d.dispose() };
}
