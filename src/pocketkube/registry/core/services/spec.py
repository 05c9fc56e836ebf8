"""Service vocabulary shared by the other modules: constants, field paths and tolerant accessors.

Services arrive as decoded JSON, so the accessors never trust a type: after validation.type_errors
has passed they return the right types; before it they stay harmless (a wrong type reads as the
zero value). The predicates (needs a cluster IP, a node port, a health check) are the questions
upstream's strategy, validation and allocation all ask of a spec.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import Path
from pocketkube.api.validation import is_int

KIND = "Service"
CLUSTER_IP = "ClusterIP"
NODE_PORT = "NodePort"
LOAD_BALANCER = "LoadBalancer"
EXTERNAL_NAME = "ExternalName"
NONE = "None"
SINGLE_STACK, PREFER_DUAL_STACK, REQUIRE_DUAL_STACK = "SingleStack", "PreferDualStack", "RequireDualStack"

SERVICE_TYPES = [CLUSTER_IP, EXTERNAL_NAME, LOAD_BALANCER, NODE_PORT]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
SESSION_AFFINITIES = ["ClientIP", "None"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = [PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK]
TRAFFIC_DISTRIBUTIONS = ["PreferClose", "PreferSameNode", "PreferSameZone"]
DEFAULT_CLIENT_IP_TIMEOUT = 10800
MAX_CLIENT_IP_TIMEOUT = 86400
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"
TOPOLOGY_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"

ONLY_LOAD_BALANCER = "may only be used when `type` is 'LoadBalancer'"
CLIENT_IP_REQUIRED = "when session affinity type is ClientIP"
PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"

SPEC = Path("spec")
PORTS = SPEC.child("ports")
CLUSTER_IPS = SPEC.child("clusterIPs")


def spec_of(svc: Any) -> dict:
    spec = svc.get("spec") if isinstance(svc, dict) else None
    return spec if isinstance(spec, dict) else {}


def str_field(d: dict, key: str) -> str:
    value = d.get(key)
    return value if isinstance(value, str) else ""


def int_field(d: dict, key: str) -> int:
    value = d.get(key)
    return value if is_int(value) else 0


def list_field(d: dict, key: str) -> list:
    value = d.get(key)
    return value if isinstance(value, list) else []


def ports_of(spec: dict) -> list[dict]:
    return [p if isinstance(p, dict) else {} for p in list_field(spec, "ports")]


def name_of(svc: Any) -> str:
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def is_headless(spec: dict) -> bool:
    ips = list_field(spec, "clusterIPs")
    return len(ips) == 1 and ips[0] == NONE


def externally_accessible(spec: dict) -> bool:
    svc_type = str_field(spec, "type")
    return svc_type in (LOAD_BALANCER, NODE_PORT) or (svc_type == CLUSTER_IP and bool(list_field(spec, "externalIPs")))


def needs_health_check(spec: dict) -> bool:
    return str_field(spec, "type") == LOAD_BALANCER and str_field(spec, "externalTrafficPolicy") == "Local"


def needs_cluster_ip(spec: dict) -> bool:
    return str_field(spec, "type") != EXTERNAL_NAME


def needs_node_port(spec: dict) -> bool:
    return str_field(spec, "type") in (NODE_PORT, LOAD_BALANCER)


def node_port_set(spec: dict) -> set[int]:
    return {int_field(p, "nodePort") for p in ports_of(spec) if int_field(p, "nodePort")}


def node_ports_in_order(spec: dict) -> list[int]:
    return list(dict.fromkeys(int_field(p, "nodePort") for p in ports_of(spec) if int_field(p, "nodePort")))


def set_or_drop(d: dict, key: str, value: Any) -> None:
    """Zero values are omitted on output (Go's omitempty), so clearing a field removes it."""
    if value in (None, "", 0, []):
        d.pop(key, None)
    else:
        d[key] = value


def ensure_spec(svc: dict) -> dict:
    if svc.get("spec") is None:
        svc["spec"] = {}
    return svc["spec"]
