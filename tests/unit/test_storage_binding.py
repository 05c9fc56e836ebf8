"""The pure storage decisions: claim ↔ volume matching, the binder's and provisioner's plans, and
the scheduler's volume filters."""

from __future__ import annotations

from pocketkube.api.volumes import find_matching_volume, node_affinity_allows, pod_claim_names
from pocketkube.controllers import volume_plan as plan
from pocketkube.scheduler import volumebinding as vb
from pocketkube.scheduler.plugins import prefilter_message


def pv(name, size="1Gi", cls="", modes=("ReadWriteOnce",), node=None, labels=None, claim_ref=None, phase="Available"):
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
            "hostPath": {"path": f"/tmp/{name}"}}
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": {"phase": phase}}


def pvc(name="c", size="1Gi", cls="", modes=("ReadWriteOnce",), uid="u1", **extra):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, "storageClassName": cls,
            **extra}
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "annotations": {}}, "spec": spec,
            "status": {"phase": "Pending"}}


def node(name):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}


def names(found):
    return found["metadata"]["name"] if found else None


# ---- matching ----

def test_the_smallest_satisfying_volume_matches():
    volumes = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "500Mi"), pv("rwx", "1Gi", modes=["ReadWriteMany"])]
    assert names(find_matching_volume(pvc(size="1Gi"), volumes)) == "small"
    assert names(find_matching_volume(pvc(size="20Gi"), volumes)) is None
    assert names(find_matching_volume(pvc(modes=["ReadWriteMany"]), volumes)) == "rwx"


def test_class_selector_and_mode_must_agree():
    volumes = [pv("fast", cls="fast"), pv("plain"), pv("labelled", labels={"tier": "db"})]
    assert names(find_matching_volume(pvc(cls="fast"), volumes)) == "fast"
    assert names(find_matching_volume(pvc(selector={"matchLabels": {"tier": "db"}}), volumes)) == "labelled"
    assert names(find_matching_volume(pvc(volumeMode="Block"), volumes)) is None


def test_pre_bound_volumes_win_and_others_claims_are_skipped():
    mine = pv("mine", "5Gi", claim_ref={"namespace": "ns", "name": "c"})
    theirs = pv("theirs", "1Gi", claim_ref={"namespace": "ns", "name": "other", "uid": "x"})
    free = pv("free", "1Gi")
    assert names(find_matching_volume(pvc(), [theirs, free, mine])) == "mine"
    assert names(find_matching_volume(pvc(uid="other-uid"), [theirs])) is None
    assert names(find_matching_volume(pvc(), [pv("rel", phase="Released"), pv("fail", phase="Failed")])) is None


def test_delayed_binding_only_matches_volumes_the_node_reaches():
    volumes = [pv("on-a", node="a"), pv("on-b", node="b", size="2Gi")]
    assert names(find_matching_volume(pvc(), volumes, node("b"))) == "on-b"
    assert node_affinity_allows(pv("any"), node("a")) and not node_affinity_allows(volumes[0], node("b"))


def test_pod_claim_names_each_once():
    pod = {"spec": {"volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "x"}}, {"name": "b",
            "emptyDir": {}}, {"name": "c", "persistentVolumeClaim": {"claimName": "x"}}]}}
    assert pod_claim_names(pod) == ["x"]


# ---- the binder's plans ----

def test_binding_writes_claim_ref_and_annotations():
    claim, volume = pvc(), pv("v")
    bound = plan.volume_bound_to(volume, claim)
    assert bound["spec"]["claimRef"]["uid"] == "u1"
    assert bound["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    claimed = plan.claim_bound_to(claim, bound)
    assert claimed["spec"]["volumeName"] == "v"
    assert claimed["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes",
                                                  "pv.kubernetes.io/bound-by-controller": "yes"}
    assert plan.bound_claim_status(claimed, bound) == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                                       "capacity": {"storage": "1Gi"}}
    assert "volumeName" not in claim["spec"]  # inputs untouched


def test_volume_verdicts():
    claim = pvc()
    ref = {"namespace": "ns", "name": "c", "uid": "u1"}
    assert plan.judge_volume(pv("v"), None) == plan.VolumeVerdict("Available")
    assert plan.judge_volume(pv("v", claim_ref=ref), None) == plan.VolumeVerdict("Released", reclaim=True)
    claim["spec"]["volumeName"] = "v"
    assert plan.judge_volume(pv("v", claim_ref=ref), claim) == plan.VolumeVerdict("Bound")
    other = {**pvc(uid="u2")}
    assert plan.judge_volume(pv("v", claim_ref=ref), other).reclaim  # a namesake is not our claim
    claim["spec"]["volumeName"] = "elsewhere"
    by_us = pv("v", claim_ref=ref)
    by_us["metadata"]["annotations"] = {"pv.kubernetes.io/bound-by-controller": "yes"}
    assert plan.judge_volume(by_us, claim).unbind


def test_delayed_binding_waits_for_the_selected_node():
    wffc = {"volumeBindingMode": "WaitForFirstConsumer"}
    claim = pvc(cls="standard")
    assert plan.delayed_binding(claim, wffc) and not plan.delayed_binding(claim, {"volumeBindingMode": "Immediate"})
    claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = "n1"
    assert not plan.delayed_binding(claim, wffc)


# ---- the provisioner's plans ----

def test_provisioned_volume_is_pinned_pre_bound_and_sized_as_requested():
    sc = {"metadata": {"name": "standard"}, "provisioner": "pocketkube.io/local-path", "reclaimPolicy": "Delete",
          "volumeBindingMode": "WaitForFirstConsumer"}
    claim = pvc(cls="standard", size="3Gi")
    path = plan.local_path("/d/nodes/{node}/storage", "n2", claim)
    assert path == "/d/nodes/n2/storage/pvc-u1_ns_c"
    volume = plan.provisioned_volume(claim, sc, "n2", path)
    assert volume["metadata"]["name"] == "pvc-u1"
    assert volume["spec"]["capacity"] == {"storage": "3Gi"}
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert volume["spec"]["claimRef"]["uid"] == "u1"
    assert volume["spec"]["hostPath"] == {"path": path, "type": "DirectoryOrCreate"}
    assert node_affinity_allows(volume, node("n2")) and not node_affinity_allows(volume, node("n1"))
    assert plan.deletable_directory(volume, "/d/nodes/{node}/storage", "pocketkube.io/local-path") == path


def test_only_our_own_directories_are_ever_deleted():
    sc = {"provisioner": "pocketkube.io/local-path"}
    claim = pvc()
    volume = plan.provisioned_volume(claim, sc, "n1", "/d/nodes/n1/storage/pvc-u1_ns_c")
    template = "/d/nodes/{node}/storage"
    for path in ("/", "/d/nodes/n1/storage", "/d/nodes/n1/storage/../../etc", "/etc/pvc-u1_ns_c"):
        volume["spec"]["hostPath"]["path"] = path
        assert plan.deletable_directory(volume, template, "pocketkube.io/local-path") is None, path
    volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] = "someone.else/x"
    assert plan.deletable_directory(volume, template, "pocketkube.io/local-path") is None


def test_provisioning_node():
    claim = pvc()
    assert plan.provisioning_node(claim, {"volumeBindingMode": "WaitForFirstConsumer"}, ["n1"]) is None
    assert plan.provisioning_node(claim, {"volumeBindingMode": "Immediate"}, ["n2", "n1"]) == "n1"
    assert plan.provisioning_node(claim, {"volumeBindingMode": "Immediate"}, []) is None
    claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = "n2"
    assert plan.provisioning_node(claim, {"volumeBindingMode": "WaitForFirstConsumer"}, ["n1"]) == "n2"


# ---- the scheduler's volume filters ----

def pod_with(*claims):
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}}


def state(*objs, classes=()):
    s = vb.VolumeState(classes={c["metadata"]["name"]: c for c in classes})
    for o in objs:
        if "capacity" in o["spec"]:
            s.volumes[o["metadata"]["name"]] = o
        else:
            s.claims[f"ns/{o['metadata']['name']}"] = o
    return s


WFFC = {"metadata": {"name": "standard"}, "provisioner": "pocketkube.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer"}
STATIC_WFFC = {"metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
               "volumeBindingMode": "WaitForFirstConsumer"}


def test_prefilter_reasons():
    assert vb.prefilter_volumes(pod_with("missing"), state()) == 'persistentvolumeclaim "missing" not found'
    deleting = pvc("d", cls="standard")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert vb.prefilter_volumes(pod_with("d"), state(deleting, classes=[WFFC])) == \
        'persistentvolumeclaim "d" is being deleted'
    assert vb.prefilter_volumes(pod_with("c"), state(pvc(cls="immediate"))) == \
        "pod has unbound immediate PersistentVolumeClaims"
    assert vb.prefilter_volumes(pod_with("c"), state(pvc(cls="standard"), classes=[WFFC])) is None
    rwop = pvc(cls="standard", modes=["ReadWriteOncePod"])
    s = state(rwop, classes=[WFFC])
    s.rwop_in_use.add("ns/c")
    assert vb.prefilter_volumes(pod_with("c"), s) == vb.REASON_RWOP
    assert prefilter_message(2, 'persistentvolumeclaim "x" not found') == (
        '0/2 nodes are available: persistentvolumeclaim "x" not found. preemption: 0/2 nodes are available: '
        "2 Preemption is not helpful for scheduling.")


def test_a_bound_claim_pins_the_pod_to_its_volumes_node():
    claim = pvc(cls="standard", volumeName="v")
    s = state(claim, pv("v", node="a"), classes=[WFFC])
    assert vb.filter_volumes(pod_with("c"), node("a"), s) is None
    assert vb.filter_volumes(pod_with("c"), node("b"), s) == "node(s) had volume node affinity conflict"
    lost = state(pvc(volumeName="gone"))
    assert vb.filter_volumes(pod_with("c"), node("a"), lost) == vb.REASON_PV_NOT_EXIST


def test_an_unbound_wait_for_first_consumer_claim():
    # A provisioner can serve any node; a static class only nodes with a matching volume.
    assert vb.filter_volumes(pod_with("c"), node("a"), state(pvc(cls="standard"), classes=[WFFC])) is None
    s = state(pvc(cls="local"), pv("lv", cls="local", node="b"), classes=[STATIC_WFFC])
    assert vb.filter_volumes(pod_with("c"), node("a"), s) == vb.REASON_BIND_CONFLICT
    assert vb.filter_volumes(pod_with("c"), node("b"), s) is None
    # Once a node is selected, only that node.
    chosen = pvc(cls="standard")
    chosen["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = "b"
    s = state(chosen, classes=[WFFC])
    assert vb.filter_volumes(pod_with("c"), node("a"), s) == vb.REASON_BIND_CONFLICT
    assert vb.claims_to_select(pod_with("c"), "b", s) == []
    assert vb.claims_to_select(pod_with("c"), "a", s) == [chosen]


def test_the_pod_waits_until_every_claim_is_bound():
    unbound, bound = pvc("u", cls="standard"), pvc("b", volumeName="v")
    bound["status"]["phase"] = "Bound"
    assert not vb.pod_volumes_bound(pod_with("u", "b"), state(unbound, bound))
    assert vb.pod_volumes_bound(pod_with("b"), state(bound))


def test_only_scheduled_unfinished_pods_hold_a_claim():
    from pocketkube.api.volumes import claim_uses

    user = {**pod_with("c"), "status": {"phase": "Running"}}
    user["spec"]["nodeName"] = "n1"
    assert claim_uses(user, "ns", "c") and not claim_uses(user, "other", "c") and not claim_uses(user, "ns", "d")
    assert not claim_uses({**user, "status": {"phase": "Succeeded"}}, "ns", "c")
    assert not claim_uses(pod_with("c"), "ns", "c")  # not scheduled yet


def test_immediate_claims_spread_over_the_nodes():
    sc = {"provisioner": "pocketkube.io/local-path", "volumeBindingMode": "Immediate"}
    held = [plan.provisioned_volume(pvc(uid=f"u{i}"), sc, "n1", f"/d/n1/pvc-u{i}_ns_c") for i in range(2)]
    held.append(plan.provisioned_volume(pvc(uid="u9"), sc, "n2", "/d/n2/pvc-u9_ns_c"))
    assert plan.provisioning_node(pvc(), sc, ["n1", "n2", "n3"], held) == "n3"
    assert plan.provisioning_node(pvc(), sc, ["n1", "n2"], held) == "n2"
