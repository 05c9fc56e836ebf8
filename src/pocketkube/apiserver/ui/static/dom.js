// Element builders for a strict CSP (no innerHTML, no style attributes): text always goes in as
// text nodes, so names from the cluster can never become markup.
const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "style") throw new Error("style attributes are blocked by the CSP: use a class");
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "42"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    const v = String(value);
    if (el.getAttribute(name) !== v) el.setAttribute(name, v);
  }
}

export function clock(date = new Date()) {
  return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
}

/** kubectl's short age ("45s", "3m12s", "5h", "12d") of an RFC 3339 time, in a <time>. */
export function age(timestamp, now = Date.now()) {
  const then = Date.parse(timestamp || "");
  if (Number.isNaN(then)) return h("span", {class: "muted"}, "—");
  return h("time", {datetime: timestamp, title: timestamp}, shortDuration(Math.max(0, (now - then) / 1000)));
}

export function shortDuration(seconds) {
  const s = Math.floor(seconds);
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  const hours = Math.floor(m / 60);
  if (hours < 8) return m % 60 ? `${hours}h${m % 60}m` : `${hours}h`;
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}
