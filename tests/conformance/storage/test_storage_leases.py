"""Leases in the storage contract (storage/interface.py), as every backend must keep them.

etcd's semantics: a key put with a lease lives as long as the lease; keep-alive renews it;
revoke or expiry deletes every attached key, and watchers see those deletes as DELETE events;
a put without a lease detaches. TTLs are 2 s (etcd's default minimum) and every wait is for a
condition, never a fixed sleep.
"""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.storage.interface import KeyNotFound, LeaseNotFound
from pocketkube.testing.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)
TTL = 2


async def _collect(backend, prefix, from_rev, n):
    out = []
    async for ev in backend.watch(prefix, from_rev):
        out.append(ev)
        if len(out) == n:
            return out


async def test_grant_attach_keep_alive_and_revoke(backend):
    lease = await backend.grant(60)
    assert lease > 0 and await backend.grant(60) != lease
    assert 0 < await backend.time_to_live(lease) <= 60
    await backend.create("/l/a", b"1", lease=lease)
    await backend.create("/l/b", b"2", lease=lease)
    await backend.create("/l/c", b"3")  # no lease: outlives it
    assert await backend.keep_alive(lease) == 60
    start = backend.current_revision()
    watch = asyncio.create_task(_collect(backend, "/l/", start, 2))
    await asyncio.sleep(0)
    await backend.revoke(lease)
    assert await backend.get("/l/a") is None and backend.get_now("/l/b") is None
    assert (await backend.get("/l/c")).value == b"3"
    events = await asyncio.wait_for(watch, 10)
    assert sorted((e.type, e.kv.key) for e in events) == [("DELETE", "/l/a"), ("DELETE", "/l/b")]
    assert all(e.revision > start for e in events) and {e.prev.value for e in events} == {b"1", b"2"}
    assert backend.current_revision() >= start + 1
    for call in (backend.keep_alive, backend.time_to_live, backend.revoke):
        with pytest.raises(LeaseNotFound):
            await call(lease)


async def test_unknown_leases_are_refused(backend):
    with pytest.raises(LeaseNotFound):
        await backend.revoke(0x1234)
    with pytest.raises(LeaseNotFound):
        await backend.keep_alive(0x1234)
    with pytest.raises(LeaseNotFound):
        await backend.create("/l/x", b"1", lease=0x1234)
    assert await backend.get("/l/x") is None
    await backend.create("/l/x", b"1")
    with pytest.raises(LeaseNotFound):
        await backend.update("/l/x", b"2", 0, lease=0x1234)
    assert (await backend.get("/l/x")).value == b"1"


async def test_expiry_deletes_the_keys_and_a_watch_sees_it(backend):
    lease = await backend.grant(TTL)
    a = await backend.create("/e/a", b"1", lease=lease)
    await backend.create("/e/b", b"2", lease=lease)
    kept = await backend.grant(TTL)
    await backend.create("/e/kept", b"3", lease=kept)
    watch = asyncio.create_task(_collect(backend, "/e/", a.mod_revision + 2, 2))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15

    async def keep() -> None:  # renew `kept` as a client would, every half TTL
        while True:
            await backend.keep_alive(kept)
            await asyncio.sleep(TTL / 4)
    keeper = asyncio.create_task(keep())
    try:
        events = await asyncio.wait_for(watch, 15)
        assert sorted((e.type, e.kv.key) for e in events) == [("DELETE", "/e/a"), ("DELETE", "/e/b")]
        assert all(e.revision > a.mod_revision + 2 for e in events)
        await wait_for_async(lambda: backend.get_now("/e/b") is None, timeout=5, what="the delete applied")
        assert backend.get_now("/e/a") is None and loop.time() < deadline
        assert (await backend.get("/e/kept")).value == b"3"  # kept alive past its TTL
        assert not keeper.done()
    finally:
        keeper.cancel()
    with pytest.raises(LeaseNotFound):
        await backend.keep_alive(lease)


async def test_update_without_a_lease_detaches(backend):
    lease = await backend.grant(60)
    kv = await backend.create("/d/a", b"1", lease=lease)
    await backend.create("/d/b", b"1", lease=lease)
    await backend.update("/d/a", b"2", kv.mod_revision)  # no lease: detached
    other = await backend.grant(60)
    await backend.update("/d/b", b"2", 0, lease=other)  # moved to another lease
    await backend.revoke(lease)
    assert (await backend.get("/d/a")).value == b"2"
    assert (await backend.get("/d/b")).value == b"2"
    await backend.revoke(other)
    assert await backend.get("/d/b") is None
    await backend.delete("/d/a")
    with pytest.raises(KeyNotFound):
        await backend.delete("/d/a")


async def test_a_deleted_key_leaves_its_lease(backend):
    lease = await backend.grant(60)
    await backend.create("/k/a", b"1", lease=lease)
    await backend.delete("/k/a")
    await backend.create("/k/a", b"again")  # a new life, without the lease
    rev = backend.current_revision()
    await backend.revoke(lease)
    assert (await backend.get("/k/a")).value == b"again" and backend.current_revision() == rev


async def test_a_lease_survives_a_restart_with_its_whole_ttl(backend_factory, tmp_path):
    async with backend_factory(tmp_path) as b:
        lease = await b.grant(TTL)
        await b.create("/s/a", b"1", lease=lease)
        gone = await b.grant(60)
        await b.create("/s/b", b"1", lease=gone)
        await b.revoke(gone)
    async with backend_factory(tmp_path) as b:
        assert (await b.get("/s/a")).value == b"1" and await b.get("/s/b") is None
        assert await b.keep_alive(lease) == TTL
        with pytest.raises(LeaseNotFound):
            await b.keep_alive(gone)
        await wait_for_async(lambda: b.get_now("/s/a") is None, timeout=15, what="the lease expired after the restart")
