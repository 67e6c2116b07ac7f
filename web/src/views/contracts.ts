// #/contracts — each LTSA of the caller's sites: actual against guaranteed availability per
// measurement period of the contract year, LD to date, the projection of the open period,
// the compliance report to download (pdf, xlsx, csv), and the archive of the scheduled
// reports (`bessmon report run-due`): each period's versions, their files and what changed.
import { ApiError } from "../api";
import { Disposer, P, poll, type App, type View } from "../app";
import type { ComplianceChart } from "../charts";
import { updateWarningBadge } from "../components";
import { attr, h, text } from "../dom";
import { siteContract } from "../fleet";
import { saveFile } from "../download";
import { dateTime, money, pct } from "../format";
import type { ArchivedReport } from "../generated/api";
import { contractYearPeriods, rangeLabel } from "../periods";
import { siteHref } from "../router";
import type { Compliance, ContractSummary, PeriodEvaluation } from "../types";
import { exclusionsPanel } from "./exclusions";

/** The archive's versions of one contract as table rows, newest period and version first
 * (as the API lists them); a period's first row names it, v2+ list their changes. */
export function archiveRows(items: ArchivedReport[],
                            fileButton: ((r: ArchivedReport, format: string) => HTMLElement) | null,
                            ): HTMLElement[] {
  return items.map((r, i) => h("tr", { "data-period": r.period, "data-version": String(r.version) },
    h("td", {}, i > 0 && items[i - 1].period === r.period ? "" : r.period),
    h("td", {}, `v${r.version}`),
    h("td", {}, dateTime(r.created_ms)),
    h("td", {}, pct(r.availability_pct, 3)),
    h("td", {}, money(r.ld, r.currency)),
    h("td", { class: "files" }, ...(fileButton ? r.files.map((f) => fileButton(r, f.format))
      : [h("span", { class: "muted" }, "–")])),
    h("td", { class: "changes" }, r.version === 1 ? "first version"
      : r.differences.length ? h("ul", {}, ...r.differences.map((x) => h("li", {}, x.text)))
        : "no figure changed")));
}

/** Download a file of the API to the user's disk, saying how it went in `status`. */
function archivePanel(app: App, d: Disposer, c: ContractSummary): HTMLElement {
  const rows = h("tbody", {});
  const status = h("span", { class: "download-status", role: "status" });
  const fileButton = app.can(P.reports) ? (r: ArchivedReport, format: string) => {
    const file = r.files.find((f) => f.format === format);
    return h("button", { type: "button", class: "download secondary", "data-format": format,
      title: `sha256 ${file?.sha256 ?? ""}`, onclick: () => void saveFile(app.api, status,
        `/reports/archive/${encodeURIComponent(r.contract_id)}/${encodeURIComponent(r.period)}` +
        `/v${r.version}.${format}`, {}) }, format.toUpperCase());
  } : null;
  const table = h("table", { class: "periods archive-versions" },
    h("thead", {}, h("tr", {}, ...["period", "version", "generated", "availability", "LD",
                                   "files", "changes"].map((t) => h("th", {}, t)))), rows);
  const empty = h("p", { class: "empty" }, "No archived reports yet: a period's report is " +
    "generated once it has closed and its settlement delay has passed.");
  const el = h("section", { class: "archive", "aria-label": "report archive" },
    h("h3", {}, "Archive"), empty, table, status);
  table.hidden = true;
  poll(d, () => app.api.get<ArchivedReport[]>("/reports/archive", { contract_id: c.id }),
    (items) => {
      rows.replaceChildren(...archiveRows(items, fileButton));
      table.hidden = items.length === 0;
      empty.hidden = items.length > 0;
    }, 300_000, (err) => {
      text(empty, `Archive unavailable: ${err instanceof ApiError ? err.detail : String(err)}`);
    });
  return el;
}

function contractCard(app: App, d: Disposer, c: ContractSummary): HTMLElement {
  const chartEl = h("div", { class: "chart compliance", "aria-label": "compliance per period" });
  const rows = h("tbody", {});
  const live = h("div", { class: "kpis contract-live" });
  const badge = h("span", { class: "chip warning" });
  const periodSelect = h("select", { class: "report-period", "aria-label": "report period" });
  const status = h("span", { class: "download-status", role: "status" });
  const monitored = h("p", { class: "monitored-from", hidden: true });
  let chart: ComplianceChart | null = null;
  let periods: PeriodEvaluation[] | null = null;
  let currentRange = "";

  void import("../charts").then((charts) => {
    if (d.disposed) return;
    chart = charts.complianceChart(chartEl);
    d.add(() => chart?.dispose());
    if (periods) chart.update(periods); // the figures came first
  });

  const download = (format: "pdf" | "xlsx" | "csv") => saveFile(app.api, status,
    "/reports/compliance", { contract_id: c.id, period: periodSelect.value, format });

  const reports = app.can(P.reports) ? h("div", { class: "report" },
    h("span", {}, "Compliance report"), periodSelect,
    ...(["pdf", "xlsx", "csv"] as const).map((f) => h("button", { type: "button",
      class: `download secondary`, "data-format": f, onclick: () => void download(f) },
      f.toUpperCase())), status) : null;

  const el = h("article", { class: "panel contract-card", "data-contract": c.id },
    h("header", {}, h("h2", {}, `${c.id} `, badge),
      h("div", { class: "meta" }, h("a", { href: siteHref(c.site_id) }, c.site_id),
        ` · ${c.customer} · measured per ${c.measurement_period.replace("_", " ")} · ` +
        `from ${c.terms.start} for ${c.terms.term_years} years`)),
    live,
    h("div", { class: "contract-body" }, chartEl,
      h("table", { class: "periods" },
        h("thead", {}, h("tr", {}, ...["period", "actual", "guaranteed", "shortfall", "LD",
                                       "bonus"].map((t) => h("th", {}, t)))), rows)),
    monitored,
    h("p", { class: "chart-note" }, "Periods from the final history, as the compliance report " +
      "has them: a gap in the history after monitoring began counts by the contract's " +
      `data-gap policy (${String((c.terms.availability as { data_gap_policy?: string }
        | undefined)?.data_gap_policy ?? "see the contract")}); the open period's live ` +
      "figures are above."),
    reports, exclusionsPanel(app, d, c), archivePanel(app, d, c));

  const drawLive = () => {
    const snap = app.fleet.get(c.site_id)?.snapshot;
    const k = snap?.contract;
    if (!k || k.contract_id !== c.id) {
      live.replaceChildren(h("p", { class: "empty" }, "No live figures yet."));
      updateWarningBadge(badge, siteContract(snap));
      return null;
    }
    updateWarningBadge(badge, { kind: "contract", kpis: k });
    live.replaceChildren(
      h("div", { class: "kpi" }, h("span", { class: "value" }, pct(k.actual_pct)),
        h("span", { class: "label" }, `${k.period} so far (guaranteed ${pct(k.guaranteed_pct)})`)),
      h("div", { class: "kpi" }, h("span", { class: "value" }, pct(k.projected_pct)),
        h("span", { class: "label" }, "projected at period end")),
      h("div", { class: "kpi" }, h("span", { class: "value" },
        money(k.ld_year_to_date, k.currency)), h("span", { class: "label" },
        `LD, contract year ${k.contract_year} to date`)),
      h("div", { class: "kpi" }, h("span", { class: "value" }, money(k.projected_ld, k.currency)),
        h("span", { class: "label" }, "projected LD")));
    return k;
  };

  const refresh = async () => {
    const k = drawLive();
    if (!k) return;
    const labels = contractYearPeriods(c.terms.start, c.measurement_period, k.contract_year,
                                       k.period);
    const range = rangeLabel(labels);
    if (range !== currentRange) {
      currentRange = range;
      periodSelect.replaceChildren(...[...labels].reverse().map((l) =>
        h("option", { value: l }, l)));
    }
    const answer = await app.api.get<Compliance>(`/contracts/${encodeURIComponent(c.id)}/compliance`,
                                                 { period: range });
    if (d.disposed) return;
    const list = (periods = answer.evaluation.periods);
    chart?.update(list);
    const cur = answer.evaluation.currency;
    // Time before monitoring began is no data, never billed: say so, not "0 %".
    const since = answer.monitored_from_ms;
    attr(monitored, "hidden", since == null ? "" : null);
    text(monitored, since == null ? "" : `Monitored since ${dateTime(since)}: earlier time ` +
      "has no data and is not billed.");
    rows.replaceChildren(...list.map((p) => h("tr", { "data-period": p.period },
      h("td", {}, p.period), h("td", { class: p.availability_pct == null ? "no-data" : null },
        p.availability_pct == null ? "no data" : pct(p.availability_pct, 3)),
      h("td", {}, pct(p.guaranteed_pct)), h("td", {}, pct(p.shortfall_pct, 3)),
      h("td", {}, money(p.ld, cur)), h("td", {}, money(p.bonus, cur)))),
      h("tr", { class: "total" }, h("td", {}, "contract year so far"), h("td", {}), h("td", {}),
        h("td", {}), h("td", {}, money(list.reduce((s, p) => s + p.ld, 0), cur)),
        h("td", {}, money(list.reduce((s, p) => s + p.bonus, 0), cur))));
  };
  poll(d, refresh, () => {}, 60_000);
  d.add(app.fleet.changed.on((id) => { if (id === c.site_id) drawLive(); }));
  return el;
}

export function contractsView(app: App): View {
  const d = new Disposer();
  const list = h("div", { class: "contracts" });
  const el = h("div", { class: "view contracts-view" },
    h("header", { class: "view-head" }, h("h1", { id: "view-title" }, "Contracts"),
      h("p", { class: "meta" }, "Actual against guaranteed availability per measurement " +
        "period of the current contract year (final history), the open period live, LD.")),
    list);
  if (!app.can(P.contracts)) {
    list.append(h("p", { class: "empty" }, `Your role (${app.me.role}) may not see contracts.`));
    return { el, destroy: () => d.dispose() };
  }
  app.api.get<ContractSummary[]>("/contracts").then((contracts) => {
    if (d.disposed) return;
    list.replaceChildren(...(contracts.length ? contracts.map((c) => contractCard(app, d, c))
      : [h("p", { class: "empty" }, "No contracts on your sites.")]));
  }).catch((err) => {
    list.replaceChildren(h("p", { class: "empty" }, `Contracts unavailable: ${
      err instanceof ApiError ? err.detail : String(err)}`));
  });
  return { el, destroy: () => d.dispose() };
}
