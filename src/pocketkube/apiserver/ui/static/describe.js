// The `kubectl describe`-like view of one object: sections of label/value rows, its Events, YAML.
import {enc, getJSON} from "./api.js";
import {age, h} from "./dom.js";

export async function loadDescribe(container, resource, namespace, name) {
  container.replaceChildren(h("p", {class: "muted"}, "Loading…"));
  let data;
  try {
    data = await getJSON(`api/v1/describe/${enc(resource)}/${enc(namespace)}/${enc(name)}`);
  } catch (err) {
    container.replaceChildren(h("h1", {}, `${resource}/${name}`), h("p", {class: "error", role: "alert"}, err.message));
    return;
  }
  const title = data.namespace ? `${data.kind} ${data.namespace}/${data.name}` : `${data.kind} ${data.name}`;
  const parts = [h("p", {class: "crumbs"}, h("a", {href: "#/overview"}, "Overview")), h("h1", {}, title)];
  for (const section of data.sections || []) {
    parts.push(h("section", {class: "describe-section"}, h("h3", {}, section.title),
      (section.rows || []).length
        ? h("dl", {class: "rows"}, section.rows.flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, String(value ?? ""))]))
        : h("p", {class: "muted"}, "<none>")));
  }
  const events = data.events || [];
  parts.push(h("h3", {}, "Events"), events.length
    ? h("table", {class: "grid"}, h("caption", {}, `Events of ${data.name}`),
      h("thead", {}, h("tr", {}, ["Type", "Reason", "Age", "Count", "Message"].map((c) => h("th", {scope: "col"}, c)))),
      h("tbody", {}, events.map((ev) => h("tr", {class: ev.type === "Warning" ? "warn-row" : null},
        h("td", {}, ev.type), h("td", {}, ev.reason), h("td", {}, age(ev.lastTimestamp)),
        h("td", {class: "num"}, String(ev.count ?? 1)), h("td", {}, ev.message)))))
    : h("p", {class: "muted"}, "<none>"));
  if (data.yaml) parts.push(h("details", {}, h("summary", {}, "YAML"), h("pre", {class: "yaml", tabindex: 0}, data.yaml)));
  container.replaceChildren(...parts);
}
