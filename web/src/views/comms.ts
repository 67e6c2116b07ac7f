// #/analytics/comms — controller health and comms: per gateway of the caller's sites (or of
// one site), worst first, and per device under it the state now with since when and why,
// poll latency p50 / p95 / max, drop and retry rates, hours per state over a window of a day,
// 7 or 31 days, and its state changes as a small timeline. The header (who it is for, the
// decision, the sources and how fresh each is) is the answer's own `about`. Over REST (GET
// /analytics/comms), again on every change and every minute (a stats window a minute per
// device). The site and window are in the address (#/analytics/comms?site=nordvik&window=7 d).
import { Disposer, type App, type View } from "../app";
import { WINDOWS, commsQuery, commsRange, devicesText, hoursText, latencyText, millis,
         pageFromParams, pageParams, pollsText, rate, sourcesFreshness, stateSpans,
         type CommsPage } from "../comms";
import { attr, h, reconcile, text } from "../dom";
import { clock, dateTime, duration } from "../format";
import type { CommsAnswer, CommsDevice, CommsGateway } from "../generated/api";
import type { Range } from "../historian";
import { assetHref, hashOf, siteHref } from "../router";
import { analyticsHeader, answers, siteFilter } from "./analytics-header";

export const COMMS_REFRESH_MS = 60_000;

function badge(state: string | null): HTMLElement {
  return h("span", { class: "chip comms-state", "data-state": state ?? "unknown" },
           state ?? "unknown");
}

function setBadge(el: Element | null | undefined, state: string | null): void {
  if (!el) return;
  attr(el, "data-state", state ?? "unknown");
  text(el, state ?? "unknown");
}

function deviceRow(): HTMLElement {
  return h("tr", { class: "comms-device" },
    h("td", { class: "state" }, badge(null)), h("td", { class: "device" }),
    h("td", { class: "since" }), h("td", { class: "reason" }),
    h("td", { class: "latency n" }), h("td", { class: "drop n" }), h("td", { class: "retry n" }),
    h("td", { class: "hours" }), h("td", { class: "changes" },
      h("div", { class: "comms-timeline", role: "img" })));
}

function fillDevice(tr: HTMLElement, d: CommsDevice, range: Range, nowMs: number): void {
  const c = tr.children;
  attr(tr, "data-device", d.device_id);
  attr(tr, "data-state", d.state ?? "unknown");
  setBadge(c[0]?.firstElementChild, d.state);
  c[1]?.replaceChildren(h("a", { href: assetHref(d.device_id) }, d.device_id),
    h("span", { class: "muted" }, ` ${d.connector}`));
  text(c[2], d.since_ms === null ? "–" : dateTime(d.since_ms));
  attr(c[2] ?? null, "title", d.since_ms === null ? null : `${duration(nowMs - d.since_ms)} ago`);
  text(c[3], d.reason ?? "–");
  text(c[4], latencyText(d.figures));
  attr(c[4] ?? null, "title", pollsText(d.figures));
  text(c[5], rate(d.figures.drop_rate));
  text(c[6], rate(d.figures.retry_rate));
  text(c[7], hoursText(d.hours));
  const strip = c[8]?.firstElementChild as HTMLElement | null | undefined;
  if (!strip) return;
  const span = range.to - range.from;
  const spans = stateSpans(d, range, nowMs);
  attr(strip, "data-changes", String(d.changes.length));
  attr(strip, "aria-label", `${d.changes.length} state change` +
    `${d.changes.length === 1 ? "" : "s"} in the window`);
  strip.replaceChildren(...spans.map((s) => {
    const el = h("span", { class: "span", "data-state": s.state,
                           title: `${s.state} ${dateTime(s.startMs)} – ${dateTime(s.endMs)}` });
    el.style.left = `${((s.startMs - range.from) / span * 100).toFixed(3)}%`;
    el.style.width = `${((s.endMs - s.startMs) / span * 100).toFixed(3)}%`;
    return el;
  }));
}

function gatewaySection(): HTMLElement {
  const body = h("tbody", {});
  return h("section", { class: "panel comms-gateway" },
    h("h2", { class: "gateway-title" }, badge(null), h("span", { class: "gateway" }),
      h("span", { class: "muted sites" })),
    h("p", { class: "meta gateway-figures" }),
    h("table", { class: "comms-devices" },
      h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Device"),
        h("th", {}, "Since"), h("th", {}, "Reason"),
        h("th", { title: "poll latency of the answered polls: p50 · p95 · max" },
          "Latency p50 · p95 · max"),
        h("th", { title: "polls dropped after their retries ÷ polls" }, "Drops"),
        h("th", { title: "retries ÷ polls" }, "Retries"), h("th", {}, "Hours per state"),
        h("th", {}, "State changes"))), body));
}

function fillGateway(el: HTMLElement, g: CommsGateway, range: Range, nowMs: number): void {
  attr(el, "data-gateway", g.gateway);
  attr(el, "data-state", g.state ?? "unknown");
  const title = el.querySelector(".gateway-title");
  setBadge(title?.firstElementChild, g.state);
  text(el.querySelector(".gateway"), ` ${g.gateway} `);
  el.querySelector(".sites")?.replaceChildren(...g.site_ids.flatMap((s, i) =>
    [...(i ? [", "] : ["at "]), h("a", { href: siteHref(s) }, s)]));
  text(el.querySelector(".gateway-figures"), `${devicesText(g.devices_by_state)}; ` +
    `${pollsText(g.figures)}; drops ${rate(g.figures.drop_rate)}, retries ` +
    `${rate(g.figures.retry_rate)}; latency p50 · p95 · max ${latencyText(g.figures)}; ` +
    `slowest poll ${millis(g.figures.latency_max_ms)}`);
  const body = el.querySelector("tbody");
  if (body) reconcile(body, g.devices, (d) => d.device_id, deviceRow,
                      (tr, d) => fillDevice(tr, d, range, nowMs));
}

export function commsView(app: App, params: Record<string, string> = {}): View {
  const d = new Disposer();
  const page: CommsPage = pageFromParams(params);
  let range: Range = commsRange(page.window, app.clock.now());
  let last: CommsAnswer | null = null;

  // Until the answer says otherwise (its `about` is the header's text).
  const head = analyticsHeader("comms", "Controllers and comms", {
    who: "Engineers and NOC operators.",
    decision: "Which controllers and links to fix first.",
    sources: "The connectors' device-health events: each device's current state in Redis, " +
      "its state changes and poll statistics in the history store.",
  });

  const sites = siteFilter(app, page.site, (site) => {
    page.site = site;
    remember();
    load();
  });
  const windowButtons = WINDOWS.map(([label]) => h("button", {
    type: "button", class: "secondary span", "data-window": label, onclick: () => {
      page.window = label;
      remember();
      load();
    } }, `last ${label}`));
  const stateLine = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const ask = answers(d, stateLine);
  const gateways = h("div", { class: "comms-gateways" });
  const summary = h("p", { class: "meta gateway-count" });

  const el = h("div", { class: "view analytics comms" }, head.el,
    h("section", { class: "panel filters table-filters" }, sites, ...windowButtons,
      stateLine),
    h("p", { class: "meta legend" }, "offline: the last polls all failed or the gateway's " +
      "connection is down; degraded: some recent polls failed, were slow or answered " +
      "impossible values; online otherwise. A gateway is as bad as its devices together. " +
      "Latency over several stats windows: the windows' own p50 and p95 weighted by their " +
      "answered polls, and the largest max."),
    summary, gateways);

  /** The address says the site and window; replaced, not pushed: the view stays. */
  const remember = () => {
    history.replaceState(null, "", `${location.pathname}${location.search}` +
      hashOf({ name: "comms", id: null, params: pageParams(page) }));
  };

  const draw = () => {
    for (const b of windowButtons) {
      attr(b, "aria-pressed", b.dataset.window === page.window ? "true" : "false");
    }
    if (!last) return;
    const now = app.clock.now();
    reconcile(gateways, last.gateways, (g) => g.gateway, gatewaySection,
              (sec, g) => fillGateway(sec, g, range, now));
    const devices = last.gateways.reduce((n, g) => n + g.devices.length, 0);
    text(summary, last.gateways.length ? `${last.gateways.length} gateway` +
      `${last.gateways.length === 1 ? "" : "s"}, ${devices} device${devices === 1 ? "" : "s"}` +
      ", worst first" : "No device has reported its health in this window.");
    attr(el, "data-gateways", String(last.gateways.length));
  };

  const load = () => {
    range = commsRange(page.window, app.clock.now());
    const asked = range;
    const request = app.api.get<CommsAnswer>("/analytics/comms", commsQuery(page, asked));
    ask(request, `${dateTime(asked.from)} – ${dateTime(asked.to)}`, (got) => {
      last = got;
      draw();
      text(head.who, got.about.audience);
      text(head.decision, got.about.decision);
      head.sources.replaceChildren(h("ul", { class: "about-sources" },
        ...got.about.sources.map((s) => h("li", { "data-source": s.name },
          h("strong", {}, s.name), `: ${s.what}`))));
      text(head.freshness, `as of ${clock(app.clock.now())}, again every ` +
        `${COMMS_REFRESH_MS / 1000} s; ${sourcesFreshness(got.about.sources)}`);
    });
    draw();
  };


  d.interval(load, COMMS_REFRESH_MS);
  load();
  return { el, destroy: () => d.dispose() };
}
