"""Shared watches dispatched by a trigger field, as kube-apiserver's cacher does for pods by node.

Without it every node's watch of its pods (`?fieldSelector=spec.nodeName=<node>`) is a storage
watch of its own: each pod event (and each write anywhere, which wakes every storage watcher)
wakes every node's watcher, and is decoded once per node, so one event costs O(nodes). A hub
keeps one storage watch per key prefix, decodes each event's trigger value (the pod's node before
and after the change) once, and hands the event only to the watchers of those values (upstream's
TriggerPublisherFunc). A window of recent events lets a watcher start from a recent revision (its
informer's list) without a storage watch of its own; one starting before the window falls back to
the store's own watch, which replays history.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable

import orjson

from pocketkube.storage.interface import Event

log = logging.getLogger(__name__)

# kind → (field label, accessor): the fields upstream indexes watches by (pods: spec.nodeName).
TRIGGER_FIELDS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "Pod": ("spec.nodeName", lambda obj: (obj.get("spec") or {}).get("nodeName") or ""),
}
WINDOW = 10_000            # recent events kept for watchers that start from a recent revision
SUBSCRIBER_BACKLOG = 10_000  # events a slow watcher may have queued before its stream is ended


def selector_trigger(kind: str, requirements: list[tuple[str, str, str]]) -> str | None:
    """The value a field selector requires of the kind's trigger field (`spec.nodeName=n1` → n1),
    or None when it does not pin it: only then may the hub pre-filter the watcher's events."""
    field = TRIGGER_FIELDS.get(kind, ("", None))[0]
    for f, op, value in requirements:
        if f == field and op == "=":
            return value
    return None


class _Sub:
    __slots__ = ("value", "queue", "wake", "closed")

    def __init__(self, value: str) -> None:
        self.value = value
        self.queue: collections.deque[Event] = collections.deque()
        self.wake = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class TriggerHub:
    """One storage watch of `prefix`, its events handed to the watchers of their trigger values."""

    def __init__(self, backend, prefix: str, accessor: Callable[[dict], str]) -> None:
        self._backend = backend
        self._prefix = prefix
        self._accessor = accessor
        self._subs: dict[str, set[_Sub]] = {}
        self._window: collections.deque[tuple[Event, str, str | None]] = collections.deque()
        self._floor = 0  # every event after this revision is in the window
        self._task: asyncio.Task | None = None

    def _value(self, raw: bytes) -> str:
        try:
            return self._accessor(orjson.loads(raw))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return ""

    def subscribe(self, value: str, from_revision: int) -> _Sub | None:
        """A subscription to events after from_revision whose trigger was or is `value`; None when
        the window does not reach back that far (the caller watches storage itself)."""
        if self._task is None or self._task.done():
            self._floor = self._backend.current_revision()
            self._window.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(self._floor), name=f"watch hub {self._prefix}")
        if from_revision < self._floor:
            return None
        sub = _Sub(value)
        # The window is in revision order and a watcher usually starts near its end (its
        # informer's list): walk back from the newest event rather than scan the whole window.
        replay = []
        for ev, cur, prev in reversed(self._window):
            if ev.kv.mod_revision <= from_revision:
                break
            if value == cur or value == prev:
                replay.append(ev)
        sub.queue.extend(reversed(replay))
        self._subs.setdefault(value, set()).add(sub)
        return sub

    async def events(self, sub: _Sub) -> AsyncIterator[Event]:
        try:
            while True:
                while sub.queue:
                    yield sub.queue.popleft()
                if sub.closed:
                    return
                sub.wake.clear()
                await sub.wake.wait()
        finally:
            subs = self._subs.get(sub.value)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.value]

    async def _run(self, from_revision: int) -> None:
        try:
            async for ev in self._backend.watch(self._prefix, from_revision):
                cur = self._value(ev.kv.value)
                prev = self._value(ev.prev.value) if ev.prev is not None else None
                self._window.append((ev, cur, prev))
                if len(self._window) > WINDOW:
                    self._floor = self._window.popleft()[0].revision
                for value in {cur, prev}:
                    if value is None:
                        continue
                    for sub in list(self._subs.get(value, ())):
                        sub.queue.append(ev)
                        if len(sub.queue) > SUBSCRIBER_BACKLOG:
                            sub.queue.clear()  # too slow: end its stream, the client re-watches
                            sub.close()
                        else:
                            sub.wake.set()
        except Exception:  # noqa: BLE001 - the subscribers' streams end; their clients re-watch
            log.exception("watch hub of %s failed", self._prefix)
        finally:
            for subs in list(self._subs.values()):
                for sub in list(subs):
                    sub.close()
