"""`pocketkube dns` put together: the zone index fed by the informers, the forwarder over the
host's resolvers and the UDP/TCP server, on a client the caller builds (cli.py: the REST client)."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from pocketkube.client.interface import Client
from pocketkube.dns.controller import ClusterDNS
from pocketkube.dns.forward import Forwarder, resolv_conf_upstreams
from pocketkube.dns.metrics import METRICS_PORT, MetricsServer
from pocketkube.dns.server import DNSServer
from pocketkube.dns.zone import ZoneIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DNSConfig:
    listen: str  # the address pods reach through the kube-dns Service (its EndpointSlice's)
    service_ip: str  # kube-dns's ClusterIP: the service range's .10
    port: int = 53
    cluster_domain: str = "cluster.local"
    upstreams: tuple[tuple[str, int], ...] = ()  # default: the nameservers of resolv_conf
    resolv_conf: str = "/etc/resolv.conf"
    skip: tuple[str, ...] = field(default=())  # more of our own addresses, never forwarded to
    metrics_port: int = METRICS_PORT  # Prometheus /metrics on the listen address; -1: none


def upstreams_of(cfg: DNSConfig) -> list[tuple[str, int]]:
    if cfg.upstreams:
        return list(cfg.upstreams)
    try:
        text = Path(cfg.resolv_conf).read_text()
    except OSError as e:
        log.warning("cannot read %s (%s): names outside %s will fail", cfg.resolv_conf, e, cfg.cluster_domain)
        return []
    return resolv_conf_upstreams(text, skip=(cfg.listen, cfg.service_ip, *cfg.skip))


async def start_dns(cfg: DNSConfig, client: Client) -> tuple[DNSServer, ClusterDNS]:
    """Listen first (a busy or forbidden port fails at once), then fill the index; queries
    arriving before the first listing wait in the socket buffers only for that listing."""
    index = ZoneIndex(cfg.cluster_domain, cfg.service_ip)
    index.ready = False  # until the first listing: SERVFAIL rather than a false NXDOMAIN
    server = DNSServer(index, Forwarder(upstreams_of(cfg)))
    try:
        host, port = await server.start(cfg.listen, cfg.port)
    except PermissionError:
        # Port 53 needs root (or CAP_NET_BIND_SERVICE): serve on a free port; the kube-dns
        # EndpointSlice names it, so a data plane that can bind the Service's port 53 still works.
        host, port = await server.start(cfg.listen, 0)
        log.warning("cannot bind %s:%d without privileges; serving on port %d", cfg.listen, cfg.port, port)
    metrics = MetricsServer(server)
    try:
        metrics_port = await metrics.start(host, cfg.metrics_port) if cfg.metrics_port >= 0 else 0
    except OSError as e:
        log.warning("no metrics: cannot listen on %s:%d: %s", host, cfg.metrics_port, e.strerror or e)
        metrics_port = 0
    server.metrics = metrics
    cdns = ClusterDNS(client, index, service_ip=cfg.service_ip, address=host, port=port, metrics_port=metrics_port)
    await cdns.start()
    return server, cdns


async def run_dns(cfg: DNSConfig, client: Client) -> int:
    """Serve until SIGINT/SIGTERM; closes `client` when done."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        server, cdns = await start_dns(cfg, client)
    except OSError as e:
        hint = " (is another DNS server listening there?)" if e.errno == errno.EADDRINUSE else ""
        print(f"DNS failed: cannot listen on {cfg.listen}:{cfg.port}: {e.strerror or e}{hint}", flush=True)
        await client.close()
        return 1
    host, port = server.address
    print(f"DNS server: {host}:{port} (kube-dns {cfg.service_ip}, zone {cfg.cluster_domain}, "
          f"forwarding to {', '.join(f'{h}:{p}' for h, p in server.forwarder.upstreams) or 'nobody'})",
          flush=True)
    await stop.wait()
    await cdns.stop()
    await server.metrics.stop()
    await server.stop()
    await client.close()
    return 0
