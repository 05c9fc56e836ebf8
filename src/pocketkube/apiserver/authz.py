"""Authorization: who may do what, as Kubernetes decides it (authorization modes Node,RBAC).

In the order a request meets them:
- request attributes (verb, resource, namespace, name) read from the path alone, as the
  apiserver's RequestInfo does, so that authorization happens before any routing;
- impersonation (Impersonate-User/-Group, service accounts included), itself authorized;
- the authorizer chain: system:masters may do anything (the privileged group); nodes get what a
  kubelet and kube-proxy need (the Node authorizer's rules, _NODE_RULES); then RBAC, from the
  in-memory index of Roles and bindings that the RBAC stores' writes keep (registry.policy);
- the stages after it: access reviews answered from the chain (reviews.py), escalation
  prevention on RBAC writes (rbac/escalation.py), NodeRestriction and the Node authorizer's
  narrowing to what a node's pods use (noderestriction.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import appkeys
from pocketkube.apiserver.rbac import escalation
from pocketkube.registry.rbac.index import PolicyIndex
from pocketkube.registry.rbac.rules import PolicyRule, allowed_by

MASTERS = "system:masters"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
RBAC_GROUP = "rbac.authorization.k8s.io"
NODE_LEASE_NAMESPACE = "kube-node-lease"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
# Streams opened with GET (WebSocket) need `create` as the POST (SPDY) ones do: reading a pod must
# not grant a shell in it (upstream's AuthorizePodWebsocketUpgradeCreatePermission).
_CREATE_ON_GET = {("", "pods", "exec"), ("", "pods", "attach"), ("", "pods", "portforward")}
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
    if method in ("GET", "HEAD") and verb != "watch":  # HEAD is a get, as upstream's RequestInfo
        verb = "watch" if watch_param else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    subresource = rest[2] if len(rest) > 2 else ""
    if verb == "get" and (group, rest[0], subresource) in _CREATE_ON_GET:
        verb = "create"
    return Attributes(user, verb, group, rest[0], subresource, namespace, name)


# ---- the authorizer chain: system:masters, Node, RBAC ----

def _rule(verbs: str, groups: str, resources: str) -> PolicyRule:
    return PolicyRule(tuple(verbs.split()), tuple(groups.split(",")), tuple(resources.split()))


# The Node authorizer's rules (system:node) with kube-proxy's (system:node-proxier); which
# objects a node may write is narrowed further by NodeRestriction, and which secrets,
# configmaps, claims, volumes and service accounts it may read to those its pods use
# (noderestriction.NARROWED). One line per resource group: add a kind with a line.
_NODE_RULES = (
    _rule("get list watch create update patch delete", "", "nodes"),
    _rule("patch update", "", "nodes/status"),
    _rule("get list watch create delete", "", "pods"),
    _rule("patch update", "", "pods/status"),
    _rule("get list watch", "", "services endpoints namespaces"),
    _rule("get list watch", "discovery.k8s.io", "endpointslices"),
    _rule("create patch update", ",events.k8s.io", "events"),
    _rule("get create update patch delete", "coordination.k8s.io", "leases"),
    # What its pods use (env, imagePullSecrets, volumes); noderestriction.py narrows these to the
    # objects a pod bound to the node references, as upstream's graph does.
    _rule("get list watch", "", "configmaps secrets serviceaccounts persistentvolumeclaims persistentvolumes"),
    _rule("create", "", "serviceaccounts/token"),
    _rule("create get list watch", "certificates.k8s.io", "certificatesigningrequests"),  # renewal
    _rule("create", "authentication.k8s.io", "tokenreviews"),  # the kubelet's webhook authentication
)
_EVERYTHING = (PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), urls=("*",)))


def _privileged(user: User) -> bool:
    """system:masters bypasses RBAC (upstream's privileged-group authorizer)."""
    return MASTERS in user.groups


def rules_for(user: User, namespace: str, policy: PolicyIndex) -> tuple[PolicyRule, ...]:
    """Every rule the user holds in `namespace` ("" = cluster-wide rules only)."""
    if _privileged(user):
        return _EVERYTHING
    rbac = policy.rules_for(user.name, user.groups, namespace)
    return (*_NODE_RULES, *rbac) if user.node_name is not None else rbac


def allowed(a: Attributes, policy: PolicyIndex) -> bool:
    """Authorization modes Node,RBAC after the privileged group: the first that allows wins."""
    user = a.user
    if _privileged(user):
        return True
    if user.node_name is not None and allowed_by(_NODE_RULES, a):
        return True
    return allowed_by(policy.rules_for(user.name, user.groups, a.namespace), a)


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


def denial(a: Attributes, policy: PolicyIndex | None = None) -> errors.Forbidden:
    """The 403 the authorizer answers, worded as Kubernetes words it; with `policy`, the RBAC
    authorizer's reason (bindings to roles that do not exist) follows, as upstream's does."""
    e = _denial(a)
    missing = policy.missing_roles(a.user.name, a.user.groups, a.namespace) if policy is not None else []
    if missing:
        e.message += ": RBAC: " + (missing[0] if len(missing) == 1 else f"[{', '.join(missing)}]")
    return e


def _denial(a: Attributes) -> errors.Forbidden:
    user = a.user.name
    if not a.is_resource_request:
        return _forbidden("", "", "", f'User "{user}" cannot {a.verb} path "{a.path}"')
    scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    why = f'User "{user}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.api_group}" {scope}'
    return _forbidden(a.api_group, a.resource, a.name, why)


@dataclass(frozen=True)
class Body:
    """A request body read ahead of its handler; decoded only when a check needs it."""
    raw: bytes = b""
    content_type: str = ""

    def object(self) -> dict:
        from pocketkube.apiserver.bodies import decode_object

        return _mapping(decode_object(self.content_type, self.raw)) if self.raw else {}


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


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
    """Reviews are answered from their body; escalation prevention reads RBAC writes;
    NodeRestriction reads a node's creates and the writes to its own Node."""
    if reviews.review_target(a) is not None or _rbac_write(a):
        return True
    return node is not None and (a.verb == "create" or (
        (a.api_group, a.resource, a.subresource) == ("", "nodes", "") and a.verb in ("update", "patch")))


# ---- escalation prevention on RBAC writes ----

def _rbac_write(a: Attributes) -> bool:
    return (a.api_group == RBAC_GROUP and not a.subresource and a.verb in ("create", "update", "patch")
            and (a.resource in escalation.ROLE_KINDS or a.resource in escalation.BINDING_KINDS))


def admit_rbac_write(a: Attributes, registry, body: Body) -> None:
    """Refuse a Role/ClusterRole/binding write that would grant what its writer does not hold."""
    if _privileged(a.user):
        return
    store = registry.store(RBAC_GROUP, a.resource)
    old = store.try_get(a.namespace, a.name) if a.name else None
    if a.verb == "patch":
        from pocketkube.apiserver.patch import apply_patch

        if old is None and not body.content_type.startswith("application/apply-patch+yaml"):
            return  # the handler answers NotFound; an apply creates, checked as a create
        new = apply_patch(body.content_type, old or {}, body.raw, store.res.kind)
        new.setdefault("metadata", {}).setdefault("name", a.name)
    else:
        new = body.object()
    policy = registry.policy

    def can(verb: str, resource: str, namespace: str, name: str) -> bool:
        return allowed(Attributes(a.user, verb, RBAC_GROUP, resource, namespace=namespace, name=name), policy)

    escalation.check_write(a.resource, a.namespace, new, old, a.user.name, a.user.groups, policy, can,
                           lambda ns: rules_for(a.user, ns, policy))


# ---- CertificateApproval admission ----

_CERTIFICATES = "certificates.k8s.io"


def admit_csr_approval(a: Attributes, registry, policy: PolicyIndex) -> None:
    """Approving or denying a CSR needs `approve` on signers/<signerName> (or `<domain>/*`), as
    upstream's CertificateApproval admission plugin requires."""
    if a.verb not in ("update", "patch") or not a.name:
        return
    csr = registry.store(_CERTIFICATES, "certificatesigningrequests").try_get("", a.name)
    signer = ((csr or {}).get("spec") or {}).get("signerName", "")
    if not signer:
        return  # the handler answers NotFound
    names = (signer, signer.split("/", 1)[0] + "/*")
    if any(allowed(Attributes(a.user, "approve", _CERTIFICATES, "signers", name=n), policy) for n in names):
        return
    raise errors.Forbidden(f'certificatesigningrequests.certificates.k8s.io "{a.name}" is forbidden: user not '
                           f'permitted to approve requests with signerName "{signer}"',
                           {"name": a.name, "group": _CERTIFICATES, "kind": "certificatesigningrequests"})


# ---- impersonation (kubectl --as / --as-group) ----

def _impersonated(user: User, request: web.Request, policy: PolicyIndex) -> User:
    """The user named by Impersonate-User/-Group, if `user` may impersonate them; else `user`.
    A service account (system:serviceaccount:<ns>:<name>) is impersonated through the
    serviceaccounts resource and, without explicit groups, gets its fixed groups."""
    name = request.headers.get("Impersonate-User", "")
    groups = tuple(request.headers.getall("Impersonate-Group", ()))
    if not name:
        if groups:
            raise errors.BadRequest(f"requested {list(groups)} without impersonating a user")
        return user
    sa = name.split(":") if name.startswith(SA_PREFIX) else []
    if len(sa) == 4:
        target = Attributes(user, "impersonate", "", "serviceaccounts", namespace=sa[2], name=sa[3])
        if not groups:
            groups = (SA_GROUP, f"{SA_GROUP}:{sa[2]}")
    else:
        target = Attributes(user, "impersonate", "", "users", name=name)
    for a in (target, *(Attributes(user, "impersonate", "", "groups", name=g) for g in request.headers.getall(
            "Impersonate-Group", ()))):
        if not allowed(a, policy):
            raise denial(a, policy)
    return User(name, groups + ((AUTHENTICATED,) if AUTHENTICATED not in groups else ()))


# ---- middleware ----

@web.middleware
async def authorize(request: web.Request, handler):
    """After authentication: refuse what the user may not do, answer reviews, refuse RBAC
    escalation and what NodeRestriction forbids."""
    ident = request.get("user")
    if ident is None:  # a public path (/healthz, /version)
        return await handler(request)
    registry = request.app[appkeys.REGISTRY]
    policy = registry.policy
    user = _impersonated(User(ident[0], tuple(ident[1])), request, policy)
    if user.name != ident[0]:
        request["user"] = (user.name, list(user.groups))
    if request.path == "/ui" or request.path.startswith("/ui/"):
        return await handler(request)  # the live map checks the resource verbs each endpoint reads
    a = request_attributes(user, request.method, request.path, request.query.get("watch") in ("true", "1"))
    if not allowed(a, policy):
        raise denial(a, policy)
    node = user.node_name
    body = Body()
    if _needs_body(a, node):
        body, request = await _read_body(request)
    review = reviews.review_target(a)
    if review is not None:
        info = request.get("user_info") if user.name == ident[0] else None  # uid, extra of a token
        return reviews.answer_review(review, user, body.object(), policy, a.namespace, info)
    if _rbac_write(a):
        admit_rbac_write(a, registry, body)
    if (a.api_group, a.resource, a.subresource) == (_CERTIFICATES, "certificatesigningrequests", "approval"):
        admit_csr_approval(a, registry, policy)
    if node is not None and a.is_resource_request:
        noderestriction.admit_node_request(a, node, registry, body, request.query.get("fieldSelector", ""))
    return await handler(request)


# The middleware's stages that build on the authorizer above (they import it: imported last).
from pocketkube.apiserver import noderestriction, reviews  # noqa: E402
