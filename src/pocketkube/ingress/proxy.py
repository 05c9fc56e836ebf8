"""The reverse proxy: asyncio Protocols with llhttp's parser (httptools, as uvicorn uses), routing
each request by the current Table.

A client connection parses requests; each is routed, its head rewritten (hop-by-hop headers
dropped, X-Forwarded-* added) and sent to a kept-alive backend connection from the pool, its body
streamed as it arrives (re-chunked when the client sent it chunked). The backend's response is
relayed as it comes, byte for byte, while a response parser only tracks where it ends (so the
connection can go back to the pool). Back-pressure runs both ways (a slow reader pauses the other
side). An Upgrade (WebSocket) that the backend accepts with 101 turns the pair into a raw splice.
Requests pipelined behind one in flight wait their turn, so responses keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote

import httptools

from pocketkube.ingress.routing import Rule, Table

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection: never forwarded.
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
IDLE_PER_BACKEND = 64  # idle kept-alive connections kept per backend address


def local_response(status: int, reason: str, text: str, keep_alive: bool) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}"
            "\r\n").encode() + body


NOT_FOUND = (404, "Not Found", "default backend - 404\n")
UNAVAILABLE = (503, "Service Temporarily Unavailable", "503 Service Temporarily Unavailable\n")
BAD_GATEWAY = (502, "Bad Gateway", "502 Bad Gateway\n")
BAD_REQUEST = (400, "Bad Request", "400 Bad Request\n")


class _Request:
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
        self.req: _Request | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.received = 0
        self.headers_done = False
        self.splice: ClientConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self, client: ClientConnection, req: _Request) -> None:
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


class ClientConnection(asyncio.Protocol):
    """One client connection: parses its requests, hands each to a backend, in order."""

    def __init__(self, proxy: IngressProxy, scheme: str) -> None:
        self.proxy = proxy
        self.scheme = scheme.encode()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self.port = b""
        self.current: _Request | None = None  # the request whose response is under way
        self.parsing: _Request | None = None
        self.queue: deque[_Request] = deque()
        self.paused: set[str] = set()
        self.splice: Upstream | None = None
        self.upgrading: _Request | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer = (peer[0] if peer else "").encode()
        self.port = str(sock[1] if sock else "").encode()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        up = self.splice or (self.current.upstream if self.current is not None else None)
        self.transport = None
        if up is not None:
            up.client = None
            up.close()

    def pause(self, reason: str) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        self.paused.discard(reason)
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # the client reads slower than the backend answers
    def pause_writing(self) -> None:
        up = self.splice or (self.current.upstream if self.current is not None else None)
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.splice or (self.current.upstream if self.current is not None else None)
        if up is not None and up.transport is not None and not up.transport.is_closing():
            up.transport.resume_reading()

    # ---- client → backend ----
    def data_received(self, data: bytes) -> None:
        if self.splice is not None:
            if self.splice.transport is not None:
                self.splice.transport.write(data)
            return
        if self.upgrading is not None:  # bytes after an Upgrade request, before the backend's 101
            self.upgrading.send(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            req = self.parsing or self.current
            if req is not None and req.upgrade:
                self.upgrading = req
                rest = data[e.args[0]:] if e.args and isinstance(e.args[0], int) else b""
                if rest:
                    req.send(rest)
        except httptools.HttpParserError:
            self.write(local_response(*BAD_REQUEST, keep_alive=False))
            self.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = _Request()
        p = self.parser
        req.method = p.get_method()
        req.keep_alive = p.should_keep_alive()
        version = p.get_http_version().encode()
        url, headers = self._url, self._headers
        self._url, self._headers = b"", []
        host = b""
        forwarded_for = b""
        upgrade = b""
        tokens: set[bytes] = set()
        for name, value in headers:
            lname = name.lower()
            if lname == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
            elif lname == b"host":
                host = value
            elif lname == b"upgrade":
                upgrade = value
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                req.chunked = True
        lines = [req.method + b" " + url + b" HTTP/" + version]
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP or lname in tokens:
                continue
            if lname == b"x-forwarded-for":
                forwarded_for = forwarded_for + b", " + value if forwarded_for else value
                continue
            if lname in (b"x-real-ip", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-proto"):
                continue
            lines.append(name + b": " + value)
        lines += [b"X-Forwarded-For: " + (forwarded_for + b", " + self.peer if forwarded_for else self.peer),
                  b"X-Real-IP: " + self.peer, b"X-Forwarded-Host: " + host, b"X-Forwarded-Port: " + self.port,
                  b"X-Forwarded-Proto: " + self.scheme]
        if req.chunked:
            lines.append(b"Transfer-Encoding: chunked")
        if upgrade and b"upgrade" in tokens:
            req.upgrade = True
            lines += [b"Connection: Upgrade", b"Upgrade: " + upgrade]
        elif version == b"1.0":
            lines.append(b"Connection: close")
        req.head = b"\r\n".join(lines) + b"\r\n\r\n"
        path = url.split(b"?", 1)[0].decode("latin-1")
        req.rule = self.proxy.table().route(host.decode("latin-1"), unquote(path) if "%" in path else path)
        req.retryable = req.method in (b"GET", b"HEAD", b"OPTIONS") and not req.chunked and not req.upgrade
        self.parsing = req
        if self.current is None:
            self._start(req)
        else:
            self.queue.append(req)
            self.pause("queue")

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None:
            return
        req.retryable = False
        req.send(b"%x\r\n%b\r\n" % (len(body), body) if req.chunked else body)

    def on_message_complete(self) -> None:
        req = self.parsing
        self.parsing = None
        if req is not None:
            if req.chunked:
                req.send(b"0\r\n\r\n")
            req.complete = True

    # ---- dispatch ----
    def _start(self, req: _Request) -> None:
        self.current = req
        rule = req.rule
        if rule is None:
            return self._answer(req, NOT_FOUND)
        endpoints = rule.backend.endpoints
        if not endpoints:
            self.proxy.on_unavailable(rule)
            return self._answer(req, UNAVAILABLE)
        addr = random.choice(endpoints)
        up = self.proxy.pool.take(addr)
        if up is not None:
            up.begin(self, req)
        else:
            asyncio.ensure_future(self._connect(req, addr))

    async def _connect(self, req: _Request, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await asyncio.wait_for(loop.create_connection(lambda: Upstream(self.proxy.pool, addr), *addr), 5)
        except (OSError, TimeoutError) as e:
            log.debug("backend %s:%s: %s", *addr, e)
            return self._answer(req, BAD_GATEWAY)
        if self.transport is None:  # the client left meanwhile
            up.close()
            return
        up.begin(self, req)

    def _answer(self, req: _Request, what: tuple[int, str, str]) -> None:
        self.write(local_response(*what, keep_alive=req.keep_alive and req.complete))
        req.keep_alive = req.keep_alive and req.complete  # an unread body: the connection is done
        self.response_done(req)

    def response_done(self, req: _Request) -> None:
        self.current = None
        if not req.keep_alive:
            self.close()
            return
        if self.queue:
            self._start(self.queue.popleft())
        if not self.queue:
            self.resume("queue")

    def upstream_failed(self, req: _Request, up: Upstream) -> None:
        if up.received == 0 and req.retryable and req.complete:
            # A kept-alive connection the backend had just closed: once more on a fresh one.
            req.retryable = False
            req.upstream = None
            if req.rule is not None and req.rule.backend.endpoints:
                asyncio.ensure_future(self._connect(req, up.addr))
                return
        if up.received == 0:
            self._answer(req, BAD_GATEWAY)
        else:
            self.close()

    def start_splice(self, up: Upstream) -> None:
        self.splice = up
        self.current = None
        self.upgrading = None


class IngressProxy:
    def __init__(self, table: Callable[[], Table], on_unavailable: Callable[[Rule], None] | None = None) -> None:
        self.table = table
        self.on_unavailable = on_unavailable or (lambda rule: None)
        self.pool = Pool()
        self.servers: list[asyncio.AbstractServer] = []

    async def serve(self, host: str, port: int, *, scheme: str = "http",
                    ssl_context: ssl.SSLContext | None = None) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ClientConnection(self, scheme), host, port, ssl=ssl_context,
                                          backlog=1024, reuse_address=True)
        self.servers.append(server)
        return server

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()
        self.pool.close()
