"""Events expire: Kubernetes stores each Event under an etcd lease of --event-ttl (1 h) renewed by
every write, so the store forgets them on its own. Without it a cluster that churns pods keeps
every FailedScheduling/Killing event forever, in memory and on disk.

Events are written under store leases (registry/leasemanager.py). Events a server from before
the leases wrote have none: `expire_unleased` deletes those straight from the store
(ObjectStore.delete_expired, as an expiring lease does: no admission, no finalizers; watchers
see DELETED) once their last recorded time is older than the TTL — at start, and once more a
TTL later, when every one of them is that old. Deciding what expired is a pure function of the
Event and the time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.registry.store import ObjectStore

log = logging.getLogger(__name__)

EVENT_TTL = 3600.0
EVENT_TTL_ENV = "POCKETKUBE_EVENT_TTL"  # seconds; tests shorten it
_TIME_FIELDS = ("lastTimestamp", "eventTime", "firstTimestamp")


def last_recorded(event: dict) -> float | None:
    """The latest time an Event carries (its series, its timestamps, its creation)."""
    meta = event.get("metadata") or {}
    series = event.get("series") or {}
    candidates = [event.get(f) for f in _TIME_FIELDS] + [
        series.get("lastObservedTime") if isinstance(series, dict) else None,
        meta.get("creationTimestamp") if isinstance(meta, dict) else None]
    times = [t for t in map(parse_rfc3339, candidates) if t is not None]
    return max(times) if times else None


def expired(event: dict, cutoff: float) -> bool:
    """Whether an Event was last recorded before `cutoff`; one without any time never expires."""
    at = last_recorded(event)
    return at is not None and at < cutoff


async def expire_events(events: ObjectStore, ttl: float, now: Callable[[], float] = time.time) -> int:
    """Delete every Event last recorded more than `ttl` seconds ago; returns how many went."""
    cutoff = now() - ttl
    return await events.delete_expired(lambda event: expired(event, cutoff))


async def expire_unleased(events: ObjectStore, ttl: float, retry: float = 60.0) -> None:
    """The Events written without a lease: those older than ttl now, the rest a ttl later."""
    for delay in (0.0, ttl + 1):
        await asyncio.sleep(delay)
        while True:
            try:
                n = await expire_events(events, ttl)
                if n:
                    log.info("expired %d events older than %ss (written without a lease)", n, ttl)
                break
            except Exception:  # storage unavailable: try again
                log.exception("event expiry failed")
                await asyncio.sleep(retry)
