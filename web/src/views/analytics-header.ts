// The header of an analytics page: tabs to the others, then who it is for, which decision
// it supports, where its data comes from and how fresh that is — the last as an element the
// page keeps current.
import { ApiError } from "../api";
import type { App, Disposer } from "../app";
import { attr, h, text } from "../dom";
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

/** The asking of a page's answers: `ask(request, shown, take)` says "loading…" in
 * `stateLine`, hands the answer to `take` and then shows `shown` (the range asked) — or says
 * why the page was not updated. Only the newest request counts: an answer that comes after
 * a newer request was made, or after the page closed, is dropped. */
export function answers(d: Disposer, stateLine: HTMLElement
                        ): <T>(request: Promise<T>, shown: string, take: (got: T) => void) => void {
  let seq = 0;
  return (request, shown, take) => {
    const mine = ++seq;
    attr(stateLine, "data-error", null);
    text(stateLine, "loading…");
    request.then((got) => {
      if (d.disposed || mine !== seq) return;
      take(got);
      text(stateLine, shown);
    }).catch((err) => {
      if (d.disposed || mine !== seq) return;
      text(stateLine, `Not updated: ${err instanceof ApiError ? err.detail : String(err)}`);
      attr(stateLine, "data-error", "true");
    });
  };
}

/** An analytics page's site filter: "every site" ("") or one of the caller's sites, by
 * name; `changed` gets the one chosen. */
export function siteFilter(app: App, value: string,
                           changed: (site: string) => void): HTMLSelectElement {
  const el = h("select", { class: "filter site", "aria-label": "site" },
    h("option", { value: "" }, "every site"),
    ...app.fleet.all().map(({ site }) => h("option", { value: site.id }, site.name ?? site.id)));
  el.value = value;
  el.addEventListener("change", () => changed(el.value));
  return el;
}
