"""Authorization of the /ui endpoints: each checks the resource verbs it reads with the normal
authorizer (system:masters, Node, RBAC), so the page shows exactly what the user could list
with kubectl; a 403 names the first permission missing, worded as the API's own 403s."""

from __future__ import annotations

from aiohttp import web

from pocketkube.apiserver import authz

# (verb, group, resource) the live map of one namespace needs; nodes are cluster-scoped.
MAP_NEEDS = (("get", "", "services"), ("list", "", "services"), ("watch", "", "services"),
             ("list", "discovery.k8s.io", "endpointslices"), ("watch", "discovery.k8s.io", "endpointslices"),
             ("list", "", "pods"), ("watch", "", "pods"))
NODE_NEEDS = (("get", "", "nodes"), ("list", "", "nodes"))


def user_of(request: web.Request) -> authz.User:
    name, groups = request["user"]
    return authz.User(name, tuple(groups))


def may(user: authz.User, policy, verb: str, group: str, resource: str, namespace: str = "", name: str = "") -> bool:
    return authz.allowed(authz.Attributes(user, verb, group, resource, namespace=namespace, name=name), policy)


def require(user: authz.User, policy, needs, namespace: str = "", name: str = "") -> None:
    """Raise the 403 of the first (verb, group, resource) in `needs` the user lacks."""
    for verb, group, resource in needs:
        a = authz.Attributes(user, verb, group, resource, namespace=namespace, name=name)
        if not authz.allowed(a, policy):
            raise authz.denial(a, policy)


def readable_namespaces(user: authz.User, policy, namespaces: list[str], group: str, resource: str) -> list[str]:
    """The namespaces whose `resource` the user may list (all of them with a cluster-wide grant)."""
    if may(user, policy, "list", group, resource):
        return namespaces
    return [ns for ns in namespaces if may(user, policy, "list", group, resource, ns)]
