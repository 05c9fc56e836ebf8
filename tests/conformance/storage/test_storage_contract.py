"""The storage contract (storage/interface.py), as every backend must keep it.

Shaped after etcd's MVCC semantics, which kube-apiserver relies on: create-if-absent, CAS by
mod_revision, ranges at a revision with start/limit/count, watches from a revision with the
previous value, compaction, and one global, gapless, increasing revision.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from pocketkube.storage.interface import (
    Compacted,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    TooLarge,
)
from pocketkube.testing.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)


async def test_create_only_if_absent(backend):
    a = await backend.create("/r/a", b"1")
    assert a.create_revision == a.mod_revision == backend.current_revision()
    with pytest.raises(KeyExists):
        await backend.create("/r/a", b"2")
    assert (await backend.get("/r/a")).value == b"1"


async def test_update_and_delete_compare_the_mod_revision(backend):
    a = await backend.create("/r/a", b"1")
    b = await backend.update("/r/a", b"2", a.mod_revision)
    assert (b.create_revision, b.mod_revision) == (a.create_revision, a.mod_revision + 1)
    with pytest.raises(RevisionMismatch):
        await backend.update("/r/a", b"3", a.mod_revision)
    with pytest.raises(RevisionMismatch):
        await backend.delete("/r/a", a.mod_revision)
    with pytest.raises(KeyNotFound):
        await backend.update("/r/none", b"x", 0)
    with pytest.raises(KeyNotFound):
        await backend.delete("/r/none")
    d = await backend.delete("/r/a", b.mod_revision)
    assert d.mod_revision == b.mod_revision + 1 and d.value == b"2"
    assert await backend.get("/r/a") is None and backend.get_now("/r/a") is None
    again = await backend.create("/r/a", b"new")  # a new life: a new create revision
    assert again.create_revision == again.mod_revision == d.mod_revision + 1


async def test_revisions_are_global_gapless_and_increasing(backend):
    base = backend.current_revision()
    revs = [(await backend.create(f"/m/{i}", b"v")).mod_revision for i in range(5)]
    revs.append((await backend.update("/m/0", b"w", 0)).mod_revision)
    revs.append((await backend.delete("/m/1")).mod_revision)
    assert revs == list(range(base + 1, base + 8))
    assert backend.current_revision() == await backend.consistent_revision() == base + 7


async def _fill(backend, n=6, prefix="/p/"):
    return [await backend.create(f"{prefix}{i:02d}", f"v{i}".encode()) for i in range(n)]


async def test_range_in_key_order_with_start_limit_and_count(backend):
    await _fill(backend)
    await backend.create("/p0", b"beside the prefix")
    await backend.create("/q/00", b"after it")
    r = await backend.range_at("/p/")
    assert [kv.key for kv in r.kvs] == [f"/p/{i:02d}" for i in range(6)]
    assert (r.count, r.revision, r.more) == (6, backend.current_revision(), False)
    page = await backend.range_at("/p/", limit=2)
    assert [kv.key for kv in page.kvs] == ["/p/00", "/p/01"] and page.count == 6 and page.more
    rest = await backend.range_at("/p/", page.revision, start="/p/01\x00", limit=2)
    assert [kv.key for kv in rest.kvs] == ["/p/02", "/p/03"] and rest.count == 4
    assert [kv.key for kv in backend.range_now("/p/")] == [f"/p/{i:02d}" for i in range(6)]


async def test_range_at_a_past_revision_is_a_snapshot(backend):
    kvs = await _fill(backend)
    at = backend.current_revision()
    await backend.update("/p/00", b"changed", 0)
    await backend.delete("/p/01")
    await backend.create("/p/015", b"inserted")
    await backend.create("/p/99", b"appended")
    then = await backend.range_at("/p/", at)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in then.kvs] == \
        [(kv.key, kv.value, kv.mod_revision) for kv in kvs]
    assert then.count == 6 and then.revision == at
    page = await backend.range_at("/p/", at, start="/p/00\x00", limit=2)
    assert [kv.key for kv in page.kvs] == ["/p/01", "/p/02"] and page.count == 5
    mid = await backend.range_at("/p/", at + 2)  # after the update and the delete only
    assert [kv.key for kv in mid.kvs] == ["/p/00", "/p/02", "/p/03", "/p/04", "/p/05"]
    assert mid.kvs[0].value == b"changed"
    latest = await backend.range_at("/p/")
    assert [kv.key for kv in latest.kvs][:3] == ["/p/00", "/p/015", "/p/02"] and latest.count == 7


async def test_future_and_compacted_revisions(backend):
    await _fill(backend)
    cur = backend.current_revision()
    with pytest.raises(FutureRevision):
        await backend.range_at("/p/", cur + 1)
    await backend.update("/p/00", b"x", 0)
    await backend.compact(cur)
    assert backend.compacted_revision() == cur
    with pytest.raises(Compacted):
        await backend.range_at("/p/", cur - 1)
    assert (await backend.range_at("/p/", cur)).kvs[0].value == b"v0"  # the compaction point stays readable
    with pytest.raises(Compacted):
        async for _ in backend.watch("/p/", cur - 2):
            pass


async def test_wait_for_a_committed_revision(backend):
    kv = await backend.create("/w/a", b"1")
    assert await backend.wait_for(kv.mod_revision, timeout=3)
    rev = await backend.consistent_revision()
    assert rev >= kv.mod_revision and await backend.wait_for(rev, timeout=3)
    assert backend.get_now("/w/a").value == b"1"


async def _collect(backend, prefix, from_rev, n):
    out = []
    async for ev in backend.watch(prefix, from_rev):
        out.append(ev)
        if len(out) == n:
            return out


async def test_watch_from_a_revision_with_previous_values(backend):
    start = backend.current_revision()
    a = await backend.create("/w/a", b"1")
    await backend.create("/x/other", b"not watched")
    b = await backend.update("/w/a", b"2", a.mod_revision)
    watch = asyncio.create_task(_collect(backend, "/w/", start, 4))
    await asyncio.sleep(0)
    await backend.delete("/w/a", b.mod_revision)
    await backend.create("/w/b", b"3")
    events = await asyncio.wait_for(watch, 10)
    assert [(e.type, e.kv.key) for e in events] == [("PUT", "/w/a"), ("PUT", "/w/a"), ("DELETE", "/w/a"),
                                                    ("PUT", "/w/b")]
    revs = [e.revision for e in events]
    assert revs == sorted(revs) and revs[0] == a.mod_revision
    create, update, delete, _ = events
    assert create.prev is None and create.kv.create_revision == create.kv.mod_revision
    assert update.prev.value == b"1" and update.prev.mod_revision == a.mod_revision
    assert delete.prev.value == b"2" and delete.prev.mod_revision == b.mod_revision
    # from a revision: strictly after it
    later = await asyncio.wait_for(_collect(backend, "/w/", b.mod_revision, 1), 10)
    assert later[0].type == "DELETE"


async def test_concurrent_writers_lose_no_acknowledged_write(backend):
    async def writer(w: int) -> list[tuple[str, int]]:
        done = []
        for i in range(25):
            key = f"/c/{w}/{i}"
            kv = await backend.create(key, f"{w}:{i}".encode())
            done.append((key, kv.mod_revision))
            if random.random() < 0.3:
                kv = await backend.update(key, b"updated", kv.mod_revision)
                done[-1] = (key, kv.mod_revision)
        return done
    results = await asyncio.gather(*(writer(w) for w in range(32)))
    acked = dict(kv for r in results for kv in r)
    stored = {kv.key: kv.mod_revision for kv in (await backend.range_at("/c/")).kvs}
    assert stored == acked
    assert len(set(acked.values())) == len(acked)  # no two writes share a revision


async def test_contended_cas_lets_exactly_one_writer_win(backend):
    kv = await backend.create("/cas", b"0")
    results = await asyncio.gather(*(backend.update("/cas", f"{i}".encode(), kv.mod_revision) for i in range(16)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, RevisionMismatch) for r in results if isinstance(r, Exception))


async def test_large_values(backend):
    big = bytes(random.getrandbits(8) for _ in range(1024)) * 1000  # 1 MB: under etcd's 1.5 MiB
    kv = await backend.create("/big/a", big)
    assert (await backend.get("/big/a")).value == big and kv.value == big
    with pytest.raises(TooLarge):
        await backend.create("/big/b", b"x" * (2 * 1024 * 1024))
    assert await backend.get("/big/b") is None


async def test_state_survives_a_restart(backend_factory, tmp_path):
    async with backend_factory(tmp_path) as b:
        await _fill(b, 3)
        await b.delete("/p/01")
        rev = b.current_revision()
    async with backend_factory(tmp_path) as b:
        # Never behind; an etcd backend's start may write (its replay fence, in no range).
        assert b.current_revision() >= rev
        assert [kv.key for kv in (await b.range_at("/p/")).kvs] == ["/p/00", "/p/02"]
        assert [kv.key for kv in (await b.range_at("/p/", rev - 1)).kvs] == ["/p/00", "/p/01", "/p/02"]
        events = await asyncio.wait_for(_collect(b, "/p/", rev - 1, 1), 10)
        assert events[0].type == "DELETE" and events[0].prev.key == "/p/01"
        kv = await b.create("/p/03", b"after")
        assert kv.mod_revision > rev and kv.mod_revision == b.current_revision()
        await wait_for_async(lambda: b.get_now("/p/03") is not None, timeout=3, what="the new key")
