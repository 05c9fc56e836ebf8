"""Compaction that several API servers on one store can all run, as kube-apiserver's
(storage/etcd3/compact.go): no leader election, no clocks, one compaction per interval.

Every server ticks at the same interval. A tick is a compare-and-swap on one key
(COMPACT_REV_KEY): "if the key is as I last saw it, write the revision I saw at my previous
tick". The one whose swap succeeds compacts to that revision; the others fail the swap and adopt
the key as it now is, so their next swap can succeed only if the winner stops ticking (then one
of them takes over within an interval). Upstream compares the key's etcd `version`; our store
contract offers the key's mod_revision for a swap, which changes exactly when the version does.

The key lies inside the prefix the API server watches, so each tick's write is also an event on
that watch (the last revision seen keeps moving even on an idle cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.storage.interface import Backend, KeyExists, KeyNotFound, RevisionMismatch

__all__ = ["COMPACT_REV_KEY", "CompactorState", "compact_tick"]

COMPACT_REV_KEY = "/registry/pocketkube/compact_rev_key"


@dataclass(frozen=True, slots=True)
class CompactorState:
    seen: int = 0  # the key's mod_revision at our last tick (0: absent), the swap's condition
    rev: int = 0  # the store's revision at our last tick: what the next winning tick compacts to


async def compact_tick(backend: Backend, state: CompactorState, keep: int = 0) -> tuple[CompactorState, int]:
    """One tick: (the state for the next tick, the revision compacted to or 0). `keep` revisions
    of history are always kept (the oldest compacted revision is at most current - keep)."""
    value = str(state.rev).encode()
    try:
        if state.seen == 0:
            kv = await backend.create(COMPACT_REV_KEY, value)
        else:
            kv = await backend.update(COMPACT_REV_KEY, value, state.seen)
    except (KeyExists, KeyNotFound, RevisionMismatch):
        # Another server ticked since we looked: adopt its write, remember where the store is.
        theirs = await backend.get(COMPACT_REV_KEY)
        return CompactorState(theirs.mod_revision if theirs else 0, backend.current_revision()), 0
    nxt = CompactorState(kv.mod_revision, kv.mod_revision)
    if state.rev == 0:  # our first win: nothing seen an interval ago, nothing to compact (upstream: bootstrap)
        return nxt, 0
    target = min(state.rev, kv.mod_revision - keep)
    if target <= backend.compacted_revision():
        return nxt, 0
    await backend.compact(target)
    return nxt, target
