"""Ranges as of a past revision, rebuilt from the live state and the recent events (pure).

A backend that keeps its live keys in order and its latest events in memory (storage/sqlite.py)
answers a read at a recent revision R without touching disk: every key written after R takes
the value it had before the first of those writes (an event's `prev`, None if it did not exist),
every other key is as it is now. Cost: the events after R plus the page, never the whole state.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Reversible

from pocketkube.storage.interface import Event, KeyValue, RangeResult, prefix_end


def values_then(history: Reversible[Event], revision: int, prefix: str, start: str) -> dict[str, KeyValue | None]:
    """Each key under prefix (from start on) written after `revision`: its value at `revision`."""
    then: dict[str, KeyValue | None] = {}
    lo, hi = max(prefix, start), prefix_end(prefix)
    for ev in reversed(history):  # newest first: the earliest write after `revision` wins
        if ev.revision <= revision:
            break
        key = ev.kv.key
        if lo <= key and (not hi or key < hi):
            then[key] = ev.prev
    return then


def range_then(state: Mapping[str, KeyValue], live_keys: Iterable[str], live_count: int,
               history: Reversible[Event], revision: int, prefix: str, start: str, limit: int) -> RangeResult:
    """The range at `revision`: `live_keys` are the keys under prefix from start on, in order,
    `live_count` how many there are; `history` holds every event after `revision`."""
    then = values_then(history, revision, prefix, start)
    count = live_count + sum((kv is not None) - (key in state) for key, kv in then.items())
    kvs: list[KeyValue] = []
    last = None
    for key in heapq.merge(live_keys, sorted(then)):
        if key == last:
            continue
        last = key
        kv = then[key] if key in then else state[key]
        if kv is None:
            continue
        if limit and len(kvs) == limit:
            break
        kvs.append(kv)
    return RangeResult(kvs, count, revision)
