"""The proxy's backend side: one in-flight request (Request), a kept-alive connection to a backend
that relays one response at a time to its client (Upstream), and the pool of idle ones (Pool).

The response is relayed byte for byte as it arrives; llhttp's response parser (httptools) only
tracks where it ends, so the connection can go back to the pool (or, after a 101, become a raw
splice)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from pocketkube.ingress.routing import Rule

if TYPE_CHECKING:
    from pocketkube.ingress.proxy import ClientConnection

IDLE_PER_BACKEND = 64  # idle kept-alive connections kept per backend address


class Request:
    __slots__ = ("head", "chunks", "complete", "method", "keep_alive", "upgrade", "rule", "chunked",
                 "upstream", "retryable")

    def __init__(self) -> None:
        self.head = b""
        self.chunks: list[bytes] = []  # body bytes received before an upstream was attached
        self.complete = False
        self.method = b""
        self.keep_alive = True
        self.upgrade = False
        self.rule: Rule | None = None
        self.chunked = False
        self.upstream: Upstream | None = None
        self.retryable = False

    def send(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
        else:
            self.chunks.append(data)


class Pool:
    """Idle kept-alive backend connections, by (ip, port)."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[Upstream]] = {}

    def take(self, addr: tuple[str, int]) -> Upstream | None:
        conns = self.idle.get(addr)
        while conns:
            up = conns.pop()
            if up.transport is not None and not up.transport.is_closing():
                return up
        return None

    def put(self, up: Upstream) -> None:
        conns = self.idle.setdefault(up.addr, [])
        if len(conns) >= IDLE_PER_BACKEND:
            up.close()
        else:
            conns.append(up)

    def forget(self, up: Upstream) -> None:
        conns = self.idle.get(up.addr)
        if conns and up in conns:
            conns.remove(up)

    def prune(self, live: set[tuple[str, int]]) -> None:
        """Close idle connections to addresses no backend names any more (a deleted pod's may
        never see a FIN: its network namespace is gone)."""
        for addr in [a for a in self.idle if a not in live]:
            for up in self.idle.pop(addr):
                up.close()

    def close(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                up.close()
        self.idle.clear()


class Upstream(asyncio.Protocol):
    """One connection to a backend: relays one response at a time to its client."""

    def __init__(self, pool: Pool, addr: tuple[str, int]) -> None:
        self.pool = pool
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.client: ClientConnection | None = None
        self.req: Request | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.received = 0
        self.headers_done = False
        self.splice: ClientConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self, client: ClientConnection, req: Request) -> None:
        self.client, self.req = client, req
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.received, self.headers_done = 0, 0, False
        req.upstream = self
        assert self.transport is not None
        self.transport.write(req.head + b"".join(req.chunks) if req.chunks else req.head)
        req.chunks = []

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # ---- backend → client ----
    def data_received(self, data: bytes) -> None:
        if self.splice is not None:
            self.splice.write(data)
            return
        client = self.client
        if client is None:  # an idle connection talking: not HTTP we can trust
            self.close()
            return
        self.received += len(data)
        client.write(data)
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            if self.status == 101 and self.client is not None:
                self.splice = self.client
                self.client.start_splice(self)
        except httptools.HttpParserError:
            self._fail()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()  # type: ignore[union-attr]
        self.headers_done = True
        if self.req is not None and self.req.method == b"HEAD" and self.status >= 200:
            self._done(self.parser.should_keep_alive())  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:
            self.headers_done = False  # an interim response: the real one follows
            return
        if self.client is not None and self.status != 101:
            self._done(self.parser.should_keep_alive())  # type: ignore[union-attr]

    def _done(self, keep_alive: bool) -> None:
        client, req = self.client, self.req
        self.client = self.req = None
        if req is not None and not req.complete:
            # Answered before the body was all sent (a 413, a redirect): the rest of that body must
            # never reach another request's backend, nor be parsed as a next request.
            keep_alive = req.keep_alive = False
            req.upstream = None
        if keep_alive and self.transport is not None and not self.transport.is_closing():
            if self.transport.is_reading() is False:
                self.transport.resume_reading()
            self.pool.put(self)
        else:
            self.close()
        if client is not None and req is not None:
            client.response_done(req)

    def _fail(self) -> None:
        client, req = self.client, self.req
        self.client = self.req = None
        self.close()
        if client is not None and req is not None:
            client.upstream_failed(req, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        if self.splice is not None:
            self.splice.close()
            return
        client, req = self.client, self.req
        if client is None or req is None:
            return
        self.client = self.req = None
        if self.headers_done:  # a response delimited by the connection's end: the client's ends too
            client.close()
        else:
            client.upstream_failed(req, self)

    # ---- back-pressure: the backend reads slower than the client sends ----
    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause("upstream")

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume("upstream")
