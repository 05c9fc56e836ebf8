// The seed's picture as SVG in fixed columns: client → entries (one box per node for NodePort)
// → Service → pods grouped by node. The layout is a pure function of the model with stable
// sort keys, so a topology event moves only what changed; traffic ticks touch attributes only.
import {s, setAttrs, setText} from "./dom.js";
import {edgeLabel, edgeWidth, endpointKey, entryKey, shares} from "./stats.js";

const M = 16;                                          // outer margin
const TOP = 48;                                        // below the column headings
const CLIENT = {x: M, w: 92, h: 52};
const ENTRY = {x: 232, w: 252, h: 52, gap: 14};
const SERVICE = {x: 562, w: 290};
const GROUP = {x: 1010, w: 276, head: 30, pad: 8, gap: 16};
const POD = {h: 44, gap: 6};
const WIDTH = GROUP.x + GROUP.w + M;
const CHAR = 6.9;                                      // ~px per character at the 12px UI font
// A pod's bold name shares its row with the right-aligned total (~6 digits): what fits before it.
const POD_NAME_CHARS = Math.floor((GROUP.w - 2 * GROUP.pad - 14 - 48) / (CHAR + 0.5));
const GLIDE_MS = 350;

export const byNodeThenPod = (a, b) =>
  cmp(a.node || "~", b.node || "~") || cmp(a.pod || "", b.pod || "") || cmp(a.key, b.key);
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** Wraps `text` into lines of at most `width` characters, on spaces. */
export function wrap(text, width) {
  const lines = [];
  let line = "";
  for (const word of String(text).split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) { lines.push(line); line = word; }
    else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** `text` in at most `max` characters, its middle elided: a pod's name ends in what tells it apart
 *  from its siblings (Deployment pods share their long prefix). The full name is the box's title. */
export function elide(text, max) {
  text = String(text);
  if (text.length <= max) return text;
  const tail = Math.ceil((max - 1) / 2);
  return `${text.slice(0, max - 1 - tail)}…${text.slice(text.length - tail)}`;
}

export function entryLabel(entry) {
  const addr = `${entry.ip}:${entry.port}`;
  return entry.kind === "NodePort" && entry.node ? `${entry.node} · ${addr}` : `${entry.kind} · ${addr}`;
}

export function describeModel(model) {
  if (!model.service) return model.error || "No Service selected";
  const svc = model.service;
  const n = model.nodes.length;
  return `${n} node${n === 1 ? "" : "s"}, ${svc.name}, ${svc.readyEndpoints}/${svc.totalEndpoints} endpoints ready`;
}

/** Lines of the Service box: [text, class] pairs. */
export function serviceLines(svc, rejectedCounted) {
  const p = svc.port || {};
  const lines = [[svc.name, "title"], [`${svc.type} · ${svc.clusterIP || "None"}:${p.port ?? "?"} → targetPort ${p.targetPort ?? "?"}`, ""]];
  if (svc.type === "NodePort" || svc.type === "LoadBalancer") {
    if (p.nodePort) lines.push([`nodePort ${p.nodePort} on every node`, "muted"]);
  }
  if (svc.sessionAffinity === "ClientIP") {
    lines.push([`affinity ClientIP${svc.affinityTimeoutSeconds ? ` (${svc.affinityTimeoutSeconds} s)` : ""}`, "badge-line"]);
  }
  if (svc.externalTrafficPolicy === "Local") lines.push(["externalTrafficPolicy Local", "badge-line"]);
  if (svc.internalTrafficPolicy === "Local") lines.push(["internalTrafficPolicy Local", "badge-line"]);
  lines.push([`${svc.readyEndpoints}/${svc.totalEndpoints} endpoints ready`, svc.readyEndpoints ? "" : "warn"]);
  lines.push([rejectedCounted ? "refused (no endpoint): 0" : "refused: not counted by the userspace data plane", "refused"]);
  return lines;
}

/** Pure layout: boxes with coordinates for every part of the picture. */
export function layout(model, rejectedCounted = true) {
  const entries = [...model.entries].sort((a, b) =>
    cmp(a.node || "", b.node || "") || cmp(a.ip, b.ip) || a.port - b.port || cmp(a.id, b.id));
  const nodeNames = model.nodes.map((n) => n.name);
  const endpoints = [...model.endpoints].sort(byNodeThenPod);
  for (const ep of endpoints) if (!nodeNames.includes(ep.node || "")) nodeNames.push(ep.node || "");
  const groups = [];
  let y = TOP;
  for (const name of nodeNames) {
    const node = model.nodes.find((n) => n.name === name) || {name, ip: "", ready: null};
    const pods = endpoints.filter((ep) => (ep.node || "") === name);
    const height = GROUP.head + Math.max(1, pods.length) * (POD.h + POD.gap) + GROUP.pad;
    const group = {node, x: GROUP.x, y, w: GROUP.w, h: height, pods: []};
    pods.forEach((ep, i) => group.pods.push({
      ep, x: GROUP.x + GROUP.pad, y: y + GROUP.head + i * (POD.h + POD.gap), w: GROUP.w - 2 * GROUP.pad, h: POD.h}));
    groups.push(group);
    y += height + GROUP.gap;
  }
  const groupsBottom = groups.length ? y - GROUP.gap : TOP;
  const svc = model.service;
  const lines = svc ? serviceLines(svc, rejectedCounted) : [];
  const problem = svc && !svc.readyEndpoints
    ? wrap(`No ready endpoints: ${svc.problem || "no endpoint is Ready"}`, Math.floor((SERVICE.w - 20) / CHAR)) : [];
  const serviceH = 18 + 18 * lines.length + (problem.length ? 8 + 17 * problem.length : 0);
  const entriesH = entries.length * (ENTRY.h + ENTRY.gap) - ENTRY.gap;
  const contentH = Math.max(groupsBottom - TOP, entriesH, serviceH, CLIENT.h);
  const mid = TOP + contentH / 2;
  const entryTop = mid - entriesH / 2;
  return {
    width: WIDTH, height: TOP + contentH + M,
    client: {x: CLIENT.x, y: mid - CLIENT.h / 2, w: CLIENT.w, h: CLIENT.h},
    entries: entries.map((entry, i) => ({entry, x: ENTRY.x, y: entryTop + i * (ENTRY.h + ENTRY.gap), w: ENTRY.w, h: ENTRY.h})),
    service: svc ? {x: SERVICE.x, y: mid - serviceH / 2, w: SERVICE.w, h: serviceH, lines, problem} : null,
    groups,
  };
}

/** A label beside an edge's flat end, on the side the curve does not come from. */
function labelY(fromY, toY) {
  return toY > fromY + 1 ? toY + 15 : toY - 7;
}

function curve(x1, y1, x2, y2) {
  const mx = (x1 + x2) / 2;
  return `M${x1},${y1.toFixed(1)} C${mx},${y1.toFixed(1)} ${mx},${y2.toFixed(1)} ${x2},${y2.toFixed(1)}`;
}

export class MapView {
  constructor(svg) {
    this.svg = svg;
    this.entryEls = new Map();     // entry id -> {g, edge, path, label, inPath}
    this.podEls = new Map();       // endpoint key -> {g, edge, path, label}
    this.refused = null;
    this.model = null;
    this.positions = new Map();    // focus key -> y of the box in the last drawing
    this.motion = true;            // animate moves (off when paused or prefers-reduced-motion)
    this.moving = [];
    this.frame = 0;
  }

  /** Full redraw for a new model (snapshot or topology): keeps keyboard focus on the same box. */
  render(model, counters) {
    const focused = document.activeElement?.closest?.("[data-focus-key]")?.getAttribute("data-focus-key");
    this.model = model;
    this.entryEls.clear();
    this.podEls.clear();
    this.refused = null;
    const L = layout(model, counters.rejectedCounted);
    const svg = this.svg;
    svg.replaceChildren();
    setAttrs(svg, {viewBox: `0 0 ${L.width} ${L.height}`, width: L.width, height: L.height});
    svg.append(s("title", {id: "map-title"}, model.service
      ? `Traffic map of Service ${model.service.namespace}/${model.service.name}` : "Traffic map"));
    svg.append(s("desc", {id: "map-desc"}, describeModel(model)));
    const heads = s("g", {class: "col-heads", "aria-hidden": "true"});
    for (const [x, text] of [[CLIENT.x, "Client"], [ENTRY.x, "Entry points"], [SERVICE.x, "Service"], [GROUP.x, "Pods by node"]]) {
      heads.append(s("text", {x, y: 22, class: "col-head"}, text));
    }
    svg.append(heads);
    const edges = s("g", {class: "edges"});
    const dots = s("g", {"data-testid": "dots", class: "dots"});
    const boxes = s("g", {class: "boxes"});
    svg.append(edges, dots, boxes);
    this.dotsLayer = dots;
    if (!L.service) { this.applyTraffic(counters); return; }

    const c = L.client;
    boxes.append(s("g", {class: "client", "data-testid": "client"},
      s("rect", {class: "box", x: c.x, y: c.y, width: c.w, height: c.h, rx: 8}),
      s("text", {x: c.x + c.w / 2, y: c.y + 22, class: "title", "text-anchor": "middle"}, "Client"),
      s("text", {x: c.x + c.w / 2, y: c.y + 40, class: "muted", "text-anchor": "middle"}, "curl")));

    const sv = L.service;
    const svcMidY = sv.y + sv.h / 2;
    for (const box of L.entries) {
      const e = box.entry;
      const ey = box.y + box.h / 2;
      const path = s("path", {class: "edge-line", d: curve(c.x + c.w, c.y + c.h / 2, box.x, ey)});
      const label = s("text", {class: "edge-label", x: box.x - 8, y: labelY(c.y + c.h / 2, ey), "text-anchor": "end"}, "");
      const edge = s("g", {"data-testid": "edge", "data-from": "client", "data-to": e.id}, path, label);
      const inPath = s("path", {class: "edge-line thin", d: curve(box.x + box.w, ey, sv.x, svcMidY)});
      edges.append(edge, s("g", {"data-testid": "edge", "data-from": e.id, "data-to": "service"}, inPath));
      const state = e.ready ? "Ready" : "NotReady";
      const stateText = s("tspan", {class: e.ready ? "state-ok" : "state-bad"}, state);
      const totalText = s("tspan", {}, "");
      const g = s("g", {
        "data-testid": "entry", "data-entry-id": e.id, "data-node": e.node || "", "data-ready": String(!!e.ready),
        "data-focus-key": "entry:" + e.id, class: `entry${e.ready ? "" : " notready"}`, tabindex: 0},
      s("title", {}, `${entryLabel(e)}: ${e.kind} entry point${e.ready ? "" : " (node NotReady)"}`),
      s("rect", {class: "focus-ring", x: box.x - 4, y: box.y - 4, width: box.w + 8, height: box.h + 8, rx: 11}),
      s("rect", {class: "box", x: box.x, y: box.y, width: box.w, height: box.h, rx: 8}),
      s("text", {x: box.x + 12, y: box.y + 21, class: "title"}, entryLabel(e)),
      s("text", {x: box.x + 12, y: box.y + 40}, stateText, s("tspan", {class: "muted"}, " · "), totalText));
      boxes.append(g);
      this.entryEls.set(e.id, {g, path, inPath, label, totalText});
    }

    const svcG = s("g", {"data-testid": "service", "data-cluster-ip": L.service && this.model.service.clusterIP || "",
      "data-focus-key": "service", class: "service", tabindex: 0},
    s("title", {}, `Service ${model.service.namespace}/${model.service.name}`),
    s("rect", {class: "focus-ring", x: sv.x - 4, y: sv.y - 4, width: sv.w + 8, height: sv.h + 8, rx: 13}),
    s("rect", {class: "box service-box", x: sv.x, y: sv.y, width: sv.w, height: sv.h, rx: 10}));
    sv.lines.forEach(([text, cls], i) => {
      const t = s("text", {x: sv.x + 12, y: sv.y + 26 + 18 * i, class: cls}, text);
      if (cls === "refused") {
        t.setAttribute("data-testid", "refused");
        t.setAttribute("data-conn-total", "0");
        this.refused = t;
      }
      svcG.append(t);
    });
    if (sv.problem.length) {
      const top = sv.y + 26 + 18 * sv.lines.length + 6;
      svcG.append(s("text", {"data-testid": "no-endpoints", class: "problem", x: sv.x + 12, y: top},
        sv.problem.map((line, i) =>
          // The trailing space keeps the words apart in textContent (what tests and AT read).
          s("tspan", {x: sv.x + 12, dy: i ? 17 : 0}, i < sv.problem.length - 1 ? `${line} ` : line))));
    }
    boxes.append(svcG);

    for (const grp of L.groups) {
      const node = grp.node;
      const ready = node.ready === true ? "Ready" : node.ready === false ? "NotReady" : "";
      const head = [node.name || "(not scheduled)", node.ip, ready].filter(Boolean).join(" · ");
      const gg = s("g", {"data-testid": "pod-group", "data-node": node.name, class: `pod-group${node.ready === false ? " notready" : ""}`},
        s("rect", {class: "group-box", x: grp.x, y: grp.y, width: grp.w, height: grp.h, rx: 10}),
        s("text", {x: grp.x + 10, y: grp.y + 20, class: "group-title"}, head));
      if (!grp.pods.length) {
        gg.append(s("text", {x: grp.x + 12, y: grp.y + GROUP.head + 22, class: "muted"}, "no pods of this Service"));
      }
      for (const box of grp.pods) {
        const ep = box.ep;
        const py = box.y + box.h / 2;
        const path = s("path", {class: `edge-line pod-edge state-${ep.state}`, d: curve(sv.x + sv.w, svcMidY, box.x, py)});
        const label = s("text", {class: "edge-label", x: grp.x - 8, y: labelY(svcMidY, py), "text-anchor": "end"}, "");
        edges.append(s("g", {"data-testid": "edge", "data-from": "service", "data-to": ep.key, "data-pod": ep.pod || ""}, path, label));
        const totalText = s("text", {x: box.x + box.w - 10, y: box.y + 18, class: "total", "text-anchor": "end"}, "0");
        const g = s("g", {
          "data-testid": "pod", "data-pod": ep.pod || ep.key, "data-key": ep.key, "data-node": ep.node || "",
          "data-state": ep.state, "data-focus-key": "pod:" + ep.key, class: `pod state-${ep.state}`, tabindex: 0},
        s("title", {}, `Pod ${ep.pod || "(no pod)"} on ${ep.node || "no node"}: ${ep.ip}:${ep.port}, ${ep.state}`),
        s("rect", {class: "focus-ring", x: box.x - 3, y: box.y - 3, width: box.w + 6, height: box.h + 6, rx: 9}),
        s("rect", {class: "box pod-box", x: box.x, y: box.y, width: box.w, height: box.h, rx: 6}),
        s("rect", {class: "state-bar", x: box.x, y: box.y, width: 5, height: box.h, rx: 2}),
        s("text", {x: box.x + 14, y: box.y + 18, class: "title"}, elide(ep.pod || "(no pod)", POD_NAME_CHARS)),
        s("text", {x: box.x + 14, y: box.y + 35},
          s("tspan", {class: "muted"}, `${ep.ip}:${ep.port} · `), s("tspan", {class: "state-word"}, ep.state)),
        totalText);
        gg.append(g);
        this.podEls.set(ep.key, {g, path, label, totalText});
      }
      boxes.append(gg);
    }
    this.applyTraffic(counters);
    this.glide(L);
    if (focused) svg.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`)?.focus();
  }

  /** Boxes that moved glide from where they were; new ones fade in (ui.md: animated moves). */
  glide(L) {
    const now = new Map();
    for (const b of L.entries) now.set("entry:" + b.entry.id, b.y);
    for (const g of L.groups) for (const b of g.pods) now.set("pod:" + b.ep.key, b.y);
    const before = this.positions;
    this.positions = now;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.moving = [];
    if (!this.motion || !before.size) return;
    for (const [key, y] of now) {
      const el = this.svg.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
      if (!el) continue;
      const old = before.get(key);
      if (old === undefined) this.moving.push({el, dy: 0, fade: true});
      else if (Math.abs(old - y) > 0.5) this.moving.push({el, dy: old - y, fade: false});
    }
    if (!this.moving.length) return;
    const start = performance.now();
    const step = (t) => {
      const k = Math.min(1, (t - start) / GLIDE_MS);
      const ease = 1 - (1 - k) ** 3;
      for (const m of this.moving) {
        if (m.dy) m.el.setAttribute("transform", `translate(0 ${(m.dy * (1 - ease)).toFixed(1)})`);
        if (m.fade) m.el.setAttribute("opacity", ease.toFixed(2));
      }
      if (k < 1) { this.frame = requestAnimationFrame(step); return; }
      for (const m of this.moving) { m.el.removeAttribute("transform"); m.el.removeAttribute("opacity"); }
      this.moving = [];
      this.frame = 0;
    };
    this.frame = requestAnimationFrame(step);
  }

  /** Numbers only: totals, rates, shares, widths and labels. */
  applyTraffic(counters) {
    const model = this.model;
    if (!model) return;
    const eKeys = model.entries.map(entryKey);
    const eShares = shares(counters, eKeys);
    for (const e of model.entries) {
      const els = this.entryEls.get(e.id);
      if (!els) continue;
      const key = entryKey(e);
      const total = counters.total(key);
      const rate = counters.rateOf(key);
      setAttrs(els.g, {"data-conn-total": total, "data-rate": rate});
      setText(els.totalText, `${total} conn`);
      setAttrs(els.path, {"stroke-width": edgeWidth(rate)});
      setText(els.label, edgeLabel(rate, eShares.get(key)));
    }
    const pKeys = model.endpoints.map(endpointKey);
    const pShares = shares(counters, pKeys);
    for (const ep of model.endpoints) {
      const els = this.podEls.get(ep.key);
      if (!els) continue;
      const key = endpointKey(ep);
      const total = counters.total(key);
      const rate = counters.rateOf(key);
      const share = pShares.get(key);
      setAttrs(els.g, {"data-conn-total": total, "data-rate": rate, "data-share": share === null ? "" : share.toFixed(4)});
      setText(els.totalText, String(total));
      setAttrs(els.path, {"stroke-width": edgeWidth(rate)});
      setText(els.label, edgeLabel(rate, share));
    }
    if (this.refused) {
      const total = counters.total("r");
      setAttrs(this.refused, {"data-conn-total": total, "data-rate": counters.rateOf("r")});
      setText(this.refused, counters.rejectedCounted
        ? `refused (no endpoint): ${total}` : "refused: not counted by the userspace data plane");
    }
  }

  /** Dot routes: entry id -> [client→entry, entry→service]; endpoint key -> [service→pod]. */
  entryRoute(id) { const e = this.entryEls.get(id); return e ? [e.path, e.inPath] : null; }
  endpointRoute(key) { const p = this.podEls.get(key); return p ? [p.path] : null; }
}
