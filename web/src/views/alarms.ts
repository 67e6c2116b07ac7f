// #/alarms — every active alarm of the caller's sites, most severe first, live; acknowledge
// and shelve where the role allows; filter by severity.
import { Disposer, P, type App, type View } from "../app";
import { alarmList } from "../components";
import { desktopAlertsButton } from "../desktop";
import { h } from "../dom";
import { SEVERITIES } from "../generated/constants";
import type { Severity } from "../types";

export function alarmsView(app: App): View {
  const d = new Disposer();
  const shown = new Set<Severity>(SEVERITIES);
  let list = alarmList(app, (a) => shown.has(a.severity));
  const holder = h("div", {}, list.el);
  const rebuild = () => {
    list.destroy();
    list = alarmList(app, (a) => shown.has(a.severity));
    holder.replaceChildren(list.el);
  };
  d.add(() => list.destroy());
  const filters = h("div", { class: "filters", role: "group", "aria-label": "severities" },
    ...SEVERITIES.map((s) => {
      const box = h("input", { type: "checkbox", checked: true, value: s, onchange: () => {
        if (box.checked) shown.add(s);
        else shown.delete(s);
        rebuild();
      } });
      return h("label", { class: "filter", "data-severity": s }, box, ` ${s}`);
    }));
  const who = app.can(P.acknowledge) || app.can(P.shelve)
    ? "" : ` Your role (${app.me.role}) may look, not acknowledge or shelve.`;
  const alerts = desktopAlertsButton(); // a desktop notification per new critical alarm
  d.add(alerts.destroy);
  const el = h("div", { class: "view alarms" },
    h("header", { class: "view-head" }, h("h1", { id: "view-title" }, "Active alarms"),
      h("p", { class: "meta" }, `Limit and trend breaches of your sites, live.${who}`), filters,
      h("div", { class: "desktop-alerts-row" }, alerts.el)),
    holder);
  return { el, destroy: () => d.dispose() };
}
