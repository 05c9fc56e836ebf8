"""Pod validation, worded as Kubernetes' pkg/apis/core/validation words it.

Every validator tolerates wrong JSON types: a bad type is a FieldError on that field.
`validate_pod_spec` and `validate_template` are shared with Deployments and ReplicaSets.
"""

from __future__ import annotations

import ipaddress
import re
from fractions import Fraction
from typing import Any

from pocketkube.api.fields import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    required,
)
from pocketkube.api.quantity import parse as parse_quantity
from pocketkube.api.validation import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_value_errors,
    port_name_errors,
    qualified_name_errors,
    validate_labels,
    wrong_type,
)
from pocketkube.registry.core.pods.dns import validate_dns_config
from pocketkube.registry.core.pods.typed import (
    NEGATIVE,
    QUANTITY_MSG,
    dict_items,
    get_bool,
    get_dict,
    get_int,
    get_list,
    is_wrong_type,
    nonnegative,
    not_a_string,
    not_supported_ordered,
    port_num_or_name_errors,
    port_number_errors,
    protocol_errors,
    required_str,
    unique_label_name,
)
from pocketkube.registry.core.pods.volumes import validate_volume_mounts, validate_volumes
from pocketkube.registry.validation import get_str, validate_annotations, validate_object_meta

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
HTTP_SCHEMES = ["HTTP", "HTTPS"]
_ENV_FIELD_PATHS = [
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
    "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
    "status.podIPs",
]
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


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
    volumes = _validate_volumes(get_list(spec, "volumes", path, errs), path.child("volumes"), errs)
    containers = get_list(spec, "containers", path, errs)
    init_containers = get_list(spec, "initContainers", path, errs)
    if not containers and not is_wrong_type(spec, "containers", list):
        errs.append(required(path.child("containers")))
    names: set[str] = set()
    _validate_containers(containers, path.child("containers"), names, errs, probes=True)
    _validate_containers(init_containers, path.child("initContainers"), names, errs, probes=False)
    _mounted_volumes_exist(containers, volumes, path.child("containers"), errs)
    _mounted_volumes_exist(init_containers, volumes, path.child("initContainers"), errs)
    _validate_enum(spec, "restartPolicy", RESTART_POLICIES, path, errs)
    _validate_enum(spec, "dnsPolicy", DNS_POLICIES, path, errs)
    errs.extend(validate_dns_config(spec, path))
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
    value = required_str(parent, key, path, errs)
    if value and value not in supported:
        errs.append(not_supported_ordered(path.child(key), value, supported))


def _validate_volumes(volumes: list, path: Path, errs: list[FieldError]) -> set[str]:
    return validate_volumes(volumes, path, errs)


def _validate_containers(containers: list, path: Path, names: set[str], errs: list[FieldError],
                         probes: bool) -> None:
    for i, c in dict_items(containers, path, errs):
        cpath = path.index(i)
        unique_label_name(c, cpath, names, errs)
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
    if not image and not not_a_string(c, "image"):
        errs.append(required(path.child("image")))
    policy = get_str(c, "terminationMessagePolicy", path, errs)
    if not policy and not not_a_string(c, "terminationMessagePolicy"):
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
    if not pull and not not_a_string(c, "imagePullPolicy"):
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
        name = required_str(var, "name", vpath, errs)
        if name and any(ord(ch) > 126 or ord(ch) < 32 or ch == "=" for ch in name):
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
    validate_volume_mounts(mounts, None, path, errs)


def _mounted_volumes_exist(containers: list, volumes: set[str], path: Path, errs: list[FieldError]) -> None:
    """A volumeMount naming no volume of the pod: field.NotFound, as upstream."""
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not isinstance(c.get("volumeMounts"), list):
            continue
        for j, m in enumerate(c["volumeMounts"]):
            name = m.get("name") if isinstance(m, dict) else None
            if isinstance(name, str) and name and name not in volumes:
                errs.append(not_found(path.index(i).child("volumeMounts").index(j).child("name"), name))


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
                errs.append(invalid(qpath, quantity, QUANTITY_MSG))
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
        if not get_str(action, "path", path, errs) and not not_a_string(action, "path"):
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
