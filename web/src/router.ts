// Hash routes, so a wall display can be pointed at a URL:
//   #/  #/site/<id>  #/asset/<id>  #/control/<site id>  #/alarms  #/quality  #/contracts
//   #/repair  #/notifications  #/wall  #/login  #/analytics/historian  #/analytics/faults
//   #/analytics/battery-health  #/analytics/comms  #/analytics/vendors
// Query parameters after "?" (#/wall?every=20). A `token=` parameter (the link `make up`
// prints: #token=…) is taken out of the address and kept for the tab.

export type RouteName = "overview" | "site" | "asset" | "control" | "alarms" | "quality"
  | "contracts" | "repair" | "notifications" | "wall" | "login" | "historian" | "faults"
  | "battery-health" | "comms" | "vendors";

export interface Route {
  name: RouteName;
  id: string | null;
  params: Record<string, string>;
}

export interface ParsedHash {
  route: Route;
  token: string | null;
  clean: string; // the hash without the token
}

const WITH_ID: Partial<Record<string, RouteName>> = { site: "site", asset: "asset",
  control: "control" };
const PLAIN: Partial<Record<string, RouteName>> = { "": "overview", alarms: "alarms",
  quality: "quality", contracts: "contracts", repair: "repair", notifications: "notifications",
  wall: "wall",
  login: "login" };
// The analytics pages, under #/analytics/<page>.
const ANALYTICS: Partial<Record<string, RouteName>> = { historian: "historian",
  faults: "faults", "battery-health": "battery-health", comms: "comms", vendors: "vendors" };
export const ANALYTICS_ROUTES: readonly RouteName[] = ["historian", "faults", "battery-health",
  "comms", "vendors"];

export function parseHash(hash: string): ParsedHash {
  let text = hash.startsWith("#") ? hash.slice(1) : hash;
  let token: string | null = null;
  // "#token=…" alone, or as a parameter of a route ("#/wall?token=…").
  const [pathPart = "", query = ""] = text.startsWith("token=") ? ["", text] : text.split("?", 2);
  const params: Record<string, string> = {};
  for (const pair of query.split("&")) {
    if (!pair) continue;
    const [k = "", v = ""] = pair.split("=", 2);
    const key = decodeURIComponent(k);
    const value = decodeURIComponent(v);
    if (key === "token") token = value;
    else params[key] = value;
  }
  const parts = pathPart.replace(/^\/+/, "").split("/").filter(Boolean).map(decodeURIComponent);
  let route: Route = { name: "overview", id: null, params };
  const head = parts[0] ?? "";
  const withId = WITH_ID[head];
  const plain = PLAIN[head];
  const analytics = head === "analytics" && parts.length === 2 ? ANALYTICS[parts[1] ?? ""]
    : undefined;
  if (analytics) route = { name: analytics, id: null, params };
  else if (withId && parts[1]) route = { name: withId, id: parts[1], params };
  else if (plain && parts.length <= 1) route = { name: plain, id: null, params };
  text = hashOf(route);
  return { route, token, clean: text };
}

export function hashOf(route: Route): string {
  const path = route.id !== null ? `#/${route.name}/${encodeURIComponent(route.id)}`
    : route.name === "overview" ? "#/"
    : ANALYTICS[route.name] ? `#/analytics/${route.name}` : `#/${route.name}`;
  const query = Object.entries(route.params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  return query ? `${path}?${query}` : path;
}

export function siteHref(id: string): string {
  return hashOf({ name: "site", id, params: {} });
}

export function assetHref(id: string): string {
  return hashOf({ name: "asset", id, params: {} });
}

/** A site's safety and control view. */
export function controlHref(siteId: string): string {
  return hashOf({ name: "control", id: siteId, params: {} });
}
