"""The cluster DNS's Prometheus metrics on :9153 (CoreDNS's port; names after CoreDNS's where
they mean the same), read from the server's plain counters only when scraped."""

from __future__ import annotations

from collections.abc import Iterable

import dns.rcode
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pocketkube.dns.server import DNSServer

METRICS_PORT = 9153


class _Collector:
    def __init__(self, server: DNSServer) -> None:
        self.server = server

    def collect(self) -> Iterable:
        s = self.server
        requests = CounterMetricFamily("coredns_dns_requests_total", "Counter of DNS requests made per protocol.",
                                       labels=("proto",))
        requests.add_metric(("udp",), s.queries - s.tcp_queries)
        requests.add_metric(("tcp",), s.tcp_queries)
        yield requests
        responses = CounterMetricFamily("coredns_dns_responses_total", "Counter of response status codes.",
                                        labels=("rcode",))
        for code, n in enumerate(s.rcodes):
            if n:
                responses.add_metric((dns.rcode.to_text(code),), n)
        yield responses
        hits = CounterMetricFamily("coredns_cache_hits_total", "The count of cache hits.", labels=("type",))
        hits.add_metric(("answer",), s.cache_hits)
        hits.add_metric(("forward",), s.forwarder.hits)
        yield hits
        misses = CounterMetricFamily("coredns_cache_misses_total", "The count of cache misses.", labels=("type",))
        misses.add_metric(("answer",), s.queries - s.cache_hits)
        misses.add_metric(("forward",), s.forwarder.misses)
        yield misses
        yield CounterMetricFamily("pocketkube_dns_malformed_queries_total",
                                  "Queries answered FORMERR or dropped as unreadable.", value=s.malformed)
        yield GaugeMetricFamily("pocketkube_dns_zone_generation", "Changes applied to the zone since start.",
                                value=s.index.generation)


class MetricsServer:
    def __init__(self, server: DNSServer) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(server))  # type: ignore[arg-type]
        self._runner: web.AppRunner | None = None

    def text(self) -> bytes:
        return generate_latest(self.registry)

    async def start(self, host: str, port: int = METRICS_PORT) -> int:
        async def serve(_request: web.Request) -> web.Response:
            return web.Response(body=self.text(), content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
