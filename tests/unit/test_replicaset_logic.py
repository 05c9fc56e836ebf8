"""ReplicaSet decisions: pod predicates, deletion ranking, status, claims, slow start, expectations."""

import asyncio

import pytest

from pocketkube.api.selectors import LabelSelector
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers.base import owner_reference, plan_claims
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.replicaset import (
    REPLICASETS,
    calculate_status,
    is_pod_active,
    is_pod_available,
    pod_from_template,
    pods_to_delete,
    rank_pods_for_deletion,
    slow_start_batch,
)

NOW = 1_700_000_000.0


def pod(name, *, node="", phase="Running", ready=False, ready_since=None, created=NOW - 100, restarts=0,
        labels=None, owner=None, deleting=False, cost=None):
    p = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                      "creationTimestamp": now_rfc3339(created), "labels": labels or {"app": "web"}},
         "spec": {"nodeName": node} if node else {},
         "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}}
    if ready:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True",
                                      "lastTransitionTime": now_rfc3339(ready_since or created)}]
    if owner is not None:
        p["metadata"]["ownerReferences"] = [owner]
    if deleting:
        p["metadata"]["deletionTimestamp"] = now_rfc3339(NOW)
    if cost is not None:
        p["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    return p


def replicaset(name="web", replicas=3, min_ready=0, generation=2, uid="rs-uid", deleting=False):
    rs = {"metadata": {"name": name, "namespace": "default", "uid": uid, "generation": generation},
          "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                   "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
          "status": {"replicas": 0}}
    if deleting:
        rs["metadata"]["deletionTimestamp"] = now_rfc3339(NOW)
    return rs


def names(pods):
    return [p["metadata"]["name"] for p in pods]


# ---- predicates ----

def test_terminating_and_finished_pods_are_not_active():
    assert is_pod_active(pod("a"))
    assert is_pod_active(pod("a", phase="Pending"))
    assert not is_pod_active(pod("a", deleting=True))
    assert not is_pod_active(pod("a", phase="Failed"))
    assert not is_pod_active(pod("a", phase="Succeeded"))


def test_available_needs_min_ready_seconds_of_readiness():
    p = pod("a", ready=True, ready_since=NOW - 5)
    assert is_pod_available(p, 0, NOW)
    assert is_pod_available(p, 5, NOW)
    assert not is_pod_available(p, 6, NOW)
    assert not is_pod_available(pod("b"), 0, NOW)


# ---- deletion ranking (ActivePodsWithRanks) ----

@pytest.mark.parametrize("first,second", [
    (pod("unscheduled"), pod("scheduled", node="n1")),
    (pod("pending", node="n1", phase="Pending"), pod("running", node="n1")),
    (pod("unknown", node="n1", phase="Unknown"), pod("running", node="n1")),
    (pod("notready", node="n1"), pod("ready", node="n1", ready=True)),
    (pod("cheap", node="n1", ready=True, cost=-5), pod("dear", node="n1", ready=True, cost=10)),
    (pod("recent-ready", node="n1", ready=True, ready_since=NOW - 10),
     pod("long-ready", node="n1", ready=True, ready_since=NOW - 10_000)),
    (pod("restarts", node="n1", restarts=4), pod("steady", node="n1", restarts=0)),
    (pod("newer", node="n1", created=NOW - 10), pod("older", node="n1", created=NOW - 10_000)),
])
def test_ranking_prefers_deleting_the_first(first, second):
    for order in ([first, second], [second, first]):
        assert names(rank_pods_for_deletion(order, order, NOW)) == names([first, second])


def test_ranking_prefers_pods_doubled_up_on_a_node():
    a, b, c = pod("a", node="n1", ready=True), pod("b", node="n2", ready=True), pod("c", node="n2", ready=True)
    ranked = rank_pods_for_deletion([a, b, c], [a, b, c], NOW)
    assert names(ranked)[2] == "a"  # alone on n1: deleted last


def test_ages_in_the_same_power_of_two_bucket_tie_on_uid():
    # 1000 s and 1001 s old fall in the same log2(ns) bucket: the uid decides, not the age.
    a = pod("a", node="n1", created=NOW - 1000)
    b = pod("b", node="n1", created=NOW - 1001)
    assert names(rank_pods_for_deletion([b, a], [], NOW)) == ["a", "b"]


def test_pods_to_delete_takes_the_most_deletable():
    pods = [pod("ready", node="n1", ready=True), pod("unscheduled"), pod("pending", node="n1", phase="Pending")]
    assert names(pods_to_delete(pods, pods, 2, NOW)) == ["unscheduled", "pending"]
    assert len(pods_to_delete(pods, pods, 5, NOW)) == 3


# ---- status ----

def test_status_counts_labels_readiness_and_availability():
    rs = replicaset(min_ready=10)
    pods = [
        pod("a", labels={"app": "web", "tier": "front"}, ready=True, ready_since=NOW - 60),
        pod("b", labels={"app": "web", "tier": "front"}, ready=True, ready_since=NOW - 3),
        pod("c", labels={"app": "web"}),
    ]
    assert calculate_status(rs, pods, NOW) == {"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                                               "availableReplicas": 1, "observedGeneration": 2}


def test_status_omits_zero_counts_but_not_replicas():
    assert calculate_status(replicaset(), [], NOW) == {"replicas": 0, "observedGeneration": 2}


def test_failure_condition_is_added_once_and_cleared_on_success():
    rs = replicaset()
    status = calculate_status(rs, [], NOW, ("FailedCreate", "pods is forbidden"))
    assert status["conditions"] == [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                     "message": "pods is forbidden", "lastTransitionTime": now_rfc3339(NOW)}]
    rs["status"] = status
    again = calculate_status(rs, [], NOW + 50, ("FailedCreate", "other"))
    assert again["conditions"] == status["conditions"]  # the first failure's time and message stay
    assert "conditions" not in calculate_status(rs, [], NOW)


# ---- pods from the template ----

def test_pod_from_template_has_generated_name_labels_and_controller_ref():
    rs = replicaset()
    p = pod_from_template(rs)
    assert p["metadata"]["generateName"] == "web-"
    assert p["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                                 "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}]
    p["spec"]["containers"][0]["image"] = "changed"
    assert rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"  # a deep copy


# ---- claims ----

def test_claims_adopt_matching_orphans_and_release_owned_mismatches():
    rs = replicaset()
    mine = owner_reference(rs, REPLICASETS)
    other = {**mine, "uid": "someone-else"}
    pods = [
        pod("owned", owner=mine),
        pod("orphan"),
        pod("orphan-nomatch", labels={"app": "db"}),
        pod("owned-nomatch", labels={"app": "db"}, owner=mine),
        pod("others", owner=other),
        pod("orphan-terminating", deleting=True),
    ]
    plan = plan_claims(rs, LabelSelector.from_dict(rs["spec"]["selector"]), pods)
    assert names(plan.claimed) == ["owned", "orphan"]
    assert names(plan.adopt) == ["orphan"]
    assert names(plan.release) == ["owned-nomatch"]


def test_a_deleting_owner_neither_adopts_nor_releases():
    rs = replicaset(deleting=True)
    mine = owner_reference(rs, REPLICASETS)
    pods = [pod("orphan"), pod("owned-nomatch", labels={"app": "db"}, owner=mine), pod("owned", owner=mine)]
    plan = plan_claims(rs, LabelSelector.from_dict(rs["spec"]["selector"]), pods)
    assert (names(plan.claimed), plan.adopt, plan.release) == (["owned"], [], [])


# ---- slow start ----

def test_slow_start_batches_double_and_stop_at_the_first_failing_batch():
    calls = 0

    async def create(fail_after: int):
        nonlocal calls
        calls += 1
        if calls > fail_after:
            raise RuntimeError("quota")

    async def run(count, fail_after):
        nonlocal calls
        calls = 0
        return await slow_start_batch(count, 1, lambda: create(fail_after))

    done, err = asyncio.run(run(10, 100))
    assert (done, err, calls) == (10, None, 10)  # 1 + 2 + 4 + 3
    done, err = asyncio.run(run(10, 4))
    assert done == 4 and isinstance(err, RuntimeError) and calls == 7  # batches 1, 2, 4: stop


# ---- expectations ----

def test_expectations_block_until_creations_and_deletions_are_observed():
    clock = [0.0]
    e = Expectations(clock=lambda: clock[0], timeout=300)
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/a")
    e.deletion_observed("ns/rs", "ns/a")  # seen twice (deletionTimestamp, then gone): counted once
    assert not e.satisfied("ns/rs")
    e.deletion_observed("ns/rs", "ns/b")
    assert e.satisfied("ns/rs")


def test_expectations_expire():
    clock = [0.0]
    e = Expectations(clock=lambda: clock[0], timeout=300)
    e.expect_creations("ns/rs", 1)
    clock[0] = 301
    assert e.satisfied("ns/rs")
