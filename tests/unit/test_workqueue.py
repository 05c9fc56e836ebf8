"""client.workqueue: dedup, one worker per key, re-adds, delays, per-key back-off, shutdown."""

from __future__ import annotations

import asyncio

from async_waits import until

from pocketkube.client.workqueue import WorkQueue
from pocketkube.util.backoff import Backoff


async def test_adding_a_queued_key_again_is_a_no_op():
    q = WorkQueue()
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_a_key_is_never_processed_twice_at_once_and_a_re_add_runs_afterwards():
    q = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # changed while a worker has it
    assert len(q) == 0  # not handed to a second worker
    second = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    assert not second.done()
    q.done("a")
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    q.add("b")
    assert await q.get() == "b"


async def test_workers_keep_keys_exclusive():
    q = WorkQueue()
    active: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []

    async def worker() -> None:
        while (key := await q.get()) is not None:
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0)
            if len(processed) < 20:
                q.add(key)  # re-added while processing: must wait for done()
            await asyncio.sleep(0)
            active.discard(key)
            processed.append(key)
            q.done(key)

    workers = [asyncio.ensure_future(worker()) for _ in range(4)]
    for key in ("a", "b", "a", "c"):
        q.add(key)
    await until(lambda: len(processed) >= 20 and len(q) == 0 and not active, "the queue to drain")
    await q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 1)
    assert overlaps == []


async def test_add_after_delays_and_coalesces():
    q = WorkQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    q.add_after("a", 0.05)
    q.add_after("a", 0.05)  # one timer per key
    q.add_after("b", 0)  # no delay: at once
    assert await q.get() == "b"
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert loop.time() - started >= 0.045
    assert len(q) == 0


async def test_rate_limited_keys_back_off_until_forgotten():
    backoff = Backoff(initial=0.01, maximum=0.04)
    q = WorkQueue(backoff=backoff)
    delays = []
    for _ in range(4):
        q.add_rate_limited("a")
        delays.append(backoff.delay("a"))
        assert await asyncio.wait_for(q.get(), 1) == "a"
        q.done("a")
    assert delays == [0.01, 0.02, 0.04, 0.04]
    q.add_rate_limited("b")
    assert backoff.delay("b") == 0.01  # per key
    q.forget("a")
    assert backoff.delay("a") == 0.0
    q.add_rate_limited("a")
    assert backoff.delay("a") == 0.01


async def test_shutdown_wakes_workers_and_drops_new_keys_and_timers():
    q = WorkQueue()
    waiting = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.add_after("later", 0.01)
    await q.shutdown()
    assert await asyncio.wait_for(waiting, 1) is None
    q.add("a")
    assert len(q) == 0 and await q.get() is None


async def test_add_after_keeps_the_sooner_time():
    q = WorkQueue()
    q.add_after("k", 30)
    q.add_after("k", 0.01)  # sooner: replaces the pending one
    q.add_after("k", 60)  # later: the sooner one stays
    assert await asyncio.wait_for(q.get(), 1) == "k"
