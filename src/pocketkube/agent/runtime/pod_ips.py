"""Pod IPs from the node's pod CIDR, by pod uid, over the cluster's one range allocator (the process
runtime's IPAM; a CRI runtime has its CNI plugin's).

The network address and the broadcast address are never handed out (IPAllocator), nor the
first host address, kept for the node's gateway as CNI bridge plugins do. A restarted agent
restores the IPs its pods already have (saved by the runtime) before allocating new ones.
"""

from __future__ import annotations

import ipaddress
import random

from pocketkube.net.errors import AllocationError
from pocketkube.net.ipalloc import IPAllocator


class PodIPs:
    def __init__(self, cidr: str, rng: random.Random | None = None) -> None:
        self._range = IPAllocator(cidr, rng)
        self.network = self._range.network
        self._range.allocate(ipaddress.ip_address(self._range.first_ip()))  # the gateway
        self.by_uid: dict[str, str] = {}

    def restore(self, uid: str, ip: str) -> None:
        """Re-adopt a pod's IP after an agent restart; an IP outside today's CIDR is kept as is."""
        if not ip:
            return
        self.by_uid[uid] = ip
        try:
            self._range.allocate(ipaddress.ip_address(ip))
        except (AllocationError, ValueError):
            pass

    def allocate(self, uid: str) -> str:
        """The pod's IP, allocated on first use; RangeFull when the CIDR has none left."""
        if uid in self.by_uid:
            return self.by_uid[uid]
        ip = str(self._range.allocate_next())
        self.by_uid[uid] = ip
        return ip

    def release(self, uid: str) -> None:
        ip = self.by_uid.pop(uid, None)
        if ip and ip not in self.by_uid.values():
            try:
                self._range.release(ipaddress.ip_address(ip))
            except ValueError:
                pass
