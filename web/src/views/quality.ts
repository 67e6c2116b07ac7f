// #/quality — which device sends bad records, and why, so the operator can act on the
// source: per site of the caller, the records the flows refused grouped by device (its
// reasons under it: how many, last seen, what was wrong with the last one), the devices with
// the most first, and the site's active data-quality alerts; the records that named no site
// for a caller who sees the whole fleet. Over REST (GET /data-quality) every few seconds.
import { ApiError } from "../api";
import { Disposer, poll, type App, type View } from "../app";
import { attr, h, reconcile, text } from "../dom";
import { ago, clock, dateTime, words } from "../format";
import { byDevice, count, deviceLabel, qualityTotals, sitesToShow, type DeviceQuality,
         type DeviceReason } from "../quality";
import { assetHref, siteHref } from "../router";
import type { Alert, DataQuality, QualityTotals, SiteQuality } from "../types";

export const REFRESH_MS = 5_000;
const UNROUTED = "(unrouted)"; // the panel key of the records of no site (no site id has "(")

interface Panel {
  key: string;
  site: SiteQuality | null; // null: the records of no site
  totals: QualityTotals;
}

function kpi(cls: string, label: string): HTMLElement {
  return h("div", { class: `kpi ${cls}` }, h("span", { class: "value" }, "–"),
    h("span", { class: "label" }, label));
}

/** Ages ("12 s ago") kept current between refreshes: every element with data-last-ms. */
function updateAges(root: HTMLElement, nowMs: number): void {
  for (const el of root.querySelectorAll<HTMLElement>("[data-last-ms]")) {
    text(el, ago(nowMs - Number(el.dataset.lastMs)));
  }
}

function alertRow(a: Alert, nowMs: number): HTMLElement {
  return h("div", { class: "warning-row", role: "listitem", "data-kind": a.kind,
                    "data-severity": a.severity, "data-alert": a.alert_id },
    h("span", { class: "sev", "data-severity": a.severity }, words(a.kind)),
    h("span", { class: "scope" }, a.scope_id),
    h("span", { class: "raised", title: dateTime(a.raised_ms), "data-last-ms": a.raised_ms },
      ago(nowMs - a.raised_ms)),
    h("span", { class: "msg" }, a.message));
}

function reasonLine(): HTMLElement {
  return h("div", { class: "dl-reason", role: "row" },
    h("span", { class: "reason", role: "cell" }), h("span", { class: "refused", role: "cell" }),
    h("span", { class: "last", role: "cell" }), h("span", { class: "detail", role: "cell" }));
}

function updateReason(line: HTMLElement, r: DeviceReason, nowMs: number): void {
  attr(line, "data-reason", r.reason);
  text(line.querySelector(".reason"), words(r.reason));
  text(line.querySelector(".refused"), count(r.count));
  const last = line.querySelector(".last");
  attr(last, "data-last-ms", String(r.last_ms));
  attr(last, "title", `first ${dateTime(r.first_ms)}, last ${dateTime(r.last_ms)}`);
  text(last, ago(nowMs - r.last_ms));
  const detail = line.querySelector(".detail");
  text(detail, r.last_detail);
  attr(detail, "title", r.last_detail);
}

function deviceBlock(dev: DeviceQuality): HTMLElement {
  const label = deviceLabel(dev.device);
  return h("div", { class: "dl-device", role: "rowgroup", "data-device": dev.device },
    h("div", { class: "dl-device-head", role: "row" },
      dev.asset_id ? h("a", { class: "device", href: assetHref(dev.asset_id), role: "cell" },
        label) : h("span", { class: "device", role: "cell" }, label),
      h("span", { class: "refused", role: "cell" }), h("span", { class: "last", role: "cell" })),
    h("div", { class: "dl-reasons" }));
}

function updateDevice(block: HTMLElement, dev: DeviceQuality, nowMs: number): void {
  text(block.querySelector(".dl-device-head .refused"), `${count(dev.count)} refused`);
  const last = block.querySelector(".dl-device-head .last");
  attr(last, "data-last-ms", String(dev.last_ms));
  text(last, ago(nowMs - dev.last_ms));
  const reasons = block.querySelector(".dl-reasons");
  if (reasons) {
    reconcile(reasons, dev.reasons, (r) => r.reason, reasonLine,
              (line, r) => updateReason(line, r, nowMs));
  }
}

function createPanel(p: Panel): HTMLElement {
  const title = p.site
    ? h("h2", {}, h("a", { href: siteHref(p.site.site_id) }, p.site.name ?? p.site.site_id))
    : h("h2", {}, "No site");
  const meta = p.site ? `${p.site.customer} · ${p.site.region}`
    : "Records that named no site of the fleet: no battery unit of it on their key, no asset " +
      "of it in them.";
  return h("section", { class: "panel quality-site", "data-site": p.key },
    h("header", {}, title, h("span", { class: "meta" }, meta),
      h("span", { class: "summary" })),
    h("div", { class: "warnings", role: "list", "aria-label": "data-quality alerts" }),
    h("div", { class: "dead-letters", role: "table", "aria-label": "refused records" },
      h("div", { class: "dl-columns", role: "row" }, ...["device · reason", "refused",
        "last seen", "last detail"].map((c) => h("span", { role: "columnheader" }, c))),
      h("div", { class: "dl-devices" })),
    h("p", { class: "more muted" }));
}

function updatePanel(el: HTMLElement, p: Panel, nowMs: number): void {
  const { totals } = p;
  const devices = byDevice(totals.tallies);
  const clean = totals.records === 0 && totals.alerts.length === 0;
  attr(el, "data-clean", clean ? "true" : "false");
  text(el.querySelector(".summary"), totals.records === 0 ? "No refused records."
    : `${count(totals.records)} refused record${totals.records === 1 ? "" : "s"} from ` +
      `${devices.length} device${devices.length === 1 ? "" : "s"}`);
  const warnings = el.querySelector<HTMLElement>(".warnings");
  if (warnings) warnings.replaceChildren(...totals.alerts.map((a) => alertRow(a, nowMs)));
  const table = el.querySelector<HTMLElement>(".dead-letters");
  if (table) table.hidden = devices.length === 0;
  const list = el.querySelector(".dl-devices");
  if (list) reconcile(list, devices, (dv) => dv.device, deviceBlock,
                      (block, dv) => updateDevice(block, dv, nowMs));
  const left = totals.pairs - totals.tallies.length;
  text(el.querySelector(".more"), left > 0
    ? `${count(left)} more (device, reason) pair${left === 1 ? "" : "s"} with fewer records ` +
      "not listed." : "");
}

export function qualityView(app: App): View {
  const d = new Disposer();
  const kpis = h("section", { class: "kpis quality-kpis" },
    kpi("records", "refused records"), kpi("devices", "devices sending them"),
    kpi("alerts", "data-quality alerts"));
  const status = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const panels = h("div", { class: "quality-sites" });
  const empty = h("p", { class: "empty", hidden: true }, "No sites of yours to show.");
  const el = h("div", { class: "view quality" },
    h("header", { class: "view-head" }, h("h1", { id: "view-title" }, "Data quality"),
      h("p", { class: "meta" }, "Records the flows refused, by the device that sent them and " +
        "why — most first — and the active data-quality alerts (telemetry gaps, frozen " +
        "values, clock skew, DLQ rate, data instability). Counted since the flows started."),
      status),
    kpis, empty, panels);

  const draw = (q: DataQuality) => {
    const now = app.clock.now();
    const list: Panel[] = sitesToShow(q.sites).map((s) => ({ key: s.site_id, site: s,
                                                             totals: s }));
    if (q.unrouted && (q.unrouted.records > 0 || q.unrouted.alerts.length > 0)) {
      list.unshift({ key: UNROUTED, site: null, totals: q.unrouted });
    }
    const all = qualityTotals(list.map((p) => p.totals));
    text(kpis.querySelector(".records .value"), count(all.records));
    text(kpis.querySelector(".devices .value"), count(all.devices));
    text(kpis.querySelector(".alerts .value"), count(all.alerts));
    attr(kpis.querySelector(".records"), "data-some", all.records > 0 ? "true" : null);
    attr(kpis.querySelector(".alerts"), "data-some", all.alerts > 0 ? "true" : null);
    empty.hidden = list.length > 0;
    reconcile(panels, list, (p) => p.key, createPanel, (panel, p) => updatePanel(panel, p, now));
    text(status, `Updated ${clock(now)}; every ${REFRESH_MS / 1000} s.`);
    attr(status, "data-error", null);
  };
  poll(d, () => app.api.get<DataQuality>("/data-quality"), draw, REFRESH_MS, (err) => {
    text(status, `Not updated: ${err instanceof ApiError ? err.detail : String(err)} — ` +
      "retrying.");
    attr(status, "data-error", "true");
  });
  d.add(app.tick.on((now) => updateAges(panels, now)));
  return { el, destroy: () => d.dispose() };
}
