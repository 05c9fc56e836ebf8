"""Exponential back-off, per key, with an injectable clock and jitter.

One helper for every retry loop: the work queue's per-item rate limiter (client-go's
ItemExponentialFailureRateLimiter), the kubelet's crash-loop and image-pull back-off
(flowcontrol.Backoff: an entry is forgotten once nothing failed for `reset_after`), and the
reconnect loops of the informer, the proxy, the scheduler and the agent (a single key, "").

Jitter follows wait.Jitter: a delay d becomes d + random() * jitter * d, so several clients that
failed together do not retry together. Tests pass `clock` and `rand` to make it deterministic.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0
    reset_after: float | None = None  # forget a key whose last failure is older than this
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    # key → (current delay before jitter, time of the last failure)
    _entries: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def _live(self, key: str, at: float) -> tuple[float, float] | None:
        entry = self._entries.get(key)
        if entry is not None and self.reset_after is not None and at - entry[1] > self.reset_after:
            del self._entries[key]
            return None
        return entry

    def next(self, key: str = "", at: float | None = None) -> float:
        """Record a failure of `key` and return the delay to wait. `at` is when the failure
        happened (default now), which decides whether an old entry has expired."""
        now = self.clock()
        entry = self._live(key, now if at is None else at)
        delay = self.initial if entry is None else min(entry[0] * self.factor, self.maximum)
        self._entries[key] = (delay, now)
        return self._jittered(delay)

    def _jittered(self, delay: float) -> float:
        return delay + self.rand() * self.jitter * delay if self.jitter > 0 else delay

    def delay(self, key: str = "") -> float:
        """The current delay of `key` (0 when it has not failed), without recording anything."""
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def failures_pending(self, key: str = "", since: float | None = None) -> bool:
        """Whether `key` is still backing off from a failure that happened at `since`."""
        now = self.clock()
        entry = self._live(key, now if since is None else since)
        if entry is None:
            return False
        return now - (entry[1] if since is None else since) < entry[0]

    def remaining(self, key: str = "", since: float | None = None) -> float:
        """Seconds left before `key` may be retried (0 when it may be retried now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry[0] - (self.clock() - (entry[1] if since is None else since)))

    def reset(self, key: str = "") -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
