"""Pod defaulting and validation, worded as Kubernetes' pkg/apis/core/v1 defaults and
pkg/apis/core/validation word them.

Defaults reproduce what a real cluster shows in `kubectl get pod -o yaml`: the static v1 defaults
plus what the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins add.
Every validator tolerates wrong JSON types: a bad type is a FieldError on that field.

The typed accessors (`get_dict`, `get_list`, ...) and the pod-spec validator are shared with the
other kinds in this package and with apps (Deployment/ReplicaSet templates).
"""

from __future__ import annotations

import ipaddress
import re
from fractions import Fraction
from typing import Any

from pocketkube.api.fields import FieldError, Path, duplicate, forbidden, invalid, not_supported, required
from pocketkube.registry.validation import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    get_str,
    is_int,
    label_value_errors,
    port_name_errors,
    qualified_name_errors,
    validate_annotations,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
    wrong_type,
)

NEGATIVE = "must be greater than or equal to 0"
PORT_RANGE = "must be between 1 and 65535, inclusive"
PROTOCOLS = ["SCTP", "TCP", "UDP"]
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
HTTP_SCHEMES = ["HTTP", "HTTPS"]
DEFAULT_TOLERATION_SECONDS = 300
UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)
_ENV_FIELD_PATHS = [
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
    "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
    "status.podIPs",
]
_QUANTITY_RE = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIX = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
                   "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
                   "P": Fraction(10**15), "E": Fraction(10**18)}
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


# ---------------------------------------------------------------------------------------------
# Typed access: wrong JSON types become FieldErrors, never exceptions.
# ---------------------------------------------------------------------------------------------

def get_dict(parent: dict, key: str, path: Path, errs: list[FieldError]) -> dict:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.append(wrong_type(path.child(key), value, "object"))
        return {}
    return value


def get_list(parent: dict, key: str, path: Path, errs: list[FieldError]) -> list:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errs.append(wrong_type(path.child(key), value, "array"))
        return []
    return value


def get_int(parent: dict, key: str, path: Path, errs: list[FieldError]) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if not is_int(value):
        errs.append(wrong_type(path.child(key), value, "integer"))
        return None
    return value


def get_bool(parent: dict, key: str, path: Path, errs: list[FieldError]) -> bool | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        errs.append(wrong_type(path.child(key), value, "boolean"))
        return None
    return value


def dict_items(items: list, path: Path, errs: list[FieldError]) -> list[tuple[int, dict]]:
    """(index, item) for the list entries that are objects; others are reported."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            out.append((i, item))
        else:
            errs.append(wrong_type(path.index(i), item, "object"))
    return out


def not_supported_ordered(path: Path, value: Any, supported: list[str]) -> FieldError:
    """NotSupported listing values in the order upstream passes them (fields.not_supported sorts)."""
    return FieldError("NotSupported", str(path), value, "supported values: " + ", ".join(f'"{s}"' for s in supported))


def nonnegative(value: int | None, path: Path) -> list[FieldError]:
    return [invalid(path, value, NEGATIVE)] if value is not None and value < 0 else []


# ---------------------------------------------------------------------------------------------
# Names, ports, quantities
# ---------------------------------------------------------------------------------------------

def port_number_errors(value: int, path: Path) -> list[FieldError]:
    return [] if 1 <= value <= 65535 else [invalid(path, value, PORT_RANGE)]


def port_num_or_name_errors(value: Any, path: Path) -> list[FieldError]:
    """An IntOrString port: a number in range or an IANA_SVC_NAME."""
    if is_int(value):
        return port_number_errors(value, path)
    if isinstance(value, str):
        return [invalid(path, value, m) for m in port_name_errors(value)]
    if value is None:
        return [invalid(path, 0, PORT_RANGE)]
    return [wrong_type(path, value, "integer or string")]


def protocol_errors(parent: dict, path: Path, errs: list[FieldError]) -> None:
    protocol = get_str(parent, "protocol", path, errs)
    if not protocol and not _wrong(parent, "protocol"):
        errs.append(required(path.child("protocol")))
    elif protocol and protocol not in PROTOCOLS:
        errs.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))


def _wrong(parent: dict, key: str) -> bool:
    return is_wrong_type(parent, key, str)


def is_wrong_type(parent: dict, key: str, expected: type) -> bool:
    """Whether parent[key] is present with another JSON type (already reported by a get_* accessor)."""
    value = parent.get(key)
    if value is None:
        return False
    if expected is int:
        return not is_int(value)
    return not isinstance(value, expected)


def parse_quantity(value: Any) -> Fraction | None:
    """A resource.Quantity as an exact number, or None when it is not one."""
    if is_int(value):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value).limit_denominator(10**9)
    if not isinstance(value, str):
        return None
    m = _QUANTITY_RE.fullmatch(value)
    if m is None:
        return None
    number, suffix = m.groups()
    try:
        base = Fraction(number)
    except (ValueError, ZeroDivisionError):
        return None
    if suffix in _BINARY_SUFFIX:
        return base * _BINARY_SUFFIX[suffix]
    if suffix in _DECIMAL_SUFFIX:
        return base * _DECIMAL_SUFFIX[suffix]
    if suffix[:1] in ("e", "E"):
        try:
            exponent = int(suffix[1:])
        except ValueError:
            return None
        return base * Fraction(10) ** exponent if abs(exponent) < 1000 else None
    return None


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------

def default(obj: dict, toleration_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """Static v1 defaults plus the create-time admission defaults a real cluster shows.

    `toleration_seconds` is the DefaultTolerationSeconds plugin's setting (the server's
    --pod-eviction-timeout), given to the pod strategy at construction."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    default_pod_spec(spec)
    for container in _containers(spec):
        _default_requests_to_limits(container)
    spec.setdefault("enableServiceLinks", True)
    if not spec.get("serviceAccountName"):
        # The deprecated `serviceAccount` wins when the new field is empty, then admission's "default".
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    if not spec.get("priorityClassName"):
        spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    _default_tolerations(spec, toleration_seconds)
    if obj.get("status") is None:
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec and the container/probe/port defaults: shared with pod templates."""
    for key, value in (("restartPolicy", "Always"), ("dnsPolicy", "ClusterFirst"),
                       ("schedulerName", "default-scheduler"), ("terminationGracePeriodSeconds", 30)):
        if spec.get(key) in (None, ""):
            spec[key] = value
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    for container in _containers(spec):
        _default_container(container)
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for volume in volumes:
            if isinstance(volume, dict):
                _default_volume(volume)


def _containers(spec: dict) -> list[dict]:
    out = []
    for key in ("initContainers", "containers"):
        items = spec.get(key)
        if isinstance(items, list):
            out.extend(c for c in items if isinstance(c, dict))
    return out


def image_tag(image: str) -> str:
    """The tag ParseImageName reports: "latest" when neither tag nor digest is given."""
    if "@" in image:
        name = image.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else ""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _default_container(c: dict) -> None:
    if not c.get("imagePullPolicy"):
        image = c.get("image") if isinstance(c.get("image"), str) else ""
        c["imagePullPolicy"] = "Always" if image_tag(image) == "latest" else "IfNotPresent"
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    if c.get("resources") is None:
        c["resources"] = {}
    ports = c.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if isinstance(port, dict) and not port.get("protocol"):
                port["protocol"] = "TCP"
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(c.get(probe_key), dict):
            _default_probe(c[probe_key])
    env = c.get("env")
    if isinstance(env, list):
        for var in env:
            field_ref = var.get("valueFrom", {}).get("fieldRef") if isinstance(var, dict) and isinstance(
                var.get("valueFrom"), dict) else None
            if isinstance(field_ref, dict):
                field_ref.setdefault("apiVersion", "v1")


def _default_probe(probe: dict) -> None:
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    http_get = probe.get("httpGet")
    if isinstance(http_get, dict):
        if not http_get.get("path"):
            http_get["path"] = "/"
        if not http_get.get("scheme"):
            http_get["scheme"] = "HTTP"


def _default_volume(volume: dict) -> None:
    sources = [k for k in volume if k != "name"]
    if not sources:
        volume["emptyDir"] = {}
    for key in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(volume.get(key), dict):
            volume[key].setdefault("defaultMode", 420)


def _default_requests_to_limits(c: dict) -> None:
    resources = c.get("resources")
    if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict) or not resources["limits"]:
        return
    requests = resources.setdefault("requests", {})
    if isinstance(requests, dict):
        for name, quantity in resources["limits"].items():
            requests.setdefault(name, quantity)


def _tolerates(toleration: Any, key: str) -> bool:
    """Whether a toleration already tolerates the NoExecute taint `key` (ToleratesTaint)."""
    if not isinstance(toleration, dict):
        return False
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return False
    if toleration.get("key") not in (None, "", key):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    return toleration.get("operator") == "Exists" or (toleration.get("operator") in (None, "", "Equal")
                                                       and not toleration.get("value"))


def _default_tolerations(spec: dict, seconds: int) -> None:
    """What the DefaultTolerationSeconds admission plugin adds."""
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(_tolerates(t, key) for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": seconds})
    spec["tolerations"] = tolerations


def qos_class(spec: dict) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' cpu/memory requests and limits."""
    any_set, guaranteed = False, True
    for c in _containers(spec):
        resources = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        requests = resources.get("requests") if isinstance(resources.get("requests"), dict) else {}
        limits = resources.get("limits") if isinstance(resources.get("limits"), dict) else {}
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or parse_quantity(requests.get(name, limits[name])) != parse_quantity(limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec_path = Path("spec")
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return errs + [wrong_type(spec_path, spec, "object")]
    errs.extend(validate_pod_spec(spec, spec_path))
    errs.extend(_image_whitespace_errors(spec, spec_path))
    return errs


def _image_whitespace_errors(spec: dict, path: Path) -> list[FieldError]:
    """Pods (not templates) reject images with surrounding whitespace."""
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        if not isinstance(items, list):
            continue
        for i, c in enumerate(items):
            image = c.get("image") if isinstance(c, dict) else None
            if isinstance(image, str) and image != image.strip():
                errs.append(invalid(path.child(key).index(i).child("image"), image,
                                    "must not have leading or trailing whitespace"))
    return errs


def validate_pod_spec(spec: dict, path: Path) -> list[FieldError]:
    """ValidatePodSpec: the checks shared by pods and pod templates."""
    errs: list[FieldError] = []
    _validate_volumes(get_list(spec, "volumes", path, errs), path.child("volumes"), errs)
    containers = get_list(spec, "containers", path, errs)
    init_containers = get_list(spec, "initContainers", path, errs)
    if not containers and not is_wrong_type(spec, "containers", list):
        errs.append(required(path.child("containers")))
    names: set[str] = set()
    _validate_containers(containers, path.child("containers"), names, errs, probes=True)
    _validate_containers(init_containers, path.child("initContainers"), names, errs, probes=False)
    _validate_enum(spec, "restartPolicy", RESTART_POLICIES, path, errs)
    _validate_enum(spec, "dnsPolicy", DNS_POLICIES, path, errs)
    errs.extend(validate_labels(spec.get("nodeSelector"), path.child("nodeSelector")))
    get_dict(spec, "securityContext", path, errs)
    for key in ("serviceAccountName", "nodeName"):
        value = get_str(spec, key, path, errs)
        if value:
            errs.extend(invalid(path.child(key), value, m) for m in dns1123_subdomain_errors(value))
    for key in ("hostname", "subdomain"):
        value = get_str(spec, key, path, errs)
        if value:
            errs.extend(invalid(path.child(key), value, m) for m in dns1123_label_errors(value))
    deadline = get_int(spec, "activeDeadlineSeconds", path, errs)
    if deadline is not None and not 1 <= deadline <= 2**31 - 1:
        errs.append(invalid(path.child("activeDeadlineSeconds"), deadline, "must be between 1 and 2147483647, inclusive"))
    get_int(spec, "terminationGracePeriodSeconds", path, errs)
    get_int(spec, "priority", path, errs)
    for key in ("hostNetwork", "hostPID", "hostIPC", "enableServiceLinks", "automountServiceAccountToken"):
        get_bool(spec, key, path, errs)
    errs.extend(validate_tolerations(get_list(spec, "tolerations", path, errs), path.child("tolerations")))
    return errs


def _validate_enum(parent: dict, key: str, supported: list[str], path: Path, errs: list[FieldError]) -> None:
    value = get_str(parent, key, path, errs)
    if not value and not _wrong(parent, key):
        errs.append(required(path.child(key)))
    elif value and value not in supported:
        errs.append(not_supported_ordered(path.child(key), value, supported))


def _validate_volumes(volumes: list, path: Path, errs: list[FieldError]) -> None:
    names: set[str] = set()
    for i, volume in dict_items(volumes, path, errs):
        name = get_str(volume, "name", path.index(i), errs)
        name_path = path.index(i).child("name")
        if not name:
            if not _wrong(volume, "name"):
                errs.append(required(name_path))
            continue
        errs.extend(invalid(name_path, name, m) for m in dns1123_label_errors(name))
        if name in names:
            errs.append(duplicate(name_path, name))
        names.add(name)


def _validate_containers(containers: list, path: Path, names: set[str], errs: list[FieldError],
                         probes: bool) -> None:
    for i, c in dict_items(containers, path, errs):
        cpath = path.index(i)
        name = get_str(c, "name", cpath, errs)
        if not name:
            if not _wrong(c, "name"):
                errs.append(required(cpath.child("name")))
        else:
            errs.extend(invalid(cpath.child("name"), name, m) for m in dns1123_label_errors(name))
            if name in names:
                errs.append(duplicate(cpath.child("name"), name))
            names.add(name)
        _validate_container(c, cpath, errs)
        if probes:
            for key in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = get_dict(c, key, cpath, errs)
                if probe:
                    errs.extend(_probe_errors(probe, cpath.child(key), key != "readinessProbe"))
        else:
            for key in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
                if c.get(key) is not None and c.get("restartPolicy") != "Always":
                    errs.append(forbidden(cpath.child(key), "may not be set for init containers without "
                                                            "restartPolicy=Always"))


def _validate_container(c: dict, path: Path, errs: list[FieldError]) -> None:
    image = get_str(c, "image", path, errs)
    if not image and not _wrong(c, "image"):
        errs.append(required(path.child("image")))
    policy = get_str(c, "terminationMessagePolicy", path, errs)
    if not policy and not _wrong(c, "terminationMessagePolicy"):
        errs.append(required(path.child("terminationMessagePolicy"), "must be 'File' or 'FallbackToLogsOnError'"))
    elif policy and policy not in ("File", "FallbackToLogsOnError"):
        errs.append(invalid(path.child("terminationMessagePolicy"), policy, "must be 'File' or 'FallbackToLogsOnError'"))
    for key in ("command", "args"):
        for i, item in enumerate(get_list(c, key, path, errs)):
            if not isinstance(item, str):
                errs.append(wrong_type(path.child(key).index(i), item, "string"))
    get_str(c, "workingDir", path, errs)
    _validate_container_ports(get_list(c, "ports", path, errs), path.child("ports"), errs)
    _validate_env(get_list(c, "env", path, errs), path.child("env"), errs)
    get_list(c, "envFrom", path, errs)
    _validate_volume_mounts(get_list(c, "volumeMounts", path, errs), path.child("volumeMounts"), errs)
    pull = get_str(c, "imagePullPolicy", path, errs)
    if not pull and not _wrong(c, "imagePullPolicy"):
        errs.append(required(path.child("imagePullPolicy")))
    elif pull and pull not in PULL_POLICIES:
        errs.append(not_supported(path.child("imagePullPolicy"), pull, PULL_POLICIES))
    _validate_resources(get_dict(c, "resources", path, errs), path.child("resources"), errs)
    get_dict(c, "securityContext", path, errs)


def _validate_container_ports(ports: list, path: Path, errs: list[FieldError]) -> None:
    names: set[str] = set()
    for i, port in dict_items(ports, path, errs):
        ppath = path.index(i)
        name = get_str(port, "name", ppath, errs)
        if name:
            messages = port_name_errors(name)
            errs.extend(invalid(ppath.child("name"), name, m) for m in messages)
            if not messages and name in names:
                errs.append(duplicate(ppath.child("name"), name))
            names.add(name)
        container_port = get_int(port, "containerPort", ppath, errs)
        if not container_port:
            if not is_wrong_type(port, "containerPort", int):
                errs.append(required(ppath.child("containerPort")))
        else:
            errs.extend(port_number_errors(container_port, ppath.child("containerPort")))
        host_port = get_int(port, "hostPort", ppath, errs)
        if host_port:
            errs.extend(port_number_errors(host_port, ppath.child("hostPort")))
        host_ip = get_str(port, "hostIP", ppath, errs)
        if host_ip:
            errs.extend(ip_errors(host_ip, ppath.child("hostIP")))
        protocol_errors(port, ppath, errs)


def ip_errors(value: str, path: Path) -> list[FieldError]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def _validate_env(env: list, path: Path, errs: list[FieldError]) -> None:
    for i, var in dict_items(env, path, errs):
        vpath = path.index(i)
        name = get_str(var, "name", vpath, errs)
        if not name:
            if not _wrong(var, "name"):
                errs.append(required(vpath.child("name")))
        elif any(ord(ch) > 126 or ord(ch) < 32 or ch == "=" for ch in name):
            errs.append(invalid(vpath.child("name"), name,
                                "a valid environment variable name must consist only of printable ASCII "
                                "characters other than '='"))
        value = get_str(var, "value", vpath, errs)
        value_from = get_dict(var, "valueFrom", vpath, errs)
        if var.get("valueFrom") is not None and isinstance(var.get("valueFrom"), dict):
            _validate_env_source(value_from, value, vpath.child("valueFrom"), errs)


def _validate_env_source(source: dict, value: str, path: Path, errs: list[FieldError]) -> None:
    kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
             if source.get(k) is not None]
    if not kinds:
        errs.append(invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` "
                                      "or `secretKeyRef`"))
    elif len(kinds) > 1:
        errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    elif value:
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    field_ref = get_dict(source, "fieldRef", path, errs)
    if source.get("fieldRef") is not None and isinstance(source.get("fieldRef"), dict):
        field_path = get_str(field_ref, "fieldPath", path.child("fieldRef"), errs)
        fpath = path.child("fieldRef", "fieldPath")
        if not field_path:
            errs.append(required(fpath))
        elif re.sub(r"\[.*\]$", "", field_path) not in _ENV_FIELD_PATHS:
            errs.append(not_supported(fpath, field_path, _ENV_FIELD_PATHS))
    for key in ("configMapKeyRef", "secretKeyRef"):
        ref = get_dict(source, key, path, errs)
        if isinstance(source.get(key), dict) and not get_str(ref, "key", path.child(key), errs):
            errs.append(required(path.child(key, "key")))


def _validate_volume_mounts(mounts: list, path: Path, errs: list[FieldError]) -> None:
    mount_paths: set[str] = set()
    for i, mount in dict_items(mounts, path, errs):
        mpath = path.index(i)
        name = get_str(mount, "name", mpath, errs)
        if not name:
            errs.append(required(mpath.child("name")))
        # Upstream also reports an unknown volume name (field.NotFound); fields.py has no NotFound type yet.
        mount_path = get_str(mount, "mountPath", mpath, errs)
        if not mount_path:
            errs.append(required(mpath.child("mountPath")))
        elif mount_path in mount_paths:
            errs.append(invalid(mpath.child("mountPath"), mount_path, "must be unique"))
        mount_paths.add(mount_path)


def _resource_name_errors(name: str, path: Path) -> list[FieldError]:
    errs = [invalid(path, name, m) for m in qualified_name_errors(name)]
    if errs:
        return errs
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            return [invalid(path, name, "must be a standard resource for containers")]
    elif "kubernetes.io/" not in name and name.startswith("requests."):
        return [invalid(path, name, "doesn't follow extended resource name standard")]
    return []


def _validate_resources(resources: dict, path: Path, errs: list[FieldError]) -> None:
    limits = get_dict(resources, "limits", path, errs)
    requests = get_dict(resources, "requests", path, errs)
    parsed_limits: dict[str, Fraction] = {}
    for kind, values, parsed in (("limits", limits, parsed_limits), ("requests", requests, {})):
        for name, quantity in values.items():
            qpath = path.child(kind).key(name)
            errs.extend(_resource_name_errors(name, qpath))
            amount = parse_quantity(quantity)
            if amount is None:
                errs.append(invalid(qpath, quantity, _QUANTITY_MSG))
                continue
            if amount < 0:
                errs.append(invalid(qpath, quantity, NEGATIVE))
            parsed[name] = amount
            if kind == "requests" and name in parsed_limits and amount > parsed_limits[name]:
                errs.append(invalid(path.child("requests"), quantity,
                                    f"must be less than or equal to {name} limit of {limits[name]}"))


def _probe_errors(probe: dict, path: Path, success_must_be_one: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    handlers = 0
    for key in ("exec", "httpGet", "tcpSocket", "grpc"):
        if probe.get(key) is None:
            continue
        if handlers:
            errs.append(forbidden(path.child(key), "may not specify more than 1 handler type"))
            continue
        handlers += 1
        action = get_dict(probe, key, path, errs)
        errs.extend(_handler_errors(key, action, path.child(key)))
    if not handlers:
        errs.append(required(path, "must specify a handler type"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.extend(nonnegative(get_int(probe, key, path, errs), path.child(key)))
    success = get_int(probe, "successThreshold", path, errs)
    if success_must_be_one and success is not None and success != 1:
        errs.append(invalid(path.child("successThreshold"), success, "must be 1"))
    grace = get_int(probe, "terminationGracePeriodSeconds", path, errs)
    if grace is not None and grace <= 0:
        errs.append(invalid(path.child("terminationGracePeriodSeconds"), grace, "must be greater than 0"))
    return errs


def _handler_errors(kind: str, action: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if kind == "exec":
        if not get_list(action, "command", path, errs) and not is_wrong_type(action, "command", list):
            errs.append(required(path.child("command")))
    elif kind == "httpGet":
        if not get_str(action, "path", path, errs) and not _wrong(action, "path"):
            errs.append(required(path.child("path")))
        errs.extend(port_num_or_name_errors(action.get("port"), path.child("port")))
        scheme = get_str(action, "scheme", path, errs)
        if scheme not in HTTP_SCHEMES:
            errs.append(not_supported(path.child("scheme"), scheme, HTTP_SCHEMES))
        get_list(action, "httpHeaders", path, errs)
    elif kind == "tcpSocket":
        errs.extend(port_num_or_name_errors(action.get("port"), path.child("port")))
    else:
        port = get_int(action, "port", path, errs)
        errs.extend(port_number_errors(port or 0, path.child("port")))
    return errs


def validate_tolerations(tolerations: list, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in dict_items(tolerations, path, errs):
        tpath = path.index(i)
        key = get_str(t, "key", tpath, errs)
        operator = get_str(t, "operator", tpath, errs)
        value = get_str(t, "value", tpath, errs)
        effect = get_str(t, "effect", tpath, errs)
        seconds = get_int(t, "tolerationSeconds", tpath, errs)
        if key:
            errs.extend(invalid(tpath.child("key"), key, m) for m in qualified_name_errors(key))
        if not key and operator != "Exists":
            errs.append(invalid(tpath.child("operator"), operator,
                                'operator must be Exists when `key` is empty, which means "match all values and all keys"'))
        if seconds is not None and effect != "NoExecute":
            errs.append(invalid(tpath.child("effect"), effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator in ("", "Equal"):
            messages = label_value_errors(value)
            if messages:
                errs.append(invalid(tpath.child("operator"), value, ";".join(messages)))
        elif operator == "Exists":
            if value:
                errs.append(invalid(tpath.child("operator"), t, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported_ordered(tpath.child("operator"), operator, ["Equal", "Exists"]))
        if effect and effect not in TAINT_EFFECTS:
            errs.append(not_supported_ordered(tpath.child("effect"), effect, TAINT_EFFECTS))
    return errs


def validate_template(template: Any, path: Path) -> list[FieldError]:
    """ValidatePodTemplateSpec: template labels/annotations (on `<path>.labels`) and its pod spec."""
    if template is None:
        return [required(path)]
    if not isinstance(template, dict):
        return [wrong_type(path, template, "object")]
    errs: list[FieldError] = []
    meta = get_dict(template, "metadata", path, errs)
    errs.extend(validate_labels(meta.get("labels"), path.child("labels")))
    errs.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    spec_path = path.child("spec")
    spec = template.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return errs + [wrong_type(spec_path, spec, "object")]
    errs.extend(validate_pod_spec(spec, spec_path))
    if spec.get("ephemeralContainers"):
        errs.append(forbidden(spec_path.child("ephemeralContainers"), "ephemeral containers not allowed in pod template"))
    return errs


# ---------------------------------------------------------------------------------------------
# Update
# ---------------------------------------------------------------------------------------------

def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate(new) + validate_object_meta_update(new, old)
    new_spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    errs.extend(_spec_update_errors(new_spec, old_spec, Path("spec")))
    return errs


def _container_update_errors(new: Any, old: Any, path: Path) -> tuple[list[FieldError], bool]:
    new = new if isinstance(new, list) else []
    old = old if isinstance(old, list) else []
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    return [], False


def _spec_update_errors(new: dict, old: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        container_errs, stop = _container_update_errors(new.get(key), old.get(key), path.child(key))
        errs.extend(container_errs)
        if stop:
            return errs
    errs.extend(_deadline_update_errors(new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds"),
                                        path.child("activeDeadlineSeconds")))
    errs.extend(_toleration_update_errors(new.get("tolerations"), old.get("tolerations"), path.child("tolerations")))
    munged = _munge_updatable(new, old)
    if munged != old:
        errs.append(forbidden(path, UPDATE_FORBIDDEN + "\n" + "\n".join(_diff(munged, old, "spec"))))
    return errs


def _deadline_update_errors(new: Any, old: Any, path: Path) -> list[FieldError]:
    if is_int(new):
        if new < 0 or new > 2**31 - 1:
            return [invalid(path, new, "must be between 0 and 2147483647, inclusive")]
        if is_int(old) and old < new:
            return [invalid(path, new, "must be less than or equal to previous value")]
        return []
    if new is None and old is not None:
        return [invalid(path, None, "must not update from a positive integer to nil value")]
    return []


def _toleration_update_errors(new: Any, old: Any, path: Path) -> list[FieldError]:
    """Existing tolerations may only change their tolerationSeconds."""
    new = [t for t in new if isinstance(t, dict)] if isinstance(new, list) else []
    old = [t for t in old if isinstance(t, dict)] if isinstance(old, list) else []
    for o in old:
        core = {k: v for k, v in o.items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in n.items() if k != "tolerationSeconds"} == core for n in new):
            return [forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return []


def _munge_updatable(new: dict, old: dict) -> dict:
    """A copy of the new spec with every field users may change reset to the old value."""
    munged = dict(new)
    for key in ("containers", "initContainers"):
        if isinstance(new.get(key), list) and isinstance(old.get(key), list):
            munged[key] = [_with_image(n, o) for n, o in zip(new[key], old[key])]
    for key in ("activeDeadlineSeconds", "tolerations"):
        _copy_key(munged, old, key)
    new_grace, old_grace = new.get("terminationGracePeriodSeconds"), old.get("terminationGracePeriodSeconds")
    if is_int(old_grace) and old_grace < 0 and new_grace == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    return munged


def _with_image(new: Any, old: Any) -> Any:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    out = dict(new)
    _copy_key(out, old, "image")
    return out


def _copy_key(target: dict, source: dict, key: str) -> None:
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)


def _diff(new: Any, old: Any, path: str) -> list[str]:
    """Changed leaves as `-`/`+` lines, standing in for upstream's struct diff."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: list[str] = []
        for key in sorted(set(new) | set(old), key=str):
            out.extend(_diff(new.get(key), old.get(key), f"{path}.{key}"))
        return out
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        out = []
        for i, (n, o) in enumerate(zip(new, old)):
            out.extend(_diff(n, o, f"{path}[{i}]"))
        return out
    if new == old:
        return []
    return [f"- {path}: {old!r}", f"+ {path}: {new!r}"]
