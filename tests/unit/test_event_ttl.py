"""Events expire by their latest recorded time, straight from the store (apiserver/event_ttl.py)."""

from __future__ import annotations

import asyncio
import time

from pocketkube.api.timestamps import now_micro, now_rfc3339
from pocketkube.apiserver.event_ttl import expire_events, expired


def _event(name: str, **fields) -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "R", **fields}


def test_an_event_without_any_time_never_expires():
    assert not expired({"metadata": {}}, time.time())
    assert expired({"metadata": {}, "lastTimestamp": "2026-01-01T00:10:00Z"}, 1767229200.0)


async def test_events_expire_by_their_latest_time(registry):
    """Created now, judged two hours later with a one-hour TTL: only a later time keeps an Event."""
    events, start = registry.events, time.time()
    await events.create(_event("old", lastTimestamp=now_rfc3339(start - 600)), "default")
    await events.create(_event("renewed", series={"count": 2, "lastObservedTime": now_micro(start + 5400)},
                               eventTime=now_micro(start), reportingController="c",
                               reportingInstance="i", action="A"), "default")
    await events.create(_event("new", lastTimestamp=now_rfc3339(start + 4800)), "default")
    assert await expire_events(events, 3600, now=lambda: start + 7200) == 1
    assert sorted(e["metadata"]["name"] for e in events.list_objects("default")) == ["new", "renewed"]


# --- Events under store leases (registry/leasemanager.py) ----------------------------------

def test_a_lease_is_reused_within_its_window_and_not_beyond():
    from pocketkube.registry.leasemanager import MAX_OBJECTS_PER_LEASE, reusable, reuse_seconds

    assert reuse_seconds(3600) == 60 and reuse_seconds(600) == 30 and reuse_seconds(3) == 0
    granted = 100.0 + 3600 + 60  # at t=100, for ttl + reuse
    assert reusable(130.0, 3600, granted, attached=5)  # objects written 30 s later share it
    assert not reusable(161.0, 3600, granted, attached=5)  # it would expire before now + ttl
    assert not reusable(130.0, 3600, granted, attached=MAX_OBJECTS_PER_LEASE)
    assert not reusable(101.0, 3, 104.0, attached=1)  # short TTLs: no window, a lease each


async def test_leases_are_shared_then_renewed():
    from pocketkube.registry.leasemanager import TTLLeases

    granted: list[int] = []

    class Store:
        async def grant(self, ttl: int) -> int:
            granted.append(ttl)
            return len(granted)
    now = [0.0]
    leases = TTLLeases(Store(), 3600, clock=lambda: now[0])
    assert [await leases.lease() for _ in range(3)] == [1, 1, 1] and granted == [3660]
    now[0] = 61.0
    assert await leases.lease() == 2
    leases.forget(2)
    assert await leases.lease() == 3


async def test_events_go_when_their_lease_expires_also_after_an_update(registry):
    """The store deletes them by itself (a watcher sees DELETED; nothing scans the Events). An
    update writes under a lease too: without one the store would detach the key, and it would
    live for ever."""
    events = registry.events
    registry.expire_events_after(1)
    rev = events.current_revision()
    await events.create(_event("created", lastTimestamp=now_rfc3339()), "default")
    await events.create(_event("updated", lastTimestamp=now_rfc3339()), "default")
    updated = events.get("default", "updated")
    updated["count"] = 2
    await events.update("default", "updated", updated)
    watch = events.watch("default", rev)
    try:
        kinds = []
        while kinds.count("DELETED") < 2:
            kinds.append((await asyncio.wait_for(anext(watch), 10)).type)
        assert kinds == ["ADDED", "ADDED", "MODIFIED", "DELETED", "DELETED"], kinds
        assert events.list_objects("default") == []
    finally:
        await watch.aclose()
