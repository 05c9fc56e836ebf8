"""The PV binder, the local-path provisioner, the protection controllers and the scheduler together
on the fake client: a WaitForFirstConsumer claim is provisioned on the pod's node, bound, protected
while used, and deleted with its directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from async_waits import until

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.base import SharedInformers
from pocketkube.controllers.persistentvolume import PersistentVolumeController
from pocketkube.controllers.provisioner import LocalPathProvisioner
from pocketkube.controllers.volume_protection import VolumeProtectionController
from pocketkube.scheduler.scheduler import Scheduler, SchedulerSettings
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
EVENTS = BY_PLURAL[("", "events")]
PVS = BY_PLURAL[("", "persistentvolumes")]
PVCS = BY_PLURAL[("", "persistentvolumeclaims")]
CLASSES = BY_PLURAL[("storage.k8s.io", "storageclasses")]


def node(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}}


def storage_class(name: str, mode: str = "WaitForFirstConsumer") -> dict:
    return {"metadata": {"name": name}, "provisioner": "pocketkube.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": mode}


def claim(name: str, cls: str = "standard") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "finalizers": ["kubernetes.io/pvc-protection"]},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": cls}}


def pod(name: str, claim_name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim_name}}]}}


def get(fake: FakeClient, res, name: str) -> dict | None:
    return next((o for o in fake.objects(res) if o["metadata"]["name"] == name), None)


def reasons(fake: FakeClient, name: str) -> list[str]:
    return [e["reason"] for e in fake.objects(EVENTS) if e["involvedObject"]["name"] == name]


@pytest.fixture
async def plane(tmp_path):
    fake = FakeClient((NODES, node("n1")), (NODES, node("n2")), (CLASSES, storage_class("standard")),
                      (CLASSES, storage_class("now", "Immediate")))
    informers = SharedInformers(fake)
    scheduler = Scheduler(fake, SchedulerSettings(initial_backoff=0.01, max_backoff=0.05, seed=3),
                          pod_informer=informers.get(PODS), node_informer=informers.get(NODES),
                          volume_informers=(informers.get(PVCS), informers.get(PVS), informers.get(CLASSES)))
    async with controllers_on(fake, lambda informers, recorder: [
            PersistentVolumeController(fake, informers, recorder),
            LocalPathProvisioner(fake, informers, recorder, str(tmp_path / "{node}")),
            VolumeProtectionController(fake, informers)], component="test", informers=informers):
        await scheduler.start()
        yield fake
        await scheduler.stop()


async def test_wait_for_first_consumer_then_provision_bind_protect_and_delete(plane):
    fake = plane
    await fake.create(PVCS, claim("data"), "ns")
    await until(lambda: "WaitForFirstConsumer" in reasons(fake, "data"), "the wait event")
    assert get(fake, PVCS, "data")["status"]["phase"] == "Pending" and not fake.objects(PVS)

    await fake.create(PODS, pod("p", "data"), "ns")
    chosen = await until(lambda: deep_get(get(fake, PODS, "p"), "spec", "nodeName"), "the pod bound")
    pvc = get(fake, PVCS, "data")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == chosen
    pv = get(fake, PVS, pvc["spec"]["volumeName"])
    assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    directory = Path(pv["spec"]["hostPath"]["path"])
    assert directory.parent.name == chosen and directory.is_dir()
    await until(lambda: {"ExternalProvisioning", "Provisioning", "ProvisioningSucceeded"} <= set(
        reasons(fake, "data")), "the provisioning events")

    # A second pod of the claim goes to the same node.
    await fake.create(PODS, pod("q", "data"), "ns")
    assert await until(lambda: deep_get(get(fake, PODS, "q"), "spec", "nodeName"), "q bound") == chosen

    # Deleting the claim waits for its pods; then the volume and its directory go (reclaim Delete).
    await fake.delete(PVCS, "ns", "data")
    await asyncio.sleep(0)
    assert get(fake, PVCS, "data")["metadata"].get("deletionTimestamp")
    await fake.delete(PODS, "ns", "p", grace_period=0)
    await fake.delete(PODS, "ns", "q", grace_period=0)
    await until(lambda: get(fake, PVCS, "data") is None, "the claim gone")
    await until(lambda: not fake.objects(PVS), "the volume gone")
    assert not directory.exists()


async def test_immediate_class_provisions_at_once_and_a_missing_claim_blocks_the_pod(plane):
    fake = plane
    await fake.create(PVCS, claim("fast", cls="now"), "ns")
    await until(lambda: deep_get(get(fake, PVCS, "fast"), "status", "phase") == "Bound", "bound at once")
    pv = get(fake, PVS, get(fake, PVCS, "fast")["spec"]["volumeName"])
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["n1"]

    await fake.create(PODS, pod("lonely", "absent"), "ns")

    def message():
        conds = deep_get(get(fake, PODS, "lonely"), "status", "conditions", default=None) or []
        return next((c["message"] for c in conds if c["type"] == "PodScheduled"), None)
    assert 'persistentvolumeclaim "absent" not found' in await until(message, "unschedulable")
    await fake.create(PVCS, claim("absent", cls="now"), "ns")
    placed = await until(lambda: deep_get(get(fake, PODS, "lonely"), "spec", "nodeName"), "bound later")
    second = get(fake, PVS, get(fake, PVCS, "absent")["spec"]["volumeName"])
    assert second["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == \
        [placed] == ["n2"]  # the Immediate volumes spread over the nodes; the pod follows its volume


async def test_a_static_volume_binds_and_is_released_then_retained(plane):
    fake = plane
    await fake.create(PVS, {"metadata": {"name": "static", "finalizers": ["kubernetes.io/pv-protection"]},
                            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                                     "hostPath": {"path": "/nowhere"}}})
    await until(lambda: deep_get(get(fake, PVS, "static"), "status", "phase") == "Available", "available")
    await fake.create(PVCS, claim("mine", cls="manual"), "ns")
    await until(lambda: deep_get(get(fake, PVCS, "mine"), "status", "phase") == "Bound", "bound")
    assert get(fake, PVCS, "mine")["status"]["capacity"] == {"storage": "5Gi"}
    await fake.delete(PVCS, "ns", "mine")
    await until(lambda: deep_get(get(fake, PVS, "static"), "status", "phase") == "Released", "released")
    # pv-protection lets a volume that is not Bound go.
    await fake.delete(PVS, "", "static")
    await until(lambda: get(fake, PVS, "static") is None, "the volume deleted")


async def test_pods_sharing_an_unbound_claim_all_go_to_the_node_chosen_first(plane):
    fake = plane
    await fake.create(PVCS, claim("shared"), "ns")
    for i in range(4):  # created together: decided in one scheduling pass
        await fake.create(PODS, pod(f"s{i}", "shared"), "ns")
    placed = [await until(lambda i=i: deep_get(get(fake, PODS, f"s{i}"), "spec", "nodeName"), f"s{i} bound")
              for i in range(4)]
    assert len(set(placed)) == 1
    pv = get(fake, PVS, get(fake, PVCS, "shared")["spec"]["volumeName"])
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == \
        placed[:1]


async def test_a_claim_without_class_gets_the_default_made_later_and_a_mismatched_pre_bound_claim_waits(plane):
    fake = plane
    await fake.create(PVCS, {**claim("late"), "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}, "ns")
    await until(lambda: "FailedBinding" in reasons(fake, "late"), "no class yet")
    marked = {**storage_class("default-later", "Immediate"),
              "metadata": {"name": "default-later",
                           "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    await fake.create(CLASSES, marked)
    await until(lambda: deep_get(get(fake, PVCS, "late"), "status", "phase") == "Bound", "bound via the default")
    assert get(fake, PVCS, "late")["spec"]["storageClassName"] == "default-later"

    await fake.create(PVS, {"metadata": {"name": "tiny"}, "spec": {
        "capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
        "hostPath": {"path": "/nowhere"}}})
    await fake.create(PVCS, claim("wants-tiny", cls="manual") | {"spec": {
        **claim("x", cls="manual")["spec"], "volumeName": "tiny"}}, "ns")
    await until(lambda: "VolumeMismatch" in reasons(fake, "wants-tiny"), "the mismatch event")
    assert get(fake, PVCS, "wants-tiny")["status"]["phase"] == "Pending"
    assert "claimRef" not in get(fake, PVS, "tiny")["spec"]


async def test_a_provisioned_volume_deleted_by_hand_keeps_its_directory_until_released(plane):
    fake = plane
    await fake.create(PVCS, claim("byhand", cls="now"), "ns")
    await until(lambda: deep_get(get(fake, PVCS, "byhand"), "status", "phase") == "Bound", "bound")
    name = get(fake, PVCS, "byhand")["spec"]["volumeName"]
    directory = Path(get(fake, PVS, name)["spec"]["hostPath"]["path"])
    await fake.delete(PVS, "", name)
    # Bound: held by the provisioner's finalizer (the claim's sync still sees it Bound).
    assert get(fake, PVS, name)["metadata"]["deletionTimestamp"] and directory.is_dir()
    await until(lambda: deep_get(get(fake, PVCS, "byhand"), "status", "phase") == "Bound", "still bound")
    await fake.delete(PVCS, "ns", "byhand")
    await until(lambda: get(fake, PVS, name) is None, "the volume gone")
    assert not directory.exists()


async def test_a_read_write_once_pod_claim_serves_one_pod(plane):
    fake = plane
    single = claim("single", cls="now")
    single["spec"]["accessModes"] = ["ReadWriteOncePod"]
    await fake.create(PVCS, single, "ns")
    await fake.create(PODS, pod("first", "single"), "ns")
    await until(lambda: deep_get(get(fake, PODS, "first"), "spec", "nodeName"), "the first pod bound")
    await fake.create(PODS, pod("second", "single"), "ns")

    def message():
        conds = deep_get(get(fake, PODS, "second"), "status", "conditions", default=None) or []
        return next((c["message"] for c in conds if c["type"] == "PodScheduled"), None)
    assert "ReadWriteOncePod access mode" in await until(message, "the second pod unschedulable")
    await fake.delete(PODS, "ns", "first", grace_period=0)
    await until(lambda: deep_get(get(fake, PODS, "second"), "spec", "nodeName"), "the second pod bound")


async def test_a_claim_with_a_selector_is_not_provisioned(plane):
    fake = plane
    picky = claim("picky", cls="now")
    picky["spec"]["selector"] = {"matchLabels": {"disk": "ssd"}}
    await fake.create(PVCS, picky, "ns")
    await until(lambda: "ProvisioningFailed" in reasons(fake, "picky"), "the refusal")
    assert not fake.objects(PVS)
    assert next(e["message"] for e in fake.objects(EVENTS) if e["reason"] == "ProvisioningFailed").endswith(
        "claim Selector is not supported")


async def test_a_bound_claim_grows_its_volume(plane):
    fake = plane
    await fake.create(PVCS, claim("growing", cls="now"), "ns")
    await until(lambda: deep_get(get(fake, PVCS, "growing"), "status", "phase") == "Bound", "bound")
    pvc = get(fake, PVCS, "growing")
    pvc["spec"]["resources"]["requests"]["storage"] = "5Gi"
    await fake.update(PVCS, pvc)
    await until(lambda: deep_get(get(fake, PVCS, "growing"), "status", "capacity", "storage") == "5Gi", "grown")
    assert get(fake, PVS, pvc["spec"]["volumeName"])["spec"]["capacity"] == {"storage": "5Gi"}
    await until(lambda: "VolumeResizeSuccessful" in reasons(fake, "growing"), "the resize event")


async def unbindable(timeout: float) -> tuple[FakeClient, Scheduler]:
    """A scheduler with one bind slot and no PV controller: a claimed pod's claim is never bound."""
    fake = FakeClient((NODES, node("n1")), (CLASSES, storage_class("standard")))
    scheduler = Scheduler(fake, SchedulerSettings(initial_backoff=0.01, max_backoff=0.05, bind_concurrency=1,
                                                  volume_bind_timeout=timeout))
    await scheduler.start()
    await fake.create(PVCS, claim("orphan"), "ns")
    await fake.create(PODS, pod("waiting", "orphan"), "ns")
    await until(lambda: deep_get(get(fake, PVCS, "orphan"), "metadata", "annotations",
                                 "volume.kubernetes.io/selected-node") == "n1", "the node named on the claim")
    return fake, scheduler


async def test_a_pod_waiting_for_its_volumes_does_not_hold_a_bind_slot():
    fake, scheduler = await unbindable(timeout=60)
    try:
        plain = {"metadata": {"name": "plain", "namespace": "ns"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        await fake.create(PODS, plain, "ns")
        await until(lambda: deep_get(get(fake, PODS, "plain"), "spec", "nodeName"), "the plain pod bound", timeout=5)
    finally:
        await scheduler.stop()


async def test_a_pod_whose_claim_is_never_bound_is_reported_and_retried():
    fake, scheduler = await unbindable(timeout=0.3)
    try:
        await until(lambda: any(e["reason"] == "FailedScheduling" and e["message"] == (
            'running PreBind plugin "VolumeBinding": binding volumes: context deadline exceeded')
            for e in fake.objects(EVENTS)), "the bind timeout reported")
        assert not deep_get(get(fake, PODS, "waiting"), "spec", "nodeName")
    finally:
        await scheduler.stop()
