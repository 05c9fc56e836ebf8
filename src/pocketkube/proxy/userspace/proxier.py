"""The userspace data plane: asyncio TCP and UDP listeners that forward to Service endpoints.

Frontends, for every service port in the model:
- ClusterIP:port and, for external traffic, nodeIP:nodePort, LoadBalancer IP:port and
  external IP:port, for TCP and UDP alike.
- ClusterIP traffic uses the cluster endpoint set, the others the external one
  (`externalTrafficPolicy: Local` keeps only this node's endpoints).
- A frontend without a usable endpoint does not listen, so the kernel refuses at once.

Several node agents share one machine. NodePorts live on each agent's own node IP, but
ClusterIPs, LoadBalancer IPs and external IPs are shared: they are bound without SO_REUSEPORT
so exactly one agent owns each, and the others retry binding every `bind_retry_interval`
seconds, taking over within about a second if the owner dies. A consequence: ClusterIP
traffic is routed by whichever agent owns the address, so `internalTrafficPolicy: Local`
follows that agent's node, not the client's.

Limits of proxying in userspace: the endpoint sees the proxy's address as the client, except
for TCP under `externalTrafficPolicy: Local`, whose backend connections are made from the
client's own IP (every client of a node on 127/8 has a local address); established TCP
connections survive endpoint removal (as with conntrack), UDP sessions to a removed endpoint
are ended (as kube-proxy flushes their conntrack entries).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

from pocketkube.api.traffic import TrafficSnapshot
from pocketkube.proxy.healthcheck import HealthCheckServers
from pocketkube.proxy.model import Model, ServiceEntry, categorize_endpoints
from pocketkube.proxy.userspace import stats
from pocketkube.proxy.userspace.affinity import Balancer, Route
from pocketkube.proxy.userspace.tcp import AddressInUse, TcpFrontend
from pocketkube.proxy.userspace.udp import DEFAULT_IDLE_TIMEOUT, UdpFrontend

log = logging.getLogger(__name__)

Address = tuple[str, str, int]  # (protocol, ip, port)
Frontend = TcpFrontend | UdpFrontend


def frontend_routes(entry: ServiceEntry, node_name: str, node_ip: str) -> dict[Address, Route]:
    """Every address this node serves for one service port, with the endpoints behind it."""
    sp = entry.port
    if sp.protocol not in ("TCP", "UDP"):
        return {}
    cat = categorize_endpoints(entry, node_name)
    cluster = Route(sp.key, sp.protocol, cat.cluster, sp.affinity_timeout)
    external = Route(sp.key, sp.protocol, cat.external, sp.affinity_timeout, preserve_client_ip=sp.external_local)
    routes: dict[Address, Route] = {}
    for ip in sp.cluster_ips:
        routes[(sp.protocol, ip, sp.port)] = cluster
    if sp.node_port:
        routes[(sp.protocol, node_ip, sp.node_port)] = external
    for ip in (*sp.load_balancer_ips, *sp.external_ips):
        routes[(sp.protocol, ip, sp.port)] = external
    return {addr: r for addr, r in routes.items() if ":" not in addr[1]}  # IPv4 only


def raise_fd_limit() -> None:
    """Each proxied TCP connection holds two descriptors: allow as many as the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class UserspaceDataPlane:
    name = "userspace"

    def __init__(self, node_name: str, node_ip: str, *, udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 bind_retry_interval: float = 1.0) -> None:
        self.node_name = node_name
        self.node_ip = node_ip
        self.udp_idle_timeout = udp_idle_timeout
        self.bind_retry_interval = bind_retry_interval
        # (service port key, protocol, endpoint ip:port) -> its traffic counts
        self.endpoint_stats: dict[stats.StatsKey, stats.EndpointStats] = {}
        self.balancer = Balancer(self.endpoint_stats)
        self.health = HealthCheckServers(node_name, node_ip)
        self.frontends: dict[Address, Frontend] = {}
        self._owned: dict[tuple[str, str], set[Address]] = {}  # model key -> its frontends
        self._applied: Model = {}
        self._housekeeping: asyncio.Task | None = None
        self._bind_failures_logged: set[Address] = set()

    async def start(self) -> None:
        try:
            raise_fd_limit()
        except (OSError, ValueError) as e:
            log.warning("cannot raise the open files limit: %s", e)
        if self._housekeeping is None:
            self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())

    async def apply(self, model: Model) -> None:
        for key in [k for k in self._applied if k not in model]:
            self._retire(key)
        for key, entry in model.items():
            old = self._applied.get(key)
            if old is not entry and old != entry:
                await self._apply_entry(key, entry, old)
        self._applied = dict(model)
        await self.health.apply(model)

    async def _apply_entry(self, key: tuple[str, str], entry: ServiceEntry, old: ServiceEntry | None) -> None:
        routes = frontend_routes(entry, self.node_name, self.node_ip)
        for addr in self._owned.get(key, set()) - routes.keys():
            self._close(addr)
        self._owned[key] = set(routes)
        for addr, route in routes.items():
            await self._route(addr, route)
        stats.prune(self.endpoint_stats, key, entry)
        if old is not None and old.port.affinity_timeout and not entry.port.affinity_timeout:
            self.balancer.affinity.forget_except(
                {f"{e.port.key}/{e.port.protocol}" for e in self._applied.values() if e.port.affinity_timeout})

    def _retire(self, key: tuple[str, str]) -> None:
        for addr in self._owned.pop(key, set()):
            self._close(addr)
        for counted in [c for c in self.endpoint_stats if c[:2] == key]:
            del self.endpoint_stats[counted]

    async def _route(self, addr: Address, route: Route) -> None:
        fe = self.frontends.get(addr)
        if fe is None:
            protocol, ip, port = addr
            fe = (TcpFrontend(ip, port, route, self.balancer) if protocol == "TCP"
                  else UdpFrontend(ip, port, route, self.balancer, self.udp_idle_timeout))
            self.frontends[addr] = fe
        elif fe.route != route and isinstance(fe, UdpFrontend):
            fe.drop_sessions_to(route.usable)
        fe.route = route
        if not route.endpoints:
            fe.stop_listening()
        elif not fe.listening:
            await self._listen(addr, fe)

    async def _listen(self, addr: Address, fe: Frontend) -> None:
        try:
            await fe.listen()
            self._bind_failures_logged.discard(addr)
        except AddressInUse:
            pass  # another agent owns it; the housekeeping loop retries
        except OSError as e:
            if addr not in self._bind_failures_logged:
                self._bind_failures_logged.add(addr)
                log.warning("cannot listen on %s %s:%d: %s", *addr, e)

    def _close(self, addr: Address) -> None:
        fe = self.frontends.pop(addr, None)
        if fe is not None:
            fe.close()

    async def _housekeep(self) -> None:
        """Retry frontends another agent owns; expire idle UDP sessions."""
        while True:
            await asyncio.sleep(self.bind_retry_interval)
            now = time.monotonic()
            for addr, fe in list(self.frontends.items()):
                if fe.route.endpoints and not fe.listening:
                    await self._listen(addr, fe)
                if isinstance(fe, UdpFrontend):
                    fe.expire(now)

    @property
    def connection_counts(self) -> dict[stats.StatsKey, int]:
        """New connections (or UDP sessions) per (service port key, protocol, endpoint ip:port)."""
        return {k: s.connections for k, s in self.endpoint_stats.items() if s.connections}

    async def traffic(self) -> TrafficSnapshot:
        """Cumulative counts per listener and endpoint (active and bytes too); no rejections."""
        frontends = [(key, addr[1], addr[2], fe.accepted) for key, addrs in self._owned.items() for addr in addrs
                     if (fe := self.frontends.get(addr)) is not None and (fe.listening or fe.accepted)]
        return stats.snapshot(self.node_name, time.time(), self._applied, frontends, self.node_ip,
                              self.endpoint_stats)

    def listening_addresses(self) -> set[Address]:
        return {addr for addr, fe in self.frontends.items() if fe.listening}

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            try:
                await self._housekeeping
            except asyncio.CancelledError:
                pass
            self._housekeeping = None
        for addr in list(self.frontends):
            self._close(addr)
        self._owned.clear()
        self._applied = {}
        await self.health.stop()


def remove_leftovers(node_name: str, node_ip: str) -> bool:
    """Nothing outlives a userspace data plane: its sockets close with the agent's process."""
    return False
