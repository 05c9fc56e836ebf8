// One moving dot per real new connection, so random balancing is visible at learner scale.
// Each tick's deltas become dots spread over the next second; above MAX_PER_EDGE on any edge,
// one dot stands for k connections (k shared by the whole tick, shown beside the map).
// No dots at all while paused or under prefers-reduced-motion (WCAG 2.2.2).
import {s} from "./dom.js";

export const MAX_PER_EDGE = 30;
const ENTRY_MS = 750;          // client → node → Service
const ENDPOINT_MS = 600;       // Service → pod
const SPREAD_MS = 900;         // dots of one tick start across this window

/** How many connections one dot stands for, given a tick's deltas. */
export function dotScale(deltas) {
  const max = Math.max(0, ...deltas);
  return max > MAX_PER_EDGE ? Math.ceil(max / MAX_PER_EDGE) : 1;
}

export function dotsFor(delta, k) {
  return delta > 0 ? Math.max(1, Math.round(delta / k)) : 0;
}

export class Dots {
  constructor(scaleEl) {
    this.scaleEl = scaleEl;
    this.live = [];            // {el, route, lengths, start, dur}
    this.frame = 0;
    this.enabled = true;
    this.layer = null;
    this.step = (now) => this.animate(now);
  }

  setEnabled(on) {
    this.enabled = on;
    if (!on) this.clear();
  }

  /** The map was redrawn: dots on old paths go. */
  attach(layer) {
    this.clear();
    this.layer = layer;
  }

  clear() {
    for (const d of this.live) d.el.remove();
    this.live = [];
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  /** A traffic tick: `routes` is [{route: [SVGPathElement...], delta, cls}]. */
  tick(routes) {
    const k = dotScale(routes.map((r) => r.delta));
    this.scaleEl.textContent = k > 1 ? `1 dot = ${k} connections` : "1 dot = 1 connection";
    this.scaleEl.dataset.k = String(k);
    // A hidden tab gets no animation frames: dots made now would pile up unanimated.
    if (!this.enabled || !this.layer || document.hidden) return;
    const now = performance.now();
    this.prune(now);
    for (const {route, delta, cls} of routes) {
      if (!route) continue;
      const n = dotsFor(delta, k);
      if (!n) continue;
      const lengths = route.map((p) => p.getTotalLength());
      const dur = cls === "entry" ? ENTRY_MS : ENDPOINT_MS;
      for (let i = 0; i < n; i++) {
        // Evenly spread with a little jitter: a burst of connections reads as a burst.
        const start = now + ((i + Math.random() * 0.5) / n) * SPREAD_MS;
        const el = s("circle", {"data-testid": "dot", class: `dot dot-${cls}`, r: 4, cx: -20, cy: -20});
        this.layer.append(el);
        this.live.push({el, route, lengths, start, dur});
      }
    }
    if (this.live.length && !this.frame) this.frame = requestAnimationFrame(this.step);
  }

  prune(now) {
    this.live = this.live.filter((d) => {
      if (now - d.start < d.dur && d.el.isConnected) return true;
      d.el.remove();
      return false;
    });
  }

  animate(now) {
    this.frame = 0;
    const keep = [];
    for (const d of this.live) {
      const t = (now - d.start) / d.dur;
      if (t >= 1 || !d.el.isConnected) { d.el.remove(); continue; }
      keep.push(d);
      if (t < 0) continue;
      const total = d.lengths.reduce((a, b) => a + b, 0);
      let at = t * total;
      let i = 0;
      while (i < d.route.length - 1 && at > d.lengths[i]) at -= d.lengths[i++];
      const p = d.route[i].getPointAtLength(at);
      d.el.setAttribute("cx", p.x.toFixed(1));
      d.el.setAttribute("cy", p.y.toFixed(1));
    }
    this.live = keep;
    if (keep.length && this.enabled) this.frame = requestAnimationFrame(this.step);
  }
}
