"""An IP range allocator over one CIDR, worded like Kubernetes' ipallocator: ClusterIPs, and
every other range of addresses the cluster hands out.

The network address is never handed out, nor the IPv4 broadcast address; IPv6 ranges are
capped at 65536 entries, as upstream does.
"""

from __future__ import annotations

import ipaddress
import random

from pocketkube.net.bitmap import Bitmap
from pocketkube.net.errors import AlreadyAllocated, NotInRange, RangeFull

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_range_offset(cidr_size: int) -> int:
    """KEP-3070 static band: min(max(16, size/16), 256), none for ranges of 16 or fewer."""
    if cidr_size <= 16:
        return 0
    return min(max(16, cidr_size // 16), 256)


class IPAllocator:
    def __init__(self, cidr: str, rng: random.Random | None = None) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        cidr_size = self.network.num_addresses
        size = cidr_size - 1  # the network address
        if self.network.version == 4:
            size -= 1  # the broadcast address
        else:
            size = min(size, 65536)
        if size < 1:
            raise ValueError(f"CIDR {cidr} is too small")
        self.family = "IPv4" if self.network.version == 4 else "IPv6"
        self.base = int(self.network.network_address) + 1
        self.size = size
        self._bits = Bitmap(size, ip_range_offset(cidr_size), rng)

    def first_ip(self) -> str:
        """Index 0 of the usable range, which Kubernetes gives to the `kubernetes` service."""
        return str(ipaddress.ip_address(self.base))

    def _index(self, ip: IPAddress) -> int | None:
        index = int(ip) - self.base
        if ip.version != self.network.version or not 0 <= index < self.size:
            return None
        return index

    def allocate(self, ip: IPAddress) -> None:
        index = self._index(ip)
        if index is None:
            raise NotInRange(f"the provided IP ({ip}) is not in the valid range. "
                             f"The range of valid IPs is {self.network}")
        if not self._bits.allocate(index):
            raise AlreadyAllocated("provided IP is already allocated")

    def allocate_next(self) -> IPAddress:
        index = self._bits.allocate_next()
        if index is None:
            raise RangeFull()
        return ipaddress.ip_address(self.base + index)

    def release(self, ip: IPAddress) -> None:
        index = self._index(ip)
        if index is not None:
            self._bits.release(index)

    def has(self, ip: IPAddress) -> bool:
        index = self._index(ip)
        return index is not None and self._bits.has(index)

    def used(self) -> int:
        return self._bits.used()

    def free(self) -> int:
        return self._bits.free()
