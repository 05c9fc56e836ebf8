"""The overview and describe views as JSON: nodes with their pods and usage, Services with
endpoint counts, newest events first, and each kind's sections, events and YAML."""

from __future__ import annotations

import yaml

from pocketkube.apiserver.ui import describe


def _pod(name, node, ready=True):
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "containerStatuses": [{"name": "c", "ready": ready, "restartCount": 2,
                                              "state": {"running": {}}}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _event(name, kind, obj, ts, reason="Started"):
    return {"metadata": {"name": name, "namespace": "default"}, "type": "Normal", "reason": reason,
            "involvedObject": {"kind": kind, "name": obj}, "message": f"{reason} {obj}", "lastTimestamp": ts, "count": 2}


NODE = {"metadata": {"name": "node-1", "labels": {}}, "status": {
    "addresses": [{"type": "InternalIP", "address": "127.0.1.1"}], "allocatable": {"cpu": "2", "pods": "110"},
    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}], "nodeInfo": {"kubeletVersion": "v1"}}}


def test_overview():
    svc = {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "t"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30008}]}}
    slices = [{"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                             {"addresses": ["10.0.0.2"], "conditions": {"ready": False}}]}]
    events = [_event(f"e{i}", "Pod", "a", f"2026-01-01T00:00:{i:02d}Z") for i in range(60)]
    out = describe.overview([NODE], [_pod("b", "node-1"), _pod("a", "node-1", ready=False), _pod("z", "")],
                            [(svc, *describe.endpoint_counts(slices))], events, {"node-1": {"cpu": "5m", "memory": "1Mi"}})
    n = out["nodes"][0]
    assert (n["name"], n["ip"], n["ready"], n["cpu"], n["memory"]) == ("node-1", "127.0.1.1", True, "5m", "1Mi")
    assert [(p["name"], p["ready"]) for p in n["pods"]] == [("a", "0/1"), ("b", "1/1")]
    s = out["services"][0]
    assert (s["name"], s["readyEndpoints"], s["totalEndpoints"], s["ports"][0]["nodePort"]) == ("web", 1, 2, 30008)
    assert len(out["events"]) == 50 and out["events"][0]["lastTimestamp"] == "2026-01-01T00:00:59Z"
    assert out["events"][0]["object"] == "Pod/a" and out["events"][0]["count"] == 2


def test_describe_pod_with_its_events_and_yaml():
    pod = _pod("a", "node-1")
    events = [_event("e1", "Pod", "a", "2026-01-01T00:00:01Z"), _event("e2", "Pod", "other", "2026-01-01T00:00:02Z")]
    d = describe.describe("pods", pod, events)
    assert (d["kind"], d["namespace"], d["name"]) == ("Pod", "default", "a")
    rows = dict(d["sections"][0]["rows"])
    assert rows["Node"] == "node-1" and rows["Labels"] == "app=web" and rows["Ready"] == "1/1"
    assert "restarts 2" in d["sections"][1]["rows"][0][1] and "ports 80/TCP" in d["sections"][1]["rows"][0][1]
    assert [e["object"] for e in d["events"]] == ["Pod/a"]
    assert yaml.safe_load(d["yaml"]) == pod


def test_describe_every_kind():
    assert describe.describe("nodes", NODE, [])["sections"][1]["rows"] == [["InternalIP", "127.0.1.1"]]
    svc = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "NodePort", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30008}]}}
    d = describe.describe("services", svc, [])
    assert d["sections"][1]["rows"] == [["http", "80/TCP → 8080, NodePort 30008"]]
    assert ["External Traffic Policy", "Local"] in d["sections"][0]["rows"]
    sl = {"metadata": {"name": "web-x", "namespace": "default"}, "addressType": "IPv4",
          "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}]}
    assert describe.describe("endpointslices", sl, [])["sections"][1]["rows"][0][0] == "10.0.0.1"
    dep = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
           "status": {"replicas": 3, "readyReplicas": 2}}
    d = describe.describe("deployments", dep, [])
    assert ["Replicas", "2 ready / 3 current / 3 desired"] in d["sections"][0]["rows"]
    assert d["kind"] == "Deployment" and describe.describe("replicasets", dep, [])["kind"] == "ReplicaSet"
