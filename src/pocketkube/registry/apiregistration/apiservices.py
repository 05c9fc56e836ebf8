"""APIService (apiregistration.k8s.io/v1), as k8s.io/kube-aggregator validates and defaults it.

An APIService names the server of one group-version: `spec.service` for an extension API
server behind a Service, none for a group the API server serves itself ("Local"). Its name is
`<version>.<group>` (`v1.` for the core group). The status (the Available condition) is written
through the status subresource by the availability controller (apiserver/apiservices.py).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pocketkube.api.fields import FieldError, Path, invalid, not_supported, required
from pocketkube.api.validation import dns1035_label_errors, dns1123_subdomain_errors, is_int, wrong_type
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import get_str, validate_object_meta, validate_object_meta_update

GROUP = "apiregistration.k8s.io"
DEFAULT_SERVICE_PORT = 443  # SetDefaults_ServiceReference
CONDITION_STATUSES = ["True", "False", "Unknown"]


def default(obj: dict) -> None:
    spec = obj.get("spec")
    service = spec.get("service") if isinstance(spec, dict) else None
    if isinstance(service, dict) and service.get("port") is None:
        service["port"] = DEFAULT_SERVICE_PORT


def _path_segment_errors(name: str) -> list[str]:
    """path.IsValidPathSegmentName: the name only has to be usable in a URL path."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def _name_errors(required_name: str):
    """The name must be a path segment and exactly `spec.version + "." + spec.group`."""
    def errors(name: str) -> list[str]:
        minimal = _path_segment_errors(name)
        if minimal:
            return minimal
        if name != required_name:
            return [f'must be `spec.version+"."+spec.group`: "{required_name}"']
        return []
    return errors


def _priority_errors(spec: dict, key: str, maximum: int, path: Path) -> list[FieldError]:
    value = spec.get(key, 0)
    if value is None:
        value = 0
    if not is_int(value):
        return [wrong_type(path.child(key), value, "integer")]
    if value <= 0 or value > maximum:
        return [invalid(path.child(key), value, f"must be positive and less than {maximum}")]
    return []


def _service_errors(service: Any, spec: dict, path: Path) -> list[FieldError]:
    if not isinstance(service, dict):
        return [wrong_type(path, service, "object")]
    errs: list[FieldError] = []
    for key in ("namespace", "name"):
        before = len(errs)
        if not get_str(service, key, path, errs) and len(errs) == before:
            errs.append(required(path.child(key)))
    port = service.get("port", DEFAULT_SERVICE_PORT)
    if not is_int(port):
        errs.append(wrong_type(path.child("port"), port, "integer"))
    elif not 1 <= port <= 65535:
        errs.append(invalid(path.child("port"), port,
                            "port is not valid: must be between 1 and 65535, inclusive"))
    if spec.get("insecureSkipTLSVerify") is True and spec.get("caBundle"):
        errs.append(invalid(Path("spec", "insecureSkipTLSVerify"), True, "may not be true if caBundle is present"))
    return errs


def _ca_bundle_length(value: Any, path: Path, errs: list[FieldError]) -> int:
    """caBundle is bytes, base64 on the wire: the decoded length (upstream reports it, not the PEM)."""
    if value is None:
        return 0
    if not isinstance(value, str):
        errs.append(wrong_type(path, value, "string"))
        return 0
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        errs.append(invalid(path, value, "illegal base64 data"))
        return 0


def validate(obj: dict) -> list[FieldError]:
    """ValidateAPIService plus ValidateAPIServiceStatus."""
    path = Path("spec")
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return validate_object_meta(obj, False, _path_segment_errors) + [wrong_type(path, spec, "object")]
    errs: list[FieldError] = []
    group = get_str(spec, "group", path, errs)
    version = get_str(spec, "version", path, errs)
    errs = validate_object_meta(obj, False, _name_errors(f"{version}.{group}")) + errs
    if not group and version != "v1":
        errs.append(required(path.child("group"), "only v1 may have an empty group and it better be legacy kube"))
    if group:
        errs.extend(invalid(path.child("group"), group, m) for m in dns1123_subdomain_errors(group))
    errs.extend(invalid(path.child("version"), version, m) for m in dns1035_label_errors(version))
    errs.extend(_priority_errors(spec, "groupPriorityMinimum", 20000, path))
    errs.extend(_priority_errors(spec, "versionPriority", 1000, path))
    ca_bundle = spec.get("caBundle")
    ca_bytes = _ca_bundle_length(ca_bundle, path.child("caBundle"), errs)
    skip = spec.get("insecureSkipTLSVerify")
    if skip is not None and not isinstance(skip, bool):
        errs.append(wrong_type(path.child("insecureSkipTLSVerify"), skip, "boolean"))
    service = spec.get("service")
    if service is None:
        if ca_bytes:
            errs.append(invalid(path.child("caBundle"), f"{ca_bytes} bytes", "local APIServices may not have a caBundle"))
        if skip is True:
            errs.append(invalid(path.child("insecureSkipTLSVerify"), True,
                                "local APIServices may not have insecureSkipTLSVerify"))
    else:
        errs.extend(_service_errors(service, spec, path.child("service")))
    return errs + _status_errors(obj.get("status"))


def _status_errors(status: Any) -> list[FieldError]:
    path = Path("status")
    if status is None:
        return []
    if not isinstance(status, dict):
        return [wrong_type(path, status, "object")]
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        return [wrong_type(path.child("conditions"), conditions, "array")]
    errs: list[FieldError] = []
    for i, cond in enumerate(conditions):
        cpath = path.child("conditions").index(i)
        if not isinstance(cond, dict):
            errs.append(wrong_type(cpath, cond, "object"))
        elif cond.get("status") not in CONDITION_STATUSES:
            errs.append(not_supported(cpath.child("status"), cond.get("status"), CONDITION_STATUSES))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate_object_meta_update(new, old) + validate(new)


def strategy() -> Strategy:
    """Cluster-scoped, the status written only through the status subresource."""
    return Strategy(default, validate, validate_update)
