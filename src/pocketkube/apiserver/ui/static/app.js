// The live map page: hash router, header controls, and the glue between the stream, the
// counters and the views. Routes: #/map/<ns>/<name>[/<port>], #/overview,
// #/describe/<resource>/<ns or _>/<name>.
import {enc, getJSON} from "./api.js";
import {Changes, diffModels} from "./changes.js";
import {loadDescribe} from "./describe.js";
import {h, setText} from "./dom.js";
import {Dots} from "./dots.js";
import {MapView} from "./map.js";
import {loadOverview} from "./overview.js";
import {Stream} from "./stream.js";
import {Counters} from "./stats.js";
import {EndpointTable} from "./table.js";
import {renderTryIt} from "./tryit.js";

const $ = (sel) => document.querySelector(sel);
const STATUS_TEXT = {live: "Live", reconnecting: "Reconnecting…", offline: "Offline"};

export function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  if (parts[0] === "overview") return {view: "overview"};
  if (parts[0] === "describe" && parts.length >= 4) {
    return {view: "describe", resource: parts[1], namespace: parts[2], name: parts.slice(3).join("/")};
  }
  if (parts[0] === "map" && parts.length >= 3 && parts[1] && parts[2]) {
    return {view: "map", namespace: parts[1], service: parts[2], port: parts[3] || ""};
  }
  return {view: "map", namespace: "", service: "", port: ""};
}

const ui = {
  status: $("#status"), statusText: $("#status .status-text"), dataplane: $("[data-testid=dataplane]"),
  server: $("#cluster-server"), picker: $("[data-testid=service-picker]"), portPicker: $("#port-picker"),
  portField: $("#port-field"), pause: $("[data-testid=pause]"), reset: $("[data-testid=reset-baseline]"),
  error: $("[data-testid=error]"), live: $("[data-testid=live-region]"), mapControls: $("#map-controls"),
  views: {map: $("#view-map"), overview: $("#view-overview"), describe: $("#view-describe")},
};

const counters = new Counters();
const mapView = new MapView($("[data-testid=map]"));
const table = new EndpointTable($("[data-testid=endpoint-table]"));
const dots = new Dots($("[data-testid=dot-scale]"));
const changes = new Changes($("[data-testid=changes]"), ui.live);
const announce = (text) => changes.announce(text);
let model = null;
let streamKey = null;   // "ns/name/port" the stream was opened for
let paused = false;
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

function setStatus(state) {
  const before = ui.status.dataset.state;
  ui.status.dataset.state = state;
  setText(ui.statusText, STATUS_TEXT[state]);
  // Say it when the connection stays lost for a while (the server closes every stream after
  // 30 min; a quick reconnect is not news), and when it is back after that; never on first connect.
  if (before === state || !hadSnapshot) return;
  clearTimeout(lostTimer);
  if (state === "live") {
    if (lostAnnounced) announce("Live again");
    lostAnnounced = false;
  } else {
    lostTimer = setTimeout(() => { lostAnnounced = true; announce(`Connection: ${STATUS_TEXT[ui.status.dataset.state]}`); }, LOST_AFTER_MS);
  }
}
const LOST_AFTER_MS = 3000;
let hadSnapshot = false;
let lostTimer = 0;
let lostAnnounced = false;

function motionAllowed() {
  return !paused && !reducedMotion.matches;
}
function applyMotion() {
  dots.setEnabled(motionAllowed());
  mapView.motion = motionAllowed();
}
reducedMotion.addEventListener("change", applyMotion);
applyMotion();

function showError(text) {
  setText(ui.error, text || "");
  ui.error.hidden = !text;
}

function sameService(a, b) {
  return a?.service && b?.service && a.service.namespace === b.service.namespace && a.service.name === b.service.name
    && (a.service.port?.name ?? a.service.port?.port) === (b.service.port?.name ?? b.service.port?.port);
}

function applyModel(next, {fromSnapshot = false} = {}) {
  if (sameService(model, next)) changes.add(diffModels(model, next));
  else if (next.service && model?.service && fromSnapshot) changes.add([`Showing ${next.service.namespace}/${next.service.name}`]);
  const started = performance.now();
  model = next;
  showError(next.error);
  setText(ui.dataplane, `data plane: ${next.cluster?.dataplane || "unknown"}`);
  ui.dataplane.dataset.dataplane = next.cluster?.dataplane || "";
  setText(ui.server, next.cluster?.server || "");
  mapView.render(next, counters);
  dots.attach(mapView.dotsLayer);
  table.render(next, counters);
  renderTryIt($("#tryit"), next, announce);
  syncPicker();
  document.title = next.service ? `${next.service.name} · pocketkube` : "pocketkube · live map";
  measure("pk-render", started);
}

/** The latest duration of some page work, for benchmarks (only the latest: no growth over hours). */
function measure(name, start) {
  performance.clearMeasures(name);
  performance.measure(name, {start, end: performance.now()});
}

function onSnapshot(data) {
  hadSnapshot = true;
  counters.snapshot(data.traffic);
  showTrafficNote(data.traffic);
  applyModel(data.model, {fromSnapshot: true});
}

/** Says which nodes' counters are missing, so low numbers are never silently wrong. */
export function trafficNote(traffic) {
  if (!traffic) return "";
  const missing = traffic.unavailableNodes || [];
  if (missing.length) {
    return `No traffic counts from ${missing.join(", ")}: ${missing.length === 1 ? "its agent" : "their agents"} did not answer, so totals may be low.`;
  }
  return traffic.available === false ? "Traffic counts are not available yet." : "";
}

function showTrafficNote(traffic) {
  const note = $("[data-testid=traffic-note]");
  const text = trafficNote(traffic);
  setText(note, text);
  note.hidden = !text;
}

function onTraffic(traffic) {
  const started = performance.now();
  showTrafficNote(traffic);
  counters.tick(traffic);
  mapView.applyTraffic(counters);
  table.update(counters);
  if (!model?.service) return;
  const routes = [];
  for (const e of traffic.entries || []) routes.push({route: mapView.entryRoute(e.id), delta: e.delta || 0, cls: "entry"});
  for (const e of traffic.endpoints || []) routes.push({route: mapView.endpointRoute(e.key), delta: e.delta || 0, cls: "endpoint"});
  dots.tick(routes);
  measure("pk-tick", started);
}

const stream = new Stream({
  onSnapshot, onTraffic, onState: setStatus,
  onTopology: (next) => applyModel(next),
  onFailure: async () => {
    // The browser hides the HTTP status of a failed EventSource: ask the JSON API why.
    if (!streamKey) return;
    const [ns, name] = streamKey.split("/");
    if (!ns) return;
    try {
      await getJSON(`api/v1/services/${enc(ns)}/${enc(name)}/map`);
    } catch (err) {
      if (err.status === 401 || err.status === 403) showError(err.message);
    }
  },
});

function openStream(route) {
  const key = `${route.namespace}/${route.service}/${route.port}`;
  if (key === streamKey) return;
  streamKey = key;
  const q = new URLSearchParams();
  if (route.service) {
    q.set("namespace", route.namespace);
    q.set("service", route.service);
    if (route.port) q.set("port", route.port);
  }
  setStatus("reconnecting");
  stream.open(`api/v1/stream${q.toString() ? "?" + q : ""}`);
}

// --- the Service and port pickers -------------------------------------------------------------
let serviceItems = [];

async function loadServices() {
  try {
    serviceItems = (await getJSON("api/v1/services")).items || [];
  } catch {
    serviceItems = [];
  }
  syncPicker();
}

function syncPicker() {
  const current = model?.service ? `${model.service.namespace}/${model.service.name}` : "";
  const values = serviceItems.map((s) => `${s.namespace}/${s.name}`);
  if (current && !values.includes(current)) values.unshift(current);
  const typeOf = (v) => serviceItems.find((s) => `${s.namespace}/${s.name}` === v)?.type || "";
  const wanted = values.map((v) => `${v} ${typeOf(v)}`).join("\n");   // labels carry the type: rebuild when known
  if (ui.picker.dataset.values !== wanted) {
    ui.picker.replaceChildren(...(values.length ? values : [""]).map((v) => {
      return h("option", {value: v}, v ? `${v}${typeOf(v) ? ` (${typeOf(v)})` : ""}` : "No Services");
    }));
    ui.picker.dataset.values = wanted;
  }
  ui.picker.value = current;
  const ports = model?.service?.ports || [];
  ui.portField.hidden = ports.length < 2;
  ui.portPicker.replaceChildren(...ports.map((p) => h("option", {value: p.name || String(p.port)},
    `${p.name ? p.name + " " : ""}${p.port}/${p.protocol}`)));
  const sel = model?.service?.port;
  if (sel) ui.portPicker.value = sel.name || String(sel.port);
}

ui.picker.addEventListener("change", () => {
  const [ns, name] = ui.picker.value.split("/");
  if (ns && name) location.hash = `#/map/${enc(ns)}/${enc(name)}`;
});
ui.portPicker.addEventListener("change", () => {
  const svc = model?.service;
  if (svc) location.hash = `#/map/${enc(svc.namespace)}/${enc(svc.name)}/${enc(ui.portPicker.value)}`;
});

ui.pause.addEventListener("click", () => {
  paused = !paused;
  // A toggle keeps its name; aria-pressed (and its pressed look) carry the state.
  ui.pause.setAttribute("aria-pressed", String(paused));
  applyMotion();
  announce(paused ? "Animation paused" : "Animation resumed");
});

ui.reset.addEventListener("click", () => {
  counters.reset();
  mapView.applyTraffic(counters);
  table.update(counters);
  announce("Counts reset to zero");
});

// The overview has no stream of its own: it reloads every 10 s while shown (and says when).
const OVERVIEW_EVERY_MS = 10000;
let overviewTimer = 0;
async function refreshOverview() {
  clearTimeout(overviewTimer);
  await loadOverview(ui.views.overview.querySelector(".content"), $("#overview-stamp"));
  overviewTimer = setTimeout(() => {
    if (!document.hidden && !ui.views.overview.hidden) refreshOverview();
  }, OVERVIEW_EVERY_MS);
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !ui.views.overview.hidden) refreshOverview();
});
$("#skip-map").addEventListener("click", () => $(".table-scroll").focus());
$("#overview-refresh").addEventListener("click", refreshOverview);

// --- routing --------------------------------------------------------------------------------
function route() {
  const r = parseRoute(location.hash);
  for (const [name, el] of Object.entries(ui.views)) el.hidden = name !== r.view;
  ui.mapControls.hidden = r.view !== "map";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === r.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (r.view === "map") {
    openStream(r);
    loadServices();
  } else if (r.view === "overview") {
    refreshOverview();
  } else if (r.view === "describe") {
    loadDescribe(ui.views.describe, r.resource, r.namespace, r.name);
  }
  // The stream stays open on the other views: coming back is instant and the changes list
  // keeps filling. It starts on first visit to the map.
  if (r.view !== "map" && !streamKey) openStream({namespace: "", service: "", port: ""});
}

window.addEventListener("hashchange", route);
window.addEventListener("online", () => { if (ui.status.dataset.state !== "live") stream.reconnect(); });
window.addEventListener("offline", () => setStatus("offline"));
route();
