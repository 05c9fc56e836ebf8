"""Service validation (ValidateService, ValidateServiceUpdate), with upstream's messages and order.

Two stages. type_errors reports values of the wrong JSON type on their field (upstream these are
decode errors, before validation runs); only a well-typed Service goes on to the field rules,
which can then read it through the accessors of spec.py. The clusterIP/ipFamilies rules live in
ipfamilies.py, next to the family defaulting that shares them.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from pocketkube.api.validation import (
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    is_int,
    port_name_errors,
    qualified_name_errors,
    validate_labels,
    wrong_type,
)
from pocketkube.registry.core.services.ipfamilies import (
    cidr_errors,
    cluster_ips_related_errors,
    ip_errors,
    non_special_ip_errors,
    upgrade_downgrade_cluster_ips,
    upgrade_downgrade_ip_families,
)
from pocketkube.registry.core.services.spec import (
    CLIENT_IP_REQUIRED,
    CLUSTER_IP,
    CLUSTER_IPS,
    EXTERNAL_NAME,
    LOAD_BALANCER,
    MAX_CLIENT_IP_TIMEOUT,
    NODE_PORT,
    NONE,
    ONLY_LOAD_BALANCER,
    PORT_RANGE_MSG,
    PORTS,
    PROTOCOLS,
    SERVICE_TYPES,
    SESSION_AFFINITIES,
    SOURCE_RANGES_ANNOTATION,
    SPEC,
    TOPOLOGY_HINTS_ANNOTATION,
    TOPOLOGY_MODE_ANNOTATION,
    TRAFFIC_DISTRIBUTIONS,
    TRAFFIC_POLICIES,
    externally_accessible,
    int_field,
    is_headless,
    list_field,
    needs_health_check,
    ports_of,
    spec_of,
    str_field,
)
from pocketkube.registry.validation import IMMUTABLE, validate_object_meta

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


def validate_service(svc: dict, old: dict | None) -> list[FieldError]:
    """ValidateService: metadata, then the spec rules in upstream order (old is set on update)."""
    errs = validate_object_meta(svc, True, dns1035_label_errors)
    shape = type_errors(svc)
    if shape:
        return errs + shape
    spec, old_spec = spec_of(svc), (spec_of(old) if old is not None else None)
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


def validate_service_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateServiceUpdate: the update-only rules, then everything validate_service checks.

    `new` must be type-checked and prepared (strategy.py carries allocated values over first).
    """
    new_spec, old_spec = spec_of(new), spec_of(old)
    errs = upgrade_downgrade_cluster_ips(new_spec, old_spec)
    errs.extend(upgrade_downgrade_ip_families(new_spec, old_spec))
    errs.extend(_load_balancer_class_errors(new_spec, old_spec))
    if needs_health_check(old_spec) and needs_health_check(new_spec) \
            and int_field(new_spec, "healthCheckNodePort") != int_field(old_spec, "healthCheckNodePort"):
        errs.append(forbidden(SPEC.child("healthCheckNodePort"), IMMUTABLE))
    return errs + validate_service(new, old)


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
    svc_type, headless = str_field(spec, "type"), is_headless(spec)
    errs: list[FieldError] = []
    if not list_field(spec, "ports") and not headless and svc_type != EXTERNAL_NAME:
        errs.append(required(PORTS))
    if svc_type in (LOAD_BALANCER, NODE_PORT) and headless:
        errs.append(invalid(CLUSTER_IPS.index(0), NONE, f"may not be set to 'None' for {svc_type} services"))
    if svc_type == EXTERNAL_NAME:
        for key in ("clusterIPs", "ipFamilies"):
            if list_field(spec, key):
                errs.append(forbidden(SPEC.child(key), "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden(SPEC.child("ipFamilyPolicy"), "may not be set for ExternalName services"))
        # A trailing dot marks the name fully qualified; it is not part of the DNS name.
        cname = str_field(spec, "externalName").removesuffix(".")
        if cname:
            errs.extend(invalid(SPEC.child("externalName"), cname, m) for m in dns1123_subdomain_errors(cname))
        else:
            errs.append(required(SPEC.child("externalName")))
    return errs


def _all_ports_errors(spec: dict) -> list[FieldError]:
    ports = ports_of(spec)
    seen_names: set[str] = set()
    errs: list[FieldError] = []
    for i, port in enumerate(ports):
        errs.extend(_port_errors(port, len(ports) > 1, seen_names, PORTS.index(i)))
    return errs


def _port_errors(port: dict, require_name: bool, seen_names: set[str], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = str_field(port, "name")
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(invalid(path.child("name"), name, m) for m in dns1123_label_errors(name))
        if name in seen_names:
            errs.append(duplicate(path.child("name"), name))
        seen_names.add(name)
    number = int_field(port, "port")
    if not 1 <= number <= 65535:
        errs.append(invalid(path.child("port"), number, PORT_RANGE_MSG))
    protocol = str_field(port, "protocol")
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
    affinity = str_field(spec, "sessionAffinity")
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


def _external_ips_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    old_ips = list_field(old_spec, "externalIPs") if old_spec else []
    errs: list[FieldError] = []
    for i, ip in enumerate(list_field(spec, "externalIPs")):
        path = SPEC.child("externalIPs").index(i)
        ip_errs = ip_errors(path, ip, old_ips)
        errs.extend(ip_errs or non_special_ip_errors(path, ip))
    return errs


def _service_type_errors(spec: dict) -> list[FieldError]:
    svc_type = str_field(spec, "type")
    if not svc_type:
        return [required(SPEC.child("type"))]
    if svc_type not in SERVICE_TYPES:
        return [not_supported(SPEC.child("type"), svc_type, SERVICE_TYPES)]
    return []


def _node_port_errors(spec: dict) -> list[FieldError]:
    ports = ports_of(spec)
    errs: list[FieldError] = []
    if str_field(spec, "type") == CLUSTER_IP:
        errs.extend(forbidden(PORTS.index(i).child("nodePort"), "may not be used when `type` is 'ClusterIP'")
                    for i, port in enumerate(ports) if int_field(port, "nodePort"))
    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (str_field(port, "protocol"), int_field(port, "nodePort"))
        if not key[1]:
            continue
        if key in seen_node_ports:
            errs.append(duplicate(PORTS.index(i).child("nodePort"), key[1]))
        seen_node_ports.add(key)
    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (str_field(port, "protocol"), int_field(port, "port"))
        if key in seen_ports:
            # Upstream renders its internal ServicePort key struct (Go field names, no json tags).
            errs.append(duplicate(PORTS.index(i), {"Name": "", "Protocol": key[0], "AppProtocol": None,
                                                   "Port": key[1], "TargetPort": 0, "NodePort": 0}))
        seen_ports.add(key)
    return errs


def _source_range_errors(svc: dict, old: dict | None) -> list[FieldError]:
    spec, old_spec = spec_of(svc), spec_of(old)
    is_lb = str_field(spec, "type") == LOAD_BALANCER
    ranges = list_field(spec, "loadBalancerSourceRanges")
    errs: list[FieldError] = []
    if ranges:
        path = SPEC.child("LoadBalancerSourceRanges")  # sic: upstream's capital L
        if not is_lb:
            errs.append(forbidden(path, ONLY_LOAD_BALANCER))
        existing = [r.strip() for r in list_field(old_spec, "loadBalancerSourceRanges") if isinstance(r, str)]
        for i, value in enumerate(ranges):
            errs.extend(cidr_errors(path.index(i), value.strip(), existing))
        return errs
    annotation, old_annotation = _annotation(svc, SOURCE_RANGES_ANNOTATION), _annotation(old, SOURCE_RANGES_ANNOTATION)
    if annotation is None:
        return errs
    path = Path("metadata", "annotations").key(SOURCE_RANGES_ANNOTATION)
    if not is_lb:
        errs.append(forbidden(path, ONLY_LOAD_BALANCER))
    if annotation != old_annotation and annotation.strip():
        for value in annotation.strip().split(","):
            errs.extend(cidr_errors(path, value.strip(), []))
    return errs


def _annotation(svc: dict | None, key: str) -> str | None:
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    value = annotations.get(key) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def _allocate_lb_node_ports_errors(spec: dict) -> list[FieldError]:
    is_lb, value = str_field(spec, "type") == LOAD_BALANCER, spec.get("allocateLoadBalancerNodePorts")
    if value is not None and not is_lb:
        return [forbidden(SPEC.child("allocateLoadBalancerNodePorts"), ONLY_LOAD_BALANCER)]
    if is_lb and value is None:
        return [required(Path("allocateLoadBalancerNodePorts"))]  # sic: upstream omits "spec."
    return []


def _load_balancer_class_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    path = SPEC.child("loadBalancerClass")
    lb_class, is_lb = spec.get("loadBalancerClass"), str_field(spec, "type") == LOAD_BALANCER
    errs: list[FieldError] = []
    if old_spec is not None and str_field(old_spec, "type") == LOAD_BALANCER and is_lb \
            and old_spec.get("loadBalancerClass") != lb_class:
        errs.append(invalid(path, lb_class, "may not change once set"))
    if is_lb and lb_class is not None:
        errs.extend(invalid(path, lb_class, m) for m in qualified_name_errors(lb_class))
    elif not is_lb and lb_class is not None:
        errs.append(forbidden(path, ONLY_LOAD_BALANCER))
    return errs


def _external_traffic_errors(spec: dict) -> list[FieldError]:
    policy_path, hc_path = SPEC.child("externalTrafficPolicy"), SPEC.child("healthCheckNodePort")
    policy = str_field(spec, "externalTrafficPolicy")
    errs: list[FieldError] = []
    if not externally_accessible(spec):
        if policy:
            errs.append(invalid(policy_path, policy, "may only be set for externally-accessible services"))
    elif not policy:
        errs.append(required(policy_path))
    elif policy not in TRAFFIC_POLICIES:
        errs.append(not_supported(policy_path, policy, TRAFFIC_POLICIES))
    hc_port = int_field(spec, "healthCheckNodePort")
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
        return [required(path)] if str_field(spec, "type") in (CLUSTER_IP, NODE_PORT, LOAD_BALANCER) else []
    return [] if policy in TRAFFIC_POLICIES else [not_supported(path, policy, TRAFFIC_POLICIES)]
