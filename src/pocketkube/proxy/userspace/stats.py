"""Traffic counts of the userspace data plane: plain ints on the event loop, read once a second.

Per endpoint of a service port: new connections (TCP) or sessions (UDP), the ones open now, and
bytes each way (`bytes_in`: client to endpoint, `bytes_out`: back), summed per chunk in the
splice callbacks. Per frontend (listener): the connections it accepted, kept on the frontend.
Rejections are never seen here: a frontend without endpoints does not listen, so the kernel
refuses before the plane knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pocketkube.api.traffic import EndpointCount, EntryCount, TrafficSnapshot
from pocketkube.proxy.model import Endpoint, ServiceEntry

StatsKey = tuple[str, str, str]  # (service port key, protocol, endpoint ip:port)


class EndpointStats:
    __slots__ = ("active", "bytes_in", "bytes_out", "connections", "endpoint")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint  # the latest seen: its pod name is what the snapshot reports
        self.connections = 0
        self.active = 0
        self.bytes_in = 0
        self.bytes_out = 0


def frontend_kind(entry: ServiceEntry, ip: str, port: int, node_ip: str) -> str:
    sp = entry.port
    if sp.node_port and ip == node_ip and port == sp.node_port:
        return "NodePort"
    if ip in sp.cluster_ips:
        return "ClusterIP"
    return "LoadBalancer" if ip in sp.load_balancer_ips else "ExternalIP"


def prune(stats: dict[StatsKey, EndpointStats], key: tuple[str, str], entry: ServiceEntry) -> None:
    """Forget endpoints that left a service port once nothing is open to them any more; the
    others take the entry's Endpoint (a new pod may have the address of an old one)."""
    present = {e.address: e for e in entry.endpoints}
    for k, s in list(stats.items()):
        if k[:2] != key:
            continue
        if k[2] in present:
            s.endpoint = present[k[2]]
        elif s.active <= 0:
            del stats[k]


def snapshot(node: str, at: float, applied: Mapping[tuple[str, str], ServiceEntry],
             frontends: Iterable[tuple[tuple[str, str], str, int, int]], node_ip: str,
             stats: Mapping[StatsKey, EndpointStats]) -> TrafficSnapshot:
    """`frontends`: (model key, ip, port, accepted) of each frontend that listens or has counted."""
    entries = []
    for key, ip, port, accepted in frontends:
        entry = applied.get(key)
        if entry is not None:
            sp = entry.port
            entries.append(EntryCount(sp.namespace, sp.name, sp.port_name, sp.protocol,
                                      frontend_kind(entry, ip, port, node_ip), ip, port, accepted))
    endpoints = []
    for (service_key, protocol, _), s in list(stats.items()):
        entry = applied.get((service_key, protocol))
        if entry is not None:
            sp, ep = entry.port, s.endpoint
            endpoints.append(EndpointCount(sp.namespace, sp.name, sp.port_name, sp.protocol, ep.ip, ep.port, ep.pod,
                                           s.connections, s.active, s.bytes_in, s.bytes_out))
    return TrafficSnapshot(node, "userspace", at, tuple(entries), tuple(endpoints), ())
