"""TCP frontends of the userspace proxy: accept, pick an endpoint, splice both sockets.

The splice uses asyncio Protocols (callbacks, no per-connection read loops): bytes read on one
side are written to the other, and a full write buffer pauses reading on the opposite side, so
memory per connection is bounded by the transport high-water mark. The only per-connection
task is the backend connect, which ends as soon as the backend answers or refuses.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

from pocketkube.proxy.model import Endpoint
from pocketkube.proxy.userspace.affinity import Balancer, Route
from pocketkube.proxy.userspace.stats import EndpointStats

log = logging.getLogger(__name__)

BACKLOG = 4096
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux; absent from Python < 3.12


class AddressInUse(Exception):
    """Another node agent (or process) owns this frontend address."""


def bind_socket(kind: int, ip: str, port: int) -> socket.socket:
    """Bind without SO_REUSEPORT, so exactly one agent on the machine owns a shared address.

    SO_REUSEADDR (TCP only) just allows rebinding over TIME_WAIT; Linux never lets two TCP
    listeners share an address with it, whereas for UDP it would, so UDP does without it.
    """
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((ip, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AddressInUse(f"{ip}:{port}") from None
        raise
    return sock


class _Side(asyncio.Protocol):
    """One half of a spliced connection; `other` is the opposite half."""

    __slots__ = ("closed", "eof", "other", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.eof = False
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.other.transport.write(data)  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is None or other.closed:
            return False
        if other.eof:  # both directions finished
            other.transport.close()  # type: ignore[union-attr]
            return False
        if other.transport.can_write_eof():  # type: ignore[union-attr]
            other.transport.write_eof()  # type: ignore[union-attr]
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        other = self.other
        if other is not None and other.transport is not None and not other.closed:
            if exc is None:
                other.transport.close()  # flushes what is buffered first
            else:
                other.transport.abort()


class _BackendSide(_Side):
    __slots__ = ("stats",)

    def __init__(self, stats: EndpointStats) -> None:
        super().__init__()
        self.stats = stats

    def data_received(self, data: bytes) -> None:
        self.other.transport.write(data)  # type: ignore[union-attr]
        self.stats.bytes_out += len(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]


class _ClientSide(_Side):
    __slots__ = ("connecting", "early", "frontend", "stats")

    def __init__(self, frontend: TcpFrontend) -> None:
        super().__init__()
        self.frontend = frontend
        self.connecting: asyncio.Task | None = None
        self.early: list[bytes] = []  # read before the backend answered (pausing is not immediate)
        self.stats: EndpointStats | None = None  # once connected to an endpoint

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None:
            self.early.append(data)
        else:
            other.transport.write(data)  # type: ignore[union-attr]
            self.stats.bytes_in += len(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        if self.other is None:  # forwarded once the backend is connected
            self.eof = True
            return True
        return super().eof_received()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]
        self.frontend.accepted += 1
        self.frontend.connections.add(self)
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.frontend.connections.discard(self)
        if self.stats is not None:
            self.stats.active -= 1
            self.stats = None
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()

    def _client_ip(self) -> str:
        peer = self.transport.get_extra_info("peername")  # type: ignore[union-attr]
        return peer[0] if peer else ""

    async def _connect(self) -> None:
        frontend = self.frontend
        route = frontend.route
        needs_client_ip = route.affinity_timeout or route.preserve_client_ip
        client_ip = self._client_ip() if needs_client_ip else ""  # a syscall: only when needed
        loop = asyncio.get_running_loop()
        tried: list[Endpoint] = []
        while not self.closed:
            endpoint = frontend.balancer.choose(route, client_ip, tried)
            if endpoint is None:
                break
            backend = _BackendSide(frontend.balancer.stats_for(route, endpoint))
            backend.other = self
            try:  # no timeout: endpoints are local, so a connect is answered or refused at once
                if route.preserve_client_ip:
                    sock = await _connect_from(client_ip, endpoint)
                    await loop.create_connection(lambda b=backend: b, sock=sock)
                else:
                    await loop.create_connection(lambda b=backend: b, endpoint.ip, endpoint.port)
            except OSError as e:
                log.debug("%s: endpoint %s failed: %s", route.service, endpoint.address, e)
                tried.append(endpoint)
                continue
            if self.closed:  # the client went away while we were connecting
                backend.transport.close()  # type: ignore[union-attr]
                return
            self.stats = frontend.balancer.connected(route, client_ip, endpoint, backend.stats)
            self.other = backend
            self.connecting = None
            self._flush_early(backend)
            return
        self._reset()

    def _flush_early(self, backend: _BackendSide) -> None:
        if self.early:
            data = b"".join(self.early)
            backend.transport.write(data)  # type: ignore[union-attr]
            backend.stats.bytes_in += len(data)
            self.early.clear()
        if self.eof:
            backend.transport.write_eof()  # type: ignore[union-attr]
        else:
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _reset(self) -> None:
        """No endpoint would take the connection: reset it, as a refusal would."""
        if self.transport is not None and not self.closed:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()


async def _connect_from(client_ip: str, endpoint: Endpoint) -> socket.socket:
    """A socket connected to `endpoint` from the client's IP, so the endpoint sees the real client.

    The port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT), not at bind, so connections
    from one client IP can reuse ports per destination as unbound ones do. A client IP that is
    not an address of this host (EADDRNOTAVAIL) falls back to the proxy's own address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        try:
            sock.bind((client_ip, 0))
        except OSError as e:
            if e.errno != errno.EADDRNOTAVAIL:
                raise
        await asyncio.get_running_loop().sock_connect(sock, (endpoint.ip, endpoint.port))
    except BaseException:
        sock.close()
        raise
    return sock


class TcpFrontend:
    """A listening socket at ip:port whose connections go to `route` (swapped on model changes)."""

    def __init__(self, ip: str, port: int, route: Route, balancer: Balancer) -> None:
        self.ip = ip
        self.port = port
        self.route = route
        self.balancer = balancer
        self.connections: set[_ClientSide] = set()
        self.accepted = 0  # connections that entered here, ever (the entry count)
        self._server: asyncio.AbstractServer | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        """Start accepting; raises AddressInUse if another agent owns the address."""
        if self._server is not None:
            return
        sock = bind_socket(socket.SOCK_STREAM, self.ip, self.port)
        try:
            sock.listen(BACKLOG)
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _ClientSide(self), sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise

    def stop_listening(self) -> None:
        """Close the listener so new connections are refused by the kernel; keep established ones."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def close(self) -> None:
        self.stop_listening()
        for conn in list(self.connections):
            if conn.connecting is not None:
                conn.connecting.cancel()
            for side in (conn, conn.other):
                if side is not None and side.transport is not None:
                    side.transport.abort()
        self.connections.clear()
