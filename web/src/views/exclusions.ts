// The "Exclusions" panel of a contract card (#/contracts): the contract's exclusion windows
// with their state, evidence and the revisions of closed periods their approval made; a form
// to propose one (scope, start, end, category, reason, evidence files) for roles with
// `exclusions.propose`; approve / reject for contract managers — never on their own proposal
// (four eyes; the API refuses it too) — withdraw for the proposer, revoke for an approved one.
// docs/exclusions.md has the rules.
import { ApiError } from "../api";
import type { App, Disposer } from "../app";
import { h, text } from "../dom";
import { saveFile } from "../download";
import { dateTime } from "../format";
import type { ContractSummary, EvidenceOut, ExclusionOut } from "../generated/api";

export const EXCLUSIONS_PROPOSE = "exclusions.propose";
export const EXCLUSIONS_DECIDE = "exclusions.decide";
export type ExclusionAction = "approve" | "reject" | "withdraw" | "revoke";

/** The steps the caller may take on an exclusion, as the API's rules allow them. */
export function exclusionActions(e: ExclusionOut, subject: string,
                                 can: (permission: string) => boolean): ExclusionAction[] {
  const out: ExclusionAction[] = [];
  const mine = e.proposed_by === subject;
  if (e.state === "proposed") {
    if (can(EXCLUSIONS_DECIDE) && !mine) {
      if (e.end_ms !== null) out.push("approve");
      out.push("reject");
    }
    if (can(EXCLUSIONS_PROPOSE) && mine) out.push("withdraw");
  } else if (e.state === "approved" && can(EXCLUSIONS_DECIDE)) {
    out.push("revoke");
  }
  return out;
}

/** The categories a window of the contract may have: its excluded causes, and scheduled
 * maintenance (it counts against the allowance). */
export function exclusionCategories(terms: Record<string, unknown>): string[] {
  const availability = terms.availability as { excluded_causes?: unknown } | undefined;
  const causes = Array.isArray(availability?.excluded_causes)
    ? availability.excluded_causes.map(String) : [];
  return causes.includes("scheduled_maintenance") ? causes
    : [...causes, "scheduled_maintenance"];
}

/** `datetime-local` text (the browser's time) → epoch ms; null when empty or invalid. */
export function localInputMs(value: string): number | null {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms : null;
}

const NEEDS_COMMENT: Record<ExclusionAction, boolean> = {
  approve: false, reject: true, withdraw: false, revoke: true };

async function upload(app: App, path: string, file: File): Promise<EvidenceOut> {
  const body = new FormData();
  body.append("file", file, file.name);
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = app.session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`/api/v1${path}`, { method: "POST", headers, body,
                                                   cache: "no-store" });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const data = (await response.json()) as { detail?: unknown };
      if (typeof data.detail === "string") detail = data.detail;
    } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return (await response.json()) as EvidenceOut;
}

export function exclusionsPanel(app: App, d: Disposer, c: ContractSummary): HTMLElement {
  const base = `/contracts/${encodeURIComponent(c.id)}/exclusions`;
  const rows = h("tbody", {});
  const status = h("span", { class: "exclusion-status", role: "status" });
  const fail = (err: unknown) =>
    text(status, err instanceof ApiError ? err.detail : String(err));

  const download = (e: ExclusionOut, ev: EvidenceOut) =>
    saveFile(app.api, status, `${base}/${e.id}/evidence/${ev.sha256}`);

  const act = async (e: ExclusionOut, action: ExclusionAction, comment: string) => {
    if (NEEDS_COMMENT[action] && !comment.trim()) {
      text(status, `#${e.id}: say why to ${action}`);
      return;
    }
    try {
      const done = await app.api.post<ExclusionOut>(`${base}/${e.id}/${action}`,
        comment.trim() ? { comment: comment.trim() } : {});
      text(status, [`#${done.id} ${done.state}`, ...done.revisions.slice(-3)
        .map((r) => r.text)].join(" · "));
      await refresh();
    } catch (err) { fail(err); }
  };

  const row = (e: ExclusionOut): HTMLElement => {
    const actions = exclusionActions(e, app.me.subject, (p) => app.can(p));
    const comment = h("input", { type: "text", class: "exclusion-comment", maxlength: 2000,
                                 placeholder: "comment", "aria-label": `comment on #${e.id}` });
    return h("tr", { "data-exclusion": e.id, "data-state": e.state },
      h("td", {}, `#${e.id}`),
      h("td", {}, e.scope_id),
      h("td", {}, dateTime(e.start_ms)),
      h("td", {}, e.end_ms === null ? "open (ticket not resolved)" : dateTime(e.end_ms)),
      h("td", {}, e.category.replaceAll("_", " ")),
      h("td", {}, h("span", { class: `chip exclusion-${e.state}` }, e.state)),
      h("td", { class: "exclusion-reason" }, e.reason,
        h("div", { class: "meta" }, `proposed by ${e.proposed_by}` +
          (e.decided_by ? ` · ${e.state === "withdrawn" ? "withdrawn" : "decided"} by ` +
            `${e.decided_by}${e.decision_comment ? `: ${e.decision_comment}` : ""}` : "") +
          (e.revoked_by ? ` · revoked by ${e.revoked_by}: ${e.revoke_comment ?? ""}` : "")),
        ...e.revisions.map((r) => h("div", { class: "exclusion-revision" }, r.text))),
      h("td", {}, ...e.evidence.map((ev) => h("button", {
        type: "button", class: "link evidence", title: `SHA-256 ${ev.sha256}`,
        onclick: () => void download(e, ev) }, `${ev.name} (${Math.ceil(ev.size / 1024)} KiB)`))),
      h("td", { class: "exclusion-actions" }, ...(actions.length ? [
        ...(actions.some((a) => NEEDS_COMMENT[a] || a === "approve") ? [comment] : []),
        ...actions.map((a) => h("button", { type: "button", "data-action": a,
          class: a === "approve" ? "" : "secondary",
          onclick: () => void act(e, a, comment.value) }, a))] : [])));
  };

  const refresh = async () => {
    const list = await app.api.get<ExclusionOut[]>(base);
    if (d.disposed) return;
    rows.replaceChildren(...(list.length ? [...list].reverse().map(row)
      : [h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No exclusion windows."))]));
  };

  const form = app.can(EXCLUSIONS_PROPOSE) ? proposeForm(app, c, base, async (msg) => {
    text(status, msg);
    await refresh();
  }, fail) : null;

  void refresh().catch(fail);
  return h("section", { class: "exclusions", "aria-label": `exclusions of ${c.id}` },
    h("h3", {}, "Exclusions"),
    h("table", { class: "exclusions-list" },
      h("thead", {}, h("tr", {}, ...["#", "scope", "from", "to", "category", "state", "reason",
                                     "evidence", ""].map((t) => h("th", {}, t)))), rows),
    form, status);
}

function proposeForm(app: App, c: ContractSummary, base: string,
                     done: (message: string) => Promise<void>,
                     fail: (err: unknown) => void): HTMLElement {
  const units = app.fleet.get(c.site_id)?.snapshot?.units.map((u) => u.id) ?? [];
  const scope = h("select", { name: "scope_id", "aria-label": "scope" },
    h("option", { value: c.site_id }, `${c.site_id} (whole site)`),
    ...units.map((u) => h("option", { value: u }, u)));
  const start = h("input", { type: "datetime-local", name: "start", required: true,
                             "aria-label": "start" });
  const end = h("input", { type: "datetime-local", name: "end", required: true,
                           "aria-label": "end" });
  const category = h("select", { name: "category", "aria-label": "category" },
    ...exclusionCategories(c.terms).map((k) => h("option", { value: k },
      k.replaceAll("_", " "))));
  const reason = h("input", { type: "text", name: "reason", required: true, maxlength: 2000,
                              placeholder: "reason", "aria-label": "reason" });
  const files = h("input", { type: "file", name: "evidence", multiple: true,
                             "aria-label": "evidence files" });
  const submit = async (event: Event) => {
    event.preventDefault();
    const startMs = localInputMs(start.value);
    const endMs = localInputMs(end.value);
    if (startMs === null || endMs === null) {
      fail("start and end are required");
      return;
    }
    try {
      const created = await app.api.post<ExclusionOut>(base, {
        scope_id: scope.value, start_ms: startMs, end_ms: endMs, category: category.value,
        reason: reason.value });
      for (const file of Array.from(files.files ?? [])) {
        await upload(app, `${base}/${created.id}/evidence`, file);
      }
      reason.value = "";
      files.value = "";
      await done(`#${created.id} proposed`);
    } catch (err) { fail(err); }
  };
  return h("form", { class: "exclusion-form", onsubmit: (e: Event) => void submit(e) },
    scope, start, end, category, reason, files,
    h("button", { type: "submit" }, "Propose exclusion"));
}
