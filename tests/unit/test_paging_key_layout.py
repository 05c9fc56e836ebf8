"""kube-apiserver's key layout (registry/codec.py) and the one-time move of a data dir written
with pocketkube's first layout (`/registry/<group|core>/<plural>/`)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from pocketkube.api.resources import RESOURCES
from pocketkube.registry import codec
from pocketkube.registry.registry import Registry
from pocketkube.storage.sqlite import SQLiteBackend

BY_PLURAL = {(r.group, r.plural): r for r in RESOURCES}


@pytest.mark.parametrize("group,plural,namespace,name,key", [
    ("", "pods", "default", "web", "/registry/pods/default/web"),
    ("", "services", "default", "web", "/registry/services/specs/default/web"),
    ("", "endpoints", "default", "web", "/registry/services/endpoints/default/web"),
    ("", "nodes", "", "n1", "/registry/minions/n1"),
    ("", "replicationcontrollers", "ns", "rc", "/registry/controllers/ns/rc"),
    ("", "namespaces", "", "ns", "/registry/namespaces/ns"),
    ("apps", "deployments", "ns", "d", "/registry/deployments/ns/d"),
    ("networking.k8s.io", "ingresses", "ns", "i", "/registry/ingress/ns/i"),
    ("rbac.authorization.k8s.io", "clusterroles", "", "admin", "/registry/clusterroles/admin"),
    ("coordination.k8s.io", "leases", "kube-node-lease", "n1", "/registry/leases/kube-node-lease/n1"),
    ("apiregistration.k8s.io", "apiservices", "", "v1.apps", "/registry/apiregistration.k8s.io/apiservices/v1.apps"),
])
def test_keys_are_kube_apiservers(group, plural, namespace, name, key):
    res = BY_PLURAL[(group, plural)]
    assert codec.key_for(res, namespace, name) == key
    assert key.startswith(codec.prefix_for(res, namespace))


def test_no_resource_prefix_contains_another():
    prefixes = [codec.resource_prefix(r) for r in RESOURCES]
    assert len(set(prefixes)) == len(prefixes)
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]


def _old_key(res, namespace: str, name: str) -> str:
    middle = f"{namespace}/{name}" if res.namespaced else name
    return f"/registry/{res.group or 'core'}/{res.plural}/{middle}"


async def test_an_old_data_dir_is_moved_once_keeping_revisions(tmp_path):
    path = str(tmp_path / "state.db")
    services, nodes = BY_PLURAL[("", "services")], BY_PLURAL[("", "nodes")]
    old = SQLiteBackend(path)
    await old.start()

    def obj(kind, name, ns=""):
        meta = {"name": name, **({"namespace": ns} if ns else {})}
        return codec.encode_at({"apiVersion": "v1", "kind": kind, "metadata": meta})
    svc = await old.create(_old_key(services, "default", "web"), obj("Service", "web", "default"))
    node = await old.create(_old_key(nodes, "", "n1"), obj("Node", "n1"))
    node2 = await old.update(_old_key(nodes, "", "n1"), obj("Node", "n1"), node.mod_revision)
    gone = await old.create(_old_key(nodes, "", "n2"), obj("Node", "n2"))
    await old.delete(gone.key)
    rev = old.current_revision()
    await old.close()

    registry = Registry(SQLiteBackend(path))
    await registry.start()
    try:
        assert registry.current_revision() == rev
        got = registry.services.get("default", "web")
        assert got["metadata"]["resourceVersion"] == str(svc.mod_revision)
        assert registry.store("", "nodes").get("", "n1")["metadata"]["resourceVersion"] == str(node2.mod_revision)
        assert registry.store("", "nodes").try_get("", "n2") is None
        nodes_list = await registry.store("", "nodes").list_page()
        assert [orjson.loads(v)["metadata"]["name"] for v in nodes_list.items] == ["n1"]
        # history moved too: a watch from before the writes replays them under the new keys
        events = []

        async def watch():
            async for ev in registry.store("", "nodes").watch("", node.mod_revision - 1):
                events.append((ev.type, ev.object()["metadata"]["name"], ev.revision))
                if len(events) == 4:
                    return
        await asyncio.wait_for(watch(), 5)
        assert [e[:2] for e in events] == [("ADDED", "n1"), ("MODIFIED", "n1"), ("ADDED", "n2"), ("DELETED", "n2")]
        # an old revision still reads as it was
        then = await registry.store("", "nodes").list_page(resource_version=str(gone.mod_revision),
                                                          resource_version_match="Exact")
        assert len(then.items) == 2
        created = await registry.services.create(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "new"}, "spec": {"ports": [{"port": 80}]}},
            "default")
        assert int(created["metadata"]["resourceVersion"]) == rev + 1
    finally:
        await registry.close()

    raw = SQLiteBackend(path)
    await raw.start()
    try:
        assert raw.get_now("/registry/services/specs/default/web") is not None
        assert raw.get_now("/registry/minions/n1") is not None
        assert not raw.range_now("/registry/core/")
        assert await raw.rename_prefixes(codec.legacy_renames(RESOURCES)) == 0  # once only
    finally:
        await raw.close()
