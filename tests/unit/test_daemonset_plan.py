"""DaemonSet decisions: eligible nodes, per-node plans, the rolling update, status; revisions."""

from __future__ import annotations

import copy

from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers import daemonset_plan as plan
from pocketkube.controllers import history

NOW = 1_700_000_000.0
DS = {"metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1,
                   "annotations": {plan.TEMPLATE_GENERATION: "1"}},
      "spec": {"selector": {"matchLabels": {"app": "agent"}},
               "template": {"metadata": {"labels": {"app": "agent"}},
                            "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
               "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}}}


def ds(**spec):
    d = copy.deepcopy(DS)
    d["spec"].update(spec)
    return d


def node(name, labels=None, taints=None, unschedulable=False):
    n = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def pod(name, node_name, hash_="h1", ready=True, created=NOW - 100, phase="Running", deleting=False):
    p = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                      "creationTimestamp": now_rfc3339(created), "labels": {"app": "agent", "controller-revision-hash": hash_}},
         "spec": {"nodeName": node_name}, "status": {"phase": phase}}
    if ready:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(created)}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = now_rfc3339(NOW)
    return p


def names(pods):
    return sorted(p["metadata"]["name"] for p in pods)


def test_which_nodes_run_a_daemon_pod():
    assert plan.should_run(DS, node("n1")) == (True, True)
    assert plan.should_run(ds(template={**DS["spec"]["template"], "spec": {
        "nodeSelector": {"disk": "ssd"}, "containers": []}}), node("n1")) == (False, False)
    no_schedule = node("n2", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    assert plan.should_run(DS, no_schedule) == (False, True)  # a running pod stays
    no_execute = node("n3", taints=[{"key": "dedicated", "effect": "NoExecute"}])
    assert plan.should_run(DS, no_execute) == (False, False)
    # the default tolerations: not-ready NoExecute, unschedulable and pressure NoSchedule
    for taint in ({"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                  {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                  {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}):
        assert plan.should_run(DS, node("n", taints=[taint])) == (True, True), taint
    assert plan.should_run(DS, node("n", unschedulable=True)) == (True, True)
    tolerant = copy.deepcopy(DS)
    tolerant["spec"]["template"]["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    assert plan.should_run(tolerant, no_schedule) == (True, True)


def test_daemon_pod_is_pinned_and_labelled():
    p = plan.daemon_pod(DS, "n1", "h1")
    assert p["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": "h1", "pod-template-generation": "1"}
    assert p["metadata"]["generateName"] == "agent-"
    assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    assert "nodeName" not in p["spec"]  # the scheduler binds it
    assert plan.target_node(p) == "n1"
    keys = {(t["key"], t["effect"]) for t in p["spec"]["tolerations"]}
    assert ("node.kubernetes.io/unreachable", "NoExecute") in keys and len(keys) == 6


def test_plan_creates_on_missing_nodes_and_deletes_where_not_wanted():
    nodes = [node("n1"), node("n2"), node("n3", taints=[{"key": "x", "effect": "NoExecute"}])]
    pods = [pod("a", "n1"), pod("b", "n3"), pod("c", "gone"), pod("d", "n1", created=NOW - 10)]
    p = plan.plan_nodes(DS, nodes, pods, "h1")
    assert p.create_on == ["n2"]
    assert names(p.delete) == ["b", "c", "d"]  # n3 repels it, node "gone" vanished, d is n1's younger extra
    failed = plan.plan_nodes(DS, [node("n1")], [pod("a", "n1", phase="Failed")], "h1")
    assert names(failed.delete) == ["a"] and failed.create_on == []
    terminating = plan.plan_nodes(DS, [node("n1")], [pod("a", "n1", deleting=True)], "h1")
    assert terminating.create_on == [] and terminating.delete == []  # wait for it to go


def test_rolling_update_with_max_unavailable():
    nodes = [node(f"n{i}") for i in range(3)]
    pods = [pod(f"p{i}", f"n{i}", hash_="old") for i in range(3)]
    step = plan.rolling_update(DS, nodes, pods, "new", NOW)
    assert len(step.delete) == 1 and step.create_on == []
    # one new pod not yet available: no further deletion
    pods[0] = pod("p0", "n0", hash_="new", ready=False)
    assert plan.rolling_update(DS, nodes, pods, "new", NOW).delete == []
    # an unavailable old pod may always be replaced
    pods[0] = pod("p0", "n0", hash_="new")
    pods[1] = pod("p1", "n1", hash_="old", ready=False)
    assert names(plan.rolling_update(DS, nodes, pods, "new", NOW).delete) == ["p1", "p2"]


def test_rolling_update_with_surge():
    d = ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    nodes = [node("n0"), node("n1")]
    pods = [pod("p0", "n0", hash_="old"), pod("p1", "n1", hash_="old")]
    step = plan.rolling_update(d, nodes, pods, "new", NOW)
    assert step.create_on == ["n0"] and step.delete == []
    pods.append(pod("q0", "n0", hash_="new", ready=False))
    step = plan.rolling_update(d, nodes, pods, "new", NOW)
    assert step.create_on == [] and step.delete == []  # the surge pod must become available first
    pods[-1] = pod("q0", "n0", hash_="new")
    assert names(plan.rolling_update(d, nodes, pods, "new", NOW).delete) == ["p0"]
    # the manage loop keeps both while the new one is not ready, then the new one only
    assert plan.plan_nodes(d, nodes, [pod("p0", "n0", hash_="old"), pod("q0", "n0", hash_="new", ready=False)],
                           "new").delete == []


def test_status_counts():
    nodes = [node("n0"), node("n1"), node("n2", labels={}), node("n3", taints=[{"key": "x", "effect": "NoSchedule"}])]
    pods = [pod("p0", "n0"), pod("p1", "n1", hash_="old", ready=False), pod("p3", "n3")]
    s = plan.status_of(DS, nodes, pods, "h1", NOW)
    assert s == {"currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 3, "numberReady": 1,
                 "updatedNumberScheduled": 1, "numberAvailable": 1, "numberUnavailable": 2, "observedGeneration": 1}


def test_revisions():
    owner = {**DS, "metadata": {**DS["metadata"]}}
    r1 = history.new_revision(owner, plan.DAEMONSETS, 1)
    assert r1["metadata"]["name"] == f"agent-{history.template_hash(owner)}"
    assert r1["data"]["spec"]["template"]["$patch"] == "replace"
    assert history.template_of(r1) == DS["spec"]["template"]
    assert r1["metadata"]["labels"]["controller-revision-hash"] == history.template_hash(owner)
    assert history.template_hash(owner, 1) != history.template_hash(owner)
    r1["metadata"]["uid"] = "r1"
    other = ds(template={"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    r2 = {**history.new_revision(other, plan.DAEMONSETS, 2), "revision": 2}
    owned = history.owned_revisions(owner, [r2, r1, {"metadata": {"name": "foreign"}, "revision": 9}])
    assert [r["revision"] for r in owned] == [1, 2]
    assert history.equal_revision(owned, history.revision_data(owner)) is r1
    assert history.next_revision_number(owned) == 3
    assert history.revisions_to_prune(owned, {r2["metadata"]["name"]}, 0) == [r1]
    assert history.revisions_to_prune(owned, set(), 1) == [r1]
    assert history.revisions_to_prune(owned, set(), 2) == []
