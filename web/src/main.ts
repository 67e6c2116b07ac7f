// The dashboard: sign in (or take `make up`'s token), load the caller and the fleet, open
// the live feed, and show the view the address names.
import "./style.css";
import { AlarmStore } from "./alarms";
import { Api, ApiError, Session } from "./api";
import { Disposer, type App, type View } from "./app";
import { h } from "./dom";
import { FleetStore, fromFleetChannel } from "./fleet";
import { ServerClock } from "./freshness";
import { LiveClient } from "./live";
import { parseHash, type Route } from "./router";
import { shell } from "./shell";
import { Signal } from "./signal";
import { applyPalette } from "./status";
import type { AlarmMessage, AlarmView, Alert, FleetOverview, FleetSite } from "./types";
import { alarmsView } from "./views/alarms";
import { assetView } from "./views/asset";
import { batteryHealthView } from "./views/battery-health";
import { commsView } from "./views/comms";
import { vendorsView } from "./views/vendors";
import { contractsView } from "./views/contracts";
import { controlView } from "./views/control";
import { faultsView } from "./views/faults";
import { historianView } from "./views/historian";
import { loginView } from "./views/login";
import { notificationsView } from "./views/notifications";
import { overviewView } from "./views/overview";
import { qualityView } from "./views/quality";
import { repairView } from "./views/repair";
import { siteView } from "./views/site";
import { wallView } from "./views/wall";
import { WarningStore } from "./warnings";

const root = document.getElementById("app") ?? document.body;
applyPalette(document.documentElement);
const session = new Session(sessionStorage);
const api = new Api(session);
let running: Disposer | null = null;

/** The route of the address, after taking a token out of it (kept for the tab). */
function takeRoute(): { route: Route; tokenChanged: boolean } {
  const parsed = parseHash(location.hash);
  let tokenChanged = false;
  if (parsed.token) {
    tokenChanged = parsed.token !== session.token;
    session.set(parsed.token);
    history.replaceState(null, "", `${location.pathname}${location.search}${parsed.clean}`);
  }
  return { route: parsed.route, tokenChanged };
}

function showLogin(message: string): void {
  running?.dispose();
  const d = (running = new Disposer());
  // Still signed in (the form was asked for by address) and sent elsewhere: back to the app.
  const away = () => {
    if (session.token && parseHash(location.hash).route.name !== "login") void boot();
  };
  window.addEventListener("hashchange", away);
  d.add(() => window.removeEventListener("hashchange", away));
  document.body.className = "";
  root.replaceChildren(loginView(api, message, (token) => {
    session.set(token);
    if (parseHash(location.hash).route.name === "login") {
      history.replaceState(null, "", `${location.pathname}${location.search}#/`);
    }
    void boot();
  }));
  (root.querySelector("input[name=username]") as HTMLInputElement | null)?.focus();
}

function viewFor(app: App, route: Route): View {
  switch (route.name) {
    case "site": return siteView(app, route.id ?? "");
    case "asset": return assetView(app, route.id ?? "");
    case "control": return controlView(app, route.id ?? "");
    case "alarms": return alarmsView(app);
    case "quality": return qualityView(app);
    case "contracts": return contractsView(app);
    case "repair": return repairView(app);
    case "notifications": return notificationsView(app);
    case "wall": return wallView(app, route.params);
    case "historian": return historianView(app, route.params);
    case "faults": return faultsView(app);
    case "battery-health": return batteryHealthView(app, route.params);
    case "comms": return commsView(app, route.params);
    case "vendors": return vendorsView(app, route.params);
    default: return overviewView(app);
  }
}

async function boot(): Promise<void> {
  running?.dispose();
  const d = (running = new Disposer());
  const { route } = takeRoute();
  if (route.name === "login" || !session.token) {
    showLogin("");
    return;
  }
  let loaded: [Awaited<ReturnType<Api["me"]>>, FleetOverview];
  try {
    loaded = await Promise.all([api.me(), api.get<FleetOverview>("/fleet")]);
  } catch (err) {
    if (d.disposed) return;
    if (err instanceof ApiError && err.status === 401) {
      session.set(null);
      showLogin("Your session has ended: sign in again.");
      return;
    }
    root.replaceChildren(h("p", { class: "boot-error", role: "status" },
      "The API is not reachable — retrying…"));
    const retry = setTimeout(() => void boot(), 3_000);
    d.add(() => clearTimeout(retry));
    return;
  }
  if (d.disposed) return;
  const [me, overview] = loaded;
  const fleet = new FleetStore();
  fleet.load(overview);
  const clock = new ServerClock();
  const tick = new Signal<number>();
  const permissions = new Set(me.permissions);
  let ui: ReturnType<typeof shell> | null = null;
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`;
  let wasLive = false;
  const live = new LiveClient({
    url: wsUrl,
    token: () => session.token,
    onState: (state) => {
      ui?.setConnection(state);
      if (state === "live") {
        if (wasLive) api.get<FleetOverview>("/fleet").then((o) => fleet.load(o)).catch(() => {});
        wasLive = true;
      }
    },
    onHeartbeat: (ts) => clock.observe(ts, Date.now()),
    onDenied: async () => {
      try {
        session.set(await api.refresh());
        return true;
      } catch {
        session.expired.emit();
        return false;
      }
    },
  });
  const app: App = { api, session, live, me, fleet, alarms: new AlarmStore(),
                     warnings: new WarningStore(), clock, tick,
                     can: (p) => permissions.has(p) };

  d.add(live.subscribe("fleet", {
    snapshot: (data) => fleet.replaceAll(((data as FleetSite[] | null) ?? [])
      .map(fromFleetChannel)),
    update: (data) => fleet.apply(fromFleetChannel(data as FleetSite)),
  }));
  d.add(live.subscribe("alarms", {
    snapshot: (data) => app.alarms.replace((data as AlarmView[] | null) ?? []),
    update: (data) => app.alarms.apply(data as AlarmMessage, clock.now()),
  }));
  d.add(live.subscribe("alerts", {
    snapshot: (data) => app.warnings.replace((data as Alert[] | null) ?? []),
    update: (data) => app.warnings.apply(data as Alert),
  }));
  live.start();
  d.add(() => live.stop());
  session.keepFresh(api);
  d.add(() => session.stopRefreshing());
  d.add(session.changed.on(() => live.reauth()));
  d.add(session.expired.on(() => {
    session.set(null);
    showLogin("Your session has ended: sign in again.");
  }));
  const online = () => live.retryNow();
  const offline = () => live.drop();
  window.addEventListener("online", online);
  window.addEventListener("offline", offline);
  d.add(() => window.removeEventListener("online", online));
  d.add(() => window.removeEventListener("offline", offline));
  d.interval(() => tick.emit(clock.now()), 1_000);

  ui = shell(app, () => {
    session.set(null);
    history.replaceState(null, "", `${location.pathname}${location.search}#/login`);
    showLogin("Signed out.");
  });
  d.add(() => ui?.destroy());
  ui.setConnection(live.state);
  root.replaceChildren(ui.el);

  let view: View | null = null;
  const render = () => {
    const { route: next, tokenChanged } = takeRoute();
    if (tokenChanged || next.name === "login") {
      void boot();
      return;
    }
    view?.destroy();
    view = viewFor(app, next);
    ui?.main.replaceChildren(view.el);
    ui?.setActive(next.name);
    document.body.classList.toggle("wall-mode", next.name === "wall");
    window.scrollTo(0, 0);
  };
  window.addEventListener("hashchange", render);
  d.add(() => window.removeEventListener("hashchange", render));
  d.add(() => view?.destroy());
  render();
}

void boot();
