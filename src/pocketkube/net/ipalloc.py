"""An IP range allocator over one CIDR, worded like Kubernetes' ipallocator: ClusterIPs, and
every other range of addresses the cluster hands out.

By default the network address is never handed out, nor the IPv4 broadcast address; IPv6
ranges are capped at 65536 entries, as upstream does, and automatic allocation is random with
the static band kept for last. A pool with other conventions passes `span` (which addresses
of the CIDR it hands out) and `lowest_first` (sequential allocation) instead of re-implementing
the allocator.
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


def default_span(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    """Kubernetes' usable range, as (first, last) offsets from the network address: no network
    address, no IPv4 broadcast address, at most 65536 IPv6 addresses."""
    last = network.num_addresses - 1
    if network.version == 4:
        last -= 1  # the broadcast address
    else:
        last = min(last, 65536)
    return 1, last


class IPAllocator:
    def __init__(self, cidr: str, rng: random.Random | None = None, *, span: tuple[int, int] | None = None,
                 lowest_first: bool = False) -> None:
        """`span`: the (first, last) offsets from the network address that may be allocated
        (default_span when None). `lowest_first`: allocate_next hands out the lowest free address
        instead of a random one."""
        self.network = ipaddress.ip_network(cidr, strict=False)
        cidr_size = self.network.num_addresses
        first, last = span if span is not None else default_span(self.network)
        size = last - first + 1
        if span is not None and (first < 0 or last >= cidr_size):
            raise ValueError(f"span {span} is outside CIDR {cidr}")
        if size < 1:
            raise ValueError(f"CIDR {cidr} is too small")
        self.family = "IPv4" if self.network.version == 4 else "IPv6"
        self.base = int(self.network.network_address) + first
        self.size = size
        self._lowest_first = lowest_first
        offset = 0 if lowest_first else ip_range_offset(cidr_size)
        self._bits = Bitmap(size, offset if offset < size else 0, rng)

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
        index = self._bits.allocate_lowest() if self._lowest_first else self._bits.allocate_next()
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

    @property
    def bits(self) -> Bitmap:
        """The used offsets from `base`, for a view shared through the store."""
        return self._bits

    def free(self) -> int:
        return self._bits.free()
