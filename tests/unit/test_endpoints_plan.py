from pocketkube.controllers.endpoints_plan import (
    OVER_CAPACITY_ANNOTATION,
    plan_endpoints,
    repack_subsets,
    truncate_subsets,
)
from pocketkube.controllers.endpointslice_plan import TRIGGER_TIME_ANNOTATION


def service(selector=None, ports=None, **spec):
    spec = {"selector": {"app": "web"} if selector is None else selector,
            "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "clusterIP": "10.0.0.1", "ipFamilies": ["IPv4"], **spec}
    if spec["selector"] is False:
        spec.pop("selector")
    return {"metadata": {"name": "web", "namespace": "default", "uid": "svc", "labels": {"tier": "front"}}, "spec": spec}


def pod(name, ip, ready=True, deleting=False, ports=None, node="n1", labels=None):
    m = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        m["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": m, "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def addr(name, ip, node="n1"):
    return {"ip": ip, "nodeName": node, "targetRef": {"kind": "Pod", "namespace": "default", "name": name,
                                                      "uid": f"uid-{name}"}}


def test_ready_and_not_ready_pods_in_one_sorted_subset():
    pods = [pod("c", "10.1.0.3"), pod("a", "10.1.0.10", ready=False), pod("b", "10.1.0.2")]
    plan = plan_endpoints(service(), pods, None, trigger_time="2024-01-01T00:00:00.25Z")
    assert plan.action == "create"
    ep = plan.endpoints
    assert ep["metadata"] == {"name": "web", "namespace": "default", "labels": {"tier": "front"},
                              "annotations": {TRIGGER_TIME_ANNOTATION: "2024-01-01T00:00:00.25Z"}}
    assert ep["subsets"] == [{"addresses": [addr("b", "10.1.0.2"), addr("c", "10.1.0.3")],
                              "notReadyAddresses": [addr("a", "10.1.0.10")],
                              "ports": [{"port": 8080, "protocol": "TCP"}]}]


def test_unchanged_result_is_not_rewritten_but_a_change_is():
    pods = [pod("a", "10.1.0.1")]
    ep = plan_endpoints(service(), pods, None).endpoints
    ep["metadata"]["resourceVersion"] = "5"
    assert plan_endpoints(service(), pods, ep, trigger_time="2024-01-01T00:00:01Z").action == "none"
    plan = plan_endpoints(service(), [pod("a", "10.1.0.1", ready=False)], ep)
    assert plan.action == "update" and plan.endpoints["metadata"]["resourceVersion"] == "5"
    assert plan.endpoints["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.1.0.1"


def test_terminating_pods_removed_unless_publish_not_ready():
    pods = [pod("a", "10.1.0.1"), pod("t", "10.1.0.2", deleting=True)]
    assert [a["ip"] for a in plan_endpoints(service(), pods, None).endpoints["subsets"][0]["addresses"]] == ["10.1.0.1"]
    plan = plan_endpoints(service(publishNotReadyAddresses=True), [*pods, pod("u", "10.1.0.3", ready=False)], None)
    assert [a["ip"] for a in plan.endpoints["subsets"][0]["addresses"]] == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    assert "notReadyAddresses" not in plan.endpoints["subsets"][0]


def test_selector_matching_nothing_gives_an_object_without_subsets():
    plan = plan_endpoints(service(), [pod("x", "10.1.0.1", labels={"app": "db"})], None)
    assert plan.action == "create" and "subsets" not in plan.endpoints


def test_no_selector_and_external_name_are_left_alone():
    hand_made = {"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "1.2.3.4"}]}]}
    assert plan_endpoints(service(selector=False), [pod("a", "10.1.0.1")], hand_made).action == "none"
    assert plan_endpoints(service(type="ExternalName"), [pod("a", "10.1.0.1")], None).action == "none"


def test_named_multiport_splits_subsets_by_port_set():
    svc = service(ports=[{"name": "p1", "port": 80, "targetPort": "svc1", "protocol": "TCP"},
                         {"name": "p2", "port": 81, "targetPort": "svc2", "protocol": "TCP"}])
    pods = [pod("pod1", "10.1.0.1", ports=[{"name": "svc1", "containerPort": 100, "protocol": "TCP"}]),
            pod("pod2", "10.1.0.2", ports=[{"name": "svc2", "containerPort": 101, "protocol": "TCP"}]),
            pod("both", "10.1.0.3", ports=[{"name": "svc1", "containerPort": 100, "protocol": "TCP"},
                                           {"name": "svc2", "containerPort": 101, "protocol": "TCP"}])]
    subsets = plan_endpoints(svc, pods, None).endpoints["subsets"]
    summary = [([a["ip"] for a in s["addresses"]], [(p["name"], p["port"]) for p in s["ports"]]) for s in subsets]
    assert summary == [(["10.1.0.1", "10.1.0.3"], [("p1", 100)]), (["10.1.0.2", "10.1.0.3"], [("p2", 101)])]


def test_repack_merges_ports_and_not_ready_wins():
    a, b = addr("a", "10.0.0.1"), addr("b", "10.0.0.2")
    p80, p81 = ("http", 80, "TCP", ""), ("metrics", 81, "TCP", "")
    subsets = repack_subsets([(p80, a, True), (p81, a, True), (p80, b, False), (p81, b, True)])
    assert subsets == [{"addresses": [a], "notReadyAddresses": [b], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                       {"addresses": [a, b], "ports": [{"name": "metrics", "port": 81, "protocol": "TCP"}]}]


def test_headless_without_ports_lists_addresses_and_is_labelled():
    plan = plan_endpoints(service(ports=[], clusterIP="None"), [pod("a", "10.1.0.1")], None)
    assert plan.endpoints["subsets"] == [{"addresses": [addr("a", "10.1.0.1")]}]
    assert plan.endpoints["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert "subsets" not in plan_endpoints(service(ports=[]), [pod("a", "10.1.0.1")], None).endpoints


def test_over_capacity_truncates_ready_first_and_annotates():
    pods = [pod(f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}", ready=i < 900) for i in range(1100)]
    ep = plan_endpoints(service(), pods, None).endpoints
    subset = ep["subsets"][0]
    assert (len(subset["addresses"]), len(subset["notReadyAddresses"])) == (900, 100)
    assert ep["metadata"]["annotations"][OVER_CAPACITY_ANNOTATION] == "truncated"
    ep = plan_endpoints(service(), pods[:10], ep).endpoints
    assert OVER_CAPACITY_ANNOTATION not in (ep["metadata"].get("annotations") or {})


def test_truncate_spreads_ready_cut_in_proportion():
    subsets = [{"addresses": [{"ip": str(i)} for i in range(600)], "notReadyAddresses": [{"ip": "x"}]},
               {"addresses": [{"ip": str(i)} for i in range(600)]}]
    assert truncate_subsets(subsets, 1000)
    assert [len(s["addresses"]) for s in subsets] == [500, 500]
    assert "notReadyAddresses" not in subsets[0]
    assert not truncate_subsets(subsets, 1000)
