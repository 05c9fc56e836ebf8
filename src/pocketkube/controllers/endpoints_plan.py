"""Pure legacy Endpoints computation: (service, pods, existing Endpoints) → the object to write.

Mirrors pkg/controller/endpoint: every selected pod becomes an address on each service port its
targetPort resolves for, ready pods (or all, with publishNotReadyAddresses) under `addresses`
and the others under `notReadyAddresses`; terminating pods are left out unless
publishNotReadyAddresses. The subsets are then repacked into canonical form (addresses sharing
a port set merged, a not-ready address never promoted, everything sorted), so an unchanged
result compares equal and is not rewritten. Beyond 1000 addresses the object is truncated,
ready addresses first, and annotated as over capacity.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

from pocketkube.controllers.endpointslice_plan import (
    HEADLESS_LABEL,
    TRIGGER_TIME_ANNOTATION,
    find_port,
    is_pod_ready,
    pod_ips,
    selector_matches,
    selects_pods,
    should_pod_be_in_endpoints,
    should_set_hostname,
)

__all__ = [
    "MAX_ENDPOINTS_ADDRESSES",
    "OVER_CAPACITY_ANNOTATION",
    "EndpointsPlan",
    "plan_endpoints",
    "repack_subsets",
    "truncate_subsets",
]

MAX_ENDPOINTS_ADDRESSES = 1000
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"

_NO_PORT = ("", 0, "", "")  # sentinel: a headless service without ports still lists its addresses


@dataclass
class EndpointsPlan:
    action: str  # "create", "update" or "none"
    endpoints: dict | None = None


def _address(service: dict, pod: dict) -> dict | None:
    family = ((service.get("spec") or {}).get("ipFamilies") or ["IPv4"])[0]
    ip = next((ip for ip in pod_ips(pod) if (":" in ip) == (family == "IPv6")), None)
    if ip is None:
        return None
    m, spec = pod["metadata"], pod.get("spec") or {}
    address: dict = {"ip": ip}
    if should_set_hostname(pod, service):
        address["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        address["nodeName"] = spec["nodeName"]
    address["targetRef"] = {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m["name"],
                            "uid": m.get("uid", "")}
    return address


def _port(service_port: dict, number: int) -> tuple[str, int, str, str]:
    return (service_port.get("name") or "", number, service_port.get("protocol") or "TCP",
            service_port.get("appProtocol") or "")


def _port_dict(port: tuple[str, int, str, str]) -> dict:
    name, number, protocol, app_protocol = port
    out: dict = {"name": name} if name else {}
    out.update(port=number, protocol=protocol)
    if app_protocol:
        out["appProtocol"] = app_protocol
    return out


def _address_key(address: dict) -> tuple[str, str]:
    return address["ip"], (address.get("targetRef") or {}).get("uid", "")


def _entries(service: dict, pods: Iterable[dict]) -> list[tuple[tuple, dict, bool]]:
    """(port, address, ready) for every pod and service port it serves."""
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    namespace = service["metadata"].get("namespace", "")
    publish = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    out = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("namespace", "") != namespace or not selector_matches(selector, pod):
            continue
        if not should_pod_be_in_endpoints(pod, include_terminating=publish):
            continue
        address = _address(service, pod)
        if address is None:
            continue
        ready = publish or is_pod_ready(pod)
        if not service_ports:
            if spec.get("clusterIP") == "None":
                out.append((_NO_PORT, address, ready))
            continue
        for sp in service_ports:
            number = find_port(pod, sp)
            if number is not None:
                out.append((_port(sp, number), address, ready))
    return out


def repack_subsets(entries: Iterable[tuple[tuple, dict, bool]]) -> list[dict]:
    """RepackSubsets: one subset per distinct set of (address, readiness), carrying every port
    offered by exactly that set; not ready on any port means not ready for the port set."""
    addresses: dict[tuple, dict] = {}
    by_port: dict[tuple, dict[tuple, bool]] = {}
    for port, address, ready in entries:
        key = _address_key(address)
        addresses.setdefault(key, address)
        readiness = by_port.setdefault(port, {})
        readiness[key] = readiness.get(key, True) and ready
    by_address_set: dict[frozenset, list[tuple]] = {}
    for port, readiness in by_port.items():
        by_address_set.setdefault(frozenset(readiness.items()), []).append(port)
    subsets = []
    for address_set, ports in by_address_set.items():
        ready = sorted((addresses[k] for k, r in address_set if r), key=_address_key)
        not_ready = sorted((addresses[k] for k, r in address_set if not r), key=_address_key)
        subset: dict = {}
        if ready:
            subset["addresses"] = copy.deepcopy(ready)
        if not_ready:
            subset["notReadyAddresses"] = copy.deepcopy(not_ready)
        real_ports = sorted(p for p in ports if p != _NO_PORT)
        if real_ports:
            subset["ports"] = [_port_dict(p) for p in real_ports]
        subsets.append(subset)
    return sorted(subsets, key=_subset_order)


def _subset_order(subset: dict) -> tuple:
    first = (subset.get("addresses") or subset.get("notReadyAddresses") or [{}])[0]
    return (first.get("ip", ""), [(p["port"], p["protocol"], p.get("name", "")) for p in subset.get("ports") or []])


def truncate_subsets(subsets: list[dict], limit: int = MAX_ENDPOINTS_ADDRESSES) -> bool:
    """truncateEndpoints: cut to `limit` addresses in place, spreading the cut over subsets in
    proportion and keeping ready addresses first. Returns whether anything was cut."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= limit:
        return False
    truncate_ready = total_ready > limit
    budget = limit if truncate_ready else limit - total_ready
    total = total_ready if truncate_ready else total_not_ready
    room = budget
    for subset in subsets:
        key = "addresses" if truncate_ready else "notReadyAddresses"
        items = subset.get(key) or []
        take = min(math.ceil(len(items) / total * budget), room)
        if items:
            subset[key] = items[:take]
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        room -= len(subset.get(key) or [])
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def _labels(service: dict) -> dict[str, str]:
    labels = dict(service["metadata"].get("labels") or {})
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def plan_endpoints(service: dict, pods: Iterable[dict], existing: dict | None, *,
                   trigger_time: str | None = None) -> EndpointsPlan:
    """The Endpoints object for `service` (create or update), or "none" when it is already right
    or the service gets no controller-made endpoints (no selector: hand-made ones are left alone)."""
    if not selects_pods(service):
        return EndpointsPlan("none")
    subsets = repack_subsets(_entries(service, pods))
    truncated = truncate_subsets(subsets)
    labels = _labels(service)
    if existing is not None and _up_to_date(existing, subsets, labels, truncated):
        return EndpointsPlan("none")
    m = service["metadata"]
    obj = copy.deepcopy(existing) if existing is not None else {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": m["name"], "namespace": m.get("namespace", "")}}
    meta = obj["metadata"]
    annotations = dict(meta.get("annotations") or {})
    _set_or_drop(annotations, TRIGGER_TIME_ANNOTATION, trigger_time)
    _set_or_drop(annotations, OVER_CAPACITY_ANNOTATION, "truncated" if truncated else None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    meta["labels"] = labels
    if subsets:
        obj["subsets"] = subsets
    else:
        obj.pop("subsets", None)  # omitempty: Kubernetes serializes "no subsets" by leaving the field out
    return EndpointsPlan("update" if existing is not None else "create", obj)


def _set_or_drop(d: dict, key: str, value: str | None) -> None:
    if value:
        d[key] = value
    else:
        d.pop(key, None)


def _up_to_date(existing: dict, subsets: list[dict], labels: dict, truncated: bool) -> bool:
    meta = existing.get("metadata") or {}
    over = (meta.get("annotations") or {}).get(OVER_CAPACITY_ANNOTATION) == "truncated"
    return ((existing.get("subsets") or []) == subsets and (meta.get("labels") or {}) == labels
            and over == truncated)
