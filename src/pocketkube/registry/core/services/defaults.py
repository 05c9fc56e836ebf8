"""Static defaulting of a Service (SetDefaults_Service), applied when the object is decoded.

Only what needs no context: session affinity, type, port protocol and targetPort, traffic
policies, allocateLoadBalancerNodePorts and ingress ipMode. Defaults that depend on the stored
object or on the cluster (IP families, allocated IPs and ports) belong to strategy.py and
allocation.py. Values of a wrong JSON type are left alone for validation to report.
"""

from __future__ import annotations

from pocketkube.api.validation import is_int
from pocketkube.registry.core.services.spec import (
    CLUSTER_IP,
    DEFAULT_CLIENT_IP_TIMEOUT,
    LOAD_BALANCER,
    NODE_PORT,
    ensure_spec,
    externally_accessible,
)


def default(svc: dict) -> None:
    if not isinstance(svc, dict):
        return
    spec = ensure_spec(svc)
    if not isinstance(spec, dict):
        return
    if spec.get("sessionAffinity") in (None, ""):
        spec["sessionAffinity"] = "None"
    affinity = spec["sessionAffinity"]
    if affinity == "None":
        spec.pop("sessionAffinityConfig", None)
    elif affinity == "ClientIP" and _lacks_client_ip_timeout(spec):
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_TIMEOUT}}
    if spec.get("type") in (None, ""):
        spec["type"] = CLUSTER_IP
    ports = spec.get("ports")
    for port in ports if isinstance(ports, list) else []:
        if isinstance(port, dict):
            _default_port(port)
    if externally_accessible(spec) and spec.get("externalTrafficPolicy") in (None, ""):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in (CLUSTER_IP, NODE_PORT, LOAD_BALANCER):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == LOAD_BALANCER:
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        _default_ingress_ip_mode(svc)
    if svc.get("status") is None:
        svc["status"] = {"loadBalancer": {}}


def _lacks_client_ip_timeout(spec: dict) -> bool:
    """True when config, clientIP or timeoutSeconds is missing (values of a wrong type are left for validate)."""
    config = spec.get("sessionAffinityConfig")
    if not isinstance(config, dict):
        return config is None
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return client_ip is None
    return client_ip.get("timeoutSeconds") is None


def _default_port(port: dict) -> None:
    if port.get("protocol") in (None, ""):
        port["protocol"] = "TCP"
    target = port.get("targetPort")
    if (target is None or target == "" or (is_int(target) and target == 0)) and is_int(port.get("port")):
        port["targetPort"] = port["port"]


def _default_ingress_ip_mode(svc: dict) -> None:
    status = svc.get("status")
    lb = status.get("loadBalancer") if isinstance(status, dict) else None
    ingress = lb.get("ingress") if isinstance(lb, dict) else None
    for entry in ingress if isinstance(ingress, list) else []:
        if isinstance(entry, dict) and entry.get("ip") and entry.get("ipMode") is None:
            entry["ipMode"] = "VIP"
