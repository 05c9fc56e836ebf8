"""The live map's MODEL joined from a Service, its EndpointSlices, pods and nodes: entries per
Service type, endpoint states, the default Service, and the words for "no ready endpoints"."""

from __future__ import annotations

from pocketkube.apiserver.ui import topology


def node(name: str, ip: str, ready: bool = True) -> dict:
    return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                                                   "conditions": [{"type": "Ready",
                                                                   "status": "True" if ready else "False"}]}}


def pod(name: str, node_name: str, labels: dict | None = None, ready: bool = True, ports=()) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "myapp"}},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "ports": list(ports)}]},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(stype: str = "NodePort", **spec) -> dict:
    port = {"name": "", "protocol": "TCP", "port": 80, "targetPort": 80}
    if stype in ("NodePort", "LoadBalancer"):
        port["nodePort"] = 30008
    return {"metadata": {"name": "myapp-service", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": stype, "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "selector": {"app": "myapp"},
                     "ports": [port]} | spec}


def endpoint(ip: str, pod_name: str, node_name: str, ready=True, terminating=False) -> dict:
    return {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
            "nodeName": node_name, "targetRef": {"kind": "Pod", "name": pod_name, "namespace": "default"}}


def eps_slice(*endpoints, name="myapp-service-abc", port=80, port_name="") -> dict:
    return {"metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "myapp-service"}},
            "ports": [{"name": port_name, "protocol": "TCP", "port": port}], "endpoints": list(endpoints)}


NODES = [node("node-2", "127.0.1.2"), node("node-1", "127.0.1.1"), node("node-3", "127.0.1.3", ready=False)]


def build(svc, slices=(), pods=(), nodes=NODES, **kw):
    return topology.build_model(namespace="default", name="myapp-service", service=svc, slices=list(slices),
                                pods=list(pods), nodes=list(nodes), server="https://127.0.0.1:6443", **kw)


def test_seed_nodeport_picture():
    pods = [pod("a", "node-1"), pod("b", "node-2"), pod("c", "node-2")]
    s = eps_slice(endpoint("10.244.2.7", "c", "node-2"), endpoint("10.244.1.5", "a", "node-1"),
                  endpoint("10.244.2.6", "b", "node-2"))
    other = eps_slice(endpoint("10.244.9.9", "z", "node-1")) | {"metadata": {
        "name": "x", "namespace": "default", "labels": {"kubernetes.io/service-name": "other"}}}
    m = build(service(), [s, other], pods, dataplane="nftables", resource_version="7")
    assert [e["id"] for e in m["entries"]] == ["NodePort/127.0.1.1:30008", "NodePort/127.0.1.2:30008",
                                               "NodePort/127.0.1.3:30008"]
    assert m["entries"][2]["ready"] is False and m["entries"][0]["curl"] == "curl http://127.0.1.1:30008"
    assert [n["name"] for n in m["nodes"]] == ["node-1", "node-2", "node-3"]
    assert [(e["node"], e["pod"], e["key"]) for e in m["endpoints"]] == [
        ("node-1", "a", "10.244.1.5:80"), ("node-2", "b", "10.244.2.6:80"), ("node-2", "c", "10.244.2.7:80")]
    assert m["expectedShare"] == 0.3333 and m["error"] is None and m["resourceVersion"] == "7"
    svc = m["service"]
    assert (svc["readyEndpoints"], svc["totalEndpoints"], svc["problem"]) == (3, 3, None)
    assert svc["externalTrafficPolicy"] == "Cluster" and svc["sessionAffinity"] == "None"
    assert svc["port"] == {"name": "", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 30008}
    assert m["cluster"] == {"dataplane": "nftables", "server": "https://127.0.0.1:6443"}


def test_endpoint_states_and_share():
    s = eps_slice(endpoint("10.0.0.1", "a", "node-1"), endpoint("10.0.0.2", "b", "node-1", ready=False),
                  endpoint("10.0.0.3", "c", "node-1", ready=False, terminating=True))
    m = build(service(), [s])
    assert [e["state"] for e in m["endpoints"]] == ["Ready", "NotReady", "Terminating"]
    assert m["expectedShare"] == 1.0 and m["service"]["readyEndpoints"] == 1


def test_endpoints_deduplicated_over_slices_and_node_from_pod():
    e = endpoint("10.0.0.1", "a", "")
    e.pop("nodeName")
    m = build(service(), [eps_slice(e), eps_slice(e, name="dup")], [pod("a", "node-2")])
    assert len(m["endpoints"]) == 1 and m["endpoints"][0]["node"] == "node-2"


def test_clusterip_and_loadbalancer_entries():
    m = build(service("ClusterIP"))
    assert [e["id"] for e in m["entries"]] == ["ClusterIP/10.96.0.20:80"] and m["entries"][0]["node"] is None
    assert m["service"]["externalTrafficPolicy"] is None
    lb = service("LoadBalancer", externalTrafficPolicy="Local") | {
        "status": {"loadBalancer": {"ingress": [{"ip": "10.97.0.1"}]}}}
    m = build(lb)
    assert [e["id"] for e in m["entries"]] == ["LoadBalancer/10.97.0.1:80"]
    pending = build(service("LoadBalancer"))  # no ingress IP yet: reached through its node ports
    assert [e["kind"] for e in pending["entries"]] == ["NodePort"] * 3
    assert m["service"]["loadBalancerIPs"] == ["10.97.0.1"] and m["service"]["externalTrafficPolicy"] == "Local"


def test_affinity_default_timeout():
    m = build(service(sessionAffinity="ClientIP"))
    assert m["service"]["affinityTimeoutSeconds"] == 10800


def test_named_port_selection_and_unknown_port():
    svc = service()
    svc["spec"]["ports"] = [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30008},
                            {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090, "nodePort": 30009}]
    s = eps_slice(endpoint("10.0.0.1", "a", "node-1"), port=9090, port_name="metrics")
    m = build(svc, [s], port="metrics")
    assert m["service"]["port"]["name"] == "metrics" and m["endpoints"][0]["key"] == "10.0.0.1:9090"
    assert build(svc, [s], port="9090")["service"]["port"]["name"] == "metrics"
    assert build(svc, [s])["service"]["port"]["name"] == "http"
    m = build(svc, [s], port="nope")
    assert m["error"] == 'services "myapp-service" has no port "nope"' and m["endpoints"] == []


def test_problems():
    assert build(service())["service"]["problem"] == "no pods match the selector app=myapp"
    m = build(service(), pods=[pod("a", "node-1", ready=False), pod("b", "node-1", ready=False)])
    assert m["service"]["problem"] == "2 pods match the selector app=myapp, none is Ready"
    assert m["expectedShare"] is None
    m = build(service(), pods=[pod("a", "node-1", ready=False)])
    assert m["service"]["problem"] == "1 pod matches the selector app=myapp, none is Ready"
    named = service()
    named["spec"]["ports"][0]["targetPort"] = "http"
    m = build(named, pods=[pod("a", "node-1")])
    assert m["service"]["problem"] == 'a Ready pod matches, but no container has a port named "http" (the targetPort)' \
        .replace("a Ready pod matches", "1 Ready pod matches")
    m = build(service(), pods=[pod("a", "node-1")])
    assert m["service"]["problem"] == "1 Ready pod matches, but no endpoint is published yet"
    m = build(service(selector=None))
    assert m["service"]["problem"].startswith("the Service has no selector")
    m = build(service(), [eps_slice(endpoint("10.0.0.1", "a", "node-1", ready=False, terminating=True))])
    assert m["service"]["problem"] == "every endpoint is terminating"
    ext = {"metadata": {"name": "e", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "x.org"}}
    assert "DNS alias for x.org" in build(ext)["service"]["problem"]


def test_unknown_and_no_service():
    m = build(None)
    assert m["service"] is None and m["error"] == 'services "myapp-service" not found in namespace "default"'
    assert [n["name"] for n in m["nodes"]] == ["node-1", "node-2", "node-3"]
    m = topology.build_model(namespace="", name=None, service=None, slices=[], pods=[], nodes=[])
    assert m["error"] == "no Services yet"


def test_default_service():
    def svc(name, stype, ts, ns="default"):
        return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": ts}, "spec": {"type": stype}}
    items = [svc("old-np", "NodePort", "2026-01-01T00:00:00Z"), svc("new-np", "NodePort", "2026-01-02T00:00:00Z"),
             svc("newest-cip", "ClusterIP", "2026-01-03T00:00:00Z")]
    assert topology.default_service(items)["metadata"]["name"] == "new-np"
    items = [svc("kubernetes", "ClusterIP", "2025-01-01T00:00:00Z"),
             svc("kube-dns", "ClusterIP", "2026-02-01T00:00:00Z", "kube-system")]
    assert topology.default_service(items)["metadata"]["name"] == "kubernetes"
    assert topology.default_service([]) is None
