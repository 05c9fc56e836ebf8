"""Service: static defaulting, validation and ClusterIP/NodePort allocation, as Kubernetes does them.

Order of use by the store (mirroring kube-apiserver): default() at decode time, then
ServiceAllocator.allocate_for_create/allocate_for_update (contextual defaults and allocation;
its errors come back alone), then validate()/validate_update(), then the write, after which the
returned Transaction is committed (or reverted when the write fails).

Services arrive as decoded JSON, so every function here tolerates wrong types: a value of the
wrong JSON type is reported as a FieldError on that field (upstream it is a decode error).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

from pocketkube.api.errors import InternalError, Invalid
from pocketkube.api.fields import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from pocketkube.net.errors import AllocationError, RangeFull
from pocketkube.net.ipalloc import IPAddress, IPAllocator
from pocketkube.registry.allocators.portalloc import PortAllocator
from pocketkube.registry.allocators.transaction import Transaction
from pocketkube.registry.strategy import Hooks, Strategy
from pocketkube.registry.validation import (
    IMMUTABLE,
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    is_int,
    port_name_errors,
    qualified_name_errors,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
    wrong_type,
)

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

# ---------------------------------------------------------------------------------------------
# Accessors: after the type check these return the right types; before it they stay harmless.


def _spec(svc: Any) -> dict:
    spec = svc.get("spec") if isinstance(svc, dict) else None
    return spec if isinstance(spec, dict) else {}


def _str(d: dict, key: str) -> str:
    value = d.get(key)
    return value if isinstance(value, str) else ""


def _int(d: dict, key: str) -> int:
    value = d.get(key)
    return value if is_int(value) else 0


def _list(d: dict, key: str) -> list:
    value = d.get(key)
    return value if isinstance(value, list) else []


def _ports(spec: dict) -> list[dict]:
    return [p if isinstance(p, dict) else {} for p in _list(spec, "ports")]


def _name(svc: Any) -> str:
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def _is_headless(spec: dict) -> bool:
    ips = _list(spec, "clusterIPs")
    return len(ips) == 1 and ips[0] == NONE


def externally_accessible(spec: dict) -> bool:
    svc_type = _str(spec, "type")
    return svc_type in (LOAD_BALANCER, NODE_PORT) or (svc_type == CLUSTER_IP and bool(_list(spec, "externalIPs")))


def needs_health_check(spec: dict) -> bool:
    return _str(spec, "type") == LOAD_BALANCER and _str(spec, "externalTrafficPolicy") == "Local"


def _needs_cluster_ip(spec: dict) -> bool:
    return _str(spec, "type") != EXTERNAL_NAME


def _needs_node_port(spec: dict) -> bool:
    return _str(spec, "type") in (NODE_PORT, LOAD_BALANCER)


def _set_or_drop(d: dict, key: str, value: Any) -> None:
    """Zero values are omitted on output (Go's omitempty), so clearing a field removes it."""
    if value in (None, "", 0, []):
        d.pop(key, None)
    else:
        d[key] = value


# ---------------------------------------------------------------------------------------------
# Static defaulting (SetDefaults_Service)


def default(svc: dict) -> None:
    if not isinstance(svc, dict):
        return
    spec = _ensure_spec(svc)
    if not isinstance(spec, dict):
        return
    if spec.get("sessionAffinity") in (None, ""):
        spec["sessionAffinity"] = "None"
    affinity = spec["sessionAffinity"]
    if affinity == "None":
        spec.pop("sessionAffinityConfig", None)
    elif affinity == "ClientIP" and _lacks_client_ip_timeout(spec):
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_TIMEOUT}}
    if spec.get("type") in (None, ""):
        spec["type"] = CLUSTER_IP
    ports = spec.get("ports")
    for port in ports if isinstance(ports, list) else []:
        if isinstance(port, dict):
            _default_port(port)
    if externally_accessible(spec) and spec.get("externalTrafficPolicy") in (None, ""):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in (CLUSTER_IP, NODE_PORT, LOAD_BALANCER):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == LOAD_BALANCER:
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        _default_ingress_ip_mode(svc)
    if svc.get("status") is None:
        svc["status"] = {"loadBalancer": {}}


def _lacks_client_ip_timeout(spec: dict) -> bool:
    """True when config, clientIP or timeoutSeconds is missing (values of a wrong type are left for validate)."""
    config = spec.get("sessionAffinityConfig")
    if not isinstance(config, dict):
        return config is None
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return client_ip is None
    return client_ip.get("timeoutSeconds") is None


def _default_port(port: dict) -> None:
    if port.get("protocol") in (None, ""):
        port["protocol"] = "TCP"
    target = port.get("targetPort")
    if (target is None or target == "" or (is_int(target) and target == 0)) and is_int(port.get("port")):
        port["targetPort"] = port["port"]


def _default_ingress_ip_mode(svc: dict) -> None:
    status = svc.get("status")
    lb = status.get("loadBalancer") if isinstance(status, dict) else None
    ingress = lb.get("ingress") if isinstance(lb, dict) else None
    for entry in ingress if isinstance(ingress, list) else []:
        if isinstance(entry, dict) and entry.get("ip") and entry.get("ipMode") is None:
            entry["ipMode"] = "VIP"


# ---------------------------------------------------------------------------------------------
# JSON type checks: the errors Go's decoder would have raised, reported on the field instead.

_SPEC_STRINGS = ("type", "clusterIP", "externalName", "sessionAffinity", "externalTrafficPolicy",
                 "internalTrafficPolicy", "loadBalancerIP", "loadBalancerClass", "trafficDistribution",
                 "ipFamilyPolicy")
_SPEC_STRING_LISTS = ("clusterIPs", "externalIPs", "loadBalancerSourceRanges", "ipFamilies")
_SPEC_BOOLS = ("publishNotReadyAddresses", "allocateLoadBalancerNodePorts")


def type_errors(svc: Any) -> list[FieldError]:
    if not isinstance(svc, dict):
        return [wrong_type("", svc, "object")]
    spec = svc.get("spec")
    if spec is None:
        return []
    if not isinstance(spec, dict):
        return [wrong_type(SPEC, spec, "object")]
    errs: list[FieldError] = []
    for key in _SPEC_STRINGS:
        errs.extend(_check(spec, key, SPEC, str, "string"))
    for key in _SPEC_BOOLS:
        errs.extend(_check(spec, key, SPEC, bool, "boolean"))
    errs.extend(_check(spec, "healthCheckNodePort", SPEC, int, "integer"))
    for key in _SPEC_STRING_LISTS:
        errs.extend(_check_list(spec, key, SPEC, _string_item_errors))
    errs.extend(_check_list(spec, "ports", SPEC, _port_type_errors))
    errs.extend(_selector_type_errors(spec.get("selector")))
    errs.extend(_affinity_config_type_errors(spec.get("sessionAffinityConfig")))
    return errs


def _check_value(value: Any, path: Path, expected: type, name: str) -> list[FieldError]:
    if value is None:
        return []
    ok = is_int(value) if expected is int else isinstance(value, expected)
    return [] if ok else [wrong_type(path, value, name)]


def _check(d: dict, key: str, path: Path, expected: type, name: str) -> list[FieldError]:
    value = d.get(key)
    if value is None or (is_int(value) if expected is int else isinstance(value, expected)):
        return []  # the common case builds no field path
    return [wrong_type(path.child(key), value, name)]


def _check_list(d: dict, key: str, path: Path, check_item: Any) -> list[FieldError]:
    items = d.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        return [wrong_type(path.child(key), items, "array")]
    errs: list[FieldError] = []
    for i, item in enumerate(items):
        errs.extend(check_item(item, path.child(key).index(i)))
    return errs


def _string_item_errors(item: Any, path: Path) -> list[FieldError]:
    return [] if isinstance(item, str) else [wrong_type(path, item, "string")]


def _port_type_errors(port: Any, path: Path) -> list[FieldError]:
    if not isinstance(port, dict):
        return [wrong_type(path, port, "object")]
    errs: list[FieldError] = []
    for key in ("name", "protocol", "appProtocol"):
        errs.extend(_check(port, key, path, str, "string"))
    for key in ("port", "nodePort"):
        errs.extend(_check(port, key, path, int, "integer"))
    target = port.get("targetPort")
    if target is not None and not (is_int(target) or isinstance(target, str)):
        errs.append(wrong_type(path.child("targetPort"), target, "integer or string"))
    return errs


def _selector_type_errors(selector: Any) -> list[FieldError]:
    path = SPEC.child("selector")
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [wrong_type(path, selector, "object")]
    return [wrong_type(path.key(k), v, "string") for k, v in selector.items() if not isinstance(v, str)]


def _affinity_config_type_errors(config: Any) -> list[FieldError]:
    path = SPEC.child("sessionAffinityConfig")
    if config is None:
        return []
    if not isinstance(config, dict):
        return [wrong_type(path, config, "object")]
    client_ip = config.get("clientIP")
    if client_ip is None:
        return []
    if not isinstance(client_ip, dict):
        return [wrong_type(path.child("clientIP"), client_ip, "object")]
    return _check(client_ip, "timeoutSeconds", path.child("clientIP"), int, "integer")


# ---------------------------------------------------------------------------------------------
# IP parsing, as Go's (sloppy) net.ParseIP: IPv4 octets may carry leading zeros.

_SLOPPY_V4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")


def parse_ip(value: str) -> IPAddress | None:
    if not isinstance(value, str) or "%" in value:
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        match = _SLOPPY_V4.fullmatch(value)
        if not match or any(int(octet) > 255 for octet in match.groups()):
            return None
        return ipaddress.IPv4Address(".".join(str(int(octet)) for octet in match.groups()))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # Go treats IPv4-mapped IPv6 addresses as IPv4
    return ip


def _family_of(ip: str) -> str | None:
    parsed = parse_ip(ip)
    if parsed is None:
        return None
    return "IPv4" if parsed.version == 4 else "IPv6"


def _is_cidr(value: str) -> bool:
    ip_part, sep, prefix = value.partition("/")
    ip = parse_ip(ip_part)
    if not sep or ip is None or not re.fullmatch(r"[0-9]+", prefix):
        return False
    return int(prefix) <= (32 if ip.version == 4 else 128)


def _ip_errors(path: Path, value: str, valid_old: list) -> list[FieldError]:
    """IsValidIPForLegacyField: values already stored in the old object stay accepted."""
    if value in valid_old or parse_ip(value) is not None:
        return []
    return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]


def _cidr_errors(path: Path, value: str, valid_old: list) -> list[FieldError]:
    if value in valid_old or _is_cidr(value):
        return []
    return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]


def _non_special_ip_errors(path: Path, value: str) -> list[FieldError]:
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if ip in ipaddress.ip_network("224.0.0.0/24") or (ip.version == 6 and (int(ip) >> 112) & 0xff0f == 0xff02):
        errs.append(invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


# ---------------------------------------------------------------------------------------------
# Validation (ValidateService and friends, in upstream order)


def validate(svc: dict) -> list[FieldError]:
    if type_errors(svc):
        return _validate(svc, None)
    # Normalizing assigns top-level spec keys only, so a copy of the two outer dicts is enough
    # (a deep copy was the largest single cost of a Service create).
    prepared = dict(svc)
    prepared["spec"] = dict(svc.get("spec") or {})
    _normalize_cluster_ips(prepared["spec"], None)
    return _validate(prepared, None)


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(new, old)
    shape = type_errors(new)
    if shape:
        return errs + validate_object_meta(new, True, dns1035_label_errors) + shape
    new = _prepared_update(new, old)
    new_spec, old_spec = _spec(new), _spec(old)
    errs.extend(_upgrade_downgrade_cluster_ips(new_spec, old_spec))
    errs.extend(_upgrade_downgrade_ip_families(new_spec, old_spec))
    errs.extend(_load_balancer_class_errors(new_spec, old_spec))
    if needs_health_check(old_spec) and needs_health_check(new_spec) \
            and _int(new_spec, "healthCheckNodePort") != _int(old_spec, "healthCheckNodePort"):
        errs.append(forbidden(SPEC.child("healthCheckNodePort"), IMMUTABLE))
    return errs + _validate(new, old)


def _prepared_update(new: dict, old: dict) -> dict:
    """The update as Kubernetes validates it: after allocated values are carried over and values that
    no longer apply are dropped. Each step is idempotent, so validating before or after
    ServiceAllocator.allocate_for_update gives the same answer."""
    new = copy.deepcopy(new)
    spec, old_spec = _ensure_spec(new), _spec(old)
    _patch_allocated_values(spec, old_spec)
    _normalize_cluster_ips(spec, old_spec)
    if _needs_cluster_ip(spec) and spec.get("ipFamilyPolicy") is None and old_spec.get("ipFamilyPolicy") is not None:
        spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
    _drop_type_dependent_fields(new, old)
    return new


def _validate(svc: dict, old: dict | None) -> list[FieldError]:
    errs = validate_object_meta(svc, True, dns1035_label_errors)
    shape = type_errors(svc)
    if shape:
        return errs + shape
    spec, old_spec = _spec(svc), (_spec(old) if old is not None else None)
    errs.extend(_topology_annotation_errors(svc))
    errs.extend(_type_specific_errors(spec))
    errs.extend(_all_ports_errors(spec))
    if spec.get("selector") is not None:
        errs.extend(validate_labels(spec["selector"], SPEC.child("selector")))
    errs.extend(_session_affinity_errors(spec))
    errs.extend(cluster_ips_related_errors(spec, old_spec))
    errs.extend(_external_ips_errors(spec, old_spec))
    errs.extend(_service_type_errors(spec))
    errs.extend(_node_port_errors(spec))
    errs.extend(_source_range_errors(svc, old))
    errs.extend(_allocate_lb_node_ports_errors(spec))
    errs.extend(_load_balancer_class_errors(spec, None))
    errs.extend(_external_traffic_errors(spec))
    errs.extend(_internal_traffic_errors(spec))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported(SPEC.child("trafficDistribution"), distribution, TRAFFIC_DISTRIBUTIONS))
    return errs


def _topology_annotation_errors(svc: dict) -> list[FieldError]:
    annotations = svc.get("metadata", {}).get("annotations") if isinstance(svc.get("metadata"), dict) else None
    if not isinstance(annotations, dict):
        return []
    mode, hints = annotations.get(TOPOLOGY_MODE_ANNOTATION), annotations.get(TOPOLOGY_HINTS_ANNOTATION)
    if mode is not None and hints is not None and mode != hints:
        path = Path("metadata", "annotations").key(TOPOLOGY_MODE_ANNOTATION)
        return [invalid(path, mode, f"must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified")]
    return []


def _type_specific_errors(spec: dict) -> list[FieldError]:
    svc_type, headless = _str(spec, "type"), _is_headless(spec)
    errs: list[FieldError] = []
    if not _list(spec, "ports") and not headless and svc_type != EXTERNAL_NAME:
        errs.append(required(PORTS))
    if svc_type in (LOAD_BALANCER, NODE_PORT) and headless:
        errs.append(invalid(CLUSTER_IPS.index(0), NONE, f"may not be set to 'None' for {svc_type} services"))
    if svc_type == EXTERNAL_NAME:
        for key in ("clusterIPs", "ipFamilies"):
            if _list(spec, key):
                errs.append(forbidden(SPEC.child(key), "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden(SPEC.child("ipFamilyPolicy"), "may not be set for ExternalName services"))
        # A trailing dot marks the name fully qualified; it is not part of the DNS name.
        cname = _str(spec, "externalName").removesuffix(".")
        if cname:
            errs.extend(invalid(SPEC.child("externalName"), cname, m) for m in dns1123_subdomain_errors(cname))
        else:
            errs.append(required(SPEC.child("externalName")))
    return errs


def _all_ports_errors(spec: dict) -> list[FieldError]:
    ports = _ports(spec)
    seen_names: set[str] = set()
    errs: list[FieldError] = []
    for i, port in enumerate(ports):
        errs.extend(_port_errors(port, len(ports) > 1, seen_names, PORTS.index(i)))
    return errs


def _port_errors(port: dict, require_name: bool, seen_names: set[str], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = _str(port, "name")
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(invalid(path.child("name"), name, m) for m in dns1123_label_errors(name))
        if name in seen_names:
            errs.append(duplicate(path.child("name"), name))
        seen_names.add(name)
    number = _int(port, "port")
    if not 1 <= number <= 65535:
        errs.append(invalid(path.child("port"), number, PORT_RANGE_MSG))
    protocol = _str(port, "protocol")
    if not protocol:
        errs.append(required(path.child("protocol")))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))
    errs.extend(_target_port_errors(port.get("targetPort"), path.child("targetPort")))
    if port.get("appProtocol") is not None:
        app_protocol = port["appProtocol"]
        errs.extend(invalid(path.child("appProtocol"), app_protocol, m) for m in qualified_name_errors(app_protocol))
    return errs


def _target_port_errors(target: Any, path: Path) -> list[FieldError]:
    if isinstance(target, str):
        return [invalid(path, target, m) for m in port_name_errors(target)]
    number = target if is_int(target) else 0
    return [] if 1 <= number <= 65535 else [invalid(path, number, PORT_RANGE_MSG)]


def _session_affinity_errors(spec: dict) -> list[FieldError]:
    path = SPEC.child("sessionAffinity")
    affinity = _str(spec, "sessionAffinity")
    errs: list[FieldError] = []
    if not affinity:
        errs.append(required(path))
    elif affinity not in SESSION_AFFINITIES:
        errs.append(not_supported(path, affinity, SESSION_AFFINITIES))
    config_path = SPEC.child("sessionAffinityConfig")
    if affinity == "ClientIP":
        errs.extend(_client_ip_config_errors(spec.get("sessionAffinityConfig"), config_path))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden(config_path, "must not be set when session affinity is None"))
    return errs


def _client_ip_config_errors(config: dict | None, path: Path) -> list[FieldError]:
    if config is None:
        return [required(path, CLIENT_IP_REQUIRED)]
    client_ip = config.get("clientIP")
    if client_ip is None:
        return [required(path.child("clientIP"), CLIENT_IP_REQUIRED)]
    timeout_path = path.child("clientIP", "timeoutSeconds")
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return [required(timeout_path, CLIENT_IP_REQUIRED)]
    if not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT:
        return [invalid(timeout_path, timeout, f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}")]
    return []


def cluster_ips_related_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields (skipped for ExternalName, whose fields must be unset)."""
    if _str(spec, "type") == EXTERNAL_NAME:
        return []
    errs: list[FieldError] = []
    cluster_ip, ips, families = _str(spec, "clusterIP"), _list(spec, "clusterIPs"), _list(spec, "ipFamilies")
    if cluster_ip:
        if not ips:
            errs.append(required(CLUSTER_IPS))
        elif ips[0] != cluster_ip:
            errs.append(invalid(CLUSTER_IPS, ips, "first value must match `clusterIP`"))
    elif ips:
        errs.append(invalid(CLUSTER_IPS, ips, "must be empty when `clusterIP` is not specified"))
    errs.extend(_ip_families_errors(families))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported(SPEC.child("ipFamilyPolicy"), policy, IP_FAMILY_POLICIES))
    ip_errs = _cluster_ip_values_errors(ips, _list(old_spec, "clusterIPs") if old_spec else [])
    errs.extend(ip_errs)
    if len(ips) > 2:
        errs.append(invalid(CLUSTER_IPS, ips, "may only hold up to 2 values"))
    if ip_errs:
        return errs  # further checks would only restate a bad IP
    if len(ips) > 1 and len({_family_of(ip) for ip in ips}) < 2:
        errs.append(invalid(CLUSTER_IPS, ips, "may specify no more than one IP for each IP family"))
    if not _is_headless(spec) and ips and families:
        for i, (ip, family) in enumerate(zip(ips, families)):
            actual = _family_of(ip)
            if family in IP_FAMILIES and actual is not None and actual != family:
                errs.append(invalid(CLUSTER_IPS.index(i), ip,
                                    f"expected an {family} value as indicated by `ipFamilies[{i}]`"))
    return errs


def _ip_families_errors(families: list) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, family in enumerate(families):
        path = SPEC.child("ipFamilies").index(i)
        if family not in IP_FAMILIES:
            errs.append(not_supported(path, family, IP_FAMILIES))
        if family in seen:
            errs.append(duplicate(path, family))
        seen.add(family)
    return errs


def _cluster_ip_values_errors(ips: list, old_ips: list) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ip in enumerate(ips):
        if i == 0 and ip == NONE:
            if len(ips) > 1:
                errs.append(invalid(CLUSTER_IPS, ips, "'None' must be the first and only value"))
            continue
        errs.extend(_ip_errors(CLUSTER_IPS.index(i), ip, old_ips))
    return errs


def _external_ips_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    old_ips = _list(old_spec, "externalIPs") if old_spec else []
    errs: list[FieldError] = []
    for i, ip in enumerate(_list(spec, "externalIPs")):
        path = SPEC.child("externalIPs").index(i)
        ip_errs = _ip_errors(path, ip, old_ips)
        errs.extend(ip_errs or _non_special_ip_errors(path, ip))
    return errs


def _service_type_errors(spec: dict) -> list[FieldError]:
    svc_type = _str(spec, "type")
    if not svc_type:
        return [required(SPEC.child("type"))]
    if svc_type not in SERVICE_TYPES:
        return [not_supported(SPEC.child("type"), svc_type, SERVICE_TYPES)]
    return []


def _node_port_errors(spec: dict) -> list[FieldError]:
    ports = _ports(spec)
    errs: list[FieldError] = []
    if _str(spec, "type") == CLUSTER_IP:
        errs.extend(forbidden(PORTS.index(i).child("nodePort"), "may not be used when `type` is 'ClusterIP'")
                    for i, port in enumerate(ports) if _int(port, "nodePort"))
    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (_str(port, "protocol"), _int(port, "nodePort"))
        if not key[1]:
            continue
        if key in seen_node_ports:
            errs.append(duplicate(PORTS.index(i).child("nodePort"), key[1]))
        seen_node_ports.add(key)
    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (_str(port, "protocol"), _int(port, "port"))
        if key in seen_ports:
            # Upstream renders its internal ServicePort key struct (Go field names, no json tags).
            errs.append(duplicate(PORTS.index(i), {"Name": "", "Protocol": key[0], "AppProtocol": None,
                                                   "Port": key[1], "TargetPort": 0, "NodePort": 0}))
        seen_ports.add(key)
    return errs


def _source_range_errors(svc: dict, old: dict | None) -> list[FieldError]:
    spec, old_spec = _spec(svc), _spec(old)
    is_lb = _str(spec, "type") == LOAD_BALANCER
    ranges = _list(spec, "loadBalancerSourceRanges")
    errs: list[FieldError] = []
    if ranges:
        path = SPEC.child("LoadBalancerSourceRanges")  # sic: upstream's capital L
        if not is_lb:
            errs.append(forbidden(path, ONLY_LOAD_BALANCER))
        existing = [r.strip() for r in _list(old_spec, "loadBalancerSourceRanges") if isinstance(r, str)]
        for i, value in enumerate(ranges):
            errs.extend(_cidr_errors(path.index(i), value.strip(), existing))
        return errs
    annotation, old_annotation = _annotation(svc, SOURCE_RANGES_ANNOTATION), _annotation(old, SOURCE_RANGES_ANNOTATION)
    if annotation is None:
        return errs
    path = Path("metadata", "annotations").key(SOURCE_RANGES_ANNOTATION)
    if not is_lb:
        errs.append(forbidden(path, ONLY_LOAD_BALANCER))
    if annotation != old_annotation and annotation.strip():
        for value in annotation.strip().split(","):
            errs.extend(_cidr_errors(path, value.strip(), []))
    return errs


def _annotation(svc: dict | None, key: str) -> str | None:
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    value = annotations.get(key) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def _allocate_lb_node_ports_errors(spec: dict) -> list[FieldError]:
    is_lb, value = _str(spec, "type") == LOAD_BALANCER, spec.get("allocateLoadBalancerNodePorts")
    if value is not None and not is_lb:
        return [forbidden(SPEC.child("allocateLoadBalancerNodePorts"), ONLY_LOAD_BALANCER)]
    if is_lb and value is None:
        return [required(Path("allocateLoadBalancerNodePorts"))]  # sic: upstream omits "spec."
    return []


def _load_balancer_class_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    path = SPEC.child("loadBalancerClass")
    lb_class, is_lb = spec.get("loadBalancerClass"), _str(spec, "type") == LOAD_BALANCER
    errs: list[FieldError] = []
    if old_spec is not None and _str(old_spec, "type") == LOAD_BALANCER and is_lb \
            and old_spec.get("loadBalancerClass") != lb_class:
        errs.append(invalid(path, lb_class, "may not change once set"))
    if is_lb and lb_class is not None:
        errs.extend(invalid(path, lb_class, m) for m in qualified_name_errors(lb_class))
    elif not is_lb and lb_class is not None:
        errs.append(forbidden(path, ONLY_LOAD_BALANCER))
    return errs


def _external_traffic_errors(spec: dict) -> list[FieldError]:
    policy_path, hc_path = SPEC.child("externalTrafficPolicy"), SPEC.child("healthCheckNodePort")
    policy = _str(spec, "externalTrafficPolicy")
    errs: list[FieldError] = []
    if not externally_accessible(spec):
        if policy:
            errs.append(invalid(policy_path, policy, "may only be set for externally-accessible services"))
    elif not policy:
        errs.append(required(policy_path))
    elif policy not in TRAFFIC_POLICIES:
        errs.append(not_supported(policy_path, policy, TRAFFIC_POLICIES))
    hc_port = _int(spec, "healthCheckNodePort")
    if not needs_health_check(spec):
        if hc_port:
            errs.append(invalid(hc_path, hc_port,
                                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif not hc_port:
        errs.append(required(hc_path))
    elif not 1 <= hc_port <= 65535:
        errs.append(invalid(hc_path, hc_port, PORT_RANGE_MSG))
    return errs


def _internal_traffic_errors(spec: dict) -> list[FieldError]:
    path, policy = SPEC.child("internalTrafficPolicy"), spec.get("internalTrafficPolicy")
    if policy is None:
        return [required(path)] if _str(spec, "type") in (CLUSTER_IP, NODE_PORT, LOAD_BALANCER) else []
    return [] if policy in TRAFFIC_POLICIES else [not_supported(path, policy, TRAFFIC_POLICIES)]


def _upgrade_downgrade_cluster_ips(spec: dict, old_spec: dict) -> list[FieldError]:
    if EXTERNAL_NAME in (_str(spec, "type"), _str(old_spec, "type")):
        return []
    if _is_headless(spec) and _is_headless(old_spec):
        return []
    old_ips, new_ips = _list(old_spec, "clusterIPs"), _list(spec, "clusterIPs")
    errs: list[FieldError] = []
    if len(old_ips) == len(new_ips):
        errs.extend(invalid(CLUSTER_IPS.index(i), new_ips, "may not change once set")
                    for i, ip in enumerate(old_ips) if ip != new_ips[i])
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid(CLUSTER_IPS.index(0), new_ips, "primary clusterIP can not be unset"))
        elif new_ips[0] != old_ips[0]:
            errs.append(invalid(CLUSTER_IPS.index(0), new_ips, "may not change once set"))
        if len(new_ips) == 1 and spec.get("ipFamilyPolicy") != SINGLE_STACK:
            errs.append(invalid(SPEC.child("ipFamilyPolicy"), spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary clusterIP"))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(invalid(CLUSTER_IPS.index(0), new_ips, "may not change once set"))
    return errs


def _upgrade_downgrade_ip_families(spec: dict, old_spec: dict) -> list[FieldError]:
    if EXTERNAL_NAME in (_str(spec, "type"), _str(old_spec, "type")):
        return []
    if _is_headless(spec) or _is_headless(old_spec):
        return []
    old_families, new_families = _list(old_spec, "ipFamilies"), _list(spec, "ipFamilies")
    path = SPEC.child("ipFamilies").index(0)
    errs: list[FieldError] = []
    if len(old_families) == len(new_families):
        errs.extend(invalid(path, new_families, "may not change once set")
                    for i, family in enumerate(old_families) if family != new_families[i])
    elif len(old_families) > len(new_families):
        if not _list(spec, "clusterIPs"):
            errs.append(invalid(path, new_families, "primary ipFamily can not be unset"))
        if new_families and new_families[0] != old_families[0]:
            errs.append(invalid(path, _list(spec, "clusterIPs"), "may not change once set"))
        if len(new_families) == 1 and spec.get("ipFamilyPolicy") != SINGLE_STACK:
            errs.append(invalid(SPEC.child("ipFamilyPolicy"), spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif old_families and new_families[0] != old_families[0]:
        errs.append(invalid(path, _list(spec, "clusterIPs"), "may not change once set"))
    return errs


# ---------------------------------------------------------------------------------------------
# Contextual defaulting before allocation (storage.go, alloc.go, strategy.go)


def _normalize_cluster_ips(spec: dict, old_spec: dict | None) -> None:
    """Keep the singular clusterIP and the plural clusterIPs in step, as old and new clients expect."""
    cluster_ip, ips = _str(spec, "clusterIP"), _list(spec, "clusterIPs")
    if old_spec is None:
        if cluster_ip and not ips:
            spec["clusterIPs"] = [cluster_ip]
        return
    old_ip, old_ips = _str(old_spec, "clusterIP"), _list(old_spec, "clusterIPs")
    if old_ips and not ips and old_ip == cluster_ip:
        spec["clusterIPs"] = list(old_ips)  # an old client that does not know clusterIPs
    if old_ip != cluster_ip and _list(spec, "clusterIPs") == old_ips:
        if old_ip and not cluster_ip:
            spec.pop("clusterIPs", None)
        else:
            spec["clusterIPs"] = [cluster_ip]


def _patch_allocated_values(spec: dict, old_spec: dict) -> None:
    """Re-applied manifests usually omit allocated values: carry them over from the stored object."""
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not _str(spec, "clusterIP") and _str(old_spec, "clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not _list(spec, "clusterIPs") and _list(old_spec, "clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        in_both = _node_port_set(old_spec) & _node_port_set(spec)
        by_name = {_str(p, "name"): _int(p, "nodePort") for p in _ports(old_spec)}
        for port in _list(spec, "ports"):
            old_value = by_name.get(_str(port, "name"), 0)
            if not _int(port, "nodePort") and old_value and old_value not in in_both:
                port["nodePort"] = old_value
    if needs_health_check(old_spec) and needs_health_check(spec) and not _int(spec, "healthCheckNodePort"):
        _set_or_drop(spec, "healthCheckNodePort", _int(old_spec, "healthCheckNodePort"))


def _node_port_set(spec: dict) -> set[int]:
    return {_int(p, "nodePort") for p in _ports(spec) if _int(p, "nodePort")}


def _node_ports_in_order(spec: dict) -> list[int]:
    return list(dict.fromkeys(_int(p, "nodePort") for p in _ports(spec) if _int(p, "nodePort")))


def _drop_type_dependent_fields(svc: dict, old: dict) -> None:
    """strategy.go dropTypeDependentFields: wipe values that no longer apply, unless the user changed them."""
    spec, old_spec = _spec(svc), _spec(old)
    if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(spec):
        if _list(spec, "clusterIPs") == _list(old_spec, "clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if _list(spec, "ipFamilies") == _list(old_spec, "ipFamilies"):
            spec.pop("ipFamilies", None)
        if spec.get("ipFamilyPolicy") == old_spec.get("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if _needs_node_port(old_spec) and not _needs_node_port(spec) and _node_port_set(spec) <= _node_port_set(old_spec):
        for port in _list(spec, "ports"):
            if isinstance(port, dict):
                port.pop("nodePort", None)
    if needs_health_check(old_spec) and not needs_health_check(spec) \
            and _int(spec, "healthCheckNodePort") == _int(old_spec, "healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    leaving_lb = _str(old_spec, "type") == LOAD_BALANCER and _str(spec, "type") != LOAD_BALANCER
    if leaving_lb:
        alloc_old, alloc_new = old_spec.get("allocateLoadBalancerNodePorts"), spec.get("allocateLoadBalancerNodePorts")
        if alloc_old is not None and alloc_old == alloc_new:
            spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if externally_accessible(old_spec) and not externally_accessible(spec) \
            and spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if _str(spec, "type") != LOAD_BALANCER and isinstance(svc.get("status"), dict):
        svc["status"]["loadBalancer"] = {}


def _is_matching_prefer_dual_stack(spec: dict, old_spec: dict | None) -> bool:
    """An unchanged PreferDualStack service is never auto-upgraded or downgraded."""
    return (old_spec is not None and _str(old_spec, "type") == _str(spec, "type")
            and old_spec.get("ipFamilyPolicy") == PREFER_DUAL_STACK == spec.get("ipFamilyPolicy")
            and _list(old_spec, "clusterIPs") == _list(spec, "clusterIPs")
            and _list(old_spec, "ipFamilies") == _list(spec, "ipFamilies"))


# ---------------------------------------------------------------------------------------------
# Allocation


class ServiceAllocator:
    """ClusterIPs from one IPv4 (or IPv6) CIDR and NodePorts from one range shared by all protocols."""

    def __init__(self, service_cidr: str = "127.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.ips = IPAllocator(service_cidr)
        self.node_ports = PortAllocator(*node_port_range)
        self.family = self.ips.family

    def first_ip(self) -> str:
        return self.ips.first_ip()

    def used_node_ports(self) -> int:
        return self.node_ports.used()

    def free_node_ports(self) -> int:
        return self.node_ports.free()

    def used_cluster_ips(self) -> int:
        return self.ips.used()

    def free_cluster_ips(self) -> int:
        return self.ips.free()

    # -- create / update / delete ----------------------------------------------------------

    def allocate_for_create(self, svc: dict) -> Transaction:
        _raise_on_type_errors(svc)
        spec = _ensure_spec(svc)
        _normalize_cluster_ips(spec, None)
        txn = Transaction()
        try:
            self._init_ip_family_fields(svc, None)
            self._alloc_cluster_ips(svc, txn)
            if _needs_node_port(spec):
                self._init_node_ports(svc, txn)
            if needs_health_check(spec):
                self._alloc_health_check_node_port(spec, txn)
        except Exception:
            txn.revert()
            raise
        return txn

    def allocate_for_update(self, new: dict, old: dict) -> Transaction:
        _raise_on_type_errors(new)
        spec, old_spec = _ensure_spec(new), _spec(old)
        _patch_allocated_values(spec, old_spec)
        _normalize_cluster_ips(spec, old_spec)
        txn = Transaction()
        try:
            self._init_ip_family_fields(new, old_spec)
            self._update_cluster_ips(new, old_spec, txn)
            self._update_node_ports(new, old_spec, txn)
            self._update_health_check_node_port(spec, old_spec, txn)
        except Exception:
            txn.revert()
            raise
        _drop_type_dependent_fields(new, old)
        return txn

    def release(self, svc: dict) -> None:
        spec = _spec(svc)
        for ip in self._owned_ips(spec):
            self.ips.release(ip)
        for port in _node_ports_in_order(spec):
            self.node_ports.release(port)
        if needs_health_check(spec) and _int(spec, "healthCheckNodePort"):
            self.node_ports.release(_int(spec, "healthCheckNodePort"))

    def rebuild(self, services: list[dict]) -> list[str]:
        """Forget everything, then mark what stored services hold; report conflicts (the repair loop)."""
        self.ips = IPAllocator(str(self.ips.network))
        self.node_ports = PortAllocator(self.node_ports.base, self.node_ports.base + self.node_ports.size - 1)
        problems: list[str] = []
        for svc in services:
            spec, who = _spec(svc), _describe(svc)
            for ip in self._owned_ips(spec):
                problems.extend(f"{who}: {p}" for p in self._mark_ip(ip))
            ports = _node_ports_in_order(spec)
            if needs_health_check(spec) and _int(spec, "healthCheckNodePort"):
                ports.append(_int(spec, "healthCheckNodePort"))
            for port in ports:
                problems.extend(f"{who}: {p}" for p in self._mark_port(port))
        return problems

    def _mark_ip(self, ip: IPAddress) -> list[str]:
        try:
            self.ips.allocate(ip)
        except AllocationError as err:
            if self.ips.has(ip):
                return [f"Cluster IP {ip} was assigned to multiple services; please recreate service"]
            return [f"Cluster IP {ip} is not within the service CIDR {self.ips.network}; please recreate service "
                    f"({err})"]
        return []

    def _mark_port(self, port: int) -> list[str]:
        try:
            self.node_ports.allocate(port)
        except AllocationError:
            if self.node_ports.has(port):
                return [f"Port {port} was assigned to multiple services; please recreate service"]
            return [f"Port {port} is not within the port range {self.node_ports.range_str()}; please recreate service"]
        return []

    def _owned_ips(self, spec: dict) -> list[IPAddress]:
        if not _needs_cluster_ip(spec) or _is_headless(spec):
            return []
        parsed = [parse_ip(ip) for ip in _list(spec, "clusterIPs") or [_str(spec, "clusterIP")]]
        return [ip for ip in parsed if ip is not None and ip.version == self.ips.network.version]

    # -- IP families and cluster IPs -------------------------------------------------------

    def _init_ip_family_fields(self, svc: dict, old_spec: dict | None) -> None:
        spec, name = _spec(svc), _name(svc)
        if _str(spec, "type") == EXTERNAL_NAME or _is_matching_prefer_dual_stack(spec, old_spec):
            return
        if spec.get("ipFamilyPolicy") is None:
            if old_spec is not None and old_spec.get("ipFamilyPolicy") is not None:
                spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
            elif _str(spec, "clusterIP") == NONE and not spec.get("selector"):
                spec["ipFamilyPolicy"] = REQUIRE_DUAL_STACK  # headless and selectorless
            else:
                spec["ipFamilyPolicy"] = SINGLE_STACK
        early = cluster_ips_related_errors(spec, old_spec)
        if early:
            raise Invalid(KIND, name, early)
        errs = self._policy_errors(spec, old_spec)
        families = list(_list(spec, "ipFamilies"))
        for i, ip in enumerate(_list(spec, "clusterIPs")):
            if ip == NONE:
                break
            family = _family_of(ip)
            if i >= len(families):
                if family != self.family:
                    errs.append(invalid(CLUSTER_IPS.index(i), spec["clusterIPs"],
                                        f"{family} is not configured on this cluster"))
                else:
                    families.append(family)
        if errs:
            raise Invalid(KIND, name, errs)
        spec["ipFamilies"] = families
        if _str(spec, "clusterIP") == NONE and not spec.get("selector"):
            if not families:
                families.append(self.family)
            if len(families) < 2 and spec["ipFamilyPolicy"] != SINGLE_STACK:
                families.append("IPv6" if families[0] == "IPv4" else "IPv4")
            return
        if spec["ipFamilyPolicy"] == REQUIRE_DUAL_STACK:
            errs.append(invalid(SPEC.child("ipFamilyPolicy"), REQUIRE_DUAL_STACK,
                                "this cluster is not configured for dual-stack services"))
        errs.extend(invalid(SPEC.child("ipFamilies").index(i), family, "not configured on this cluster")
                    for i, family in enumerate(families) if family != self.family)
        if errs:
            raise Invalid(KIND, name, errs)
        if not families:
            families.append(self.family)

    def _policy_errors(self, spec: dict, old_spec: dict | None) -> list[FieldError]:
        policy, ips, families = spec["ipFamilyPolicy"], _list(spec, "clusterIPs"), _list(spec, "ipFamilies")
        path = SPEC.child("ipFamilyPolicy")
        errs: list[FieldError] = []
        if old_spec is not None:
            if policy == SINGLE_STACK:
                # Asking for single-stack while keeping the values is clear intent to drop the secondary.
                if ips == _list(old_spec, "clusterIPs") and len(ips) > 1:
                    spec["clusterIPs"] = ips = ips[:1]
                if families == _list(old_spec, "ipFamilies") and len(families) > 1:
                    spec["ipFamilies"] = families = families[:1]
            else:
                if len(ips) < len(_list(old_spec, "clusterIPs")) and ips:
                    errs.append(invalid(path, policy, "must be 'SingleStack' to release the secondary cluster IP"))
                if len(families) < len(_list(old_spec, "ipFamilies")) and families:
                    errs.append(invalid(path, policy, "must be 'SingleStack' to release the secondary IP family"))
        if policy == SINGLE_STACK:
            if len(ips) == 2:
                errs.append(invalid(path, policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                                                  "cluster IPs are specified"))
            if len(families) == 2:
                errs.append(invalid(path, policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                                                  "IP families are specified"))
        return errs

    def _alloc_cluster_ips(self, svc: dict, txn: Transaction) -> None:
        spec = _spec(svc)
        if _str(spec, "type") == EXTERNAL_NAME or _is_headless(spec):
            return
        ips = spec["clusterIPs"] = list(_list(spec, "clusterIPs"))
        for i, family in enumerate(_list(spec, "ipFamilies")):
            if i >= len(ips):
                ips.append("")
            if family == self.family:
                ips[i] = self._alloc_ip(ips[i], svc, txn)
        if ips:
            spec["clusterIP"] = ips[0]

    def _alloc_ip(self, requested: str, svc: dict, txn: Transaction) -> str:
        if not requested:
            try:
                ip = self.ips.allocate_next()
            except RangeFull as err:
                raise InternalError(f"failed to allocate a serviceIP: {err}") from None
        else:
            ip = parse_ip(requested)
            try:
                self.ips.allocate(ip)
            except AllocationError as err:
                raise Invalid(KIND, _name(svc), [invalid(CLUSTER_IPS, _spec(svc)["clusterIPs"],
                                                         f"failed to allocate IP {requested}: {err}")]) from None
        txn.on_revert(lambda: self.ips.release(ip))
        return requested or str(ip)

    def _update_cluster_ips(self, svc: dict, old_spec: dict, txn: Transaction) -> None:
        spec = _spec(svc)
        if _is_matching_prefer_dual_stack(spec, old_spec):
            return
        old_external, new_external = _str(old_spec, "type") == EXTERNAL_NAME, _str(spec, "type") == EXTERNAL_NAME
        if old_external and not new_external:
            self._alloc_cluster_ips(svc, txn)
        elif not old_external and new_external and not _is_headless(old_spec):
            for ip in self._owned_ips(old_spec):
                txn.on_commit(lambda ip=ip: self.ips.release(ip))

    # -- node ports --------------------------------------------------------------------------

    def _alloc_port(self, port: int, txn: Transaction) -> None:
        self.node_ports.allocate(port)
        txn.on_revert(lambda: self.node_ports.release(port))

    def _alloc_next_port(self, txn: Transaction) -> int:
        try:
            port = self.node_ports.allocate_next()
        except RangeFull as err:
            raise InternalError(f"failed to allocate a nodePort: {err}") from None
        txn.on_revert(lambda: self.node_ports.release(port))
        return port

    def _init_node_ports(self, svc: dict, txn: Transaction) -> None:
        """initNodePorts: ports sharing a port number (e.g. 53/TCP and 53/UDP) share one nodePort."""
        spec = _spec(svc)
        ports = _ports(spec)
        by_port_number: dict[int, int] = {}
        for i, port in enumerate(ports):
            node_port = _int(port, "nodePort")
            if not node_port and not _should_allocate_node_ports(spec):
                continue  # only explicit requests are honoured
            number = _int(port, "port")
            shared = by_port_number.get(number, 0)
            if not shared:
                requested = next((_int(p, "nodePort") for p in ports
                                  if _int(p, "port") == number and _int(p, "nodePort")), 0)
                if requested:
                    self._alloc_requested_port(requested, i, svc, txn)
                    port["nodePort"] = requested
                else:
                    port["nodePort"] = self._alloc_next_port(txn)
                by_port_number[number] = port["nodePort"]
            elif node_port != shared:
                if not node_port:
                    port["nodePort"] = shared
                else:
                    self._alloc_requested_port(node_port, i, svc, txn)

    def _alloc_requested_port(self, node_port: int, index: int, svc: dict, txn: Transaction) -> None:
        try:
            self._alloc_port(node_port, txn)
        except AllocationError as err:
            path = PORTS.index(index).child("nodePort")
            raise Invalid(KIND, _name(svc), [invalid(path, node_port, str(err))]) from None

    def _alloc_health_check_node_port(self, spec: dict, txn: Transaction) -> None:
        requested = _int(spec, "healthCheckNodePort")
        if requested:
            try:
                self._alloc_port(requested, txn)
            except AllocationError as err:
                raise InternalError(f"failed to allocate requested HealthCheck NodePort {requested}: {err}") from None
            return
        try:
            port = self.node_ports.allocate_next()
        except RangeFull as err:
            raise InternalError(f"failed to allocate a HealthCheck NodePort 0: {err}") from None
        txn.on_revert(lambda: self.node_ports.release(port))
        spec["healthCheckNodePort"] = port

    def _update_node_ports(self, svc: dict, old_spec: dict, txn: Transaction) -> None:
        spec = _spec(svc)
        if _needs_node_port(old_spec) and _str(spec, "type") in (CLUSTER_IP, EXTERNAL_NAME):
            for port in _node_ports_in_order(old_spec):
                txn.on_commit(lambda port=port: self.node_ports.release(port))
        if not _needs_node_port(spec):
            return
        old_ports = set(_node_ports_in_order(old_spec))
        allocated_now: set[int] = set()
        seen: set[tuple[str, int]] = set()
        for i, port in enumerate(_ports(spec)):
            node_port = _int(port, "nodePort")
            if not node_port and not _should_allocate_node_ports(spec):
                continue
            if node_port:
                if node_port not in old_ports and node_port not in allocated_now:
                    self._alloc_requested_port(node_port, i, svc, txn)
                    allocated_now.add(node_port)
            else:
                node_port = port["nodePort"] = self._alloc_next_port(txn)
            key = (_str(port, "protocol"), node_port)
            if key in seen:
                raise InternalError(f"duplicate nodePort: {{{key[0]} {key[1]}}}")
            seen.add(key)
        still_used = set(_node_ports_in_order(spec))
        for port in old_ports - still_used:
            txn.on_commit(lambda port=port: self.node_ports.release(port))

    def _update_health_check_node_port(self, spec: dict, old_spec: dict, txn: Transaction) -> None:
        needed, needs = needs_health_check(old_spec), needs_health_check(spec)
        if not needed and needs:
            self._alloc_health_check_node_port(spec, txn)
        elif needed and not needs and _int(old_spec, "healthCheckNodePort"):
            old_port = _int(old_spec, "healthCheckNodePort")
            txn.on_commit(lambda: self.node_ports.release(old_port))


def _should_allocate_node_ports(spec: dict) -> bool:
    if _str(spec, "type") == NODE_PORT:
        return True
    return _str(spec, "type") == LOAD_BALANCER and spec.get("allocateLoadBalancerNodePorts") is not False


def _ensure_spec(svc: dict) -> dict:
    if svc.get("spec") is None:
        svc["spec"] = {}
    return svc["spec"]


def _raise_on_type_errors(svc: Any) -> None:
    errs = type_errors(svc)
    if errs:
        raise Invalid(KIND, _name(svc), errs)


def _describe(svc: dict) -> str:
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    namespace = meta.get("namespace", "") if isinstance(meta, dict) else ""
    return f"service {namespace}/{_name(svc)}"


# ---------------------------------------------------------------------------------------------
# Strategy: the allocator is the Service kind's hooks, transactional with the write


class AllocationHooks(Hooks):
    """ClusterIP and NodePort allocation, committed or reverted with the Service write."""

    def __init__(self, allocator: ServiceAllocator) -> None:
        self.allocator = allocator

    def before_create(self, obj: dict) -> Transaction:
        return self.allocator.allocate_for_create(obj)

    def before_update(self, new: dict, old: dict) -> Transaction:
        return self.allocator.allocate_for_update(new, old)

    def after_delete(self, obj: dict) -> None:
        self.allocator.release(obj)

    def repair(self, stored: list[dict]) -> list[str]:
        return self.allocator.rebuild(stored)


def strategy(*, service_cidr: str, node_port_range: tuple[int, int]) -> Strategy:
    hooks = AllocationHooks(ServiceAllocator(service_cidr, node_port_range))
    return Strategy(default=default, validate=validate, validate_update=validate_update,
                    returns_deleted_object=True, hooks=hooks)
