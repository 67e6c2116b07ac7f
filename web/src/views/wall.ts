// #/wall — the NOC wall display: dark, large, no interaction. The fleet's KPIs and every
// site's colour stay on screen; one site at a time is shown in full, rotating every
// `every` seconds (#/wall?every=20; `sites=a,b` to rotate through some only).
import { Disposer, P, type App, type View } from "../app";
import { alarmList, updateStateChip, updateWarningBadge, stateChip } from "../components";
import { attr, frameThrottle, h, reconcile, text } from "../dom";
import { CONTRACT_NOTES, siteContract } from "../fleet";
import { money, pct } from "../format";
import { againstGuarantee, siteLevel } from "../status";
import type { AssetNode } from "../types";
import { kpiStrip, updateFreshness } from "./overview";
import { repairTop } from "./repair";
import { heatMap, SITE_WINDOWS } from "./site";

export function wallView(app: App, params: Record<string, string>): View {
  const d = new Disposer();
  const everyS = Math.max(3, Number(params.every) || 15);
  const only = params.sites ? new Set(params.sites.split(",").filter(Boolean)) : null;
  const rotation = () => app.fleet.all().filter((e) => !only || only.has(e.site.id));
  let index = 0;
  let shown: string | null = null;
  let tree: AssetNode | null = null;
  let treeFor: string | null = null;

  const kpis = kpiStrip(app);
  const strip = h("div", { class: "wall-sites", role: "list", "aria-label": "all sites" });
  const name = h("h1", { class: "wall-name", id: "view-title" });
  const heat = heatMap();
  const windows = h("div", { class: "wall-windows" }, ...SITE_WINDOWS.map(([k, label]) =>
    h("div", { class: "kpi", "data-window": k }, h("span", { class: "value" }, "–"),
      h("span", { class: "label" }, label))));
  const contract = h("div", { class: "wall-contract" });
  const progress = h("div", { class: "wall-progress" }, h("span", { class: "bar" }));
  let alarms = alarmList(app, () => false, { compact: true, limit: 8 });
  const alarmsBox = h("div", { class: "wall-alarms" }, alarms.el);
  d.add(() => alarms.destroy());
  const current = h("section", { class: "wall-site" },
    h("div", { class: "wall-title" }, name, stateChip(null), h("span", { class: "chip warning" }),
      h("span", { class: "freshness" })),
    windows, contract,
    h("div", { class: "wall-main" }, heat.el,
      h("aside", {}, h("h2", {}, "Active alarms"), alarmsBox, repairTop(app, d))),
    progress);
  const el = h("div", { class: "view wall" }, kpis.el, strip, current);

  const loadTree = (siteId: string) => {
    treeFor = siteId;
    app.api.get<AssetNode>(`/sites/${encodeURIComponent(siteId)}/assets`).then((t) => {
      if (!d.disposed && treeFor === siteId) {
        tree = t;
        draw.request();
      }
    }).catch(() => { /* the next poll tries again */ });
  };

  const show = (siteId: string) => {
    shown = siteId;
    tree = null;
    loadTree(siteId);
    alarms.destroy();
    alarms = alarmList(app, (a) => a.site_id === siteId || a.severity === "critical",
                       { compact: true, limit: 8, empty: "No active alarms at this site." });
    alarmsBox.replaceChildren(alarms.el);
    // Restart the progress bar's animation for this site's turn.
    const bar = h("span", { class: "bar" });
    bar.style.animationDuration = `${everyS}s`;
    progress.replaceChildren(bar);
  };

  const draw = frameThrottle(() => {
    const sites = rotation();
    kpis.update();
    reconcile(strip, sites, (e) => e.site.id,
      (e) => h("div", { class: "wall-chip", "data-site": e.site.id, role: "listitem" },
        h("span", { class: "n", title: e.site.name ?? e.site.id }, e.site.name ?? e.site.id),
        h("span", { class: "chip warning" }), h("span", { class: "v" })),
      (chip, e) => {
        const snap = e.snapshot;
        const level = snap ? siteLevel(snap.units_by_state) : "unknown";
        // The whole name and the state in words on hover (the chip shortens the name).
        attr(chip, "title", `${e.site.name ?? e.site.id}: ${level}, today ` +
          `${pct(snap?.windows.today ?? null)}`);
        attr(chip, "data-level", level);
        attr(chip, "data-warning", snap?.contract?.warning_level ?? "none");
        attr(chip, "data-current", e.site.id === shown ? "yes" : null);
        text(chip.querySelector(".v"), pct(snap?.windows.today ?? null));
        updateWarningBadge(chip.querySelector(".chip.warning"), siteContract(snap));
        updateFreshness(chip, snap?.ts_ms ?? null, app);
      });
    if (sites.length === 0) return;
    const entry = sites[index % sites.length]!;
    if (entry.site.id !== shown) show(entry.site.id);
    const snap = entry.snapshot;
    const sc = siteContract(snap);
    const k = sc.kind === "contract" ? sc.kpis : null;
    const level = snap ? siteLevel(snap.units_by_state) : "unknown";
    attr(current, "data-site", entry.site.id);
    attr(current, "data-level", level);
    text(name, entry.site.name ?? entry.site.id);
    attr(name, "title", entry.site.name ?? entry.site.id);
    updateStateChip(current.querySelector(".chip.state"), level);
    updateWarningBadge(current.querySelector(".chip.warning"), sc);
    updateFreshness(current, snap?.ts_ms ?? null, app);
    for (const [key] of SITE_WINDOWS) {
      const kpi = windows.querySelector(`[data-window="${key}"]`);
      const v = snap?.windows[key] ?? null;
      text(kpi?.querySelector(".value"), pct(v));
      attr(kpi, "data-vs", againstGuarantee(v, k?.guaranteed_pct) ?? "none");
    }
    text(contract, k ? `${k.period}: ${pct(k.actual_pct)} against ${pct(k.guaranteed_pct)} ` +
      `guaranteed · projected ${pct(k.projected_pct)}` + (app.can(P.contracts)
      ? ` · LD year to date ${money(k.ld_year_to_date, k.currency)}, projected ` +
        `${money(k.projected_ld, k.currency)}` : "") : sc.kind === "contract" ? ""
      : CONTRACT_NOTES[sc.kind]);
    heat.update(tree, snap?.units ?? []);
  });

  d.interval(() => {
    index += 1;
    draw.request();
  }, everyS * 1000);
  d.interval(() => { if (shown) loadTree(shown); }, 5_000);
  d.add(app.fleet.changed.on(() => draw.request()));
  d.add(app.alarms.changed.on(() => draw.request()));
  d.add(app.tick.on(() => draw.request()));
  d.add(() => draw.cancel());
  draw.request();
  return { el, destroy: () => d.dispose() };
}
