// #/control/<site id> — the site's safety view: every battery unit as the control loop holds
// it (state, mode, telemetry freshness, derate, active limits and interlocks, the last
// commands with their outcome and read-back), refreshed every 2 s while the tab is visible,
// and "control loop offline" when the loop has stopped beating. Roles with `control.command`
// get a red Emergency stop per unit and for the whole site, and Reset for a unit in ERROR or
// STOPPED — each behind a dialog that asks for a reason; the answer (command ids, or why it
// was not sent) stays on the page.
import { ApiError } from "../api";
import { Disposer, P, poll, type App, type View } from "../app";
import {
  commandTitle, derateText, freshText, limitsText, loopText, MAX_REASON, modeText,
  outcomeClass, outcomeText, readBackText, recentCommands, sentText, siteCanStop, STATE_HELP,
  unitCommands, validReason, type Command,
} from "../control";
import { attr, h, reconcile, text } from "../dom";
import { ago, clock, dateTime } from "../format";
import { assetHref, siteHref } from "../router";
import type { CommandsAccepted, SiteControl, UnitControlView } from "../types";

const REFRESH_MS = 2_000;

interface Target {
  kind: Command;
  path: string; // under /control
  label: string; // what is commanded, for the dialog
}

export function controlView(app: App, siteId: string): View {
  const d = new Disposer();
  const entry = app.fleet.get(siteId);
  if (!entry) {
    return { el: h("div", { class: "view" }, h("p", { class: "empty" },
      `No site ${siteId} — it does not exist, or it is not yours to see.`),
      h("a", { href: "#/" }, "Back to the fleet")), destroy: () => d.dispose() };
  }
  const site = entry.site;
  const canCommand = app.can(P.control);
  let latest: SiteControl | null = null;

  const loop = h("div", { class: "loop-status", role: "status", "data-alive": "unknown" },
    "control loop: waiting for the first answer…");
  const result = h("div", { class: "command-result", role: "status", hidden: true });
  const siteStop = siteCanStop(canCommand, site.units)
    ? h("button", { type: "button", class: "estop site-estop", onclick: () => ask({
      kind: "estop", path: `/sites/${encodeURIComponent(siteId)}/estop`,
      label: `every unit of ${site.name ?? siteId}` }) }, "Emergency stop — whole site")
    : null;
  const who = canCommand ? "" : ` Your role (${app.me.role}) may look, not command.`;
  const header = h("header", { class: "view-head" },
    h("nav", { class: "crumbs", "aria-label": "breadcrumb" },
      h("a", { href: "#/" }, "Fleet"), " › ", h("a", { href: siteHref(siteId) },
        site.name ?? siteId), " › ", h("span", {}, "Safety & control")),
    h("div", { class: "title-row" },
      h("h1", { id: "view-title" }, `Safety & control — ${site.name ?? siteId}`), siteStop),
    h("p", { class: "meta" }, `What the control loop holds of each battery unit, every ` +
      `${REFRESH_MS / 1000} s.${who}`),
    loop, result);
  const units = h("div", { class: "control-units", "aria-label": "battery units" });
  const problem = h("p", { class: "empty poll-error", role: "status", hidden: true });

  // -- the confirm dialog: one for the view, filled in for each command ----------------------
  const dialogTitle = h("h2", { class: "dialog-title" });
  const dialogText = h("p", { class: "dialog-text" });
  const reason = h("input", { name: "reason", class: "reason", required: true,
                              maxlength: MAX_REASON, placeholder: "reason (required)",
                              "aria-label": "reason", autocomplete: "off" });
  const confirm = h("button", { type: "submit", class: "confirm-command", disabled: true },
                    "Confirm");
  const cancel = h("button", { type: "button", class: "secondary cancel-command" }, "Cancel");
  const form = h("form", { method: "dialog" }, dialogTitle, dialogText, reason,
    h("div", { class: "dialog-actions" }, confirm, cancel));
  const dialog = h("dialog", { class: "confirm-dialog", "aria-labelledby": "dialog-title" },
                   form);
  dialogTitle.id = "dialog-title";
  let pending: Target | null = null;

  const ask = (target: Target) => {
    pending = target;
    attr(dialog, "data-kind", target.kind);
    text(dialogTitle, target.kind === "estop" ? "Emergency stop" : "Reset");
    text(dialogText, target.kind === "estop"
      ? `Stop ${target.label} now: power to 0 and stop mode, at once. Why?`
      : `Reset ${target.label}: clears the stop; the unit goes to IDLE, it does not start. Why?`);
    text(confirm, target.kind === "estop" ? "Emergency stop" : "Reset");
    reason.value = "";
    confirm.disabled = true;
    dialog.showModal();
    reason.focus();
  };
  reason.addEventListener("input", () => { confirm.disabled = validReason(reason.value) === null; });
  cancel.addEventListener("click", () => {
    pending = null;
    dialog.close();
  });
  dialog.addEventListener("close", () => { pending = null; });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const why = validReason(reason.value);
    const target = pending;
    if (why === null || target === null) return;
    dialog.close();
    void send(target, why);
  });
  d.add(() => { if (dialog.open) dialog.close(); });

  const send = async (target: Target, why: string) => {
    attr(result, "data-outcome", "sending");
    result.hidden = false;
    text(result, `Sending ${target.kind === "estop" ? "emergency stop" : "reset"} to ` +
      `${target.label}…`);
    try {
      const sent = await app.api.post<CommandsAccepted>(`/control${target.path}`,
                                                        { reason: why });
      attr(result, "data-outcome", "sent");
      text(result, `${sentText(target.kind, sent.unit_ids, sent.command_ids)} ` +
        `(${clock(app.clock.now())})`);
      refresh();
    } catch (err) {
      attr(result, "data-outcome", "failed");
      text(result, `NOT SENT — ${err instanceof ApiError ? err.detail : String(err)}`);
    }
  };

  // -- the unit cards --------------------------------------------------------------------
  const create = (u: UnitControlView) => h("article", { class: "control-unit",
                                                          "data-unit": u.unit_id },
    h("div", { class: "unit-title" },
      h("a", { class: "unit-id", href: assetHref(u.unit_id) }, u.unit_id),
      h("span", { class: "unit-state" }),
      h("div", { class: "unit-actions" })),
    h("dl", { class: "control-facts" },
      h("dt", {}, "mode"), h("dd", { class: "mode" }),
      h("dt", {}, "telemetry"), h("dd", { class: "fresh" }),
      h("dt", {}, "power"), h("dd", { class: "derate" }),
      h("dt", {}, "active limits"), h("dd", { class: "limits" }),
      h("dt", {}, "interlocks"), h("dd", { class: "interlocks" }),
      h("dt", {}, "device"), h("dd", { class: "device" })),
    h("p", { class: "refusal", role: "note", hidden: true }),
    h("table", { class: "commands" },
      h("thead", {}, h("tr", {}, h("th", {}, "when"), h("th", {}, "command"),
        h("th", {}, "by"), h("th", {}, "reason"), h("th", {}, "outcome"),
        h("th", {}, "read back"))),
      h("tbody", {})),
    h("p", { class: "empty no-commands" }, "No commands yet."));

  const actions = (card: HTMLElement, u: UnitControlView) => {
    const box = card.querySelector<HTMLElement>(".unit-actions");
    if (!box) return;
    const want = unitCommands(canCommand, u.state);
    if (box.dataset.have === want.join(",")) return; // keep the buttons under the pointer
    box.dataset.have = want.join(",");
    box.replaceChildren(...want.map((kind) => kind === "estop"
      ? h("button", { type: "button", class: "estop unit-estop", onclick: () => ask({
        kind, path: `/units/${encodeURIComponent(u.unit_id)}/estop`, label: u.unit_id }) },
        "Emergency stop")
      : h("button", { type: "button", class: "secondary reset", onclick: () => ask({
        kind, path: `/units/${encodeURIComponent(u.unit_id)}/reset`, label: u.unit_id }) },
        "Reset…")));
  };

  const update = (card: HTMLElement, u: UnitControlView) => {
    const now = app.clock.now();
    attr(card, "data-state", u.state);
    const state = card.querySelector(".unit-state");
    attr(state, "data-state", u.state);
    attr(state, "title", STATE_HELP[u.state]);
    text(state, u.state);
    text(card.querySelector(".mode"), modeText(u.mode));
    const fresh = card.querySelector(".fresh");
    attr(fresh, "data-fresh", u.fresh ? "yes" : "no");
    text(fresh, freshText(u.fresh));
    text(card.querySelector(".derate"), derateText(u.derate, u.power_limit_kw));
    text(card.querySelector(".limits"), limitsText(u.limits));
    text(card.querySelector(".interlocks"), u.interlocks.length === 0 ? "none"
      : u.interlocks.map((i) => `${i.id} (no ${i.forbid})${i.message ? `: ${i.message}` : ""}`)
        .join("; "));
    text(card.querySelector(".device"), `${u.device ?? "–"}${u.updated_ms
      ? ` · updated ${ago(now - u.updated_ms)}` : ""}`);
    const refusal = card.querySelector<HTMLElement>(".refusal");
    if (refusal) {
      refusal.hidden = !u.last_refusal;
      text(refusal, u.last_refusal ? `Last refused: ${u.last_refusal}` : "");
    }
    const recent = recentCommands(u);
    const body = card.querySelector("tbody");
    const none = card.querySelector<HTMLElement>(".no-commands");
    if (none) none.hidden = recent.length > 0;
    attr(card.querySelector("table.commands"), "data-empty", recent.length ? null : "yes");
    if (body) {
      reconcile(body, recent, (c) => c.command_id,
        (c) => h("tr", { "data-command": c.command_id },
          h("td", { class: "when", title: dateTime(c.ts_ms) }, clock(c.ts_ms)),
          h("td", { class: "kind" }, commandTitle(c)), h("td", { class: "actor" }, c.actor),
          h("td", { class: "reason" }, c.reason), h("td", { class: "outcome" }),
          h("td", { class: "read-back" })),
        (row, c) => {
          const outcome = row.querySelector(".outcome");
          attr(outcome, "data-outcome", outcomeClass(c));
          text(outcome, outcomeText(c));
          text(row.querySelector(".read-back"), readBackText(c.read_back));
        });
    }
    actions(card, u);
  };

  const draw = () => {
    if (!latest) return;
    const now = app.clock.now();
    attr(loop, "data-alive", latest.control_loop_alive ? "yes" : "no");
    text(loop, loopText(latest.control_loop_alive, latest.control_loop_beat_ms, now));
    reconcile(units, latest.units, (u) => u.unit_id, create, update);
  };

  const refresh = poll(d, async () => document.hidden ? null
    : app.api.get<SiteControl>(`/control/sites/${encodeURIComponent(siteId)}`), (value) => {
    if (value === null) return;
    latest = value;
    problem.hidden = true;
    draw();
  }, REFRESH_MS, (err) => {
    problem.hidden = false;
    text(problem, `Could not refresh: ${err instanceof ApiError ? err.detail : String(err)} ` +
      "— showing the last answer.");
  });
  const visible = () => { if (!document.hidden) refresh(); };
  document.addEventListener("visibilitychange", visible);
  d.add(() => document.removeEventListener("visibilitychange", visible));

  const el = h("div", { class: "view control", "data-site": siteId }, header, problem, units,
               dialog);
  return { el, destroy: () => d.dispose() };
}
