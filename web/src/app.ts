// What every view is given: the REST client, the live feed, the caller and the shared
// stores (fleet, alarms, warnings), the server's clock and a once-a-second tick.
import type { AlarmStore } from "./alarms";
import type { Api, Session } from "./api";
import type { FleetStore } from "./fleet";
import type { ServerClock } from "./freshness";
import type { LiveClient } from "./live";
import type { Route } from "./router";
import type { Signal } from "./signal";
import type { Me } from "./types";
import type { WarningStore } from "./warnings";

export const P = {
  read: "read",
  acknowledge: "alarms.acknowledge",
  shelve: "alarms.shelve",
  contracts: "contracts.read",
  reports: "reports.export",
  control: "control.command",
  notify: "notify.manage",
  stack: "stack.read",
} as const;

export interface App {
  api: Api;
  session: Session;
  live: LiveClient;
  me: Me;
  fleet: FleetStore;
  alarms: AlarmStore;
  warnings: WarningStore;
  clock: ServerClock;
  tick: Signal<number>; // every second, with the server's time
  can(permission: string): boolean;
}

export interface View {
  el: HTMLElement;
  destroy(): void;
}

export type ViewFactory = (app: App, route: Route) => View;

/** Calls to undo when a view goes: listeners, timers, subscriptions, charts. */
export class Disposer {
  private readonly undo: (() => void)[] = [];
  disposed = false;

  add(fn: () => void): void {
    if (this.disposed) fn();
    else this.undo.push(fn);
  }

  interval(fn: () => void, ms: number): void {
    const id = setInterval(fn, ms);
    this.add(() => clearInterval(id));
  }

  dispose(): void {
    this.disposed = true;
    for (const fn of this.undo.splice(0).reverse()) {
      try {
        fn();
      } catch (err) {
        console.error(err);
      }
    }
  }
}

/** Poll a REST resource while the view lives: at once, then every `ms`; errors leave the
 * last answer in place (the API may be restarting). */
export function poll<T>(d: Disposer, fetcher: () => Promise<T>, apply: (value: T) => void,
                        ms: number, onError?: (err: unknown) => void): () => void {
  let running = false;
  const run = async () => {
    if (running || d.disposed) return;
    running = true;
    try {
      const value = await fetcher();
      if (!d.disposed) apply(value);
    } catch (err) {
      if (!d.disposed) onError?.(err);
    } finally {
      running = false;
    }
  };
  void run();
  d.interval(() => void run(), ms);
  return () => void run();
}
