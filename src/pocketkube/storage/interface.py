"""The revisioned key-value store contract, shaped after etcd's MVCC API.

Keys are strings (`/registry/services/default/web`), values are opaque bytes. Every write gets
the next global revision; each key remembers the revision that created it and the one that last
modified it. Watches replay from a revision and then follow live writes; a revision older than
the last compaction is answered with Compacted, as etcd does (the apiserver turns it into 410).
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

    async def create(self, key: str, value: bytes) -> KeyValue: ...
    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> KeyValue:
        """expected_mod_revision 0 means unconditional."""
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

    # Optional, for a backend whose data may predate the key layout (SQLite data dirs):
    #   async def rename_prefixes(self, renames: dict[str, str]) -> int
    # moves every key, live and history, from each old prefix to its new one in one
    # transaction, keeping revisions; returns how many rows moved. Called once, after start().
