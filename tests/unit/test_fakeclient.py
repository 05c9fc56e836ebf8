"""testing.fakeclient: the in-memory Client keeps the API server's semantics."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.interface import JSON_PATCH
from pocketkube.testing.fakeclient import FakeClient

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
CONFIGS = BY_PLURAL[("", "endpoints")]  # a kind without a status subresource


def pod(name: str, *, labels: dict | None = None, node: str = "", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "i"}], **({"nodeName": node} if node else {}), **spec}}


async def test_every_write_gets_a_new_resource_version_and_server_fields():
    fake = FakeClient()
    created = await fake.create(PODS, pod("a"))
    m = created["metadata"]
    assert m["uid"] and m["creationTimestamp"] and m["generation"] == 1
    assert (created["apiVersion"], created["kind"]) == ("v1", "Pod")
    updated = await fake.update(PODS, {**created, "spec": {**created["spec"], "restartPolicy": "Never"}})
    assert int(updated["metadata"]["resourceVersion"]) > int(m["resourceVersion"])
    assert updated["metadata"]["generation"] == 2
    same = await fake.update(PODS, updated)  # a no-op keeps the version
    assert same["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    assert fake.resource_version == updated["metadata"]["resourceVersion"]


async def test_conflict_not_found_already_exists():
    fake = FakeClient()
    first = await fake.create(PODS, pod("a"))
    await fake.update(PODS, first)
    await fake.update(PODS, {**first, "metadata": {**first["metadata"], "labels": {"x": "1"}}})
    with pytest.raises(errors.Conflict, match='the object has been modified'):
        await fake.update(PODS, {**first, "metadata": {**first["metadata"], "labels": {"x": "2"}}})
    with pytest.raises(errors.NotFound, match='^pods "b" not found$'):
        await fake.get(PODS, "ns", "b")
    with pytest.raises(errors.AlreadyExists, match='^pods "a" already exists$'):
        await fake.create(PODS, pod("a"))
    with pytest.raises(errors.NotFound):
        await fake.delete(PODS, "ns", "b")


async def test_generate_name():
    fake = FakeClient()
    body = {"metadata": {"generateName": "web-", "namespace": "ns"}, "spec": {}}
    a, b = await fake.create(PODS, body), await fake.create(PODS, body)
    assert a["metadata"]["name"].startswith("web-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]


async def test_status_subresource_and_create_drops_status():
    fake = FakeClient()
    created = await fake.create(PODS, {**pod("a"), "status": {"phase": "Running"}})
    assert "status" not in created
    with_status = await fake.update_status(PODS, {**created, "status": {"phase": "Running"}, "spec": {}})
    assert with_status["status"] == {"phase": "Running"} and with_status["spec"] == created["spec"]
    spec_write = await fake.update(PODS, {**with_status, "status": {"phase": "Failed"}})
    assert spec_write["status"] == {"phase": "Running"}
    node = await fake.create(NODES, {"metadata": {"name": "n1"}, "status": {"capacity": {"pods": "10"}}})
    assert node["status"] == {"capacity": {"pods": "10"}} and "namespace" not in node["metadata"]


async def test_patch_kinds():
    fake = FakeClient()
    await fake.create(PODS, pod("a", labels={"app": "x"}))
    merged = await fake.patch(PODS, "ns", "a", {"metadata": {"labels": {"tier": "web", "app": None}}})
    assert merged["metadata"]["labels"] == {"tier": "web"}
    patched = await fake.patch(PODS, "ns", "a", [{"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}],
                               JSON_PATCH)
    assert patched["metadata"]["annotations"] == {"k": "v"}
    status = await fake.patch(PODS, "ns", "a", {"status": {"phase": "Running"}}, subresource="status")
    assert status["status"]["phase"] == "Running"


async def test_delete_preconditions_finalizers_and_graceful_pods():
    fake = FakeClient()
    a = await fake.create(CONFIGS, {"metadata": {"name": "a", "namespace": "ns", "finalizers": ["x/y"]}})
    with pytest.raises(errors.Conflict, match="Precondition failed: UID in precondition: nope"):
        await fake.delete(CONFIGS, "ns", "a", preconditions={"uid": "nope"})
    terminating = await fake.delete(CONFIGS, "ns", "a", preconditions={"uid": a["metadata"]["uid"]})
    assert terminating["metadata"]["deletionTimestamp"]
    await fake.update(CONFIGS, {**terminating, "metadata": {**terminating["metadata"], "finalizers": []}})
    assert fake.objects(CONFIGS) == []  # the last finalizer gone: deleted

    await fake.create(PODS, pod("bound", node="n1"))
    graceful = await fake.delete(PODS, "ns", "bound")
    assert graceful["metadata"]["deletionGracePeriodSeconds"] == 30
    await fake.delete(PODS, "ns", "bound", grace_period=0)
    await fake.create(PODS, pod("pending"))
    await fake.delete(PODS, "ns", "pending")
    assert fake.objects(PODS) == []


async def test_bind_once():
    fake = FakeClient()
    await fake.create(PODS, pod("a"))
    await fake.bind("ns", "a", "n1")
    bound = await fake.get(PODS, "ns", "a")
    assert bound["spec"]["nodeName"] == "n1"
    assert bound["status"]["conditions"][0]["type"] == "PodScheduled"
    with pytest.raises(errors.Conflict, match='^pod a is already assigned to node "n1"$'):
        await fake.bind("ns", "a", "n2")


async def test_list_selectors():
    fake = FakeClient()
    await fake.create(PODS, pod("a", labels={"app": "web"}, node="n1"))
    await fake.create(PODS, pod("b", labels={"app": "db"}))
    await fake.create(PODS, {**pod("c", labels={"app": "web"}), "metadata": {"name": "c", "namespace": "other",
                                                                          "labels": {"app": "web"}}})
    names = lambda items: sorted(o["metadata"]["name"] for o in items)  # noqa: E731
    assert names((await fake.list(PODS, "", "app=web"))[0]) == ["a", "c"]
    assert names((await fake.list(PODS, "ns", "app in (web,db)"))[0]) == ["a", "b"]
    assert names((await fake.list(PODS, "", "", "spec.nodeName=n1"))[0]) == ["a"]
    assert names((await fake.list(PODS, "", "", "spec.nodeName="))[0]) == ["b", "c"]
    with pytest.raises(errors.BadRequest):
        await fake.list(PODS, "", "", "spec.bogus=1")


async def _next(events, timeout: float = 2.0):
    return await asyncio.wait_for(anext(events), timeout)


async def test_watch_replays_from_a_version_then_follows_live_writes():
    fake = FakeClient()
    await fake.create(PODS, pod("a"))
    items, rv = await fake.list(PODS)
    b = await fake.create(PODS, pod("b"))
    events = fake.watch(PODS, "", rv)
    assert await _next(events) == ("ADDED", b)
    await fake.delete(PODS, "ns", "a")
    type_, obj = await _next(events)
    assert (type_, obj["metadata"]["name"]) == ("DELETED", "a")
    assert int(obj["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])
    await events.aclose()
    assert fake.open_watches == 0


async def test_watch_selector_transitions_are_added_and_deleted():
    fake = FakeClient()
    a = await fake.create(PODS, pod("a", labels={"app": "web"}))
    events = fake.watch(PODS, "", fake.resource_version, "app=web")
    moved = await fake.update(PODS, {**a, "metadata": {**a["metadata"], "labels": {"app": "db"}}})
    assert await _next(events) == ("DELETED", moved)
    back = await fake.update(PODS, {**moved, "metadata": {**moved["metadata"], "labels": {"app": "web"}}})
    assert await _next(events) == ("ADDED", back)
    await events.aclose()


async def test_watch_from_a_compacted_version_is_gone_and_disconnect_ends_watches():
    fake = FakeClient()
    _, rv = await fake.list(PODS)
    await fake.create(PODS, pod("a"))
    fake.compact()
    with pytest.raises(errors.Gone, match="^too old resource version"):
        await _next(fake.watch(PODS, "", rv))
    events = fake.watch(PODS, "", fake.resource_version)
    task = asyncio.ensure_future(_next(events))
    while fake.open_watches == 0:
        await asyncio.sleep(0)
    fake.disconnect_watches()
    with pytest.raises(errors.ServiceUnavailable):
        await task


async def test_injected_failure_and_actions():
    fake = FakeClient()
    fake.fail_next("create", errors.ServiceUnavailable("down"))
    with pytest.raises(errors.ServiceUnavailable):
        await fake.create(PODS, pod("a"))
    await fake.create(PODS, pod("a"))
    assert [(a.verb, a.name) for a in fake.actions_of("create", "pods")] == [("create", "a"), ("create", "a")]
