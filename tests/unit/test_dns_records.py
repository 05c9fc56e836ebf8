"""Cluster DNS: the records each Service makes and how the zone answers (pure functions)."""

from __future__ import annotations

import dns.rcode
from dns.rdatatype import AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT, A

from pocketkube.dns.records import dashed, reverse_name, service_records, slice_service_key, undashed
from pocketkube.dns.zone import ZoneIndex

Z = "cluster.local"


def svc(name="web", ns="shop", cluster_ip="10.96.0.20", ports=None, **spec):
    spec = {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip] if cluster_ip != "None" else ["None"],
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def slc(service="web", ns="shop", endpoints=(), ports=None, name="web-abc"):
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": list(endpoints),
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def ep(ip, ready=True, hostname=None):
    out = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


def texts(rrsets):
    return sorted((r.name.to_text(), r.rdtype, r.ttl, sorted(x.to_text() for x in r)) for r in rrsets)


def test_cluster_ip_service_a_srv_ptr():
    r = service_records(svc(ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]),
                        [slc(endpoints=[ep("10.244.1.5")])], Z)
    fqdn = "web.shop.svc.cluster.local."
    assert r[fqdn][A] == ("10.96.0.20",)
    assert r[f"_http._tcp.{fqdn}"][SRV] == (f"0 100 80 {fqdn}",)
    assert set(r[fqdn][SRV]) == {f"0 50 80 {fqdn}", f"0 50 53 {fqdn}"}  # the name itself: every port
    assert r[f"10-244-1-5.{fqdn}"][A] == ("10.244.1.5",)  # endpoints are named under ClusterIP Services too
    assert r["20.0.96.10.in-addr.arpa."][PTR] == (fqdn,)
    assert r["5.1.244.10.in-addr.arpa."][PTR] == (f"10-244-1-5.{fqdn}",)


def test_headless_ready_endpoints_hostnames_and_srv():
    slices = [slc(service="db", endpoints=[ep("10.244.1.5", hostname="db-0"), ep("10.244.2.7"),
                                            ep("10.244.3.9", ready=False)],
                  ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])]
    r = service_records(svc("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432}]), slices, Z)
    fqdn = "db.shop.svc.cluster.local."
    assert set(r[fqdn][A]) == {"10.244.1.5", "10.244.2.7"}  # not the unready one
    assert r[f"db-0.{fqdn}"][A] == ("10.244.1.5",)
    assert r[f"10-244-2-7.{fqdn}"][A] == ("10.244.2.7",)
    assert set(r[f"_pg._tcp.{fqdn}"][SRV]) == {f"0 50 5432 db-0.{fqdn}", f"0 50 5432 10-244-2-7.{fqdn}"}
    assert r["5.1.244.10.in-addr.arpa."][PTR] == (f"db-0.{fqdn}",)
    assert "9.3.244.10.in-addr.arpa." not in r


def test_headless_publish_not_ready_and_none_ready():
    slices = [slc(service="db", endpoints=[ep("10.244.3.9", ready=False)])]
    assert service_records(svc("db", cluster_ip="None"), slices, Z) == {}
    r = service_records(svc("db", cluster_ip="None", publishNotReadyAddresses=True), slices, Z)
    assert r["db.shop.svc.cluster.local."][A] == ("10.244.3.9",)


def test_external_name_and_ipv6():
    r = service_records(svc("ext", cluster_ip="", type="ExternalName", externalName="Example.COM"), [], Z)
    assert r == {"ext.shop.svc.cluster.local.": {CNAME: ("example.com.",)}}
    r = service_records(svc("v6", cluster_ip="fd00::10"), [], Z)
    assert r["v6.shop.svc.cluster.local."][AAAA] == ("fd00::10",)
    assert reverse_name("fd00::10").endswith(".ip6.arpa.")


def test_dashed_round_trip_and_slice_key():
    assert dashed("10.244.1.5") == "10-244-1-5" and undashed("10-244-1-5") == "10.244.1.5"
    assert undashed("fd00--1") == "fd00::1" and undashed("not-an-ip") is None
    assert slice_service_key(slc()) == "shop/web" and slice_service_key({"metadata": {}}) is None


def index_with(*services):
    index = ZoneIndex(Z, dns_ip="10.96.0.10")
    index.set_namespace("shop", True)
    for s, slices in services:
        index.set_service(f"{s['metadata']['namespace']}/{s['metadata']['name']}", service_records(s, slices, Z))
    return index


def test_answers_nxdomain_nodata_and_soa():
    index = index_with((svc(), []))
    a = index.answer("web.shop.svc.cluster.local.", A)
    assert a.rcode == dns.rcode.NOERROR and texts(a.answer) == [("web.shop.svc.cluster.local.", A, 5, ["10.96.0.20"])]
    nodata = index.answer("web.shop.svc.cluster.local.", AAAA)
    assert nodata.rcode == dns.rcode.NOERROR and not nodata.answer and nodata.authority[0].rdtype == SOA
    nx = index.answer("nope.shop.svc.cluster.local.", A)
    assert nx.rcode == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == SOA
    assert nx.authority[0][0].minimum == 5 and nx.authority[0].name.to_text() == "cluster.local."
    for ent in ("shop.svc.cluster.local.", "svc.cluster.local.", "cluster.local.",
                "_tcp.web.shop.svc.cluster.local."):
        got = index.answer(ent, A)
        assert got.rcode == dns.rcode.NOERROR and not got.answer, ent
    assert index.answer("other.svc.cluster.local.", A).rcode == dns.rcode.NXDOMAIN  # no such namespace
    assert index.answer("cluster.local.", SOA).answer[0].rdtype == SOA
    ns = index.answer("cluster.local.", NS)
    assert texts(ns.answer)[0][3] == ["ns.dns.cluster.local."] and texts(ns.additional)[0][3] == ["10.96.0.10"]
    assert index.answer("web.shop.svc.cluster.local.", TXT).rcode == dns.rcode.NOERROR


def test_srv_additional_and_any():
    index = index_with((svc("db", cluster_ip="None"), [slc("db", endpoints=[ep("10.244.1.5", hostname="db-0")])]))
    a = index.answer("_http._tcp.db.shop.svc.cluster.local.", SRV)
    assert texts(a.answer)[0][3] == ["0 100 8080 db-0.db.shop.svc.cluster.local."]
    assert texts(a.additional) == [("db-0.db.shop.svc.cluster.local.", A, 5, ["10.244.1.5"])]
    assert {r.rdtype for r in index.answer("db.shop.svc.cluster.local.", ANY).answer} == {A, SRV}


def test_pods_and_reverse():
    index = index_with((svc(), [slc(endpoints=[ep("10.244.1.5")])]))
    assert texts(index.answer("10-244-1-9.shop.pod.cluster.local.", A).answer)[0][3] == ["10.244.1.9"]
    assert index.answer("10-244-1.shop.pod.cluster.local.", A).rcode == dns.rcode.NXDOMAIN
    ptr = index.answer("20.0.96.10.in-addr.arpa.", PTR)
    assert ptr.authoritative and texts(ptr.answer)[0][3] == ["web.shop.svc.cluster.local."]
    assert not index.answer("1.1.168.192.in-addr.arpa.", PTR).authoritative  # forwarded
    assert not index.answer("example.com.", A).authoritative


def test_cname_in_zone_chased_and_external_left_to_forwarder():
    index = index_with((svc(), []), (svc("alias", cluster_ip="", type="ExternalName",
                                        externalName="web.shop.svc.cluster.local"), []),
                       (svc("ext", cluster_ip="", type="ExternalName", externalName="example.com"), []))
    a = index.answer("alias.shop.svc.cluster.local.", A)
    assert [r.rdtype for r in a.answer] == [CNAME, A] and not a.chase
    e = index.answer("ext.shop.svc.cluster.local.", A)
    assert [r.rdtype for r in e.answer] == [CNAME] and e.chase == "example.com."
    assert index.answer("ext.shop.svc.cluster.local.", CNAME).chase == ""


def test_incremental_updates_and_generation():
    index = index_with((svc(), []))
    g = index.generation
    index.set_service("shop/web", service_records(svc(), [], Z))  # unchanged: no new generation
    assert index.generation == g
    index.set_service("shop/web", service_records(svc(cluster_ip="10.96.0.21"), [], Z))
    assert index.generation > g
    assert texts(index.answer("web.shop.svc.cluster.local.", A).answer)[0][3] == ["10.96.0.21"]
    assert not index.answer("20.0.96.10.in-addr.arpa.", PTR).authoritative
    index.set_service("shop/web", {})
    assert index.answer("web.shop.svc.cluster.local.", A).rcode == dns.rcode.NXDOMAIN
    assert index.answer("_tcp.web.shop.svc.cluster.local.", A).rcode == dns.rcode.NXDOMAIN  # ENT gone too
    index.set_namespace("shop", False)
    assert index.answer("shop.svc.cluster.local.", A).rcode == dns.rcode.NXDOMAIN
