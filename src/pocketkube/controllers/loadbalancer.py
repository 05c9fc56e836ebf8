"""The built-in LoadBalancer controller: an ingress IP from a local pool for every LoadBalancer Service.

A Service of type LoadBalancer without a `spec.loadBalancerClass` (or with ours,
`pocketkube.io/loadbalancer`) gets one IP of the pool (127.200.0.0/24 by default; its network,
first and broadcast addresses are never handed out) as soon as it is seen, written as
`status.loadBalancer.ingress: [{ip, ipMode: VIP}]` through the services/status subresource.
`spec.loadBalancerIP` is honoured when it is in the pool and free. One IP per Service keeps
port clashes impossible. The IP returns to the pool when the Service is deleted, changes type
or moves to another class (the API server clears the status on a type change).

The allocation table lives in memory and is rebuilt from the Services' status before the
first sync, so a restart never hands out an IP twice. A Service that cannot get an IP is not
left silently `<pending>`: it gets a Warning Event `AllocationFailed` and the status condition
`pocketkube.io/IPAMRequestSatisfied=False` (the condition Cilium's LB IPAM uses; MetalLB
reports the same failure with an `AllocationFailed` event), and it is retried as soon as an IP
is released.
"""

from __future__ import annotations

import copy
import ipaddress
import logging

from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.informer import object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers
from pocketkube.net.errors import AllocationError, RangeFull
from pocketkube.net.ipalloc import IPAddress, IPAllocator

__all__ = [
    "CONDITION_TYPE",
    "DEFAULT_POOL",
    "LOAD_BALANCER_CLASS",
    "IPPool",
    "LoadBalancerController",
    "desired_status",
    "is_ours",
    "pool_span",
]

log = logging.getLogger(__name__)

SERVICES = BY_PLURAL[("", "services")]
LOAD_BALANCER_CLASS = "pocketkube.io/loadbalancer"
DEFAULT_POOL = "127.200.0.0/24"
CONDITION_TYPE = "pocketkube.io/IPAMRequestSatisfied"


def is_ours(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, "", LOAD_BALANCER_CLASS)


def pool_span(cidr: str) -> tuple[int, int]:
    """Which addresses of the pool are handed out, as offsets from its network address: all but
    the network, the gateway-like first host and the broadcast address when there is room."""
    size = ipaddress.ip_network(cidr, strict=False).num_addresses
    return (2, size - 2) if size > 4 else (0, size - 1)


class IPPool:
    """Which Service key holds which IP of the pool; the range and the lowest-first allocation
    are net.ipalloc.IPAllocator's, this only remembers the holders."""

    def __init__(self, cidr: str = DEFAULT_POOL) -> None:
        self.cidr = str(ipaddress.ip_network(cidr, strict=False))
        self._ips = IPAllocator(cidr, span=pool_span(cidr), lowest_first=True)
        self._holder: dict[str, str] = {}  # ip → key
        self._ip_of: dict[str, str] = {}  # key → ip

    @staticmethod
    def _parse(ip: str) -> IPAddress | None:
        try:
            return ipaddress.ip_address(ip)
        except ValueError:
            return None

    def holder(self, ip: str) -> str | None:
        return self._holder.get(ip)

    def ip_of(self, key: str) -> str | None:
        return self._ip_of.get(key)

    def assign(self, key: str, ip: str) -> bool:
        """Give `key` this IP if it is in the pool and free (or already its own)."""
        if self._ip_of.get(key) == ip:
            return True
        addr = self._parse(ip)
        if addr is None or self._holder.get(str(addr), key) != key:
            return False
        try:
            self._ips.allocate(addr)
        except AllocationError:
            return False
        self.release(key)
        self._holder[str(addr)], self._ip_of[key] = key, str(addr)
        return True

    def allocate(self, key: str) -> str | None:
        if key in self._ip_of:
            return self._ip_of[key]
        try:
            ip = str(self._ips.allocate_next())
        except RangeFull:
            return None
        self._holder[ip], self._ip_of[key] = key, ip
        return ip

    def release(self, key: str) -> str | None:
        ip = self._ip_of.pop(key, None)
        if ip is None:
            return None
        del self._holder[ip]
        self._ips.release(ipaddress.ip_address(ip))
        return ip


def _condition(status: str, reason: str, message: str, old: dict | None, now: str) -> dict:
    unchanged = old is not None and old.get("status") == status
    return {"type": CONDITION_TYPE, "status": status,
            "lastTransitionTime": old.get("lastTransitionTime", now) if unchanged and old else now,
            "reason": reason, "message": message}


def desired_status(svc: dict, ip: str | None, failure: str | None, now: str) -> dict:
    """The service status with our ingress and condition set (other conditions kept)."""
    status = copy.deepcopy(svc.get("status") or {})
    conditions = status.get("conditions") or []
    old = next((c for c in conditions if c.get("type") == CONDITION_TYPE), None)
    if ip is not None:
        status["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        ours = _condition("True", "Allocated", f"Assigned IP {ip}", old, now)
    else:
        status["loadBalancer"] = {}
        ours = _condition("False", "AllocationFailed", failure or "", old, now)
    status["conditions"] = [c for c in conditions if c.get("type") != CONDITION_TYPE] + [ours]
    return status


def _ingress_ips(svc: dict) -> list[str]:
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]


class LoadBalancerController(Controller):
    name = "service-lb-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *,
                 pool: str = DEFAULT_POOL, workers: int = 2) -> None:
        self.client = client
        self.recorder = recorder
        self.pool = IPPool(pool)
        self.services = informers.get(SERVICES)
        super().__init__([self.services], workers=workers)
        self._waiting: set[str] = set()  # keys that found the pool full
        self.services.add_handlers(self.enqueue, lambda _, new: self.enqueue(new), self.enqueue)

    async def run(self) -> None:
        await self.services.synced.wait()
        self.rebuild(self.services.list())
        await super().run()

    def rebuild(self, services: list[dict]) -> None:
        """Re-own the IPs that the Services' status already shows, before any new allocation."""
        for svc in sorted(services, key=lambda s: (s["metadata"].get("creationTimestamp", ""), object_key(s))):
            if is_ours(svc):
                for ip in _ingress_ips(svc):
                    if self.pool.assign(object_key(svc), ip):
                        break

    def _release(self, key: str) -> None:
        if self.pool.release(key) is not None:
            for waiting in self._waiting:
                self.queue.add(waiting)
            self._waiting.clear()

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None or not is_ours(svc):
            self._waiting.discard(key)
            self._release(key)
            if svc is not None:
                await self._drop_condition(svc)
            return
        ip, failure = self._choose(key, svc)
        if ip is None:
            self._waiting.add(key)
        else:
            self._waiting.discard(key)
        status = desired_status(svc, ip, failure, now_rfc3339())
        if _same_status(status, svc.get("status") or {}):
            return
        await self.client.update_status(SERVICES, {**svc, "status": status})
        if ip is not None:
            self.recorder.event(svc, NORMAL, "IPAllocated", f'Assigned IP ["{ip}"]', res=SERVICES)
        else:
            self.recorder.event(svc, WARNING, "AllocationFailed", failure or "", res=SERVICES)

    async def _drop_condition(self, svc: dict) -> None:
        """A service that left our care keeps no condition of ours."""
        status = svc.get("status") or {}
        conditions = status.get("conditions") or []
        kept = [c for c in conditions if c.get("type") != CONDITION_TYPE]
        if len(kept) != len(conditions):
            await self.client.update_status(SERVICES, {**svc, "status": {**status, "conditions": kept}})

    def _choose(self, key: str, svc: dict) -> tuple[str | None, str | None]:
        """(ip, None) or (None, why not)."""
        requested = (svc.get("spec") or {}).get("loadBalancerIP")
        if requested:
            if self.pool.assign(key, requested):
                return requested, None
            self._release(key)
            holder = self.pool.holder(requested)
            if holder is not None:
                return None, f"requested IP {requested} is already allocated to {holder}"
            return None, f"requested IP {requested} is not in pool {self.pool.cidr}"
        current = self.pool.ip_of(key)
        if current is not None:
            return current, None
        for ip in _ingress_ips(svc):  # ours before a restart, if nobody took it since
            if self.pool.assign(key, ip):
                return ip, None
        ip = self.pool.allocate(key)
        return (ip, None) if ip is not None else (None, f"no available IPs in pool {self.pool.cidr}")


def _same_status(new: dict, old: dict) -> bool:
    def strip(status: dict) -> dict:
        return {**status, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                         for c in status.get("conditions") or []]}
    return strip(new) == strip(old)
