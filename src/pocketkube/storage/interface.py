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
    """The store cannot take writes now (disk full, locked, I/O error)."""


class Backend(Protocol):
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


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]  # live keys under prefix as of `revision`, key >= start, in key order, <= limit
    count: int  # live keys under prefix with key >= start at that revision (etcd's count)
    revision: int  # the revision the result is consistent at


class FutureRevision(StoreError):
    """A read at a revision the store has not reached (the API answers 504 Too large resource version)."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


class TooLarge(StoreError):
    """A value over the store's request size limit (the API answers 413)."""
