import copy
import itertools

import pytest

from pocketkube.api.timestamps import format_rfc3339_nano
from pocketkube.controllers.endpointslice import ServiceIndex
from pocketkube.controllers.endpointslice_plan import (
    CONTROLLER_NAME,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    TRIGGER_TIME_ANNOTATION,
    find_port,
    plan_slices,
    should_pod_be_in_endpoints,
)

_uids = itertools.count(1)


def service(name="web", selector=None, ports=None, **spec):
    spec = {"selector": {"app": "web"} if selector is None else selector,
            "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "clusterIP": "10.0.0.1", "ipFamilies": ["IPv4"], **spec}
    if spec["selector"] is False:
        spec.pop("selector")
    return {"metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": {"tier": "front"}},
            "spec": spec}


def pod(name, ip, ready=True, labels=None, node="n1", deleting=False, phase="Running", ports=None, ns="default"):
    m = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        m["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
    return {"metadata": m, "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
            "status": status}


NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}},
         "n2": {"metadata": {"name": "n2"}}}


def written(plan, names=None):
    """Give created slices names/uids as the API server would, so plans can be chained."""
    names = names if names is not None else itertools.count()
    out = []
    for s in plan.create:
        s = copy.deepcopy(s)
        s["metadata"]["name"] = s["metadata"].pop("generateName") + f"x{next(names)}"
        s["metadata"]["uid"] = f"slice-{next(_uids)}"
        out.append(s)
    return out + [copy.deepcopy(s) for s in plan.update]


def apply(existing, plan):
    gone = {s["metadata"]["name"] for s in plan.delete} | {s["metadata"]["name"] for s in plan.update}
    return [s for s in existing if s["metadata"]["name"] not in gone] + written(plan)


def test_three_ready_pods_one_slice_with_everything_kubernetes_sets():
    pods = [pod(f"p{i}", f"10.1.0.{i}", node="n1" if i < 3 else "n2") for i in (1, 2, 3)]
    plan = plan_slices(service(), pods, NODES, [], trigger_time="2024-01-01T00:00:00.5Z")
    assert not plan.update and not plan.delete and len(plan.create) == 1
    s = plan.create[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"tier": "front", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}
    assert s["metadata"]["annotations"] == {TRIGGER_TIME_ANNOTATION: "2024-01-01T00:00:00.5Z"}
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    assert [e["addresses"] for e in s["endpoints"]] == [["10.1.0.1"], ["10.1.0.2"], ["10.1.0.3"]]
    e1, e3 = s["endpoints"][0], s["endpoints"][2]
    assert e1["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert e1["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "p1", "uid": "uid-p1"}
    assert (e1["nodeName"], e1["zone"]) == ("n1", "z1")
    assert e3["nodeName"] == "n2" and "zone" not in e3


def test_unready_terminating_and_excluded_pods():
    pods = [pod("ready", "10.1.0.1"), pod("unready", "10.1.0.2", ready=False),
            pod("term", "10.1.0.3", deleting=True), pod("done", "10.1.0.4", phase="Succeeded"),
            pod("noip", None), pod("other", "10.1.0.5", labels={"app": "db"}),
            pod("elsewhere", "10.1.0.6", ns="prod")]
    eps = plan_slices(service(), pods, NODES, []).create[0]["endpoints"]
    assert {e["targetRef"]["name"]: e["conditions"] for e in eps} == {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "unready": {"ready": False, "serving": False, "terminating": False},
        "term": {"ready": False, "serving": True, "terminating": True}}


def test_publish_not_ready_addresses_marks_everything_ready():
    pods = [pod("unready", "10.1.0.2", ready=False), pod("term", "10.1.0.3", deleting=True, ready=False)]
    eps = plan_slices(service(publishNotReadyAddresses=True), pods, NODES, []).create[0]["endpoints"]
    assert [e["conditions"] for e in eps] == [{"ready": True, "serving": False, "terminating": False},
                                              {"ready": True, "serving": False, "terminating": True}]


def test_named_target_port_resolving_differently_gives_two_slices():
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    pods = [pod("a", "10.1.0.1", ports=[{"name": "web", "containerPort": 3000, "protocol": "TCP"}]),
            pod("b", "10.1.0.2", ports=[{"name": "web", "containerPort": 3001, "protocol": "TCP"}]),
            pod("c", "10.1.0.3", ports=[{"name": "web", "containerPort": 3000, "protocol": "UDP"}])]
    plan = plan_slices(svc, pods, NODES, [])
    by_port = {tuple(p["port"] for p in s["ports"]): [e["targetRef"]["name"] for e in s["endpoints"]]
               for s in plan.create}
    assert by_port == {(3000,): ["a"], (3001,): ["b"], (): ["c"]}  # c: the name exists only for UDP


def test_multiport_with_named_ports_per_pod():
    svc = service(ports=[{"name": "p1", "port": 80, "targetPort": "svc1", "protocol": "TCP"},
                         {"name": "p2", "port": 81, "targetPort": "svc2", "protocol": "TCP"}])
    pods = [pod("pod1", "10.1.0.1", ports=[{"name": "svc1", "containerPort": 100}]),
            pod("pod2", "10.1.0.2", ports=[{"name": "svc2", "containerPort": 101}])]
    plan = plan_slices(svc, pods, NODES, [])
    assert sorted((s["ports"][0]["name"], s["ports"][0]["port"], s["endpoints"][0]["addresses"][0])
                  for s in plan.create) == [("p1", 100, "10.1.0.1"), ("p2", 101, "10.1.0.2")]


def test_find_port_checks_protocol_and_sidecars():
    p = pod("a", "10.1.0.1", ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    p["spec"]["initContainers"] = [{"name": "side", "restartPolicy": "Always", "ports": [{"name": "m", "containerPort": 9}]},
                                   {"name": "init", "ports": [{"name": "x", "containerPort": 7}]}]
    assert find_port(p, {"targetPort": "dns", "protocol": "UDP"}) == 53
    assert find_port(p, {"targetPort": "dns", "protocol": "TCP"}) is None
    assert find_port(p, {"targetPort": "m", "protocol": "TCP"}) == 9
    assert find_port(p, {"targetPort": "x", "protocol": "TCP"}) is None
    assert find_port(p, {"targetPort": 1234, "protocol": "TCP"}) == 1234


def test_selector_matching_nothing_gets_one_placeholder_and_keeps_it():
    plan = plan_slices(service(), [], NODES, [])
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == [] and plan.create[0]["ports"] == []
    existing = written(plan)
    assert plan_slices(service(), [], NODES, existing).empty


def test_placeholder_is_reused_when_pods_appear_and_restored_when_they_go():
    existing = written(plan_slices(service(), [], NODES, []))
    plan = plan_slices(service(), [pod("a", "10.1.0.1")], NODES, existing)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == existing[0]["metadata"]["name"]
    assert plan.update[0]["ports"][0]["port"] == 8080
    existing = apply(existing, plan)
    plan = plan_slices(service(), [], NODES, existing)
    assert not plan.create and not plan.delete
    assert plan.update[0]["endpoints"] == [] and plan.update[0]["ports"] == []


def test_no_selector_or_external_name_gets_none_and_foreign_slices_are_untouched():
    hand_made = {"metadata": {"name": "web-manual", "labels": {SERVICE_NAME_LABEL: "web"}}, "addressType": "IPv4",
                 "endpoints": [], "ports": []}
    ours = written(plan_slices(service(), [], NODES, []))
    assert plan_slices(service(selector=False), [pod("a", "10.1.0.1")], NODES, [hand_made]).empty
    plan = plan_slices(service(type="ExternalName"), [pod("a", "10.1.0.1")], NODES, [hand_made, *ours])
    assert plan.delete == ours and not plan.create and not plan.update
    assert plan_slices(service(), [pod("a", "10.1.0.1")], NODES, [hand_made]).delete == []


def test_empty_selector_selects_every_pod_of_the_namespace():
    plan = plan_slices(service(selector={}), [pod("a", "10.1.0.1", labels={"x": "y"})], NODES, [])
    assert plan.create[0]["endpoints"][0]["targetRef"]["name"] == "a"


def test_more_than_100_pods_give_two_slices_and_small_changes_touch_one():
    pods = [pod(f"p{i:03d}", f"10.1.{i // 200}.{i % 200 + 1}") for i in range(150)]
    plan = plan_slices(service(), pods, NODES, [])
    assert sorted(len(s["endpoints"]) for s in plan.create) == [50, 100]
    existing = written(plan)
    assert plan_slices(service(), pods, NODES, existing).empty
    plan = plan_slices(service(), [*pods, pod("extra", "10.9.0.1")], NODES, existing)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert len(plan.update[0]["endpoints"]) == 51  # the slice with room, not a new one


def test_least_room_that_fits_picks_the_fullest_slice_that_still_fits():
    def managed(name, count):
        return {"metadata": {"name": name, "uid": name, "labels": plan_slices(service(), [], NODES, []).create[0]
                             ["metadata"]["labels"], "ownerReferences": [{"kind": "Service", "uid": "svc-uid"}]},
                "addressType": "IPv4", "ports": [{"name": "", "protocol": "TCP", "port": 8080}],
                "endpoints": [{"addresses": [f"10.{name}.0.{i}"], "conditions": {"ready": True, "serving": True,
                                                                                  "terminating": False},
                               "targetRef": {"kind": "Pod", "namespace": "default", "name": f"{name}{i}",
                                             "uid": f"uid-{name}{i}"}, "nodeName": "n2"} for i in range(count)]}
    existing = [managed("1", 90), managed("2", 97), managed("3", 50)]
    pods = [pod(e["targetRef"]["name"], e["addresses"][0], node="n2") for s in existing for e in s["endpoints"]]
    new = [pod(f"new{i}", f"10.200.0.{i}", node="n2") for i in range(5)]
    plan = plan_slices(service(), pods + new, NODES, existing)
    assert [s["metadata"]["name"] for s in plan.update] == ["1"]  # 97 + 5 > 100; 90 leaves less room than 50


def test_endpoint_change_updates_in_place_and_removal_deletes_empty_slices():
    existing = written(plan_slices(service(), [pod("a", "10.1.0.1")], NODES, []))
    plan = plan_slices(service(), [pod("a", "10.1.0.1", ready=False)], NODES, existing)
    assert len(plan.update) == 1 and plan.update[0]["endpoints"][0]["conditions"]["ready"] is False
    assert plan.update[0]["metadata"]["uid"] == existing[0]["metadata"]["uid"]


def test_service_label_change_is_an_update():
    existing = written(plan_slices(service(), [pod("a", "10.1.0.1")], NODES, []))
    svc = service()
    svc["metadata"]["labels"] = {"tier": "back"}
    plan = plan_slices(svc, [pod("a", "10.1.0.1")], NODES, existing)
    assert plan.update[0]["metadata"]["labels"]["tier"] == "back"


def test_pod_on_unknown_node_is_skipped_unless_publishing_not_ready():
    plan = plan_slices(service(), [pod("a", "10.1.0.1", node="ghost")], NODES, [])
    assert plan.missing_nodes == {"ghost"} and plan.create[0]["endpoints"] == []
    plan = plan_slices(service(publishNotReadyAddresses=True), [pod("a", "10.1.0.1", node="ghost")], NODES, [])
    assert not plan.missing_nodes and plan.create[0]["endpoints"][0]["nodeName"] == "ghost"


def test_dual_stack_gets_a_slice_per_family_and_dropped_family_is_deleted():
    p = pod("a", "10.1.0.1")
    p["status"]["podIPs"] = [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}]
    plan = plan_slices(service(ipFamilies=["IPv4", "IPv6"]), [p], NODES, [])
    assert sorted((s["addressType"], s["endpoints"][0]["addresses"][0]) for s in plan.create) == [
        ("IPv4", "10.1.0.1"), ("IPv6", "fd00::1")]
    plan = plan_slices(service(), [p], NODES, written(plan))
    assert [s["addressType"] for s in plan.delete] == ["IPv6"] and plan.empty is False and not plan.create


def test_headless_label_and_hostname():
    svc = service(clusterIP="None")
    p = pod("a", "10.1.0.1")
    p["spec"].update(hostname="h", subdomain="web")
    s = plan_slices(svc, [p], NODES, []).create[0]
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert s["endpoints"][0]["hostname"] == "h"


def test_trigger_time_cleared_when_not_given():
    existing = written(plan_slices(service(), [pod("a", "10.1.0.1")], NODES, [], trigger_time="2024-01-01T00:00:00Z"))
    plan = plan_slices(service(), [pod("a", "10.1.0.1", ready=False)], NODES, existing)
    assert TRIGGER_TIME_ANNOTATION not in (plan.update[0]["metadata"].get("annotations") or {})


@pytest.mark.parametrize("ns,text", [(1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
                                     (1_700_000_000_123_450_000, "2023-11-14T22:13:20.12345Z"),
                                     (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z")])
def test_format_trigger_time_is_rfc3339nano(ns, text):
    assert format_rfc3339_nano(ns) == text


def test_should_pod_be_in_endpoints():
    assert should_pod_be_in_endpoints(pod("a", "10.0.0.1", deleting=True), True)
    assert not should_pod_be_in_endpoints(pod("a", "10.0.0.1", deleting=True), False)
    assert not should_pod_be_in_endpoints(pod("a", "10.0.0.1", phase="Failed"), True)


class FakeInformer:
    def __init__(self, objs):
        self.objs, self.handlers = objs, None

    def list(self):
        return list(self.objs)

    def add_handlers(self, on_add=None, on_update=None, on_delete=None):
        self.handlers = (on_add, on_update, on_delete)


def test_service_index_follows_label_changes_and_maps_pods_to_services():
    web, other_ns = pod("a", "10.1.0.1"), pod("b", "10.1.0.2", ns="prod")
    services, pods = FakeInformer([service(), service("all", selector={})]), FakeInformer([web, other_ns])
    index = ServiceIndex(services, pods)
    assert [p["metadata"]["name"] for p in index.pods_for(service())] == ["a"]
    assert index.service_keys_for_pod_change(None, web) == {"default/web", "default/all"}
    relabelled = copy.deepcopy(web)
    relabelled["metadata"]["labels"] = {"app": "db"}
    pods.handlers[1](web, relabelled)
    assert index.pods_for(service()) == [] and len(index.pods_for(service("all", selector={}))) == 1
    assert index.service_keys_for_pod_change(web, relabelled) == {"default/web", "default/all"}
    status_only = copy.deepcopy(relabelled)
    status_only["status"]["startTime"] = "now"
    assert index.service_keys_for_pod_change(relabelled, status_only) == set()
    pods.handlers[2](relabelled)
    assert index.pods_for(service("all", selector={})) == []
