"""Parsing a Kubernetes API request path and its common parameters."""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL, Resource


@dataclass
class Target:
    res: Resource
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    legacy_watch: bool = False  # /api/v1/watch/... paths
    proxy_path: str = ""  # nodes/<name>/proxy/<proxy_path>


def _resource(group: str, version: str, plural: str) -> Resource:
    res = BY_PLURAL.get((group, plural))
    if res is None or res.version != version:
        raise errors.NotFound.path()
    return res


def parse_target(path: str) -> Target | None:
    """The resource a path names, or None if it is not a resource path at all."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = False
    if rest and rest[0] == "watch":
        legacy_watch, rest = True, rest[1:]
        if not rest:
            raise errors.NotFound.path()
    if rest[0] == "namespaces" and len(rest) >= 3 and (group, rest[2]) in BY_PLURAL \
            and BY_PLURAL[(group, rest[2])].namespaced:
        namespace, rest = rest[1], rest[2:]
    else:
        namespace = ""
    proxy_path = ""
    if len(rest) > 3 and rest[2] == "proxy":  # the proxy subresource takes a path after it
        rest, proxy_path = rest[:3], "/".join(rest[3:])
    if len(rest) > 3:
        raise errors.NotFound.path()
    res = _resource(group, version, rest[0])
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in res.subresources:
        raise errors.NotFound.path()
    if res.namespaced and name and not namespace:
        raise errors.NotFound.path()
    return Target(res, namespace, name, sub, legacy_watch, proxy_path)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def bool_param(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def int_param(query, name: str) -> int | None:
    v = query.get(name)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise errors.BadRequest(f'invalid value for {name}: "{v}": must be an integer') from None
