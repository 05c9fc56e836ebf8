"""Authorization: who may do what, as Kubernetes decides it.

Three parts, in the order a request meets them:
- request attributes (verb, resource, namespace, name) read from the path alone, as the
  apiserver's RequestInfo does, so that authorization happens before any routing;
- rules in RBAC's shape (verbs × API groups × resources, or non-resource URLs): system:masters
  and the control plane may do anything; nodes get what a kubelet and kube-proxy need (the Node
  authorizer's rules); every authenticated user may discover the API and review itself;
- NodeRestriction: a node may write only its own Node and Lease, and only pods bound to it.

The self-reviews (SelfSubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview) are
answered here: they evaluate these rules and store nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.api.fields import Path, invalid
from pocketkube.apiserver import appkeys

MASTERS = "system:masters"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
AUTHENTICATED = "system:authenticated"
CONTROL_PLANE_USER = "system:pocketkube-controlplane"
NODE_LEASE_NAMESPACE = "kube-node-lease"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]

    @property
    def node_name(self) -> str | None:
        """The node this user is (system:node:<name> in system:nodes), or None."""
        if NODES_GROUP in self.groups and self.name.startswith(NODE_PREFIX):
            return self.name[len(NODE_PREFIX):]
        return None


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do. `path` is set only for non-resource requests."""
    user: User
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource_request(self) -> bool:
        return not self.path

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(user: User, method: str, path: str, watch_param: bool) -> Attributes:
    """Attributes of an HTTP request, read from its method and path as Kubernetes' RequestInfo."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(user, method.lower(), path=path or "/")
    verb = _METHOD_VERBS.get(method, method.lower())
    if rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        return Attributes(user, method.lower(), path=path)
    name = rest[1] if len(rest) > 1 else ""
    if method == "GET" and verb != "watch":
        verb = "watch" if watch_param else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    return Attributes(user, verb, group, rest[0], rest[2] if len(rest) > 2 else "", namespace, name)


# ---- rules ----

@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule: resource rules name groups and resources, non-resource rules URLs."""
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    def allows(self, a: Attributes) -> bool:
        if "*" not in self.verbs and a.verb not in self.verbs:
            return False
        if not a.is_resource_request:
            return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1]))
                       for u in self.urls)
        return ("*" in self.api_groups or a.api_group in self.api_groups) and \
            ("*" in self.resources or a.full_resource in self.resources)


def _rule(verbs: str, groups: str, resources: str) -> Rule:
    return Rule(tuple(verbs.split()), tuple(groups.split(",")), tuple(resources.split()))


_EVERYTHING = (Rule(("*",), ("*",), ("*",)), Rule(("*",), urls=("*",)))
# system:basic-user, system:discovery and system:public-info-viewer: what any signed-in user may do.
_AUTHENTICATED_RULES = (
    _rule("create", "authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews"),
    _rule("create", "authentication.k8s.io", "selfsubjectreviews"),
    Rule(("get",), urls=("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version",
                         "/version/", "/openapi", "/openapi/*")),
)
# The Node authorizer's rules (system:node) with kube-proxy's (system:node-proxier); which
# objects a node may write is narrowed further by NodeRestriction.
_NODE_RULES = (
    _rule("get list watch create update patch delete", "", "nodes"),
    _rule("patch update", "", "nodes/status"),
    _rule("get list watch create delete", "", "pods"),
    _rule("patch update", "", "pods/status"),
    _rule("get list watch", "", "services endpoints namespaces"),
    # Volumes: what the node's pods mount, and their projected service account tokens.
    _rule("get list watch", "", "configmaps secrets persistentvolumeclaims persistentvolumes"),
    _rule("create", "", "serviceaccounts/token"),
    _rule("get list watch", "discovery.k8s.io", "endpointslices"),
    _rule("create patch update", ",events.k8s.io", "events"),
    _rule("get create update patch delete", "coordination.k8s.io", "leases"),
)


def rules_for(user: User) -> tuple[Rule, ...]:
    if MASTERS in user.groups or user.name == CONTROL_PLANE_USER:
        return _EVERYTHING
    if user.node_name is not None:
        return _NODE_RULES + _AUTHENTICATED_RULES
    return _AUTHENTICATED_RULES if AUTHENTICATED in user.groups else ()


def allowed(a: Attributes) -> bool:
    return any(r.allows(a) for r in rules_for(a.user))


def _group_resource(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _forbidden(group: str, resource: str, name: str, why: str) -> errors.Forbidden:
    """Kubernetes' NewForbidden: message and details name the group-resource and the object."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource
    if not resource:
        return errors.Forbidden(f"forbidden: {why}", details)
    what = _group_resource(group, resource)
    return errors.Forbidden(f'{what} "{name}" is forbidden: {why}' if name else f"{what} is forbidden: {why}",
                            details)


def denial(a: Attributes) -> errors.Forbidden:
    """The 403 the authorizer answers, worded as Kubernetes words it."""
    user = a.user.name
    if not a.is_resource_request:
        return _forbidden("", "", "", f'User "{user}" cannot {a.verb} path "{a.path}"')
    scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    why = f'User "{user}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.api_group}" {scope}'
    return _forbidden(a.api_group, a.resource, a.name, why)


# ---- NodeRestriction ----

@dataclass(frozen=True)
class Body:
    """A request body read ahead of its handler; decoded only when a check needs it."""
    raw: bytes = b""
    content_type: str = ""

    def object(self) -> dict:
        from pocketkube.apiserver.bodies import decode_object

        return _mapping(decode_object(self.content_type, self.raw)) if self.raw else {}


def admit_node_request(a: Attributes, node: str, registry, body: Body) -> None:
    """NodeRestriction's checks for a write by `node`; raises Forbidden (or NotFound) to refuse.
    `body` is read for creates and for writes to the node's own Node, empty otherwise."""
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


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _body_name(body: dict) -> str:
    name = _mapping(body.get("metadata")).get("name")
    return name if isinstance(name, str) else ""


async def _read_body(request: web.Request) -> tuple[Body, web.Request]:
    """The body, and a request whose handler can still read it (the body replayed)."""
    from aiohttp.streams import StreamReader

    from pocketkube.apiserver.bodies import MAX_BODY

    data = b""
    while not request.content.at_eof():
        data += await request.content.read(MAX_BODY + 1 - len(data))
        if len(data) > MAX_BODY:
            raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {MAX_BODY}")
    replay = StreamReader(request.protocol, 2 ** 16, loop=asyncio.get_running_loop())
    replay.feed_data(data)
    replay.feed_eof()
    clone = request.clone()
    clone._payload = replay  # aiohttp has no public way to hand a handler a body already read
    return Body(data, request.headers.get("Content-Type", "")), clone


def _needs_body(a: Attributes, node: str | None) -> bool:
    """Self-reviews are answered from their body; NodeRestriction reads a node's creates and the
    writes to its own Node."""
    if _review_target(a) is not None:
        return True
    return node is not None and (a.verb == "create" or (
        (a.api_group, a.resource, a.subresource) == ("", "nodes", "") and a.verb in ("update", "patch")))


# ---- self reviews ----

_SSAR = ("authorization.k8s.io", "selfsubjectaccessreviews")
_SSRR = ("authorization.k8s.io", "selfsubjectrulesreviews")
_SSR = ("authentication.k8s.io", "selfsubjectreviews")


def _review_attributes(user: User, spec: dict) -> Attributes:
    res, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (res is None) == (non_res is None):
        kind = "SelfSubjectAccessReview"
        raise errors.Invalid(kind, "", [invalid(Path("spec", "resourceAttributes"), res, "exactly one of "
                                                "nonResourceAttributes or resourceAttributes must be specified")],
                             "authorization.k8s.io")
    if non_res is not None:
        if not isinstance(non_res, dict):
            raise errors.BadRequest("spec.nonResourceAttributes must be an object")
        return Attributes(user, str(non_res.get("verb") or ""), path=str(non_res.get("path") or "/"))
    if not isinstance(res, dict):
        raise errors.BadRequest("spec.resourceAttributes must be an object")
    return Attributes(user, str(res.get("verb") or ""), str(res.get("group") or ""), str(res.get("resource") or ""),
                      str(res.get("subresource") or ""), str(res.get("namespace") or ""), str(res.get("name") or ""))


def _rules_status(user: User) -> dict:
    resource_rules, url_rules = [], []
    for r in rules_for(user):
        if r.urls:
            url_rules.append({"verbs": list(r.verbs), "nonResourceURLs": list(r.urls)})
        else:
            resource_rules.append({"verbs": list(r.verbs), "apiGroups": list(r.api_groups),
                                   "resources": list(r.resources)})
    return {"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": False}


def _review_answer(kind: str, group: str, spec: dict, status: dict) -> web.Response:
    body = {"kind": kind, "apiVersion": f"{group}/v1", "metadata": {"creationTimestamp": None}}
    if spec:
        body["spec"] = spec
    body["status"] = status
    return web.Response(body=orjson.dumps(body), status=201, content_type="application/json")


def answer_review(kind_key: tuple[str, str], user: User, review: dict) -> web.Response:
    spec = _mapping(review.get("spec"))
    if kind_key == _SSAR:
        return _review_answer("SelfSubjectAccessReview", "authorization.k8s.io", spec,
                              {"allowed": allowed(_review_attributes(user, spec))})
    if kind_key == _SSRR:
        return _review_answer("SelfSubjectRulesReview", "authorization.k8s.io", spec, _rules_status(user))
    return _review_answer("SelfSubjectReview", "authentication.k8s.io", {},
                          {"userInfo": {"username": user.name, "groups": list(user.groups)}})


def _review_target(a: Attributes) -> tuple[str, str] | None:
    key = (a.api_group, a.resource)
    if a.verb == "create" and key in (_SSAR, _SSRR, _SSR) and not a.name:
        return key
    return None


# ---- impersonation (kubectl --as / --as-group) ----

def _impersonated(user: User, request: web.Request) -> User:
    """The user named by Impersonate-User/-Group, if `user` may impersonate them; else `user`."""
    name = request.headers.get("Impersonate-User", "")
    groups = tuple(request.headers.getall("Impersonate-Group", ()))
    if not name:
        if groups:
            raise errors.BadRequest(f"requested {list(groups)} without impersonating a user")
        return user
    for resource, target in (("users", name), *(("groups", g) for g in groups)):
        a = Attributes(user, "impersonate", "", resource, name=target)
        if not allowed(a):
            raise denial(a)
    return User(name, groups + ((AUTHENTICATED,) if AUTHENTICATED not in groups else ()))


# ---- middleware ----

@web.middleware
async def authorize(request: web.Request, handler):
    """After authentication: refuse what the user may not do, answer self-reviews."""
    ident = request.get("user")
    if ident is None:  # a public path (/healthz, /version)
        return await handler(request)
    user = _impersonated(User(ident[0], tuple(ident[1])), request)
    if user.name != ident[0]:
        request["user"] = (user.name, list(user.groups))
    a = request_attributes(user, request.method, request.path, request.query.get("watch") in ("true", "1"))
    if not allowed(a):
        raise denial(a)
    node = user.node_name
    body = Body()
    if _needs_body(a, node):
        body, request = await _read_body(request)
    review = _review_target(a)
    if review is not None:
        return answer_review(review, user, body.object())
    if node is not None and a.is_resource_request:
        admit_node_request(a, node, request.app[appkeys.REGISTRY], body)
    return await handler(request)
