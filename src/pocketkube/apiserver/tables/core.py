"""Printers for the core group (v1): pods, services, endpoints, nodes, namespaces and events.

Each cells function reproduces the columns of Kubernetes 1.32's printers for the kind, including
kubectl's pod STATUS reasoning (init containers, sidecars, terminating and lost-node pods), the
EXTERNAL-IP of each service type and the truncated ENDPOINTS list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.apiserver.tables import volumes
from pocketkube.apiserver.tables.apps import replica_columns, replication_controller_cells
from pocketkube.apiserver.tables.base import (
    AGE,
    MAX_LISTED,
    NAME,
    NONE,
    UNKNOWN,
    Cell,
    Column,
    Printer,
    age,
    as_int,
    as_map,
    as_text,
    dig,
    format_labels,
    human_duration,
    maps_in,
    name_of,
    or_none,
    since,
    texts_in,
    wide,
    with_more,
)
from pocketkube.apiserver.tables.core_quota import QUOTA_PRINTERS

# --- pods -------------------------------------------------------------------------------------

NODE_LOST = "NodeLost"  # status.reason the node lifecycle controller sets on unreachable nodes
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class RestartSummary:
    count: int = 0
    last: float | None = None  # when the latest restart's previous run finished

    def add(self, status: dict) -> None:
        self.count += as_int(status.get("restartCount"))
        finished = parse_rfc3339(dig(status, "lastState", "terminated", "finishedAt"))
        if finished is not None and (self.last is None or finished > self.last):
            self.last = finished

    def cell(self, now: float) -> str:
        if self.count and self.last is not None:
            return f"{self.count} ({human_duration(now - self.last)} ago)"
        return str(self.count)


def _is_sidecar(container: dict | None) -> bool:
    return container is not None and container.get("restartPolicy") == "Always"


def _has_true_condition(conditions: list[dict], condition_type: str) -> bool:
    return any(c.get("type") == condition_type and c.get("status") == "True" for c in conditions)


def _terminated_words(terminated: dict) -> str:
    reason = as_text(terminated.get("reason"))
    if reason:
        return reason
    signal = as_int(terminated.get("signal"))
    return f"Signal:{signal}" if signal else f"ExitCode:{as_int(terminated.get('exitCode'))}"


@dataclass
class _PodState:
    reason: str
    ready: int = 0


def pod_status(pod: dict) -> tuple[str, int, RestartSummary]:
    """kubectl's STATUS reason, the count of ready containers and the restart summary."""
    spec, status = as_map(pod.get("spec")), as_map(pod.get("status"))
    conditions = maps_in(status.get("conditions"))
    phase = as_text(status.get("phase"))
    reason = as_text(status.get("reason")) or phase
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
           for c in conditions):
        reason = "SchedulingGated"

    state = _PodState(reason)
    all_restarts, sidecar_restarts = RestartSummary(), RestartSummary()
    initializing = _scan_init_containers(spec, status, state, all_restarts, sidecar_restarts)
    restarts = all_restarts
    if not initializing or _has_true_condition(conditions, "Initialized"):
        restarts = sidecar_restarts  # app containers take over; only sidecars keep counting
        _scan_app_containers(status, conditions, state, restarts)

    deleting = bool(dig(pod, "metadata", "deletionTimestamp"))
    if deleting and status.get("reason") == NODE_LOST:
        state.reason = "Unknown"
    elif deleting and phase not in TERMINAL_PHASES:
        state.reason = "Terminating"
    return state.reason, state.ready, restarts


def _scan_init_containers(spec: dict, status: dict, state: _PodState,
                          all_restarts: RestartSummary, sidecar_restarts: RestartSummary) -> bool:
    """Walk init container statuses in order; True while initialization is unfinished."""
    init_specs = maps_in(spec.get("initContainers"))
    by_name = {as_text(c.get("name")): c for c in init_specs}
    for index, container in enumerate(maps_in(status.get("initContainerStatuses"))):
        sidecar = _is_sidecar(by_name.get(as_text(container.get("name"))))
        all_restarts.add(container)
        if sidecar:
            sidecar_restarts.add(container)
        terminated = dig(container, "state", "terminated")
        waiting = dig(container, "state", "waiting")
        if isinstance(terminated, dict) and as_int(terminated.get("exitCode")) == 0:
            continue
        if sidecar and container.get("started") is True:
            state.ready += container.get("ready") is True
            continue
        if isinstance(terminated, dict):
            state.reason = "Init:" + _terminated_words(terminated)
        elif isinstance(waiting, dict) and as_text(waiting.get("reason")) not in ("", "PodInitializing"):
            state.reason = "Init:" + waiting["reason"]
        else:
            state.reason = f"Init:{index}/{len(init_specs)}"
        return True
    return False


def _scan_app_containers(status: dict, conditions: list[dict], state: _PodState,
                         restarts: RestartSummary) -> None:
    has_running = False
    # Backwards, so the first container's reason is the one left standing.
    for container in reversed(maps_in(status.get("containerStatuses"))):
        restarts.add(container)
        waiting = dig(container, "state", "waiting")
        terminated = dig(container, "state", "terminated")
        if isinstance(waiting, dict) and as_text(waiting.get("reason")):
            state.reason = waiting["reason"]
        elif isinstance(terminated, dict):
            state.reason = _terminated_words(terminated)
        elif container.get("ready") is True and isinstance(dig(container, "state", "running"), dict):
            has_running = True
            state.ready += 1
    if state.reason == "Completed" and has_running:
        state.reason = "Running" if _has_true_condition(conditions, "Ready") else "NotReady"


def _pod_cells(pod: dict, now: float) -> list[Cell]:
    spec, status = as_map(pod.get("spec")), as_map(pod.get("status"))
    reason, ready, restarts = pod_status(pod)
    total = len(maps_in(spec.get("containers"))) + sum(
        1 for c in maps_in(spec.get("initContainers")) if _is_sidecar(c))
    pod_ips = maps_in(status.get("podIPs"))
    pod_ip = as_text(pod_ips[0].get("ip")) if pod_ips else as_text(status.get("podIP"))
    return [name_of(pod), f"{ready}/{total}", reason, restarts.cell(now), age(pod, now),
            or_none(pod_ip), or_none(as_text(spec.get("nodeName"))),
            or_none(as_text(status.get("nominatedNodeName"))), _readiness_gates(spec, status)]


def _readiness_gates(spec: dict, status: dict) -> str:
    gates = maps_in(spec.get("readinessGates"))
    if not gates:
        return NONE
    conditions = maps_in(status.get("conditions"))
    passed = 0
    for gate in gates:
        match = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
        passed += match is not None and match.get("status") == "True"
    return f"{passed}/{len(gates)}"


def _pod_row_conditions(pod: dict) -> list[dict]:
    phase = dig(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return []


# --- services ---------------------------------------------------------------------------------

def _service_cells(service: dict, now: float) -> list[Cell]:
    spec = as_map(service.get("spec"))
    cluster_ips = texts_in(spec.get("clusterIPs")) or ([spec["clusterIP"]] if as_text(spec.get("clusterIP")) else [])
    ports = _port_string(maps_in(spec.get("ports")))
    return [name_of(service), as_text(spec.get("type")), cluster_ips[0] if cluster_ips else NONE,
            service_external_ip(service), ports or NONE, age(service, now),
            format_labels(spec.get("selector"))]


def service_external_ip(service: dict) -> str:
    """The EXTERNAL-IP cell; the server always renders it as wide (never clipped)."""
    spec = as_map(service.get("spec"))
    external_ips = texts_in(spec.get("externalIPs"))
    service_type = spec.get("type")
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or NONE
    if service_type == "LoadBalancer":
        return ",".join(_ingress_points(service) + external_ips) or "<pending>"
    if service_type == "ExternalName":
        return as_text(spec.get("externalName"))
    return UNKNOWN


def _ingress_points(service: dict) -> list[str]:
    points = set()
    for ingress in maps_in(dig(service, "status", "loadBalancer", "ingress")):
        point = as_text(ingress.get("ip")) or as_text(ingress.get("hostname"))
        if point:
            points.add(point)
    return sorted(points)


def _port_string(ports: list[dict]) -> str:
    pieces = []
    for port in ports:
        node_port = as_int(port.get("nodePort"))
        number = as_int(port.get("port"))
        protocol = as_text(port.get("protocol"))
        pieces.append(f"{number}:{node_port}/{protocol}" if node_port > 0 else f"{number}/{protocol}")
    return ",".join(pieces)


# --- endpoints --------------------------------------------------------------------------------

def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_endpoints(endpoints: dict) -> str:
    """The ENDPOINTS cell: ready addresses as ip:port, three at most, then `+ N more...`."""
    subsets = maps_in(endpoints.get("subsets"))
    if not subsets:
        return NONE
    shown: list[str] = []
    total = 0
    for subset in subsets:
        ips = [as_text(a.get("ip")) for a in maps_in(subset.get("addresses"))]
        ports = maps_in(subset.get("ports"))
        # A headless service may have no ports: its addresses are listed bare.
        entries_per_port = [ips] if not ports else [
            [_join_host_port(ip, as_int(port.get("port"))) for ip in ips] for port in ports]
        for entries in entries_per_port:
            total += len(entries)
            shown.extend(entries[:MAX_LISTED - len(shown)])
    return with_more(shown, total, empty="")


def _endpoints_cells(endpoints: dict, now: float) -> list[Cell]:
    return [name_of(endpoints), format_endpoints(endpoints), age(endpoints, now)]


# --- nodes and namespaces ---------------------------------------------------------------------

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
LEGACY_NODE_ROLE_LABEL = "kubernetes.io/role"


def node_status(node: dict) -> str:
    ready = None
    for condition in maps_in(dig(node, "status", "conditions")):
        if condition.get("type") == "Ready":
            ready = condition  # the last one wins, as in the upstream condition map
    words = ["Unknown" if ready is None
             else "Ready" if ready.get("status") == "True" else "NotReady"]
    if dig(node, "spec", "unschedulable") is True:
        words.append("SchedulingDisabled")
    return ",".join(words)


def node_roles(node: dict) -> str:
    roles = set()
    for key, value in as_map(dig(node, "metadata", "labels")).items():
        if key.startswith(NODE_ROLE_PREFIX) and len(key) > len(NODE_ROLE_PREFIX):
            roles.add(key[len(NODE_ROLE_PREFIX):])
        elif key == LEGACY_NODE_ROLE_LABEL and as_text(value):
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def _node_address(node: dict, address_type: str) -> str:
    for address in maps_in(dig(node, "status", "addresses")):
        if address.get("type") == address_type:
            return as_text(address.get("address"))
    return NONE


def _node_cells(node: dict, now: float) -> list[Cell]:
    info = as_map(dig(node, "status", "nodeInfo"))
    return [name_of(node), node_status(node), node_roles(node), age(node, now),
            as_text(info.get("kubeletVersion")),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            as_text(info.get("osImage")) or UNKNOWN, as_text(info.get("kernelVersion")) or UNKNOWN,
            as_text(info.get("containerRuntimeVersion")) or UNKNOWN]


def _namespace_cells(namespace: dict, now: float) -> list[Cell]:
    return [name_of(namespace), as_text(dig(namespace, "status", "phase")), age(namespace, now)]


# --- events -----------------------------------------------------------------------------------

def _event_cells(event: dict, now: float) -> list[Cell]:
    first_seen = _since_or(event.get("firstTimestamp"), since(event.get("eventTime"), now), now)
    last_seen = _since_or(event.get("lastTimestamp"), first_seen, now)
    count = as_int(event.get("count"))
    series = event.get("series")
    if isinstance(series, dict):
        last_seen = since(series.get("lastObservedTime"), now)
        count = as_int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events carry no count in the events.k8s.io API
    involved = as_map(event.get("involvedObject"))
    kind, name = as_text(involved.get("kind")).lower(), as_text(involved.get("name"))
    return [last_seen, as_text(event.get("type")), as_text(event.get("reason")),
            f"{kind}/{name}" if name else kind, as_text(involved.get("fieldPath")),
            _event_source(event), as_text(event.get("message")).strip(), first_seen, count,
            name_of(event)]


def _since_or(timestamp: Any, fallback: str, now: float) -> str:
    return fallback if parse_rfc3339(timestamp) is None else since(timestamp, now)


def _event_source(event: dict) -> str:
    source = as_map(event.get("source"))
    component = as_text(source.get("component")) or as_text(event.get("reportingComponent"))
    instance = as_text(source.get("host")) or as_text(event.get("reportingInstance"))
    return f"{component}, {instance}" if instance else component


# --- config and identity ----------------------------------------------------------------------

def _configmap_cells(cm: dict, now: float) -> list[Cell]:
    return [name_of(cm), len(as_map(cm.get("data"))) + len(as_map(cm.get("binaryData"))), age(cm, now)]


def _secret_cells(secret: dict, now: float) -> list[Cell]:
    return [name_of(secret), as_text(secret.get("type")), len(as_map(secret.get("data"))), age(secret, now)]


def _serviceaccount_cells(sa: dict, now: float) -> list[Cell]:
    return [name_of(sa), len(maps_in(sa.get("secrets"))), age(sa, now)]


# --- column sets ------------------------------------------------------------------------------

POD_COLUMNS = (
    NAME,
    Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "The aggregate status of the containers in this pod."),
    Column("Restarts", "How many times the containers of this pod restarted, and when the latest did."),
    AGE,
    wide("IP", "The IP address allocated to the pod."),
    wide("Node", "The node the pod is scheduled onto."),
    wide("Nominated Node", "The node the scheduler nominated for this pod while preempting."),
    wide("Readiness Gates", "Readiness gates whose condition is true, out of all gates."),
)


SERVICE_COLUMNS = (
    NAME,
    Column("Type", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
    Column("Cluster-IP", "The virtual IP of the service inside the cluster."),
    Column("External-IP", "Addresses the service is reachable on from outside the cluster."),
    Column("Port(s)", "Service ports, with the node port when one is allocated."),
    AGE,
    wide("Selector", "Pods whose labels match this selector receive the service's traffic."),
)


NODE_COLUMNS = (
    NAME,
    Column("Status", "The status of the node"),
    Column("Roles", "The roles of the node"),
    AGE,
    Column("Version", "The kubelet version the node reports."),
    wide("Internal-IP", "The node's first InternalIP address."),
    wide("External-IP", "The node's first ExternalIP address."),
    wide("OS-Image", "The operating system image the node reports."),
    wide("Kernel-Version", "The kernel version the node reports."),
    wide("Container-Runtime", "The container runtime and version the node reports."),
)


EVENT_COLUMNS = (
    Column("Last Seen", "When the event was last observed."),
    Column("Type", "The type of the event: Normal or Warning."),
    Column("Reason", "A short machine-readable reason for the event."),
    Column("Object", "The object the event is about, as kind/name."),
    wide("Subobject", "The part of the object the event is about (a field path)."),
    wide("Source", "The component, and host, that reported the event."),
    Column("Message", "A human-readable description of the event."),
    wide("First Seen", "When the event was first observed."),
    wide("Count", "How many times the event was observed."),
    Column("Name", "Name must be unique within a namespace.", priority=1, format="name"),
)


PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "pods"): Printer(POD_COLUMNS, _pod_cells, _pod_row_conditions),
    ("", "services"): Printer(SERVICE_COLUMNS, _service_cells),
    ("", "replicationcontrollers"): Printer(replica_columns("replication controller"), replication_controller_cells),
    ("", "endpoints"): Printer(
        (NAME, Column("Endpoints", "Ready addresses and ports of the service's backends."), AGE),
        _endpoints_cells),
    ("", "nodes"): Printer(NODE_COLUMNS, _node_cells),
    ("", "namespaces"): Printer((NAME, Column("Status", "The status of the namespace"), AGE),
                                _namespace_cells),
    ("", "events"): Printer(EVENT_COLUMNS, _event_cells),
    ("", "configmaps"): Printer((NAME, Column("Data", "The number of keys in data and binaryData."), AGE),
                                _configmap_cells),
    ("", "secrets"): Printer((NAME, Column("Type", "The type of the secret."),
                              Column("Data", "The number of keys in data."), AGE), _secret_cells),
    ("", "serviceaccounts"): Printer((NAME, Column("Secrets", "The number of secrets listed."), AGE),
                                     _serviceaccount_cells),
    **volumes.PRINTERS,
    **QUOTA_PRINTERS,  # limitranges, resourcequotas
}
