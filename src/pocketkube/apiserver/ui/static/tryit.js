// "Try it": copyable curl lines for every entry point, a bounded loop, the three ports, and the
// keep-alive caveat. The page itself never sends Service traffic.
import {h} from "./dom.js";

export function loopExample(entry) {
  return `for i in $(seq 1 30); do curl -s http://${entry.ip}:${entry.port} >/dev/null; done`;
}

async function copy(text, button, announce) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // No clipboard permission (plain http, or denied): select the text so Ctrl+C works.
    const code = button.previousElementSibling;
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  button.textContent = ok ? "Copied" : "Selected: press Ctrl+C";
  announce(ok ? "Copied to the clipboard" : "Command selected");
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function commandLine(text, testid, announce) {
  const button = h("button", {type: "button", class: "copy", "aria-label": `Copy: ${text}`}, "Copy");
  button.addEventListener("click", () => copy(text, button, announce));
  return h("div", {class: "cmd"}, h("code", {"data-testid": testid}, text), button);
}

export function renderTryIt(container, model, announce) {
  container.replaceChildren();
  const svc = model.service;
  if (!svc) {
    container.append(h("p", {class: "muted"}, "Pick a Service to see how to reach it."));
    return;
  }
  const entries = model.entries || [];
  const where = svc.type === "ClusterIP"
    ? "A ClusterIP is reachable from the nodes and from pods, not from outside the cluster."
    : svc.type === "NodePort" ? "The same nodePort answers on every node: try each line." : "";
  container.append(h("p", {}, where));
  const list = h("ul", {class: "cmds"});
  for (const e of entries) {
    list.append(h("li", {}, h("span", {class: "cmd-label"}, e.node ? `${e.node}${e.ready ? "" : " (NotReady)"}` : e.kind),
      commandLine(e.curl, "curl-line", announce)));
  }
  container.append(list);
  const first = entries.find((e) => e.ready) || entries[0];
  if (first) {
    container.append(h("p", {}, "Thirty connections, one after another (each curl opens a new one):"),
      commandLine(loopExample(first), "loop-line", announce));
  }
  const p = svc.port || {};
  const ports = [h("li", {}, h("strong", {}, `port ${p.port}`), ": the Service's own port, on its ClusterIP ", svc.clusterIP || "")];
  if (p.nodePort) ports.push(h("li", {}, h("strong", {}, `nodePort ${p.nodePort}`), ": opened on every node's IP"));
  ports.push(h("li", {}, h("strong", {}, `targetPort ${p.targetPort}`), ": where each pod listens; the Service forwards there"));
  container.append(h("ul", {class: "ports"}, ports),
    h("p", {class: "muted"}, "Each curl run opens one new connection; browsers and other keep-alive clients reuse theirs, so they stay on one pod."));
}
