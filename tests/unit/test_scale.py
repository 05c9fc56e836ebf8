"""The scale subresource of Deployments and ReplicaSets (registry/apps/scale.py)."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.registry.apps import scale
from pocketkube.registry.registry import Registry
from pocketkube.storage.sqlite import SQLiteBackend


@pytest.fixture
async def deployments(tmp_path):
    registry = Registry(SQLiteBackend(str(tmp_path / "state.db")))
    await registry.start()
    store = registry.store("apps", "deployments")
    await store.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                 "template": {"metadata": {"labels": {"app": "web"}},
                                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}},
                       "default")
    yield store
    await registry.close()


async def test_the_scale_view(deployments):
    s = await scale.get_scale(deployments, "default", "web")
    assert s["kind"] == "Scale" and s["apiVersion"] == "autoscaling/v1"
    assert s["spec"] == {"replicas": 2} and s["status"] == {"replicas": 0, "selector": "app=web"}
    assert s["metadata"]["resourceVersion"] == deployments.get("default", "web")["metadata"]["resourceVersion"]


async def test_a_new_scale_writes_spec_replicas(deployments):
    def three(current: dict) -> dict:
        return {**current, "spec": {"replicas": 3}}
    s = await scale.update_scale(deployments, "default", "web", three)
    assert s["spec"]["replicas"] == 3
    d = deployments.get("default", "web")
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] == 2
    dry = await scale.update_scale(deployments, "default", "web", lambda c: {"spec": {"replicas": 9}}, dry_run=True)
    assert dry["spec"]["replicas"] == 9 and deployments.get("default", "web")["spec"]["replicas"] == 3


@pytest.mark.parametrize("replicas", [-1, "3", True, None])
async def test_bad_replicas_are_invalid(deployments, replicas):
    with pytest.raises(errors.Invalid, match="spec.replicas"):
        await scale.update_scale(deployments, "default", "web", lambda c: {"spec": {"replicas": replicas}})


async def test_a_stale_scale_conflicts(deployments):
    stale = await scale.get_scale(deployments, "default", "web")
    await scale.update_scale(deployments, "default", "web", lambda c: {**c, "spec": {"replicas": 4}})
    with pytest.raises(errors.Conflict):
        await scale.update_scale(deployments, "default", "web", lambda c: {**stale, "spec": {"replicas": 5}})
