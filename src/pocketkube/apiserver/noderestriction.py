"""NodeRestriction, and the Node authorizer's narrowing to the objects a node's pods use.

A node (system:node:<name> in system:nodes) may write only its own Node and Lease, and only
pods bound to it (upstream's NodeRestriction admission). It may read a secret, configmap,
persistent volume claim or volume, or ask for a service account's token, only when a pod bound
to it uses that object (upstream's Node authorizer graph, computed here from the stored pods of
that namespace): `pod_references` says what a pod uses.
"""

from __future__ import annotations

from typing import Any

import orjson

from pocketkube.apiserver.authz import (
    MIRROR_POD_ANNOTATION,
    NODE_LEASE_NAMESPACE,
    Attributes,
    Body,
    _forbidden,
    _mapping,
    denial,
)
from pocketkube.registry.rbac.rules import allowed_by

# resource -> what in a pod names it
NARROWED = {"secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes", "serviceaccounts"}


def pod_references(pod: dict) -> set[tuple[str, str]]:
    """(resource, name) of every secret, configmap, claim and service account the pod uses."""
    spec = _mapping(pod.get("spec"))
    refs: set[tuple[str, str]] = set()

    def add(resource: str, name: Any) -> None:
        if isinstance(name, str) and name:
            refs.add((resource, name))
    add("serviceaccounts", spec.get("serviceAccountName") or "default")
    for s in _maps(spec.get("imagePullSecrets")):
        add("secrets", s.get("name"))
    for v in _maps(spec.get("volumes")):
        add("secrets", _mapping(v.get("secret")).get("secretName"))
        add("configmaps", _mapping(v.get("configMap")).get("name"))
        add("persistentvolumeclaims", _mapping(v.get("persistentVolumeClaim")).get("claimName"))
        if v.get("ephemeral") is not None:
            add("persistentvolumeclaims", f"{_mapping(pod.get('metadata')).get('name')}-{v.get('name')}")
        for src in _maps(_mapping(v.get("projected")).get("sources")):
            add("secrets", _mapping(src.get("secret")).get("name"))
            add("configmaps", _mapping(src.get("configMap")).get("name"))
    for c in (*_maps(spec.get("initContainers")), *_maps(spec.get("containers")),
              *_maps(spec.get("ephemeralContainers"))):
        for e in _maps(c.get("env")):
            source = _mapping(e.get("valueFrom"))
            add("secrets", _mapping(source.get("secretKeyRef")).get("name"))
            add("configmaps", _mapping(source.get("configMapKeyRef")).get("name"))
        for e in _maps(c.get("envFrom")):
            add("secrets", _mapping(e.get("secretRef")).get("name"))
            add("configmaps", _mapping(e.get("configMapRef")).get("name"))
    return refs


def check_node_reference(a: Attributes, node: str, registry, field_selector: str = "") -> None:
    """Refuse a node's request for a NARROWED object no pod bound to it uses (list and watch
    only of one object by name, as the kubelet's single-object reflectors ask)."""
    name = a.name or _selected_name(field_selector)
    if not name or not _related(a, node, name, registry):
        e = denial(a)
        e.message = f"{e.message}: no relationship found between node '{node}' and this object"
        raise e


def _rbac_allows(a: Attributes, registry) -> bool:
    """Whether RBAC itself grants the request: only the Node authorizer's own grants are narrowed."""
    return allowed_by(registry.policy.rules_for(a.user.name, a.user.groups, a.namespace), a)


def _selected_name(field_selector: str) -> str:
    terms = [t for t in field_selector.split(",") if t]
    if len(terms) == 1 and terms[0].startswith("metadata.name="):
        return terms[0].split("=", 1)[1]
    return ""


def _pods_on(node: str, namespace: str, registry) -> list[dict]:
    """The stored pods bound to `node` ("" = every namespace). Only those whose raw JSON names
    the node are decoded: a kubelet's reads cost a byte search per pod, not a parse."""
    needle = b'"nodeName":' + orjson.dumps(node)
    pods = (orjson.loads(raw) for raw in registry.store("", "pods").list(namespace).items if needle in raw)
    return [p for p in pods if _mapping(p.get("spec")).get("nodeName") == node]


# What a stored pod version uses, by its raw JSON: a kubelet asks for a pod's service account,
# token and root CA configmap as it starts it, and without this each ask decoded every pod of the
# node (a Job's hundreds of finished ones too). A pod's node and references never change once it
# is bound, so a status write's new version maps to the same answer; the cache is simply dropped
# when full (the stored bytes objects are the keys: their hashes are computed once).
_REFS_CACHE_MAX = 4096
_refs_cache: dict[bytes, tuple[str, frozenset[tuple[str, str]]]] = {}


def node_and_references(raw: bytes) -> tuple[str, frozenset[tuple[str, str]]]:
    """The node a stored pod is bound to ("" when none) and `pod_references` of it."""
    found = _refs_cache.get(raw)
    if found is None:
        pod = orjson.loads(raw)
        found = (_mapping(pod.get("spec")).get("nodeName") or "", frozenset(pod_references(pod)))
        if len(_refs_cache) >= _REFS_CACHE_MAX:
            _refs_cache.clear()
        _refs_cache[raw] = found
    return found


def _used_on(node: str, namespace: str, resource: str, name: str, registry) -> bool:
    needle = b'"nodeName":' + orjson.dumps(node)
    for raw in registry.store("", "pods").list(namespace).items:
        if needle in raw:
            pod_node, refs = node_and_references(raw)
            if pod_node == node and (resource, name) in refs:
                return True
    return False


def _related(a: Attributes, node: str, name: str, registry) -> bool:
    if a.resource == "persistentvolumes":
        claims = registry.store("", "persistentvolumeclaims")
        for pod in _pods_on(node, "", registry):
            ns = pod["metadata"].get("namespace", "")
            for resource, claim in pod_references(pod):
                pvc = claims.try_get(ns, claim) if resource == "persistentvolumeclaims" else None
                if pvc is not None and _mapping(pvc.get("spec")).get("volumeName") == name:
                    return True
        return False
    return _used_on(node, a.namespace, a.resource, name, registry)


def _maps(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

def admit_node_request(a: Attributes, node: str, registry, body: Body, field_selector: str = "") -> None:
    """NodeRestriction's checks for a write by `node`, and the reference check of its reads;
    raises Forbidden (or NotFound) to refuse. `body` is read for creates and for writes to the
    node's own Node, empty otherwise."""
    if a.api_group == "" and a.resource in NARROWED and not _rbac_allows(a, registry):
        check_node_reference(a, node, registry, field_selector)
    if a.verb not in ("create", "update", "patch", "delete"):
        return
    if (a.api_group, a.resource) == ("", "nodes"):
        name = a.name or _body_name(body.object())
        if name != node:
            raise _forbidden("", "nodes", name, f'node "{node}" is not allowed to modify node "{name}"')
        if not a.subresource:
            _admit_own_node(a, node, registry, body)
    elif (a.api_group, a.resource) == ("coordination.k8s.io", "leases"):
        name = a.name or _body_name(body.object())
        if a.namespace != NODE_LEASE_NAMESPACE:
            raise _forbidden(a.api_group, "leases", name,
                             f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if name != node:
            raise _forbidden(a.api_group, "leases", name,
                             "can only access node lease with the same name as the requesting node")
    elif (a.api_group, a.resource) == ("", "pods"):
        _admit_pod(a, node, registry, body)
    elif (a.api_group, a.resource, a.subresource) == ("", "serviceaccounts", "token"):
        from pocketkube.apiserver.satoken.noderestriction import admit_node_token_request

        admit_node_token_request(node, a.namespace, a.name, registry, body.object())


def _admit_own_node(a: Attributes, node: str, registry, body: Body) -> None:
    """A node may not steer workloads to itself: no new restricted labels, no taint changes."""
    if a.verb == "create":
        labels = _mapping(_mapping(body.object().get("metadata")).get("labels"))
        if bad := _forbidden_labels(labels, {}):
            raise _forbidden("", "nodes", node, f'node "{node}" is not allowed to set the following labels: '
                                                f'{", ".join(bad)}')
        return
    if a.verb not in ("update", "patch"):
        return
    from pocketkube.apiserver.patch import apply_patch

    old = registry.store("", "nodes").get("", node)
    new = body.object() if a.verb == "update" else apply_patch(body.content_type, old, body.raw, "Node")
    if _taints(new) != _taints(old):
        raise _forbidden("", "nodes", node, f'node "{node}" is not allowed to modify taints')
    new_labels = _mapping(_mapping(new.get("metadata")).get("labels"))
    if bad := _forbidden_labels(new_labels, _mapping(old["metadata"].get("labels"))):
        # Upstream words this one without the node's name.
        raise _forbidden("", "nodes", node, f'is not allowed to modify labels: {", ".join(bad)}')


def _taints(node: dict) -> list:
    return _mapping(node.get("spec")).get("taints") or []  # nil and empty are the same list


_KUBELET_LABELS = {"kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
                   "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
                   "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os",
                   "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"}


def _in_namespace(key: str, *namespaces: str) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return any(prefix == ns or prefix.endswith("." + ns) for ns in namespaces)


def _forbidden_labels(new: dict, old: dict) -> list[str]:
    """Changed labels a kubelet may not set: node-restriction.kubernetes.io ones, and other
    kubernetes.io/k8s.io ones that are not the kubelet's own."""
    changed = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}

    def kubelet_label(key: str) -> bool:
        return key in _KUBELET_LABELS or _in_namespace(key, "kubelet.kubernetes.io", "node.kubernetes.io")
    return sorted(k for k in changed if _in_namespace(k, "node-restriction.kubernetes.io") or
                  (_in_namespace(k, "kubernetes.io", "k8s.io") and not kubelet_label(k)))


def _admit_pod(a: Attributes, node: str, registry, body: Body) -> None:
    if a.subresource not in ("", "status"):
        raise _forbidden("", "pods", a.name,
                         f"unexpected pod subresource \"{a.subresource}\", only 'status' and 'eviction' are allowed")
    if a.verb == "create" and not a.subresource:
        _admit_mirror_pod(node, body.object())
        return
    # RBAC already refused every other pod write: what is left is a status write or a delete.
    bound = (registry.store("", "pods").get(a.namespace, a.name).get("spec") or {}).get("nodeName")
    if bound == node:
        return
    if a.subresource == "status":
        raise _forbidden("", "pods", a.name,
                         f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
    raise _forbidden("", "pods", a.name, f'node "{node}" can only delete pods with spec.nodeName set to itself')


def _admit_mirror_pod(node: str, pod: dict) -> None:
    """A node creates only mirror pods of its static pods: bound to it, owned by its Node."""
    meta = _mapping(pod.get("metadata"))
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    if MIRROR_POD_ANNOTATION not in _mapping(meta.get("annotations")):
        raise _forbidden("", "pods", name, f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, '
                                           f'node "{node}" can only create mirror pods')
    if _mapping(pod.get("spec")).get("nodeName") != node:
        raise _forbidden("", "pods", name, f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = meta.get("ownerReferences") if isinstance(meta.get("ownerReferences"), list) else []
    owner = _mapping(owners[0]) if len(owners) == 1 else {}
    if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node):
        raise _forbidden("", "pods", name,
                         f'node "{node}" can only create pods with an owner reference set to itself')
    if owner.get("controller") is not True:
        raise _forbidden("", "pods", name,
                         f'node "{node}" can only create pods with a controller owner reference set to itself')


def _body_name(body: dict) -> str:
    name = _mapping(body.get("metadata")).get("name")
    return name if isinstance(name, str) else ""


