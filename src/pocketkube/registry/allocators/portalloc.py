"""NodePort allocator: one pool for all protocols, worded like Kubernetes' portallocator."""

from __future__ import annotations

import random

from pocketkube.net.bitmap import Bitmap
from pocketkube.net.errors import AlreadyAllocated, NotInRange, RangeFull


def port_range_offset(size: int) -> int:
    """KEP-3668 static band: min(max(16, size/32), 128), none for tiny ranges."""
    if size <= 16:
        return 0
    return min(max(16, size // 32), 128)


class PortAllocator:
    def __init__(self, first: int, last: int, rng: random.Random | None = None) -> None:
        if last < first:
            raise ValueError(f"invalid port range {first}-{last}")
        self.base = first
        self.size = last - first + 1
        self._bits = Bitmap(self.size, port_range_offset(self.size), rng)

    def range_str(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def contains(self, port: int) -> bool:
        return self.base <= port < self.base + self.size

    def allocate(self, port: int) -> None:
        if not self.contains(port):
            raise NotInRange("provided port is not in the valid range. The range of valid ports is "
                             + self.range_str())
        if not self._bits.allocate(port - self.base):
            raise AlreadyAllocated("provided port is already allocated")

    def allocate_next(self) -> int:
        index = self._bits.allocate_next()
        if index is None:
            raise RangeFull()
        return self.base + index

    def release(self, port: int) -> None:
        if self.contains(port):
            self._bits.release(port - self.base)

    def has(self, port: int) -> bool:
        return self.contains(port) and self._bits.has(port - self.base)

    def used(self) -> int:
        return self._bits.used()

    @property
    def bits(self) -> Bitmap:
        """The used offsets from `base`, for a view shared through the store."""
        return self._bits

    def free(self) -> int:
        return self._bits.free()
