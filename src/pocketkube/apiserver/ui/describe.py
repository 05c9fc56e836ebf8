"""The overview page and the `kubectl describe`-like view, as JSON (pure: objects in, dicts out)."""

from __future__ import annotations

from typing import Any

import yaml

from pocketkube.apiserver.ui.topology import node_ip, node_ready, selector_text

RESOURCES = {  # resource -> (API group, kind, namespaced)
    "pods": ("", "Pod", True), "services": ("", "Service", True), "nodes": ("", "Node", False),
    "endpointslices": ("discovery.k8s.io", "EndpointSlice", True),
    "deployments": ("apps", "Deployment", True), "replicasets": ("apps", "ReplicaSet", True),
}
MAX_EVENTS = 50


def _event_time(e: dict) -> str:
    return e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp") or ""


def event_view(e: dict) -> dict:
    obj = e.get("involvedObject") or e.get("regarding") or {}
    return {"namespace": (e.get("metadata") or {}).get("namespace", ""), "type": e.get("type", ""),
            "reason": e.get("reason", ""), "object": f"{obj.get('kind', '')}/{obj.get('name', '')}",
            "message": e.get("message") or e.get("note") or "", "lastTimestamp": _event_time(e),
            "count": e.get("count") or 1}


def newest_events(events: list[dict], limit: int = MAX_EVENTS) -> list[dict]:
    return [event_view(e) for e in sorted(events, key=_event_time, reverse=True)[:limit]]


def pod_ready_text(pod: dict) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def service_summary(svc: dict, ready: int, total: int) -> dict:
    spec, meta = svc.get("spec") or {}, svc["metadata"]
    return {"namespace": meta.get("namespace", ""), "name": meta["name"], "type": spec.get("type", "ClusterIP"),
            "clusterIP": spec.get("clusterIP", ""),
            "ports": [{"name": p.get("name", ""), "protocol": p.get("protocol", "TCP"), "port": p.get("port"),
                       "targetPort": p.get("targetPort", p.get("port")), "nodePort": p.get("nodePort")}
                      for p in spec.get("ports") or []],
            "creationTimestamp": meta.get("creationTimestamp", ""), "readyEndpoints": ready, "totalEndpoints": total}


def endpoint_counts(slices: list[dict]) -> tuple[int, int]:
    """(ready, total) distinct endpoint addresses over a Service's slices."""
    ready, total = set(), set()
    for s in slices:
        for ep in s.get("endpoints") or []:
            for ip in ep.get("addresses") or []:
                total.add(ip)
                if (ep.get("conditions") or {}).get("ready", True) is not False:
                    ready.add(ip)
    return len(ready), len(total)


def overview(nodes: list[dict], pods: list[dict], services: list[tuple[dict, int, int]], events: list[dict],
             usage: dict[str, dict[str, str]]) -> dict:
    by_node: dict[str, list[dict]] = {}
    for p in pods:
        by_node.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
    out_nodes = []
    for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = n["metadata"]["name"]
        out_nodes.append({"name": name, "ip": node_ip(n), "ready": node_ready(n),
                          "cpu": (usage.get(name) or {}).get("cpu"), "memory": (usage.get(name) or {}).get("memory"),
                          "pods": [{"namespace": p["metadata"].get("namespace", ""), "name": p["metadata"]["name"],
                                    "phase": (p.get("status") or {}).get("phase", "Pending"),
                                    "ready": pod_ready_text(p), "ip": (p.get("status") or {}).get("podIP", "")}
                                   for p in sorted(by_node.get(name, []), key=lambda p: (
                                       p["metadata"].get("namespace", ""), p["metadata"]["name"]))]})
    svcs = [service_summary(s, r, t) for s, r, t in
            sorted(services, key=lambda x: (x[0]["metadata"].get("namespace", ""), x[0]["metadata"]["name"]))]
    for s in svcs:
        s.pop("creationTimestamp")
    return {"nodes": out_nodes, "services": svcs, "events": newest_events(events)}


def _kv(d: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((d or {}).items())) or "<none>"


def _conditions(obj: dict) -> list[list[str]]:
    return [[c.get("type", ""), f"{c.get('status', '')}" + (f" ({c['reason']})" if c.get("reason") else "")]
            for c in (obj.get("status") or {}).get("conditions") or []]


def _meta_rows(obj: dict) -> list[list[str]]:
    m = obj["metadata"]
    rows = [["Name", m["name"]]]
    if m.get("namespace"):
        rows.append(["Namespace", m["namespace"]])
    rows += [["Labels", _kv(m.get("labels"))], ["Created", m.get("creationTimestamp", "")]]
    owners = ", ".join(f"{o.get('kind')}/{o.get('name')}" for o in m.get("ownerReferences") or [])
    if owners:
        rows.append(["Controlled By", owners])
    return rows


def _pod(obj: dict) -> list[dict]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    main = [["Node", spec.get("nodeName") or "<none>"], ["Status", status.get("phase", "Pending")],
            ["IP", status.get("podIP") or "<none>"], ["Ready", pod_ready_text(obj)]]
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    containers = []
    for c in spec.get("containers") or []:
        s = statuses.get(c.get("name"), {})
        state = next(iter((s.get("state") or {}).keys()), "waiting")
        ports = ", ".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or [])
        containers.append([c.get("name", ""), f"image {c.get('image', '')}; {state}; ready {bool(s.get('ready'))}; "
                                              f"restarts {s.get('restartCount', 0)}" + (f"; ports {ports}" if ports else "")])
    return [{"title": "Pod", "rows": _meta_rows(obj) + main}, {"title": "Containers", "rows": containers},
            {"title": "Conditions", "rows": _conditions(obj)}]


def _service(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    rows = [["Type", spec.get("type", "ClusterIP")], ["IP", spec.get("clusterIP", "")],
            ["Selector", selector_text(spec.get("selector") or {}) or "<none>"],
            ["Session Affinity", spec.get("sessionAffinity", "None")]]
    if spec.get("externalTrafficPolicy"):
        rows.append(["External Traffic Policy", spec["externalTrafficPolicy"]])
    ports = [[p.get("name") or "<unset>", f"{p.get('port')}/{p.get('protocol', 'TCP')} → "
                                          f"{p.get('targetPort', p.get('port'))}" +
              (f", NodePort {p['nodePort']}" if p.get("nodePort") else "")] for p in spec.get("ports") or []]
    return [{"title": "Service", "rows": _meta_rows(obj) + rows}, {"title": "Ports", "rows": ports}]


def _node(obj: dict) -> list[dict]:
    status = obj.get("status") or {}
    addresses = [[a.get("type", ""), a.get("address", "")] for a in status.get("addresses") or []]
    capacity = [[k, str(v)] for k, v in sorted((status.get("allocatable") or {}).items())]
    info = status.get("nodeInfo") or {}
    return [{"title": "Node", "rows": _meta_rows(obj) + [["Ready", str(node_ready(obj))],
                                                         ["Kubelet", info.get("kubeletVersion", "")]]},
            {"title": "Addresses", "rows": addresses}, {"title": "Allocatable", "rows": capacity},
            {"title": "Conditions", "rows": _conditions(obj)}]


def _slice(obj: dict) -> list[dict]:
    ports = ", ".join(f"{p.get('name') or '<unset>'} {p.get('port')}/{p.get('protocol', 'TCP')}"
                      for p in obj.get("ports") or [])
    eps = [[", ".join(e.get("addresses") or []),
            f"ready {(e.get('conditions') or {}).get('ready')}, node {e.get('nodeName', '')}, "
            f"{(e.get('targetRef') or {}).get('kind', '')}/{(e.get('targetRef') or {}).get('name', '')}"]
           for e in obj.get("endpoints") or []]
    return [{"title": "EndpointSlice", "rows": _meta_rows(obj) + [["AddressType", obj.get("addressType", "")],
                                                                  ["Ports", ports or "<unset>"]]},
            {"title": "Endpoints", "rows": eps}]


def _workload(kind: str):
    def sections(obj: dict) -> list[dict]:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        rows = [["Selector", selector_text(sel) or "<none>"],
                ["Replicas", f"{status.get('readyReplicas', 0)} ready / {status.get('replicas', 0)} current / "
                             f"{spec.get('replicas', 1)} desired"]]
        if kind == "Deployment":
            rows.append(["Strategy", (spec.get("strategy") or {}).get("type", "RollingUpdate")])
        images = [[c.get("name", ""), c.get("image", "")] for c in
                  ((spec.get("template") or {}).get("spec") or {}).get("containers") or []]
        return [{"title": kind, "rows": _meta_rows(obj) + rows}, {"title": "Pod Template", "rows": images},
                {"title": "Conditions", "rows": _conditions(obj)}]
    return sections


_SECTIONS = {"pods": _pod, "services": _service, "nodes": _node, "endpointslices": _slice,
             "deployments": _workload("Deployment"), "replicasets": _workload("ReplicaSet")}


def describe(resource: str, obj: dict, events: list[dict]) -> dict[str, Any]:
    """The describe view of `obj`; `events` are its namespace's (or "default" for a Node)."""
    _, kind, _ = RESOURCES[resource]
    m = obj["metadata"]
    def about(e: dict) -> dict:
        return e.get("involvedObject") or e.get("regarding") or {}
    # `events` are the object's namespace's (a Node's are in "default", as kubectl describe finds them)
    mine = [e for e in events if about(e).get("kind") == kind and about(e).get("name") == m["name"]]
    return {"kind": kind, "namespace": m.get("namespace", ""), "name": m["name"], "sections": _SECTIONS[resource](obj),
            "events": newest_events(mine), "yaml": yaml.safe_dump(obj, sort_keys=False)}
