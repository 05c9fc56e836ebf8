"""The Node authorizer's narrowing: a node reads only the secrets, configmaps, claims, volumes
and service accounts its own pods use."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from pocketkube.api import errors
from pocketkube.apiserver.authz import Attributes, Body, User
from pocketkube.apiserver.noderestriction import admit_node_request, check_node_reference, pod_references
from pocketkube.registry.rbac.index import PolicyIndex

NODE = User("system:node:n1", ("system:nodes", "system:authenticated"))

POD = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {
    "nodeName": "n1", "serviceAccountName": "builder", "imagePullSecrets": [{"name": "pull"}],
    "volumes": [{"name": "v1", "secret": {"secretName": "vol-secret"}},
                {"name": "v2", "configMap": {"name": "vol-cm"}},
                {"name": "v3", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "v4", "ephemeral": {}},
                {"name": "v5", "projected": {"sources": [{"secret": {"name": "proj-s"}},
                                                         {"configMap": {"name": "proj-cm"}}]}}],
    "containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-s"}}},
                                         {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm"}}}],
                    "envFrom": [{"secretRef": {"name": "from-s"}}, {"configMapRef": {"name": "from-cm"}}]}]}}


def test_pod_references():
    assert pod_references(POD) == {
        ("serviceaccounts", "builder"), ("secrets", "pull"), ("secrets", "vol-secret"), ("configmaps", "vol-cm"),
        ("persistentvolumeclaims", "data"), ("persistentvolumeclaims", "web-v4"), ("secrets", "proj-s"),
        ("configmaps", "proj-cm"), ("secrets", "env-s"), ("configmaps", "env-cm"), ("secrets", "from-s"),
        ("configmaps", "from-cm")}
    assert pod_references({"spec": "junk"}) == {("serviceaccounts", "default")}


class _Store:
    def __init__(self, objects: list[dict]) -> None:
        self.objects = objects

    def list(self, namespace: str = "") -> SimpleNamespace:
        return SimpleNamespace(items=[orjson.dumps(o) for o in self.objects
                                      if not namespace or o["metadata"].get("namespace") == namespace])

    def try_get(self, namespace: str, name: str) -> dict | None:
        return next((o for o in self.objects if o["metadata"]["name"] == name), None)


class _Registry:
    def __init__(self) -> None:
        pvc = {"metadata": {"name": "data", "namespace": "ns"}, "spec": {"volumeName": "pv-1"}}
        other = {"metadata": {"name": "x", "namespace": "ns"},
                 "spec": {"nodeName": "n2", "volumes": [{"name": "v", "secret": {"secretName": "theirs"}}]}}
        self.stores = {"pods": _Store([POD, other]), "persistentvolumeclaims": _Store([pvc])}
        self.policy = PolicyIndex()

    def store(self, group: str, plural: str) -> _Store:
        return self.stores[plural]


@pytest.mark.parametrize("resource, name, ok", [
    ("secrets", "env-s", True), ("secrets", "theirs", False), ("configmaps", "from-cm", True),
    ("persistentvolumeclaims", "data", True), ("persistentvolumes", "pv-1", True),
    ("persistentvolumes", "pv-2", False), ("serviceaccounts", "builder", True), ("secrets", "", False)])
def test_node_reads_only_what_its_pods_use(resource, name, ok):
    a = Attributes(NODE, "get", "", resource, "", "" if resource == "persistentvolumes" else "ns", name)
    if ok:
        check_node_reference(a, "n1", _Registry())
        return
    with pytest.raises(errors.Forbidden) as e:
        check_node_reference(a, "n1", _Registry())
    assert e.value.message.endswith("no relationship found between node 'n1' and this object")


def test_a_watch_of_one_object_by_field_selector():
    a = Attributes(NODE, "watch", "", "configmaps", "", "ns", "")
    check_node_reference(a, "n1", _Registry(), "metadata.name=vol-cm")
    with pytest.raises(errors.Forbidden):
        check_node_reference(a, "n1", _Registry(), "")


def test_only_the_node_authorizers_own_grants_are_narrowed():
    registry = _Registry()
    a = Attributes(NODE, "get", "", "secrets", "", "ns", "theirs")
    with pytest.raises(errors.Forbidden):
        admit_node_request(a, "n1", registry, Body())
    registry.policy.set_role("ClusterRole", {"metadata": {"name": "s"}, "rules": [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]})
    registry.policy.set_binding("ClusterRoleBinding", {"metadata": {"name": "s"}, "roleRef": {
        "kind": "ClusterRole", "name": "s"}, "subjects": [{"kind": "Group", "name": "system:nodes"}]})
    admit_node_request(a, "n1", registry, Body())  # RBAC grants it outright


def test_node_and_references_are_remembered_per_stored_version(monkeypatch):
    from pocketkube.apiserver import noderestriction as nr
    monkeypatch.setattr(nr, "_refs_cache", {})
    raw = orjson.dumps(POD)
    node, refs = nr.node_and_references(raw)
    assert node == "n1" and refs == pod_references(POD)
    assert nr.node_and_references(raw) is nr._refs_cache[raw]  # decoded once
    # A status write's new version of the same pod: the same answer, decoded afresh.
    assert nr.node_and_references(orjson.dumps({**POD, "status": {"phase": "Succeeded"}}))[1] == refs
    assert nr.node_and_references(orjson.dumps({"metadata": {"name": "p"}, "spec": {}})) == \
        ("", frozenset({("serviceaccounts", "default")}))
    monkeypatch.setattr(nr, "_REFS_CACHE_MAX", 3)
    nr.node_and_references(orjson.dumps({"metadata": {"name": "q"}, "spec": {"nodeName": "n2"}}))
    assert len(nr._refs_cache) == 1  # full: dropped, then the new one remembered


def test_a_pod_of_another_node_naming_this_node_elsewhere_grants_nothing():
    # The byte search for the node's name is only a pre-filter: the decoded spec decides.
    registry = _Registry()
    registry.stores["pods"] = _Store([{"metadata": {"name": "y", "namespace": "ns", "annotations": {
        "x": '"nodeName":"n1"'}}, "spec": {"nodeName": "n2", "serviceAccountName": "sneaky"}}])
    with pytest.raises(errors.Forbidden):
        check_node_reference(Attributes(NODE, "get", "", "serviceaccounts", "", "ns", "sneaky"), "n1", registry)
