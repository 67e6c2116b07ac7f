// Pieces several views show: state chips, warning badges, the alarm list with its actions,
// tickets and availability drops.
import { alarmState } from "./alarms";
import type { SiteContract } from "./fleet";
import { ApiError } from "./api";
import { Disposer, P, type App } from "./app";
import { attr, frameThrottle, h, reconcile, text } from "./dom";
import { ago, clock, dateTime, duration, num, tagLabel, tagValue, words } from "./format";
import { assetHref, siteHref } from "./router";
import { stateOf, STATE_LABELS, WARNING_LABELS } from "./status";
import type { AlarmView, Episode, State, TicketEvent, TicketRef, WarningLevel } from "./types";

export function stateChip(state: State | null, cause?: string | null,
                          derate?: number | null): HTMLElement {
  const s = stateOf(state);
  const extra = s === "derated" && derate != null ? ` ${Math.round(derate * 100)} %` : "";
  return h("span", { class: "chip state", "data-state": s },
           `${STATE_LABELS[s]}${extra}${cause ? ` · ${words(cause)}` : ""}`);
}

export function updateStateChip(el: Element | null, state: State | null, cause?: string | null,
                                derate?: number | null): void {
  if (!el) return;
  const s = stateOf(state);
  const extra = s === "derated" && derate != null ? ` ${Math.round(derate * 100)} %` : "";
  attr(el, "data-state", s);
  text(el, `${STATE_LABELS[s]}${extra}${cause ? ` · ${words(cause)}` : ""}`);
}

/** The contract's warning level (ok / watch / LD risk), or why there is none. */
export function updateWarningBadge(el: Element | null, contract: SiteContract): void {
  if (!el) return;
  const level: WarningLevel | null = contract.kind === "contract" ? contract.kpis.warning_level
    : null;
  attr(el, "data-warning", level ?? "none");
  text(el, level ? WARNING_LABELS[level] : contract.kind === "technical" ? "no contract"
    : contract.kind === "pending" ? "pending" : "–");
}

function describeState(a: AlarmView, nowMs: number): string {
  const state = alarmState(a, nowMs);
  if (state === "shelved") {
    return `shelved until ${clock(a.shelved_until_ms ?? 0)}${a.shelve_reason
      ? ` — ${a.shelve_reason}` : ""}`;
  }
  if (state === "active_acknowledged") {
    return `acknowledged${a.acknowledged_by ? ` by ${a.acknowledged_by}` : ""}`;
  }
  return "unacknowledged";
}

const SHELVE_HOURS = [1, 4, 8, 24];

/** The live alarm list: rows kept by breach id, actions where the role allows them. */
export function alarmList(app: App, filter: (a: AlarmView) => boolean,
                          opts: { limit?: number; empty?: string; compact?: boolean } = {}):
    { el: HTMLElement; destroy(): void } {
  const d = new Disposer();
  const rows = h("div", { class: "alarm-rows", role: "list" });
  const empty = h("p", { class: "empty" }, opts.empty ?? "No active alarms.");
  const el = h("div", { class: `alarm-list${opts.compact ? " compact" : ""}` }, rows, empty);
  const canAck = app.can(P.acknowledge);
  const canShelve = app.can(P.shelve);
  const busy = new Set<string>();
  const errors = new Map<string, string>();

  const act = async (a: AlarmView, path: string, body: object) => {
    busy.add(a.breach_id);
    errors.delete(a.breach_id);
    draw.request();
    try {
      const updated = await app.api.post<AlarmView>(
        `/alarms/${encodeURIComponent(a.breach_id)}/${path}`, body);
      app.alarms.put(updated);
    } catch (err) {
      errors.set(a.breach_id, err instanceof ApiError ? err.detail : String(err));
    } finally {
      busy.delete(a.breach_id);
      draw.request();
    }
  };

  const create = (a: AlarmView): HTMLElement => {
    const row = h("div", { class: "alarm-row", role: "listitem", "data-breach": a.breach_id },
      h("span", { class: "sev" }),
      h("div", { class: "what" },
        h("div", { class: "msg" }),
        h("div", { class: "sub" },
          h("a", { class: "asset-link", href: assetHref(a.asset_id) }, a.asset_id), " · ",
          h("a", { class: "site-link", href: siteHref(a.site_id) }, a.site_id), " · ",
          h("span", { class: "rule" }, a.rule_id))),
      h("span", { class: "reading" }),
      h("span", { class: "raised" }),
      h("span", { class: "handling" }),
      h("div", { class: "actions" }),
      h("div", { class: "error", role: "alert" }));
    if (opts.compact) row.querySelector(".actions")?.remove();
    return row;
  };

  const actions = (row: HTMLElement, a: AlarmView, state: string) => {
    const box = row.querySelector<HTMLElement>(".actions");
    if (!box || box.querySelector("form")) return; // a shelve form is open: leave it be
    const want = [canAck && state === "active_unacknowledged" ? "ack" : "",
                  canShelve && state !== "shelved" ? "shelve" : "",
                  canShelve && state === "shelved" ? "unshelve" : ""].filter(Boolean).join(",");
    const disabled = busy.has(a.breach_id);
    if (box.dataset.have === want) {
      for (const b of box.querySelectorAll("button")) b.disabled = disabled;
      return;
    }
    box.dataset.have = want;
    const buttons: HTMLElement[] = [];
    if (want.includes("ack")) {
      buttons.push(h("button", { class: "ack", type: "button", onclick: () =>
        void act(a, "acknowledge", {}) }, "Acknowledge"));
    }
    if (want.includes("unshelve")) {
      buttons.push(h("button", { class: "unshelve", type: "button", onclick: () =>
        void act(a, "unshelve", {}) }, "Unshelve"));
    } else if (want.includes("shelve")) {
      buttons.push(h("button", { class: "shelve secondary", type: "button", onclick: () =>
        openShelve(box, a) }, "Shelve…"));
    }
    box.replaceChildren(...buttons);
  };

  const openShelve = (box: HTMLElement, a: AlarmView) => {
    const reason = h("input", { name: "reason", required: true, maxlength: 500,
                                placeholder: "reason (required)", "aria-label": "reason" });
    const hours = h("select", { name: "hours", "aria-label": "shelve for" },
      ...SHELVE_HOURS.map((n) => h("option", { value: n }, `${n} h`)));
    const close = () => {
      box.dataset.have = "";
      box.replaceChildren();
      draw.request();
    };
    const form = h("form", { class: "shelve-form", onsubmit: (ev: Event) => {
      ev.preventDefault();
      const until = app.clock.now() + Number(hours.value) * 3_600_000;
      close();
      void act(a, "shelve", { reason: reason.value.trim(), until_ms: Math.round(until) });
    } }, reason, hours, h("button", { type: "submit", class: "confirm-shelve" }, "Shelve"),
      h("button", { type: "button", class: "secondary", onclick: close }, "Cancel"));
    box.replaceChildren(form);
    reason.focus();
  };

  const update = (row: HTMLElement, a: AlarmView) => {
    const now = app.clock.now();
    const state = alarmState(a, now);
    attr(row, "data-severity", a.severity);
    attr(row, "data-state", state);
    const sev = row.querySelector(".sev");
    attr(sev, "data-severity", a.severity);
    text(sev, a.severity.toUpperCase());
    text(row.querySelector(".msg"), a.message);
    // A tag's value against its threshold; a status or an alert says it in its message.
    text(row.querySelector(".reading"), a.kind === "limit" || a.kind === "trend"
      ? `${num(a.value, 1)} / ${num(a.threshold, 1)}` : "");
    text(row.querySelector(".raised"), ago(now - a.raised_ms));
    attr(row.querySelector(".raised"), "title", dateTime(a.raised_ms));
    text(row.querySelector(".handling"), describeState(a, now));
    text(row.querySelector(".error"), errors.get(a.breach_id) ?? "");
    if (!opts.compact) actions(row, a, state);
  };

  const draw = frameThrottle(() => {
    let list = app.alarms.list(app.clock.now(), filter);
    if (opts.limit) list = list.slice(0, opts.limit);
    reconcile(rows, list, (a) => a.breach_id, create, update);
    empty.hidden = list.length > 0;
    for (const id of [...errors.keys()]) if (!list.some((a) => a.breach_id === id)) errors.delete(id);
  });
  d.add(app.alarms.changed.on(() => draw.request()));
  d.add(app.tick.on(() => draw.request()));
  d.add(() => draw.cancel());
  draw.request();
  return { el, destroy: () => d.dispose() };
}

export function ticketLink(t: TicketRef): HTMLElement {
  const label = `${t.ticket_id}`;
  return t.url
    ? h("a", { class: "ticket-link", href: t.url, target: "_blank", rel: "noopener noreferrer",
               "data-ticket": t.ticket_id }, label)
    : h("span", { class: "ticket-link", "data-ticket": t.ticket_id }, label);
}

export function ticketStatus(status: string): HTMLElement {
  return h("span", { class: "chip ticket-status", "data-status": status }, words(status));
}

/** Tickets on an asset, above and below it: open and in progress first. */
export function ticketTable(tickets: TicketEvent[], nowMs: number): HTMLElement {
  if (tickets.length === 0) return h("p", { class: "empty" }, "No tickets.");
  return h("div", { class: "tickets", role: "list" }, ...tickets.map((t) =>
    h("div", { class: "ticket-row", role: "listitem", "data-ticket": t.ticket_id,
               "data-status": t.status },
      ticketLink(t), ticketStatus(t.status),
      h("span", { class: "summary" }, t.summary || "–"),
      h("span", { class: "asset" }, t.asset_id ? h("a", { href: assetHref(t.asset_id) },
                                                  t.asset_id) : "–"),
      h("span", { class: "when", title: dateTime(t.updated_ms) },
        t.status === "resolved" && t.resolved_ms
          ? `resolved ${ago(nowMs - t.resolved_ms)}` : `opened ${ago(nowMs - t.opened_ms)}`),
      h("span", { class: "priority" }, t.priority ?? ""))));
}

/** Availability drops (unavailability episodes) and the tickets linked to each: the root
 * cause of a drop, next to it. */
export function episodeTable(episodes: Episode[], nowMs: number): HTMLElement {
  if (episodes.length === 0) return h("p", { class: "empty" }, "No availability drops.");
  return h("div", { class: "episodes", role: "list" }, ...episodes.map((e) =>
    h("div", { class: "episode-row", role: "listitem", "data-episode": e.episode_id },
      stateChip(e.state, e.cause),
      h("a", { class: "asset", href: assetHref(e.asset_id) }, e.asset_id),
      h("span", { class: "when", title: dateTime(e.start_ms) },
        e.end_ms === null ? `since ${dateTime(e.start_ms)} (${duration(nowMs - e.start_ms)})`
          : `${dateTime(e.start_ms)}, ${duration(e.end_ms - e.start_ms)}`),
      h("span", { class: "lost" }, `${num(e.lost_hours, 2)} h lost`),
      h("span", { class: "linked" }, ...(e.tickets.length ? e.tickets.map((t) =>
        h("span", { class: "linked-ticket" }, ticketLink(t), ticketStatus(t.status),
          t.summary ? h("span", { class: "summary" }, t.summary) : null))
        : [h("span", { class: "muted" }, "no ticket yet")])))));
}

/** An asset's newest values as a definition list. */
export function valuesList(values: Record<string, number>): HTMLElement {
  const entries = Object.entries(values).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return h("p", { class: "empty" }, "No values yet.");
  return h("dl", { class: "values" }, ...entries.flatMap(([tag, v]) =>
    [h("dt", {}, tagLabel(tag)), h("dd", { "data-tag": tag }, tagValue(tag, v))]));
}

export function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}
