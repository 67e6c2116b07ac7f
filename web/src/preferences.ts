// A user's own notification preferences (GET/PUT/DELETE /notify/preferences) as the
// Notifications page's form holds them: pure, so that it is tested without a DOM.
import type { NotifyPreferences } from "./generated/api";

export const SEVERITY_CHOICES = ["critical", "major", "minor", "warning"] as const;
export const CHANNEL_CHOICES = ["email", "webhook", "slack", "teams"] as const;
export type SeverityChoice = (typeof SEVERITY_CHOICES)[number];
export type ChannelChoice = (typeof CHANNEL_CHOICES)[number];

/** What the form shows: quiet hours as two times ("" for none), text as typed. */
export interface PreferencesForm {
  severities: SeverityChoice[];
  channels: ChannelChoice[];
  quietFrom: string; // HH:MM, or ""
  quietTo: string;
  tz: string;
  email: string;
}

/** The PUT body (the answer's fields but `source`). */
export type PreferencesBody = Omit<NotifyPreferences, "source">;

/** The form for preferences the API answered. The time zone is the browser's while the
 * defaults apply (the defaults' UTC is no one's choice), else the one saved. */
export function formOf(p: NotifyPreferences, browserTz: string): PreferencesForm {
  const [quietFrom, quietTo] = p.quiet_hours ? p.quiet_hours.split("-") : ["", ""];
  return {
    severities: SEVERITY_CHOICES.filter((s) => p.severities.includes(s)),
    channels: CHANNEL_CHOICES.filter((c) => p.channels.includes(c)),
    quietFrom: quietFrom ?? "",
    quietTo: quietTo ?? "",
    tz: p.source === "default" && !p.quiet_hours ? browserTz : p.tz,
    email: p.email ?? "",
  };
}

/** The body to PUT, or why not (what the server would refuse anyway, said before asking
 * it; everything else is the server's to judge). */
export function bodyOf(f: PreferencesForm): { body: PreferencesBody } | { problem: string } {
  const from = f.quietFrom.trim();
  const to = f.quietTo.trim();
  if (!f.severities.length) return { problem: "Choose at least one severity." };
  if (!f.channels.length) return { problem: "Choose at least one channel." };
  if (Boolean(from) !== Boolean(to)) {
    return { problem: "Quiet hours need both a start and an end (or neither)." };
  }
  return {
    body: {
      severities: [...f.severities],
      channels: [...f.channels],
      quiet_hours: from ? `${from}-${to}` : null,
      tz: f.tz.trim() || "UTC",
      email: f.email.trim() || null,
    },
  };
}

/** A caution about a form the server takes but that may not do what its user thinks. */
export function caution(f: PreferencesForm): string {
  if (!f.channels.includes("email")) {
    return "Without e-mail nothing reaches you: what is sent to you is an e-mail to your " +
      "address (channels of the rules that go to a team are not yours to choose).";
  }
  return "";
}

/** Where the preferences in force come from, in a sentence. */
export function sourceText(p: NotifyPreferences): string {
  switch (p.source) {
    case "own":
      return "Your own preferences are in force.";
    case "rules":
      return "An administrator's preferences for you (the rules file) are in force; " +
        "saving makes them your own.";
    default:
      return "The defaults are in force: every severity, every channel, at any hour.";
  }
}

/** The server's refusal without its "invalid request: body." prefix: "tz: unknown …". */
export function problemText(detail: string): string {
  return detail.replace(/^invalid request: body\./, "");
}
