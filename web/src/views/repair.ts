// #/repair — repair priority: every open unavailability episode of the caller's sites, ranked
// by what one more hour of it costs under its contract now (marginal LD per hour: the LD
// steps, the guarantee and the contract year's cap taken into account; the server ranks,
// one currency group after the other, sites without an LTSA last by lost MWh). A sortable
// table — by LD per hour (the ranking), site, since, lost hours — refreshed every 10 s over
// REST (GET /repair-priority); each row links to its asset. The wall display shows the top 5
// (`repairTop`).
import { ApiError } from "../api";
import { Disposer, poll, type App, type View } from "../app";
import { attr, h, reconcile, text } from "../dom";
import { ago, dateTime, money, num, pct, words } from "../format";
import type { RepairPriorityList, RepairRow } from "../generated/api";
import { assetHref, siteHref } from "../router";

export const REPAIR_REFRESH_MS = 10_000;

export type RepairSort = "ld" | "site" | "since" | "lost";
export const SORTS: readonly [RepairSort, string][] = [
  ["ld", "LD / hour"], ["site", "Site"], ["since", "Since"], ["lost", "Lost hours"]];

/** Why the marginal LD is 0, in words. */
export const ZERO_REASONS: Record<string, string> = {
  technical: "no LTSA", excluded: "excluded by the contract", no_loss: "no contractual loss",
  no_projection: "no data yet", above_guarantee: "above guarantee",
  cap_reached: "LD cap reached", within_step: "within the LD step",
};

/** The rows in the order asked for. "ld" is the server's ranking (money per hour within a
 *  currency, then the older episode); the others sort by their column — site by name,
 *  since oldest first, lost hours most first — and keep the ranking among equals.
 *  `descending` reverses the column's natural order. Pure: a new array. */
export function sortRepairs(rows: readonly RepairRow[], by: RepairSort,
                            descending = false): RepairRow[] {
  const column = (a: RepairRow, b: RepairRow): number => {
    switch (by) {
      case "site": return (a.site_name ?? a.site_id).localeCompare(b.site_name ?? b.site_id);
      case "since": return a.since_ms - b.since_ms;
      case "lost": return b.lost_hours - a.lost_hours;
      default: return a.rank - b.rank;
    }
  };
  const sign = descending ? -1 : 1;
  return [...rows].sort((a, b) => sign * column(a, b) || a.rank - b.rank);
}

/** "1,200 € / h", "–" without money, the reason when it is 0. */
export function perHour(row: RepairRow): string {
  if (row.kind === "technical") return ZERO_REASONS.technical ?? "";
  if (row.marginal_ld_per_hour == null) return "–";
  if (row.marginal_ld_per_hour === 0) {
    return `0 · ${ZERO_REASONS[row.zero_reason ?? ""] ?? words(row.zero_reason)}`;
  }
  return `${money(row.marginal_ld_per_hour, row.currency)} / h`;
}

function status(row: RepairRow): string {
  const state = row.state === "derated" && row.derate_fraction != null
    ? `derated to ${Math.round(row.derate_fraction * 100)} %` : row.state;
  return row.cause ? `${state} · ${words(row.cause)}` : state;
}

function createRow(): HTMLElement {
  return h("tr", {},
    h("td", { class: "rank" }), h("td", { class: "site" }), h("td", { class: "asset" }),
    h("td", { class: "status" }), h("td", { class: "since" }), h("td", { class: "lost" }),
    h("td", { class: "ld" }), h("td", { class: "period" }));
}

function updateRow(tr: HTMLElement, row: RepairRow, nowMs: number): void {
  attr(tr, "data-episode", row.episode_id);
  attr(tr, "data-zero", row.zero_reason ?? null);
  attr(tr, "data-stale", row.stale ? "yes" : null);
  const cells = tr.children;
  text(cells[0], String(row.rank));
  cells[1]?.replaceChildren(h("a", { href: siteHref(row.site_id) }, row.site_name ?? row.site_id),
    h("span", { class: "muted" }, ` ${row.customer}`));
  cells[2]?.replaceChildren(h("a", { href: assetHref(row.asset_id) }, row.asset_id));
  text(cells[3], status(row));
  attr(cells[4], "title", dateTime(row.since_ms));
  text(cells[4], ago(nowMs - row.since_ms));
  text(cells[5], num(row.lost_hours, 1));
  text(cells[6], perHour(row));
  text(cells[7], row.kind === "technical" ? `${row.period}: ${pct(row.availability_now_pct)}`
    : `${row.period}: ${pct(row.availability_now_pct)} → ${pct(row.availability_after_pct)} ` +
      `vs ${pct(row.guaranteed_pct)}` + (row.ld_now == null ? ""
        : ` · LD ${money(row.ld_now, row.currency)} → ${money(row.ld_after, row.currency)}`));
}

export function repairView(app: App): View {
  const d = new Disposer();
  let sort: RepairSort = "ld";
  let descending = false;
  let last: RepairPriorityList | null = null;
  const state = h("p", { class: "meta refresh", role: "status" }, "loading…");
  const headers = SORTS.map(([key, label]) => h("button", {
    type: "button", class: "sort secondary", "data-sort": key,
    onclick: () => {
      descending = sort === key ? !descending : false;
      sort = key;
      draw();
    } }, label));
  const body = h("tbody", {});
  const empty = h("p", { class: "empty", hidden: true }, "No open outages at your sites.");
  const table = h("table", { class: "repair" },
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, headers[1]!),
      h("th", {}, "Asset"), h("th", {}, "Status"), h("th", {}, headers[2]!),
      h("th", {}, headers[3]!), h("th", {}, headers[0]!), h("th", {}, "Period"))), body);
  const el = h("div", { class: "view repair" },
    h("header", { class: "view-head" }, h("h1", { id: "view-title" }, "Repair priority"),
      h("p", { class: "meta" }, "Open outages ranked by what one more hour of each costs " +
        "under its contract now: the period's LD if the asset stays down one more hour minus " +
        "if it is repaired now (LD steps, guarantee and the contract year's cap included). " +
        "Currencies are not compared: one after the other. Sites without an LTSA last."),
      state),
    empty, table);

  const draw = () => {
    for (const b of headers) {
      const key = b.dataset.sort;
      attr(b, "aria-pressed", key === sort ? "true" : "false");
      attr(b, "data-dir", key === sort ? (descending ? "desc" : "asc") : null);
    }
    if (!last) return;
    const rows = sortRepairs(last.items, sort, descending);
    empty.hidden = rows.length > 0;
    table.hidden = rows.length === 0;
    const now = app.clock.now();
    reconcile(body, rows, (r) => r.episode_id, createRow, (tr, r) => updateRow(tr, r, now));
  };
  poll(d, () => app.api.get<RepairPriorityList>("/repair-priority?limit=500"), (list) => {
    last = list;
    draw();
    text(state, `${list.total} open outage${list.total === 1 ? "" : "s"}` +
      (list.money ? "" : " · amounts hidden for your role") +
      ` · every ${REPAIR_REFRESH_MS / 1000} s`);
    attr(state, "data-error", null);
  }, REPAIR_REFRESH_MS, (err) => {
    text(state, `Not updated: ${err instanceof ApiError ? err.detail : String(err)} — ` +
      "retrying.");
    attr(state, "data-error", "true");
  });
  d.add(app.tick.on(() => draw()));
  draw();
  return { el, destroy: () => d.dispose() };
}

/** The wall display's compact block: the top `n` of the fleet, refreshed every 10 s. */
export function repairTop(app: App, d: Disposer, n = 5): HTMLElement {
  const list = h("ol", { class: "repair-top", "aria-label": "repair priority" });
  const box = h("div", { class: "wall-repair" }, h("h2", {}, "Repair priority"), list);
  poll(d, () => app.api.get<RepairPriorityList>(`/repair-priority?limit=${n}`), (got) => {
    reconcile(list, got.items, (r) => r.episode_id,
      () => h("li", {}, h("span", { class: "asset" }), h("span", { class: "ld" })),
      (li, r) => {
        attr(li, "data-zero", r.zero_reason ?? null);
        text(li.querySelector(".asset"), `${r.rank}. ${r.asset_id}`);
        attr(li.querySelector(".asset"), "title", `${r.site_name ?? r.site_id} · ${status(r)}`);
        text(li.querySelector(".ld"), perHour(r));
      });
    box.hidden = got.items.length === 0;
  }, REPAIR_REFRESH_MS);
  box.hidden = true;
  return box;
}
