"""Watch semantics as client-go relies on them: resumption, initial events, bookmarks, timeouts, 410."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from apiclient import PODS, SERVICES, Api, pod, service, wait_until

from pocketkube.testing.waits import wait_for

MERGE = "application/merge-patch+json"


def events_of(api: Api, path: str, query: str) -> list[dict]:
    return list(api.watch(f"{path}?watch=1&{query}"))


def summary(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["type"], e["object"]["metadata"].get("name")) for e in events]


def relabel(api: Api, path: str, labels: dict) -> dict:
    reply = api.request("PATCH", path, {"metadata": {"labels": labels}}, content_type=MERGE)
    assert reply.status == 200, reply.body[:300]
    return reply.json()


def list_rv(api: Api, path: str = SERVICES) -> str:
    return api.get(path).json()["metadata"]["resourceVersion"]


@pytest.fixture
def background(api):
    """background(path, query) -> Future of the events of a watch running in another thread."""
    pool = ThreadPoolExecutor(max_workers=4)

    def start(path: str, query: str) -> Future:
        opened = threading.Event()
        watcher = api.__class__(api.server)
        future = pool.submit(lambda: list(watcher.watch(f"{path}?watch=1&{query}", on_open=opened.set)))
        # The test writes only once the server has the watch (or the watch failed: result() says why).
        wait_for(lambda: opened.is_set() or future.done(), timeout=10, what=f"the watch of {path} to start")
        return future
    yield start
    pool.shutdown(wait=True)


def test_list_then_watch_from_the_lists_resource_version(api):
    rv = list_rv(api)
    api.post(SERVICES, service("lw", labels={"v": "1"}))
    relabel(api, SERVICES + "/lw", {"v": "2"})
    gone = api.request("DELETE", SERVICES + "/lw").json()
    events = events_of(api, SERVICES, f"resourceVersion={rv}&timeoutSeconds=1")
    assert summary(events) == [("ADDED", "lw"), ("MODIFIED", "lw"), ("DELETED", "lw")]
    assert events[1]["object"]["metadata"]["labels"] == {"v": "2"}
    assert events[2]["object"]["metadata"]["resourceVersion"] == gone["metadata"]["resourceVersion"]
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == sorted(
        int(e["object"]["metadata"]["resourceVersion"]) for e in events)


def test_watch_receives_live_events(api, background):
    future = background(SERVICES, f"resourceVersion={list_rv(api)}&timeoutSeconds=2")
    api.post(SERVICES, service("live"))
    api.request("DELETE", SERVICES + "/live")
    assert summary(future.result(10)) == [("ADDED", "live"), ("DELETED", "live")]


@pytest.mark.parametrize("rv", ["0", ""])
def test_unset_or_zero_resource_version_starts_with_synthetic_added_events(api, background, rv):
    api.post(SERVICES, service(f"synthetic{rv or 'empty'}"))
    existing = {s["metadata"]["name"] for s in api.get(SERVICES).json()["items"]}
    future = background(SERVICES, f"resourceVersion={rv}&timeoutSeconds=2")
    api.post(SERVICES, service(f"after{rv or 'empty'}"))
    events = summary(future.result(10))
    initial = events[:len(existing)]
    assert {t for t, _ in initial} == {"ADDED"} and {n for _, n in initial} == existing
    assert events[len(existing):] == [("ADDED", f"after{rv or 'empty'}")]


def test_timeout_seconds_ends_the_stream(api):
    started = time.monotonic()
    assert events_of(api, SERVICES, f"resourceVersion={list_rv(api)}&timeoutSeconds=1") == []
    assert 0.8 < time.monotonic() - started < 3


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(api):
    api.post(SERVICES, service("initial"))
    listed = api.get(SERVICES).json()
    events = events_of(api, SERVICES, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                                      "&allowWatchBookmarks=true&timeoutSeconds=1")
    names = {s["metadata"]["name"] for s in listed["items"]}
    assert [e["type"] for e in events[:len(names)]] == ["ADDED"] * len(names)
    assert {e["object"]["metadata"]["name"] for e in events[:len(names)]} == names
    end = events[len(names)]
    assert end["type"] == "BOOKMARK"
    assert end["object"]["kind"] == "Service" and end["object"]["apiVersion"] == "v1"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(end["object"]["metadata"]["resourceVersion"]) >= int(listed["metadata"]["resourceVersion"])


def test_bookmarks_only_when_allowed(api, background):
    rv = list_rv(api)
    with_bookmarks = background(SERVICES, f"resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1")
    without = background(SERVICES, f"resourceVersion={rv}&timeoutSeconds=1")
    created = api.post(SERVICES, service("bookmarked")).json()
    events = with_bookmarks.result(10)
    assert summary(events)[0] == ("ADDED", "bookmarked")
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, "a bookmark before the watch expires lets the client resume without a relist"
    assert set(bookmarks[-1]["object"]["metadata"]) == {"resourceVersion"}
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(
        created["metadata"]["resourceVersion"])
    assert [e["type"] for e in without.result(10)] == ["ADDED"]


def test_label_selector_transitions(api, background):
    path = SERVICES + "/moving"
    future = background(SERVICES, f"resourceVersion={list_rv(api)}&labelSelector=tier%3Dweb&timeoutSeconds=2")
    api.post(SERVICES, service("moving", labels={"tier": "web"}))
    relabel(api, path, {"tier": "web", "extra": "1"})  # still matching: MODIFIED
    left = relabel(api, path, {"tier": "db"})  # stops matching: DELETED, with the new state
    relabel(api, path, {"tier": "db", "extra": "2"})  # not matching before or after: nothing
    relabel(api, path, {"tier": "web"})  # matches again: ADDED
    api.request("DELETE", path)
    events = future.result(10)
    assert summary(events) == [("ADDED", "moving"), ("MODIFIED", "moving"), ("DELETED", "moving"),
                               ("ADDED", "moving"), ("DELETED", "moving")]
    assert events[2]["object"]["metadata"]["resourceVersion"] == left["metadata"]["resourceVersion"]


def test_field_selector_transition_when_a_pod_is_bound(api, background):
    future = background(PODS, f"resourceVersion={list_rv(api, PODS)}&fieldSelector=spec.nodeName%3D"
                              "&timeoutSeconds=3")
    unbound = pod("unbound")
    unbound["spec"]["schedulerName"] = "test-binds-it"  # keep the server's own scheduler away
    api.post(PODS, unbound)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "unbound"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}}
    assert api.post(PODS + "/unbound/binding", binding).status == 201
    events = future.result(10)
    assert summary(events) == [("ADDED", "unbound"), ("DELETED", "unbound")]
    assert events[1]["object"]["spec"]["nodeName"] == "node-a"
    api.request("DELETE", PODS + "/unbound?gracePeriodSeconds=0")


def test_watch_of_one_named_object(api, background):
    api.post(SERVICES, service("named-a"))
    future = background(SERVICES, f"resourceVersion={list_rv(api)}&fieldSelector=metadata.name%3Dnamed-a"
                                  "&timeoutSeconds=2")
    api.post(SERVICES, service("named-b"))
    relabel(api, SERVICES + "/named-a", {"seen": "yes"})
    assert summary(future.result(10)) == [("MODIFIED", "named-a")]


# ---- compaction: 410 Expired ----



def test_a_compacted_resource_version_is_410_expired(compacting_server, connect):
    api = connect(compacting_server)
    old = api.post(SERVICES, service("compacted")).json()["metadata"]["resourceVersion"]
    for i in range(3):
        relabel(api, SERVICES + "/compacted", {"i": str(i)})

    def expired() -> dict | None:
        events = events_of(api, SERVICES, f"resourceVersion={old}&timeoutSeconds=1")
        return events[0] if events and events[0]["type"] == "ERROR" else None
    error = wait_until(expired, timeout=5, interval=0.1)
    assert error is not None, "the old resourceVersion was never compacted"
    status = error["object"]
    assert status["kind"] == "Status" and status["status"] == "Failure"
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {old} (")
    # A fresh list gives a resourceVersion that can be watched again.
    current = list_rv(api)
    relabel(api, SERVICES + "/compacted", {"i": "after"})
    events = events_of(api, SERVICES, f"resourceVersion={current}&timeoutSeconds=1")
    assert [e["type"] for e in events] == ["MODIFIED"]
