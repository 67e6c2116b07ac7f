// The header of an analytics page: tabs to the others, then who it is for, which decision
// it supports, where its data comes from and how fresh that is — the last as an element the
// page keeps current.
import { h } from "../dom";
import { hashOf, type RouteName } from "../router";

/** The analytics pages, as the tabs above each. */
const PAGES: readonly [RouteName, string][] = [["historian", "Historian explorer"],
  ["faults", "Faults and trips"], ["battery-health", "Battery health"],
  ["comms", "Controllers and comms"], ["vendors", "Vendor benchmarking"]];

export interface AnalyticsHeader {
  el: HTMLElement;
  freshness: HTMLElement; // "newest data …", set by the page as answers arrive
  // The three lines themselves: a page whose answer says who it is for (GET
  // /analytics/comms's `about`) writes them from it.
  who: HTMLElement;
  decision: HTMLElement;
  sources: HTMLElement;
}

export function analyticsHeader(page: RouteName, title: string,
                                about: { who: string; decision: string; sources: string }
                                ): AnalyticsHeader {
  const freshness = h("span", { class: "freshness-text" }, "loading…");
  const who = h("dd", { class: "who" }, about.who);
  const decision = h("dd", { class: "decision" }, about.decision);
  const sources = h("dd", { class: "sources" }, about.sources);
  const el = h("header", { class: "view-head analytics-head" },
    h("nav", { class: "analytics-tabs", "aria-label": "analytics" }, ...PAGES.map(([r, label]) =>
      h("a", { href: hashOf({ name: r, id: null, params: {} }), "data-page": r,
               "aria-current": r === page ? "page" : null }, label))),
    h("h1", { id: "view-title" }, title),
    h("dl", { class: "analytics-about" },
      h("dt", {}, "For"), who,
      h("dt", {}, "Decision"), decision,
      h("dt", {}, "Data"), sources,
      h("dt", {}, "Freshness"), h("dd", { class: "freshness", role: "status" }, freshness)));
  return { el, freshness, who, decision, sources };
}
