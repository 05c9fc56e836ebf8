"""IP addresses and IP families of a Service: parsing, validation and the family defaulting before allocation.

* Parsing follows Go's (sloppy) net.ParseIP, which upstream uses for legacy fields: IPv4 octets
  may carry leading zeros and IPv4-mapped IPv6 addresses count as IPv4.
* cluster_ips_related_errors and the upgrade/downgrade rules are ValidateService's checks of
  clusterIP/clusterIPs/ipFamilies/ipFamilyPolicy.
* init_ip_family_fields is alloc.go's initIPFamilyFields: it defaults the spec's family fields in
  place from the spec alone and the one family this cluster serves (no allocator state, so it is
  tested without one), raising Invalid for what the cluster cannot serve.
"""

from __future__ import annotations

import ipaddress
import re

from pocketkube.api.errors import Invalid
from pocketkube.api.fields import FieldError, Path, duplicate, invalid, not_supported, required
from pocketkube.net.ipalloc import IPAddress
from pocketkube.registry.core.services.spec import (
    CLUSTER_IPS,
    EXTERNAL_NAME,
    IP_FAMILIES,
    IP_FAMILY_POLICIES,
    KIND,
    NONE,
    PREFER_DUAL_STACK,
    REQUIRE_DUAL_STACK,
    SINGLE_STACK,
    SPEC,
    is_headless,
    list_field,
    name_of,
    spec_of,
    str_field,
)

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


def family_of(ip: str) -> str | None:
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


def ip_errors(path: Path, value: str, valid_old: list) -> list[FieldError]:
    """IsValidIPForLegacyField: values already stored in the old object stay accepted."""
    if value in valid_old or parse_ip(value) is not None:
        return []
    return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]


def cidr_errors(path: Path, value: str, valid_old: list) -> list[FieldError]:
    if value in valid_old or _is_cidr(value):
        return []
    return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]


def non_special_ip_errors(path: Path, value: str) -> list[FieldError]:
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


def cluster_ips_related_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields (skipped for ExternalName, whose fields must be unset)."""
    if str_field(spec, "type") == EXTERNAL_NAME:
        return []
    errs: list[FieldError] = []
    cluster_ip, ips = str_field(spec, "clusterIP"), list_field(spec, "clusterIPs")
    families = list_field(spec, "ipFamilies")
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
    ip_errs = _cluster_ip_values_errors(ips, list_field(old_spec, "clusterIPs") if old_spec else [])
    errs.extend(ip_errs)
    if len(ips) > 2:
        errs.append(invalid(CLUSTER_IPS, ips, "may only hold up to 2 values"))
    if ip_errs:
        return errs  # further checks would only restate a bad IP
    if len(ips) > 1 and len({family_of(ip) for ip in ips}) < 2:
        errs.append(invalid(CLUSTER_IPS, ips, "may specify no more than one IP for each IP family"))
    if not is_headless(spec) and ips and families:
        for i, (ip, family) in enumerate(zip(ips, families)):
            actual = family_of(ip)
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
        errs.extend(ip_errors(CLUSTER_IPS.index(i), ip, old_ips))
    return errs


def upgrade_downgrade_cluster_ips(spec: dict, old_spec: dict) -> list[FieldError]:
    if EXTERNAL_NAME in (str_field(spec, "type"), str_field(old_spec, "type")):
        return []
    if is_headless(spec) and is_headless(old_spec):
        return []
    old_ips, new_ips = list_field(old_spec, "clusterIPs"), list_field(spec, "clusterIPs")
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


def upgrade_downgrade_ip_families(spec: dict, old_spec: dict) -> list[FieldError]:
    if EXTERNAL_NAME in (str_field(spec, "type"), str_field(old_spec, "type")):
        return []
    if is_headless(spec) or is_headless(old_spec):
        return []
    old_families, new_families = list_field(old_spec, "ipFamilies"), list_field(spec, "ipFamilies")
    path = SPEC.child("ipFamilies").index(0)
    errs: list[FieldError] = []
    if len(old_families) == len(new_families):
        errs.extend(invalid(path, new_families, "may not change once set")
                    for i, family in enumerate(old_families) if family != new_families[i])
    elif len(old_families) > len(new_families):
        if not list_field(spec, "clusterIPs"):
            errs.append(invalid(path, new_families, "primary ipFamily can not be unset"))
        if new_families and new_families[0] != old_families[0]:
            errs.append(invalid(path, list_field(spec, "clusterIPs"), "may not change once set"))
        if len(new_families) == 1 and spec.get("ipFamilyPolicy") != SINGLE_STACK:
            errs.append(invalid(SPEC.child("ipFamilyPolicy"), spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif old_families and new_families[0] != old_families[0]:
        errs.append(invalid(path, list_field(spec, "clusterIPs"), "may not change once set"))
    return errs


def is_matching_prefer_dual_stack(spec: dict, old_spec: dict | None) -> bool:
    """An unchanged PreferDualStack service is never auto-upgraded or downgraded."""
    return (old_spec is not None and str_field(old_spec, "type") == str_field(spec, "type")
            and old_spec.get("ipFamilyPolicy") == PREFER_DUAL_STACK == spec.get("ipFamilyPolicy")
            and list_field(old_spec, "clusterIPs") == list_field(spec, "clusterIPs")
            and list_field(old_spec, "ipFamilies") == list_field(spec, "ipFamilies"))


def init_ip_family_fields(svc: dict, old_spec: dict | None, *, cluster_family: str) -> None:
    """initIPFamilyFields: settle ipFamilyPolicy and ipFamilies before allocation, on a cluster with one
    family (`cluster_family`). Raises Invalid for what this cluster cannot serve."""
    spec, name = spec_of(svc), name_of(svc)
    if str_field(spec, "type") == EXTERNAL_NAME or is_matching_prefer_dual_stack(spec, old_spec):
        return
    if spec.get("ipFamilyPolicy") is None:
        if old_spec is not None and old_spec.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
        elif str_field(spec, "clusterIP") == NONE and not spec.get("selector"):
            spec["ipFamilyPolicy"] = REQUIRE_DUAL_STACK  # headless and selectorless
        else:
            spec["ipFamilyPolicy"] = SINGLE_STACK
    early = cluster_ips_related_errors(spec, old_spec)
    if early:
        raise Invalid(KIND, name, early)
    errs = _policy_errors(spec, old_spec)
    families = list(list_field(spec, "ipFamilies"))
    for i, ip in enumerate(list_field(spec, "clusterIPs")):
        if ip == NONE:
            break
        family = family_of(ip)
        if i >= len(families):
            if family != cluster_family:
                errs.append(invalid(CLUSTER_IPS.index(i), spec["clusterIPs"],
                                    f"{family} is not configured on this cluster"))
            else:
                families.append(family)
    if errs:
        raise Invalid(KIND, name, errs)
    spec["ipFamilies"] = families
    if str_field(spec, "clusterIP") == NONE and not spec.get("selector"):
        if not families:
            families.append(cluster_family)
        if len(families) < 2 and spec["ipFamilyPolicy"] != SINGLE_STACK:
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        return
    if spec["ipFamilyPolicy"] == REQUIRE_DUAL_STACK:
        errs.append(invalid(SPEC.child("ipFamilyPolicy"), REQUIRE_DUAL_STACK,
                            "this cluster is not configured for dual-stack services"))
    errs.extend(invalid(SPEC.child("ipFamilies").index(i), family, "not configured on this cluster")
                for i, family in enumerate(families) if family != cluster_family)
    if errs:
        raise Invalid(KIND, name, errs)
    if not families:
        families.append(cluster_family)


def _policy_errors(spec: dict, old_spec: dict | None) -> list[FieldError]:
    policy, ips, families = spec["ipFamilyPolicy"], list_field(spec, "clusterIPs"), list_field(spec, "ipFamilies")
    path = SPEC.child("ipFamilyPolicy")
    errs: list[FieldError] = []
    if old_spec is not None:
        if policy == SINGLE_STACK:
            # Asking for single-stack while keeping the values is clear intent to drop the secondary.
            if ips == list_field(old_spec, "clusterIPs") and len(ips) > 1:
                spec["clusterIPs"] = ips = ips[:1]
            if families == list_field(old_spec, "ipFamilies") and len(families) > 1:
                spec["ipFamilies"] = families = families[:1]
        else:
            if len(ips) < len(list_field(old_spec, "clusterIPs")) and ips:
                errs.append(invalid(path, policy, "must be 'SingleStack' to release the secondary cluster IP"))
            if len(families) < len(list_field(old_spec, "ipFamilies")) and families:
                errs.append(invalid(path, policy, "must be 'SingleStack' to release the secondary IP family"))
    if policy == SINGLE_STACK:
        if len(ips) == 2:
            errs.append(invalid(path, policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                                              "cluster IPs are specified"))
        if len(families) == 2:
            errs.append(invalid(path, policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                                              "IP families are specified"))
    return errs
