"""The reverse proxy: one aiohttp server answering on every listener, routing by the current Table.

Bodies stream both ways (request bodies as they arrive, responses chunk by chunk); connections to
backends are kept alive in one pool; WebSocket upgrades are passed through (the proxy speaks
WebSocket to both sides and relays messages); X-Forwarded-* tell the backend who asked.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import aiohttp
from aiohttp import web

from pocketkube.ingress.routing import Rule, Table

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's: never forwarded.
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE",
    "Trailer", "Transfer-Encoding", "Upgrade"))
# Responses up to this size are read whole and sent in one write (most API and page responses).
SMALL_BODY = 256 * 1024
CHUNK = 64 * 1024

NOT_FOUND = "default backend - 404\n"
UNAVAILABLE = "503 Service Temporarily Unavailable\n"


def forwarded_headers(request: web.BaseRequest, *, scheme: str) -> dict[str, str]:
    """The request's end-to-end headers, plus who asked (X-Forwarded-*, X-Real-IP)."""
    connection_tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in connection_tokens:
            continue
        if lname in out:
            out[lname] += ", " + value
        else:
            out[lname] = value
    peer = request.remote or ""
    prior = out.get("x-forwarded-for")
    out["x-forwarded-for"] = f"{prior}, {peer}" if prior else peer
    out["x-real-ip"] = peer
    out["x-forwarded-host"] = request.host
    out["x-forwarded-proto"] = scheme
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        out["x-forwarded-port"] = str(sockname[1])
    return out


def _response_headers(resp: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    connection_tokens = {t.strip().lower() for t in resp.headers.get("Connection", "").split(",")}
    return [(k, v) for k, v in resp.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() not in connection_tokens and k.lower() != "content-length"]


class IngressProxy:
    def __init__(self, table: Callable[[], Table], on_unavailable: Callable[[Rule], None] | None = None) -> None:
        self._table = table
        self._on_unavailable = on_unavailable or (lambda rule: None)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # One pool for every backend; keep-alive connections are reused across requests.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=None,
                                             use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                                                  skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept",
                                                                     "Content-Type"))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self, *, scheme: str) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, scheme)
        app = web.Application(handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def handle(self, request: web.Request, scheme: str) -> web.StreamResponse:
        rule = self._table().route(request.host, request.path)
        if rule is None:
            return web.Response(status=404, text=NOT_FOUND)
        if not rule.backend.endpoints:
            self._on_unavailable(rule)
            return web.Response(status=503, text=UNAVAILABLE)
        ip, port = random.choice(rule.backend.endpoints)
        target = f"{'[' + ip + ']' if ':' in ip else ip}:{port}"
        headers = forwarded_headers(request, scheme=scheme)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, target, headers)
        try:
            return await self._http(request, target, headers)
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            log.debug("backend %s failed: %s", target, e)
            return web.Response(status=502, text="502 Bad Gateway\n")

    async def _http(self, request: web.Request, target: str, headers: dict[str, str]) -> web.StreamResponse:
        body = None
        if request.body_exists:
            body = request.content.iter_chunked(CHUNK)
        url = f"http://{target}{request.raw_path}"
        async with self.session.request(request.method, url, headers=headers, data=body, allow_redirects=False,
                                        compress=None, chunked=None) as resp:
            length = resp.content_length
            if length is not None and length <= SMALL_BODY:
                data = await resp.read()
                out = web.Response(status=resp.status, reason=resp.reason, body=data)
                for k, v in _response_headers(resp):
                    out.headers.add(k, v)
                return out
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            for k, v in _response_headers(resp):
                out.headers.add(k, v)
            if length is not None:
                out.content_length = length
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(CHUNK):
                await out.write(chunk)
            await out.write_eof()
            return out

    async def _websocket(self, request: web.Request, target: str, headers: dict[str, str]) -> web.StreamResponse:
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        upstream_headers = {k: v for k, v in headers.items() if not k.startswith("sec-websocket")}
        try:
            upstream = await self.session.ws_connect(f"http://{target}{request.raw_path}", headers=upstream_headers,
                                                     protocols=protocols, autoping=False, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            return web.Response(status=e.status or 502, text=f"{e.message}\n")
        except aiohttp.ClientError:
            return web.Response(status=502, text="502 Bad Gateway\n")
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (),
                                       autoping=False, max_msg_size=0)
        await client.prepare(request)

        async def pump(src, dst) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == aiohttp.WSMsgType.PING:
                    await dst.ping(msg.data)
                elif msg.type == aiohttp.WSMsgType.PONG:
                    await dst.pong(msg.data)
                else:
                    break
            await dst.close(code=src.close_code or aiohttp.WSCloseCode.OK)

        tasks = [asyncio.ensure_future(pump(client, upstream)), asyncio.ensure_future(pump(upstream, client))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await client.close()
        return client
