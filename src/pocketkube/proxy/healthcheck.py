"""healthCheckNodePort servers, one per LoadBalancer Service with externalTrafficPolicy: Local.

An external load balancer asks every node whether it has local endpoints for the Service:
any path answers 200 when this node has local ready endpoints and 503 otherwise, with
kube-proxy's JSON body and headers. Both data planes use this module.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from pocketkube.proxy.model import Model

log = logging.getLogger(__name__)

MAX_REQUEST = 16384


@dataclass(frozen=True)
class HealthCheck:
    namespace: str
    name: str
    port: int
    local_endpoints: int


def health_checks(model: Model, node_name: str) -> dict[str, HealthCheck]:
    """By service (`ns/name`): its health-check port and how many ready endpoints are local.

    Only ready endpoints count (terminating ones give 503 while still carrying traffic)."""
    out: dict[str, HealthCheck] = {}
    for entry in model.values():
        sp = entry.port
        if not (sp.health_check_node_port and sp.external_local):
            continue
        local = sum(1 for e in entry.endpoints if e.ready and e.node_name == node_name)
        prev = out.get(sp.service_key)
        if prev is None or local > prev.local_endpoints:
            out[sp.service_key] = HealthCheck(sp.namespace, sp.name, sp.health_check_node_port, local)
    return out


def render(check: HealthCheck) -> bytes:
    """The whole HTTP response for one probe."""
    body = orjson.dumps({"service": {"namespace": check.namespace, "name": check.name},
                         "localEndpoints": check.local_endpoints, "serviceProxyHealthy": True})
    status = "200 OK" if check.local_endpoints > 0 else "503 Service Unavailable"
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Load-Balancing-Endpoint-Weight: {check.local_endpoints}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class _Probe(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf or b"\n\n" in self.buf:
            self.transport.write(render(self.server.check))  # type: ignore[attr-defined]
            self.transport.close()
        elif len(self.buf) > MAX_REQUEST:
            self.transport.close()


class _Server:
    def __init__(self, check: HealthCheck) -> None:
        self.check = check
        self.server: asyncio.AbstractServer | None = None


class HealthCheckServers:
    """Keeps one HTTP server per health check on node_ip:healthCheckNodePort."""

    def __init__(self, node_name: str, node_ip: str) -> None:
        self.node_name = node_name
        self.node_ip = node_ip
        self._servers: dict[str, _Server] = {}

    async def apply(self, model: Model) -> None:
        await self.sync(health_checks(model, self.node_name))

    async def sync(self, checks: dict[str, HealthCheck]) -> None:
        for key in list(self._servers):
            if key not in checks or checks[key].port != self._servers[key].check.port:
                self._close(key)
        for key, check in checks.items():
            srv = self._servers.setdefault(key, _Server(check))
            srv.check = check
            if srv.server is None:
                await self._listen(key, srv)

    async def _listen(self, key: str, srv: _Server) -> None:
        try:
            srv.server = await asyncio.get_running_loop().create_server(
                lambda: _Probe(srv), self.node_ip, srv.check.port)
        except OSError as e:  # retried on the next sync
            log.warning("health check for %s on %s:%d: %s", key, self.node_ip, srv.check.port, e)

    def _close(self, key: str) -> None:
        srv = self._servers.pop(key)
        if srv.server is not None:
            srv.server.close()

    async def stop(self) -> None:
        for key in list(self._servers):
            self._close(key)
