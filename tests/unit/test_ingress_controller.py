"""The Ingress controller on a FakeClient: its LoadBalancer Service and EndpointSlice, Ingress
status from the LB address, the routing table following changes, Events for problems."""

from __future__ import annotations

import pytest
from async_waits import until

from pocketkube.api.resources import BY_PLURAL
from pocketkube.ingress.controller import IngressController, IngressSettings
from pocketkube.testing.fakeclient import FakeClient

pytestmark = pytest.mark.unit

INGRESSES = BY_PLURAL[("networking.k8s.io", "ingresses")]
SERVICES = BY_PLURAL[("", "services")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
EVENTS = BY_PLURAL[("", "events")]


def the_ingress(service: str = "web") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {"ingressClassName": "pocketkube", "rules": [{"host": "app.local", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}}


@pytest.fixture
async def ctl(monkeypatch):
    client = FakeClient()
    c = IngressController(client, IngressSettings(addresses=("127.181.0.1", "127.181.0.2"), http_port=18080,
                                                  https_port=18443))

    async def no_listeners() -> None:  # the proxy itself is test_ingress_proxy's
        return None
    monkeypatch.setattr(c, "_listen", no_listeners)
    await c.start()
    yield c
    await c.stop()


async def test_keeps_its_lb_service_and_slice(ctl):
    client = ctl.client
    await until(lambda: client.objects(SLICES, "kube-system"), what="the EndpointSlice")
    svc = client.objects(SERVICES, "kube-system")[0]
    assert svc["spec"]["type"] == "LoadBalancer" and "selector" not in svc["spec"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 18080, 18080), ("https", 18443, 18443)]
    slc = client.objects(SLICES, "kube-system")[0]
    assert [e["addresses"] for e in slc["endpoints"]] == [["127.181.0.1"], ["127.181.0.2"]]
    assert slc["metadata"]["labels"]["kubernetes.io/service-name"] == "pocketkube-ingress"


async def test_status_is_node_ips_then_the_lb_address(ctl):
    client = ctl.client
    await client.create(INGRESSES, the_ingress(), "default")

    def status_ips() -> list[str]:
        ing = client.objects(INGRESSES, "default")[0]
        return [e["ip"] for e in (ing.get("status") or {}).get("loadBalancer", {}).get("ingress", [])]
    await until(lambda: status_ips() == ["127.181.0.1", "127.181.0.2"], what="node IPs in status")
    await until(lambda: client.objects(SERVICES, "kube-system"), what="the LB Service")
    svc = client.objects(SERVICES, "kube-system")[0]
    await client.update_status(SERVICES, {**svc, "status": {"loadBalancer": {"ingress": [{"ip": "127.182.0.7"}]}}})
    await until(lambda: status_ips() == ["127.182.0.7"], what="the LB address in status")


async def test_table_follows_endpoints_and_problems_become_events(ctl):
    client = ctl.client
    await client.create(INGRESSES, the_ingress(), "default")
    await until(lambda: [e for e in client.objects(EVENTS, "default") if e["reason"] == "BackendUnavailable"],
                     what="a BackendUnavailable Event")
    assert ctl.table.route("app.local", "/").backend.problem == 'service "default/web" not found'
    await client.create(SERVICES, {"metadata": {"name": "web", "namespace": "default"},
                                   "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}, "default")
    await client.create(SLICES, {"metadata": {"name": "web-1", "namespace": "default",
                                              "labels": {"kubernetes.io/service-name": "web"}},
                                 "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
                                 "endpoints": [{"addresses": ["127.181.1.5"], "conditions": {"ready": True}}]},
                        "default")
    await until(lambda: ctl.table.route("app.local", "/").backend.endpoints == (("127.181.1.5", 8080),),
                     what="the endpoint in the table")


async def test_a_deleted_or_edited_lb_service_comes_back(ctl):
    client = ctl.client
    await until(lambda: client.objects(SLICES, "kube-system"), what="the EndpointSlice")
    await client.delete(SLICES, "kube-system", "pocketkube-ingress")
    await until(lambda: client.objects(SLICES, "kube-system"), what="the EndpointSlice back")
    svc = client.objects(SERVICES, "kube-system")[0]
    await client.update(SERVICES, {**svc, "spec": {**svc["spec"], "type": "ClusterIP"}})
    await until(lambda: client.objects(SERVICES, "kube-system")[0]["spec"]["type"] == "LoadBalancer",
                what="the Service a LoadBalancer again")
