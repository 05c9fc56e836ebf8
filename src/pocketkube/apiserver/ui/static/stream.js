// The one Server-Sent Events stream of this tab, with a visible status. Every (re)connect starts
// with a full snapshot, so the page never patches stale state. EventSource retries by itself
// after a dropped stream (the server sends `retry: 2000`); when the server answers with an error
// (401/403/503) the browser gives up, so this class retries with backoff and says why.
export class Stream {
  constructor({onSnapshot, onTopology, onTraffic, onState, onFailure}) {
    Object.assign(this, {onSnapshot, onTopology, onTraffic, onState, onFailure});
    this.es = null;
    this.url = null;
    this.retryTimer = 0;
    this.failures = 0;
    this.watchdog = 0;
    this.WATCHDOG_MS = 30000;   // traffic ticks every second: 30 s of silence means a dead stream
  }

  open(url) {
    this.close();
    this.url = url;
    this.failures = 0;
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    const es = new EventSource(this.url);
    this.es = es;
    const parse = (fn) => (ev) => {
      if (this.es !== es) return;
      this.feed();
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      fn(data, ev);
    };
    es.addEventListener("snapshot", parse((data, ev) => {
      this.failures = 0;
      this.onState("live");
      this.onSnapshot(data, ev.lastEventId);
    }));
    es.addEventListener("topology", parse((data) => this.onTopology(data)));
    es.addEventListener("traffic", parse((data) => this.onTraffic(data)));
    es.addEventListener("error", () => {
      if (this.es !== es) return;
      if (es.readyState === EventSource.CLOSED) this.failed();
      else this.onState(navigator.onLine ? "reconnecting" : "offline");   // the browser retries by itself
    });
    this.feed();
  }

  /** Connect again now (the network came back): a fresh stream, hence a fresh snapshot. */
  reconnect() {
    if (!this.url) return;
    this.es?.close();
    this.es = null;
    this.failures = 0;
    this.connect();
  }

  failed() {
    this.es?.close();
    this.es = null;
    this.failures += 1;
    this.onState(this.failures > 3 || !navigator.onLine ? "offline" : "reconnecting");
    this.onFailure?.(this.failures);
    const delay = Math.min(30000, 1000 * 2 ** Math.min(this.failures, 5));
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  feed() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (!this.es) return;
      this.es.close();
      this.es = null;
      this.onState("reconnecting");
      this.connect();
    }, this.WATCHDOG_MS);
  }

  close() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdog);
    this.es?.close();
    this.es = null;
  }
}
