"""Ingress and IngressClass validation, worded as upstream's pkg/apis/networking/validation."""

from __future__ import annotations

import re
from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, not_supported, required, too_long
from pocketkube.api.networking import ANN_INGRESS_CLASS, PATH_TYPES
from pocketkube.api.validation import (
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    is_int,
    max_len_error,
    port_name_errors,
    regex_error,
    wrong_type,
)
from pocketkube.registry.core.services.ipfamilies import ip_errors, parse_ip
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update

IMMUTABLE = "field is immutable"
_SUBDOMAIN_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD_FMT = "\\*\\." + _SUBDOMAIN_FMT
_WILDCARD_RE = re.compile(_WILDCARD_FMT)
_WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
                 "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
                 "character")
# Sequences a path may not hold (they would mean something else once normalised by a proxy).
_INVALID_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_SUFFIXES = ("/..", "/.")
_MAX_CONTROLLER_LEN = 250
SCOPES = ["Cluster", "Namespace"]


def wildcard_subdomain_errors(value: str) -> list[str]:
    """IsWildcardDNS1123Subdomain."""
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _WILDCARD_RE.fullmatch(value):
        errs.append(regex_error(_WILDCARD_MSG, _WILDCARD_FMT, "*.example.com"))
    return errs


def _host_errors(host: str, path: Path) -> list[FieldError]:
    if "*" in host:
        return [invalid(path, host, m) for m in wildcard_subdomain_errors(host)]
    return [invalid(path, host, m) for m in dns1123_subdomain_errors(host)]


def _dict(value: Any, path: Path, errs: list[FieldError]) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errs.append(wrong_type(path, value, "object"))
        return None
    return value


def _list(value: Any, path: Path, errs: list[FieldError]) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        errs.append(wrong_type(path, value, "array"))
        return []
    return value


def _path_segment_errors(value: str) -> list[str]:
    """IsPathSegmentName."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def _typed_ref_errors(ref: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    group = ref.get("apiGroup")
    if isinstance(group, str):
        errs.extend(invalid(path.child("apiGroup"), group, m) for m in dns1123_subdomain_errors(group))
    for key in ("kind", "name"):
        value = ref.get(key)
        if not isinstance(value, str) or not value:
            errs.append(required(path.child(key)))
        else:
            errs.extend(invalid(path.child(key), value, m) for m in _path_segment_errors(value))
    return errs


def validate_backend(backend: dict, path: Path) -> list[FieldError]:
    """validateIngressBackend: a service (name and port name XOR number) XOR a resource."""
    errs: list[FieldError] = []
    service = _dict(backend.get("service"), path.child("service"), errs)
    resource = _dict(backend.get("resource"), path.child("resource"), errs)
    if errs:
        return errs
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _typed_ref_errors(resource, path.child("resource"))
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    name = service.get("name")
    if not isinstance(name, str) or not name:
        errs.append(required(path.child("service", "name")))
    else:
        errs.extend(invalid(path.child("service", "name"), name, m) for m in dns1035_label_errors(name))
    port = _dict(service.get("port"), path.child("service", "port"), errs) or {}
    port_name, number = port.get("name") or "", port.get("number") or 0
    if port_name and number:
        errs.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        if not isinstance(port_name, str):
            errs.append(wrong_type(path.child("service", "port", "name"), port_name, "string"))
        else:
            errs.extend(invalid(path.child("service", "port", "name"), port_name, m)
                        for m in port_name_errors(port_name))
    elif number:
        if not is_int(number) or not 1 <= number <= 65535:
            errs.append(invalid(path.child("service", "port", "number"), number,
                                "must be between 1 and 65535, inclusive"))
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


def _http_path_errors(item: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    item = _dict(item, path, errs)
    if item is None:
        return errs or [required(path.child("pathType"), "pathType must be specified")]
    path_type = item.get("pathType")
    if path_type is None:
        return [required(path.child("pathType"), "pathType must be specified")]
    value = item.get("path") or ""
    if not isinstance(value, str):
        return [wrong_type(path.child("path"), value, "string")]
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid(path.child("path"), value, "must be an absolute path"))
        if value:
            errs.extend(invalid(path.child("path"), value, f"must not contain '{s}'")
                        for s in _INVALID_SEQUENCES if s in value)
            errs.extend(invalid(path.child("path"), value, f"cannot end with '{s}'")
                        for s in _INVALID_SUFFIXES if value.endswith(s))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid(path.child("path"), value, "must be an absolute path"))
    else:
        errs.append(not_supported(path.child("pathType"), path_type, list(PATH_TYPES)))
    backend = _dict(item.get("backend"), path.child("backend"), errs)
    if backend is None:
        backend = {}
    errs.extend(validate_backend(backend, path.child("backend")))
    return errs


def _rule_errors(rule: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    rule = _dict(rule, path, errs)
    if rule is None:
        return errs
    host = rule.get("host") or ""
    if not isinstance(host, str):
        return [wrong_type(path.child("host"), host, "string")]
    if host:
        if parse_ip(host) is not None:
            errs.append(invalid(path.child("host"), host, "must be a DNS name, not an IP address"))
        errs.extend(_host_errors(host, path.child("host")))
    http = _dict(rule.get("http"), path.child("http"), errs)
    if http is not None:
        paths = _list(http.get("paths"), path.child("http", "paths"), errs)
        if not paths:
            errs.append(required(path.child("http", "paths")))
        for i, item in enumerate(paths):
            errs.extend(_http_path_errors(item, path.child("http", "paths").index(i)))
    return errs


def validate_spec(spec: dict, path: Path) -> list[FieldError]:
    """ValidateIngressSpec."""
    errs: list[FieldError] = []
    rules = _list(spec.get("rules"), path.child("rules"), errs)
    default = _dict(spec.get("defaultBackend"), path.child("defaultBackend"), errs)
    if not rules and default is None and not errs:
        errs.append(invalid(path, rules or None, "either `defaultBackend` or `rules` must be specified"))
    if default is not None:
        errs.extend(validate_backend(default, path.child("defaultBackend")))
    for i, rule in enumerate(rules):
        errs.extend(_rule_errors(rule, path.child("rules").index(i)))
    for i, tls in enumerate(_list(spec.get("tls"), path.child("tls"), errs)):
        tpath = path.child("tls").index(i)
        tls = _dict(tls, tpath, errs) or {}
        for j, host in enumerate(_list(tls.get("hosts"), tpath.child("hosts"), errs)):
            if not isinstance(host, str):
                errs.append(wrong_type(tpath.child("hosts").index(j), host, "string"))
                continue
            errs.extend(_host_errors(host, tpath.child("hosts").index(j)))
        secret = tls.get("secretName")
        if isinstance(secret, str) and secret:
            errs.extend(invalid(tpath.child("secretName"), secret, m) for m in dns1123_subdomain_errors(secret))
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        if not isinstance(class_name, str):
            errs.append(wrong_type(path.child("ingressClassName"), class_name, "string"))
        else:
            errs.extend(invalid(path.child("ingressClassName"), class_name, m)
                        for m in dns1123_subdomain_errors(class_name))
    return errs


def validate_status(status: dict, old_status: dict) -> list[FieldError]:
    """ValidateIngressLoadBalancerStatus."""
    errs: list[FieldError] = []
    path = Path("status", "loadBalancer", "ingress")
    old_ips = [e.get("ip") for e in ((old_status.get("loadBalancer") or {}).get("ingress") or [])
               if isinstance(e, dict) and e.get("ip")]
    lb = _dict(status.get("loadBalancer"), Path("status", "loadBalancer"), errs) or {}
    for i, entry in enumerate(_list(lb.get("ingress"), path, errs)):
        entry = _dict(entry, path.index(i), errs) or {}
        ip, hostname = entry.get("ip"), entry.get("hostname")
        if isinstance(ip, str) and ip:
            errs.extend(ip_errors(path.index(i).child("ip"), ip, old_ips))
        if isinstance(hostname, str) and hostname:
            errs.extend(invalid(path.index(i).child("hostname"), hostname, m)
                        for m in dns1123_subdomain_errors(hostname))
            if parse_ip(hostname) is not None:
                errs.append(invalid(path.index(i).child("hostname"), hostname,
                                    "must be a DNS name, not an IP address"))
    return errs


def _spec(obj: dict, errs: list[FieldError]) -> dict:
    return _dict(obj.get("spec"), Path("spec"), errs) or {}


def validate_ingress(obj: dict) -> list[FieldError]:
    """ValidateIngressCreate."""
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec = _spec(obj, errs)
    annotations = (obj.get("metadata") or {}).get("annotations")
    legacy = annotations.get(ANN_INGRESS_CLASS) if isinstance(annotations, dict) else None
    class_name = spec.get("ingressClassName")
    if legacy is not None and class_name is not None and legacy != class_name:
        errs.append(invalid(Path("annotations").child(ANN_INGRESS_CLASS), legacy,
                            "must match `ingressClassName` when both are specified"))
    errs.extend(validate_spec(spec, Path("spec")))
    status = obj.get("status")
    if isinstance(status, dict):
        errs.extend(validate_status(status, {}))
    return errs


def validate_ingress_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(new, old)
    errs.extend(validate_spec(_spec(new, errs), Path("spec")))
    status = new.get("status")
    if isinstance(status, dict):
        old_status = old.get("status") if isinstance(old.get("status"), dict) else {}
        errs.extend(validate_status(status, old_status))
    return errs


def _domain_prefixed_path_errors(value: str, path: Path) -> list[FieldError]:
    """IsDomainPrefixedPath: `example.com/path`."""
    host, sep, rest = value.partition("/")
    if not sep:
        return [invalid(path, value, "must be a domain-prefixed path (such as \"acme.io/foo\")")]
    errs = [invalid(path, host, m) for m in dns1123_subdomain_errors(host)]
    if not re.fullmatch(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+", rest):
        errs.append(invalid(path, rest, "Invalid path"))
    return errs


def validate_ingress_class(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, False, dns1123_subdomain_errors)
    spec = _spec(obj, errs)
    path = Path("spec")
    controller = spec.get("controller")
    if not isinstance(controller, str) or not controller:
        errs.append(required(path.child("controller")))
    else:
        if len(controller) > _MAX_CONTROLLER_LEN:
            errs.append(too_long(path.child("controller"), _MAX_CONTROLLER_LEN))
        errs.extend(_domain_prefixed_path_errors(controller, path.child("controller")))
    params = _dict(spec.get("parameters"), path.child("parameters"), errs)
    if params is not None:
        ppath = path.child("parameters")
        errs.extend(_typed_ref_errors(params, ppath))
        scope = params.get("scope")
        namespace = params.get("namespace")
        if scope is None:
            errs.append(required(ppath.child("scope")))
        elif scope not in SCOPES:
            errs.append(not_supported(ppath.child("scope"), scope, SCOPES))
        elif scope == "Namespace":
            if namespace is None:
                errs.append(required(ppath.child("namespace"), "`parameters.scope` is set to 'Namespace'"))
            else:
                errs.extend(invalid(ppath.child("namespace"), namespace, m)
                            for m in dns1123_label_errors(namespace))
        elif namespace is not None:
            errs.append(forbidden(ppath.child("namespace"), "`parameters.scope` is set to 'Cluster'"))
    return errs


def validate_ingress_class_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(new, old)
    controller = (new.get("spec") or {}).get("controller") if isinstance(new.get("spec"), dict) else None
    old_controller = (old.get("spec") or {}).get("controller")
    if controller != old_controller:
        errs.append(invalid(Path("spec", "controller"), controller, IMMUTABLE))
    return errs + validate_ingress_class(new)
