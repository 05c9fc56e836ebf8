"""The routing table of the Ingress controller, built from objects (pure: no I/O).

Ingresses of our class → per host (exact, `*.` wildcard, or any host) a list of path rules,
ordered so the first match is the right one: the longest path wins, Exact before Prefix at equal
length, then the oldest Ingress (as ingress-nginx resolves conflicts). Prefix matches whole path
elements (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`); ImplementationSpecific is treated
as Prefix. A request matching no rule goes to the oldest defaultBackend.

Backends are resolved through the Service (port by number or name) to the ready endpoints of its
EndpointSlices; what cannot be resolved is kept as a Problem (for the 503 and an Event).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api.networking import INGRESS_CLASS_NAME, INGRESS_CONTROLLER, ingress_class_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TLS_SECRET_TYPE = "kubernetes.io/tls"


def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _key(obj: dict) -> str:
    m = _map(obj.get("metadata"))
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


@dataclass(frozen=True)
class Backend:
    """Where a rule leads: a Service port, resolved to endpoints (empty: nowhere to send)."""

    namespace: str
    service: str
    port: str  # the port as the Ingress names it: a number or a name
    endpoints: tuple[tuple[str, int], ...] = ()
    problem: str = ""  # why there are no endpoints, for the 503 and the Event


@dataclass(frozen=True)
class Rule:
    path: str
    path_type: str  # Exact | Prefix (ImplementationSpecific is stored as Prefix)
    backend: Backend
    ingress: str  # namespace/name of the Ingress it came from


@dataclass(frozen=True)
class Problem:
    ingress: str
    reason: str
    message: str


@dataclass
class Table:
    exact: dict[str, list[Rule]] = field(default_factory=dict)
    wildcard: dict[str, list[Rule]] = field(default_factory=dict)  # keyed by the suffix after `*.`
    any_host: list[Rule] = field(default_factory=list)
    default: Rule | None = None
    # TLS: host (or `*.suffix`) → (cert PEM, key PEM); hosts the Ingress names but whose Secret
    # is missing are absent (the default certificate answers, as ingress-nginx does).
    certs: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def route(self, host: str, path: str) -> Rule | None:
        """The rule a request for host and path goes to; None: 404."""
        host = normalize_host(host)
        for rules in (self.exact.get(host), self._wildcard(host), self.any_host):
            for rule in rules or ():
                if path_matches(rule.path_type, rule.path, path):
                    return rule
        return self.default

    def _wildcard(self, host: str) -> list[Rule] | None:
        _, dot, suffix = host.partition(".")
        return self.wildcard.get(suffix) if dot else None

    def cert_for(self, host: str) -> tuple[bytes, bytes] | None:
        host = normalize_host(host)
        found = self.certs.get(host)
        if found is None and "." in host:
            found = self.certs.get("*." + host.partition(".")[2])
        return found


def normalize_host(host: str) -> str:
    """Lower case, without a port (`App.Local:8080` → `app.local`); IPv6 literals keep their brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _elements(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def path_matches(path_type: str, rule_path: str, path: str) -> bool:
    if path_type == "Exact":
        return path == rule_path
    want = _elements(rule_path)
    return _elements(path)[:len(want)] == want


def _rule_order(rule: Rule, created: str) -> tuple:
    # Longest first (by elements for Prefix, with the raw length to break ties), Exact first.
    return (-len(rule.path), 0 if rule.path_type == "Exact" else 1, created, rule.ingress)


def is_ours(ing: dict, classes: dict[str, dict]) -> bool:
    """An Ingress of a class whose controller is ours (the built-in `pocketkube` class if that
    IngressClass is missing: the class was admitted by name)."""
    name = ingress_class_of(ing)
    if name is None:
        return False
    ic = classes.get(name)
    if ic is None:
        return name == INGRESS_CLASS_NAME
    return _map(ic.get("spec")).get("controller") == INGRESS_CONTROLLER


@dataclass
class Cluster:
    """What the table is built from, indexed as the informers hold it."""

    ingresses: list[dict]
    classes: dict[str, dict]  # IngressClass name → object
    services: dict[str, dict]  # namespace/name → Service
    slices: dict[str, list[dict]]  # namespace/service name → its EndpointSlices
    secrets: dict[str, dict]  # namespace/name → Secret


def resolve_backend(namespace: str, backend: dict, cluster: Cluster) -> Backend:
    svc_ref = _map(backend.get("service"))
    if not svc_ref:
        res = _map(backend.get("resource"))
        return Backend(namespace, "", "", problem=f"resource backend {res.get('kind')}/{res.get('name')} "
                                                   "is not supported by this controller")
    name = str(svc_ref.get("name") or "")
    port_ref = _map(svc_ref.get("port"))
    port_label = str(port_ref.get("number") or port_ref.get("name") or "")
    svc = cluster.services.get(f"{namespace}/{name}")
    if svc is None:
        return Backend(namespace, name, port_label, problem=f'service "{namespace}/{name}" not found')
    svc_port = None
    for p in _list(_map(svc.get("spec")).get("ports")):
        p = _map(p)
        if (port_ref.get("number") and p.get("port") == port_ref["number"]) or \
                (port_ref.get("name") and p.get("name") == port_ref["name"]):
            svc_port = p
            break
    if svc_port is None:
        return Backend(namespace, name, port_label,
                       problem=f'service "{namespace}/{name}" does not have port {port_label}')
    port_name = svc_port.get("name") or ""
    endpoints: list[tuple[str, int]] = []
    for slc in cluster.slices.get(f"{namespace}/{name}", ()):
        number = next((sp.get("port") for sp in map(_map, _list(slc.get("ports")))
                       if (sp.get("name") or "") == port_name and sp.get("protocol", "TCP") == "TCP"), None)
        if not isinstance(number, int):
            continue
        for ep in map(_map, _list(slc.get("endpoints"))):
            if _map(ep.get("conditions")).get("ready") is False:
                continue
            endpoints.extend((addr, number) for addr in _list(ep.get("addresses")) if isinstance(addr, str))
    problem = "" if endpoints else f'service "{namespace}/{name}" has no ready endpoints for port {port_label}'
    return Backend(namespace, name, port_label, tuple(sorted(set(endpoints))), problem)


def _tls_pair(secret: dict | None) -> tuple[bytes, bytes] | None:
    if secret is None or secret.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
        return None
    data = _map(secret.get("data"))
    try:
        cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
    except (KeyError, ValueError, TypeError):
        return None
    return (cert, key) if cert and key else None


def build_table(cluster: Cluster) -> Table:
    table = Table()
    ours = sorted((i for i in cluster.ingresses if is_ours(i, cluster.classes)),
                  key=lambda i: (str(_map(i.get("metadata")).get("creationTimestamp") or ""), _key(i)))
    created: dict[str, str] = {}
    backends: dict[tuple[str, str], Backend] = {}

    def backend_of(ing_key: str, namespace: str, ref: dict) -> Backend:
        cache_key = (namespace, repr(sorted(_map(ref.get("service")).items())) + repr(ref.get("resource")))
        b = backends.get(cache_key)
        if b is None:
            b = backends[cache_key] = resolve_backend(namespace, ref, cluster)
        if b.problem:
            table.problems.append(Problem(ing_key, "BackendUnavailable" if b.service else "UnsupportedBackend",
                                          b.problem))
        return b

    for ing in ours:
        key = _key(ing)
        namespace = key.partition("/")[0]
        created[key] = str(_map(ing.get("metadata")).get("creationTimestamp") or "")
        spec = _map(ing.get("spec"))
        if spec.get("defaultBackend") and table.default is None:
            table.default = Rule("/", "Prefix", backend_of(key, namespace, _map(spec["defaultBackend"])), key)
        hosts: set[str] = set()
        for rule in map(_map, _list(spec.get("rules"))):
            host = normalize_host(str(rule.get("host") or ""))
            hosts.add(host)
            if host.startswith("*."):
                bucket = table.wildcard.setdefault(host[2:], [])
            elif host:
                bucket = table.exact.setdefault(host, [])
            else:
                bucket = table.any_host
            for p in map(_map, _list(_map(rule.get("http")).get("paths"))):
                path_type = "Exact" if p.get("pathType") == "Exact" else "Prefix"
                path = str(p.get("path") or "/")
                bucket.append(Rule(path, path_type, backend_of(key, namespace, _map(p.get("backend"))), key))
        for tls in map(_map, _list(spec.get("tls"))):
            pair = _tls_pair(cluster.secrets.get(f"{namespace}/{tls.get('secretName')}")) \
                if tls.get("secretName") else None
            if tls.get("secretName") and pair is None:
                table.problems.append(Problem(key, "InvalidTLSSecret",
                                              f'secret "{namespace}/{tls["secretName"]}" is missing or '
                                              "not a valid kubernetes.io/tls Secret"))
                continue
            # TLS without hosts covers the Ingress's own hosts.
            for host in [normalize_host(h) for h in _list(tls.get("hosts")) if isinstance(h, str)] or hosts:
                if pair is not None and host and host not in table.certs:
                    table.certs[host] = pair
    for rules in (*table.exact.values(), *table.wildcard.values(), table.any_host):
        rules.sort(key=lambda r: _rule_order(r, created.get(r.ingress, "")))
    return table


def index_slices(slices: Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for slc in slices:
        m = _map(slc.get("metadata"))
        svc = _map(m.get("labels")).get(SERVICE_NAME_LABEL)
        if svc:
            out.setdefault(f"{m.get('namespace', '')}/{svc}", []).append(slc)
    return out
