"""The API server's APIService controller (apiserver/apiservices.py) on a real registry: it
autoregisters the local APIServices, recreates a deleted one, restores a changed spec, and
follows a service-backed APIService's Service and Endpoints as they appear and go."""

from __future__ import annotations

import asyncio

import pytest
from async_waits import until

from pocketkube.apiserver.apiservices import APIServiceController, desired_apiservices, served_group_versions
from pocketkube.registry.registry import Registry
from pocketkube.storage.sqlite import SQLiteBackend


@pytest.fixture
async def registry(tmp_path):
    r = Registry(SQLiteBackend(str(tmp_path / "state.db")))
    await r.start()
    yield r
    await r.close()


@pytest.fixture
async def controller(registry):
    c = APIServiceController(registry)
    task = asyncio.ensure_future(c.run())
    yield c
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def reason(store, name: str) -> str | None:
    obj = store.try_get("", name)
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((f"{c['status']}/{c['reason']}" for c in conditions if c["type"] == "Available"), None)


async def test_local_apiservices_are_registered_kept_and_available(registry, controller):
    store = controller.apiservices
    names = set(desired_apiservices(served_group_versions()))
    await until(lambda: all(reason(store, n) == "True/Local" for n in names), "every local APIService Available")
    uid = store.get("", "v1.apps")["metadata"]["uid"]
    await store.delete("", "v1.apps")
    await until(lambda: (store.try_get("", "v1.apps") or {}).get("metadata", {}).get("uid") not in (None, uid),
                "v1.apps recreated")

    def bump(obj: dict) -> dict:
        obj["spec"]["versionPriority"] = 3
        return obj
    await store.guaranteed_update("", "v1.batch", bump)
    await until(lambda: store.get("", "v1.batch")["spec"]["versionPriority"] == 15, "v1.batch spec restored")


async def test_a_service_backed_apiservice_follows_its_service(registry, controller):
    store = controller.apiservices
    await store.create({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                        "metadata": {"name": "v1alpha1.wardle.example.com"},
                        "spec": {"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000,
                                 "versionPriority": 15, "service": {"namespace": "default", "name": "api"}}})
    name = "v1alpha1.wardle.example.com"
    await until(lambda: reason(store, name) == "False/ServiceNotFound", "ServiceNotFound")
    await registry.services.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
                                    "spec": {"ports": [{"name": "https", "port": 443}]}}, "default")
    await until(lambda: reason(store, name) in ("False/EndpointsNotFound", "False/MissingEndpoints"), "no endpoints")
    endpoints = registry.store("", "endpoints")
    current = endpoints.try_get("default", "api")
    body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "api", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 8443}]}]}
    if current is None:
        await endpoints.create(body, "default")
    else:
        await endpoints.update("default", "api", {**body, "metadata": current["metadata"]})
    await until(lambda: reason(store, name) == "False/FailedDiscoveryCheck", "FailedDiscoveryCheck")
    await registry.services.delete("default", "api")
    await until(lambda: reason(store, name) == "False/ServiceNotFound", "ServiceNotFound again")


async def test_only_referenced_services_wake_it(registry):
    """Service and Endpoints writes cost the controller nothing unless an APIService names them."""
    from pocketkube.registry.store import WatchEvent

    c = APIServiceController(registry)
    await c.sync()
    event = WatchEvent("ADDED", b'{"metadata":{"namespace":"wardle","name":"api"}}', 1)
    assert c._concerns(c.apiservices, event)
    assert not c._concerns(c._services, event)  # every APIService is local
    await c.apiservices.create({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                                "metadata": {"name": "v1alpha1.wardle.example.com"},
                                "spec": {"group": "wardle.example.com", "version": "v1alpha1",
                                         "groupPriorityMinimum": 1000, "versionPriority": 15,
                                         "insecureSkipTLSVerify": True,
                                         "service": {"namespace": "wardle", "name": "api"}}})
    await c.sync()
    assert c._concerns(c._services, event) and c._concerns(c._endpoints, event)
    other = WatchEvent("ADDED", b'{"metadata":{"namespace":"default","name":"web"}}', 2)
    assert not c._concerns(c._services, other)
