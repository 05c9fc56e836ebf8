"""registry.masterleases: which API servers are alive (each key on a store lease that the store
expires) and the `kubernetes` endpoints listing every live one (bootstrap with several addresses)."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.apiserver.bootstrap import bootstrap
from pocketkube.registry.masterleases import MASTER_LEASES_PREFIX, MasterLease, MasterLeases, parse
from pocketkube.storage.sqlite import SQLiteBackend
from pocketkube.testing.waits import wait_for_async


def test_parse_a_lease_and_ignore_a_malformed_one():
    assert parse("/k", b'{"ip": "10.0.0.1", "port": 6443}', 7) == MasterLease("10.0.0.1", 6443, 7)
    for junk in (b"not json", b"[]", b'{"ip": "10.0.0.1"}', b'{"ip": "x", "port": "y"}'):
        assert parse("/k", junk, 1) is None


@pytest.fixture
async def backend(tmp_path):
    b = SQLiteBackend(str(tmp_path / "db.sqlite"))
    await b.start()
    yield b
    await b.close()


async def test_two_servers_see_each_other_and_a_dead_one_is_removed_by_the_store(backend):
    a, b = MasterLeases(backend, ttl=1), MasterLeases(backend, ttl=1)
    await a.renew("10.0.0.1", 6443)
    await b.renew("10.0.0.2", 6443)
    assert [m.ip for m in await a.live()] == ["10.0.0.1", "10.0.0.2"]
    gone = asyncio.get_running_loop().create_future()
    watch_from = backend.current_revision()

    async def watch() -> None:
        async for ev in backend.watch(MASTER_LEASES_PREFIX, watch_from):
            if ev.type == "DELETE":
                gone.set_result(ev.kv.key)
                return
    watcher = asyncio.create_task(watch())
    try:
        while not gone.done():  # b died; a goes on renewing (every half TTL here)
            await a.renew("10.0.0.1", 6443)
            await asyncio.wait([gone], timeout=0.3)
        assert gone.result() == MASTER_LEASES_PREFIX + "10.0.0.2"
    finally:
        watcher.cancel()
    assert [m.ip for m in await a.live()] == ["10.0.0.1"]
    assert await backend.get(MASTER_LEASES_PREFIX + "10.0.0.2") is None  # deleted, not just hidden


async def test_an_expired_lease_is_granted_again_on_renewal(backend):
    a = MasterLeases(backend, ttl=1)
    await a.renew("10.0.0.1", 6443)
    await wait_for_async(lambda: backend.get_now(MASTER_LEASES_PREFIX + "10.0.0.1") is None, timeout=10,
                         what="the unrenewed lease expired")
    await a.renew("10.0.0.1", 6443)  # a server that stalled past its TTL comes back
    assert [m.ip for m in await a.live()] == ["10.0.0.1"]


async def test_clean_stop_removes_the_lease_and_malformed_keys_are_ignored(backend):
    a = MasterLeases(backend)
    await a.renew("10.0.0.1", 6443)
    await a.renew("10.0.0.1", 6443)
    await backend.create(MASTER_LEASES_PREFIX + "junk", b"not json")
    assert [m.ip for m in await a.live()] == ["10.0.0.1"]
    await a.remove("10.0.0.1")
    await a.remove("10.0.0.1")  # twice is fine
    assert await a.live() == []


async def test_the_kubernetes_endpoints_list_every_live_server(registry):
    await bootstrap(registry, "127.0.0.1", 6443, addresses=["10.0.0.2", "10.0.0.10", "10.0.0.1"])
    ep = registry.store("", "endpoints").get("default", "kubernetes")
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.0.0.1", "10.0.0.2", "10.0.0.10"]
    assert ep["subsets"][0]["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    es = registry.store("discovery.k8s.io", "endpointslices").get("default", "kubernetes")
    assert [e["addresses"] for e in es["endpoints"]] == [["10.0.0.1"], ["10.0.0.2"], ["10.0.0.10"]]
    await bootstrap(registry, "127.0.0.1", 6443, addresses=["10.0.0.1"])  # two stopped
    ep = registry.store("", "endpoints").get("default", "kubernetes")
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.0.0.1"]
    await bootstrap(registry, "127.0.0.5", 6443)  # no leases given: this server alone
    ep = registry.store("", "endpoints").get("default", "kubernetes")
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["127.0.0.5"]
