"""PersistentVolume, PersistentVolumeClaim and StorageClass through the real registry: defaults,
validation messages, DefaultStorageClass, protection finalizers, immutability and resize."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.apiserver.bootstrap import DEFAULT_STORAGE_CLASS
from pocketkube.apiserver.tables import table


def pvcs(r):
    return r.store("", "persistentvolumeclaims")


def pvs(r):
    return r.store("", "persistentvolumes")


def classes(r):
    return r.store("storage.k8s.io", "storageclasses")


def claim(name="c", **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def volume(name="v", **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                     "hostPath": {"path": "/tmp/x"}, **spec}}


async def invalid(coro) -> list[str]:
    with pytest.raises(errors.Invalid) as e:
        await coro
    return [c["field"] + ": " + c["message"] for c in e.value.details["causes"]]


async def test_a_claim_gets_the_default_class_pending_phase_and_protection(registry):
    await classes(registry).create(DEFAULT_STORAGE_CLASS)
    created = await pvcs(registry).create(claim(), "default")
    assert created["spec"]["storageClassName"] == "standard"
    assert created["spec"]["volumeMode"] == "Filesystem"
    assert created["status"] == {"phase": "Pending"}
    assert created["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    # "" asks for no class; a named class stays.
    assert (await pvcs(registry).create(claim("none", storageClassName=""), "default"))["spec"][
        "storageClassName"] == ""
    assert (await pvcs(registry).create(claim("named", storageClassName="fast"), "default"))["spec"][
        "storageClassName"] == "fast"


async def test_without_a_default_class_the_claim_has_none(registry):
    created = await pvcs(registry).create(claim(), "default")
    assert "storageClassName" not in created["spec"]


async def test_the_newest_default_class_wins(registry):
    await classes(registry).create(DEFAULT_STORAGE_CLASS)
    newer = {**DEFAULT_STORAGE_CLASS, "metadata": {**DEFAULT_STORAGE_CLASS["metadata"], "name": "zzz-newer"}}
    await classes(registry).create(newer)
    from pocketkube.api.volumes import default_class_name

    listed = classes(registry).list_objects()
    listed[1]["metadata"]["creationTimestamp"] = "2099-01-01T00:00:00Z"
    assert default_class_name(listed) == "zzz-newer"


async def test_claim_validation_messages(registry):
    msgs = await invalid(pvcs(registry).create(
        {"metadata": {"name": "bad"}, "spec": {"accessModes": ["Sometimes"], "volumeMode": "Tape",
                                                "resources": {"requests": {"storage": "0"}},
                                                "storageClassName": "Not_A_Name"}}, "default"))
    assert 'spec.accessModes: Unsupported value: "Sometimes": supported values: "ReadOnlyMany", ' \
           '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"' in msgs
    assert 'spec.resources.requests[storage]: Invalid value: "0": must be greater than zero' in msgs
    assert any(m.startswith('spec.volumeMode: Unsupported value: "Tape"') for m in msgs)
    assert any(m.startswith('spec.storageClassName: Invalid value: "Not_A_Name"') for m in msgs)
    msgs = await invalid(pvcs(registry).create({"metadata": {"name": "empty"}, "spec": {}}, "default"))
    assert msgs == ["spec.accessModes: Required value: at least 1 access mode is required",
                    "spec.resources[storage]: Required value"]
    msgs = await invalid(pvcs(registry).create(claim("rwop", accessModes=["ReadWriteOncePod", "ReadWriteOnce"]),
                                               "default"))
    assert msgs == ["spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]
    msgs = await invalid(pvcs(registry).create(claim("wrong", resources="lots"), "default"))
    assert msgs[0].startswith("spec.resources: Invalid value: \"lots\"")


async def test_claim_spec_is_immutable_but_a_bound_claim_may_grow_when_its_class_allows(registry):
    await classes(registry).create({**DEFAULT_STORAGE_CLASS, "metadata": {"name": "grow"},
                                    "allowVolumeExpansion": True})
    await classes(registry).create({**DEFAULT_STORAGE_CLASS, "metadata": {"name": "fixed"}})
    for name in ("grow", "fixed"):
        await pvcs(registry).create(claim(name, storageClassName=name), "default")

    def grow(obj):
        obj["spec"]["resources"]["requests"]["storage"] = "2Gi"
        return obj
    msgs = await invalid(pvcs(registry).guaranteed_update("default", "grow", grow))
    assert msgs == ["spec: Forbidden: spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims"]
    for name in ("grow", "fixed"):
        await pvcs(registry).guaranteed_update("default", name, lambda o: {**o, "status": {"phase": "Bound"}},
                                               subresource="status")
    grown = await pvcs(registry).guaranteed_update("default", "grow", grow)
    assert grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
    with pytest.raises(errors.Forbidden, match="only dynamically provisioned pvc can be resized"):
        await pvcs(registry).guaranteed_update("default", "fixed", grow)

    def shrink(obj):
        obj["spec"]["resources"]["requests"]["storage"] = "1Mi"
        return obj
    msgs = await invalid(pvcs(registry).guaranteed_update("default", "grow", shrink))
    assert msgs == ["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
    # Binding fills volumeName once.
    bound = await pvcs(registry).guaranteed_update("default", "fixed",
                                                   lambda o: {**o, "spec": {**o["spec"], "volumeName": "pv-1"}})
    assert bound["spec"]["volumeName"] == "pv-1"


async def test_volume_defaults_and_validation(registry):
    created = await pvs(registry).create(volume())
    assert created["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert created["status"]["phase"] == "Pending" and created["status"]["lastPhaseTransitionTime"]
    assert created["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    msgs = await invalid(pvs(registry).create({"metadata": {"name": "bad"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi", "cpu": "1"},
        "persistentVolumeReclaimPolicy": "Shred"}}))
    assert any(m.startswith("spec.capacity: Unsupported value") and '"storage"' in m for m in msgs)
    assert any(m.startswith('spec.persistentVolumeReclaimPolicy: Unsupported value: "Shred"') for m in msgs)
    assert "spec: Required value: must specify a volume type" in msgs
    msgs = await invalid(pvs(registry).create(volume("two", local={"path": "/a"})))
    assert "spec.local: Forbidden: may not specify more than 1 volume type" in msgs
    assert "spec.nodeAffinity: Required value: Local volume requires node affinity" in msgs
    msgs = await invalid(pvs(registry).create(volume("aff", nodeAffinity={"required": {"nodeSelectorTerms": []}})))
    assert msgs == ["spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node "
                    "selector term"]

    def move(obj):
        obj["spec"]["hostPath"] = {"path": "/elsewhere"}
        return obj
    msgs = await invalid(pvs(registry).guaranteed_update("", "v", move))
    assert msgs == ["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is forbidden to be changed"]


async def test_storage_class_defaults_validation_and_immutability(registry):
    created = await classes(registry).create({"metadata": {"name": "plain"}, "provisioner": "example.com/disk"})
    assert created["reclaimPolicy"] == "Delete" and created["volumeBindingMode"] == "Immediate"
    msgs = await invalid(classes(registry).create({"metadata": {"name": "bad"}, "reclaimPolicy": "Recycle",
                                                   "volumeBindingMode": "Later"}))
    assert msgs == ["provisioner: Required value",
                    'reclaimPolicy: Unsupported value: "Recycle": supported values: "Delete", "Retain"',
                    'volumeBindingMode: Unsupported value: "Later": supported values: "Immediate", '
                    '"WaitForFirstConsumer"']

    def change(obj):
        obj.update(provisioner="example.com/other", reclaimPolicy="Retain", volumeBindingMode="WaitForFirstConsumer",
                   parameters={"a": "b"})
        return obj
    msgs = await invalid(classes(registry).guaranteed_update("", "plain", change))
    assert msgs == ["parameters: Forbidden: updates to parameters are forbidden.",
                    "provisioner: Forbidden: updates to provisioner are forbidden.",
                    "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                    'volumeBindingMode: Invalid value: "WaitForFirstConsumer": field is immutable']
    # Other fields may change (allowVolumeExpansion, labels).
    updated = await classes(registry).guaranteed_update("", "plain", lambda o: {**o, "allowVolumeExpansion": True})
    assert updated["allowVolumeExpansion"] is True


def test_tables_print_upstreams_columns():
    now = 1_000_000.0
    pv = {"metadata": {"name": "pv1", "creationTimestamp": "1970-01-12T13:46:00Z"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                   "claimRef": {"namespace": "ns", "name": "c"}, "volumeMode": "Filesystem"},
          "status": {"phase": "Bound"}}
    t = table("persistentvolumes", "", [pv], now)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
        "VolumeAttributesClass", "Reason", "Age", "VolumeMode"]
    assert t["rows"][0]["cells"][:9] == ["pv1", "1Gi", "RWO,RWX", "Delete", "Bound", "ns/c", "standard", "<unset>", ""]
    pvc = {"metadata": {"name": "c", "creationTimestamp": "1970-01-12T13:46:00Z"},
           "spec": {"storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}},
           "status": {"phase": "Pending"}}
    t = table("persistentvolumeclaims", "", [pvc], now)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeAttributesClass", "Age",
        "VolumeMode"]
    assert t["rows"][0]["cells"][:7] == ["c", "Pending", "", "", "", "standard", "<unset>"]
    t = table("storageclasses", "storage.k8s.io", [DEFAULT_STORAGE_CLASS], now)
    assert t["rows"][0]["cells"][:5] == ["standard (default)", "pocketkube.io/local-path", "Delete",
                                         "WaitForFirstConsumer", "false"]
