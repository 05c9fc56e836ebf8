"""The one model both data planes implement, computed from Services and EndpointSlices.

Pure functions only: `build_model(services, slices)` gives, for every service port that the
proxy must serve, its frontends (ClusterIPs, nodePort, LoadBalancer and external IPs) and its
endpoints with their conditions. `categorize_endpoints` then applies the traffic policies for
one node, as kube-proxy's CategorizeEndpoints does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    node_name: str = ""
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    pod: str = ""  # targetRef.name when the endpoint is a Pod: traffic snapshots name it

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP | UDP | SCTP
    port: int
    cluster_ips: tuple[str, ...] = ()
    node_port: int = 0
    load_balancer_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    affinity_timeout: int = 0  # seconds; 0 means no session affinity
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local
    health_check_node_port: int = 0

    @property
    def key(self) -> str:
        """`ns/name:port` (just `ns/name` for an unnamed port), as kube-proxy names it."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServiceEntry:
    port: ServicePort
    endpoints: tuple[Endpoint, ...] = field(default_factory=tuple)


Model = dict[tuple[str, str], ServiceEntry]  # (ServicePort.key, protocol) -> entry


def _skip(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    labels = (svc.get("metadata") or {}).get("labels") or {}
    if spec.get("type") == "ExternalName":
        return True
    if spec.get("clusterIP") in (None, "", "None"):
        return True
    return SERVICE_PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels


def service_ports(svc: dict) -> list[ServicePort]:
    if _skip(svc):
        return []
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    status = svc.get("status") or {}
    svc_type = spec.get("type", "ClusterIP")
    cluster_ips = tuple(spec.get("clusterIPs") or [spec["clusterIP"]])
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        lb_ips = tuple(i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or []
                       if isinstance(i, dict) and i.get("ip"))
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    external_local = svc_type in ("NodePort", "LoadBalancer") and spec.get("externalTrafficPolicy") == "Local"
    out = []
    for p in spec.get("ports") or []:
        out.append(ServicePort(
            namespace=meta.get("namespace", ""), name=meta.get("name", ""), port_name=p.get("name") or "",
            protocol=p.get("protocol") or "TCP", port=int(p["port"]), cluster_ips=cluster_ips,
            node_port=int(p.get("nodePort") or 0) if svc_type in ("NodePort", "LoadBalancer") else 0,
            load_balancer_ips=lb_ips, external_ips=tuple(spec.get("externalIPs") or ()),
            affinity_timeout=affinity, external_local=external_local,
            internal_local=spec.get("internalTrafficPolicy") == "Local",
            health_check_node_port=int(spec.get("healthCheckNodePort") or 0)))
    return out


def _slice_endpoints(slc: dict, port_name: str, protocol: str) -> Iterable[Endpoint]:
    port = None
    for p in slc.get("ports") or []:
        if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
            port = p.get("port")
    if not port:
        return
    for ep in slc.get("endpoints") or []:
        cond = ep.get("conditions") or {}
        ready = cond.get("ready")
        ready = True if ready is None else bool(ready)
        serving = cond.get("serving")
        serving = ready if serving is None else bool(serving)
        terminating = bool(cond.get("terminating"))
        ref = ep.get("targetRef") or {}
        pod = (ref.get("name") or "") if ref.get("kind") == "Pod" else ""
        for ip in (ep.get("addresses") or [])[:1]:  # one address per endpoint per family
            yield Endpoint(ip, int(port), ep.get("nodeName") or "", ready, serving, terminating, pod)


def build_model(services: Iterable[dict], slices: Iterable[dict]) -> Model:
    by_service: dict[str, list[dict]] = {}
    for slc in slices:
        meta = slc.get("metadata") or {}
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name and slc.get("addressType", "IPv4") == "IPv4":
            by_service.setdefault(f"{meta.get('namespace', '')}/{name}", []).append(slc)
    model: Model = {}
    for svc in services:
        for sp in service_ports(svc):
            eps = sorted({ep for slc in by_service.get(sp.service_key, [])
                          for ep in _slice_endpoints(slc, sp.port_name, sp.protocol)})
            model[(sp.key, sp.protocol)] = ServiceEntry(sp, tuple(eps))
    return model


@dataclass(frozen=True)
class Categorized:
    cluster: tuple[Endpoint, ...]  # for ClusterIP traffic (internal policy)
    external: tuple[Endpoint, ...]  # for NodePort / LoadBalancer / external IP traffic
    has_any: bool  # any usable endpoint anywhere (else: refuse, not drop)


def _usable(eps: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """Ready endpoints; if none, serving-and-terminating ones as a fallback."""
    eps = tuple(eps)
    ready = tuple(e for e in eps if e.ready)
    return ready or tuple(e for e in eps if e.serving and e.terminating)


def categorize_endpoints(entry: ServiceEntry, node_name: str) -> Categorized:
    all_usable = _usable(entry.endpoints)
    local_usable = _usable(e for e in entry.endpoints if e.node_name == node_name)
    sp = entry.port
    cluster = local_usable if sp.internal_local else all_usable
    external = local_usable if sp.external_local else all_usable
    return Categorized(cluster, external, bool(all_usable))
