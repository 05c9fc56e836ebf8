"""A set of small integers [0, size) with Kubernetes' offset-aware random allocation.

Kubernetes (KEP-3070/3668) splits a range at `offset`: automatic allocation picks a random start
in the upper band and scans forward with wrap-around, and only falls back to the lower band
when the upper one is full, so users can request values in the lower (static) band safely.
`allocate_lowest` is the other order, for pools whose users expect addresses in sequence
(the LoadBalancer pool hands out .2, .3, ... and reuses the lowest released one first).
"""

from __future__ import annotations

import random


class Bitmap:
    def __init__(self, size: int, offset: int = 0, rng: random.Random | None = None) -> None:
        if not 0 <= offset < max(size, 1):
            raise ValueError(f"offset {offset} out of range for size {size}")
        self.size = size
        self.offset = offset
        self._used: set[int] = set()
        self._rng = rng or random.Random()

    def allocate(self, index: int) -> bool:
        """Mark index used; False when it already was."""
        if index in self._used:
            return False
        self._used.add(index)
        return True

    def allocate_next(self) -> int | None:
        """A free index (upper band first, random start), or None when full."""
        if len(self._used) >= self.size:
            return None
        found = self._scan(self.offset, self.size)
        if found is None:
            found = self._scan(0, self.offset)
        if found is not None:
            self._used.add(found)
        return found

    def allocate_lowest(self) -> int | None:
        """The lowest free index, or None when full."""
        if len(self._used) >= self.size:
            return None
        found = next(i for i in range(self.size) if i not in self._used)
        self._used.add(found)
        return found

    def _scan(self, low: int, high: int) -> int | None:
        span = high - low
        if span <= 0:
            return None
        start = self._rng.randrange(span)
        for step in range(span):
            candidate = low + (start + step) % span
            if candidate not in self._used:
                return candidate
        return None

    def release(self, index: int) -> None:
        self._used.discard(index)

    def has(self, index: int) -> bool:
        return index in self._used

    def used(self) -> int:
        return len(self._used)

    def indices(self) -> set[int]:
        """A copy of the used indices (what a stored range record holds)."""
        return set(self._used)

    def replace(self, indices: set[int]) -> None:
        """Adopt another view of the used indices (a range record other servers also write)."""
        self._used = {i for i in indices if 0 <= i < self.size}

    def free(self) -> int:
        return self.size - len(self._used)
