// #/notifications — what the notifier told whom: the delivery log of the caller's sites
// (GET /notify/deliveries, every few seconds), newest first, filtered by state; the desktop
// alerts switch; every user's own preferences (GET/PUT/DELETE /notify/preferences: the
// severities, channels and quiet hours of what reaches them, their address); and for admins
// the rules file (GET/PUT /notify/rules, POST …/validate): edited as YAML, checked or saved,
// the server's refusal shown with its line and key.
import { ApiError } from "../api";
import { Disposer, P, poll, type App, type View } from "../app";
import { desktopAlertsButton } from "../desktop";
import { attr, h, reconcile, text } from "../dom";
import { clock, dateTime } from "../format";
import { siteHref } from "../router";
import type { NotifyPreferences } from "../generated/api";
import {
  CHANNEL_CHOICES, SEVERITY_CHOICES, bodyOf, caution, formOf, problemText, sourceText,
  type ChannelChoice, type PreferencesForm, type SeverityChoice,
} from "../preferences";
import type { DeliveryOut, NotifyRules, NotifyRulesCheck, Page } from "../types";

export const REFRESH_MS = 10_000;
const PAGE = 100;
const MAX_SHOWN = 500; // the API's largest page
const STATES = ["pending", "sent", "failed"] as const;
type DeliveryState = (typeof STATES)[number];

/** GET /notify/deliveries' items; GET and PUT /notify/rules; POST …/validate. */
export type Delivery = DeliveryOut;
type RulesCheck = NotifyRulesCheck;

const COLUMNS = ["time", "recipient", "channel", "address", "subject", "state", "sites"];

function createRow(d: Delivery): HTMLElement {
  return h("tr", { class: "delivery", "data-id": d.id },
    h("td", { class: "time" }), h("td", { class: "recipient" }), h("td", { class: "channel" }),
    h("td", { class: "address" }), h("td", { class: "subject" }),
    h("td", { class: "state" }, h("span", { class: "chip delivery-state" }),
      h("div", { class: "error" })),
    h("td", { class: "sites" }));
}

function updateRow(row: HTMLElement, d: Delivery): void {
  attr(row, "data-state", d.state);
  const time = row.querySelector(".time");
  text(time, dateTime(d.created_ms));
  attr(time, "title", d.sent_ms ? `sent ${dateTime(d.sent_ms)}` : `updated ${dateTime(d.updated_ms)}`);
  text(row.querySelector(".recipient"), d.recipient ?? "–");
  text(row.querySelector(".channel"), `${d.channel} (${d.channel_type})`);
  const address = row.querySelector(".address");
  text(address, d.address);
  attr(address, "title", d.address);
  text(row.querySelector(".subject"), d.subject);
  const chip = row.querySelector(".delivery-state");
  attr(chip, "data-state", d.state);
  text(chip, d.attempts > 1 ? `${d.state} · ${d.attempts} attempts` : d.state);
  text(row.querySelector(".error"), d.state === "sent" ? "" : d.last_error ?? "");
  const sites = row.querySelector<HTMLElement>(".sites");
  const key = d.sites.join(",");
  if (sites && sites.dataset.sites !== key) {
    sites.dataset.sites = key;
    sites.replaceChildren(...(d.sites.length ? d.sites.flatMap((s, i) =>
      [i ? ", " : "", h("a", { href: siteHref(s) }, s)]) : [h("span", { class: "muted" },
                                                                "fleet-wide")]));
  }
}

function rulesEditor(app: App, d: Disposer): HTMLElement {
  const area = h("textarea", { class: "rules-yaml", name: "yaml", rows: 22, spellcheck: "false",
                               "aria-label": "notification rules (YAML)" });
  const about = h("p", { class: "meta rules-about" }, "loading…");
  const result = h("p", { class: "rules-result", role: "status" });
  const validate = h("button", { type: "button", class: "validate secondary" }, "Validate");
  const save = h("button", { type: "button", class: "save" }, "Save");
  const say = (outcome: "ok" | "error", message: string) => {
    attr(result, "data-outcome", outcome);
    text(result, message);
  };
  const describe = (r: NotifyRules) => {
    text(about, r.updated_ms === null ? `${r.path} — no file yet: the notifier sends nothing.`
      : `${r.path} — ${r.rules} rule${r.rules === 1 ? "" : "s"}, ${r.channels} ` +
        `channel${r.channels === 1 ? "" : "s"}; changed ${dateTime(r.updated_ms)}.`);
    if (r.problem) say("error", `The file on disk is refused: ${r.problem}`);
  };
  const busy = (on: boolean) => {
    validate.disabled = on;
    save.disabled = on;
  };
  const run = async (what: "validate" | "save") => {
    busy(true);
    attr(result, "data-outcome", null);
    text(result, what === "save" ? "saving…" : "checking…");
    try {
      if (what === "save") {
        const saved = await app.api.put<NotifyRules>("/notify/rules", { yaml: area.value });
        if (d.disposed) return;
        describe(saved);
        say("ok", `Saved: ${saved.rules} rule${saved.rules === 1 ? "" : "s"}, ` +
          `${saved.channels} channel${saved.channels === 1 ? "" : "s"}. The notifier reloads ` +
          "the file.");
      } else {
        const c = await app.api.post<RulesCheck>("/notify/rules/validate", { yaml: area.value });
        if (d.disposed) return;
        say("ok", `Valid: ${c.rules} rule${c.rules === 1 ? "" : "s"}, ${c.channels} ` +
          `channel${c.channels === 1 ? "" : "s"} (not saved yet).`);
      }
    } catch (err) {
      if (d.disposed) return;
      // "file:line: key: problem", without the API's "invalid request: body.yaml: ".
      say("error", err instanceof ApiError
        ? err.detail.replace(/^invalid request: body\.yaml: /, "") : String(err));
    } finally {
      busy(false);
    }
  };
  validate.addEventListener("click", () => void run("validate"));
  save.addEventListener("click", () => void run("save"));
  busy(true);
  app.api.get<NotifyRules>("/notify/rules").then((r) => {
    if (d.disposed) return;
    area.value = r.yaml;
    describe(r);
    busy(false);
  }).catch((err: unknown) => {
    if (!d.disposed) say("error", err instanceof ApiError ? err.detail : String(err));
  });
  return h("section", { class: "panel notify-rules" }, h("h2", {}, "Rules"),
    h("p", { class: "meta" }, "Who is told of which alarm, through which channel " +
      "(docs/notifications.md). A file that does not validate is refused whole."),
    about, area, h("div", { class: "rules-actions" }, validate, save), result);
}

async function deletePreferences(app: App): Promise<NotifyPreferences> {
  return app.api.delete<NotifyPreferences>("/notify/preferences");
}

function browserZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

function myPreferences(app: App, d: Disposer): HTMLElement {
  const box = (group: string, value: string) =>
    h("input", { type: "checkbox", name: group, value, class: `pref-${group}` });
  const severities = SEVERITY_CHOICES.map((s) => [s, box("severity", s)] as const);
  const channels = CHANNEL_CHOICES.map((c) => [c, box("channel", c)] as const);
  const from = h("input", { type: "time", name: "quiet_from", class: "pref-quiet-from",
                            "aria-label": "quiet hours from" });
  const to = h("input", { type: "time", name: "quiet_to", class: "pref-quiet-to",
                          "aria-label": "quiet hours to" });
  const tz = h("input", { type: "text", name: "tz", class: "pref-tz", spellcheck: "false",
                          autocomplete: "off", placeholder: "Europe/Stockholm" });
  const email = h("input", { type: "email", name: "email", class: "pref-email",
                             autocomplete: "email", placeholder: "the address you are known by" });
  const source = h("p", { class: "meta pref-source" }, "loading…");
  const warn = h("p", { class: "pref-caution", hidden: true });
  const result = h("p", { class: "pref-result", role: "status" });
  const save = h("button", { type: "submit", class: "pref-save" }, "Save");
  const reset = h("button", { type: "button", class: "pref-reset secondary" },
    "Reset to defaults");
  const say = (outcome: "ok" | "error" | null, message: string) => {
    attr(result, "data-outcome", outcome);
    text(result, message);
  };
  const read = (): PreferencesForm => ({
    severities: severities.filter(([, el]) => el.checked).map(([s]) => s as SeverityChoice),
    channels: channels.filter(([, el]) => el.checked).map(([c]) => c as ChannelChoice),
    quietFrom: from.value, quietTo: to.value, tz: tz.value, email: email.value,
  });
  const showCaution = () => {
    const message = caution(read());
    text(warn, message);
    warn.hidden = !message;
  };
  const show = (p: NotifyPreferences) => {
    const f = formOf(p, browserZone());
    for (const [s, el] of severities) el.checked = f.severities.includes(s);
    for (const [c, el] of channels) el.checked = f.channels.includes(c);
    from.value = f.quietFrom;
    to.value = f.quietTo;
    tz.value = f.tz;
    email.value = f.email;
    attr(source, "data-source", p.source);
    text(source, sourceText(p));
    showCaution();
  };
  const busy = (on: boolean) => {
    save.disabled = on;
    reset.disabled = on;
  };
  const failed = (err: unknown) => {
    if (!d.disposed) say("error", err instanceof ApiError ? problemText(err.detail) : String(err));
  };
  const form = h("form", { class: "pref-form", novalidate: true },
    h("fieldset", { class: "pref-choices" }, h("legend", {}, "Severities"),
      ...severities.map(([s, el]) => h("label", { class: "pref-choice" }, el, s))),
    h("fieldset", { class: "pref-choices" }, h("legend", {}, "Channels"),
      ...channels.map(([c, el]) => h("label", { class: "pref-choice" }, el, c))),
    h("fieldset", { class: "pref-quiet" }, h("legend", {}, "Quiet hours"),
      h("label", {}, "from ", from), h("label", {}, "to ", to),
      h("span", { class: "meta" }, "empty: none. Critical alarms come through all the same.")),
    h("label", { class: "pref-field" }, "Time zone", tz),
    h("label", { class: "pref-field" }, "E-mail", email),
    warn,
    h("div", { class: "pref-actions" }, save, reset), result);
  form.addEventListener("change", showCaution);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const made = bodyOf(read());
    if ("problem" in made) {
      say("error", made.problem);
      return;
    }
    busy(true);
    say(null, "saving…");
    app.api.put<NotifyPreferences>("/notify/preferences", made.body).then((p) => {
      if (d.disposed) return;
      show(p);
      say("ok", "Saved. The notifier takes them at once.");
    }).catch(failed).finally(() => busy(false));
  });
  reset.addEventListener("click", () => {
    busy(true);
    say(null, "resetting…");
    deletePreferences(app).then((p) => {
      if (d.disposed) return;
      show(p);
      say("ok", "Reset: yours are removed.");
    }).catch(failed).finally(() => busy(false));
  });
  busy(true);
  app.api.get<NotifyPreferences>("/notify/preferences").then((p) => {
    if (d.disposed) return;
    show(p);
    busy(false);
  }).catch((err: unknown) => {
    text(source, "");
    failed(err);
  });
  return h("section", { class: "panel my-notifications" }, h("h2", {}, "My notifications"),
    h("p", { class: "meta" }, "What reaches you when a rule tells you (user, group or " +
      "on-call rotation): narrow it here. Only your own entry is changed."),
    source, form);
}

export function notificationsView(app: App): View {
  const d = new Disposer();
  let state: DeliveryState | "" = "";
  let shown = PAGE;
  const status = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const rows = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No notifications.");
  const more = h("button", { type: "button", class: "more secondary", hidden: true },
    "Show older");
  const filter = h("select", { class: "delivery-state-filter", "aria-label": "state" },
    h("option", { value: "" }, "every state"),
    ...STATES.map((s) => h("option", { value: s }, s)));
  const alerts = desktopAlertsButton();
  d.add(alerts.destroy);

  const draw = (page: Page<Delivery>) => {
    reconcile(rows, page.items, (x) => x.id, createRow, updateRow);
    empty.hidden = page.items.length > 0;
    more.hidden = page.next_cursor === null || shown >= MAX_SHOWN;
    text(status, `Updated ${clock(app.clock.now())}; every ${REFRESH_MS / 1000} s.`);
    attr(status, "data-error", null);
  };
  const refresh = poll(d, () => app.api.get<Page<Delivery>>("/notify/deliveries",
                                                            { state: state || null, limit: shown }),
    draw, REFRESH_MS, (err) => {
      text(status, `Not updated: ${err instanceof ApiError ? err.detail : String(err)} — ` +
        "retrying.");
      attr(status, "data-error", "true");
    });
  filter.addEventListener("change", () => {
    state = filter.value as DeliveryState | "";
    shown = PAGE;
    refresh();
  });
  more.addEventListener("click", () => {
    shown = Math.min(shown + PAGE, MAX_SHOWN);
    refresh();
  });

  const log = h("section", { class: "panel deliveries-panel" },
    h("h2", {}, "Delivery log"),
    h("div", { class: "filters" }, h("label", { class: "filter" }, "State ", filter)),
    h("table", { class: "deliveries" },
      h("thead", {}, h("tr", {}, ...COLUMNS.map((c) => h("th", {}, c)))), rows),
    empty, more);
  const el = h("div", { class: "view notifications" },
    h("header", { class: "view-head" }, h("h1", { id: "view-title" }, "Notifications"),
      h("p", { class: "meta" }, "What the notifier sent — e-mail, webhooks, Slack, Teams — " +
        "for alarms of your sites, newest first, and how each ended. Webhook addresses are " +
        "shown shortened: they are secrets."),
      h("div", { class: "desktop-alerts-row" }, alerts.el,
        h("span", { class: "meta" }, "A desktop notification for each new critical alarm " +
          "while the dashboard is open.")),
      status),
    log, myPreferences(app, d), app.can(P.notify) ? rulesEditor(app, d) : null);
  return { el, destroy: () => d.dispose() };
}
