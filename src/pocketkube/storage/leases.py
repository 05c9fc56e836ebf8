"""A store's leases in memory: which exist, when each expires, which keys each holds.

Pure bookkeeping on a monotonic clock the caller passes in (`now`): the SQLite backend persists
the leases and their keys and deletes expired leases' keys; this decides what has expired and
which keys go. Deadlines are never persisted: a reopened store gives every lease its whole TTL
again, as an etcd leader does when it takes over (lessor.Promote), so a lease cannot expire
while no store was running to be kept alive through.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pocketkube.storage.interface import LeaseNotFound


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int
    deadline: float  # monotonic


class LeaseTable:
    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        self.key_lease: dict[str, int] = {}  # key -> the lease it is attached to
        self.lease_keys: dict[int, set[str]] = {}

    def new_id(self) -> int:
        """A random id, as etcd's (positive int64, never 0, never one in use)."""
        while True:
            lease_id = secrets.randbits(62) + 1
            if lease_id not in self.leases:
                return lease_id

    def add(self, lease_id: int, ttl: int, now: float) -> None:
        self.leases[lease_id] = Lease(lease_id, ttl, now + ttl)

    def remaining(self, lease_id: int, now: float) -> float:
        """Seconds left; LeaseNotFound if unknown or already past its deadline (etcd's Renew)."""
        lease = self.leases.get(lease_id)
        if lease is None or lease.deadline <= now:
            raise LeaseNotFound(lease_id)
        return lease.deadline - now

    def renew(self, lease_id: int, now: float) -> int:
        self.remaining(lease_id, now)
        lease = self.leases[lease_id]
        lease.deadline = now + lease.ttl
        return lease.ttl

    def expired(self, now: float) -> list[int]:
        return sorted(lid for lid, lease in self.leases.items() if lease.deadline <= now)

    def next_deadline(self) -> float | None:
        return min((lease.deadline for lease in self.leases.values()), default=None)

    def attach(self, key: str, lease_id: int) -> None:
        """Attach key to lease_id (0: to none), detaching it from the lease it had."""
        old = self.key_lease.pop(key, 0)
        if old:
            keys = self.lease_keys.get(old)
            if keys is not None:
                keys.discard(key)
        if lease_id:
            self.key_lease[key] = lease_id
            self.lease_keys.setdefault(lease_id, set()).add(key)

    def drop(self, lease_id: int) -> None:
        """The lease is gone (its keys are deleted by the caller in the same write)."""
        self.leases.pop(lease_id, None)
        for key in self.lease_keys.pop(lease_id, set()):
            if self.key_lease.get(key) == lease_id:
                del self.key_lease[key]

    def keys_of(self, lease_id: int, pending: dict[str, int]) -> list[str]:
        """The keys attached to the lease once `pending` (key -> lease, 0 none: attachments made
        earlier in the same batch) is applied, in key order."""
        keys = {k for k in self.lease_keys.get(lease_id, ()) if pending.get(k, lease_id) == lease_id}
        keys.update(k for k, lid in pending.items() if lid == lease_id)
        return sorted(keys)
