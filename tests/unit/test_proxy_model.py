"""The Service model both data planes implement: frontends, endpoints and traffic policies."""

from __future__ import annotations

from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort, build_model, categorize_endpoints


def svc(name="web", type_="ClusterIP", ports=None, labels=None, status=None, **spec) -> dict:
    ports = ports or [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30008}]
    return {"metadata": {"namespace": "default", "name": name, "labels": labels or {}},
            "spec": {"type": type_, "clusterIP": "127.96.0.10", "ports": ports, **spec},
            "status": status or {}}


def slc(service="web", name=None, ports=None, endpoints=(), address_type="IPv4") -> dict:
    return {"metadata": {"namespace": "default", "name": name or service + "-x",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": address_type,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": list(endpoints)}


def ep(ip, node="n1", **conditions) -> dict:
    return {"addresses": [ip], "nodeName": node, "conditions": conditions}


def test_cluster_ip_service_port_and_endpoints():
    model = build_model([svc()], [slc(endpoints=[ep("127.244.1.2"), ep("127.244.1.3")])])
    entry = model[("default/web:http", "TCP")]
    assert entry.port.cluster_ips == ("127.96.0.10",)
    assert entry.port.node_port == 0  # a ClusterIP Service never serves a nodePort
    assert [e.address for e in entry.endpoints] == ["127.244.1.2:8080", "127.244.1.3:8080"]


def test_node_port_load_balancer_and_external_ips():
    s = svc(type_="LoadBalancer", externalIPs=["127.201.0.1"], externalTrafficPolicy="Local",
            healthCheckNodePort=31000, status={"loadBalancer": {"ingress": [{"ip": "127.200.0.1"}]}})
    sp = build_model([s], [])[("default/web:http", "TCP")].port
    assert (sp.node_port, sp.load_balancer_ips, sp.external_ips) == (30008, ("127.200.0.1",), ("127.201.0.1",))
    assert sp.external_local and sp.health_check_node_port == 31000


def test_skipped_services():
    headless = svc(clusterIP="None")
    external_name = svc(type_="ExternalName", externalName="example.com")
    labelled = svc(labels={"service.kubernetes.io/service-proxy-name": "other"})
    assert build_model([headless, external_name, labelled], []) == {}


def test_session_affinity_default_timeout():
    assert build_model([svc(sessionAffinity="ClientIP")], [])[("default/web:http", "TCP")].port.affinity_timeout == 10800
    cfg = {"clientIP": {"timeoutSeconds": 60}}
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig=cfg)
    assert build_model([s], [])[("default/web:http", "TCP")].port.affinity_timeout == 60


def test_same_port_tcp_and_udp_and_port_matching_by_name_and_protocol():
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    slice_ports = [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]
    model = build_model([svc(ports=ports)], [slc(ports=slice_ports, endpoints=[ep("127.244.1.2")])])
    assert model[("default/web:dns", "UDP")].endpoints[0].port == 5353
    assert model[("default/web:dns-tcp", "TCP")].endpoints[0].port == 5354


def test_endpoints_merge_over_slices_and_ignore_other_services_and_ipv6():
    slices = [slc(name="a", endpoints=[ep("127.244.1.2")]), slc(name="b", endpoints=[ep("127.244.1.3")]),
              slc(service="other", endpoints=[ep("127.244.1.9")]),
              slc(name="v6", address_type="IPv6", endpoints=[ep("fd00::1")])]
    entry = build_model([svc()], slices)[("default/web:http", "TCP")]
    assert {e.ip for e in entry.endpoints} == {"127.244.1.2", "127.244.1.3"}


def test_conditions_default_like_kubernetes():
    model = build_model([svc()], [slc(endpoints=[ep("127.244.1.2"), ep("127.244.1.3", ready=False)])])
    a, b = model[("default/web:http", "TCP")].endpoints
    assert (a.ready, a.serving, a.terminating) == (True, True, False)  # nil ready counts as ready
    assert (b.ready, b.serving) == (False, False)  # serving defaults to ready


def entry(*endpoints, external_local=False, internal_local=False) -> ServiceEntry:
    sp = ServicePort("default", "web", "http", "TCP", 80, external_local=external_local,
                     internal_local=internal_local)
    return ServiceEntry(sp, tuple(endpoints))


def test_ready_endpoints_first_then_serving_terminating():
    ready = Endpoint("127.244.1.2", 80)
    terminating = Endpoint("127.244.1.3", 80, ready=False, serving=True, terminating=True)
    dead = Endpoint("127.244.1.4", 80, ready=False, serving=False, terminating=True)
    assert categorize_endpoints(entry(ready, terminating, dead), "n1").cluster == (ready,)
    cat = categorize_endpoints(entry(terminating, dead), "n1")
    assert cat.cluster == (terminating,) and cat.has_any
    assert not categorize_endpoints(entry(dead), "n1").has_any


def test_local_policies_keep_local_endpoints():
    local = Endpoint("127.244.1.2", 80, node_name="n1")
    remote = Endpoint("127.244.2.2", 80, node_name="n2")
    cat = categorize_endpoints(entry(local, remote, external_local=True), "n1")
    assert cat.external == (local,) and cat.cluster == (local, remote)
    cat = categorize_endpoints(entry(local, remote, internal_local=True), "n2")
    assert cat.cluster == (remote,) and cat.external == (local, remote)
    cat = categorize_endpoints(entry(remote, external_local=True), "n1")
    assert cat.external == () and cat.has_any  # no local endpoint: drop, not refuse
