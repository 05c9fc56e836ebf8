"""Objects that expire (Events: kube-apiserver's --event-ttl) are written under a store lease,
as upstream's etcd3 lease manager does: objects written within one reuse window share a lease
of TTL + the window (5 % of the TTL, at most 60 s, and at most 1,000 objects per lease), so an
Event lives at least TTL after its last write and the store deletes it by itself (watchers see
DELETED), with no scan of the kind.

`reusable()` is the decision; `TTLLeases` asks the store for a new lease when it says no.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pocketkube.storage.interface import Backend

REUSE_PERCENT = 0.05
MAX_REUSE_SECONDS = 60
MAX_OBJECTS_PER_LEASE = 1000


def reuse_seconds(ttl: int) -> int:
    return min(MAX_REUSE_SECONDS, int(REUSE_PERCENT * ttl))


def reusable(now: float, ttl: int, lease_expires: float, attached: int) -> bool:
    """Whether the previous lease (expiring at `lease_expires`) still serves an object written
    now: it outlives now + ttl, it is not much longer than that (else objects would live too
    long), and it does not hold too many objects yet."""
    return (now + ttl < lease_expires <= now + ttl + reuse_seconds(ttl)
            and attached < MAX_OBJECTS_PER_LEASE)


@dataclass
class _Lease:
    id: int
    expires: float
    attached: int


class TTLLeases:
    def __init__(self, backend: Backend, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.ttl = max(1, math.ceil(ttl_seconds))
        self.clock = clock
        self._current: _Lease | None = None
        self._lock = asyncio.Lock()

    async def lease(self) -> int:
        """The lease to write the next object under."""
        async with self._lock:
            now, cur = self.clock(), self._current
            if cur is not None and reusable(now, self.ttl, cur.expires, cur.attached):
                cur.attached += 1
                return cur.id
            ttl = self.ttl + reuse_seconds(self.ttl)
            lease_id = await self.backend.grant(ttl)
            self._current = _Lease(lease_id, now + ttl, 1)
            return lease_id

    def forget(self, lease_id: int) -> None:
        """The store no longer has it (expired early, revoked): the next write gets a new one."""
        if self._current is not None and self._current.id == lease_id:
            self._current = None
