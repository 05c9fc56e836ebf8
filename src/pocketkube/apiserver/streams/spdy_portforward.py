"""pods/portforward over SPDY/3.1, as the kubelet serves it (portforward/httpstream.go), in both
carriers: raw `Upgrade: SPDY/3.1` (`X-Stream-Protocol-Version: portforward.k8s.io`) and the
WebSocket tunnel kubectl >= 1.31 uses by default (`SPDY/3.1+portforward.k8s.io`).

Each forwarded connection is a pair of client-opened streams sharing a `requestID` header: an
error stream (which the client half-closes at once and reads to EOF) and a data stream, both
naming the pod's `port`. Once both are there, one internal stream to the agent
(`relay.open_port`) carries the bytes; the pod's end finishes the data stream (FIN), an error
is written on the error stream in the kubelet's wording, and the error stream is then closed.
Connections are independent: one failing ends nothing else; the session ends with the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiohttp import web

from pocketkube.apiserver.streams import spdy_conn
from pocketkube.streams import spdy_frames
from pocketkube.streams.spdy import SpdySession, SpdyStream

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
TUNNEL_SUBPROTOCOL = spdy_conn.TUNNEL_PREFIX + PROTOCOL
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's default --streaming-connection... creation timeout
HALF_CLOSE_GRACE = 1.0  # after the pod's side ended, how long the client's side may go on
# At most this much per message to the agent: its WebSocket (aiohttp) refuses messages over 4 MiB,
# and several MiB can be buffered in a stream when the client writes faster than the pod reads.
RELAY_CHUNK = 256 * 1024


def _relay():
    from pocketkube.apiserver.streams import relay

    return relay


def check_stream_headers(headers: dict[str, str]) -> str | None:
    """The kubelet's checks of a new stream (httpStreamReceived); the error, or None."""
    port = headers.get("port", "")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or int(port) > 65535:
        return f'unable to parse "{port}" as a port'
    if int(port) < 1:
        return f'port "{port}" must be > 0'
    stream_type = headers.get("streamtype", "")
    if not stream_type:
        return '"streamType" header is required'
    if stream_type not in ("error", "data"):
        return f'invalid stream type "{stream_type}"'
    return None


def request_id(stream: SpdyStream) -> str:
    """The `requestID` header; clients older than it get the kubelet's guess from stream ids."""
    rid = stream.headers.get("requestid")
    if rid:
        return rid
    if stream.headers.get("streamtype") == "data":
        return str(stream.id - 2)
    return str(stream.id)


@dataclass
class _Pair:
    request_id: str
    error: SpdyStream | None = None
    data: SpdyStream | None = None
    monitor: asyncio.Task | None = None

    def add(self, stream: SpdyStream) -> str | None:
        kind = stream.headers.get("streamtype")
        if kind == "error":
            if self.error is not None:
                return "error stream already assigned"
            self.error = stream
        elif kind == "data":
            if self.data is not None:
                return "data stream already assigned"
            self.data = stream
        else:
            return f'unexpected stream type "{kind}"'
        return None

    @property
    def complete(self) -> bool:
        return self.error is not None and self.data is not None

    def print_error(self, message: str) -> None:
        if self.error is not None and not self.error.local_closed:
            with contextlib.suppress(ConnectionError):
                self.error.write(message.encode())


class PortForwardSession:
    """The streams of one client session, paired and forwarded."""

    def __init__(self, request: web.Request, pod: dict, relay=None, *,
                 creation_timeout: float = STREAM_CREATION_TIMEOUT) -> None:
        self.request = request
        self.pod = pod
        self.relay = relay or _relay()
        self.creation_timeout = creation_timeout
        self.pairs: dict[str, _Pair] = {}
        self.tasks: set[asyncio.Task] = set()
        self.session: SpdySession | None = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def on_stream(self, stream: SpdyStream) -> None:
        problem = check_stream_headers(stream.headers)
        if problem is not None:
            log.info("port-forward: refusing stream %d: %s", stream.id, problem)
            stream.reset(spdy_frames.REFUSED_STREAM)
            return
        stream.reply()
        rid = request_id(stream)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = _Pair(rid)
            pair.monitor = self._spawn(self._monitor(pair))
        problem = pair.add(stream)
        if problem is not None:
            message = f"error processing stream for request {rid}: {problem}"
            log.info("port-forward: %s", message)
            pair.print_error(message)
            stream.reset()
        elif pair.complete:
            if pair.monitor is not None:
                pair.monitor.cancel()
            self._spawn(self._forward(pair))

    async def _monitor(self, pair: _Pair) -> None:
        await asyncio.sleep(self.creation_timeout)
        if not pair.complete and self.pairs.get(pair.request_id) is pair:
            pair.print_error(f"(conn={id(self)}, request={pair.request_id}) timed out waiting for streams")
            self._finish(pair)

    def _finish(self, pair: _Pair) -> None:
        self.pairs.pop(pair.request_id, None)
        for stream in (pair.error, pair.data):
            if stream is not None:
                stream.close_write()

    def _error_message(self, port: int, message: str) -> str:
        if message.startswith("error forwarding port"):
            return message
        meta = self.pod["metadata"]
        return f"error forwarding port {port} to pod {meta.get('name', '')}, uid {meta.get('uid', '')}: {message}"

    async def _forward(self, pair: _Pair) -> None:
        data, port = pair.data, int(pair.data.headers["port"])
        chan = None
        try:
            try:
                chan = await self.relay.open_port(self.request, self.pod, port)
            except self.relay.AgentError as e:
                pair.print_error(self._error_message(port, e.body or f"HTTP {e.status}"))
                return
            except Exception as e:  # noqa: BLE001 - the agent unreachable: this connection's error only
                pair.print_error(self._error_message(port, getattr(e, "message", None) or str(e)))
                return
            await self._pump(data, chan)
            if chan.error:
                pair.print_error(self._error_message(port, chan.error))
        except ConnectionError:
            pass  # the client reset the stream or went away
        finally:
            if chan is not None:
                with contextlib.suppress(Exception):
                    await chan.close()
            self._finish(pair)

    async def _pump(self, data: SpdyStream, chan) -> None:
        async def up() -> None:  # client → pod; the client's FIN half-closes towards the pod
            while chunk := await data.read(RELAY_CHUNK):
                await chan.write(chunk)
            if data.reset_status is None:
                await chan.write_eof()

        async def down() -> None:  # pod → client
            while chunk := await chan.read():
                data.write(chunk)
                await data.drain()

        up_task = asyncio.ensure_future(up())
        try:
            await down()
            data.close_write()
            # as containerd's forwarder: the client side gets a short grace to finish after the pod's
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.shield(up_task), HALF_CLOSE_GRACE)
        finally:
            up_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await up_task

    async def aclose(self) -> None:
        """The client is gone: end every connection (their relays are closed by _forward)."""
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        self.pairs.clear()


async def serve_spdy_portforward(request: web.Request, pod: dict, *, relay=None) -> web.StreamResponse:
    """`Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version: portforward.k8s.io`."""
    offered = spdy_conn.offered_protocols(request)
    if spdy_conn.negotiate(offered, [PROTOCOL]) is None:
        return spdy_conn.handshake_refusal(offered, [PROTOCOL])
    forwarder = PortForwardSession(request, pod, relay)
    resp, session = await spdy_conn.accept_raw(request, PROTOCOL, forwarder.on_stream)
    forwarder.session = session
    try:
        await session.closed.wait()
    finally:
        session.close()
        await forwarder.aclose()
    return resp


async def serve_tunneled_portforward(request: web.Request, pod: dict, *, relay=None) -> web.StreamResponse:
    """A WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io` carrying the SPDY session."""
    forwarder = PortForwardSession(request, pod, relay)
    ws, tunnel = await spdy_conn.accept_tunnel(request, TUNNEL_SUBPROTOCOL, forwarder.on_stream)
    forwarder.session = tunnel.session
    try:
        await tunnel.session.closed.wait()
    finally:
        await forwarder.aclose()
        await tunnel.aclose()
    return ws
