"""A pod's DNS settings, validated as upstream's validatePodDNSConfig: dnsPolicy None needs a
dnsConfig with a nameserver; at most 3 nameservers (IPs), 32 search paths of 2048 characters
in all (DNS subdomains, a trailing dot allowed), options with names."""

from __future__ import annotations

import ipaddress

from pocketkube.api.fields import FieldError, Path, invalid, required
from pocketkube.api.validation import dns1123_subdomain_errors
from pocketkube.registry.core.pods.typed import get_dict, get_list
from pocketkube.registry.validation import get_str

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048


def validate_dns_config(spec: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    cfg_path = path.child("dnsConfig")
    present = isinstance(spec.get("dnsConfig"), dict)
    config = get_dict(spec, "dnsConfig", path, errs)
    if spec.get("dnsPolicy") == "None":
        if not present:
            return [*errs, required(cfg_path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.get("nameservers"):
            return [*errs, required(cfg_path.child("nameservers"),
                                    "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if not config:
        return errs
    servers = get_list(config, "nameservers", cfg_path, errs)
    if len(servers) > MAX_NAMESERVERS:
        errs.append(invalid(cfg_path.child("nameservers"), servers,
                            f"must not have more than {MAX_NAMESERVERS} nameservers"))
    for i, server in enumerate(servers):
        try:
            ipaddress.ip_address(server if isinstance(server, str) else "")
        except ValueError:
            errs.append(invalid(cfg_path.child("nameservers").index(i), server,
                                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
    searches = get_list(config, "searches", cfg_path, errs)
    if len(searches) > MAX_SEARCH_PATHS:
        errs.append(invalid(cfg_path.child("searches"), searches,
                            f"must not have more than {MAX_SEARCH_PATHS} search paths"))
    if len(" ".join(str(s) for s in searches)) > MAX_SEARCH_CHARS:
        errs.append(invalid(cfg_path.child("searches"), searches,
                            f"must not have more than {MAX_SEARCH_CHARS} characters (including spaces) "
                            "in the search list"))
    for i, search in enumerate(searches):
        value = search.removesuffix(".") if isinstance(search, str) else ""
        errs.extend(invalid(cfg_path.child("searches").index(i), value, m) for m in dns1123_subdomain_errors(value))
    for i, option in enumerate(get_list(config, "options", cfg_path, errs)):
        option_path = cfg_path.child("options").index(i)
        if not isinstance(option, dict):
            errs.append(invalid(option_path, option, "must be an object"))
            continue
        if not get_str(option, "name", option_path, errs):
            errs.append(required(option_path, "Option.Name must not be empty"))
    return errs
