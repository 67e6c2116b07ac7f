// bessmon dashboard (walking skeleton): one tile per site, live over /api/v1/ws.
"use strict";

const STALE_AFTER_MS = 15000;
const sitesEl = document.getElementById("sites");
const connectionEl = document.getElementById("connection");
const tiles = new Map(); // site id -> {el, data}

function token() {
  // The link printed by `bessmon up` carries the token in the fragment (never sent to a server).
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("bessmon.token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("bessmon.token");
}

function setConnection(state, text) {
  connectionEl.dataset.state = state;
  connectionEl.textContent = text;
}

function pct(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2) + " %";
}

function tileFor(site) {
  let tile = tiles.get(site.id);
  if (!tile) {
    const el = document.getElementById("site-tile").content.firstElementChild.cloneNode(true);
    el.dataset.site = site.id;
    sitesEl.appendChild(el);
    tile = { el, data: null };
    tiles.set(site.id, tile);
  }
  const el = tile.el;
  el.querySelector(".name").textContent = site.name || site.id;
  el.querySelector(".meta").textContent = `${site.customer} · ${site.region}`;
  return tile;
}

function render(snapshot) {
  const tile = tileFor({ id: snapshot.site_id, name: snapshot.name,
                         customer: snapshot.customer, region: snapshot.region });
  tile.data = snapshot;
  const el = tile.el;
  el.querySelector(".avail-hour").textContent = pct(snapshot.windows.last_hour);
  el.querySelector(".avail-today").textContent = pct(snapshot.windows.today);
  const c = snapshot.contract;
  el.querySelector(".contract").textContent = c
    ? `${c.contract_id} ${c.period}: ${pct(c.actual_pct)} vs ${c.guaranteed_pct.toFixed(2)} %` +
      ` guaranteed · projected ${pct(c.projected_pct)} · ${c.warning_level.replace("_", " ")}`
    : "";
  el.dataset.warning = c ? c.warning_level : "none";
  const counts = snapshot.units_by_state;
  const level = counts.unavailable > 0 ? "unavailable"
    : counts.derated > 0 ? "derated"
    : counts.unknown > 0 ? "unknown" : "available";
  el.dataset.level = level;
  const unitsEl = el.querySelector(".units");
  unitsEl.replaceChildren(...snapshot.units.map((u) => {
    const box = document.createElement("div");
    box.className = "unit";
    box.dataset.unit = u.id;
    box.dataset.state = u.state;
    box.title = `${u.id}: ${u.state}${u.cause ? " (" + u.cause + ")" : ""}` +
      ` — last hour ${pct(u.last_hour_pct)}, today ${pct(u.today_pct)}`;
    return box;
  }));
  el.querySelector(".counts").textContent =
    `${counts.available} available · ${counts.derated} derated · ` +
    `${counts.unavailable} unavailable · ${counts.unknown} unknown`;
  refreshFreshness(tile);
}

function refreshFreshness(tile) {
  if (!tile.data) return;
  const age = Date.now() - tile.data.ts_ms;
  const stale = age > STALE_AFTER_MS;
  tile.el.classList.toggle("stale", stale);
  const f = tile.el.querySelector(".freshness");
  f.classList.toggle("stale", stale);
  f.textContent = stale ? `STALE — last data ${Math.round(age / 1000)} s ago`
                        : `updated ${Math.max(0, Math.round(age / 1000))} s ago`;
}

async function loadSites(tok) {
  const response = await fetch("/api/v1/sites", { headers: { Authorization: `Bearer ${tok}` } });
  if (response.status === 401) throw new Error("denied");
  for (const site of (await response.json()).items) {
    tileFor(site);
    if (site.availability) render(site.availability);
  }
}

let retryMs = 500;
function connect(tok) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`);
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: tok }));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "ready") {
      retryMs = 500;
      setConnection("live", "live");
      ws.send(JSON.stringify({ type: "subscribe", channel: "fleet" }));
    } else if (msg.type === "snapshot") {
      (msg.data || []).forEach(render);
    } else if (msg.type === "update") {
      render(msg.data);
    }
  };
  ws.onclose = (event) => {
    if (event.code === 4401) {
      setConnection("denied", "not signed in");
      document.getElementById("login").hidden = false;
      return;
    }
    setConnection("reconnecting", "reconnecting…");
    setTimeout(() => connect(tok), retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

function main() {
  const tok = token();
  if (!tok) {
    setConnection("denied", "not signed in");
    document.getElementById("login").hidden = false;
    return;
  }
  loadSites(tok).catch(() => {}).finally(() => connect(tok));
  setInterval(() => tiles.forEach(refreshFreshness), 1000);
}

main();
