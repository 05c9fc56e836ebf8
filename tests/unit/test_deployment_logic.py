"""Deployment decisions: template hash, fenceposts, rolling steps, proportional scaling, status."""

import pytest

from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers.deployment_plan import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    calculate_status,
    compute_hash,
    equal_ignore_hash,
    find_new_rs,
    max_surge,
    max_unavailable,
    new_rs_annotations,
    new_rs_replicas,
    old_rs_scale_down,
    progress_conditions,
    proportional_scale,
    replica_sets_to_clean,
    resolve_fenceposts,
    safe_encode,
    scaled_value,
    set_condition,
)

NOW = 1_700_000_000.0
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def deployment(replicas=3, surge="25%", unavailable="25%", strategy="RollingUpdate", generation=1, status=None,
               annotations=None, deadline=600, history=10):
    d = {"metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": generation,
                      "annotations": annotations or {}},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                  "strategy": {"type": strategy}, "progressDeadlineSeconds": deadline,
                  "revisionHistoryLimit": history},
         "status": status or {}}
    if strategy == "RollingUpdate":
        d["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return d


def rs(name, replicas, available=None, created=NOW - 100, revision=None, status_replicas=None, template=TEMPLATE,
       annotations=None, observed=1):
    ann = dict(annotations or {})
    if revision is not None:
        ann[REVISION] = str(revision)
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": 1,
                         "creationTimestamp": now_rfc3339(created), "annotations": ann},
            "spec": {"replicas": replicas, "template": template},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "availableReplicas": replicas if available is None else available,
                       "readyReplicas": replicas if available is None else available,
                       "observedGeneration": observed}}


# ---- hash ----

def test_hash_is_stable_safe_and_depends_on_template_and_collisions():
    h = compute_hash(TEMPLATE)
    assert h == compute_hash({"spec": TEMPLATE["spec"], "metadata": {"labels": {"app": "web"}}})  # key order
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert compute_hash(TEMPLATE, 1) != h
    changed = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    assert compute_hash(changed) != h


def test_safe_encode_maps_digits_like_upstream():
    # Digits are bytes 48..57; modulo 27 they land on "4".."9" then "b".."f", as in "5d59d67564".
    assert safe_encode("0123456789") == "456789bcdf"
    assert set(compute_hash(TEMPLATE)) <= set("456789bcdf")


def test_equal_ignore_hash_and_find_new_rs():
    hashed = {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": TEMPLATE["spec"]}
    assert equal_ignore_hash(hashed, TEMPLATE)
    undone = {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}}, "spec": {**TEMPLATE["spec"],
                                                                                         "volumes": []}}
    assert equal_ignore_hash(hashed, undone)  # what `kubectl rollout undo` writes back
    assert compute_hash(undone) == compute_hash(TEMPLATE)
    assert not equal_ignore_hash(hashed, {**TEMPLATE, "spec": {}})
    old = rs("web-old", 3, template={"metadata": {"labels": {"app": "web"}}, "spec": {}})
    new_a = rs("web-a", 0, created=NOW - 50, template=hashed)
    new_b = rs("web-b", 0, created=NOW - 10, template=hashed)
    assert find_new_rs(deployment(), [old, new_b, new_a]) is new_a  # the oldest match
    assert find_new_rs(deployment(), [old]) is None


# ---- fenceposts ----

@pytest.mark.parametrize("value,total,up,expected", [
    (2, 10, True, 2), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 10, True, 0), ("100%", 3, False, 3),
    ("34%", 3, True, 2), ("34%", 3, False, 1),
])
def test_scaled_value(value, total, up, expected):
    assert scaled_value(value, total, up) == expected


@pytest.mark.parametrize("bad", ["abc", "x%"])
def test_scaled_value_rejects_non_percentages(bad):
    with pytest.raises(ValueError):
        scaled_value(bad, 10, True)


@pytest.mark.parametrize("surge,unavailable,desired,expected", [
    ("25%", "25%", 4, (1, 1)), ("25%", "25%", 3, (1, 0)), (0, 0, 3, (0, 1)), ("0%", "0%", 3, (0, 1)),
    (None, None, 10, (3, 2)),
])
def test_resolve_fenceposts(surge, unavailable, desired, expected):
    assert resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_is_capped_and_zero_for_recreate():
    assert max_unavailable(deployment(replicas=2, surge=0, unavailable=5)) == 2
    assert max_unavailable(deployment(replicas=0)) == 0
    assert max_unavailable(deployment(strategy="Recreate")) == 0
    assert max_surge(deployment(strategy="Recreate")) == 0
    assert max_surge(deployment(replicas=10)) == 3


# ---- rolling steps ----

def test_new_rs_grows_within_surge():
    d = deployment(replicas=3, surge=1, unavailable=0)
    new = rs("new", 0)
    assert new_rs_replicas(d, [rs("old", 3), new], new) == 1
    new1 = rs("new", 1)
    assert new_rs_replicas(d, [rs("old", 3), new1], new1) == 1  # at 4 = 3 + surge already
    assert new_rs_replicas(d, [rs("old", 1), rs("new", 2)], rs("new", 2)) == 3
    assert new_rs_replicas(deployment(replicas=5, strategy="Recreate"), [], rs("new", 0)) == 5


def test_old_rs_waits_for_the_new_pods_to_be_available():
    d = deployment(replicas=3, surge=1, unavailable=0)
    assert old_rs_scale_down(d, [rs("old", 3)], rs("new", 1, available=0)) == {}
    assert old_rs_scale_down(d, [rs("old", 3)], rs("new", 1, available=1)) == {"old": 2}


def test_old_rs_drops_unhealthy_pods_first():
    d = deployment(replicas=3, surge=1, unavailable=1)
    # 4 pods, 2 must stay available, 1 new pod unavailable: one unhealthy old pod can go.
    assert old_rs_scale_down(d, [rs("old", 3, available=1)], rs("new", 1, available=0)) == {"old": 2}


def test_old_rs_scale_down_takes_the_oldest_first():
    d = deployment(replicas=4, surge=0, unavailable=2)
    older, newer = rs("older", 2, created=NOW - 200), rs("newer", 2, created=NOW - 100)
    assert old_rs_scale_down(d, [newer, older], rs("new", 0)) == {"older": 0}


# ---- proportional scaling ----

def test_scaling_mid_rollout_is_proportional():
    d = deployment(replicas=15, surge="25%", status={"replicas": 13})
    old = rs("old", 7, annotations={MAX_REPLICAS: "13"}, created=NOW - 200)
    new = rs("new", 6, annotations={MAX_REPLICAS: "13"}, created=NOW - 100)
    sizes, op = proportional_scale(d, new, [old])
    assert (sizes, op) == ({"old": 10, "new": 9}, "up")  # 19 allowed = 15 + ceil(3.75)


def test_scaling_down_to_zero_empties_everything():
    d = deployment(replicas=0)
    sizes, op = proportional_scale(d, rs("new", 2), [rs("old", 3)])
    assert (sizes, op) == ({"old": 0, "new": 0}, "down")


# ---- annotations and cleanup ----

def test_new_rs_annotations_copy_the_deployment_and_record_replicas():
    d = deployment(replicas=4, annotations={"kubernetes.io/change-cause": "v2", REVISION: "7",
                                            "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    ann = new_rs_annotations(d, rs("new", 0), 3, exists=False)
    assert ann == {"kubernetes.io/change-cause": "v2", REVISION: "3", DESIRED_REPLICAS: "4", MAX_REPLICAS: "5"}


def test_rolling_back_to_an_old_rs_bumps_its_revision_and_keeps_history():
    old = rs("old", 0, revision=1)
    ann = new_rs_annotations(deployment(), old, 3, exists=True)
    assert ann[REVISION] == "3" and ann["deployment.kubernetes.io/revision-history"] == "1"
    assert new_rs_annotations(deployment(), rs("cur", 0, revision=3), 3, exists=True) is None


def test_cleanup_removes_the_lowest_empty_revisions_beyond_the_limit():
    d = deployment(history=1)
    olds = [rs("r1", 0, revision=1), rs("r2", 0, revision=2), rs("r3", 0, revision=3), rs("busy", 1, revision=0)]
    assert [r["metadata"]["name"] for r in replica_sets_to_clean(d, olds)] == ["r1", "r2"]  # "busy" is kept
    assert replica_sets_to_clean(deployment(history=10), olds) == []


# ---- status and conditions ----

def test_status_sums_replica_sets_and_sets_availability():
    d = deployment(replicas=4, surge=1, unavailable=1, generation=3)
    new, old = rs("new", 2, available=1), rs("old", 2, available=2)
    status = calculate_status(d, [old, new], new, NOW)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 3, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3,
        "unavailableReplicas": 1}
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]] == [
        ("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")]
    low = calculate_status(d, [rs("new", 4, available=2)], None, NOW)
    assert low["conditions"][0]["reason"] == "MinimumReplicasUnavailable"


def test_set_condition_keeps_transition_time_when_status_is_unchanged():
    first = {"type": "Progressing", "status": "True", "reason": "A", "message": "a", "lastUpdateTime": "t1",
             "lastTransitionTime": "t1"}
    same = set_condition([first], {**first, "lastUpdateTime": "t2", "lastTransitionTime": "t2"})
    assert same == [first]
    changed = set_condition([first], {**first, "reason": "B", "lastUpdateTime": "t2", "lastTransitionTime": "t2"})
    assert changed[0]["lastTransitionTime"] == "t1" and changed[0]["lastUpdateTime"] == "t2"


def test_progressing_condition_through_a_rollout():
    d = deployment(replicas=2, status={"replicas": 2, "updatedReplicas": 0, "availableReplicas": 2})
    new = rs("web-abc", 1, available=0)
    step = {"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2, "observedGeneration": 1, "conditions": []}
    (cond,) = progress_conditions(d, step, new, NOW)
    assert (cond["reason"], cond["message"]) == ("ReplicaSetUpdated", 'ReplicaSet "web-abc" is progressing.')
    done = {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "observedGeneration": 1, "conditions": []}
    (cond,) = progress_conditions(d, done, new, NOW)
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "True", "NewReplicaSetAvailable", 'ReplicaSet "web-abc" has successfully progressed.')


def test_progress_deadline_exceeded():
    stale = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "x",
             "lastUpdateTime": now_rfc3339(NOW - 700), "lastTransitionTime": now_rfc3339(NOW - 700)}
    d = deployment(replicas=2, status={"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2})
    stuck = {"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2, "observedGeneration": 1,
             "conditions": [stale]}
    (cond,) = progress_conditions(d, stuck, rs("web-abc", 1), NOW)
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-abc" has timed out progressing.')
    assert progress_conditions(d, stuck, rs("web-abc", 1), NOW - 200) == [stale]  # not yet
