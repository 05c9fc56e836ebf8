"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` renders.

kubectl prints the cells exactly as given (it never recomputes an age), so every cell here
follows what Kubernetes 1.32's printers put in it. Cell functions read objects through
tolerant accessors: a stored object of an odd shape degrades one cell, never the response.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pocketkube.api.selectors import LabelSelector
from pocketkube.api.timestamps import parse_rfc3339

Cell = str | int | bool | None
CellsFn = Callable[[dict, float], list[Cell]]

TABLE_API_VERSION = "meta.k8s.io/v1"
NONE = "<none>"
UNKNOWN = "<unknown>"
MAX_LISTED = 3  # entries shown in an endpoints cell before "+ N more..."


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    type: str = "string"
    priority: int = 0  # 1: shown only with -o wide
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: CellsFn
    row_conditions: Callable[[dict], list[dict]] | None = None


# --- public API ---------------------------------------------------------------------------

def table(resource_plural: str, group: str, objects: list[dict], now: datetime | float,
          include_object: str = "Metadata", resource_version: str = "",
          continue_token: str = "", with_columns: bool = True) -> dict:
    """Render `objects` as a Table for `kubectl get` (lists, single GETs and watch events)."""
    printer = PRINTERS.get((group, resource_plural), DEFAULT_PRINTER)
    now_epoch = _now_epoch(now)
    result: dict[str, Any] = {"kind": "Table", "apiVersion": TABLE_API_VERSION,
                              "metadata": _list_meta(resource_version, continue_token)}
    if with_columns:
        result["columnDefinitions"] = [c.definition() for c in printer.columns]
    result["rows"] = [_row(printer, obj, now_epoch, include_object) for obj in objects]
    return result


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: `5s`, `2m30s`, `45m`, `3h15m`, `2d5h`, `3y`."""
    if not math.isfinite(seconds):
        return "<invalid>"
    total = int(seconds)  # truncates toward zero, as Go's int(d.Seconds()) does
    # A clock skew of up to a second still counts as "now".
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        return _compound(minutes, "m", total % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        return _compound(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _compound(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return _compound(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _compound(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    return f"{major}{major_unit}" if minor == 0 else f"{major}{major_unit}{minor}{minor_unit}"


# --- table assembly -----------------------------------------------------------------------

def _list_meta(resource_version: str, continue_token: str) -> dict:
    meta = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    return meta


def _row(printer: Printer, obj: dict, now: float, include_object: str) -> dict:
    obj = _map(obj)
    row: dict[str, Any] = {"cells": _safe_cells(printer, obj, now)}
    if printer.row_conditions is not None:
        conditions = printer.row_conditions(obj)
        if conditions:
            row["conditions"] = conditions
    if include_object == "Object":
        row["object"] = obj
    elif include_object != "None":
        row["object"] = partial_object_metadata(obj)
    return row


def _safe_cells(printer: Printer, obj: dict, now: float) -> list[Cell]:
    # Last line of defence: a printing bug must cost a row its details, never a 500.
    try:
        return printer.cells(obj, now)
    except Exception:  # noqa: BLE001
        return [_name(obj)] + [None] * (len(printer.columns) - 1)


def partial_object_metadata(obj: dict) -> dict:
    metadata = {k: v for k, v in _map(obj.get("metadata")).items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION, "metadata": metadata}


# --- tolerant accessors -------------------------------------------------------------------

def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _maps(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _texts(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dig(obj: dict, *path: str) -> Any:
    value: Any = obj
    for key in path:
        value = _map(value).get(key)
    return value


def _name(obj: dict) -> str:
    return _text(_dig(obj, "metadata", "name"))


def _or_none(value: str) -> str:
    return value if value else NONE


# --- time ---------------------------------------------------------------------------------

def _now_epoch(now: datetime | float) -> float:
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()
    return float(now)



def _since(timestamp: Any, now: float) -> str:
    moment = parse_rfc3339(timestamp)
    return UNKNOWN if moment is None else human_duration(now - moment)


def _age(obj: dict, now: float) -> str:
    return _since(_dig(obj, "metadata", "creationTimestamp"), now)


# --- labels and selectors -----------------------------------------------------------------

def format_labels(labels: Any) -> str:
    """labels.FormatLabels: `k=v,k2=v2` sorted by key, `<none>` when empty."""
    pairs = sorted((k, _text(v)) for k, v in _map(labels).items())
    return ",".join(f"{k}={v}" for k, v in pairs) or NONE


def selector_string(selector: Any) -> str:
    """labels.Selector.String() of a metav1.LabelSelector; ValueError when it is invalid."""
    return str(LabelSelector.from_dict(selector)) if selector is not None else ""


def format_label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: `<none>` when empty, `<error>` when invalid."""
    try:
        return selector_string(selector) or NONE
    except ValueError:
        return "<error>"


def _containers_and_images(template: Any) -> tuple[str, str]:
    containers = _maps(_dig(_map(template), "spec", "containers"))
    return (",".join(_text(c.get("name")) for c in containers),
            ",".join(_text(c.get("image")) for c in containers))


# --- pods ---------------------------------------------------------------------------------

NODE_LOST = "NodeLost"  # status.reason the node lifecycle controller sets on unreachable nodes
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class RestartSummary:
    count: int = 0
    last: float | None = None  # when the latest restart's previous run finished

    def add(self, status: dict) -> None:
        self.count += _int(status.get("restartCount"))
        finished = parse_rfc3339(_dig(status, "lastState", "terminated", "finishedAt"))
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
    reason = _text(terminated.get("reason"))
    if reason:
        return reason
    signal = _int(terminated.get("signal"))
    return f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"


@dataclass
class _PodState:
    reason: str
    ready: int = 0


def pod_status(pod: dict) -> tuple[str, int, RestartSummary]:
    """kubectl's STATUS reason, the count of ready containers and the restart summary."""
    spec, status = _map(pod.get("spec")), _map(pod.get("status"))
    conditions = _maps(status.get("conditions"))
    phase = _text(status.get("phase"))
    reason = _text(status.get("reason")) or phase
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

    deleting = bool(_dig(pod, "metadata", "deletionTimestamp"))
    if deleting and status.get("reason") == NODE_LOST:
        state.reason = "Unknown"
    elif deleting and phase not in TERMINAL_PHASES:
        state.reason = "Terminating"
    return state.reason, state.ready, restarts


def _scan_init_containers(spec: dict, status: dict, state: _PodState,
                          all_restarts: RestartSummary, sidecar_restarts: RestartSummary) -> bool:
    """Walk init container statuses in order; True while initialization is unfinished."""
    init_specs = _maps(spec.get("initContainers"))
    by_name = {_text(c.get("name")): c for c in init_specs}
    for index, container in enumerate(_maps(status.get("initContainerStatuses"))):
        sidecar = _is_sidecar(by_name.get(_text(container.get("name"))))
        all_restarts.add(container)
        if sidecar:
            sidecar_restarts.add(container)
        terminated = _dig(container, "state", "terminated")
        waiting = _dig(container, "state", "waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        if sidecar and container.get("started") is True:
            state.ready += container.get("ready") is True
            continue
        if isinstance(terminated, dict):
            state.reason = "Init:" + _terminated_words(terminated)
        elif isinstance(waiting, dict) and _text(waiting.get("reason")) not in ("", "PodInitializing"):
            state.reason = "Init:" + waiting["reason"]
        else:
            state.reason = f"Init:{index}/{len(init_specs)}"
        return True
    return False


def _scan_app_containers(status: dict, conditions: list[dict], state: _PodState,
                         restarts: RestartSummary) -> None:
    has_running = False
    # Backwards, so the first container's reason is the one left standing.
    for container in reversed(_maps(status.get("containerStatuses"))):
        restarts.add(container)
        waiting = _dig(container, "state", "waiting")
        terminated = _dig(container, "state", "terminated")
        if isinstance(waiting, dict) and _text(waiting.get("reason")):
            state.reason = waiting["reason"]
        elif isinstance(terminated, dict):
            state.reason = _terminated_words(terminated)
        elif container.get("ready") is True and isinstance(_dig(container, "state", "running"), dict):
            has_running = True
            state.ready += 1
    if state.reason == "Completed" and has_running:
        state.reason = "Running" if _has_true_condition(conditions, "Ready") else "NotReady"


def _pod_cells(pod: dict, now: float) -> list[Cell]:
    spec, status = _map(pod.get("spec")), _map(pod.get("status"))
    reason, ready, restarts = pod_status(pod)
    total = len(_maps(spec.get("containers"))) + sum(
        1 for c in _maps(spec.get("initContainers")) if _is_sidecar(c))
    pod_ips = _maps(status.get("podIPs"))
    pod_ip = _text(pod_ips[0].get("ip")) if pod_ips else _text(status.get("podIP"))
    return [_name(pod), f"{ready}/{total}", reason, restarts.cell(now), _age(pod, now),
            _or_none(pod_ip), _or_none(_text(spec.get("nodeName"))),
            _or_none(_text(status.get("nominatedNodeName"))), _readiness_gates(spec, status)]


def _readiness_gates(spec: dict, status: dict) -> str:
    gates = _maps(spec.get("readinessGates"))
    if not gates:
        return NONE
    conditions = _maps(status.get("conditions"))
    passed = 0
    for gate in gates:
        match = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
        passed += match is not None and match.get("status") == "True"
    return f"{passed}/{len(gates)}"


def _pod_row_conditions(pod: dict) -> list[dict]:
    phase = _dig(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return []


# --- services -----------------------------------------------------------------------------

def _service_cells(service: dict, now: float) -> list[Cell]:
    spec = _map(service.get("spec"))
    cluster_ips = _texts(spec.get("clusterIPs")) or ([spec["clusterIP"]] if _text(spec.get("clusterIP")) else [])
    ports = _port_string(_maps(spec.get("ports")))
    return [_name(service), _text(spec.get("type")), cluster_ips[0] if cluster_ips else NONE,
            service_external_ip(service), ports or NONE, _age(service, now),
            format_labels(spec.get("selector"))]


def service_external_ip(service: dict) -> str:
    """The EXTERNAL-IP cell; the server always renders it as wide (never clipped)."""
    spec = _map(service.get("spec"))
    external_ips = _texts(spec.get("externalIPs"))
    service_type = spec.get("type")
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or NONE
    if service_type == "LoadBalancer":
        return ",".join(_ingress_points(service) + external_ips) or "<pending>"
    if service_type == "ExternalName":
        return _text(spec.get("externalName"))
    return UNKNOWN


def _ingress_points(service: dict) -> list[str]:
    points = set()
    for ingress in _maps(_dig(service, "status", "loadBalancer", "ingress")):
        point = _text(ingress.get("ip")) or _text(ingress.get("hostname"))
        if point:
            points.add(point)
    return sorted(points)


def _port_string(ports: list[dict]) -> str:
    pieces = []
    for port in ports:
        node_port = _int(port.get("nodePort"))
        number = _int(port.get("port"))
        protocol = _text(port.get("protocol"))
        pieces.append(f"{number}:{node_port}/{protocol}" if node_port > 0 else f"{number}/{protocol}")
    return ",".join(pieces)


# --- endpoints and endpoint slices --------------------------------------------------------

def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_endpoints(endpoints: dict) -> str:
    """The ENDPOINTS cell: ready addresses as ip:port, three at most, then `+ N more...`."""
    subsets = _maps(endpoints.get("subsets"))
    if not subsets:
        return NONE
    shown: list[str] = []
    total = 0
    for subset in subsets:
        ips = [_text(a.get("ip")) for a in _maps(subset.get("addresses"))]
        ports = _maps(subset.get("ports"))
        # A headless service may have no ports: its addresses are listed bare.
        entries_per_port = [ips] if not ports else [
            [_join_host_port(ip, _int(port.get("port"))) for ip in ips] for port in ports]
        for entries in entries_per_port:
            total += len(entries)
            shown.extend(entries[:MAX_LISTED - len(shown)])
    return _with_more(shown, total, empty="")


def _with_more(shown: list[str], total: int, empty: str) -> str:
    text = ",".join(shown)
    if total > MAX_LISTED:
        return f"{text} + {total - MAX_LISTED} more..."
    return text or empty


def _endpoints_cells(endpoints: dict, now: float) -> list[Cell]:
    return [_name(endpoints), format_endpoints(endpoints), _age(endpoints, now)]


def _slice_ports(ports: list[dict]) -> list[str]:
    labels = []
    for port in ports:
        if port.get("port") is not None:
            labels.append(str(_int(port["port"])))
        elif isinstance(port.get("name"), str):
            labels.append(port["name"])
        else:
            labels.append("*")
    return labels


def _endpoint_slice_cells(endpoint_slice: dict, now: float) -> list[Cell]:
    ports = _slice_ports(_maps(endpoint_slice.get("ports")))
    addresses = [address for endpoint in _maps(endpoint_slice.get("endpoints"))
                 for address in _texts(endpoint.get("addresses"))]
    return [_name(endpoint_slice), _text(endpoint_slice.get("addressType")),
            _with_more(ports[:MAX_LISTED], len(ports), empty="<unset>"),
            _with_more(addresses[:MAX_LISTED], len(addresses), empty="<unset>"),
            _age(endpoint_slice, now)]


# --- nodes, namespaces, leases ------------------------------------------------------------

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
LEGACY_NODE_ROLE_LABEL = "kubernetes.io/role"


def node_status(node: dict) -> str:
    ready = None
    for condition in _maps(_dig(node, "status", "conditions")):
        if condition.get("type") == "Ready":
            ready = condition  # the last one wins, as in the upstream condition map
    words = ["Unknown" if ready is None
             else "Ready" if ready.get("status") == "True" else "NotReady"]
    if _dig(node, "spec", "unschedulable") is True:
        words.append("SchedulingDisabled")
    return ",".join(words)


def node_roles(node: dict) -> str:
    roles = set()
    for key, value in _map(_dig(node, "metadata", "labels")).items():
        if key.startswith(NODE_ROLE_PREFIX) and len(key) > len(NODE_ROLE_PREFIX):
            roles.add(key[len(NODE_ROLE_PREFIX):])
        elif key == LEGACY_NODE_ROLE_LABEL and _text(value):
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def _node_address(node: dict, address_type: str) -> str:
    for address in _maps(_dig(node, "status", "addresses")):
        if address.get("type") == address_type:
            return _text(address.get("address"))
    return NONE


def _node_cells(node: dict, now: float) -> list[Cell]:
    info = _map(_dig(node, "status", "nodeInfo"))
    return [_name(node), node_status(node), node_roles(node), _age(node, now),
            _text(info.get("kubeletVersion")),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            _text(info.get("osImage")) or UNKNOWN, _text(info.get("kernelVersion")) or UNKNOWN,
            _text(info.get("containerRuntimeVersion")) or UNKNOWN]


def _namespace_cells(namespace: dict, now: float) -> list[Cell]:
    return [_name(namespace), _text(_dig(namespace, "status", "phase")), _age(namespace, now)]


def _lease_cells(lease: dict, now: float) -> list[Cell]:
    return [_name(lease), _text(_dig(lease, "spec", "holderIdentity")), _age(lease, now)]


def _generic_cells(obj: dict, now: float) -> list[Cell]:
    return [_name(obj), _age(obj, now)]


# --- deployments and replica sets ---------------------------------------------------------

def _deployment_cells(deployment: dict, now: float) -> list[Cell]:
    spec, status = _map(deployment.get("spec")), _map(deployment.get("status"))
    names, images = _containers_and_images(spec.get("template"))
    try:
        selector = selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    return [_name(deployment), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")),
            _age(deployment, now), names, images, selector]


def _replica_set_cells(replica_set: dict, now: float) -> list[Cell]:
    spec, status = _map(replica_set.get("spec")), _map(replica_set.get("status"))
    names, images = _containers_and_images(spec.get("template"))
    return [_name(replica_set), _int(spec.get("replicas")), _int(status.get("replicas")),
            _int(status.get("readyReplicas")), _age(replica_set, now),
            names, images, format_label_selector(spec.get("selector"))]


# --- events -------------------------------------------------------------------------------

def _event_cells(event: dict, now: float) -> list[Cell]:
    first_seen = _since_or(event.get("firstTimestamp"), _since(event.get("eventTime"), now), now)
    last_seen = _since_or(event.get("lastTimestamp"), first_seen, now)
    count = _int(event.get("count"))
    series = event.get("series")
    if isinstance(series, dict):
        last_seen = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events carry no count in the events.k8s.io API
    involved = _map(event.get("involvedObject"))
    kind, name = _text(involved.get("kind")).lower(), _text(involved.get("name"))
    return [last_seen, _text(event.get("type")), _text(event.get("reason")),
            f"{kind}/{name}" if name else kind, _text(involved.get("fieldPath")),
            _event_source(event), _text(event.get("message")).strip(), first_seen, count,
            _name(event)]


def _since_or(timestamp: Any, fallback: str, now: float) -> str:
    return fallback if parse_rfc3339(timestamp) is None else _since(timestamp, now)


def _event_source(event: dict) -> str:
    source = _map(event.get("source"))
    component = _text(source.get("component")) or _text(event.get("reportingComponent"))
    instance = _text(source.get("host")) or _text(event.get("reportingInstance"))
    return f"{component}, {instance}" if instance else component


# --- column sets --------------------------------------------------------------------------

NAME = Column("Name", "Name must be unique within a namespace.", format="name")
AGE = Column("Age", "When this object was created, as a duration since then.")


def _wide(name: str, description: str) -> Column:
    return Column(name, description, priority=1)


def _template_columns(selector_description: str) -> tuple[Column, ...]:
    return (_wide("Containers", "Names of each container in the template."),
            _wide("Images", "Images referenced by each container in the template."),
            _wide("Selector", selector_description))


POD_COLUMNS = (
    NAME,
    Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "The aggregate status of the containers in this pod."),
    Column("Restarts", "How many times the containers of this pod restarted, and when the latest did."),
    AGE,
    _wide("IP", "The IP address allocated to the pod."),
    _wide("Node", "The node the pod is scheduled onto."),
    _wide("Nominated Node", "The node the scheduler nominated for this pod while preempting."),
    _wide("Readiness Gates", "Readiness gates whose condition is true, out of all gates."),
)

SERVICE_COLUMNS = (
    NAME,
    Column("Type", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
    Column("Cluster-IP", "The virtual IP of the service inside the cluster."),
    Column("External-IP", "Addresses the service is reachable on from outside the cluster."),
    Column("Port(s)", "Service ports, with the node port when one is allocated."),
    AGE,
    _wide("Selector", "Pods whose labels match this selector receive the service's traffic."),
)

NODE_COLUMNS = (
    NAME,
    Column("Status", "The status of the node"),
    Column("Roles", "The roles of the node"),
    AGE,
    Column("Version", "The kubelet version the node reports."),
    _wide("Internal-IP", "The node's first InternalIP address."),
    _wide("External-IP", "The node's first ExternalIP address."),
    _wide("OS-Image", "The operating system image the node reports."),
    _wide("Kernel-Version", "The kernel version the node reports."),
    _wide("Container-Runtime", "The container runtime and version the node reports."),
)

EVENT_COLUMNS = (
    Column("Last Seen", "When the event was last observed."),
    Column("Type", "The type of the event: Normal or Warning."),
    Column("Reason", "A short machine-readable reason for the event."),
    Column("Object", "The object the event is about, as kind/name."),
    _wide("Subobject", "The part of the object the event is about (a field path)."),
    _wide("Source", "The component, and host, that reported the event."),
    Column("Message", "A human-readable description of the event."),
    _wide("First Seen", "When the event was first observed."),
    _wide("Count", "How many times the event was observed."),
    Column("Name", "Name must be unique within a namespace.", priority=1, format="name"),
)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "pods"): Printer(POD_COLUMNS, _pod_cells, _pod_row_conditions),
    ("", "services"): Printer(SERVICE_COLUMNS, _service_cells),
    ("", "endpoints"): Printer(
        (NAME, Column("Endpoints", "Ready addresses and ports of the service's backends."), AGE),
        _endpoints_cells),
    ("discovery.k8s.io", "endpointslices"): Printer(
        (NAME, Column("AddressType", "The type of address the slice carries: IPv4, IPv6 or FQDN."),
         Column("Ports", "The ports exposed by the slice's endpoints."),
         Column("Endpoints", "The addresses of the slice's endpoints, ready or not."), AGE),
        _endpoint_slice_cells),
    ("", "nodes"): Printer(NODE_COLUMNS, _node_cells),
    ("", "namespaces"): Printer((NAME, Column("Status", "The status of the namespace"), AGE),
                                _namespace_cells),
    ("apps", "deployments"): Printer(
        (NAME, Column("Ready", "Number of the pod with ready state"),
         Column("Up-to-date", "Pods running the latest pod template."),
         Column("Available", "Pods ready for at least minReadySeconds."), AGE,
         *_template_columns("Label selector for the pods the deployment manages.")),
        _deployment_cells),
    ("apps", "replicasets"): Printer(
        (NAME, Column("Desired", "The number of replicas asked for.", type="integer"),
         Column("Current", "The number of replicas that exist.", type="integer"),
         Column("Ready", "The number of ready replicas.", type="integer"), AGE,
         *_template_columns("Label selector for the pods the replica set counts.")),
        _replica_set_cells),
    ("", "events"): Printer(EVENT_COLUMNS, _event_cells),
    ("coordination.k8s.io", "leases"): Printer(
        (NAME, Column("Holder", "The identity of the lease's current holder."), AGE), _lease_cells),
}

DEFAULT_PRINTER = Printer((NAME, AGE), _generic_cells)

