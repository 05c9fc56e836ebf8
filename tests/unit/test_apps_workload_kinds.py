"""DaemonSet, StatefulSet, ControllerRevision and ReplicationController defaulting and validation,
through the real store (strategies as registry.py wires them)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.api import errors
from pocketkube.registry.apps import controllerrevisions, daemonsets, scale, statefulsets
from pocketkube.registry.core import replicationcontrollers

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def ds(**spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": copy.deepcopy(TEMPLATE), **spec}}


def sts(**spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "db",
                     "template": copy.deepcopy(TEMPLATE), **spec}}


def rc(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old", "namespace": "default"},
            "spec": {"template": copy.deepcopy(TEMPLATE), **spec}}


def msgs(errs) -> list[str]:
    return [str(e) for e in errs]


def test_daemonset_defaults():
    d = ds()
    daemonsets.default(d)
    assert d["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert d["spec"]["revisionHistoryLimit"] == 10
    assert d["metadata"]["annotations"] == {daemonsets.TEMPLATE_GENERATION: "1"}
    assert daemonsets.validate(d) == []
    o = ds(updateStrategy={"type": "OnDelete"})
    daemonsets.default(o)
    assert o["spec"]["updateStrategy"] == {"type": "OnDelete"}


def checked(obj):
    daemonsets.default(obj)
    return msgs(daemonsets.validate(obj))


def test_daemonset_rolling_update_rules():
    both = ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}})
    assert checked(both) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
    zero = ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert checked(zero) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    big = ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "120%", "maxSurge": 0}})
    assert "must not be greater than 100%" in checked(big)[0]
    bad = ds(updateStrategy={"type": "Sometimes"})
    assert 'supported values: "OnDelete", "RollingUpdate"' in checked(bad)[0]


def test_daemonset_template_rules():
    d = ds()
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    daemonsets.default(d)
    assert msgs(daemonsets.validate(d)) == [
        'spec.template.metadata.labels: Invalid value: {"app":"other"}: `selector` does not match template `labels`']
    d = ds()
    d["spec"]["template"]["spec"].update(restartPolicy="Never", activeDeadlineSeconds=5)
    out = checked(d)
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in out
    assert "spec.template.spec.activeDeadlineSeconds: Invalid value: 5: activeDeadlineSeconds in DaemonSet is not Supported" in out
    empty = ds(selector={})
    assert "empty selector is invalid for daemonset" in " ".join(checked(empty))


async def test_daemonset_template_generation_and_immutable_selector(registry):
    store = registry.store("apps", "daemonsets")
    created = await store.create(ds(), "default")
    assert created["metadata"]["annotations"][daemonsets.TEMPLATE_GENERATION] == "1"
    new = copy.deepcopy(created)
    new["metadata"]["annotations"] = {}  # the client cannot move it
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    updated = await store.update("default", "agent", new)
    assert updated["metadata"]["annotations"][daemonsets.TEMPLATE_GENERATION] == "2"
    assert updated["metadata"]["generation"] == 2
    relabel = copy.deepcopy(updated)
    relabel["spec"]["selector"] = {"matchLabels": {"app": "web", "x": "y"}}
    relabel["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    with pytest.raises(errors.Invalid) as e:
        await store.update("default", "agent", relabel)
    assert "spec.selector: Invalid value" in str(e.value) and "field is immutable" in str(e.value)


async def test_selector_not_matching_labels_is_422(registry):
    d = ds(selector={"matchLabels": {"app": "nope"}})
    with pytest.raises(errors.Invalid) as e:
        await registry.store("apps", "daemonsets").create(d, "default")
    assert e.value.code == 422
    assert "spec.template.metadata.labels" in str(e.value)


def test_statefulset_defaults():
    s = sts(volumeClaimTemplates=[{"metadata": {"name": "data"},
                                   "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}}])
    statefulsets.default(s)
    spec = s["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady" and spec["replicas"] == 1
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert statefulsets.validate(s) == []


def test_statefulset_validation_messages():
    s = sts(podManagementPolicy="Sometimes", updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}},
            persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep", "whenScaled": "Retain"},
            volumeClaimTemplates=[{"metadata": {}}], replicas=-1)
    out = msgs(statefulsets.validate(s))
    assert "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'" in out
    assert ("spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy "
            "'RollingUpdate'") in out
    assert ('spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": supported values: '
            '"Delete", "Retain"') in out
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in out
    assert any(m.startswith("spec.volumeClaimTemplates[0].metadata.name: Required value") for m in out)
    neg = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": -2}})
    statefulsets.default(neg)
    assert msgs(statefulsets.validate(neg)) == [
        "spec.updateStrategy.rollingUpdate.partition: Invalid value: -2: must be greater than or equal to 0"]


async def test_statefulset_update_rules(registry):
    store = registry.store("apps", "statefulsets")
    created = await store.create(sts(replicas=3), "default")
    ok = copy.deepcopy(created)
    ok["spec"].update(replicas=5, minReadySeconds=3,
                      updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    ok["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    updated = await store.update("default", "db", ok)
    assert updated["spec"]["replicas"] == 5
    bad = copy.deepcopy(updated)
    bad["spec"]["serviceName"] = "other"
    with pytest.raises(errors.Invalid) as e:
        await store.update("default", "db", bad)
    assert ("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
            "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
            "'minReadySeconds' are forbidden") in str(e.value)
    assert scale.scale_of(updated)["status"]["selector"] == "app=web"


def test_controller_revision_rules():
    rev = {"metadata": {"name": "r-1", "namespace": "default"}, "revision": 1}
    assert msgs(controllerrevisions.validate(rev)) == ["data: Required value: data is mandatory"]
    rev["data"] = {"spec": {}}
    assert controllerrevisions.validate(rev) == []
    changed = copy.deepcopy(rev)
    changed["data"] = {"spec": {"x": 1}}
    changed["revision"] = 2
    out = msgs(controllerrevisions.validate_update(changed, rev))
    assert any(m.startswith("data: Invalid value") and m.endswith("field is immutable") for m in out)
    assert not any(m.startswith("revision") for m in out)  # renumbered by a rollback, as upstream
    assert msgs(controllerrevisions.validate({**rev, "revision": -1})) == [
        "revision: Invalid value: -1: must be greater than or equal to 0"]


async def test_replication_controller(registry):
    store = registry.store("", "replicationcontrollers")
    created = await store.create(rc(), "default")
    assert created["spec"]["selector"] == {"app": "web"} and created["metadata"]["labels"] == {"app": "web"}
    assert created["spec"]["replicas"] == 1
    assert scale.scale_of(created)["status"]["selector"] == "app=web"
    mismatch = rc(selector={"app": "other"})
    replicationcontrollers.default(mismatch)
    assert msgs(replicationcontrollers.validate(mismatch)) == [
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`']
    no_template = {"metadata": {"name": "x", "namespace": "default"}, "spec": {}}
    replicationcontrollers.default(no_template)
    out = msgs(replicationcontrollers.validate(no_template))
    assert "spec.selector: Required value" in out and "spec.template: Required value" in out
    moved = copy.deepcopy(created)
    moved["spec"]["selector"] = {"app": "web", "v": "2"}
    moved["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert (await store.update("default", "old", moved))["spec"]["selector"] == {"app": "web", "v": "2"}  # mutable in v1
    s = await scale.update_scale(store, "default", "old", lambda cur: {**cur, "spec": {"replicas": 4}})
    assert s["spec"]["replicas"] == 4


json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=3), max_leaves=8)
spec_keys = st.sampled_from(["replicas", "selector", "template", "updateStrategy", "podManagementPolicy",
                             "volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy", "ordinals",
                             "revisionHistoryLimit", "minReadySeconds"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(spec_keys, json_values, max_size=4), json_values)
def test_random_json_never_raises(spec_fields, anything):
    for module, make in ((daemonsets, ds), (statefulsets, sts), (replicationcontrollers, rc)):
        for obj in (make(**spec_fields), {"metadata": {"name": "x"}, "spec": anything}):
            module.default(obj)
            module.validate(obj)
            module.validate_update(obj, make())
    controllerrevisions.validate({"metadata": {"name": "x"}, "data": anything, "revision": anything})


def test_tables():
    from pocketkube.apiserver.tables import table
    now = 1_700_000_100.0
    meta = {"name": "agent", "creationTimestamp": "2023-11-14T22:13:20Z"}
    d = {"metadata": meta, "spec": {"selector": {"matchLabels": {"app": "web"}},
                                    "template": {"spec": {"nodeSelector": {"disk": "ssd"},
                                                          "containers": [{"name": "c", "image": "nginx"}]}}},
         "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                    "updatedNumberScheduled": 1, "numberAvailable": 2}}
    out = table("daemonsets", "apps", [d], now)
    assert [c["name"] for c in out["columnDefinitions"]][:8] == [
        "Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"]
    assert out["rows"][0]["cells"] == ["agent", 3, 3, 2, 1, 2, "disk=ssd", "100s", "c", "nginx", "app=web"]
    s = {"metadata": meta, "spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    assert table("statefulsets", "apps", [s], now)["rows"][0]["cells"][:3] == ["agent", "2/3", "100s"]
    r = {"metadata": meta, "spec": {"replicas": 2, "selector": {"app": "web"}}, "status": {"replicas": 2}}
    assert table("replicationcontrollers", "", [r], now)["rows"][0]["cells"] == [
        "agent", 2, 2, 0, "100s", "", "", "app=web"]
    rev = {"metadata": {**meta, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                                      "uid": "u", "controller": True}]}, "revision": 4}
    assert table("controllerrevisions", "apps", [rev], now)["rows"][0]["cells"] == [
        "agent", "daemonset.apps/agent", 4, "100s"]
