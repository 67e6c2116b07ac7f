// The header of an analytics page: who it is for, which decision it supports, where its data
// comes from and how fresh that is — the last as an element the page keeps current.
import { h } from "../dom";

export interface AnalyticsHeader {
  el: HTMLElement;
  freshness: HTMLElement; // "newest data …", set by the page as answers arrive
}

export function analyticsHeader(title: string, about: { who: string; decision: string;
                                sources: string }): AnalyticsHeader {
  const freshness = h("span", { class: "freshness-text" }, "loading…");
  const el = h("header", { class: "view-head analytics-head" },
    h("h1", { id: "view-title" }, title),
    h("dl", { class: "analytics-about" },
      h("dt", {}, "For"), h("dd", { class: "who" }, about.who),
      h("dt", {}, "Decision"), h("dd", { class: "decision" }, about.decision),
      h("dt", {}, "Data"), h("dd", { class: "sources" }, about.sources),
      h("dt", {}, "Freshness"), h("dd", { class: "freshness", role: "status" }, freshness)));
  return { el, freshness };
}
