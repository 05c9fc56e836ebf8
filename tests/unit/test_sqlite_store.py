"""The SQLite revision log: CAS, revisions, watch replay, compaction, restart."""

import asyncio

import pytest

from pocketkube.storage.interface import Compacted, KeyExists, KeyNotFound, RevisionMismatch
from pocketkube.storage.sqlite import SQLiteBackend
from pocketkube.testing.waits import wait_for_async


@pytest.fixture
async def store(tmp_path):
    s = SQLiteBackend(str(tmp_path / "db.sqlite"))
    await s.start()
    yield s
    await s.close()


async def test_revisions_and_cas(store):
    a = await store.create("/a", b"1")
    assert (a.create_revision, a.mod_revision) == (1, 1)
    with pytest.raises(KeyExists):
        await store.create("/a", b"x")
    b = await store.update("/a", b"2", a.mod_revision)
    assert (b.create_revision, b.mod_revision) == (1, 2)
    with pytest.raises(RevisionMismatch):
        await store.update("/a", b"3", a.mod_revision)
    with pytest.raises(KeyNotFound):
        await store.update("/nope", b"3", 0)
    d = await store.delete("/a", b.mod_revision)
    assert d.mod_revision == 3 and await store.get("/a") is None
    assert store.current_revision() == 3


async def test_value_callable_sees_its_revision(store):
    kv = await store.create("/k", lambda rev: str(rev).encode())
    assert kv.value == str(kv.mod_revision).encode()


async def test_concurrent_writes_group_commit_and_never_duplicate(store):
    kvs = await asyncio.gather(*(store.create(f"/c/{i}", b"v") for i in range(200)))
    assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 201))
    results = await asyncio.gather(*(store.create("/same", b"v") for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1


async def test_watch_replays_then_follows(store):
    await store.create("/w/a", b"1")
    await store.create("/other", b"x")
    events = []

    async def consume():
        async for ev in store.watch("/w/", 0):
            events.append((ev.type, ev.kv.key, ev.revision))
            if len(events) == 3:
                return
    task = asyncio.create_task(consume())
    await wait_for_async(lambda: events, timeout=5, what="the watch to replay the first write")  # then it follows
    await store.update("/w/a", b"2", 0)
    await store.delete("/w/a")
    await asyncio.wait_for(task, 2)
    assert events == [("PUT", "/w/a", 1), ("PUT", "/w/a", 3), ("DELETE", "/w/a", 4)]


async def test_survives_restart_and_replays_from_disk(tmp_path):
    path = str(tmp_path / "db.sqlite")
    s = SQLiteBackend(path)
    await s.start()
    for i in range(5):
        await s.create(f"/r/{i}", f"v{i}".encode())
    await s.delete("/r/0")
    await s.close()
    s2 = SQLiteBackend(path)
    await s2.start()
    try:
        assert s2.current_revision() == 6
        assert sorted(kv.key for kv in s2.range_now("/r/")) == ["/r/1", "/r/2", "/r/3", "/r/4"]
        seen = []
        async def consume():
            async for ev in s2.watch("/r/", 3):
                seen.append((ev.type, ev.revision))
                if len(seen) == 3:
                    return
        await asyncio.wait_for(consume(), 2)
        assert seen == [("PUT", 4), ("PUT", 5), ("DELETE", 6)]
        kv = await s2.create("/r/new", b"x")
        assert kv.mod_revision == 7
    finally:
        await s2.close()


async def test_compaction_forgets_history_but_not_state(store):
    for i in range(10):
        await store.update("/k", str(i).encode(), 0) if i else await store.create("/k", b"0")
    await store.compact(8)
    assert (await store.get("/k")).value == b"9"
    with pytest.raises(Compacted):
        async for _ in store.watch("/k", 3):
            pass
