"""Pure EndpointSlice reconciliation: (service, pods, nodes, existing slices) → what to write.

Mirrors pkg/controller/endpointslice's reconciler. Desired endpoints are grouped by their
resolved port set (a named targetPort can resolve to different numbers on different pods, and
one slice has one port list). Within a port set, existing slices keep the endpoints they hold
(updated in place when a condition changed), endpoints no longer wanted are dropped, and new
ones go first into slices already being rewritten, then into the unchanged slice with the least
room that still fits them, then into new slices of at most `max_per_slice`. Creates that
coincide with deletes become updates of the slices that would be deleted, so names are reused
and churn stays low. A service whose selector matches nothing keeps one placeholder slice with
no endpoints and no ports.

The pod predicates and `find_port` here are shared with the legacy Endpoints plan.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "CONTROLLER_NAME",
    "HEADLESS_LABEL",
    "MANAGED_BY_LABEL",
    "MAX_ENDPOINTS_PER_SLICE",
    "SERVICE_NAME_LABEL",
    "TRIGGER_TIME_ANNOTATION",
    "ZONE_LABEL",
    "SlicePlan",
    "desired_address_types",
    "find_port",
    "is_managed_slice",
    "is_pod_ready",
    "plan_slices",
    "pod_ips",
    "selector_matches",
    "selects_pods",
    "should_pod_be_in_endpoints",
    "should_set_hostname",
]

MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
ZONE_LABEL = "topology.kubernetes.io/zone"
_RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)

PortKey = tuple[tuple[str, str, int, str], ...]  # (name, protocol, port, appProtocol) per service port


# ---- which pods, which addresses, which ports (shared with the Endpoints plan) ----

def selects_pods(service: dict) -> bool:
    """Services with a nil selector or of type ExternalName get no controller-made endpoints."""
    spec = service.get("spec") or {}
    return spec.get("selector") is not None and spec.get("type") != "ExternalName"


def selector_matches(selector: Mapping[str, str], pod: dict) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def is_pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_ips(pod: dict) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    return ips or ([status["podIP"]] if status.get("podIP") else [])


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """ShouldPodBeInEndpoints: not finished, has an IP, and not terminating unless asked."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if not pod_ips(pod):
        return False
    return include_terminating or not (pod.get("metadata") or {}).get("deletionTimestamp")


def should_set_hostname(pod: dict, service: dict) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == service["metadata"]["name"]


def find_port(pod: dict, service_port: dict) -> int | None:
    """FindPort: an int targetPort as is; a name looked up among the pod's container ports of the
    same protocol (regular containers, then restartable init containers); None when absent."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or []), *sidecars]:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def desired_address_types(service: dict) -> list[str]:
    families = (service.get("spec") or {}).get("ipFamilies") or ["IPv4"]
    return [f for f in families if f in ("IPv4", "IPv6")] or ["IPv4"]


def _ip_family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def is_managed_slice(slice_: dict) -> bool:
    return ((slice_.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == CONTROLLER_NAME


# ---- the plan ----

@dataclass
class SlicePlan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    missing_nodes: set[str] = field(default_factory=set)  # pods skipped: their Node is not known yet

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def slice_labels(service: dict) -> dict[str, str]:
    m = service["metadata"]
    labels = {k: v for k, v in (m.get("labels") or {}).items() if k not in _RESERVED_LABELS}
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    labels[SERVICE_NAME_LABEL] = m["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def _owner_reference(service: dict) -> dict:
    m = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": m["name"], "uid": m.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def _new_slice(service: dict, address_type: str, ports: list[dict]) -> dict:
    m = service["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": m["name"] + "-", "namespace": m.get("namespace", ""),
                         "labels": slice_labels(service), "ownerReferences": [_owner_reference(service)]},
            "addressType": address_type, "endpoints": [], "ports": ports}


def _endpoint_ports(service: dict, pod: dict) -> list[dict]:
    out = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = find_port(pod, sp)
        if number is None:
            continue
        port = {"name": sp.get("name") or "", "protocol": sp.get("protocol") or "TCP", "port": number}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def _port_key(ports: Iterable[dict]) -> PortKey:
    return tuple(sorted((p.get("name") or "", p.get("protocol") or "TCP", p.get("port") or 0, p.get("appProtocol") or "")
                        for p in ports))


def _endpoint_key(endpoint: dict) -> tuple:
    ref = endpoint.get("targetRef") or {}
    return tuple(endpoint.get("addresses") or ()), ref.get("uid") or ref.get("name") or ""


def _pod_to_endpoint(service: dict, pod: dict, addresses: list[str], node: dict | None) -> dict:
    m, spec = pod["metadata"], pod.get("spec") or {}
    serving = is_pod_ready(pod)
    terminating = bool(m.get("deletionTimestamp"))
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: dict = {"addresses": addresses,
                      "conditions": {"ready": publish or (serving and not terminating),
                                     "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, service):
        endpoint["hostname"] = spec["hostname"]
    endpoint["targetRef"] = {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m["name"],
                             "uid": m.get("uid", "")}
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    zone = ((node or {}).get("metadata") or {}).get("labels", {}).get(ZONE_LABEL)
    if zone:
        endpoint["zone"] = zone
    return endpoint


@dataclass
class _Desired:
    """Desired endpoints of one address type, grouped by resolved port set."""
    ports: dict[PortKey, list[dict]] = field(default_factory=dict)
    endpoints: dict[PortKey, dict[tuple, dict]] = field(default_factory=dict)


def _desired(service: dict, pods: Iterable[dict], nodes: Mapping[str, dict], address_type: str,
             missing_nodes: set[str]) -> _Desired:
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    namespace = service["metadata"].get("namespace", "")
    publish = bool(spec.get("publishNotReadyAddresses"))
    out = _Desired()
    for pod in pods:
        if (pod.get("metadata") or {}).get("namespace", "") != namespace or not selector_matches(selector, pod):
            continue
        if not should_pod_be_in_endpoints(pod, include_terminating=True):
            continue
        addresses = [ip for ip in pod_ips(pod) if _ip_family(ip) == address_type]
        if not addresses:
            continue
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        node = nodes.get(node_name)
        if node is None and not publish:
            if node_name:
                missing_nodes.add(node_name)
            continue
        ports = _endpoint_ports(service, pod)  # may be empty: the pod then lands in a port-less slice
        key = _port_key(ports)
        out.ports.setdefault(key, ports)
        endpoint = _pod_to_endpoint(service, pod, addresses, node)
        out.endpoints.setdefault(key, {})[_endpoint_key(endpoint)] = endpoint
    return out


def _sorted_desired(endpoints: dict[tuple, dict]) -> list[tuple[tuple, dict]]:
    return sorted(endpoints.items(), key=lambda kv: (kv[1]["addresses"], kv[1]["targetRef"]["name"]))


def _least_room_that_fits(slices: list[dict], count: int, max_per_slice: int) -> dict | None:
    """getSliceToFill: the unchanged slice whose free room is the smallest that still holds `count`."""
    fitting = [s for s in slices if max_per_slice - len(s.get("endpoints") or []) >= count]
    return min(fitting, key=lambda s: max_per_slice - len(s.get("endpoints") or []), default=None)


@dataclass
class _PortPlan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)


def _plan_port_set(service: dict, address_type: str, ports: list[dict], existing: list[dict],
                   wanted: dict[tuple, dict], max_per_slice: int) -> _PortPlan:
    """reconcileByPortMapping for one resolved port set."""
    plan = _PortPlan()
    remaining = dict(wanted)
    labels = slice_labels(service)
    to_update: list[dict] = []
    unchanged: list[dict] = []
    for old in existing:
        kept, changed = [], False
        for endpoint in old.get("endpoints") or []:
            desired = remaining.pop(_endpoint_key(endpoint), None)
            if desired is not None:
                kept.append(desired)
                changed |= desired != endpoint
        labels_changed = ((old.get("metadata") or {}).get("labels") or {}) != labels
        if changed or len(kept) != len(old.get("endpoints") or []):
            if not kept:
                plan.delete.append(old)
                continue
            new = copy.deepcopy(old)
            new["endpoints"], new["metadata"]["labels"] = kept, dict(labels)
            to_update.append(new)
        elif labels_changed:
            new = copy.deepcopy(old)
            new["metadata"]["labels"] = dict(labels)
            to_update.append(new)
        else:
            unchanged.append(old)
    queue = [endpoint for _, endpoint in _sorted_desired(remaining)]
    # Fill the slices already being rewritten, fullest first.
    for new in sorted(to_update, key=lambda s: -len(s["endpoints"])):
        room = max_per_slice - len(new["endpoints"])
        if room > 0 and queue:
            new["endpoints"].extend(queue[:room])
            del queue[:room]
    while queue:
        target = None
        if len(queue) < max_per_slice and unchanged:
            target = _least_room_that_fits(unchanged, len(queue), max_per_slice)
        if target is None:
            new = _new_slice(service, address_type, copy.deepcopy(ports))
            plan.create.append(new)
        else:
            unchanged.remove(target)
            new = copy.deepcopy(target)
            new["metadata"]["labels"] = dict(labels)
            to_update.append(new)
        room = max_per_slice - len(new["endpoints"])
        new["endpoints"].extend(queue[:room])
        del queue[:room]
    plan.update = to_update
    return plan


def _owned_by(slice_: dict, service: dict) -> bool:
    return any(r.get("uid") == service["metadata"].get("uid") and r.get("kind") == "Service"
               for r in (slice_.get("metadata") or {}).get("ownerReferences") or [])


def _is_placeholder_for(slice_: dict, placeholder: dict) -> bool:
    return (not slice_.get("endpoints") and not slice_.get("ports")
            and slice_.get("addressType") == placeholder["addressType"]
            and (slice_.get("metadata") or {}).get("labels") == placeholder["metadata"]["labels"])


def _reuse_deleted_names(plan: SlicePlan, service: dict) -> None:
    """Turn creates into updates of same-type slices that would otherwise be deleted."""
    i = 0
    while i < len(plan.delete) and plan.create:
        doomed, new = plan.delete[i], plan.create[-1]
        if doomed.get("addressType") == new["addressType"] and _owned_by(doomed, service):
            plan.create.pop()
            dm = doomed["metadata"]
            new["metadata"].pop("generateName", None)
            new["metadata"].update({k: dm[k] for k in ("name", "uid", "resourceVersion", "annotations",
                                                       "creationTimestamp") if k in dm})
            plan.update.append(new)
            plan.delete.pop(i)
        else:
            i += 1


def _stamp_trigger_time(slices: Iterable[dict], trigger_time: str | None) -> None:
    for s in slices:
        annotations = dict(s["metadata"].get("annotations") or {})
        if trigger_time:
            annotations[TRIGGER_TIME_ANNOTATION] = trigger_time
        else:
            annotations.pop(TRIGGER_TIME_ANNOTATION, None)
        if annotations:
            s["metadata"]["annotations"] = annotations
        else:
            s["metadata"].pop("annotations", None)


def plan_slices(service: dict, pods: Iterable[dict], nodes: Mapping[str, dict], existing: Iterable[dict], *,
                trigger_time: str | None = None, max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> SlicePlan:
    """What to create, update and delete so that the service's managed slices match its pods.

    `existing` are the slices labelled with the service's name; slices managed by someone else
    are never touched. `pods` may be a superset: namespace and selector are checked here.
    `trigger_time` (RFC3339Nano) is written on every created or updated slice.
    """
    plan = SlicePlan()
    managed = [s for s in existing if is_managed_slice(s)]
    if not selects_pods(service):
        plan.delete = managed
        return plan
    address_types = desired_address_types(service)
    pods = list(pods)
    for address_type in address_types:
        desired = _desired(service, pods, nodes, address_type, plan.missing_nodes)
        by_key: dict[PortKey, list[dict]] = {}
        for s in managed:
            if s.get("addressType") == address_type:
                by_key.setdefault(_port_key(s.get("ports") or []), []).append(s)
        for key, ports in desired.ports.items():
            part = _plan_port_set(service, address_type, ports, by_key.pop(key, []), desired.endpoints[key],
                                  max_per_slice)
            plan.create += part.create
            plan.update += part.update
            plan.delete += part.delete
        for stale in by_key.values():
            plan.delete += stale
    plan.delete += [s for s in managed if s.get("addressType") not in address_types]
    _keep_placeholder(plan, service, managed, address_types[0])
    _reuse_deleted_names(plan, service)
    _stamp_trigger_time([*plan.create, *plan.update], trigger_time)
    return plan


def _keep_placeholder(plan: SlicePlan, service: dict, managed: list[dict], address_type: str) -> None:
    """When no slice would remain, keep (or make) one with no endpoints and no ports."""
    if len(managed) != len(plan.delete) or plan.create:
        return
    placeholder = _new_slice(service, address_type, [])
    if len(plan.delete) == 1 and _is_placeholder_for(plan.delete[0], placeholder):
        plan.delete.clear()
    else:
        plan.create.append(placeholder)
