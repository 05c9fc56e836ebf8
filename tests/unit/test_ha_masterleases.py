"""registry.masterleases: which API servers are alive (expiry observed by revision, on our clock)
and the `kubernetes` endpoints listing every live one (bootstrap with several addresses)."""

from __future__ import annotations

import pytest

from pocketkube.apiserver.bootstrap import bootstrap
from pocketkube.registry.masterleases import MASTER_LEASES_PREFIX, MasterLease, MasterLeases, live_and_stale
from pocketkube.storage.sqlite import SQLiteBackend


def test_a_lease_is_live_until_its_revision_stands_still_for_the_ttl():
    a, b = MasterLease("10.0.0.1", 6443, 5), MasterLease("10.0.0.2", 6443, 6)
    live, stale, seen = live_and_stale([a, b], {}, 100.0, 15.0)
    assert live == [a, b] and stale == [] and seen == {"10.0.0.1": (5, 100.0), "10.0.0.2": (6, 100.0)}
    a2 = MasterLease("10.0.0.1", 6443, 9)  # a renewed, b did not
    live, stale, seen = live_and_stale([a2, b], seen, 114.0, 15.0)
    assert live == [a2, b] and seen["10.0.0.1"] == (9, 114.0)
    live, stale, seen = live_and_stale([a2, b], seen, 115.0, 15.0)
    assert live == [a2] and stale == [b]


def test_a_gone_lease_is_forgotten():
    _, _, seen = live_and_stale([MasterLease("10.0.0.1", 6443, 5)], {}, 0.0)
    _, _, seen = live_and_stale([], seen, 1.0)
    assert seen == {}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def backend(tmp_path):
    b = SQLiteBackend(str(tmp_path / "db.sqlite"))
    await b.start()
    yield b
    await b.close()


async def test_two_servers_see_each_other_and_a_dead_one_is_removed(backend):
    clock = Clock()
    a, b = MasterLeases(backend, clock=clock), MasterLeases(backend, clock=clock)
    await a.renew("10.0.0.1", 6443)
    await b.renew("10.0.0.2", 6443)
    assert [m.ip for m in await a.live()] == ["10.0.0.1", "10.0.0.2"]
    for _ in range(2):  # b dies; a goes on renewing every 10 s
        clock.now += 10
        await a.renew("10.0.0.1", 6443)
        live = await a.live()
    assert [m.ip for m in live] == ["10.0.0.1"]
    assert await backend.get(MASTER_LEASES_PREFIX + "10.0.0.2") is None  # deleted, not just hidden


async def test_a_renewal_racing_the_expiry_wins(backend):
    clock = Clock()
    a = MasterLeases(backend, clock=clock)
    await a.renew("10.0.0.2", 6443)
    assert len(await a.live()) == 1
    clock.now += 20
    kv = await backend.get(MASTER_LEASES_PREFIX + "10.0.0.2")
    await backend.update(kv.key, kv.value, 0)  # renewed just now: a new revision, so not stale
    assert [m.ip for m in await a.live()] == ["10.0.0.2"]


async def test_clean_stop_removes_the_lease_and_malformed_keys_are_ignored(backend):
    a = MasterLeases(backend)
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
