"""RBAC objects validated and defaulted as upstream's pkg/apis/rbac/validation; the bootstrap
policy's reconciliation (pure part)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.apiserver.rbac import policy
from pocketkube.apiserver.rbac.reconcile import reconciled_binding, reconciled_role
from pocketkube.registry.rbac import strategies as s
from pocketkube.registry.rbac.index import PolicyIndex

G = "rbac.authorization.k8s.io"


def msgs(errs) -> list[str]:
    return [str(e) for e in errs]


def role(rules, namespace="ns", name="r") -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{G}/v1", "kind": "Role", "metadata": meta, "rules": rules}


def test_rules():
    assert s.validate_role(role([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])) == []
    assert msgs(s.validate_role(role([{"apiGroups": [""], "resources": ["pods"]}]))) == [
        "rules[0].verbs: Required value: verbs must contain at least one value"]
    assert msgs(s.validate_role(role([{"verbs": ["get"]}]))) == [
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[0].resources: Required value: resource rules must supply at least one resource"]
    assert msgs(s.validate_role(role([{"verbs": ["get"], "nonResourceURLs": ["/x"]}]))) == [
        'rules[0].nonResourceURLs: Invalid value: ["/x"]: namespaced rules cannot apply to non-resource URLs']
    cr = role([{"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]}], namespace="")
    assert msgs(s.validate_cluster_role(cr)) == [
        'rules[0].nonResourceURLs: Invalid value: ["/x"]: rules cannot apply to both regular resources and '
        'non-resource URLs']
    assert s.validate_cluster_role(role([{"verbs": ["get"], "nonResourceURLs": ["/x"]}], namespace="")) == []
    assert msgs(s.validate_role(role([], name="a/b"))) == ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    assert s.validate_role(role([], name="system:thing")) == []


def test_aggregation_rule():
    cr = role([], namespace="")
    cr["aggregationRule"] = {"clusterRoleSelectors": []}
    assert msgs(s.validate_cluster_role(cr)) == [
        "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if "
        "aggregationRule is non-nil"]
    cr["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}
    assert s.validate_cluster_role(cr) == []


def rb(ref_kind="Role", subjects=None, namespace="ns") -> dict:
    b = {"apiVersion": f"{G}/v1", "kind": "RoleBinding",
         "metadata": {"name": "b", **({"namespace": namespace} if namespace else {})},
         "roleRef": {"apiGroup": G, "kind": ref_kind, "name": "r"}, "subjects": subjects or []}
    s.default_binding(b)
    return b


def test_bindings():
    assert s.validate_role_binding(rb(subjects=[{"kind": "User", "name": "u"},
                                                {"kind": "ServiceAccount", "name": "sa"}])) == []
    assert msgs(s.validate_cluster_role_binding(rb(namespace=""))) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"']
    assert msgs(s.validate_cluster_role_binding(rb("ClusterRole", [{"kind": "ServiceAccount", "name": "x"}], ""))) \
        == ["subjects[0].namespace: Required value"]
    assert msgs(s.validate_role_binding(rb(subjects=[{"kind": "Robot", "name": "x"}]))) == [
        'subjects[0].kind: Unsupported value: "Robot": supported values: "Group", "ServiceAccount", "User"']
    assert msgs(s.validate_role_binding(rb(subjects=[{"kind": "User", "name": "x", "apiGroup": "v1"}]))) == [
        f'subjects[0].apiGroup: Unsupported value: "v1": supported values: "{G}"']
    assert msgs(s.validate_role_binding(rb(subjects=[{"kind": "ServiceAccount", "name": "x", "apiGroup": G}]))) == [
        f'subjects[0].apiGroup: Unsupported value: "{G}": supported values: ""']
    bad = rb()
    bad["roleRef"] = {"apiGroup": "x", "kind": "Role"}
    assert msgs(s.validate_role_binding(bad)) == [
        f'roleRef.apiGroup: Unsupported value: "x": supported values: "{G}"', "roleRef.name: Required value"]


def test_role_ref_is_immutable():
    strategy = s.strategies(PolicyIndex())["RoleBinding"]
    old = rb()
    new = copy.deepcopy(old)
    new["roleRef"]["name"] = "other"
    assert msgs(strategy.validate_update(new, old)) == [
        f'roleRef: Invalid value: {{"apiGroup":"{G}","kind":"Role","name":"other"}}: cannot change roleRef']


JUNK = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(JUNK, JUNK, JUNK, JUNK)
def test_wrong_types_are_field_errors_never_exceptions(rules, ref, subjects, agg):
    for validate in (s.validate_role, s.validate_cluster_role, s.validate_role_binding,
                     s.validate_cluster_role_binding):
        obj = {"metadata": {"name": "x", "namespace": "ns"}, "rules": rules, "roleRef": ref, "subjects": subjects,
               "aggregationRule": agg}
        s.default_binding(obj)
        validate(obj)
        validate({"metadata": {"name": "x"}, "rules": [rules], "subjects": [subjects]})


def test_bootstrap_policy_is_valid():
    for r in policy.cluster_roles():
        assert s.validate_cluster_role(r) == [], r["metadata"]["name"]
    for b in policy.cluster_role_bindings():
        assert s.validate_cluster_role_binding(b) == [], b["metadata"]["name"]
    names = {r["metadata"]["name"] for r in policy.cluster_roles()}
    assert {b["roleRef"]["name"] for b in policy.cluster_role_bindings()} <= names
    assert {"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
            "system:controller:replicaset-controller"} <= names


def test_reconcile_adds_what_is_missing_and_keeps_the_rest():
    expected = policy.cluster_role("system:x", [policy.rule("get list", "", "pods")])
    existing = copy.deepcopy(expected)
    assert reconciled_role(existing, expected) is None
    existing["rules"] = [policy.rule("get", "", "pods"), policy.rule("get", "", "secrets")]
    existing["metadata"]["labels"] = {"mine": "yes"}
    out = reconciled_role(existing, expected)
    assert out["rules"] == [*existing["rules"], {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]
    assert out["metadata"]["labels"]["mine"] == "yes"
    existing["metadata"]["annotations"] = {policy.AUTOUPDATE: "false"}
    assert reconciled_role(existing, expected) is None
    want = policy.cluster_binding("system:x", [policy.group("a")])
    have = {**copy.deepcopy(want), "subjects": [policy.user("me")]}
    assert reconciled_binding(have, want)["subjects"] == [policy.user("me"), policy.group("a")]


@pytest.mark.parametrize("name, errs", [(".", ["may not be '.'"]), ("a%b", ["may not contain '%'"]), ("ok", [])])
def test_path_segment_names(name, errs):
    assert s.path_segment_errors(name) == errs
