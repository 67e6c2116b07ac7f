// The stack's health in the top bar, for admins: the parts `bessmon up` restarted after they
// died (GET /api/v1/stack). Nothing shows while every part runs as started; a part waiting
// to start again shows as restarting, one that came back as restarted N×. Pure: the shell
// draws what this returns.
import type { StackHealth } from "./types";

export interface StackBadge {
  state: "restarting" | "restarted";
  text: string;
  title: string; // every part that ever died: its restarts and how it last exited
}

function exit(status: number | null): string {
  if (status === null) return "";
  return status < 0 ? `, killed by signal ${-status}` : `, exit status ${status}`;
}

export function stackBadge(health: StackHealth): StackBadge | null {
  const died = health.parts.filter((p) => p.restarts > 0 || p.state === "restarting");
  if (!health.supervised || died.length === 0) return null;
  const restarting = died.filter((p) => p.state === "restarting");
  const title = died.map((p) => `${p.name}: ${p.state}, restarted ${p.restarts}×` +
    exit(p.last_exit ?? null)).join("\n");
  if (restarting.length) {
    return { state: "restarting", title,
             text: `⟳ ${restarting.map((p) => p.name).join(", ")} restarting` };
  }
  const total = died.reduce((n, p) => n + p.restarts, 0);
  const names = died.map((p) => p.name).join(", ");
  return { state: "restarted", title, text: `${names} restarted ${total}×` };
}
