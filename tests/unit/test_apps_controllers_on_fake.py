"""The DaemonSet, StatefulSet and ReplicationController controllers driven through the fake client."""

from __future__ import annotations

import copy

import pytest
from async_waits import until

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers.daemonset import DaemonSetController
from pocketkube.controllers.daemonset_plan import target_node
from pocketkube.controllers.replicationcontroller import ReplicationControllerController
from pocketkube.controllers.statefulset import StatefulSetController
from pocketkube.testing.controllers import ControllerRunner
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.util.backoff import Backoff

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
CLAIMS = BY_PLURAL[("", "persistentvolumeclaims")]
RCS = BY_PLURAL[("", "replicationcontrollers")]
DAEMONSETS = BY_PLURAL[("apps", "daemonsets")]
STATEFULSETS = BY_PLURAL[("apps", "statefulsets")]
REVISIONS = BY_PLURAL[("apps", "controllerrevisions")]
TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def node(name, taints=None):
    return {"metadata": {"name": name}, "spec": {"taints": taints} if taints else {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.fixture
async def run():
    runner = ControllerRunner()
    yield lambda fake, cls: runner.start(fake, lambda informers, recorder: cls(fake, informers, recorder),
                                         component=cls.name)
    await runner.close()


async def make_running(fake, pod, ready=True):
    p = copy.deepcopy(pod)
    p["status"] = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now_rfc3339()}]}
    await fake.update_status(PODS, p)


def pods(fake):
    return [p for p in fake.objects(PODS) if not deep_get(p, "metadata", "deletionTimestamp")]


async def test_daemonset_one_pod_per_eligible_node_then_rolls(run):
    fake = FakeClient((NODES, node("n1")), (NODES, node("n2")),
                      (NODES, node("n3", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])))
    await run(fake, DaemonSetController)
    await fake.create(DAEMONSETS, {"metadata": {"name": "agent", "namespace": "default",
                                                "annotations": {"deprecated.daemonset.template.generation": "1"}},
                                   "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": TEMPLATE,
                                            "updateStrategy": {"type": "RollingUpdate",
                                                               "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}}})
    await until(lambda: len(pods(fake)) == 2, "two daemon pods")
    assert sorted(target_node(p) for p in pods(fake)) == ["n1", "n2"]
    [rev] = fake.objects(REVISIONS)
    assert rev["revision"] == 1
    await fake.create(NODES, node("n4"))
    await until(lambda: len(pods(fake)) == 3, "a pod for the new node")
    for p in pods(fake):
        await make_running(fake, p)
    ds = await until(lambda: deep_get(fake.objects(DAEMONSETS)[0], "status", "numberReady") == 3
                     and fake.objects(DAEMONSETS)[0], "status")
    assert ds["status"]["desiredNumberScheduled"] == 3 and ds["status"]["updatedNumberScheduled"] == 3
    # a new template: pods are replaced one at a time, each once the previous new one is ready
    ds["spec"]["template"] = copy.deepcopy(TEMPLATE)
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = "2"  # the registry's part
    await fake.update(DAEMONSETS, ds)
    await until(lambda: len(fake.objects(REVISIONS)) == 2, "a second revision")
    for _ in range(3):
        new = await until(lambda: [p for p in pods(fake) if p["spec"]["containers"][0]["image"] == "nginx:2"
                                   and not deep_get(p, "status", "phase")], "a new pod")
        assert len(pods(fake)) <= 3
        await make_running(fake, new[0])
    await until(lambda: all(p["spec"]["containers"][0]["image"] == "nginx:2" for p in pods(fake))
                and len(pods(fake)) == 3, "all pods updated")


async def test_statefulset_ordered_scale_and_claims(run):
    fake = FakeClient()
    await run(fake, StatefulSetController)
    template = copy.deepcopy(TEMPLATE)
    await fake.create(STATEFULSETS, {"metadata": {"name": "db", "namespace": "default"}, "spec": {
        "replicas": 3, "serviceName": "db", "podManagementPolicy": "OrderedReady",
        "selector": {"matchLabels": {"app": "x"}}, "template": template,
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    for i in range(3):
        p = await until(lambda i=i: next((p for p in pods(fake) if p["metadata"]["name"] == f"db-{i}"), None),
                        f"db-{i}")
        assert len(pods(fake)) == i + 1  # the next one waits for this one
        assert f"data-db-{i}" in {c["metadata"]["name"] for c in fake.objects(CLAIMS)}
        await make_running(fake, p)
    sts = await until(lambda: deep_get(fake.objects(STATEFULSETS)[0], "status", "readyReplicas") == 3
                      and fake.objects(STATEFULSETS)[0], "three ready")
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    sts["spec"]["replicas"] = 1
    await fake.update(STATEFULSETS, sts)
    await until(lambda: [p["metadata"]["name"] for p in fake.objects(PODS)] == ["db-0"], "scaled down")
    assert [a.name for a in fake.actions_of("delete", "pods")] == ["db-2", "db-1"]  # highest ordinal first
    assert len(fake.objects(CLAIMS)) == 3  # Retain


async def test_replication_controller_keeps_replicas(run):
    fake = FakeClient()
    await run(fake, ReplicationControllerController)
    await fake.create(RCS, {"metadata": {"name": "old", "namespace": "default"},
                            "spec": {"replicas": 2, "selector": {"app": "x"}, "template": TEMPLATE}})
    await until(lambda: len(pods(fake)) == 2, "two pods")
    ref = pods(fake)[0]["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["apiVersion"], ref["name"]) == ("ReplicationController", "v1", "old")
    rc = fake.objects(RCS)[0]
    await until(lambda: deep_get(fake.objects(RCS)[0], "status", "replicas") == 2, "status")
    rc = fake.objects(RCS)[0]
    rc["spec"]["replicas"] = 0
    await fake.update(RCS, rc)
    await until(lambda: not pods(fake), "scaled to zero")


async def test_statefulset_claims_follow_the_retention_policy(run):
    fake = FakeClient()
    await run(fake, StatefulSetController)
    await fake.create(STATEFULSETS, {"metadata": {"name": "db", "namespace": "default"}, "spec": {
        "replicas": 2, "podManagementPolicy": "Parallel", "selector": {"matchLabels": {"app": "x"}},
        "template": copy.deepcopy(TEMPLATE), "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {}},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    await until(lambda: len(pods(fake)) == 2, "two pods")
    sts = fake.objects(STATEFULSETS)[0]
    claims = {c["metadata"]["name"]: c for c in fake.objects(CLAIMS)}
    assert [r["uid"] for r in claims["data-db-1"]["metadata"]["ownerReferences"]] == [sts["metadata"]["uid"]]
    for p in pods(fake):
        await make_running(fake, p)
    sts = fake.objects(STATEFULSETS)[0]
    sts["spec"]["replicas"] = 1
    await fake.update(STATEFULSETS, sts)
    await until(lambda: len(fake.objects(PODS)) == 1, "scaled down")
    claim = next(c for c in fake.objects(CLAIMS) if c["metadata"]["name"] == "data-db-1")
    kinds = sorted(r["kind"] for r in claim["metadata"]["ownerReferences"])
    assert kinds == ["Pod", "StatefulSet"]  # the garbage collector deletes it once db-1 is gone
    assert not any(r["kind"] == "Pod" for r in next(
        c for c in fake.objects(CLAIMS) if c["metadata"]["name"] == "data-db-0")["metadata"]["ownerReferences"])


async def test_failed_daemon_pod_is_replaced_with_back_off(run):
    fake = FakeClient((NODES, node("n1")))
    controller = await run(fake, DaemonSetController)
    controller.failed_pods = Backoff(initial=30.0, maximum=60.0)  # longer than any pause of a busy machine
    await fake.create(DAEMONSETS, {"metadata": {"name": "agent", "namespace": "default"},
                                   "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": TEMPLATE,
                                            "updateStrategy": {"type": "OnDelete"}}})
    first = (await until(lambda: pods(fake), "a daemon pod"))[0]
    failed = copy.deepcopy(first)
    failed["status"] = {"phase": "Failed"}
    await fake.update_status(PODS, failed)
    second = await until(lambda: [p for p in pods(fake) if p["metadata"]["uid"] != first["metadata"]["uid"]],
                         "a replacement")
    assert [e["reason"] for e in fake.objects(BY_PLURAL[("", "events")]) if e["reason"] == "FailedDaemonPod"]
    delayed = []
    add_after = controller.queue.add_after
    controller.queue.add_after = lambda key, delay: (delayed.append(delay), add_after(key, delay))
    again = copy.deepcopy(second[0])
    again["status"] = {"phase": "Failed"}
    await fake.update_status(PODS, again)
    await until(lambda: delayed, "the sync that defers the deletion")
    assert 0 < delayed[0] <= 30.0
    assert [p["metadata"]["uid"] for p in pods(fake)] == [again["metadata"]["uid"]]  # stays within the back-off
    assert controller.failed_pods.remaining(f"{fake.objects(DAEMONSETS)[0]['metadata']['uid']}/n1") > 0
