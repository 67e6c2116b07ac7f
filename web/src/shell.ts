// The frame around every view: the top bar (navigation by role, connection state, server
// clock, who is signed in) and the critical-alarm banner nobody can miss.
import { Disposer, P, poll, type App } from "./app";
import { watchCriticals } from "./desktop";
import { attr, h, text } from "./dom";
import { clock } from "./format";
import type { LiveState } from "./live";
import { ANALYTICS_ROUTES, type RouteName } from "./router";
import { stackBadge } from "./stack-health";
import type { StackHealth } from "./types";

const CONNECTION_TEXT: Record<LiveState, string> = {
  connecting: "connecting…", live: "live", reconnecting: "reconnecting…",
  denied: "not signed in",
};

export interface Shell {
  el: HTMLElement;
  main: HTMLElement;
  setConnection(state: LiveState): void;
  setActive(route: RouteName): void;
  destroy(): void;
}

export function connectionBadge(): HTMLElement {
  return h("div", { id: "connection", class: "connection", "data-state": "connecting",
                    role: "status" }, CONNECTION_TEXT.connecting);
}

export function setConnectionBadge(el: Element | null, state: LiveState): void {
  attr(el, "data-state", state);
  text(el, CONNECTION_TEXT[state]);
}

export function shell(app: App, signOut: () => void): Shell {
  const d = new Disposer();
  const link = (route: RouteName, href: string, label: string, extra?: Node) =>
    h("a", { href, "data-route": route }, label, extra ?? null);
  const alarmCount = h("span", { class: "count", hidden: true });
  const nav = h("nav", { class: "main-nav", "aria-label": "main" },
    link("overview", "#/", "Overview"), link("alarms", "#/alarms", "Alarms ", alarmCount),
    link("quality", "#/quality", "Data quality"),
    link("repair", "#/repair", "Repair priority"),
    // One entry for the analytics pages (each page links to the others).
    h("a", { href: "#/analytics/historian", "data-route": "historian",
             "data-routes": ANALYTICS_ROUTES.join(" ") }, "Analytics"),
    app.can(P.contracts) ? link("contracts", "#/contracts", "Contracts") : null,
    link("notifications", "#/notifications", "Notifications"),
    link("wall", "#/wall", "Wall"));
  const connection = connectionBadge();
  const stack = h("span", { id: "stack-health", class: "stack-health", role: "status",
                            hidden: true });
  const serverClock = h("time", { class: "server-clock" });
  const banner = h("a", { id: "critical-banner", class: "critical-banner", href: "#/alarms",
                          role: "alert", hidden: true });
  const main = h("main", { id: "view" });
  const el = h("div", { class: "shell" },
    h("header", { class: "topbar" },
      h("a", { class: "brand", href: "#/" }, "bessmon"), nav, h("span", { class: "spacer" }),
      stack, serverClock, connection,
      h("span", { class: "who", title: app.me.permissions.join(", ") },
        `${app.me.subject} · ${app.me.role.replace("_", " ")}`),
      h("button", { type: "button", class: "sign-out secondary", onclick: signOut }, "Sign out")),
    banner, main);

  const drawAlarms = () => {
    const now = app.clock.now();
    const all = app.alarms.list(now);
    alarmCount.hidden = all.length === 0;
    text(alarmCount, String(all.length));
    const critical = app.alarms.criticalUnacknowledged(now);
    banner.hidden = critical.length === 0;
    attr(document.body, "data-critical", critical.length ? "yes" : null);
    if (critical.length) {
      const first = critical[0]!;
      text(banner, `⚠ ${critical.length} CRITICAL ALARM${critical.length > 1 ? "S" : ""} ` +
        `UNACKNOWLEDGED — ${first.asset_id}: ${first.message}`);
    }
    const title = critical.length ? `⚠ ${critical.length} critical — bessmon` : "bessmon";
    if (document.title !== title) document.title = title;
  };
  d.add(app.alarms.changed.on(drawAlarms));
  d.add(watchCriticals(app)); // desktop notifications of new critical alarms, if allowed
  d.add(app.tick.on((now) => {
    text(serverClock, clock(now));
    drawAlarms(); // shelves run out
  }));
  drawAlarms();
  if (app.can(P.stack)) { // admins: the parts bessmon up restarted
    poll(d, () => app.api.get<StackHealth>("/stack"), (health) => {
      const badge = stackBadge(health);
      stack.hidden = badge === null;
      attr(stack, "data-state", badge?.state ?? null);
      attr(stack, "title", badge?.title ?? null);
      text(stack, badge?.text ?? "");
    }, 10_000);
  }
  return {
    el, main,
    setConnection: (state) => setConnectionBadge(connection, state),
    setActive(route) {
      for (const a of nav.querySelectorAll("a")) {
        const routes = a.dataset.routes?.split(" ") ?? [a.dataset.route];
        attr(a, "aria-current", routes.includes(route) ? "page" : null);
      }
    },
    destroy: () => d.dispose(),
  };
}
