"""rbac/v1 protobuf bodies (what `kubectl create role|clusterrole|rolebinding|clusterrolebinding`
send) decode to the JSON kubectl would have sent, keys in Go's order."""

from __future__ import annotations

import json

from test_protobuf import body, sub

from pocketkube.apiserver.protobuf import decode_body

G = "rbac.authorization.k8s.io"


def meta(name: str) -> bytes:
    return sub(1, sub(1, name))


def test_role_rules_in_go_order():
    rule = sub(2, sub(1, "get") + sub(1, "list") + sub(2, "") + sub(3, "pods") + sub(4, "p1"))
    got = decode_body(body(f"{G}/v1", "Role", meta("r") + rule))
    assert json.dumps(got) == json.dumps({
        "kind": "Role", "apiVersion": f"{G}/v1", "metadata": {"name": "r"},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p1"]}]})


def test_cluster_role_urls_and_aggregation():
    rule = sub(2, sub(1, "get") + sub(5, "/logs/*"))
    agg = sub(3, sub(1, sub(1, sub(1, "team") + sub(2, "a"))))
    got = decode_body(body(f"{G}/v1", "ClusterRole", meta("c") + rule + agg))
    assert got["rules"] == [{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}]
    assert got["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"team": "a"}}]}


def test_bindings_subjects_and_role_ref():
    subjects = sub(2, sub(1, "User") + sub(2, G) + sub(3, "u1")) + \
        sub(2, sub(1, "ServiceAccount") + sub(3, "sa") + sub(4, "default"))
    ref = sub(3, sub(1, G) + sub(2, "ClusterRole") + sub(3, "view"))
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        got = decode_body(body(f"{G}/v1", kind, meta("b") + subjects + ref))
        assert json.dumps(got["subjects"]) == json.dumps([
            {"kind": "User", "apiGroup": G, "name": "u1"},
            {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}])
        assert list(got) == ["kind", "apiVersion", "metadata", "subjects", "roleRef"]
        assert got["roleRef"] == {"apiGroup": G, "kind": "ClusterRole", "name": "view"}
