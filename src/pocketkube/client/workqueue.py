"""A deduplicating work queue with per-key exponential back-off, as client-go's workqueue.

A key is never processed by two workers at once; a key added while it is being processed is
processed again afterwards. `add_rate_limited` delays a key by its own exponential back-off
(util.backoff.Backoff, one entry per key, as ItemExponentialFailureRateLimiter) until
`forget` says its last processing succeeded.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pocketkube.util.backoff import Backoff


class WorkQueue:
    def __init__(self, base_delay: float = 0.005, max_delay: float = 30.0, *,
                 backoff: Backoff | None = None) -> None:
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._cond = asyncio.Condition()
        self.backoff = backoff or Backoff(initial=base_delay, maximum=max_delay)
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return  # already due sooner
            pending.cancel()  # keep the sooner one, as upstream's delaying queue does

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = loop.call_later(delay, fire)

    def add_rate_limited(self, key: str) -> None:
        """Add `key` after its back-off, which doubles with every call until `forget(key)`."""
        self.add_after(key, self.backoff.next(key))

    def forget(self, key: str) -> None:
        """The key was processed successfully: its next failure starts from the initial delay."""
        self.backoff.reset(key)

    async def get(self) -> str | None:
        async with self._cond:
            while not self._queue and not self._shutdown:
                await self._cond.wait()
            if self._shutdown and not self._queue:
                return None
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            asyncio.get_running_loop().create_task(self._notify())

    async def shutdown(self) -> None:
        self._shutdown = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        async with self._cond:
            self._cond.notify_all()
