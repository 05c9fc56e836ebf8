"""RBAC's pure decisions: rule matching, the policy index, escalation coverage and wording."""

from __future__ import annotations

import pytest

from pocketkube.apiserver.authz import Attributes, User, allowed, rules_for
from pocketkube.apiserver.rbac import escalation
from pocketkube.registry.rbac.index import PolicyIndex
from pocketkube.registry.rbac.rules import PolicyRule, compact_string, uncovered

ALICE = User("alice", ("devs", "system:authenticated"))
G = "rbac.authorization.k8s.io"


def res(verb: str, resource: str, namespace: str = "ns", *, group: str = "", sub: str = "", name: str = "",
        user: User = ALICE) -> Attributes:
    return Attributes(user, verb, group, resource, sub, namespace, name)


def rule(verbs, groups=("",), resources=(), names=(), urls=()) -> dict:
    out = {"verbs": list(verbs)}
    if urls:
        return {**out, "nonResourceURLs": list(urls)}
    out.update(apiGroups=list(groups), resources=list(resources))
    if names:
        out["resourceNames"] = list(names)
    return out


@pytest.mark.parametrize("r, a, ok", [
    (rule(["get"], [""], ["pods"]), res("get", "pods"), True),
    (rule(["get"], [""], ["pods"]), res("delete", "pods"), False),
    (rule(["*"], [""], ["pods"]), res("delete", "pods"), True),
    (rule(["get"], ["apps"], ["pods"]), res("get", "pods"), False),
    (rule(["get"], ["*"], ["*"]), res("get", "deployments", group="apps"), True),
    (rule(["get"], [""], ["pods"]), res("get", "pods", sub="log"), False),
    (rule(["get"], [""], ["pods/log"]), res("get", "pods", sub="log"), True),
    (rule(["get"], ["*"], ["*/scale"]), res("get", "deployments", group="apps", sub="scale"), True),
    (rule(["get"], ["*"], ["*/scale"]), res("get", "deployments", group="apps"), False),
    (rule(["get"], [""], ["pods"], names=["a"]), res("get", "pods", name="a"), True),
    (rule(["get"], [""], ["pods"], names=["a"]), res("get", "pods", name="b"), False),
    (rule(["get"], [""], ["pods"], names=["a"]), res("list", "pods"), False),
    (rule(["get"], urls=["/healthz"]), Attributes(ALICE, "get", path="/healthz"), True),
    (rule(["get"], urls=["/apis/*"]), Attributes(ALICE, "get", path="/apis/apps/v1"), True),
    (rule(["get"], urls=["/apis/*"]), Attributes(ALICE, "get", path="/api"), False),
    (rule(["get"], urls=["*"]), Attributes(ALICE, "get", path="/metrics"), True),
    (rule(["get"], urls=["*"]), res("get", "pods"), False),
])
def test_rule_matching(r, a, ok):
    assert PolicyRule.parse(r).allows(a) is ok


def role(kind: str, name: str, rules: list[dict], namespace: str = "") -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(kind: str, name: str, ref_kind: str, ref: str, subjects: list[dict], namespace: str = "") -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref},
            "subjects": subjects}


@pytest.fixture
def policy() -> PolicyIndex:
    p = PolicyIndex()
    p.set_role("Role", role("Role", "pod-reader", [rule(["get", "list"], [""], ["pods"])], "ns"))
    p.set_role("ClusterRole", role("ClusterRole", "node-reader", [rule(["get"], [""], ["nodes"])]))
    p.set_binding("RoleBinding", binding("RoleBinding", "rb", "Role", "pod-reader",
                                         [{"kind": "User", "name": "alice"}], "ns"))
    return p


def test_bindings_grant_in_their_namespace_only(policy):
    assert allowed(res("get", "pods"), policy)
    assert not allowed(res("get", "pods", "other"), policy)
    assert not allowed(res("delete", "pods"), policy)
    assert not allowed(res("get", "nodes", ""), policy)


def test_groups_service_accounts_and_cluster_bindings(policy):
    policy.set_binding("ClusterRoleBinding", binding("ClusterRoleBinding", "crb", "ClusterRole", "node-reader",
                                                     [{"kind": "Group", "name": "devs"}]))
    assert allowed(res("get", "nodes", ""), policy)
    sa = User("system:serviceaccount:ns:builder", ("system:serviceaccounts", "system:serviceaccounts:ns"))
    assert not allowed(res("get", "pods", user=sa), policy)
    # a RoleBinding's ServiceAccount subject without a namespace is in the binding's namespace
    policy.set_binding("RoleBinding", binding("RoleBinding", "sa", "Role", "pod-reader",
                                              [{"kind": "ServiceAccount", "name": "builder"}], "ns"))
    assert allowed(res("get", "pods", user=sa), policy)
    policy.set_binding("RoleBinding", binding("RoleBinding", "grp", "ClusterRole", "node-reader",
                                              [{"kind": "Group", "name": "system:serviceaccounts:ns"}], "ns"))
    assert allowed(res("get", "nodes", user=sa), policy)  # a ClusterRole bound in a namespace applies there


def test_index_follows_updates_and_deletes(policy):
    assert allowed(res("get", "pods"), policy)
    policy.set_role("Role", role("Role", "pod-reader", [rule(["list"], [""], ["pods"])], "ns"))
    assert not allowed(res("get", "pods"), policy)
    assert allowed(res("list", "pods"), policy)
    policy.delete_binding("RoleBinding", binding("RoleBinding", "rb", "Role", "pod-reader", [], "ns"))
    assert not allowed(res("list", "pods"), policy)
    assert policy.rules_for("alice", ALICE.groups, "ns") == ()


def test_masters_and_nodes_bypass_rbac():
    p = PolicyIndex()
    assert allowed(res("delete", "anything", user=User("root", ("system:masters",))), p)
    node = User("system:node:n1", ("system:nodes", "system:authenticated"))
    assert allowed(res("patch", "nodes", "", sub="status", user=node), p)
    assert not allowed(res("delete", "secrets", user=node), p)  # reads: narrowed in noderestriction.py
    assert rules_for(node, "", p)[0].resources == ("nodes",)


def test_uncovered_lists_what_the_owner_lacks_compactly():
    owner = [PolicyRule(("get", "list"), ("",), ("pods",)), PolicyRule(("*",), ("apps",), ("*",))]
    wanted = [PolicyRule(("get", "delete", "patch"), ("",), ("pods", "services")),
              PolicyRule(("get",), ("apps",), ("deployments",))]
    missing = uncovered(owner, wanted)
    assert [compact_string(r) for r in missing] == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete" "patch"]}',
        '{APIGroups:[""], Resources:["services"], Verbs:["get" "delete" "patch"]}']
    assert uncovered([PolicyRule(("*",), ("*",), ("*",))], wanted) == []
    assert uncovered([PolicyRule(("get",), ("*",), ("*/scale",))],
                     [PolicyRule(("get",), ("apps",), ("deployments/scale",))]) == []
    assert uncovered([PolicyRule(("get",), ("",), ("pods",), ("a",))], [PolicyRule(("get",), ("",), ("pods",))])
    assert not uncovered([PolicyRule(("get",), urls=("/apis/*",))], [PolicyRule(("get",), urls=("/apis/apps",))])


def _check(policy, resource, new, old=None, user=ALICE, namespace="ns"):
    def can(verb, resource, ns, name):
        return allowed(Attributes(user, verb, G, resource, namespace=ns, name=name), policy)
    escalation.check_write(resource, namespace, new, old, user.name, user.groups, policy, can,
                           lambda ns: rules_for(user, ns, policy))


def test_escalation_roles(policy):
    mine = role("Role", "r", [rule(["get"], [""], ["pods"])], "ns")
    _check(policy, "roles", mine)  # alice holds get pods in ns
    more = role("Role", "r", [rule(["get", "delete"], [""], ["pods"])], "ns")
    with pytest.raises(Exception) as e:
        _check(policy, "roles", more)
    assert e.value.code == 403
    assert e.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) '
        'is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    _check(policy, "roles", more, old=more)  # unchanged rules are not checked again
    policy.set_role("Role", role("Role", "escalator", [rule(["escalate"], [G], ["roles"])], "ns"))
    policy.set_binding("RoleBinding", binding("RoleBinding", "esc", "Role", "escalator",
                                              [{"kind": "User", "name": "alice", "apiGroup": G}], "ns"))
    _check(policy, "roles", more)


def test_escalation_bindings(policy):
    policy.set_role("ClusterRole", role("ClusterRole", "admin-ish", [rule(["*"], ["*"], ["*"])]))
    rb = binding("RoleBinding", "x", "ClusterRole", "admin-ish", [{"kind": "User", "name": "bob"}], "ns")
    with pytest.raises(Exception) as e:
        _check(policy, "rolebindings", rb)
    assert e.value.code == 403 and "is attempting to grant RBAC permissions not currently held" in e.value.message
    _check(policy, "rolebindings", binding("RoleBinding", "y", "Role", "pod-reader", [], "ns"))
    missing = binding("RoleBinding", "z", "Role", "nope", [], "ns")
    with pytest.raises(Exception) as e:
        _check(policy, "rolebindings", missing)
    assert e.value.message.endswith('roles.rbac.authorization.k8s.io "nope" not found')
    policy.set_role("ClusterRole", role("ClusterRole", "binder", [rule(["bind"], [G], ["clusterroles"],
                                                                      names=["admin-ish"])]))
    policy.set_binding("RoleBinding", binding("RoleBinding", "b", "ClusterRole", "binder",
                                              [{"kind": "User", "name": "alice"}], "ns"))
    _check(policy, "rolebindings", rb)


def test_a_denial_names_bindings_to_missing_roles(policy):
    from pocketkube.apiserver.authz import denial

    a = res("delete", "pods", name="p")
    assert denial(a, policy).message.endswith('in the namespace "ns"')
    policy.set_binding("RoleBinding", binding("RoleBinding", "ghostly", "Role", "ghost",
                                              [{"kind": "User", "name": "alice"}], "ns"))
    assert denial(a, policy).message == ('pods "p" is forbidden: User "alice" cannot delete resource "pods" in API '
                                         'group "" in the namespace "ns": RBAC: role.rbac.authorization.k8s.io '
                                         '"ghost" not found')
    policy.set_binding("ClusterRoleBinding", binding("ClusterRoleBinding", "c", "ClusterRole", "gone",
                                                     [{"kind": "Group", "name": "devs"}]))
    assert denial(a, policy).message.endswith(': RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, '
                                              'role.rbac.authorization.k8s.io "ghost" not found]')
