"""The in-memory mirror of the prefix: live state, recent events, and the watchers fed from them.

The backend feeds it from one etcd watch on the whole prefix, in revision order, so the state
here is exactly etcd's at `revision`. Values of Kubernetes objects are stored in etcd with a
placeholder resourceVersion and stamped with their mod_revision here, as kube-apiserver's
versioner does on decode: the revision of a write is only known once etcd has committed it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import orjson

from pocketkube.storage.interface import Compacted, Event, KeyValue

_RV = b'"resourceVersion"'


def stamp(value: bytes, revision: int) -> bytes:
    """A JSON object whose metadata carries a resourceVersion gets `revision` there; other
    values are returned as they are."""
    if not value.startswith(b"{") or _RV not in value:
        return value
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or "resourceVersion" not in meta:
        return value
    meta["resourceVersion"] = str(revision)
    return bytes(memoryview(orjson.dumps(obj)))


class _Watcher:
    __slots__ = ("prefix", "queue", "overflow", "wake", "ended")

    def __init__(self, prefix: str, limit: int) -> None:
        self.prefix = prefix
        self.queue: collections.deque[Event] = collections.deque()
        self.overflow = limit
        self.wake = asyncio.Event()
        self.ended = False


class Mirror:
    def __init__(self, *, history: int = 50_000, watcher_buffer: int = 100_000) -> None:
        self.state: dict[str, KeyValue] = {}
        self.revision = 0  # every change up to here is applied
        self.compacted = 0  # etcd's compaction point, as far as we know
        self.floor = 0  # the history holds every event after this revision
        self.history: collections.deque[Event] = collections.deque(maxlen=history)
        self._watcher_buffer = watcher_buffer
        self._watchers: set[_Watcher] = set()
        self._waiters: list[tuple[int, asyncio.Future]] = []

    # ---- feeding ----
    def reset(self, kvs: list[KeyValue], revision: int) -> None:
        """A fresh listing: history before it is gone, so every watcher ends (clients relist)."""
        self.state = {kv.key: kv for kv in kvs}
        self.revision = revision
        self.floor = revision
        self.history.clear()
        self.end_watchers()
        self._notify()

    def apply_put(self, key: str, value: bytes, create_revision: int, mod_revision: int) -> Event:
        prev = self.state.get(key)
        kv = KeyValue(key, stamp(value, mod_revision), create_revision, mod_revision)
        self.state[key] = kv
        return Event("PUT", kv, prev)

    def apply_delete(self, key: str, revision: int, prev_value: bytes = b"") -> Event | None:
        prev = self.state.pop(key, None)
        if prev is None:
            if not prev_value:
                return None
            prev = KeyValue(key, prev_value, revision, revision)
        return Event("DELETE", KeyValue(key, prev.value, prev.create_revision, revision), prev)

    def commit(self, events: list[Event], revision: int) -> None:
        """Events applied up to `revision` (a progress notification has none)."""
        if revision <= self.revision and not events:
            return
        self.revision = max(self.revision, revision)
        if events:
            truncated = len(self.history) + len(events) > (self.history.maxlen or 0)
            self.history.extend(events)
            if truncated:  # conservative: events sharing the oldest kept revision may be gone
                self.floor = max(self.floor, self.history[0].revision)
            self._broadcast(events)
        self._notify()

    def compacted_to(self, revision: int) -> None:
        self.compacted = max(self.compacted, revision)

    def _notify(self) -> None:
        if not self._waiters:
            return
        waiting = []
        for rev, fut in self._waiters:
            if fut.done():
                continue
            if rev <= self.revision:
                fut.set_result(True)
            else:
                waiting.append((rev, fut))
        self._waiters = waiting

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Until every change up to `revision` is applied; False after `timeout` seconds."""
        if self.revision >= revision:
            return True
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return self.revision >= revision

    # ---- reads ----
    def range(self, prefix: str) -> list[KeyValue]:
        return [kv for k, kv in self.state.items() if k.startswith(prefix)]

    def range_at(self, prefix: str, revision: int, start: str, limit: int
                 ) -> tuple[list[KeyValue], int, int] | None:
        """(kvs, count, revision) of prefix at `revision` (0: latest) if this state is the one at
        that revision for prefix (no event under prefix since), else None."""
        if revision > self.revision:
            return None
        if revision and revision < self.revision:
            if revision < self.floor:
                return None
            for ev in reversed(self.history):
                if ev.revision <= revision:
                    break
                if ev.kv.key.startswith(prefix):
                    return None
        first = max(start, prefix)
        kvs = sorted((kv for k, kv in self.state.items() if k.startswith(prefix) and k >= first),
                     key=lambda kv: kv.key)
        count = len(kvs)
        return (kvs[:limit] if limit else kvs), count, revision or self.revision

    # ---- watchers ----
    def _broadcast(self, events: list[Event]) -> None:
        for w in list(self._watchers):
            for ev in events:
                if ev.kv.key.startswith(w.prefix):
                    w.queue.append(ev)
            if len(w.queue) > w.overflow:
                self._end(w)  # too slow: end its stream, the client relists
            w.wake.set()

    def _end(self, w: _Watcher) -> None:
        w.ended = True
        self._watchers.discard(w)
        w.wake.set()

    def end_watchers(self) -> None:
        for w in list(self._watchers):
            self._end(w)

    def history_after(self, prefix: str, revision: int) -> list[Event]:
        if revision < self.compacted:
            raise Compacted(revision, self.compacted)
        if revision >= self.revision:
            return []
        if revision < self.floor:
            # Older than what this server remembers (its watch cache window): 410, the client relists.
            raise Compacted(revision, self.floor)
        return [e for e in self.history if e.revision > revision and e.kv.key.startswith(prefix)]

    async def watch(self, prefix: str, from_revision: int, closed: asyncio.Event) -> AsyncIterator[Event]:
        w = _Watcher(prefix, self._watcher_buffer)
        backlog = self.history_after(prefix, from_revision)
        self._watchers.add(w)
        try:
            for ev in backlog:
                yield ev
            while not closed.is_set() and not w.ended:
                while w.queue:
                    ev = w.queue.popleft()
                    # Only what the backlog could not hold (it was taken as the watcher joined);
                    # `>` from_revision, not the last yielded: one etcd transaction (a lease
                    # revoke) deletes several keys at one revision.
                    if ev.revision > from_revision:
                        yield ev
                if w.ended:
                    return
                w.wake.clear()
                await w.wake.wait()
        finally:
            self._watchers.discard(w)
