"""The live map's shared watch cache over a real registry: lists, follows changes, tells the
listeners of the Services a change may affect, and lists again after its watch expired (410)."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.api import errors
from pocketkube.apiserver.ui import watchcache
from pocketkube.registry.store import INITIAL_EVENTS_END, WatchEvent
from pocketkube.testing.waits import wait_for_async


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_affected_keys():
    assert watchcache.affected("services", {"metadata": {"namespace": "a", "name": "s"}}) == ("a", "s")
    sl = {"metadata": {"namespace": "a", "name": "s-x", "labels": {"kubernetes.io/service-name": "s"}}}
    assert watchcache.affected("endpointslices", sl) == ("a", "s")
    assert watchcache.affected("pods", {"metadata": {"namespace": "a", "name": "p"}}) == ("a", "*")
    assert watchcache.affected("nodes", {"metadata": {"name": "n"}}) == ("*", "*")


async def test_lists_follows_and_notifies(registry):
    pods = registry.store("", "pods")
    await pods.create(_pod("before"), "default")
    cache = watchcache.WatchCache(registry)
    try:
        await asyncio.wait_for(cache.ready(), 5)
        assert [p["metadata"]["name"] for p in cache["pods"].items("default")] == ["before"]
        hits = {"svc": 0, "other-ns": 0, "any": 0}
        cache.subscribe("default", "svc", lambda: hits.__setitem__("svc", hits["svc"] + 1))
        cache.subscribe("elsewhere", "svc", lambda: hits.__setitem__("other-ns", hits["other-ns"] + 1))
        cache.subscribe("*", "*", lambda: hits.__setitem__("any", hits["any"] + 1))
        await pods.create(_pod("after"), "default")
        await wait_for_async(lambda: cache["pods"].get("default", "after") is not None, timeout=5)
        assert hits == {"svc": 1, "other-ns": 0, "any": 1}
        rev = cache.revision
        await pods.delete("default", "before", grace_period=0)
        await wait_for_async(lambda: cache["pods"].get("default", "before") is None, timeout=5)
        assert cache.revision > rev
    finally:
        await cache.stop()


class _ExpiringStore:
    """Lists one object, then its watch expires once; the second list has another object."""

    def __init__(self) -> None:
        self.lists = 0

    async def watch(self, namespace, rev, send_initial=False):
        self.lists += 1
        name = f"n{self.lists}"
        yield WatchEvent("ADDED", b'{"metadata":{"name":"%s"}}' % name.encode(), self.lists)
        yield WatchEvent(INITIAL_EVENTS_END, b"", self.lists)
        if self.lists == 1:
            raise errors.Gone("too old resource version: 1 (2)")
        await asyncio.Event().wait()


async def test_relists_after_410():
    changes = []
    cache = watchcache.KindCache("nodes", _ExpiringStore(), lambda kind, obj: changes.append(obj["metadata"]["name"]))
    task = asyncio.create_task(cache.run())
    try:
        await wait_for_async(lambda: cache.get("", "n2") is not None, timeout=5)
        assert cache.get("", "n1") is None and sorted(changes) == ["n1", "n1", "n2"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
