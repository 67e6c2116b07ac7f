// Desktop notifications (the browser's Notification API) of new critical alarms, raised
// from the live alarms feed while a dashboard tab is open — only once the user allowed them
// (the "Desktop alerts" button: the browser asks) and has not turned them off here. Which
// alarms and what they say: desktop-alerts.ts.
import type { App } from "./app";
import { alertContent, alertsOn, buttonState, NewCriticals, type Permission,
         type Preference } from "./desktop-alerts";
import { attr, h, text } from "./dom";
import { Signal } from "./signal";
import type { AlarmView } from "./types";

const PREFERENCE_KEY = "bessmon.desktop-alerts";
/** The permission or the preference changed (every button on the page redraws). */
export const desktopChanged = new Signal<void>();

export function permission(): Permission {
  if (typeof Notification === "undefined") return "unsupported";
  return Notification.permission as Permission;
}

export function preference(): Preference {
  try {
    return localStorage.getItem(PREFERENCE_KEY) === "off" ? "off" : "on";
  } catch {
    return "on";
  }
}

function setPreference(value: Preference): void {
  try {
    localStorage.setItem(PREFERENCE_KEY, value);
  } catch { /* storage refused: the choice lasts this page */ }
  desktopChanged.emit();
}

async function enable(): Promise<void> {
  setPreference("on");
  if (typeof Notification === "undefined") return;
  if (Notification.permission === "default") await Notification.requestPermission();
  desktopChanged.emit();
}

/** "Desktop alerts: enable" — asks the browser; then "on (turn off)" or why it cannot. */
export function desktopAlertsButton(): { el: HTMLElement; destroy(): void } {
  const button = h("button", { type: "button", class: "desktop-alerts secondary" });
  const draw = () => {
    const state = buttonState(permission(), preference());
    text(button, state.label);
    button.disabled = state.action === null;
    attr(button, "data-active", state.active ? "yes" : "no");
  };
  button.addEventListener("click", () => {
    const { action } = buttonState(permission(), preference());
    if (action === "enable") void enable();
    else if (action === "disable") setPreference("off");
  });
  const off = desktopChanged.on(draw);
  draw();
  return { el: button, destroy: off };
}

function show(a: AlarmView): void {
  const c = alertContent(a);
  try {
    const n = new Notification(c.title, { body: c.body, tag: c.tag, requireInteraction: true });
    n.onclick = () => {
      window.focus();
      location.hash = c.href;
      n.close();
    };
  } catch (err) {
    // Some browsers allow notifications only from a service worker: the banner remains.
    console.warn("desktop notification refused", err);
  }
}

/** Watch the live alarms for the page's life; returns the unsubscribe. */
export function watchCriticals(app: App): () => void {
  const tracker = new NewCriticals();
  return app.alarms.changed.on(() => {
    if (!app.alarms.loaded) return;
    const fresh = tracker.fresh(app.alarms.list(app.clock.now()));
    if (fresh.length === 0 || !alertsOn(permission(), preference())) return;
    for (const a of fresh) show(a);
  });
}
