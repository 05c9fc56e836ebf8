"""Expected creates and deletes per owner: the guard against acting on a stale cache.

After a controller creates N pods it must not count pods again until its informer has seen
those N creations, or it would create them twice. It records what it expects; the pod
handlers lower the counts as the events arrive; `sync` only manages replicas when the owner's
expectations are satisfied (or have expired, in case an event was lost). Deletions are
tracked by pod key, so a deletion seen twice (deletionTimestamp set, then the object gone) is
counted once (mirrors pkg/controller/controller_utils.go: UIDTrackingControllerExpectations).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["EXPECTATIONS_TIMEOUT", "Expectations"]

EXPECTATIONS_TIMEOUT = 300.0


@dataclass
class _Expectation:
    adds: int
    deletes: int
    set_at: float
    deleting: set[str] = field(default_factory=set)


class Expectations:
    def __init__(self, clock: Callable[[], float] = time.monotonic, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._clock = clock
        self._timeout = timeout
        self._by_owner: dict[str, _Expectation] = {}

    def satisfied(self, owner_key: str) -> bool:
        e = self._by_owner.get(owner_key)
        if e is None:
            return True  # nothing recorded: a new owner, or the controller restarted
        if e.adds <= 0 and e.deletes <= 0:
            return True
        return self._clock() - e.set_at > self._timeout

    def expect(self, owner_key: str, creations: int, deleting: list[str]) -> None:
        """Creations and deletions of one sync at once (SetExpectations), as the DaemonSet controller makes."""
        self._by_owner[owner_key] = _Expectation(creations, len(deleting), self._clock(), set(deleting))

    def expect_creations(self, owner_key: str, count: int) -> None:
        self.expect(owner_key, count, [])

    def expect_deletions(self, owner_key: str, pod_keys: list[str]) -> None:
        self.expect(owner_key, 0, pod_keys)

    def creation_observed(self, owner_key: str) -> None:
        e = self._by_owner.get(owner_key)
        if e is not None:
            e.adds -= 1

    def deletion_observed(self, owner_key: str, pod_key: str) -> None:
        e = self._by_owner.get(owner_key)
        if e is not None and pod_key in e.deleting:
            e.deleting.discard(pod_key)
            e.deletes -= 1

    def delete(self, owner_key: str) -> None:
        self._by_owner.pop(owner_key, None)

    def pending(self, owner_key: str) -> tuple[int, int]:
        e = self._by_owner.get(owner_key)
        return (e.adds, e.deletes) if e is not None else (0, 0)
