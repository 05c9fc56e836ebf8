"""Scheduler filters, messages and scoring; the taint and eviction decisions of node lifecycle."""

import random

import pytest

from pocketkube.api.taints import tolerates
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers.nodelifecycle import desired_taints, eviction_delay, unknown_conditions
from pocketkube.scheduler.plugins import NodeInfo, filter_node, fit_error_message, select_node

NOW = 1_700_000_000.0


def node(name, *, ready="True", labels=None, taints=None, unschedulable=False, pods_capacity=None):
    n = {"metadata": {"name": name, "labels": labels or {}},
         "spec": {}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    if pods_capacity is not None:
        n["status"]["allocatable"] = {"pods": str(pods_capacity)}
    return n


def pod(name="p", *, owner_uid="", node_selector=None, tolerations=None, affinity=None):
    p = {"metadata": {"name": name, "namespace": "default"}, "spec": {}}
    if owner_uid:
        p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": owner_uid, "controller": True}]
    if node_selector:
        p["spec"]["nodeSelector"] = node_selector
    if tolerations:
        p["spec"]["tolerations"] = tolerations
    if affinity:
        p["spec"]["affinity"] = affinity
    return p


# ---- tolerations ----

@pytest.mark.parametrize("toleration,taint,expected", [
    ({"key": "k", "operator": "Equal", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "w", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "w", "effect": "NoExecute"}, True),
    ({"operator": "Exists"}, {"key": "any", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}, False),
    ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_tolerates(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


# ---- filters ----

@pytest.mark.parametrize("n,p,reason", [
    (node("n"), pod(), None),
    (node("n", unschedulable=True), pod(), "node(s) were unschedulable"),
    (node("n", unschedulable=True),
     pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]), None),
    (node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), pod(),
     "node(s) had untolerated taint {dedicated: gpu}"),
    (node("n", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]), pod(), None),
    (node("n", ready="False"), pod(), "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
    (node("n", ready="Unknown"), pod(), "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
    (node("n", ready="False"), pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]),
     None),
    (node("n", labels={"disk": "hdd"}), pod(node_selector={"disk": "ssd"}),
     "node(s) didn't match Pod's node affinity/selector"),
    (node("n", labels={"disk": "ssd"}), pod(node_selector={"disk": "ssd"}), None),
    (node("n", labels={"zone": "a"}),
     pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
         {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
         {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}}}), None),
    (node("n", labels={"zone": "a"}),
     pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
         {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}),
     "node(s) didn't match Pod's node affinity/selector"),
])
def test_filter_node(n, p, reason):
    assert filter_node(p, NodeInfo(n)) == reason


def test_pods_capacity():
    assert filter_node(pod(), NodeInfo(node("n", pods_capacity=2), pod_count=1)) is None
    assert filter_node(pod(), NodeInfo(node("n", pods_capacity=2), pod_count=2)) == "Too many pods"


def test_unschedulable_wins_over_later_filters():
    n = node("n", unschedulable=True, labels={"disk": "hdd"})
    assert filter_node(pod(node_selector={"disk": "ssd"}), NodeInfo(n)) == "node(s) were unschedulable"


# ---- messages ----

def test_fit_error_message_like_upstream():
    reasons = ["node(s) didn't match Pod's node affinity/selector"] * 3
    assert fit_error_message(3, reasons) == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def test_fit_error_message_sorts_reasons_and_distinguishes_preemption():
    reasons = ["node(s) were unschedulable", "Too many pods", "node(s) were unschedulable"]
    assert fit_error_message(3, reasons) == (
        "0/3 nodes are available: 1 Too many pods, 2 node(s) were unschedulable. "
        "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
        "2 Preemption is not helpful for scheduling.")


def test_no_nodes_at_all():
    decision = select_node(pod(), [])
    assert (decision.node, decision.message) == (None, "no nodes available to schedule pods")


# ---- scoring ----

def test_spreads_pods_of_one_controller_before_counting_all_pods():
    busy = NodeInfo(node("busy"), pod_count=10, by_controller={})
    quiet = NodeInfo(node("quiet"), pod_count=1, by_controller={"rs1": 1})
    assert select_node(pod(owner_uid="rs1"), [busy, quiet]).node == "busy"
    assert select_node(pod(owner_uid="rs2"), [busy, quiet]).node == "quiet"


def test_placing_many_pods_spreads_them_evenly():
    infos = [NodeInfo(node(f"n{i}")) for i in range(3)]
    rng = random.Random(1)
    for _ in range(9):
        p = pod(owner_uid="rs")
        chosen = select_node(p, infos, rng).node
        next(i for i in infos if i.name == chosen).add_pod(p)
    assert [i.by_controller["rs"] for i in infos] == [3, 3, 3]


def test_ties_are_broken_at_random():
    infos = [NodeInfo(node("a")), NodeInfo(node("b"))]
    chosen = {select_node(pod(), infos, random.Random(seed)).node for seed in range(20)}
    assert chosen == {"a", "b"}


def test_only_feasible_nodes_are_chosen():
    infos = [NodeInfo(node("down", ready="Unknown")), NodeInfo(node("up"), pod_count=50)]
    assert select_node(pod(), infos).node == "up"


# ---- node lifecycle: conditions, taints and eviction delays ----

def test_silent_node_conditions_become_unknown():
    n = node("n")
    n["status"]["conditions"][0].update(lastHeartbeatTime="hb", lastTransitionTime="t0", reason="KubeletReady")
    (cond,) = unknown_conditions(n, NOW)
    assert cond == {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": "hb",
                    "lastTransitionTime": now_rfc3339(NOW), "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status."}
    n["status"]["conditions"] = []
    (never,) = unknown_conditions(n, NOW)
    assert (never["reason"], never["message"]) == ("NodeStatusNeverUpdated", "Kubelet never posted node status.")


def test_unreachable_node_gets_both_taints_and_loses_them_when_back():
    n = node("n", taints=[{"key": "user", "effect": "NoSchedule"}])
    taints = desired_taints(n, reachable=False, now=NOW)
    assert taints == [{"key": "user", "effect": "NoSchedule"},
                      {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                      {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                       "timeAdded": now_rfc3339(NOW)}]
    n["spec"]["taints"] = taints
    assert desired_taints(n, reachable=False, now=NOW + 60) == taints  # timeAdded kept
    assert desired_taints(n, reachable=True, now=NOW + 60) == [{"key": "user", "effect": "NoSchedule"}]


def test_not_ready_and_cordoned_nodes_are_tainted():
    keys = [(t["key"], t["effect"]) for t in desired_taints(node("n", ready="False", unschedulable=True), True, NOW)]
    assert keys == [("node.kubernetes.io/not-ready", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute"),
                    ("node.kubernetes.io/unschedulable", "NoSchedule")]


UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


@pytest.mark.parametrize("tolerations,expected", [
    (None, 300.0),  # no toleration: what DefaultTolerationSeconds would have given
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 5}], 5.0),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}], None),
    ([{"operator": "Exists"}], None),
    ([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 5}], 300.0),
])
def test_eviction_delay(tolerations, expected):
    assert eviction_delay(pod(tolerations=tolerations), UNREACHABLE, 300.0) == expected
