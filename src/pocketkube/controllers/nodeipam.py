"""Node IPAM: give each Node a pod range (`spec.podCIDR`/`podCIDRs`), a /24 of `--cluster-cidr`.

Mirrors kube-controller-manager's range allocator (pkg/controller/nodeipam/ipam/range_allocator.go,
cidrset): Nodes created with a podCIDR (the agents of `up` bring their own) keep it and mark it
used; the others get the next free block, searched round-robin after the last one handed out;
a deleted Node's block is free again. Nothing is persisted: the used set is rebuilt from the
Nodes at start (a restart forgets nothing that matters). An exhausted range records the Event
`CIDRNotAvailable` on the Node (once while it waits) and the Node waits until a block is
released: no periodic retries, which a thousand waiting Nodes would turn into a write storm.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.events import NORMAL, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["CIDRSet", "CIDRSetFull", "NodeIPAMController", "node_cidrs"]

log = logging.getLogger(__name__)

NODES = BY_PLURAL[("", "nodes")]
MAX_BLOCKS = 1 << 16  # upstream's cidrset refuses more than 16 bits between cluster and node mask


class CIDRSetFull(Exception):
    """Every block of the cluster CIDR is taken."""


@dataclass
class CIDRSet:
    """The blocks of `cluster_cidr` with prefix `mask_size`: which are used (pure, no I/O)."""

    cluster_cidr: str
    mask_size: int = 24
    used: set[int] = field(default_factory=set)
    _next: int = 0

    def __post_init__(self) -> None:
        self.network = ipaddress.ip_network(self.cluster_cidr, strict=True)
        if not self.network.prefixlen <= self.mask_size <= self.network.max_prefixlen:
            raise ValueError(f"node CIDR mask size {self.mask_size} must be between the cluster CIDR's "
                             f"/{self.network.prefixlen} and /{self.network.max_prefixlen}")
        if self.mask_size - self.network.prefixlen > 16:
            raise ValueError(f"cluster CIDR {self.cluster_cidr} with node mask /{self.mask_size} has more than "
                             f"{MAX_BLOCKS} blocks")
        self.size = 1 << (self.mask_size - self.network.prefixlen)

    def _block(self, i: int) -> str:
        base = int(self.network.network_address) + (i << (self.network.max_prefixlen - self.mask_size))
        return f"{ipaddress.ip_address(base)}/{self.mask_size}"

    def index(self, cidr: str) -> int | None:
        """The block index of `cidr`, or None when it is not exactly one block of this set."""
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except (TypeError, ValueError):
            return None
        if net.version != self.network.version or net.prefixlen != self.mask_size or not net.subnet_of(self.network):
            return None
        return (int(net.network_address) - int(self.network.network_address)) >> (
            self.network.max_prefixlen - self.mask_size)

    def occupy(self, cidr: str) -> bool:
        """Mark a Node's existing range used; False when it is not a block of this set."""
        i = self.index(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def release(self, cidr: str) -> None:
        i = self.index(cidr)
        if i is not None:
            self.used.discard(i)

    def allocate(self) -> str:
        """The next free block after the last one handed out (round-robin, as upstream)."""
        if len(self.used) >= self.size:
            raise CIDRSetFull(f"no remaining CIDRs in {self.cluster_cidr} (/{self.mask_size} each)")
        for k in range(self.size):
            i = (self._next + k) % self.size
            if i not in self.used:
                self.used.add(i)
                self._next = (i + 1) % self.size
                return self._block(i)
        raise CIDRSetFull(f"no remaining CIDRs in {self.cluster_cidr} (/{self.mask_size} each)")


def node_cidrs(node: dict) -> list[str]:
    """The Node's pod ranges: spec.podCIDRs, else spec.podCIDR."""
    cidrs = deep_get(node, "spec", "podCIDRs", default=None) or []
    single = deep_get(node, "spec", "podCIDR", default="") or ""
    return [c for c in cidrs if isinstance(c, str)] or ([single] if single else [])


class NodeIPAMController(Controller):
    name = "node-ipam-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, cluster_cidr: str,
                 mask_size: int = 24) -> None:
        self.client = client
        self.recorder = recorder
        self.cidrs = CIDRSet(cluster_cidr, mask_size)
        self.nodes = informers.get(NODES)
        super().__init__([self.nodes], workers=1)  # one worker: allocation is serial by design
        self._owned: dict[str, str] = {}  # node name → the block it holds in this set
        self._waiting: set[str] = set()  # nodes told CIDRNotAvailable, synced again when a block is free
        self._rebuilt = False
        self.nodes.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self._on_delete)

    def _hold(self, name: str, cidrs: list[str]) -> None:
        for cidr in cidrs:
            if self.cidrs.occupy(cidr):
                self._owned[name] = cidr
                return

    def _rebuild(self) -> None:
        """Before the first allocation: every range the Nodes hold is used (survives restarts)."""
        for node in self.nodes.list():
            self._hold(node["metadata"]["name"], node_cidrs(node))
        self._rebuilt = True

    def _on_delete(self, node: dict) -> None:
        name = node["metadata"]["name"]
        cidr = self._owned.pop(name, None)
        self._waiting.discard(name)
        if cidr and cidr not in self._owned.values():
            self.cidrs.release(cidr)
            log.info("%s: released %s of deleted node %s", self.name, cidr, name)
            self._wake_waiting()

    def _wake_waiting(self) -> None:
        for name in self._waiting:
            self.queue.add(name)

    async def sync(self, key: str) -> None:
        if not self._rebuilt:
            self._rebuild()
        node = self.nodes.get(key)
        if node is None:
            return
        existing = node_cidrs(node)
        if existing:
            self._hold(key, existing)
            return
        try:
            cidr = self.cidrs.allocate()
        except CIDRSetFull:
            if key not in self._waiting:
                self._waiting.add(key)
                self.recorder.event(node, NORMAL, "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable",
                                    res=NODES)
            return
        self._waiting.discard(key)
        try:
            await self.client.patch(NODES, "", key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except errors.NotFound:
            self.cidrs.release(cidr)
            self._wake_waiting()
            return
        except errors.ApiError:
            self.cidrs.release(cidr)  # e.g. it got one meanwhile (422): the next sync holds that one
            self._wake_waiting()
            raise
        self._owned[key] = cidr
        log.info("%s: node %s gets pod CIDR %s", self.name, key, cidr)
