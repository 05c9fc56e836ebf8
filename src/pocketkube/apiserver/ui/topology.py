"""The live map's picture of one Service port (spec §2 MODEL), joined from plain objects.

Pure: a Service, its EndpointSlices, the namespace's Pods and the Nodes in, a JSON-ready dict out.
Entries are where connections come in (every node's IP:nodePort, NotReady nodes included, as
kube-proxy programs them on every node; the ClusterIP; each LoadBalancer ingress IP; external IPs);
endpoints are what the EndpointSlices publish for the selected port, with the state kube-proxy
acts on (Ready, NotReady, Terminating). With no ready endpoint, `problem` says why in words.
"""

from __future__ import annotations

from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def node_ip(node: dict) -> str:
    addresses = (node.get("status") or {}).get("addresses") or []
    return next((a.get("address", "") for a in addresses if a.get("type") == "InternalIP"), "")


def node_ready(node: dict) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def select_port(ports: list[dict], wanted: str | None) -> dict | None:
    """The Service port named `wanted` (or numbered so); the first one when none is asked for."""
    if not ports:
        return None
    if not wanted:
        return ports[0]
    for p in ports:
        if p.get("name", "") == wanted or str(p.get("port")) == wanted:
            return p
    return None


def _port_view(p: dict) -> dict:
    return {"name": p.get("name", ""), "protocol": p.get("protocol", "TCP"), "port": p.get("port"),
            "targetPort": p.get("targetPort", p.get("port")), "nodePort": p.get("nodePort")}


def _hostport(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _curl(ip: str, port: Any, protocol: str) -> str:
    if protocol == "UDP":
        return f"nc -u {ip} {port}"
    return f"curl http://{_hostport(ip, port)}"


def _entry(kind: str, ip: str, port: Any, protocol: str, node: str | None, ready: bool) -> dict:
    return {"id": f"{kind}/{_hostport(ip, port)}", "kind": kind, "node": node, "ip": ip, "port": port,
            "ready": ready, "curl": _curl(ip, port, protocol)}


def entries(service: dict, port: dict, nodes: list[dict]) -> list[dict]:
    spec, status = service.get("spec") or {}, service.get("status") or {}
    stype = spec.get("type", "ClusterIP")
    protocol = port.get("protocol", "TCP")
    out: list[dict] = []
    if stype == "LoadBalancer":
        for ing in (status.get("loadBalancer") or {}).get("ingress") or []:
            if ing.get("ip"):
                out.append(_entry("LoadBalancer", ing["ip"], port.get("port"), protocol, None, True))
    # A LoadBalancer is drawn from its ingress IPs; until it has one, from its node ports.
    if (stype == "NodePort" or (stype == "LoadBalancer" and not out)) and port.get("nodePort"):
        for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            if node_ip(n):
                out.append(_entry("NodePort", node_ip(n), port["nodePort"], protocol, n["metadata"]["name"],
                                  node_ready(n)))
    cluster_ip = spec.get("clusterIP", "")
    if stype == "ClusterIP" and cluster_ip and cluster_ip != "None":
        out.append(_entry("ClusterIP", cluster_ip, port.get("port"), protocol, None, True))
    for ip in spec.get("externalIPs") or []:
        out.append(_entry("ExternalIP", ip, port.get("port"), protocol, None, True))
    return out


def _state(conditions: dict) -> str:
    if conditions.get("terminating"):
        return "Terminating"
    return "Ready" if conditions.get("ready", True) is not False else "NotReady"


def endpoints(namespace: str, slices: list[dict], port: dict, pods_by_name: dict[str, dict]) -> list[dict]:
    """The selected port's endpoints over all slices (deduplicated by ip:port)."""
    found: dict[str, dict] = {}
    name, protocol = port.get("name", ""), port.get("protocol", "TCP")
    for s in slices:
        ep_port = next((p.get("port") for p in s.get("ports") or []
                        if p.get("name", "") == name and p.get("protocol", "TCP") == protocol), None)
        if ep_port is None:
            continue
        for ep in s.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            pod = ref.get("name", "") if ref.get("kind") == "Pod" else ""
            node = ep.get("nodeName") or ((pods_by_name.get(pod) or {}).get("spec") or {}).get("nodeName") or ""
            state = _state(ep.get("conditions") or {})
            for ip in ep.get("addresses") or []:
                key = _hostport(ip, ep_port)
                found.setdefault(key, {"key": key, "ip": ip, "port": ep_port, "pod": pod, "namespace": namespace,
                                       "node": node, "state": state, "ready": state == "Ready"})
    return sorted(found.values(), key=lambda e: (e["node"], e["pod"], e["key"]))


def selector_text(selector: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _matches(labels: dict, selector: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def problem(service: dict, port: dict | None, eps: list[dict], pods: list[dict]) -> str | None:
    """Why no endpoint takes new connections, in words; None when one does."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return f"an ExternalName Service is a DNS alias for {spec.get('externalName', '')}: it has no endpoints"
    if port is None:
        return "the Service has no ports"
    if any(e["ready"] for e in eps):
        return None
    if eps and all(e["state"] == "Terminating" for e in eps):
        return "every endpoint is terminating"
    selector = spec.get("selector") or {}
    if not selector:
        return "the Service has no selector: its EndpointSlices are managed by hand, and none has a ready endpoint"
    matching = [p for p in pods if _matches(p["metadata"].get("labels") or {}, selector)
                and not p["metadata"].get("deletionTimestamp")]
    if not matching:
        return f"no pods match the selector {selector_text(selector)}"
    ready = [p for p in matching if pod_ready(p)]
    if not ready:
        return (f"{_plural(len(matching), 'pod matches', 'pods match')} the selector {selector_text(selector)}, "
                f"none is Ready")
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, str) and not any(
            cp.get("name") == target for p in ready for c in (p.get("spec") or {}).get("containers") or []
            for cp in c.get("ports") or []):
        return (f"{_plural(len(ready), 'Ready pod matches', 'Ready pods match')}, but no container has a port "
                f'named "{target}" (the targetPort)')
    return f"{_plural(len(ready), 'Ready pod matches', 'Ready pods match')}, but no endpoint is published yet"


def service_view(service: dict, port: dict | None, eps: list[dict], prob: str | None) -> dict:
    spec, meta = service.get("spec") or {}, service["metadata"]
    affinity = spec.get("sessionAffinity", "None")
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    if affinity == "ClientIP" and timeout is None:
        timeout = 10800
    stype = spec.get("type", "ClusterIP")
    lb = [i.get("ip") for i in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
          if i.get("ip")]
    return {"namespace": meta.get("namespace", ""), "name": meta["name"], "type": stype,
            "clusterIP": spec.get("clusterIP", ""), "clusterIPs": spec.get("clusterIPs") or [],
            "sessionAffinity": affinity, "affinityTimeoutSeconds": timeout if affinity == "ClientIP" else None,
            "externalTrafficPolicy": spec.get("externalTrafficPolicy", "Cluster")
            if stype in ("NodePort", "LoadBalancer") else None,
            "internalTrafficPolicy": spec.get("internalTrafficPolicy", "Cluster"),
            "loadBalancerIPs": lb, "externalIPs": spec.get("externalIPs") or [],
            "selector": spec.get("selector") or {},
            "ports": [_port_view(p) for p in spec.get("ports") or []],
            "port": _port_view(port) if port is not None else None,
            "readyEndpoints": sum(1 for e in eps if e["ready"]), "totalEndpoints": len(eps),
            "problem": prob}


def nodes_view(nodes: list[dict]) -> list[dict]:
    return sorted(({"name": n["metadata"]["name"], "ip": node_ip(n), "ready": node_ready(n)} for n in nodes),
                  key=lambda n: n["name"])


def service_slices(slices: list[dict], name: str) -> list[dict]:
    return [s for s in slices if (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name]


def build_model(*, namespace: str, name: str | None, service: dict | None, slices: list[dict], pods: list[dict],
                nodes: list[dict], port: str | None = None, server: str = "", dataplane: str | None = None,
                resource_version: str = "", error: str | None = None) -> dict:
    """MODEL for `service` (None: unknown, with the error the page shows). `slices` and `pods`
    are the namespace's; `slices` may include other Services' (filtered here)."""
    model: dict[str, Any] = {"cluster": {"dataplane": dataplane, "server": server},
                             "resourceVersion": resource_version, "service": None, "error": error,
                             "entries": [], "nodes": nodes_view(nodes), "endpoints": [], "expectedShare": None}
    if service is None:
        if model["error"] is None:
            model["error"] = f'services "{name}" not found in namespace "{namespace}"' if name else "no Services yet"
        return model
    ports = (service.get("spec") or {}).get("ports") or []
    selected = select_port(ports, port)
    if selected is None and ports:
        model["error"] = f'services "{service["metadata"]["name"]}" has no port "{port}"'
    eps = endpoints(namespace, service_slices(slices, service["metadata"]["name"]), selected, 
                    {p["metadata"]["name"]: p for p in pods}) if selected is not None else []
    model["service"] = service_view(service, selected, eps, problem(service, selected, eps, pods))
    model["entries"] = entries(service, selected, nodes) if selected is not None else []
    model["endpoints"] = eps
    ready = sum(1 for e in eps if e["ready"])
    model["expectedShare"] = round(1 / ready, 4) if ready else None
    return model


def default_service(services: list[dict]) -> dict | None:
    """The picker's default: the newest NodePort Service, else the newest outside kube-system."""
    def newest(items: list[dict]) -> dict | None:
        return max(items, key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]),
                   default=None)
    return newest([s for s in services if (s.get("spec") or {}).get("type") == "NodePort"]) or \
        newest([s for s in services if s["metadata"].get("namespace") != "kube-system"])
