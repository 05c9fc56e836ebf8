"""A range allocator whose allocations are committed through the store, shared by every API
server on it (upstream's pkg/registry/core/service/allocator/storage).

The record is a RangeAllocation at a fixed key (`/registry/ranges/serviceips`,
`/registry/ranges/servicenodeports`): the range and a bitmap of used offsets. Each server keeps a
local view (the in-memory Bitmap the allocator decides with) and the record it last saw. What the
view has and the record lacks are its pending allocations; what the record has and the view lacks,
its pending releases. sync() writes the view with a compare-and-swap on the record's
mod_revision; when another server wrote first, it merges (the other's changes plus ours) and
tries again. An allocation of ours another server made meanwhile is *lost*: the transaction that
holds it gives up and retries (an auto-picked value is picked again; a requested one is refused).
Concurrent syncs of one server coalesce into one write (group commit). repair() is one run of
the records' repair (allocators/repair.py) that every server runs at start and periodically.
Only a store several API servers share (etcd) gets records; SQLite's owner decides alone.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from typing import Any

import orjson

from pocketkube.net.bitmap import Bitmap
from pocketkube.registry.allocators.repair import repair_record
from pocketkube.storage.interface import Backend, KeyExists, KeyNotFound, KeyValue, RevisionMismatch

log = logging.getLogger(__name__)

SERVICE_IPS_KEY = "/registry/ranges/serviceips"
NODE_PORTS_KEY = "/registry/ranges/servicenodeports"


# -- the record (pure) ------------------------------------------------------------------------

def encode_bits(indices: set[int]) -> bytes:
    """Big-endian bytes of the integer whose bit i is offset i (upstream's big.Int bitmap)."""
    if not indices:
        return b""
    size = max(indices) // 8 + 1
    little = bytearray(size)
    for i in indices:
        little[i >> 3] |= 1 << (i & 7)
    return bytes(reversed(little)).lstrip(b"\0")


def decode_bits(data: bytes) -> set[int]:
    out: set[int] = set()
    for pos, byte in enumerate(reversed(data)):
        while byte:
            low = byte & -byte
            out.add(pos * 8 + low.bit_length() - 1)
            byte ^= low
    return out


def encode_record(range_str: str, indices: set[int]) -> bytes:
    # A fresh uid per write: two servers writing the same bitmap must not look alike, or the
    # store would take the loser's create for its own retried one (the etcd backend does).
    return orjson.dumps({"apiVersion": "v1", "kind": "RangeAllocation", "metadata": {"uid": str(uuid.uuid4())},
                         "range": range_str, "data": base64.b64encode(encode_bits(indices)).decode()})


def decode_record(value: bytes, range_str: str) -> set[int]:
    """The used offsets a record holds; empty for a record of another range (the repair rewrites it)."""
    try:
        obj: Any = orjson.loads(value)
        if obj.get("range") != range_str:
            return set()
        return decode_bits(base64.b64decode(obj.get("data") or ""))
    except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
        return set()


def merge(view: set[int], seen: set[int], fresh: set[int]) -> tuple[set[int], set[int]]:
    """Our view over a record someone else changed: (new view, our allocations now lost).

    Pending allocations (view - seen) stay, pending releases (seen - view) stay released, and
    everything else follows the fresh record. A pending allocation the fresh record already has
    was taken by another server: it stays used, and the caller's claim on it is lost."""
    pending_alloc, pending_release = view - seen, seen - view
    return (fresh - pending_release) | pending_alloc, pending_alloc & fresh


def _is_range(value: bytes, range_str: str) -> bool:
    try:
        obj: Any = orjson.loads(value)
        return isinstance(obj, dict) and obj.get("range") == range_str
    except orjson.JSONDecodeError:
        return False


class AllocationRaced(Exception):
    """Another API server committed a value this transaction had picked; allocate again."""


# -- the shared view ---------------------------------------------------------------------------

class StoredRange:
    """One allocator's Bitmap kept in step with its record in the store."""

    def __init__(self, backend: Backend, key: str, bits: Bitmap, range_str: str) -> None:
        self.backend, self.key, self.range_str = backend, key, range_str
        self.bits = bits
        self.seen: set[int] = set()  # the record as of `revision`
        self.revision = 0  # the record's mod_revision; 0 = no record yet
        self.lost: set[int] = set()
        self.leaks: dict[int, int] = {}  # offset → consecutive repair runs that saw it leaked
        self._writing = False  # our CAS is in flight: a newer record may be our own write
        self._lock = asyncio.Lock()
        self._flush: asyncio.Task | None = None

    def refresh(self) -> None:
        """Adopt the record as the store holds it now (without yielding): others' allocations."""
        self._adopt(self.backend.get_now(self.key))

    def _adopt(self, kv: KeyValue | None) -> None:
        # Revisions only grow: an older record is a mirror lagging behind our own write. While
        # our write is in flight, a newer one may be it; sync() sorts that out when it returns.
        if kv is None or kv.mod_revision <= self.revision or self._writing:
            return
        fresh = decode_record(kv.value, self.range_str)
        view, lost = merge(self.bits.indices(), self.seen, fresh)
        self.bits.replace(view)
        self.lost |= lost
        self.seen, self.revision = fresh, kv.mod_revision

    def load(self, held: set[int]) -> None:
        """At start: the view becomes the record plus what the Services hold (those the record
        lacks are pending allocations, written by the next sync or repair). Nothing is released
        here: a value the record has may be another server's allocation in flight."""
        kv = self.backend.get_now(self.key)
        self.seen = decode_record(kv.value, self.range_str) if kv is not None else set()
        self.revision = kv.mod_revision if kv is not None else 0
        self.bits.replace(self.seen | held)
        self.lost.clear()

    async def repair(self, kv: KeyValue | None, held: set[int]) -> bool:
        """One repair run over `kv` (the record) and `held` (what the Services hold), both read
        at one revision (allocators/repair.py). Writes the repaired record with a CAS on that
        revision; False when another write came first (the caller runs again on a new snapshot).
        The leak counts advance only with a run that took effect."""
        record = decode_record(kv.value, self.range_str) if kv is not None else set()
        # A record of another range (the range was changed) decodes empty: rewrite it.
        stale = kv is not None and not _is_range(kv.value, self.range_str)
        new, leaks = repair_record(record, held, self.leaks)
        if new != record or stale:
            value = encode_record(self.range_str, new)
            try:
                if kv is None:
                    await self.backend.create(self.key, value)
                else:
                    await self.backend.update(self.key, value, kv.mod_revision)
            except (RevisionMismatch, KeyExists, KeyNotFound):
                return False
        for value in sorted(record - new):
            log.warning("%s: offset %d appears to have leaked: cleaning up", self.key, value)
        for value in sorted(leaks.keys() - self.leaks.keys()):
            log.info("%s: offset %d may have leaked: flagging for later clean up", self.key, value)
        self.leaks = leaks
        # Adopt the repaired record; our pending allocations and releases stay. The values it
        # marked for the Services are no claims of ours that another server took.
        self.seen |= held & new
        self.refresh()
        return True

    def pending(self) -> bool:
        return self.bits.indices() != self.seen

    def take_lost(self, index: int) -> bool:
        """Whether our claim on index was lost to another server (then it is not ours to release)."""
        if index in self.lost:
            self.lost.discard(index)
            return True
        return False

    async def sync(self) -> None:
        """Until the record holds our view (one CAS write for all that is pending; merged and
        retried when another server wrote first). Store errors propagate (the write fails)."""
        async with self._lock:
            for _ in range(100):
                self.refresh()
                if not self.pending():
                    return
                view = self.bits.indices()
                value = encode_record(self.range_str, view)
                self._writing = True
                try:
                    if self.revision == 0:
                        kv = await self.backend.create(self.key, value)
                    else:
                        kv = await self.backend.update(self.key, value, self.revision)
                except (RevisionMismatch, KeyExists, KeyNotFound):
                    self._writing = False
                    # Someone else wrote: read the record as the store has it, not a lagging mirror.
                    await self.backend.wait_for(await self.backend.consistent_revision())
                    if self.backend.get_now(self.key) is None:  # deleted: write our whole view anew
                        self.seen, self.revision = set(), 0
                    continue
                finally:
                    self._writing = False
                self.seen, self.revision = view, kv.mod_revision
            raise RevisionMismatch(f"{self.key}: too many concurrent writers")

    def schedule_sync(self) -> None:
        """Write pending releases soon, in the background (a delete does not wait for them)."""
        if self._flush is not None and not self._flush.done():
            return
        if not self.pending():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a sync caller): the next sync writes them
        self._flush = loop.create_task(self._background_sync())

    async def _background_sync(self) -> None:
        try:
            await self.sync()
        except Exception as err:  # the next sync or repair writes them
            log.warning("could not write %s: %s", self.key, err)

    async def stop(self) -> None:
        """Cancel a background write (the store is closing; a repair run marks or releases it)."""
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()
            await asyncio.gather(self._flush, return_exceptions=True)

    async def flush(self) -> None:
        if self._flush is not None:
            await asyncio.gather(self._flush, return_exceptions=True)
        await self.sync()
