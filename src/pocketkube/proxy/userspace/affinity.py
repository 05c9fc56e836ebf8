"""Endpoint choice for the userspace proxy: random per new connection, with ClientIP affinity.

As in kube-proxy, the timeout runs from the client's last new connection (each hit refreshes
it), and an entry only counts while its endpoint is still usable for that traffic.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection

from pocketkube.proxy.model import Endpoint
from pocketkube.proxy.userspace.stats import EndpointStats, StatsKey

SWEEP_EVERY = 4096  # inserts between sweeps of expired entries: keeps the table bounded


class AffinityTable:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (service port key, client ip) -> (endpoint, expiry)
        self._entries: dict[tuple[str, str], tuple[Endpoint, float]] = {}
        self._inserts = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, service: str, client_ip: str, usable: Collection[Endpoint]) -> Endpoint | None:
        hit = self._entries.get((service, client_ip))
        if hit is None:
            return None
        endpoint, expiry = hit
        if expiry <= self._clock() or endpoint not in usable:
            del self._entries[(service, client_ip)]
            return None
        return endpoint

    def remember(self, service: str, client_ip: str, endpoint: Endpoint, timeout: float) -> None:
        self._entries[(service, client_ip)] = (endpoint, self._clock() + timeout)
        self._inserts += 1
        if self._inserts >= SWEEP_EVERY:
            self.sweep()

    def sweep(self) -> None:
        now = self._clock()
        self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        self._inserts = 0

    def forget_except(self, services: Collection[str]) -> None:
        """Drop the entries of service ports that no longer have affinity."""
        self._entries = {k: v for k, v in self._entries.items() if k[0] in services}


class Route:
    """Where one frontend (ip:port/protocol) sends new connections; replaced on every model change."""

    __slots__ = ("affinity_key", "affinity_timeout", "endpoints", "preserve_client_ip", "protocol", "service",
                 "usable")

    def __init__(self, service: str, protocol: str, endpoints: tuple[Endpoint, ...], affinity_timeout: int,
                 preserve_client_ip: bool = False) -> None:
        self.service = service
        self.protocol = protocol
        self.endpoints = endpoints
        self.usable = frozenset(endpoints)
        self.affinity_timeout = affinity_timeout
        self.affinity_key = f"{service}/{protocol}"  # affinity is per service port and protocol
        self.preserve_client_ip = preserve_client_ip  # externalTrafficPolicy: Local

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Route) and (
            self.service, self.protocol, self.endpoints, self.affinity_timeout, self.preserve_client_ip) == (
            other.service, other.protocol, other.endpoints, other.affinity_timeout, other.preserve_client_ip)

    __hash__ = None  # type: ignore[assignment]


class Balancer:
    """Random endpoint per new connection, sticky per client IP when the route asks for it."""

    def __init__(self, stats: dict[StatsKey, EndpointStats]) -> None:
        self.affinity = AffinityTable()
        self.stats = stats

    def choose(self, route: Route, client_ip: str, tried: Collection[Endpoint] = ()) -> Endpoint | None:
        if route.affinity_timeout and not tried:
            sticky = self.affinity.lookup(route.affinity_key, client_ip, route.usable)
            if sticky is not None:
                return sticky
        candidates = route.endpoints if not tried else [e for e in route.endpoints if e not in tried]
        return random.choice(candidates) if candidates else None

    def stats_for(self, route: Route, endpoint: Endpoint) -> EndpointStats:
        key = (route.service, route.protocol, endpoint.address)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = EndpointStats(endpoint)
        else:
            stats.endpoint = endpoint
        return stats

    def connected(self, route: Route, client_ip: str, endpoint: Endpoint,
                  stats: EndpointStats | None = None) -> EndpointStats:
        """A new connection (or UDP session) to `endpoint` is open: count it (the caller ends
        it with `stats.active -= 1`)."""
        if route.affinity_timeout:
            self.affinity.remember(route.affinity_key, client_ip, endpoint, route.affinity_timeout)
        stats = stats or self.stats_for(route, endpoint)
        stats.connections += 1
        stats.active += 1
        return stats
