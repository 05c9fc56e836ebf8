"""The generic object store (registry/store.py) over a real SQLite backend in tmp_path."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.api import errors
from pocketkube.registry import codec
from pocketkube.registry.core.pods import binding
from pocketkube.registry.registry import Registry, RegistryConfig
from pocketkube.registry.store import INITIAL_EVENTS_END
from pocketkube.storage.sqlite import SQLiteBackend


class _Racing:
    """A backend on which another writer acts, once, just before our next update: the race
    between a read and its compare-and-swap."""

    def __init__(self, inner: SQLiteBackend) -> None:
        self.inner = inner
        self.before_next_update = None  # async (key) -> None

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def update(self, key: str, value: bytes, expected_mod_revision: int = 0):
        race, self.before_next_update = self.before_next_update, None
        if race is not None:
            await race(key)
        return await self.inner.update(key, value, expected_mod_revision)


@pytest.fixture
async def backend(tmp_path):
    b = SQLiteBackend(str(tmp_path / "state.db"))
    await b.start()
    yield b
    await b.close()


def _pod(name: str = "p", node: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def test_graceful_delete_losing_to_another_delete_is_not_found(backend):
    racing = _Racing(backend)
    pods = Registry(racing).store("", "pods")
    await pods.create(_pod(node="node-1"), "default")
    racing.before_next_update = backend.delete
    with pytest.raises(errors.NotFound):
        await pods.delete("default", "p")


# ---- fixtures and helpers ----

@pytest.fixture
async def registry(backend):
    return Registry(backend)


def _service(name: str = "s", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], **spec}}


def _deployment(name: str = "d", replicas: int = 1, labels: dict | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


async def _next(events, timeout: float = 2.0):
    return await asyncio.wait_for(anext(events), timeout)


# ---- create ----

async def test_create_sets_identity_version_and_generation(registry):
    pod = await registry.store("", "pods").create(_pod(), "default")
    m = pod["metadata"]
    assert m["uid"] and m["creationTimestamp"] and m["namespace"] == "default"
    assert m["resourceVersion"] == str(registry.current_revision())
    assert m["generation"] == 1
    svc = await registry.services.create(_service(), "default")
    assert "generation" not in svc["metadata"]  # Services do not track generation


async def test_create_conflicts(registry):
    pods = registry.store("", "pods")
    await pods.create(_pod(), "default")
    with pytest.raises(errors.AlreadyExists):
        await pods.create(_pod(), "default")
    with pytest.raises(errors.BadRequest, match="does not match the namespace"):
        await pods.create({**_pod("q"), "metadata": {"name": "q", "namespace": "other"}}, "default")
    named = await pods.create({**_pod(), "metadata": {"generateName": "web-"}}, "default")
    assert named["metadata"]["name"].startswith("web-") and len(named["metadata"]["name"]) == 9


async def test_create_drops_status_where_a_status_subresource_owns_it(registry):
    pod = _pod()
    pod["status"] = {"phase": "Running"}
    created = await registry.store("", "pods").create(pod, "default")
    assert created["status"]["phase"] == "Pending"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}}
    assert (await registry.store("", "nodes").create(node))["status"]["allocatable"] == {"cpu": "2"}


async def test_dry_run_create_stores_nothing_and_releases_its_allocation(registry):
    svc = await registry.services.create(_service(clusterIP="127.96.0.50"), "default", dry_run=True)
    assert svc["spec"]["clusterIP"] == "127.96.0.50"
    assert registry.services.try_get("default", "s") is None
    await registry.services.create(_service(clusterIP="127.96.0.50"), "default")  # the IP is free


async def test_a_failed_create_reverts_its_allocation(registry):
    await registry.services.create(_service(clusterIP="127.96.0.60"), "default")
    with pytest.raises(errors.AlreadyExists):
        await registry.services.create(_service(clusterIP="127.96.0.61"), "default")
    await registry.services.create(_service("t", clusterIP="127.96.0.61"), "default")


# ---- update ----

async def test_update_with_a_stale_resource_version_conflicts(registry):
    deployments = registry.store("apps", "deployments")
    first = await deployments.create(_deployment(), "default")
    second = await deployments.update("default", "d", {**first, "spec": {**first["spec"], "replicas": 2}})
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    with pytest.raises(errors.Conflict, match="the object has been modified"):
        await deployments.update("default", "d", first)
    unversioned = {**second, "metadata": {**second["metadata"], "resourceVersion": ""}}
    assert (await deployments.update("default", "d", unversioned)) == second  # a no-op keeps its version


async def test_update_checks_the_name_and_the_subresource(registry):
    deployments = registry.store("apps", "deployments")
    d = await deployments.create(_deployment(), "default")
    with pytest.raises(errors.BadRequest, match="does not match the name"):
        await deployments.update("default", "d", {**d, "metadata": {**d["metadata"], "name": "e"}})
    with pytest.raises(errors.MethodNotAllowed):
        await deployments.update("default", "d", d, subresource="finalize")
    with pytest.raises(errors.NotFound):
        await deployments.update("default", "nope", d)


async def test_spec_and_status_are_written_through_their_own_endpoints(registry):
    deployments = registry.store("apps", "deployments")
    d = await deployments.create(_deployment(), "default")
    d["spec"]["replicas"] = 3
    d["status"] = {"replicas": 7}
    d = await deployments.update("default", "d", d)
    assert d["spec"]["replicas"] == 3 and "replicas" not in (d.get("status") or {})
    assert d["metadata"]["generation"] == 2
    d["spec"]["replicas"] = 9
    d["status"] = {"replicas": 3, "observedGeneration": 2}
    d = await deployments.update("default", "d", d, subresource="status")
    assert d["spec"]["replicas"] == 3 and d["status"] == {"replicas": 3, "observedGeneration": 2}
    assert d["metadata"]["generation"] == 2  # a status write is not a new generation
    d["metadata"]["labels"] = {"x": "y"}
    d = await deployments.update("default", "d", d)
    assert d["metadata"]["generation"] == 2  # nor is a metadata change


async def test_update_keeps_server_owned_metadata(registry):
    deployments = registry.store("apps", "deployments")
    d = await deployments.create(_deployment(), "default")
    forged = {**d, "metadata": {**d["metadata"], "uid": "forged", "creationTimestamp": "2000-01-01T00:00:00Z",
                                "generation": 42}}
    forged["spec"] = {**d["spec"], "replicas": 2}
    updated = await deployments.update("default", "d", forged)
    assert updated["metadata"]["uid"] == d["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == d["metadata"]["creationTimestamp"]
    assert updated["metadata"]["generation"] == 2


async def test_guaranteed_update_retries_a_concurrent_write(backend):
    racing = _Racing(backend)
    deployments = Registry(racing).store("apps", "deployments")
    await deployments.create(_deployment(), "default")

    async def other_writer(key: str) -> None:
        stale = deployments.get("default", "d")
        stale["metadata"]["annotations"] = {"other": "writer"}
        await backend.update(key, codec.encode_at(stale), 0)
    racing.before_next_update = other_writer
    calls = 0

    def add_label(obj: dict) -> dict:
        nonlocal calls
        calls += 1
        obj["metadata"].setdefault("labels", {})["mine"] = "yes"
        return obj
    updated = await deployments.guaranteed_update("default", "d", add_label)
    assert calls == 2  # the first write lost the race; the second read saw the other writer's
    assert updated["metadata"]["labels"]["mine"] == "yes"
    assert updated["metadata"]["annotations"] == {"other": "writer"}


# ---- finalizers and graceful deletion ----

async def test_finalizers_hold_a_deleted_object_until_the_last_goes(registry):
    services = registry.services
    svc = _service()
    svc["metadata"]["finalizers"] = ["example.com/hold"]
    await services.create(svc, "default")
    obj, deleted_now = await services.delete("default", "s")
    assert not deleted_now and obj["metadata"]["deletionTimestamp"]
    obj["metadata"]["finalizers"] = []
    gone = await services.update("default", "s", obj)
    assert gone["metadata"]["name"] == "s" and services.try_get("default", "s") is None


async def test_propagation_policies_add_their_finalizer(registry):
    deployments = registry.store("apps", "deployments")
    await deployments.create(_deployment(), "default")
    obj, deleted_now = await deployments.delete("default", "d", propagation="Orphan")
    assert not deleted_now and obj["metadata"]["finalizers"] == ["orphan"]


async def test_delete_preconditions(registry):
    await registry.services.create(_service(), "default")
    with pytest.raises(errors.Conflict, match="Precondition failed: UID in precondition: nope"):
        await registry.services.delete("default", "s", preconditions={"uid": "nope"})
    with pytest.raises(errors.Conflict):
        await registry.services.delete("default", "s", preconditions={"resourceVersion": "999"})
    assert registry.services.try_get("default", "s") is not None


async def test_a_bound_pod_terminates_gracefully_and_an_unbound_one_goes_at_once(registry):
    pods = registry.store("", "pods")
    await pods.create(_pod("bound", node="node-1"), "default")
    await pods.create(_pod("unbound"), "default")
    assert (await pods.delete("default", "unbound"))[1] is True
    obj, deleted_now = await pods.delete("default", "bound")
    assert not deleted_now and obj["metadata"]["deletionGracePeriodSeconds"] == 30
    again, _ = await pods.delete("default", "bound", grace_period=60)
    assert again["metadata"]["deletionGracePeriodSeconds"] == 30  # a longer grace does not extend it
    shorter, _ = await pods.delete("default", "bound", grace_period=5)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    _, deleted_now = await pods.delete("default", "bound", grace_period=0)
    assert deleted_now and pods.try_get("default", "bound") is None


async def test_a_deleted_service_releases_its_allocation(registry):
    await registry.services.create(_service(clusterIP="127.96.0.70"), "default")
    await registry.services.delete("default", "s")
    await registry.services.create(_service("t", clusterIP="127.96.0.70"), "default")


# ---- list and watch ----

async def test_list_pages_with_a_continue_token(registry):
    services = registry.services
    for name in ("a", "b", "c"):
        await services.create(_service(name), "default")
    first = await services.list_page("default", limit=2)
    assert len(first.items) == 2 and first.continue_token and first.remaining == 1
    rest = await services.list_page("default", limit=2, continue_token=first.continue_token)
    assert len(rest.items) == 1 and not rest.continue_token
    with pytest.raises(errors.BadRequest, match="continue key is not valid"):
        await services.list_page("default", continue_token="garbage")


async def test_watch_follows_objects_into_and_out_of_a_selector(registry):
    deployments = registry.store("apps", "deployments")
    await deployments.create(_deployment("before", labels={"tier": "web"}), "default")

    def web(obj: dict) -> bool:
        return (obj["metadata"].get("labels") or {}).get("tier") == "web"
    events = deployments.watch("default", 0, match=web, send_initial=True)
    try:
        first = await _next(events)
        assert (first.type, first.object()["metadata"]["name"]) == ("ADDED", "before")
        assert (await _next(events)).type == INITIAL_EVENTS_END
        d = await deployments.create(_deployment("d", labels={"tier": "db"}), "default")  # not selected
        d["metadata"]["labels"] = {"tier": "web"}
        d = await deployments.update("default", "d", d)
        ev = await _next(events)
        assert (ev.type, ev.object()["metadata"]["name"]) == ("ADDED", "d")  # came into the selector
        d["spec"]["replicas"] = 2
        d = await deployments.update("default", "d", d)
        assert (await _next(events)).type == "MODIFIED"
        d["metadata"]["labels"] = {"tier": "db"}
        await deployments.update("default", "d", d)
        assert (await _next(events)).type == "DELETED"  # went out of it
        await deployments.delete("default", "before")
        ev = await _next(events)
        assert ev.type == "DELETED" and ev.object()["metadata"]["resourceVersion"] == str(ev.revision)
    finally:
        await events.aclose()


async def test_watch_from_a_compacted_revision_is_gone(registry):
    services = registry.services
    for name in ("a", "b", "c"):
        await services.create(_service(name), "default")
    await registry.compact(keep=1)  # a server's first compactor tick only records where the store is
    assert await registry.compact(keep=1) > 1
    events = services.watch("default", 1)
    with pytest.raises(errors.Gone, match="too old resource version"):
        await _next(events)


# ---- kind strategies: pods/binding, namespace phases ----

async def test_binding_assigns_a_pod_once(registry):
    pods = registry.store("", "pods")
    await pods.create(_pod(), "default")
    await binding.bind(pods, "default", "p", {"target": {"name": "node-1"}})
    pod = pods.get("default", "p")
    assert pod["spec"]["nodeName"] == "node-1"
    assert [c["type"] for c in pod["status"]["conditions"]] == ["PodScheduled"]
    with pytest.raises(errors.Conflict, match='already assigned to node "node-1"'):
        await binding.bind(pods, "default", "p", {"target": {"name": "node-2"}})
    with pytest.raises(errors.Invalid):
        await binding.bind(pods, "default", "p", {"target": {}})


async def test_a_namespace_terminates_then_goes_when_finalized(registry):
    namespaces = registry.namespaces
    await namespaces.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    marked, deleted_now = await namespaces.delete("", "x")
    assert not deleted_now and marked["status"]["phase"] == "Terminating"
    with pytest.raises(errors.Forbidden, match="being terminated"):
        registry.check_namespace_writable("x")
    assert (await namespaces.delete("", "x"))[1] is False  # the kubernetes finalizer is still there
    marked["spec"]["finalizers"] = []
    await namespaces.update("", "x", marked, subresource="finalize")
    assert namespaces.try_get("", "x") is None


async def test_system_namespaces_may_not_be_deleted(registry):
    with pytest.raises(errors.Forbidden, match="this namespace may not be deleted"):
        registry.check_deletable(registry.namespaces.res, "kube-system")
    registry.check_deletable(registry.namespaces.res, "mine")
    registry.check_deletable(registry.services.res, "kube-system")


async def test_the_pod_strategy_takes_its_toleration_seconds_from_the_configuration(backend):
    registry = Registry(backend, RegistryConfig(default_toleration_seconds=5))
    pod = await registry.store("", "pods").create(_pod(), "default")
    assert {t["tolerationSeconds"] for t in pod["spec"]["tolerations"]} == {5}
    assert {t["tolerationSeconds"] for t in (await Registry(backend).store("", "pods").create(
        _pod("q"), "default"))["spec"]["tolerations"]} == {300}  # another registry, its own setting
