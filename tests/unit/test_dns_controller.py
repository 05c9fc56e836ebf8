"""Cluster DNS on the FakeClient: the index follows Services and EndpointSlices through their
watches, and kube-system/kube-dns is created and kept pointing at the server."""

from __future__ import annotations

import dns.rcode
from async_waits import until
from dns.rdatatype import A

from pocketkube.dns.controller import (
    ENDPOINT_SLICES,
    ENDPOINTS,
    NAMESPACES,
    SERVICES,
    ClusterDNS,
    kube_dns_service,
    service_drift,
)
from pocketkube.dns.zone import ZoneIndex
from pocketkube.testing.fakeclient import FakeClient


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def svc(name, ip, namespace="default", **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}}


def names(index, name):
    a = index.answer(name, A)
    return a.rcode, sorted(x.to_text() for r in a.answer for x in r)


async def test_index_follows_watches_and_kube_dns_is_created():
    client = FakeClient((NAMESPACES, ns("default")), (NAMESPACES, ns("kube-system")),
                        (SERVICES, svc("kubernetes", "10.96.0.1")))
    index = ZoneIndex("cluster.local", "10.96.0.10")
    cdns = ClusterDNS(client, index, service_ip="10.96.0.10", address="10.250.0.254", port=53)
    await cdns.start()
    try:
        assert names(index, "kubernetes.default.svc.cluster.local.") == (dns.rcode.NOERROR, ["10.96.0.1"])
        await until(lambda: cdns.reconciled.is_set(), "condition")
        created = await client.get(SERVICES, "kube-system", "kube-dns")
        assert created["spec"]["clusterIP"] == "10.96.0.10" and "selector" not in created["spec"]
        assert [(p["name"], p["protocol"]) for p in created["spec"]["ports"]] == [("dns", "UDP"), ("dns-tcp", "TCP")]
        slc = await client.get(ENDPOINT_SLICES, "kube-system", "kube-dns")
        assert slc["endpoints"][0]["addresses"] == ["10.250.0.254"] and slc["ports"][0]["port"] == 53
        assert (await client.get(ENDPOINTS, "kube-system", "kube-dns"))["subsets"][0]["addresses"] == \
            [{"ip": "10.250.0.254"}]
        await until(lambda: names(index, "kube-dns.kube-system.svc.cluster.local.")[1] == ["10.96.0.10"], "condition")

        # A new Service resolves once its watch event arrives; a headless one follows its slices.
        await client.create(SERVICES, svc("db", "None"), "default")
        await until(lambda: index.answer("db.default.svc.cluster.local.", A).rcode == dns.rcode.NXDOMAIN, "condition")
        await client.create(ENDPOINT_SLICES, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}],
            "ports": []}, "default")
        await until(lambda: names(index, "db.default.svc.cluster.local.")[1] == ["10.244.1.5"], "condition")
        await client.delete(ENDPOINT_SLICES, "default", "db-x")
        await until(lambda: index.answer("db.default.svc.cluster.local.", A).rcode == dns.rcode.NXDOMAIN, "condition")

        # Someone deletes kube-dns's slice or changes its Service: both come back.
        await client.delete(ENDPOINT_SLICES, "kube-system", "kube-dns")
        await until(lambda: client.objects(ENDPOINT_SLICES, "kube-system"), "condition")
        current = await client.get(SERVICES, "kube-system", "kube-dns")
        current["spec"]["ports"] = [{"name": "x", "port": 5353, "protocol": "UDP"}]
        await client.update(SERVICES, current)
        await until(lambda: len(client.objects(SERVICES, "kube-system")[0]["spec"]["ports"]) == 2, "condition")
    finally:
        await cdns.stop()


def test_service_drift():
    desired = kube_dns_service("10.96.0.10")
    assert service_drift(None, desired) == "create"
    assert service_drift(desired, desired) == ""
    assert service_drift(svc("kube-dns", "10.96.0.11"), desired) == "recreate"
    with_selector = {**desired, "spec": {**desired["spec"], "selector": {"k8s-app": "kube-dns"}}}
    assert service_drift(with_selector, desired) == "update"
