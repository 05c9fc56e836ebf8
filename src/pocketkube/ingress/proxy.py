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

from pocketkube.ingress.backends import Pool, Request, Upstream
from pocketkube.ingress.routing import Rule, Table

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection: never forwarded.
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
CLIENT_IDLE_TIMEOUT = 75.0  # seconds a client connection may sit between requests (ingress-nginx's)
SWEEP_INTERVAL = 5.0


def local_response(status: int, reason: str, text: str, keep_alive: bool) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}"
            "\r\n").encode() + body


NOT_FOUND = (404, "Not Found", "default backend - 404\n")
UNAVAILABLE = (503, "Service Temporarily Unavailable", "503 Service Temporarily Unavailable\n")
BAD_GATEWAY = (502, "Bad Gateway", "502 Bad Gateway\n")
BAD_REQUEST = (400, "Bad Request", "400 Bad Request\n")
TOO_LARGE = (431, "Request Header Fields Too Large", "431 Request Header Fields Too Large\n")
MAX_HEAD = 64 * 1024  # bytes of request line and headers a client may send (nginx's large buffers: 32k)


class ClientConnection(asyncio.Protocol):
    """One client connection: parses its requests, hands each to a backend, in order."""

    def __init__(self, proxy: IngressProxy, scheme: str) -> None:
        self.proxy = proxy
        self.scheme = scheme.encode()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self.port = b""
        self.current: Request | None = None  # the request whose response is under way
        self.parsing: Request | None = None
        self.queue: deque[Request] = deque()
        self.paused: set[str] = set()
        self.splice: Upstream | None = None
        self.upgrading: Request | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy.clients.add(self)
        self.last_active = self.proxy.loop.time()
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

    def idle_since(self, now: float) -> float:
        """Seconds without a request under way or a byte from the client (0 while busy)."""
        busy = self.current is not None or self.splice is not None or self.parsing is not None
        return 0.0 if busy else now - self.last_active

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
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
        self.last_active = self.proxy.loop.time()
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
            too_large = len(self._url) + self._head_bytes > MAX_HEAD
            self.write(local_response(*(TOO_LARGE if too_large else BAD_REQUEST), keep_alive=False))
            self.close()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD:
            raise ValueError("request line too long")  # the parser reports it as an error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD:
            raise ValueError("headers too large")

    def on_headers_complete(self) -> None:
        req = Request()
        p = self.parser
        req.method = p.get_method()
        req.keep_alive = p.should_keep_alive()
        version = p.get_http_version().encode()
        url, headers = self._url, self._headers
        self._url, self._headers, self._head_bytes = b"", [], 0
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
    def _start(self, req: Request) -> None:
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

    async def _connect(self, req: Request, addr: tuple[str, int]) -> None:
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

    def _answer(self, req: Request, what: tuple[int, str, str]) -> None:
        self.write(local_response(*what, keep_alive=req.keep_alive and req.complete))
        req.keep_alive = req.keep_alive and req.complete  # an unread body: the connection is done
        self.response_done(req)

    def response_done(self, req: Request) -> None:
        self.current = None
        self.last_active = self.proxy.loop.time()
        if not req.keep_alive:
            self.close()
            return
        if self.queue:
            self._start(self.queue.popleft())
        if not self.queue:
            self.resume("queue")

    def upstream_failed(self, req: Request, up: Upstream) -> None:
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
        self.clients: set[ClientConnection] = set()
        self._sweeper: asyncio.Task | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def endpoints_changed(self, table: Table) -> None:
        """A new table: idle connections to addresses it no longer names go."""
        live = {ep for rules in (*table.exact.values(), *table.wildcard.values(), table.any_host)
                for rule in rules for ep in rule.backend.endpoints}
        if table.default is not None:
            live.update(table.default.backend.endpoints)
        self.pool.prune(live)

    async def _sweep(self) -> None:
        """Close client connections idle longer than CLIENT_IDLE_TIMEOUT."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = self.loop.time()
            for conn in [c for c in self.clients if c.idle_since(now) > CLIENT_IDLE_TIMEOUT]:
                conn.close()

    async def serve(self, host: str, port: int, *, scheme: str = "http",
                    ssl_context: ssl.SSLContext | None = None) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        server = await loop.create_server(lambda: ClientConnection(self, scheme), host, port, ssl=ssl_context,
                                          backlog=1024, reuse_address=True)
        self.servers.append(server)
        return server

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for server in self.servers:
            server.close()
        self.servers.clear()
        for conn in list(self.clients):
            conn.close()
        self.pool.close()
