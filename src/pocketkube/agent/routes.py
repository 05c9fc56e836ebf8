"""The agent's host-gw routes (`--routes host-gw`): a route to every other Node's pod range via
its InternalIP, kept in step with the Nodes (watched), removed when a Node goes and on exit.

The decisions are net.hostgw's pure functions; this module only watches and applies. Changes
are coalesced (one sync for a burst of Node updates: heartbeats touch Nodes often) and the
kernel's state is re-read at every sync, so a route someone deleted comes back within RESYNC.
"""

from __future__ import annotations

import asyncio
import logging

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.informer import Informer
from pocketkube.client.interface import Client
from pocketkube.net import hostgw

log = logging.getLogger(__name__)

NODES = BY_PLURAL[("", "nodes")]
RESYNC = 30.0


def node_peer(node: dict) -> hostgw.Peer:
    """A Node as host-gw sees it: its name, first pod CIDR and InternalIP ("" when absent)."""
    cidrs = deep_get(node, "spec", "podCIDRs", default=None) or []
    cidr = (cidrs[0] if cidrs else "") or deep_get(node, "spec", "podCIDR", default="") or ""
    ip = next((a.get("address", "") for a in deep_get(node, "status", "addresses", default=None) or []
               if a.get("type") == "InternalIP"), "")
    return hostgw.Peer(node.get("metadata", {}).get("name", ""), str(cidr), str(ip))


class HostGatewayRoutes:
    def __init__(self, client: Client, node_name: str, own_cidr: str) -> None:
        self.node_name = node_name
        self.own_cidr = own_cidr
        self.nodes = Informer(client, NODES)
        self._dirty = asyncio.Event()
        self._state: tuple = ()  # (peers, connected) of the last applied sync
        self.nodes.add_handlers(self._changed, lambda old, new: self._changed(new), self._changed)
        self._tasks: list[asyncio.Task] = []

    def _changed(self, _node: dict) -> None:
        self._dirty.set()

    def resync(self) -> None:
        """Check the kernel's routes again at once, even if no Node changed."""
        self._state = ()
        self._dirty.set()

    async def start(self) -> None:
        await asyncio.to_thread(hostgw.enable_forwarding)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.nodes.run(), name="host-gw nodes"),
                       loop.create_task(self._loop(), name="host-gw routes")]

    async def _loop(self) -> None:
        await self.nodes.synced.wait()
        while True:
            self._dirty.clear()
            try:
                await self.sync()
            except hostgw.RouteError as e:
                log.warning("host-gw: %s; retrying", e)
                await asyncio.sleep(1.0)
                self._dirty.set()
            try:
                await asyncio.wait_for(self._dirty.wait(), RESYNC)
            except TimeoutError:
                self.resync()  # a periodic full check of the kernel's routes

    async def sync(self) -> None:
        peers = sorted((node_peer(n) for n in self.nodes.list()), key=lambda p: p.name)
        connected = await asyncio.to_thread(hostgw.connected_networks)
        state = (tuple(peers), tuple(connected))
        if state == self._state:
            return  # a heartbeat: nothing routing cares about changed
        desired = hostgw.desired_routes(peers, self.node_name, connected, self.own_cidr)
        current = await asyncio.to_thread(hostgw.current_routes)
        replace, delete = hostgw.route_changes(desired, current)
        failures = await asyncio.to_thread(hostgw.apply_changes, replace, delete)
        pod_cidrs = sorted({c for c in (*(p.pod_cidr for p in peers), self.own_cidr) if hostgw.valid_cidr(c)})
        await asyncio.to_thread(hostgw.setup_masquerade, desired.keys(), pod_cidrs)
        for cidr, gw in replace.items():
            log.info("host-gw: route %s via %s", cidr, gw)
        for cidr in delete:
            log.info("host-gw: removed route %s", cidr)
        if failures:
            raise hostgw.RouteError("; ".join(failures))
        self._state = state

    async def stop(self, cleanup: bool = True) -> None:
        """Stop following the Nodes; with `cleanup` remove our routes and masquerade table too."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not cleanup:
            return
        try:
            await asyncio.to_thread(hostgw.remove_all_routes)
            await asyncio.to_thread(hostgw.remove_masquerade)
        except hostgw.RouteError as e:
            log.warning("host-gw: cleanup: %s", e)
