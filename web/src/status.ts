// Status colours and the rules that pick them — the one place they are defined. The CSS
// reads them as custom properties (`applyPalette`), the charts from these tables.
import { SEVERITIES } from "./generated/constants";
import type { Episode, Severity, State, WarningLevel } from "./types";

export const STATE_COLOURS: Record<State, string> = {
  available: "#2ea043",
  derated: "#e3b341",
  unavailable: "#ff5147",
  unknown: "#768390",
};

export const WARNING_COLOURS: Record<WarningLevel, string> = {
  ok: "#3fb950",
  watch: "#e3b341",
  ld_risk: "#ff5147",
};

export const SEVERITY_COLOURS: Record<Severity, string> = {
  critical: "#ff3b30",
  major: "#ff8c1a",
  minor: "#e3b341",
  warning: "#58a6ff",
};

export const THEME = {
  bg: "#05080c",
  panel: "#0f151d",
  panel2: "#161e29",
  border: "#2b3542",
  text: "#f0f6fc",
  muted: "#9fb0c0",
  accent: "#58a6ff",
  stale: "#a371f7",
};

export const STATE_LABELS: Record<State, string> = {
  available: "available",
  derated: "derated",
  unavailable: "unavailable",
  unknown: "unknown",
};

export const WARNING_LABELS: Record<WarningLevel, string> = {
  ok: "OK",
  watch: "WATCH",
  ld_risk: "LD RISK",
};

const STATE_RANK: Record<State, number> = { available: 0, unknown: 1, derated: 2, unavailable: 3 };
const SEVERITY_RANK = Object.fromEntries(SEVERITIES.map((s, i) => [s, i])) as Record<Severity, number>;
const WARNING_RANK: Record<WarningLevel, number> = { ok: 0, watch: 1, ld_risk: 2 };

/** The worse of two states: unavailable > derated > unknown > available. */
export function worseState(a: State, b: State): State {
  return STATE_RANK[b] > STATE_RANK[a] ? b : a;
}

/** A site's colour from its units: the worst state any unit is in ("available" when none). */
export function siteLevel(unitsByState: Partial<Record<State, number>>): State {
  if ((unitsByState.unavailable ?? 0) > 0) return "unavailable";
  if ((unitsByState.derated ?? 0) > 0) return "derated";
  if ((unitsByState.unknown ?? 0) > 0) return "unknown";
  return "available";
}

/** A state, or unknown for one not reported yet. */
export function stateOf(state: string | null | undefined): State {
  return state === "available" || state === "derated" || state === "unavailable"
    ? state : "unknown";
}

export function severityRank(s: Severity): number {
  return SEVERITY_RANK[s] ?? 9;
}

export function warningRank(w: WarningLevel): number {
  return WARNING_RANK[w] ?? 0;
}

/** How a window's availability reads against the guarantee: met, within the warning margin
 * above it, or below it (null: nothing to compare). */
export function againstGuarantee(valuePct: number | null | undefined,
                                 guaranteedPct: number | null | undefined,
                                 marginPct = 0.5): WarningLevel | null {
  if (valuePct == null || guaranteedPct == null) return null;
  if (valuePct < guaranteedPct) return "ld_risk";
  if (valuePct < guaranteedPct + marginPct) return "watch";
  return "ok";
}

/** The palette as CSS custom properties (--state-available, --warning-ld_risk, …). */
export function paletteProperties(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(STATE_COLOURS)) out[`--state-${k}`] = v;
  for (const [k, v] of Object.entries(WARNING_COLOURS)) out[`--warning-${k}`] = v;
  for (const [k, v] of Object.entries(SEVERITY_COLOURS)) out[`--severity-${k}`] = v;
  for (const [k, v] of Object.entries(THEME)) out[`--${k}`] = v;
  return out;
}

export function applyPalette(root: HTMLElement): void {
  for (const [k, v] of Object.entries(paletteProperties())) root.style.setProperty(k, v);
}

/** The availability drops to list: the open ones (from the detail) and the history's, each
 * once, still open first, then newest first, at most `limit`. */
export function dropsToShow(open: Episode[], history: Episode[], limit = 50): Episode[] {
  const seen = new Set(open.map((e) => e.episode_id));
  return [...open, ...history.filter((e) => !seen.has(e.episode_id))]
    .sort((a, b) => Number(b.end_ms === null) - Number(a.end_ms === null) ||
      b.start_ms - a.start_ms).slice(0, limit);
}
