"""storage.compactor: the compare-and-swap on compact_rev_key (kube-apiserver's compact.go) with
two simulated API servers ticking on one SQLite backend: one compaction per interval, no
compaction on the first win, the survivor takes over when the winner stops."""

from __future__ import annotations

import pytest

from pocketkube.storage.compactor import COMPACT_REV_KEY, CompactorState, compact_tick
from pocketkube.storage.sqlite import SQLiteBackend


@pytest.fixture
async def store(tmp_path):
    s = SQLiteBackend(str(tmp_path / "db.sqlite"))
    await s.start()
    yield s
    await s.close()


async def _writes(store, n: int) -> None:
    for i in range(n):
        await store.update("/registry/core/things/x", str(i).encode(), 0) if await store.get(
            "/registry/core/things/x") else await store.create("/registry/core/things/x", b"0")


async def test_first_win_compacts_nothing_then_the_previous_ticks_revision(store):
    await _writes(store, 5)
    s, done = await compact_tick(store, CompactorState())
    assert done == 0 and store.compacted_revision() == 0
    key = await store.get(COMPACT_REV_KEY)
    assert key is not None and s.seen == key.mod_revision == s.rev == 6
    await _writes(store, 5)
    s2, done = await compact_tick(store, s)
    assert done == 6 and store.compacted_revision() == 6  # what this server saw one interval ago
    assert (await store.get(COMPACT_REV_KEY)).value == b"6"
    assert s2.rev == store.current_revision()


async def test_two_servers_one_compaction_per_interval(store):
    a, b = CompactorState(), CompactorState()
    compactions: list[tuple[str, int]] = []
    for _ in range(4):  # four intervals; a ticks first each time, then b
        await _writes(store, 3)
        a, done = await compact_tick(store, a)
        if done:
            compactions.append(("a", done))
        b, done = await compact_tick(store, b)
        if done:
            compactions.append(("b", done))
    # a won every interval (b's swap always found a's newer write); b never compacted.
    assert [who for who, _ in compactions] == ["a", "a", "a"]
    revs = [rev for _, rev in compactions]
    assert revs == sorted(revs) and len(set(revs)) == 3
    assert b.seen == (await store.get(COMPACT_REV_KEY)).mod_revision  # b adopted a's write


async def test_the_survivor_takes_over_at_its_next_tick(store):
    a, b = CompactorState(), CompactorState()
    await _writes(store, 2)
    a, _ = await compact_tick(store, a)
    b, done = await compact_tick(store, b)
    assert done == 0  # lost to a; b remembers the revision it saw
    seen_by_b = b.rev
    # a stops (its server died): b's next swap is against the key as it adopted it, so it wins and
    # compacts to the revision it saw an interval ago.
    await _writes(store, 2)
    b, done = await compact_tick(store, b)
    assert done == seen_by_b and store.compacted_revision() == seen_by_b


async def test_keep_bounds_what_is_compacted(store):
    s, _ = await compact_tick(store, CompactorState(), keep=100)
    await _writes(store, 10)
    s, done = await compact_tick(store, s, keep=100)
    assert done == 0 and store.compacted_revision() == 0  # fewer than 100 revisions of history


async def test_a_deleted_key_is_recreated(store):
    s, _ = await compact_tick(store, CompactorState())
    kv = await store.get(COMPACT_REV_KEY)
    await store.delete(COMPACT_REV_KEY, kv.mod_revision)
    s, done = await compact_tick(store, s)  # the swap fails: the key is gone; adopt "absent"
    assert s.seen == 0 and done == 0
    s, _ = await compact_tick(store, s)
    assert await store.get(COMPACT_REV_KEY) is not None
