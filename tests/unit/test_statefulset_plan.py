"""StatefulSet decisions: identities, claims, ordered and parallel steps, partitioned rollout, status."""

from __future__ import annotations

import copy

from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers import statefulset_plan as plan

NOW = 1_700_000_000.0
STS = {"metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 3},
       "spec": {"replicas": 3, "serviceName": "nginx", "podManagementPolicy": "OrderedReady",
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx",
                                                      "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                          "spec": {"accessModes": ["ReadWriteOnce"],
                                                   "resources": {"requests": {"storage": "1Gi"}}}}]}}


def sts(**spec):
    s = copy.deepcopy(STS)
    s["spec"].update(spec)
    return s


def pod(ordinal, rev="r2", ready=True, phase="Running", deleting=False, name="web"):
    p = {"metadata": {"name": f"{name}-{ordinal}", "namespace": "default", "uid": f"u{ordinal}",
                      "labels": {"app": "web", "controller-revision-hash": rev}},
         "status": {"phase": phase}}
    if ready:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(NOW - 60)}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = now_rfc3339(NOW)
    return p


def names(pods):
    return [p["metadata"]["name"] for p in pods]


def test_identity_and_claims():
    p = plan.stateful_pod(STS, 1, "web-abc")
    assert p["metadata"]["name"] == "web-1"
    assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-1",
                                       "apps.kubernetes.io/pod-index": "1", "controller-revision-hash": "web-abc"}
    assert p["spec"]["hostname"] == "web-1" and p["spec"]["subdomain"] == "nginx"
    assert p["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    [claim] = plan.claims_for(STS, 1)
    assert claim["metadata"]["name"] == "data-web-1" and claim["metadata"]["labels"] == {"app": "web"}
    assert "ownerReferences" not in claim["metadata"]  # Retain
    deleting = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"})
    [owned] = plan.claims_for(deleting, 0)
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "sts-uid"
    assert plan.ordinal_of(STS, pod(12)) == 12
    assert plan.ordinal_of(STS, pod(1, name="webx")) is None


def test_ordered_ready_creates_one_at_a_time():
    assert plan.next_step(STS, [], "r2", NOW).create == [(0, True)]
    assert plan.next_step(STS, [pod(0, ready=False)], "r2", NOW).create == []  # wait for web-0
    assert plan.next_step(STS, [pod(0)], "r2", NOW).create == [(1, True)]
    parallel = sts(podManagementPolicy="Parallel")
    assert plan.next_step(parallel, [pod(0, ready=False)], "r2", NOW).create == [(1, True), (2, True)]


def test_scale_down_in_reverse_order():
    pods = [pod(i) for i in range(5)]
    step = plan.next_step(STS, pods, "r2", NOW)
    assert names(step.delete) == ["web-4"] and names(step.condemned) == ["web-4"]
    pods[4] = pod(4, deleting=True)
    assert plan.next_step(STS, pods, "r2", NOW).delete == []  # wait until web-4 is gone
    assert names(plan.next_step(sts(podManagementPolicy="Parallel"), [pod(i) for i in range(5)], "r2",
                                NOW).delete) == ["web-4", "web-3"]
    unready = [pod(0), pod(1), pod(2), pod(3, ready=False), pod(4)]
    assert plan.next_step(STS, unready, "r2", NOW).delete == []  # web-3 is unhealthy and not first: block


def test_rolling_update_with_partition():
    pods = [pod(i, rev="r1") for i in range(3)]
    assert names(plan.next_step(STS, pods, "r2", NOW).delete) == ["web-2"]
    pods[2] = pod(2, rev="r2", ready=False)
    assert plan.next_step(STS, pods, "r2", NOW).delete == []  # wait for the updated pod to be ready
    pods[2] = pod(2, rev="r2")
    assert names(plan.next_step(STS, pods, "r2", NOW).delete) == ["web-1"]
    partitioned = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    assert plan.next_step(partitioned, pods, "r2", NOW).delete == []  # web-1 and web-0 stay on r1
    assert plan.next_step(partitioned, [pod(0, rev="r1")], "r2", NOW).create == [(1, False)]  # below the partition
    on_delete = sts(updateStrategy={"type": "OnDelete"})
    assert plan.next_step(on_delete, [pod(i, rev="r1") for i in range(3)], "r2", NOW).delete == []


def test_failed_pod_is_replaced():
    step = plan.next_step(STS, [pod(0), pod(1, phase="Failed", ready=False)], "r2", NOW)
    assert names(step.delete) == ["web-1"] and step.create == []


def test_status():
    s = plan.status_of(STS, [pod(0, rev="r1"), pod(1), pod(2, ready=False)], "r1", "r2", NOW)
    assert s == {"replicas": 3, "readyReplicas": 2, "currentReplicas": 1, "updatedReplicas": 2,
                 "currentRevision": "r1", "updateRevision": "r2", "availableReplicas": 2, "observedGeneration": 3}
    done = plan.status_of(STS, [pod(i) for i in range(3)], "r1", "r2", NOW)
    assert done["currentRevision"] == "r2" and done["currentReplicas"] == 3  # completeRollingUpdate


def test_identity_labels_are_restored():
    stray = pod(1)
    step = plan.next_step(STS, [pod(0), stray, pod(2)], "r2", NOW)
    [fixed] = [p for p in step.relabel if p["metadata"]["name"] == "web-1"]
    assert fixed["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert fixed["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    assert fixed["metadata"]["labels"]["app"] == "web"
    made = plan.stateful_pod(STS, 0, "r2")
    assert plan.next_step(STS, [made], "r2", NOW).relabel == []


def test_claims_follow_a_changed_retention_policy():
    made = plan.claims_for(STS, 0)[0]  # Retain: no owner
    made["metadata"]["uid"] = "c0"
    other = {"metadata": {"name": "unrelated", "uid": "c9"}}
    assert plan.claims_to_retarget(STS, [made, other]) == []
    deleting = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"})
    [fixed] = plan.claims_to_retarget(deleting, [made, other])
    assert [r["uid"] for r in fixed["metadata"]["ownerReferences"]] == ["sts-uid"]
    assert plan.claims_to_retarget(deleting, [fixed]) == []
    [back] = plan.claims_to_retarget(STS, [fixed])
    assert back["metadata"]["ownerReferences"] == []
