"""Node-indexed pod watches (registry/watchhub.py): one storage watch, events only to their nodes."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.api.selectors import FieldSelector
from pocketkube.registry import watchhub
from pocketkube.registry.registry import Registry
from pocketkube.registry.watchhub import selector_trigger
from pocketkube.storage.sqlite import SQLiteBackend

pytestmark = pytest.mark.unit


@pytest.fixture
async def backend(tmp_path):
    b = SQLiteBackend(str(tmp_path / "state.db"))
    await b.start()
    yield b
    await b.close()


def _pod(name: str, node: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _on(node: str):
    fs = FieldSelector.parse(f"spec.nodeName={node}", "Pod")

    def match(obj: dict) -> bool:
        return fs.matches(obj)
    match.trigger = selector_trigger("Pod", fs.requirements)  # type: ignore[attr-defined]
    return match


async def _next(events, timeout: float = 2.0):
    return await asyncio.wait_for(anext(events), timeout)


def test_selector_trigger():
    def parse(s: str, kind: str = "Pod"):
        return selector_trigger(kind, FieldSelector.parse(s, kind).requirements)
    assert parse("spec.nodeName=n1") == "n1"
    assert parse("spec.nodeName==n1,status.phase!=Failed") == "n1"
    assert parse("spec.nodeName=") == ""  # the scheduler's unassigned pods
    assert parse("spec.nodeName!=n1") is None
    assert parse("status.phase=Running") is None
    assert parse("metadata.name=x", "Service") is None


async def test_node_watches_share_one_storage_watch_and_see_only_their_pods(backend):
    from pocketkube.registry.core.pods import binding

    pods = Registry(backend).store("", "pods")
    start = pods.current_revision()
    watches = {node: pods.watch("", start, match=_on(node)) for node in ("n1", "n2", "")}
    seen: dict[str, list[tuple[str, str]]] = {node: [] for node in watches}

    async def collect(node: str) -> None:
        async for ev in watches[node]:
            seen[node].append((ev.type, ev.object()["metadata"]["name"]))
    tasks = [asyncio.create_task(collect(node)) for node in watches]
    try:
        await asyncio.sleep(0.05)
        assert len(backend._watchers) == 1  # one storage watcher (the hub's) serves all three
        await pods.create(_pod("a"), "default")
        await binding.bind(pods, "default", "a", {"target": {"name": "n1"}})
        await pods.create(_pod("b", node="n2"), "default")
        await pods.delete("default", "a", grace_period=0)

        async def done() -> None:
            while len(seen["n1"]) < 2 or len(seen["n2"]) < 1 or len(seen[""]) < 2:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(done(), 2)
        assert seen[""] == [("ADDED", "a"), ("DELETED", "a")]  # into, then out of, the unassigned selector
        assert seen["n1"] == [("ADDED", "a"), ("DELETED", "a")]
        assert seen["n2"] == [("ADDED", "b")]
        assert len(backend._watchers) == 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_watch_from_before_the_window_falls_back_to_storage(backend, monkeypatch):
    monkeypatch.setattr(watchhub, "WINDOW", 2)
    pods = Registry(backend).store("", "pods")
    first = pods.watch("", pods.current_revision(), match=_on("n1"))  # starts the hub
    try:
        rev = pods.current_revision()
        await asyncio.sleep(0)
        for i in range(4):
            await pods.create(_pod(f"p{i}", node="n1"), "default")
        for i in range(4):
            assert (await _next(first)).object()["metadata"]["name"] == f"p{i}"
        old = pods.watch("", rev, match=_on("n1"))  # the window no longer reaches back to rev
        try:
            names = [(await _next(old)).object()["metadata"]["name"] for _ in range(4)]
            assert names == ["p0", "p1", "p2", "p3"]
        finally:
            await old.aclose()
        recent = pods.watch("", pods.current_revision() - 1, match=_on("n1"))  # inside the window
        try:
            assert (await _next(recent)).object()["metadata"]["name"] == "p3"
        finally:
            await recent.aclose()
    finally:
        await first.aclose()


async def test_a_watcher_that_falls_behind_is_ended_and_the_others_go_on(backend, monkeypatch):
    monkeypatch.setattr(watchhub, "SUBSCRIBER_BACKLOG", 2)
    pods = Registry(backend).store("", "pods")
    start = pods.current_revision()
    slow = pods.watch("", start, match=_on("n1"))
    other = pods.watch("", start, match=_on("n2"))
    seen: list[str] = []

    async def follow() -> None:
        async for ev in other:
            seen.append(ev.object()["metadata"]["name"])
    task = asyncio.create_task(follow())
    try:
        first = asyncio.create_task(anext(slow))  # subscribes, then is not read again for a while
        await asyncio.sleep(0.05)
        for i in range(5):
            await pods.create(_pod(f"p{i}", node="n1"), "default")
        await pods.create(_pod("q", node="n2"), "default")
        assert (await asyncio.wait_for(first, 2)).object()["metadata"]["name"] == "p0"
        rest = []
        async for ev in slow:  # the stream ends: its client re-watches from its last revision
            rest.append(ev)
        assert len(rest) < 4
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == ["q"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
