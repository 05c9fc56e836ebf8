"""The SQLite backend's lease calls (grant, keep_alive, time_to_live, revoke) and expiry task.

A grant is one row of `leases`, written in the backend's queue with the writes around it (etcd's
Grant adds no revision); keep-alives live
in memory only (storage/leases.py: a restart restores every lease's whole TTL). A revoke, by a
caller or by the expiry task, is a write in the backend's queue, so it commits with the key
deletes it causes (SQLiteBackend._commit_batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pocketkube.storage.interface import LeaseNotFound, Unavailable
from pocketkube.storage.leases import LeaseTable

log = logging.getLogger(__name__)
LEASE_CHECK = 0.5  # the longest the expiry task sleeps (etcd's lessor checks every 500 ms)


class SQLiteLeases:
    """Mixed into SQLiteBackend, which provides these attributes and _submit."""

    _leases: LeaseTable
    _lease_wake: asyncio.Event | None
    _closed: bool

    async def _submit(self, kind: str, key: str, value: Any, expected: int, lease: int = 0) -> Any:
        raise NotImplementedError

    async def grant(self, ttl_seconds: int) -> int:
        # A write in the backend's queue: it shares a batch (one transaction, one busy wait when
        # the file is locked) with the writes around it.
        if self._closed or self._lease_wake is None:
            raise Unavailable("store is closed")
        ttl = max(1, int(ttl_seconds))
        lease_id = self._leases.new_id()
        await self._submit("grant", "", ttl, lease_id)  # type: ignore[arg-type]
        self._lease_wake.set()  # it may expire before the expiry task's next look
        return lease_id

    async def keep_alive(self, lease_id: int) -> int:
        return self._leases.renew(lease_id, time.monotonic())

    async def time_to_live(self, lease_id: int) -> int:
        return int(self._leases.remaining(lease_id, time.monotonic()))

    async def revoke(self, lease_id: int) -> None:
        await self._submit("revoke", "", None, lease_id)

    async def _expire_loop(self) -> None:
        assert self._lease_wake is not None
        while not self._closed:
            failed = False
            for lease_id in self._leases.expired(time.monotonic()):
                try:
                    await self.revoke(lease_id)
                except LeaseNotFound:
                    pass  # revoked meanwhile
                except Unavailable as exc:
                    failed = True
                    log.warning("expiring lease %x failed (%s): trying again", lease_id, exc)
            nxt = self._leases.next_deadline()
            wait = LEASE_CHECK if nxt is None or failed else min(LEASE_CHECK, max(0.01, nxt - time.monotonic()))
            self._lease_wake.clear()
            try:
                await asyncio.wait_for(self._lease_wake.wait(), wait)
            except TimeoutError:
                pass

