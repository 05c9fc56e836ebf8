"""UDP frontends of the userspace proxy: a session per client address, expired when idle.

A session is a connected socket towards the endpoint chosen for the client's first datagram
(a userspace conntrack entry). Replies read from it go back to the client from the frontend
address. Everything is event-loop readers on non-blocking sockets: no task per session.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from pocketkube.proxy.model import Endpoint
from pocketkube.proxy.userspace.affinity import Balancer, Route
from pocketkube.proxy.userspace.stats import EndpointStats
from pocketkube.proxy.userspace.tcp import bind_socket

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
DEFAULT_IDLE_TIMEOUT = 30.0  # nf_conntrack_udp_timeout's default
MAX_SESSIONS = 65536


class _Session:
    __slots__ = ("client", "endpoint", "frontend", "last_used", "sock", "stats")

    def __init__(self, frontend: UdpFrontend, client: tuple[str, int], endpoint: Endpoint) -> None:
        self.frontend = frontend
        self.client = client
        self.endpoint = endpoint
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.connect((endpoint.ip, endpoint.port))
        except OSError:
            self.sock.close()
            raise
        self.last_used = time.monotonic()
        self.stats: EndpointStats | None = None  # set once the balancer counted the session
        frontend.loop.add_reader(self.sock.fileno(), self._on_reply)

    def send(self, data: bytes) -> None:
        self.last_used = time.monotonic()
        try:
            self.sock.send(data)
            self.stats.bytes_in += len(data)  # type: ignore[union-attr]
        except BlockingIOError:
            pass  # a full socket buffer drops the datagram, as the network would
        except OSError:  # e.g. ECONNREFUSED from an earlier ICMP: choose again next time
            self.frontend.end_session(self.client)

    def _on_reply(self) -> None:
        frontend = self.frontend
        for _ in range(64):  # bounded batch so one busy session cannot starve the loop
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                frontend.end_session(self.client)
                return
            self.last_used = time.monotonic()
            self.stats.bytes_out += len(data)  # type: ignore[union-attr]
            frontend.reply(data, self.client)

    def close(self) -> None:
        self.frontend.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self.stats is not None:
            self.stats.active -= 1
            self.stats = None


class UdpFrontend:
    """A bound UDP socket at ip:port whose client sessions go to `route`'s endpoints."""

    def __init__(self, ip: str, port: int, route: Route, balancer: Balancer,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.ip = ip
        self.port = port
        self.route = route
        self.balancer = balancer
        self.idle_timeout = idle_timeout
        self.sessions: dict[tuple[str, int], _Session] = {}
        self.accepted = 0  # sessions that entered here, ever (the entry count)
        self.loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = None

    @property
    def listening(self) -> bool:
        return self._sock is not None

    async def listen(self) -> None:
        if self._sock is None:
            self._sock = bind_socket(socket.SOCK_DGRAM, self.ip, self.port)
            self.loop.add_reader(self._sock.fileno(), self._on_datagram)

    def _on_datagram(self) -> None:
        for _ in range(64):
            if self._sock is None:
                return
            try:
                data, client = self._sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier reply; nothing to do with it
            session = self.sessions.get(client) or self._new_session(client)
            if session is not None:
                session.send(data)

    def _new_session(self, client: tuple[str, int]) -> _Session | None:
        if len(self.sessions) >= MAX_SESSIONS:
            self.expire(time.monotonic())
            if len(self.sessions) >= MAX_SESSIONS:
                return None
        route = self.route
        tried: list[Endpoint] = []
        while (endpoint := self.balancer.choose(route, client[0], tried)) is not None:
            try:
                session = _Session(self, client, endpoint)
            except OSError as e:
                log.debug("%s: endpoint %s failed: %s", route.service, endpoint.address, e)
                tried.append(endpoint)
                continue
            session.stats = self.balancer.connected(route, client[0], endpoint)
            self.accepted += 1
            self.sessions[client] = session
            return session
        return None

    def reply(self, data: bytes, client: tuple[str, int]) -> None:
        if self._sock is not None:
            try:
                self._sock.sendto(data, client)
            except OSError:
                pass  # the client is gone or its buffer is full: a lost datagram

    def end_session(self, client: tuple[str, int]) -> None:
        session = self.sessions.pop(client, None)
        if session is not None:
            session.close()

    def drop_sessions_to(self, usable: frozenset[Endpoint]) -> None:
        """Sessions towards endpoints that left the route end, as conntrack entries are flushed."""
        for client, session in list(self.sessions.items()):
            if session.endpoint not in usable:
                self.end_session(client)

    def expire(self, now: float) -> None:
        deadline = now - self.idle_timeout
        for client, session in list(self.sessions.items()):
            if session.last_used < deadline:
                self.end_session(client)

    def stop_listening(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self.stop_listening()
        for client in list(self.sessions):
            self.end_session(client)
