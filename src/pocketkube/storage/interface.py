"""The revisioned key-value store contract, shaped after etcd's MVCC API.

Keys are strings (`/registry/services/default/web`), values are opaque bytes. Every write gets
the next global revision; each key remembers the revision that created it and the one that last
modified it. Watches replay from a revision and then follow live writes; a revision older than
the last compaction is answered with Compacted, as etcd does (the apiserver turns it into 410).

Leases, as etcd's: `grant(ttl)` makes a lease that lives `ttl` seconds unless `keep_alive` renews
it; a create or update given `lease=` attaches the key to it, and an update without one detaches
the key (etcd's Put without a lease). When a lease expires or is revoked the store itself deletes
every key still attached: each delete is a write with a new revision, so watchers see DELETE events
as for any other delete (etcd deletes them in one transaction, so its deletes share one revision;
SQLite gives each its own). A store restart keeps its leases and gives each its whole TTL again,
as an etcd leader does on promotion: a lease never expires while no store serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue  # for DELETE: the last value, with mod_revision = the delete's revision
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class StoreError(Exception):
    """Base of the store's own errors."""


class KeyExists(StoreError):
    pass


class KeyNotFound(StoreError):
    pass


class RevisionMismatch(StoreError):
    """Compare-and-swap failed: the key changed since the caller read it."""


class LeaseNotFound(StoreError):
    """The lease does not exist: never granted, revoked, or expired (etcd: "requested lease not found")."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id:x} not found (expired or revoked)")
        self.lease_id = lease_id


class Compacted(StoreError):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"required revision {requested} has been compacted (oldest kept {compacted})")
        self.requested = requested
        self.compacted = compacted


class Unavailable(StoreError):
    """The store cannot serve now (disk full, locked, I/O error; etcd unreachable, no leader)."""


class FutureRevision(StoreError):
    """A read at a revision the store has not reached (the apiserver answers 504)."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"required revision {requested} is a future revision (current {current})")
        self.requested = requested
        self.current = current


class TooLarge(StoreError):
    """A value over the store's request limit (etcd's --max-request-bytes; the apiserver answers 413)."""


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]  # live keys under prefix as of `revision`, key >= start, in key order, <= limit
    count: int  # live keys under prefix with key >= start at that revision (etcd's count)
    revision: int  # the revision the result is consistent at

    @property
    def more(self) -> bool:
        return len(self.kvs) < self.count


def prefix_end(prefix: str) -> str:
    """The first key after every key that starts with prefix (etcd's GetPrefixRangeEnd)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""


class Backend(Protocol):
    # True when several API servers may write the store at once (etcd). Then in-memory state
    # rebuilt at start is not exact for long: the Service allocators commit each allocation
    # through the store's range records. False for a store one server owns (SQLite).
    shared: bool

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    def current_revision(self) -> int: ...
    def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...
    def get_now(self, key: str) -> KeyValue | None:
        """The key's latest committed value, read without yielding to the event loop."""
        ...
    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All live keys under prefix, and the revision the listing is consistent at."""
        ...
    def range_now(self, prefix: str) -> list[KeyValue]:
        """All live keys under prefix at the latest committed revision, without yielding."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> KeyValue:
        """lease: attach the key to that lease (LeaseNotFound if it does not exist); 0: none."""
        ...
    async def update(self, key: str, value: bytes, expected_mod_revision: int, *, lease: int = 0) -> KeyValue:
        """expected_mod_revision 0 means unconditional. The key is attached to `lease` (0: to none,
        so an update without a lease detaches the key from the one it had)."""
        ...
    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue: ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events with revision > from_revision, then live ones. Raises Compacted if too old."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def range_at(self, prefix: str, revision: int = 0, *, start: str = "", limit: int = 0) -> RangeResult:
        """Live keys under prefix as of `revision` (0 = latest), from `start` on, at most `limit`
        (0 = all). Compacted if revision < compacted_revision(); FutureRevision if it is past the
        store's latest revision. Correct whatever the in-memory state has applied (a backend
        whose mirror lags behind `revision` reads the store): LIST pages rely on it."""
        ...

    async def consistent_revision(self) -> int:
        """The latest committed revision in the store (etcd: a quorum read), for consistent reads."""
        ...

    async def wait_for(self, revision: int, timeout: float = 3.0) -> bool:
        """Until the in-memory state (get_now/range_now, watches) has applied `revision`; False on
        timeout."""
        ...

    async def grant(self, ttl_seconds: int) -> int:
        """A new lease that expires `ttl_seconds` from now unless kept alive; its id (never 0).
        etcd raises a TTL below its minimum (1.5 election timeouts, 2 s by default) to it."""
        ...

    async def keep_alive(self, lease_id: int) -> int:
        """Renew the lease to its whole TTL; that TTL. LeaseNotFound if it expired or was revoked."""
        ...

    async def time_to_live(self, lease_id: int) -> int:
        """The lease's remaining seconds (truncated, as etcd's LeaseTimeToLive); LeaseNotFound if gone."""
        ...

    async def revoke(self, lease_id: int) -> None:
        """End the lease now and delete every key attached to it. LeaseNotFound if it is gone."""
        ...

    # Optional, for a backend whose data may predate the key layout (SQLite data dirs):
    #   async def rename_prefixes(self, renames: dict[str, str]) -> int
    # moves every key, live and history, from each old prefix to its new one in one
    # transaction, keeping revisions; returns how many rows moved. Called once, after start().
