// The safety view's rules, apart from the DOM so they are tested alone: how a unit's control
// state is shown, which commands a role may send in which state, how a command and its
// outcome read, whether the control loop is alive, and what a valid reason is.
import { ago, num, tagLabel } from "./format";
import type { ActiveLimit, CommandSummary, UnitControlView } from "./types";

export type UnitState = UnitControlView["state"];
export type Command = "estop" | "reset";

export const UNIT_STATES: readonly UnitState[] = ["RUNNING", "IDLE", "BOOT", "ERROR", "STOPPED"];

/** Colour by state: RUNNING green, IDLE grey, BOOT blue, ERROR red, STOPPED dark red. */
export const STATE_COLOURS: Record<UnitState, string> = {
  RUNNING: "#2ea043", IDLE: "#768390", BOOT: "#1f6feb", ERROR: "#ff3b30", STOPPED: "#8b1a1a",
};

export const STATE_HELP: Record<UnitState, string> = {
  RUNNING: "running under control",
  IDLE: "ready, not running",
  BOOT: "not reported by the control loop yet",
  ERROR: "stopped by a fault or a critical breach: reset to clear",
  STOPPED: "stopped by an operator or an emergency stop: reset to clear",
};

export const MAX_REASON = 500;
export const SHOWN_COMMANDS = 5;

/** The commands a unit's card offers: none without `control.command`; an emergency stop in
 * every state (stopping twice is harmless, not stopping is not); reset once it is stopped
 * by a fault or an operator. */
export function unitCommands(canCommand: boolean, state: UnitState): Command[] {
  if (!canCommand) return [];
  return state === "ERROR" || state === "STOPPED" ? ["estop", "reset"] : ["estop"];
}

/** The site's emergency stop (every unit at once): the same permission, any state. */
export function siteCanStop(canCommand: boolean, units: number): boolean {
  return canCommand && units > 0;
}

/** The reason as sent (trimmed), or null while it is empty or too long. */
export function validReason(text: string): string | null {
  const reason = text.trim();
  return reason.length >= 1 && reason.length <= MAX_REASON ? reason : null;
}

export function modeText(mode: UnitControlView["mode"]): string {
  return mode.replace("_", " ");
}

export function derateText(derate: number, powerLimitKw: number | null): string {
  const cap = derate >= 1 ? "full power" : `derated to ${Math.round(derate * 100)} %`;
  return powerLimitKw == null ? cap : `${cap} · limit ${num(powerLimitKw, 0)} kW`;
}

export function freshText(fresh: boolean): string {
  return fresh ? "telemetry fresh" : "telemetry stale";
}

export function limitsText(limits: readonly ActiveLimit[]): string {
  return limits.length === 0 ? "none"
    : limits.map((l) => `${l.severity}: ${l.breach_id.split(":")[0] ?? l.breach_id}`).join(", ");
}

export type OutcomeClass = "pending" | "ok" | "bad";

export function outcomeClass(c: CommandSummary): OutcomeClass {
  if (c.outcome == null) return "pending";
  return c.outcome === "accepted" || c.outcome === "written" ? "ok" : "bad";
}

/** "pending", "written", "refused: an interlock forbids start" … */
export function outcomeText(c: CommandSummary): string {
  if (c.outcome == null) return "pending";
  const by = c.by ? ` by ${c.by === "control" ? "the control loop" : "the connector"}` : "";
  return `${c.outcome}${by}${c.detail ? `: ${c.detail}` : ""}`;
}

/** What the device read back after the writes: "Active power setpoint kw 0 · …". */
export function readBackText(readBack: Record<string, number>): string {
  const entries = Object.entries(readBack).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? "" : entries.map(([tag, v]) => `${tagLabel(tag)} ${num(v, 1)}`)
    .join(" · ");
}

export function commandTitle(c: CommandSummary): string {
  return c.kind === "estop" ? "EMERGENCY STOP" : c.kind.toUpperCase();
}

/** The newest commands first (as the loop keeps them), at most `limit`. */
export function recentCommands(view: UnitControlView, limit = SHOWN_COMMANDS): CommandSummary[] {
  const list = view.commands.length ? [...view.commands]
    : view.last_command ? [view.last_command] : [];
  return list.sort((a, b) => b.ts_ms - a.ts_ms).slice(0, limit);
}

export function loopText(alive: boolean, beatMs: number | null, nowMs: number): string {
  if (alive) return "control loop online";
  return beatMs == null ? "control loop offline — never seen"
    : `control loop offline — last seen ${ago(nowMs - beatMs)}`;
}

/** The sentence shown after a command was sent (or not). */
export function sentText(kind: Command, unitIds: readonly string[],
                         commandIds: readonly string[]): string {
  const what = kind === "estop" ? "Emergency stop" : "Reset";
  if (unitIds.length === 1) return `${what} sent to ${unitIds[0]}: command ${commandIds[0]}`;
  return `${what} sent to ${unitIds.length} units: commands ${commandIds.join(", ")}`;
}
