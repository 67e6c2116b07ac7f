// #/analytics/faults — faults and trips: every unavailability episode of the caller's fleet
// on one timeline (a lane per asset), filterable by site, vendor, cause and asset level; the
// reliability table — failures, downtime, MTTR, MTBF — by cause and by vendor (or model,
// level, site); each episode with its tickets. Over REST (GET /analytics/faults), again on
// every change and every minute.
import { Disposer, type App, type View } from "../app";
import type { TimelineChart } from "../charts";
import { stateChip, ticketLink, ticketStatus } from "../components";
import { attr, h, reconcile, text } from "../dom";
import { clock, dateTime, duration, num, words } from "../format";
import { CAUSES, GROUPS, LEVELS, NO_FILTERS, episodeBars, faultsQuery, groupLabel, hours,
         keysOf, type FaultFilters, type GroupBy } from "../faults";
import type { FaultEpisode, FaultsAnswer, ReliabilityRow } from "../generated/api";
import { DAY_MS, lastRange, type Range } from "../historian";
import { assetHref, siteHref } from "../router";
import { stateOf } from "../status";
import { analyticsHeader, answers } from "./analytics-header";

export const FAULTS_REFRESH_MS = 60_000;
const SPANS: readonly [string, number][] = [["7 d", 7 * DAY_MS], ["30 d", 30 * DAY_MS],
  ["90 d", 90 * DAY_MS], ["1 y", 365 * DAY_MS]];
const LANE_PX = 22;

function select(cls: string, label: string, all: string, options: readonly string[],
                onchange: (value: string) => void): HTMLSelectElement {
  const el = h("select", { class: `filter ${cls}`, "aria-label": label },
    h("option", { value: "" }, all), ...options.map((o) => h("option", { value: o }, words(o))));
  el.addEventListener("change", () => onchange(el.value));
  return el;
}

function tableOf(caption: string): { el: HTMLTableElement; body: HTMLElement;
                                      total: HTMLElement; head: HTMLElement } {
  const head = h("th", {}, caption);
  const body = h("tbody", {});
  const total = h("tfoot", {});
  const el = h("table", { class: "reliability" },
    h("thead", {}, h("tr", {}, head, h("th", {}, "Assets"), h("th", {}, "Failures"),
      h("th", {}, "Downtime"), h("th", { title: "mean time to repair" }, "MTTR"),
      h("th", { title: "mean time between failures" }, "MTBF"), h("th", {}, "Repairs"),
      h("th", {}, "Open"), h("th", {}, "Derated"), h("th", { title: "no data" }, "Comms"))),
    body, total);
  return { el, body, total, head };
}

function fillRow(tr: HTMLElement, r: ReliabilityRow): void {
  attr(tr, "data-key", r.key.join("/"));
  const cells = [groupLabel(r.key), String(r.assets), String(r.failures),
    hours(r.downtime_hours), hours(r.mttr_hours), hours(r.mtbf_hours), String(r.repairs),
    String(r.open), r.derated ? `${r.derated} · ${hours(r.derated_hours)}` : "0",
    hours(r.comms_hours)];
  if (tr.children.length !== cells.length) {
    tr.replaceChildren(...cells.map((_, i) => h("td", { class: i === 0 ? "key" : "n" })));
  }
  cells.forEach((c, i) => text(tr.children[i], c));
}

function fillTable(t: { body: HTMLElement; total: HTMLElement }, rows: ReliabilityRow[],
                   total: ReliabilityRow): void {
  reconcile(t.body, rows, (r) => r.key.join("/"), () => h("tr", {}), fillRow);
  const tr = h("tr", { class: "total" });
  fillRow(tr, total);
  t.total.replaceChildren(tr);
}

function episodeRow(): HTMLElement {
  return h("tr", { class: "episode" }, h("td", { class: "state" }), h("td", { class: "asset" }),
    h("td", { class: "site" }), h("td", { class: "vendor" }), h("td", { class: "start" }),
    h("td", { class: "duration" }), h("td", { class: "lost" }), h("td", { class: "tickets" }));
}

function fillEpisode(tr: HTMLElement, e: FaultEpisode, nowMs: number): void {
  attr(tr, "data-episode", e.episode_id);
  attr(tr, "data-cause", e.cause ?? "unknown");
  const c = tr.children;
  c[0]?.replaceChildren(stateChip(stateOf(e.state), e.cause));
  c[1]?.replaceChildren(h("a", { href: assetHref(e.asset_id) }, e.asset_id),
    h("span", { class: "muted" }, ` ${e.level}`));
  c[2]?.replaceChildren(h("a", { href: siteHref(e.site_id) }, e.site_id));
  text(c[3], [e.vendor ?? "unknown vendor", e.model].filter(Boolean).join(" · "));
  text(c[4], dateTime(e.start_ms));
  text(c[5], e.end_ms === null ? `open, ${duration(nowMs - e.start_ms)}`
    : duration(e.end_ms - e.start_ms));
  text(c[6], `${num(e.lost_hours, 1)} h · ${num(e.lost_mwh, 1)} MWh`);
  c[7]?.replaceChildren(...(e.tickets.length ? e.tickets.map((t) =>
    h("span", { class: "linked-ticket" }, ticketLink(t), ticketStatus(t.status)))
    : [h("span", { class: "muted" }, "no ticket")]));
}

export function faultsView(app: App): View {
  const d = new Disposer();
  const filters: FaultFilters = { ...NO_FILTERS };
  let span = 30 * DAY_MS;
  let range: Range = lastRange(span, app.clock.now());
  let groupBy: GroupBy = "vendor";
  let timeline: TimelineChart | null = null;
  let last: FaultsAnswer | null = null;
  const vendors = new Set<string>();

  const head = analyticsHeader("faults", "Faults and trips", {
    who: "Service managers and reliability engineers.",
    decision: "Where reliability work pays: which cause, vendor, model, asset level or site " +
      "fails most often, stays down longest and takes longest to fix — and what each " +
      "outage's tickets say.",
    sources: "The unavailability episodes of the history store (the flows write them as " +
      "statuses change; tickets as linked to each) over your sites' battery units, inverters " +
      "and DC blocks; failures, MTTR and MTBF worked out by the server. An open episode " +
      "counts up to the flows' last write.",
  });

  const siteFilter = select("site", "site", "every site",
    app.fleet.all().map(({ site }) => site.id), (v) => { filters.site = v; load(); });
  const vendorFilter = select("vendor", "vendor", "every vendor", [],
                              (v) => { filters.vendor = v; load(); });
  const causeFilter = select("cause", "cause", "every cause", CAUSES,
                             (v) => { filters.cause = v; load(); });
  const levelFilter = select("level", "asset level", "every level", LEVELS,
                             (v) => { filters.level = v; load(); });
  const spanButtons = SPANS.map(([label, ms]) => h("button", {
    type: "button", class: "secondary span", "data-span": label, onclick: () => {
      span = ms;
      load();
    } }, `last ${label}`));
  const stateLine = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const ask = answers(d, stateLine);

  const timelineEl = h("div", { class: "chart timeline faults-timeline",
                                "aria-label": "episodes timeline" });
  const timelineNote = h("p", { class: "chart-note" });
  const byCause = tableOf("Cause");
  const byGroup = tableOf("Vendor");
  const groupSelect = select("group-by", "group by", "vendor", GROUPS.filter((g) => g !==
    "vendor"), (v) => {
    groupBy = (v || "vendor") as GroupBy;
    text(byGroup.head, words(groupBy));
    load();
  });
  const episodes = h("tbody", {});
  const episodeTable = h("table", { class: "fault-episodes" },
    h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Asset"), h("th", {}, "Site"),
      h("th", {}, "Vendor · model"), h("th", {}, "Start"), h("th", {}, "Duration"),
      h("th", {}, "Lost"), h("th", {}, "Tickets"))), episodes);
  const episodeCount = h("p", { class: "meta episode-count" });

  const el = h("div", { class: "view analytics faults" }, head.el,
    h("section", { class: "panel filters table-filters" }, siteFilter, vendorFilter,
      causeFilter, levelFilter, ...spanButtons, stateLine),
    h("section", { class: "panel" }, h("h2", {}, "Episodes"), timelineEl, timelineNote),
    h("section", { class: "panel reliability-tables" },
      h("h2", {}, "Reliability"),
      h("p", { class: "meta" }, "A failure is an unavailable episode that began in the range; " +
        "MTTR = the hours of the outages that ended in it ÷ their number; MTBF = operating " +
        "hours ÷ failures (each asset from its commissioning, less its down and no-data " +
        "time). Derated episodes are counted, not failures."),
      h("div", { class: "reliability-cause" }, byCause.el),
      h("div", { class: "reliability-group" }, h("label", {}, "by ", groupSelect), byGroup.el)),
    h("section", { class: "panel" }, h("h2", {}, "Every episode"), episodeCount, episodeTable));

  const draw = () => {
    for (const b of spanButtons) {
      attr(b, "aria-pressed", SPANS.find(([l]) => l === b.dataset.span)?.[1] === span
        ? "true" : "false");
    }
    if (!last) return;
    const now = app.clock.now();
    const { lanes, bars } = episodeBars(last.episodes, range, now);
    timelineEl.style.height = `${Math.max(120, lanes.length * LANE_PX + 40)}px`;
    timeline?.update(lanes, bars, [range.from, range.to]);
    text(timelineNote, lanes.length ? "" : "No episodes in this range.");
    reconcile(episodes, last.episodes, (e) => e.episode_id, episodeRow,
              (tr, e) => fillEpisode(tr, e, now));
    text(episodeCount, last.episodes_total > last.episodes.length
      ? `the newest ${last.episodes.length} of ${last.episodes_total} episodes`
      : `${last.episodes_total} episode${last.episodes_total === 1 ? "" : "s"}`);
    attr(el, "data-episodes", String(last.episodes_total));
  };

  const drawVendors = () => {
    const keep = vendorFilter.value;
    const have = new Set([...vendorFilter.options].map((o) => o.value));
    for (const v of [...vendors].sort()) {
      if (!have.has(v)) vendorFilter.append(h("option", { value: v }, v));
    }
    vendorFilter.value = keep;
  };

  const load = () => {
    range = lastRange(span, app.clock.now());
    const asked = range;
    const request = Promise.all([
      app.api.get<FaultsAnswer>("/analytics/faults", faultsQuery(filters, asked, "cause")),
      app.api.get<FaultsAnswer>("/analytics/faults", faultsQuery(filters, asked, groupBy, 1)),
    ]);
    ask(request, `${dateTime(asked.from)} – ${dateTime(asked.to)}`, ([main, grouped]) => {
      last = main;
      fillTable(byCause, main.groups, main.total);
      fillTable(byGroup, grouped.groups, grouped.total);
      if (groupBy === "vendor") for (const k of keysOf(grouped.groups)) vendors.add(k);
      for (const e of main.episodes) vendors.add(e.vendor ?? "unknown");
      drawVendors();
      draw();
      text(head.freshness, `as of ${clock(app.clock.now())}, again every ` +
        `${FAULTS_REFRESH_MS / 1000} s; the episodes are as fresh as the flows' last write`);
    });
  };


  void import("../charts").then((charts) => {
    if (d.disposed) return;
    timeline = charts.timelineChart(timelineEl);
    d.add(() => {
      timeline?.dispose();
      timeline = null;
    });
    draw();
  });
  d.interval(load, FAULTS_REFRESH_MS);
  load();
  return { el, destroy: () => d.dispose() };
}
