// The cluster overview: nodes with their pods and resource use, Services with endpoint counts,
// recent Events. Every object name links to its describe view.
import {getJSON} from "./api.js";
import {age, clock, h} from "./dom.js";

export function describeHref(resource, namespace, name) {
  return `#/describe/${resource}/${encodeURIComponent(namespace || "_")}/${encodeURIComponent(name)}`;
}

export function describeLink(resource, namespace, name, text) {
  return h("a", {"data-testid": "describe-link", href: describeHref(resource, namespace, name)}, text ?? name);
}

const OBJECT_RESOURCE = {Pod: "pods", Service: "services", Node: "nodes", EndpointSlice: "endpointslices",
  Deployment: "deployments", ReplicaSet: "replicasets"};

function eventObject(ev) {
  const [kind, name] = String(ev.object || "").split("/");
  const resource = OBJECT_RESOURCE[kind];
  if (!resource || !name) return ev.object || "";
  return describeLink(resource, kind === "Node" ? "_" : ev.namespace, name, ev.object);
}

const SUFFIX = {n: 1e-9, u: 1e-6, m: 1e-3, "": 1, k: 1e3, M: 1e6, G: 1e9,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40};

/** A Kubernetes quantity ("2500000n", "60192Ki") as a number; NaN when unreadable. */
export function quantity(q) {
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(String(q ?? ""));
  return m && m[2] in SUFFIX ? Number(m[1]) * SUFFIX[m[2]] : NaN;
}

/** As `kubectl top` prints them: CPU in millicores, memory in Mi. */
export function cpuText(q) {
  const v = quantity(q);
  return Number.isNaN(v) ? "n/a" : `${Math.round(v * 1000)}m`;
}

export function memoryText(q) {
  const v = quantity(q);
  return Number.isNaN(v) ? "n/a" : `${Math.round(v / 2 ** 20)}Mi`;
}

function table(caption, columns, rows, empty) {
  return h("table", {class: "grid"}, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {scope: "col"}, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", {colspan: columns.length, class: "muted"}, empty))));
}

export function renderOverviewData(container, data) {
  const nodes = h("div", {class: "node-cards"});
  for (const node of data.nodes || []) {
    const pods = (node.pods || []).map((p) => h("li", {},
      describeLink("pods", p.namespace, p.name, `${p.namespace}/${p.name}`),
      h("span", {class: `state state-${p.phase}`}, ` ${p.phase}`), h("span", {class: "muted"}, ` · ${p.ready} · ${p.ip || "no IP"}`)));
    nodes.append(h("article", {class: `card${node.ready ? "" : " notready"}`, "data-testid": "overview-node", "data-node": node.name},
      h("h3", {}, describeLink("nodes", "_", node.name)),
      h("p", {}, h("span", {class: `state ${node.ready ? "state-Ready" : "state-NotReady"}`}, node.ready ? "Ready" : "NotReady"),
        h("span", {class: "muted"}, ` · ${node.ip || "no IP"} · CPU ${cpuText(node.cpu)} · memory ${memoryText(node.memory)}`)),
      pods.length ? h("ul", {class: "pods"}, pods) : h("p", {class: "muted"}, "No pods")));
  }
  const services = (data.services || []).map((s) => h("tr", {"data-testid": "overview-service"},
    h("th", {scope: "row"}, describeLink("services", s.namespace, s.name, `${s.namespace}/${s.name}`)),
    h("td", {}, s.type), h("td", {class: "mono"}, s.clusterIP || "None"),
    h("td", {class: "mono"}, (s.ports || []).map(portText).join(", ")),
    h("td", {class: s.readyEndpoints ? "" : "warn"}, `${s.readyEndpoints}/${s.totalEndpoints}`),
    h("td", {}, h("a", {href: `#/map/${encodeURIComponent(s.namespace)}/${encodeURIComponent(s.name)}`,
      "aria-label": `Map of ${s.namespace}/${s.name}`}, "Map"))));
  const events = (data.events || []).map((ev) => h("tr", {"data-testid": "overview-event", class: ev.type === "Warning" ? "warn-row" : ""},
    h("td", {}, age(ev.lastTimestamp)), h("td", {}, ev.type), h("td", {}, ev.reason), h("td", {}, eventObject(ev)),
    h("td", {}, ev.message), h("td", {class: "num"}, String(ev.count ?? 1))));
  container.replaceChildren(
    h("h2", {}, "Nodes"), nodes,
    h("h2", {}, "Services"),
    table("Services (endpoints ready / total)", ["Service", "Type", "Cluster IP", "Ports", "Endpoints", ""], services, "No Services"),
    h("h2", {}, "Recent events"),
    table("The newest 50 Events", ["Age", "Type", "Reason", "Object", "Message", "Count"], events, "No Events"));
}

function portText(p) {
  if (typeof p !== "object" || p === null) return String(p);
  const base = `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol || "TCP"}`;
  return p.name ? `${p.name} ${base}` : base;
}

export async function loadOverview(container, stamp) {
  try {
    renderOverviewData(container, await getJSON("api/v1/overview"));
    stamp.textContent = `Updated ${clock()}`;
  } catch (err) {
    container.replaceChildren(h("p", {class: "error", role: "alert"}, err.message));
  }
}
