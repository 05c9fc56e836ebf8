"""client.informer against the fake client: list, watch, resume, relist on 410, handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from async_waits import until

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.informer import Informer
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.util.backoff import Backoff

CMS = BY_PLURAL[("", "endpoints")]


def obj(name: str, ns: str = "ns", **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


class Recorder:
    def __init__(self, informer: Informer) -> None:
        self.calls: list[tuple[str, str]] = []
        informer.add_handlers(lambda o: self.calls.append(("add", o["metadata"]["name"])),
                              lambda old, new: self.calls.append(("update", new["metadata"]["name"])),
                              lambda o: self.calls.append(("delete", o["metadata"]["name"])))


@pytest.fixture
async def running() -> AsyncIterator:
    tasks: list[asyncio.Task] = []

    def start(informer: Informer) -> Informer:
        tasks.append(asyncio.ensure_future(informer.run()))
        return informer
    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def quick() -> Backoff:
    return Backoff(initial=0.001, maximum=0.002)


async def test_lists_then_watches_with_handlers_and_has_synced(running):
    fake = FakeClient((CMS, obj("a")), (CMS, obj("b")))
    informer = Informer(fake, CMS, backoff=quick())
    seen = Recorder(informer)
    assert not informer.has_synced()
    running(informer)
    await until(informer.has_synced, "the first list")
    assert sorted(seen.calls) == [("add", "a"), ("add", "b")]
    listed_rv = informer.resource_version
    watch = await until(lambda: fake.actions_of("watch"), "a watch")
    assert watch[0].resource_version == listed_rv  # watches from the list, no gap

    await fake.create(CMS, obj("c"))
    a = await fake.get(CMS, "ns", "a")
    await fake.update(CMS, {**a, "subsets": []})
    await fake.delete(CMS, "ns", "b")
    await until(lambda: len(seen.calls) == 5, "three more events")
    assert seen.calls[2:] == [("add", "c"), ("update", "a"), ("delete", "b")]
    assert sorted(informer.cache) == ["ns/a", "ns/c"] and informer.get("ns/c")["metadata"]["name"] == "c"
    assert informer.resource_version == fake.resource_version


async def test_a_dropped_watch_resumes_from_the_last_version_without_relisting(running):
    fake = FakeClient((CMS, obj("a")))
    informer = running(Informer(fake, CMS, backoff=quick()))
    seen = Recorder(informer)
    await until(lambda: fake.open_watches, "a watch")
    await fake.create(CMS, obj("b"))
    await until(lambda: informer.get("ns/b"), "b")
    last = informer.resource_version
    fake.disconnect_watches()
    await fake.create(CMS, obj("c"))  # while disconnected
    await until(lambda: informer.get("ns/c"), "c after the reconnect")
    assert [a.resource_version for a in fake.actions_of("watch")][-1] == last
    assert len(fake.actions_of("list")) == 1
    assert seen.calls == [("add", "a"), ("add", "b"), ("add", "c")]


async def test_gone_relists_and_reconciles_the_cache(running):
    fake = FakeClient((CMS, obj("a")), (CMS, obj("b")))
    informer = running(Informer(fake, CMS, backoff=quick()))
    seen = Recorder(informer)
    await until(lambda: fake.open_watches, "a watch")
    fake.disconnect_watches()
    fake.fail_next("watch", errors.ServiceUnavailable("restarting"))  # and a failed reconnect: back-off
    await fake.delete(CMS, "ns", "a")
    b = await fake.get(CMS, "ns", "b")
    await fake.update(CMS, {**b, "subsets": []})
    fake.compact()  # the informer's version is gone: it must relist
    await until(lambda: len(fake.actions_of("list")) == 2, "a relist")
    await until(lambda: len(seen.calls) == 4, "the differences")
    assert sorted(seen.calls[2:]) == [("delete", "a"), ("update", "b")]
    assert sorted(informer.cache) == ["ns/b"]
    await fake.create(CMS, obj("d"))
    await until(lambda: informer.get("ns/d"), "live events after the relist")


async def test_list_failures_retry_with_the_backoff(running):
    fake = FakeClient((CMS, obj("a")))
    for _ in range(3):
        fake.fail_next("list", errors.ServiceUnavailable("down"))
    backoff = quick()
    informer = running(Informer(fake, CMS, backoff=backoff))
    await until(informer.has_synced, "a list after three failures")
    assert len(fake.actions_of("list")) == 4
    assert backoff.delay() == 0.002  # doubled, capped; no event yet to reset it


async def test_selectors_are_passed_through(running):
    fake = FakeClient((CMS, obj("a", app="web")), (CMS, obj("b", app="db")), (CMS, obj("c", "other", app="web")))
    informer = running(Informer(fake, CMS, "ns", label_selector="app=web", backoff=quick()))
    await until(informer.has_synced, "sync")
    assert sorted(informer.cache) == ["ns/a"]
    b = await fake.get(CMS, "ns", "b")
    await fake.update(CMS, {**b, "metadata": {**b["metadata"], "labels": {"app": "web"}}})
    await until(lambda: informer.get("ns/b"), "b entering the selector")


async def test_a_failing_handler_does_not_stop_the_informer(running):
    fake = FakeClient()
    informer = Informer(fake, CMS, backoff=quick())
    informer.add_handlers(on_add=lambda o: 1 / 0)
    seen = Recorder(informer)
    running(informer)
    await until(lambda: fake.open_watches, "a watch")
    await fake.create(CMS, obj("a"))
    await fake.create(CMS, obj("b"))
    await until(lambda: len(seen.calls) == 2, "both adds")


def test_reconnects_are_jittered_so_informers_do_not_retry_in_lockstep():
    from pocketkube.client.informer import reconnect_backoff

    b = reconnect_backoff()
    b.rand = lambda: 1.0
    assert b.next() == pytest.approx(0.3) and b.delay() == 0.2
