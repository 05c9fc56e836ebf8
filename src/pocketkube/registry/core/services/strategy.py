"""The Service strategy: what the generic store calls to validate, and the contextual defaulting it shares
with allocation (upstream's strategy.go and the normalisation in storage.go).

Validation sees a Service the way Kubernetes validates it: clusterIP and clusterIPs kept in step,
and on update the allocated values carried over from the stored object and the fields that no
longer apply dropped. Those steps are idempotent, so running them here and again in
allocation.py (before the allocator acts) gives the same object, whichever runs first.
"""

from __future__ import annotations

import copy

from pocketkube.api.fields import FieldError
from pocketkube.api.validation import dns1035_label_errors
from pocketkube.registry.core.services.spec import (
    LOAD_BALANCER,
    ensure_spec,
    externally_accessible,
    int_field,
    list_field,
    needs_cluster_ip,
    needs_health_check,
    needs_node_port,
    node_port_set,
    ports_of,
    set_or_drop,
    spec_of,
    str_field,
)
from pocketkube.registry.core.services.validation import (
    type_errors,
    validate_service,
    validate_service_update,
)
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update


def validate(svc: dict) -> list[FieldError]:
    """Errors of a Service to create (metadata included), as the store asks before writing."""
    if type_errors(svc):
        return validate_service(svc, None)
    # Normalizing assigns top-level spec keys only, so a copy of the two outer dicts is enough
    # (a deep copy was the largest single cost of a Service create).
    prepared = dict(svc)
    prepared["spec"] = dict(svc.get("spec") or {})
    normalize_cluster_ips(prepared["spec"], None)
    return validate_service(prepared, None)


def validate_update(new: dict, old: dict) -> list[FieldError]:
    """Errors of an update: metadata immutability, then the new object as Kubernetes would see it."""
    errs = validate_object_meta_update(new, old)
    shape = type_errors(new)
    if shape:
        return errs + validate_object_meta(new, True, dns1035_label_errors) + shape
    return errs + validate_service_update(_prepared_update(new, old), old)


def _prepared_update(new: dict, old: dict) -> dict:
    """The update as Kubernetes validates it: after allocated values are carried over and values that
    no longer apply are dropped. Each step is idempotent, so validating before or after
    ServiceAllocator.allocate_for_update gives the same answer."""
    new = copy.deepcopy(new)
    spec, old_spec = ensure_spec(new), spec_of(old)
    patch_allocated_values(spec, old_spec)
    normalize_cluster_ips(spec, old_spec)
    if needs_cluster_ip(spec) and spec.get("ipFamilyPolicy") is None and old_spec.get("ipFamilyPolicy") is not None:
        spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
    drop_type_dependent_fields(new, old)
    return new


def normalize_cluster_ips(spec: dict, old_spec: dict | None) -> None:
    """Keep the singular clusterIP and the plural clusterIPs in step, as old and new clients expect."""
    cluster_ip, ips = str_field(spec, "clusterIP"), list_field(spec, "clusterIPs")
    if old_spec is None:
        if cluster_ip and not ips:
            spec["clusterIPs"] = [cluster_ip]
        return
    old_ip, old_ips = str_field(old_spec, "clusterIP"), list_field(old_spec, "clusterIPs")
    if old_ips and not ips and old_ip == cluster_ip:
        spec["clusterIPs"] = list(old_ips)  # an old client that does not know clusterIPs
    if old_ip != cluster_ip and list_field(spec, "clusterIPs") == old_ips:
        if old_ip and not cluster_ip:
            spec.pop("clusterIPs", None)
        else:
            spec["clusterIPs"] = [cluster_ip]


def patch_allocated_values(spec: dict, old_spec: dict) -> None:
    """Re-applied manifests usually omit allocated values: carry them over from the stored object."""
    if needs_cluster_ip(old_spec) and needs_cluster_ip(spec):
        if not str_field(spec, "clusterIP") and str_field(old_spec, "clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not list_field(spec, "clusterIPs") and list_field(old_spec, "clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if needs_node_port(old_spec) and needs_node_port(spec):
        in_both = node_port_set(old_spec) & node_port_set(spec)
        by_name = {str_field(p, "name"): int_field(p, "nodePort") for p in ports_of(old_spec)}
        for port in list_field(spec, "ports"):
            old_value = by_name.get(str_field(port, "name"), 0)
            if not int_field(port, "nodePort") and old_value and old_value not in in_both:
                port["nodePort"] = old_value
    if needs_health_check(old_spec) and needs_health_check(spec) and not int_field(spec, "healthCheckNodePort"):
        set_or_drop(spec, "healthCheckNodePort", int_field(old_spec, "healthCheckNodePort"))


def drop_type_dependent_fields(svc: dict, old: dict) -> None:
    """strategy.go dropTypeDependentFields: wipe values that no longer apply, unless the user changed them."""
    spec, old_spec = spec_of(svc), spec_of(old)
    if needs_cluster_ip(old_spec) and not needs_cluster_ip(spec):
        if list_field(spec, "clusterIPs") == list_field(old_spec, "clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if list_field(spec, "ipFamilies") == list_field(old_spec, "ipFamilies"):
            spec.pop("ipFamilies", None)
        if spec.get("ipFamilyPolicy") == old_spec.get("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if needs_node_port(old_spec) and not needs_node_port(spec) and node_port_set(spec) <= node_port_set(old_spec):
        for port in list_field(spec, "ports"):
            if isinstance(port, dict):
                port.pop("nodePort", None)
    if needs_health_check(old_spec) and not needs_health_check(spec) \
            and int_field(spec, "healthCheckNodePort") == int_field(old_spec, "healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    leaving_lb = str_field(old_spec, "type") == LOAD_BALANCER and str_field(spec, "type") != LOAD_BALANCER
    if leaving_lb:
        alloc_old, alloc_new = old_spec.get("allocateLoadBalancerNodePorts"), spec.get("allocateLoadBalancerNodePorts")
        if alloc_old is not None and alloc_old == alloc_new:
            spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if externally_accessible(old_spec) and not externally_accessible(spec) \
            and spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if str_field(spec, "type") != LOAD_BALANCER and isinstance(svc.get("status"), dict):
        svc["status"]["loadBalancer"] = {}
