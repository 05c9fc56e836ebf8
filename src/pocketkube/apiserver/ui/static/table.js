// The endpoint table: the map's accessible twin, built from the same counters so every number
// (and data-conn-total) equals the map's.
import {h, setAttrs, setText} from "./dom.js";
import {byNodeThenPod} from "./map.js";
import {describeLink} from "./overview.js";
import {endpointKey, fmtRate, pct, shares, spread} from "./stats.js";

const COLUMNS = ["Pod", "Node", "Endpoint", "State", "conn/s", "Share", "Expected ± 1σ", "Total", "Active"];

export class EndpointTable {
  constructor(table) {
    this.table = table;
    this.rows = new Map();
    this.model = null;
    table.replaceChildren(
      h("caption", {}, "Endpoints of the selected Service port (connections since this page opened)"),
      h("thead", {}, h("tr", {}, COLUMNS.map((c, i) => h("th", {scope: "col", class: i >= 4 ? "num" : null}, c)))));
    this.body = h("tbody", {});
    this.foot = h("tfoot", {});
    table.append(this.body, this.foot);
  }

  render(model, counters) {
    this.model = model;
    this.rows.clear();
    this.body.replaceChildren();
    const endpoints = [...(model.endpoints || [])].sort(byNodeThenPod);
    if (!endpoints.length) {
      this.body.append(h("tr", {}, h("td", {colspan: COLUMNS.length, class: "muted"},
        model.service ? "No endpoints: no pod matches the Service's selector." : "No Service selected.")));
    }
    for (const ep of endpoints) {
      const cells = {
        pod: h("th", {scope: "row"}, ep.pod ? describeLink("pods", ep.namespace, ep.pod) : "(no pod)"),
        node: h("td", {}, ep.node || "—"),
        addr: h("td", {class: "mono"}, `${ep.ip}:${ep.port}`),
        state: h("td", {}, h("span", {class: `state state-${ep.state}`}, ep.state)),
        rate: h("td", {class: "num"}), share: h("td", {class: "num"}), expected: h("td", {class: "num"}),
        total: h("td", {class: "num"}), active: h("td", {class: "num"}),
      };
      const tr = h("tr", {"data-pod": ep.pod || ep.key, "data-key": ep.key, "data-state": ep.state}, Object.values(cells));
      this.rows.set(ep.key, {tr, cells, ep});
      this.body.append(tr);
    }
    this.sumRow = {rate: h("td", {class: "num"}), total: h("td", {class: "num"})};
    this.foot.replaceChildren(h("tr", {}, h("th", {scope: "row", colspan: 4}, "All endpoints"),
      this.sumRow.rate, h("td", {class: "num"}, "100%"), h("td", {}), this.sumRow.total, h("td", {})));
    this.update(counters);
  }

  update(counters) {
    const model = this.model;
    if (!model) return;
    const keys = model.endpoints.map(endpointKey);
    const sh = shares(counters, keys);
    const n = keys.reduce((acc, k) => acc + counters.total(k), 0);
    const p = model.expectedShare;
    let rateSum = 0;
    for (const {tr, cells, ep} of this.rows.values()) {
      const key = endpointKey(ep);
      const total = counters.total(key);
      const rate = counters.rateOf(key);
      rateSum += rate;
      setAttrs(tr, {"data-conn-total": total, "data-rate": rate});
      setText(cells.rate, fmtRate(rate));
      setText(cells.share, pct(sh.get(key)));
      const sigma = spread(p, n);
      setText(cells.expected, !ep.ready || p === null || p === undefined ? "—"
        : sigma === null ? pct(p) : `${pct(p)} ± ${pct(sigma)}`);
      setText(cells.total, String(total));
      const active = counters.active.get(key);
      setText(cells.active, active === null || active === undefined ? "—" : String(active));
    }
    setText(this.sumRow.rate, fmtRate(rateSum));
    setText(this.sumRow.total, String(n));
  }
}
