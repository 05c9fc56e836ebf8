// Recent changes, from the difference between two models of the same Service port, and the
// page's single polite live region (throttled so a rollout is not read out pod by pod).
import {clock, h} from "./dom.js";

const KEEP = 30;
const THROTTLE_MS = 2000;

/** What changed between two models: a list of sentences. Pure. */
export function diffModels(prev, next) {
  if (!prev || !next || !prev.service || !next.service) return [];
  const out = [];
  const before = new Map(prev.endpoints.map((e) => [e.key, e]));
  const after = new Map(next.endpoints.map((e) => [e.key, e]));
  const name = (e) => `${e.pod || e.key}${e.node ? ` on ${e.node}` : ""}`;
  for (const [key, e] of after) {
    const old = before.get(key);
    if (!old) out.push(`Pod ${name(e)} added (${e.state})`);
    else if (old.state !== e.state) out.push(`Pod ${name(e)} is now ${e.state} (was ${old.state})`);
  }
  for (const [key, e] of before) if (!after.has(key)) out.push(`Pod ${name(e)} removed`);
  const nodesBefore = new Map(prev.nodes.map((n) => [n.name, n]));
  for (const n of next.nodes) {
    const old = nodesBefore.get(n.name);
    if (!old) out.push(`Node ${n.name} joined`);
    else if (old.ready !== n.ready) out.push(`Node ${n.name} is now ${n.ready ? "Ready" : "NotReady"}`);
  }
  for (const n of prev.nodes) if (!next.nodes.some((m) => m.name === n.name)) out.push(`Node ${n.name} left`);
  if (prev.service.readyEndpoints !== next.service.readyEndpoints) {
    out.push(`${next.service.name}: ${next.service.readyEndpoints}/${next.service.totalEndpoints} endpoints ready`);
  }
  return out;
}

export class Changes {
  constructor(list, liveRegion) {
    this.list = list;
    this.live = liveRegion;
    this.pending = [];
    this.lastFlush = 0;
    this.timer = 0;
  }

  add(sentences) {
    if (!sentences.length) return;
    const when = clock();
    // Newest first, but one event's sentences keep their reading order.
    for (const text of [...sentences].reverse()) {
      this.list.prepend(h("li", {}, h("time", {}, when), " ", text));
    }
    while (this.list.children.length > KEEP) this.list.lastElementChild.remove();
    this.announce(sentences.join(". "));
  }

  announce(text) {
    this.pending.push(text);
    if (this.timer) return;
    const wait = Math.max(0, this.lastFlush + THROTTLE_MS - performance.now());
    this.timer = setTimeout(() => this.flush(), wait);
  }

  flush() {
    this.timer = 0;
    this.lastFlush = performance.now();
    const text = this.pending.join(". ");
    this.pending = [];
    // Re-setting identical text is not announced again by screen readers: vary it.
    this.live.textContent = this.live.textContent === text ? `${text}.` : text;
  }
}
