// The page's own arithmetic, kept pure so the map and the table cannot disagree.
//
// "Since this page opened" totals are the deltas received since load (or Reset). After a
// reconnect the snapshot's server totals fill the gap: if a key's total grew while the stream
// was down, the growth is added; if it shrank, the API server restarted and only that tick's
// delta is known.

export class Counters {
  constructor() {
    this.shown = new Map();   // key -> connections since the page opened / Reset
    this.last = new Map();    // key -> server total at the last event
    this.rate = new Map();    // key -> server's smoothed conn/s
    this.active = new Map();  // endpoint key -> active connections (userspace) or null
    this.rejectedCounted = true;
  }

  /** A snapshot (first load or reconnect). Returns nothing: snapshots draw no dots. */
  snapshot(traffic) {
    if (!traffic) return;
    for (const [key, item] of items(traffic)) {
      const prev = this.last.get(key);
      if (prev !== undefined) {
        const gap = item.total >= prev ? item.total - prev : (item.delta || 0);
        this.shown.set(key, (this.shown.get(key) || 0) + gap);
      } else if (!this.shown.has(key)) {
        this.shown.set(key, 0);
      }
      this.observe(key, item);
    }
    this.rejectedCounted = !traffic.rejected || traffic.rejected.counted !== false;
  }

  /** A traffic tick: adds its deltas. */
  tick(traffic) {
    for (const [key, item] of items(traffic)) {
      this.shown.set(key, (this.shown.get(key) || 0) + (item.delta || 0));
      this.observe(key, item);
    }
    this.rejectedCounted = !traffic.rejected || traffic.rejected.counted !== false;
  }

  observe(key, item) {
    if (typeof item.total === "number") this.last.set(key, item.total);
    this.rate.set(key, typeof item.rate === "number" ? item.rate : 0);
    if (key.startsWith("p:")) this.active.set(key, item.active ?? null);
  }

  reset() {
    for (const key of this.shown.keys()) this.shown.set(key, 0);
  }

  total(key) { return this.shown.get(key) || 0; }
  rateOf(key) { return this.rate.get(key) || 0; }
}

function* items(traffic) {
  for (const e of traffic.entries || []) yield ["e:" + e.id, e];
  for (const e of traffic.endpoints || []) yield ["p:" + e.key, e];
  if (traffic.rejected) yield ["r", traffic.rejected];
}

export const entryKey = (entry) => "e:" + entry.id;
export const endpointKey = (endpoint) => "p:" + endpoint.key;

/** Shares of `keys` in `counters`: Map key -> fraction, null when nothing was counted yet. */
export function shares(counters, keys) {
  const sum = keys.reduce((acc, k) => acc + counters.total(k), 0);
  return new Map(keys.map((k) => [k, sum > 0 ? counters.total(k) / sum : null]));
}

/** One standard deviation of a share p over n independent connections: sqrt(p(1-p)/n). */
export function spread(p, n) {
  if (p === null || p === undefined || !(n > 0)) return null;
  return Math.sqrt((p * (1 - p)) / n);
}

export function pct(x, digits = 1) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(digits)}%`;
}

export function fmtRate(r) {
  if (!r) return "0";
  return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2).replace(/0$/, "");
}

/** The edge label: "0.5 conn/s · 33%". */
export function edgeLabel(rate, share) {
  return `${fmtRate(rate)} conn/s · ${share === null ? "—" : Math.round(share * 100) + "%"}`;
}

/** Stroke width by rate: grows with sqrt so one busy edge does not flatten the others. */
export function edgeWidth(rate) {
  return (1.5 + Math.min(9, 3 * Math.sqrt(Math.max(0, rate || 0)))).toFixed(2);
}
