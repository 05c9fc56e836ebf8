"""The namespace controller's decisions (controllers/namespace.py)."""

from __future__ import annotations

import copy

from pocketkube.api import errors
from pocketkube.controllers.base import SharedInformers
from pocketkube.controllers.namespace import (
    NamespaceController,
    content_resources,
    finalize_body,
    finalized,
    still_to_delete,
)


def test_content_is_every_namespaced_deletable_resource():
    plurals = {r.plural for r in content_resources()}
    assert {"pods", "services", "deployments", "replicasets", "endpoints", "events"} <= plurals
    assert not plurals & {"namespaces", "nodes"}


def test_objects_already_terminating_are_not_deleted_again():
    items = [{"metadata": {"name": "a"}}, {"metadata": {"name": "b", "deletionTimestamp": "2026-01-01T00:00:00Z"}}]
    assert [o["metadata"]["name"] for o in still_to_delete(items)] == ["a"]


def test_finalize_removes_only_our_finalizer_and_sends_no_status():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "resourceVersion": "7"},
          "spec": {"finalizers": ["kubernetes", "example.com/other"]}, "status": {"phase": "Terminating"}}
    body = finalize_body(ns)
    assert body["spec"]["finalizers"] == ["example.com/other"] and "status" not in body
    assert body["metadata"]["resourceVersion"] == "7"
    assert ns["spec"]["finalizers"] == ["kubernetes", "example.com/other"]  # the input is untouched
    assert not finalized(ns) and finalized(finalize_body({"metadata": {}, "spec": {"finalizers": ["kubernetes"]}}))


class _FakeClient:
    """Just what the namespace controller calls: a namespace, and content in it per plural."""

    def __init__(self, ns: dict | None, content: dict[str, list[dict]]) -> None:
        self.ns = ns
        self.content = content
        self.calls: list[tuple] = []

    async def get(self, res, namespace: str, name: str) -> dict:
        if self.ns is None:
            raise errors.NotFound.object("namespaces", name)
        return copy.deepcopy(self.ns)

    async def list(self, res, namespace: str = "") -> tuple[list[dict], str]:
        return list(self.content.get(res.plural, [])), "1"

    async def delete(self, res, namespace: str, name: str, preconditions: dict | None = None) -> dict:
        self.calls.append(("delete", res.plural, name))
        items = self.content.get(res.plural, [])
        for obj in items:
            if obj["metadata"]["name"] == name:
                if obj.get("graceful"):  # a pod its kubelet has yet to stop
                    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                else:
                    items.remove(obj)
        return {}

    async def update(self, res, obj: dict, subresource: str = "") -> dict:
        self.calls.append(("update", subresource, obj["spec"]["finalizers"]))
        return obj


def _terminating(finalizers: list[str]) -> dict:
    return {"metadata": {"name": "x", "uid": "u1", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": finalizers}, "status": {"phase": "Terminating"}}


def _controller(client: _FakeClient) -> NamespaceController:
    return NamespaceController(client, SharedInformers(client), recheck_delay=60)  # type: ignore[arg-type]


async def test_content_goes_first_then_the_finalizer():
    client = _FakeClient(_terminating(["kubernetes"]), {"services": [{"metadata": {"name": "web"}}],
                                                        "pods": [{"metadata": {"name": "p"}}]})
    await _controller(client).sync("x")
    assert ("delete", "services", "web") in client.calls and ("delete", "pods", "p") in client.calls
    assert client.calls[-1] == ("update", "finalize", [])


async def test_content_still_terminating_is_looked_at_again_before_finalizing():
    client = _FakeClient(_terminating(["kubernetes"]), {"pods": [{"metadata": {"name": "p"}, "graceful": True}]})
    controller = _controller(client)
    await controller.sync("x")
    assert all(c[0] != "update" for c in client.calls)
    client.calls.clear()
    await controller.sync("x")
    assert client.calls == []  # already terminating: not deleted again, and still not finalized
    await controller.stop()


async def test_a_finalized_namespace_is_deleted_and_others_finalizers_are_left_alone():
    client = _FakeClient(_terminating([]), {})
    await _controller(client).sync("x")
    assert client.calls == [("delete", "namespaces", "x")]
    client = _FakeClient(_terminating(["example.com/other"]), {"pods": [{"metadata": {"name": "p"}}]})
    await _controller(client).sync("x")
    assert client.calls == []


async def test_a_live_or_missing_namespace_is_left_alone():
    live = _terminating(["kubernetes"])
    del live["metadata"]["deletionTimestamp"]
    for ns in (live, None):
        client = _FakeClient(ns, {"pods": [{"metadata": {"name": "p"}}]})
        await _controller(client).sync("x")
        assert client.calls == []
