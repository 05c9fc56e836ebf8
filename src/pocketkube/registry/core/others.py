"""Defaulting and validation for Namespace, Node, Endpoints, EndpointSlice, Event and Lease.

Each kind exports `<prefix>default`, `<prefix>validate` and `<prefix>validate_update`, worded as
pkg/apis/core/validation, pkg/apis/discovery/validation and pkg/apis/coordination/validation.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pocketkube.api.fields import FieldError, Path, duplicate, invalid, not_supported, required
from pocketkube.api.validation import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_value_errors,
    qualified_name_errors,
    validate_labels,
    wrong_type,
)
from pocketkube.registry.core.pods.typed import (
    PROTOCOLS,
    dict_items,
    get_dict,
    get_int,
    get_list,
    is_wrong_type,
    nonnegative,
    not_supported_ordered,
    port_number_errors,
    protocol_errors,
)
from pocketkube.registry.core.pods.validation import TAINT_EFFECTS
from pocketkube.registry.validation import (
    IMMUTABLE,
    get_str,
    validate_object_meta,
    validate_object_meta_update,
)

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_SLICE_ENDPOINTS = 1000
MAX_ENDPOINT_ADDRESSES = 100
MAX_SLICE_PORTS = 20000
_STANDARD_NAMESPACE_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
_IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _top(obj: dict, key: str, errs: list[FieldError]) -> dict:
    """obj[key] as a dict for validation ({} when absent, reported when of another type)."""
    return get_dict(obj, key, Path(), errs)


def too_many(path: Path, actual: int, limit: int) -> FieldError:
    return FieldError("TooMany", str(path), actual, f"must have at most {limit} items")


def _special_ip_errors(value: str, path: Path) -> list[FieldError]:
    """ValidateNonSpecialIP, except loopback: pocketkube's pod network lives in 127.0.0.0/8."""
    ip = ipaddress.ip_address(value)
    if ip.is_unspecified:
        return [invalid(path, value, f"may not be unspecified ({value})")]
    if ip.is_link_local:
        return [invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")]
    if ip.is_multicast and (ip in ipaddress.ip_network("224.0.0.0/24") or ip in ipaddress.ip_network("ff02::/16")):
        return [invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")]
    return []


def _ip_errors(value: str, path: Path, version: int | None = None) -> list[FieldError]:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    if version == 4 and (ip is None or ip.version != 4):
        return [invalid(path, value, "must be a valid IPv4 address")]
    if version == 6 and (ip is None or ip.version != 6):
        return [invalid(path, value, "must be a valid IPv6 address")]
    if ip is None:
        return [invalid(path, value, _IP_MSG)]
    return _special_ip_errors(value, path)


# ---- Namespace ------------------------------------------------------------------------------

def namespace_default(obj: dict) -> None:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]:
        labels = meta.get("labels")
        if labels is None:
            labels = meta["labels"] = {}
        if isinstance(labels, dict):
            labels["kubernetes.io/metadata.name"] = meta["name"]
    spec = obj.setdefault("spec", {})
    # Only when absent: the namespace controller empties the list through /finalize.
    if isinstance(spec, dict) and spec.get("finalizers") is None:
        spec["finalizers"] = ["kubernetes"]
    status = obj.setdefault("status", {})
    if isinstance(status, dict) and not status.get("phase"):
        status["phase"] = "Active"


def namespace_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, False, dns1123_label_errors)
    spec = _top(obj, "spec", errs)
    path = Path("spec", "finalizers")
    for i, finalizer in enumerate(get_list(spec, "finalizers", Path("spec"), errs)):
        if not isinstance(finalizer, str):
            errs.append(wrong_type(path.index(i), finalizer, "string"))
            continue
        messages = qualified_name_errors(finalizer)
        errs.extend(invalid(path, finalizer, m) for m in messages)
        if not messages and "/" not in finalizer and finalizer not in _STANDARD_NAMESPACE_FINALIZERS:
            errs.append(invalid(path, finalizer, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def namespace_validate_update(new: dict, old: dict) -> list[FieldError]:
    return namespace_validate(new) + validate_object_meta_update(new, old)


# ---- Node -----------------------------------------------------------------------------------

def node_default(obj: dict) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def node_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, False, dns1123_subdomain_errors)
    path = Path("spec")
    spec = _top(obj, "spec", errs)
    errs.extend(_taint_errors(get_list(spec, "taints", path, errs), path.child("taints")))
    cidrs = get_list(spec, "podCIDRs", path, errs)
    pod_cidr = get_str(spec, "podCIDR", path, errs)
    if pod_cidr and not cidrs:
        cidrs = [pod_cidr]
    for i, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except (TypeError, ValueError):
            errs.append(invalid(path.child("podCIDRs").index(i), cidr,
                                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    status = _top(obj, "status", errs)
    for i, address in dict_items(get_list(status, "addresses", Path("status"), errs), Path("status", "addresses"), errs):
        get_str(address, "address", Path("status", "addresses").index(i), errs)
    return errs


def _taint_errors(taints: list, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in dict_items(taints, path, errs):
        tpath = path.index(i)
        key = get_str(taint, "key", tpath, errs)
        value = get_str(taint, "value", tpath, errs)
        effect = get_str(taint, "effect", tpath, errs)
        errs.extend(invalid(tpath.child("key"), key, m) for m in qualified_name_errors(key))
        messages = label_value_errors(value)
        if messages:
            errs.append(invalid(tpath.child("value"), value, ";".join(messages)))
        if not effect:
            errs.append(required(tpath.child("effect")))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported_ordered(tpath.child("effect"), effect, TAINT_EFFECTS))
        if (key, effect) in seen:
            errs.append(FieldError("Duplicate", str(tpath), taint, "taints must be unique by key and effect pair"))
        seen.add((key, effect))
    return errs


def node_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = node_validate(new) + validate_object_meta_update(new, old)
    old_cidr = (old.get("spec") or {}).get("podCIDR") if isinstance(old.get("spec"), dict) else None
    new_cidr = (new.get("spec") or {}).get("podCIDR") if isinstance(new.get("spec"), dict) else None
    if old_cidr and new_cidr != old_cidr:
        errs.append(invalid(Path("spec", "podCIDR"), new_cidr or "", "node updates may not change podCIDR except "
                                                                    "from \"\" to valid"))
    return errs


# ---- Endpoints ------------------------------------------------------------------------------

def endpoints_default(obj: dict) -> None:
    subsets = obj.get("subsets")
    if not isinstance(subsets, list):
        return
    for subset in subsets:
        ports = subset.get("ports") if isinstance(subset, dict) else None
        if isinstance(ports, list):
            for port in ports:
                if isinstance(port, dict) and not port.get("protocol"):
                    port["protocol"] = "TCP"


def endpoints_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    path = Path("subsets")
    for i, subset in dict_items(get_list(obj, "subsets", Path(), errs), path, errs):
        spath = path.index(i)
        addresses = get_list(subset, "addresses", spath, errs)
        not_ready = get_list(subset, "notReadyAddresses", spath, errs)
        if not addresses and not not_ready:
            errs.append(required(spath, "must specify `addresses` or `notReadyAddresses`"))
        for key, items in (("addresses", addresses), ("notReadyAddresses", not_ready)):
            for j, address in dict_items(items, spath.child(key), errs):
                errs.extend(_endpoint_address_errors(address, spath.child(key).index(j)))
        ports = get_list(subset, "ports", spath, errs)
        for j, port in dict_items(ports, spath.child("ports"), errs):
            errs.extend(_endpoint_port_errors(port, spath.child("ports").index(j), len(ports) > 1))
    return errs


def _endpoint_address_errors(address: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    errs.extend(_ip_errors(get_str(address, "ip", path, errs), path.child("ip")))
    hostname = get_str(address, "hostname", path, errs)
    if hostname:
        errs.extend(invalid(path.child("hostname"), hostname, m) for m in dns1123_label_errors(hostname))
    node_name = get_str(address, "nodeName", path, errs)
    if node_name:
        errs.extend(invalid(path.child("nodeName"), node_name, m) for m in dns1123_subdomain_errors(node_name))
    get_dict(address, "targetRef", path, errs)
    return errs


def _endpoint_port_errors(port: dict, path: Path, require_name: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = get_str(port, "name", path, errs)
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(invalid(path.child("name"), name, m) for m in dns1123_label_errors(name))
    number = get_int(port, "port", path, errs)
    if not is_wrong_type(port, "port", int):
        errs.extend(port_number_errors(number or 0, path.child("port")))
    protocol_errors(port, path, errs)
    _app_protocol_errors(port, path, errs)
    return errs


def _app_protocol_errors(port: dict, path: Path, errs: list[FieldError]) -> None:
    app_protocol = get_str(port, "appProtocol", path, errs)
    if port.get("appProtocol") is not None and not is_wrong_type(port, "appProtocol", str):
        errs.extend(invalid(path.child("appProtocol"), app_protocol, m) for m in qualified_name_errors(app_protocol))


def endpoints_validate_update(new: dict, old: dict) -> list[FieldError]:
    return endpoints_validate(new) + validate_object_meta_update(new, old)


# ---- EndpointSlice --------------------------------------------------------------------------

def endpointslice_default(obj: dict) -> None:
    ports = obj.get("ports")
    if not isinstance(ports, list):
        return
    for port in ports:
        if isinstance(port, dict):
            # kubectl describe dereferences ports[].name: it must be present, "" when unnamed.
            if port.get("name") is None:
                port["name"] = ""
            if port.get("protocol") is None:
                port["protocol"] = "TCP"


def endpointslice_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    address_type = get_str(obj, "addressType", Path(), errs)
    if not address_type and not is_wrong_type(obj, "addressType", str):
        errs.append(required(Path("addressType")))
    elif address_type and address_type not in ADDRESS_TYPES:
        errs.append(not_supported(Path("addressType"), address_type, ADDRESS_TYPES))
    errs.extend(_slice_endpoint_errors(get_list(obj, "endpoints", Path(), errs), address_type, Path("endpoints")))
    errs.extend(_slice_port_errors(get_list(obj, "ports", Path(), errs), Path("ports")))
    return errs


def _slice_endpoint_errors(endpoints: list, address_type: str, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(endpoints) > MAX_SLICE_ENDPOINTS:
        errs.append(too_many(path, len(endpoints), MAX_SLICE_ENDPOINTS))
    for i, endpoint in dict_items(endpoints, path, errs):
        epath = path.index(i)
        addresses = get_list(endpoint, "addresses", epath, errs)
        apath = epath.child("addresses")
        if not addresses and not is_wrong_type(endpoint, "addresses", list):
            errs.append(required(apath, "must contain at least 1 address"))
        elif len(addresses) > MAX_ENDPOINT_ADDRESSES:
            errs.append(too_many(apath, len(addresses), MAX_ENDPOINT_ADDRESSES))
        for j, address in enumerate(addresses):
            errs.extend(_slice_address_errors(address, address_type, apath.index(j)))
        node_name = get_str(endpoint, "nodeName", epath, errs)
        if node_name:
            errs.extend(invalid(epath.child("nodeName"), node_name, m) for m in dns1123_subdomain_errors(node_name))
        hostname = get_str(endpoint, "hostname", epath, errs)
        if hostname:
            errs.extend(invalid(epath.child("hostname"), hostname, m) for m in dns1123_label_errors(hostname))
        conditions = get_dict(endpoint, "conditions", epath, errs)
        for key in ("ready", "serving", "terminating"):
            value = conditions.get(key)
            if value is not None and not isinstance(value, bool):
                errs.append(wrong_type(epath.child("conditions", key), value, "boolean"))
        errs.extend(validate_labels(endpoint.get("deprecatedTopology"), epath.child("deprecatedTopology")))
        get_dict(endpoint, "targetRef", epath, errs)
    return errs


def _slice_address_errors(address: Any, address_type: str, path: Path) -> list[FieldError]:
    if not isinstance(address, str):
        return [wrong_type(path, address, "string")]
    if address_type == "IPv4":
        return _ip_errors(address, path, 4)
    if address_type == "IPv6":
        return _ip_errors(address, path, 6)
    if address_type == "FQDN":
        return _fqdn_errors(address, path)
    return []


def _fqdn_errors(value: str, path: Path) -> list[FieldError]:
    """IsFullyQualifiedDomainName."""
    name = value.removesuffix(".")
    if not name:
        return [required(path)]
    messages = dns1123_subdomain_errors(name)
    if messages:
        return [invalid(path, value, m) for m in messages]
    if len(name.split(".")) < 2:
        return [invalid(path, value, "should be a domain with at least two segments separated by dots")]
    return [invalid(path, value, m) for label in name.split(".") for m in dns1123_label_errors(label)]


def _slice_port_errors(ports: list, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(ports) > MAX_SLICE_PORTS:
        errs.append(too_many(path, len(ports), MAX_SLICE_PORTS))
    names: set[str] = set()
    for i, port in dict_items(ports, path, errs):
        ppath = path.index(i)
        name = get_str(port, "name", ppath, errs)
        if name:
            errs.extend(invalid(ppath.child("name"), name, m) for m in dns1123_label_errors(name))
        if name in names:
            errs.append(duplicate(ppath.child("name"), name))
        names.add(name)
        number = get_int(port, "port", ppath, errs)
        if number is not None:
            errs.extend(port_number_errors(number, ppath.child("port")))
        protocol = get_str(port, "protocol", ppath, errs)
        if port.get("protocol") is None:
            errs.append(required(ppath.child("protocol")))
        elif protocol and protocol not in PROTOCOLS:
            errs.append(not_supported(ppath.child("protocol"), protocol, PROTOCOLS))
        _app_protocol_errors(port, ppath, errs)
    return errs


def endpointslice_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = endpointslice_validate(new) + validate_object_meta_update(new, old)
    if new.get("addressType") != old.get("addressType"):
        errs.append(invalid(Path("addressType"), new.get("addressType"), IMMUTABLE))
    return errs


# ---- Event ----------------------------------------------------------------------------------

def event_default(obj: dict) -> None:
    """Events carry no v1 defaults."""


def event_validate(obj: dict) -> list[FieldError]:
    """Lenient, like the legacy core/v1 event validation: involvedObject and namespace agreement."""
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    involved = obj.get("involvedObject")
    if involved is None:
        errs.append(required(Path("involvedObject")))
        return errs
    if not isinstance(involved, dict):
        return errs + [wrong_type(Path("involvedObject"), involved, "object")]
    involved_ns = get_str(involved, "namespace", Path("involvedObject"), errs)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    namespace = meta.get("namespace") or ""
    if involved_ns != namespace and (involved_ns or namespace not in ("", "default")):
        errs.append(invalid(Path("involvedObject", "namespace"), involved_ns, "does not match event.namespace"))
    for key in ("reason", "message", "type", "reportingComponent", "reportingInstance", "action"):
        get_str(obj, key, Path(), errs)
    errs.extend(nonnegative(get_int(obj, "count", Path(), errs), Path("count")))
    return errs


def event_validate_update(new: dict, old: dict) -> list[FieldError]:
    return event_validate(new) + validate_object_meta_update(new, old)


# ---- Lease ----------------------------------------------------------------------------------

def lease_default(obj: dict) -> None:
    """Leases carry no v1 defaults."""


def lease_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    path = Path("spec")
    spec = _top(obj, "spec", errs)
    get_str(spec, "holderIdentity", path, errs)
    duration = get_int(spec, "leaseDurationSeconds", path, errs)
    if duration is not None and duration <= 0:
        errs.append(invalid(path.child("leaseDurationSeconds"), duration, "must be greater than 0"))
    errs.extend(nonnegative(get_int(spec, "leaseTransitions", path, errs), path.child("leaseTransitions")))
    for key in ("acquireTime", "renewTime"):
        get_str(spec, key, path, errs)
    return errs


def lease_validate_update(new: dict, old: dict) -> list[FieldError]:
    return lease_validate(new) + validate_object_meta_update(new, old)
