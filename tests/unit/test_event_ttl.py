"""Events expire by their latest recorded time, straight from the store (apiserver/event_ttl.py)."""

from __future__ import annotations

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
