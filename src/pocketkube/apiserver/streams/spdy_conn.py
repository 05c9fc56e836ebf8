"""SPDY/3.1 sessions on the API server's side of a client connection, in both carriers:

- raw: kubectl's `Upgrade: SPDY/3.1` (its fallback). aiohttp's server only switches protocols
  for `Upgrade: websocket|tcp`; for any other upgrade both of its HTTP parsers (llhttp and the
  pure-Python one) deliver the request and would parse what follows as the next request. So,
  as WebSocketResponse does, the handler answers 101 itself and then installs its own payload
  parser on the connection (`RequestHandler.set_parser`): every byte after that is fed to the
  SPDY session, and connection loss reaches it as `feed_eof`. kubectl sends nothing after its
  request until it has read the 101, so no byte can be parsed as HTTP in between.
- tunnelled: kubectl >= 1.31's port-forward, a WebSocket with subprotocol
  `SPDY/3.1+portforward.k8s.io` whose binary messages carry the SPDY byte stream (client-go's
  TunnelingConnection: one message per write, boundaries meaningless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

from pocketkube.streams.async_writer import AsyncWriter
from pocketkube.streams.spdy import SpdySession, SpdyStream

log = logging.getLogger(__name__)

PROTOCOL_HEADER = "X-Stream-Protocol-Version"
ACCEPTED_HEADER = "X-Accepted-Stream-Protocol-Versions"
TUNNEL_PREFIX = "SPDY/3.1+"
MAX_TUNNEL_MESSAGE = 32 * 1024 * 1024


def offered_protocols(request: web.Request) -> list[str]:
    """X-Stream-Protocol-Version, repeated or comma-separated (httpstream's reading)."""
    out: list[str] = []
    for value in request.headers.getall(PROTOCOL_HEADER, []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def negotiate(offered: list[str], supported: list[str]) -> str | None:
    """The first protocol the client offers that the server supports (httpstream.Handshake)."""
    return next((p for p in offered if p in supported), None)


def handshake_refusal(offered: list[str], supported: list[str]) -> web.Response:
    """httpstream.Handshake's answer when no protocol is common (or none was offered)."""
    if not offered:
        return web.Response(status=400, text=f"unable to upgrade: {PROTOCOL_HEADER} is required\n")
    resp = web.Response(status=403, text="unable to upgrade: unable to negotiate protocol: client supports "
                                         f"[{' '.join(offered)}], server accepts [{' '.join(supported)}]\n")
    for p in supported:
        resp.headers.add(ACCEPTED_HEADER, p)
    return resp


class _SessionFeeder:
    """The payload parser aiohttp's RequestHandler feeds once the connection is ours."""

    def __init__(self, session: SpdySession) -> None:
        self.session = session

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.session.feed(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.session.feed_eof()


async def accept_raw(request: web.Request, protocol: str,
                     on_stream: Callable[[SpdyStream], None]) -> tuple[web.StreamResponse, SpdySession]:
    """Answer 101 to `Upgrade: SPDY/3.1` and run a server session on the connection. The
    handler must return the response only after the session has closed."""
    resp = web.StreamResponse(status=101, reason="Switching Protocols",
                              headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                       PROTOCOL_HEADER: protocol})
    resp.force_close()  # never reuse the connection for HTTP afterwards
    writer = await resp.prepare(request)
    assert writer is not None
    await writer.drain()  # the 101 is on the wire before any frame
    proto = request.protocol
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away during the upgrade")

    def write(data: bytes) -> None:
        if not transport.is_closing():
            transport.write(data)

    async def drain() -> None:
        with contextlib.suppress(ConnectionError):
            await proto._drain_helper()  # the same back-pressure WebSocketWriter uses

    def pause(paused: bool) -> None:
        if not transport.is_closing():
            with contextlib.suppress(RuntimeError):
                (transport.pause_reading if paused else transport.resume_reading)()

    session = SpdySession(write, client=False, on_stream=on_stream, drain=drain, pause_reading=pause,
                          on_close=transport.close)
    proto.set_parser(_SessionFeeder(session))
    proto.keep_alive(False)
    return resp, session


class Tunnel:
    """A server session carried in a WebSocket's binary messages."""

    def __init__(self, ws: web.WebSocketResponse, on_stream: Callable[[SpdyStream], None]) -> None:
        self.ws = ws
        self._readable = asyncio.Event()
        self._readable.set()
        self.writer = AsyncWriter(ws.send_bytes)
        self.session = SpdySession(self.writer.write, client=False, on_stream=on_stream,
                                   drain=self.writer.drain, pause_reading=self._pause)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def _pause(self, paused: bool) -> None:
        (self._readable.clear if paused else self._readable.set)()

    async def _read(self) -> None:
        try:
            while not self.session.is_closed:
                await self._readable.wait()
                msg = await self.ws.receive()
                if msg.type == WSMsgType.BINARY:
                    self.session.feed(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    continue  # not part of the tunnel: client-go sends none
                else:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.session.feed_eof()

    async def aclose(self) -> None:
        """Flush what the session wrote, then close the WebSocket."""
        self.session.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.aclose(), 5)
        self.writer.abort()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)


async def accept_tunnel(request: web.Request, subprotocol: str,
                        on_stream: Callable[[SpdyStream], None]) -> tuple[web.WebSocketResponse, Tunnel]:
    ws = web.WebSocketResponse(protocols=(subprotocol,), max_msg_size=MAX_TUNNEL_MESSAGE)
    await ws.prepare(request)
    return ws, Tunnel(ws, on_stream)
