"""SPDY/3.1 sessions over any byte transport, server and client roles.

`SpdySession` is transport-agnostic: it is given a synchronous `write(bytes)` and is fed the
peer's bytes with `feed()`/`feed_eof()`; its streams are read and written with asyncio. The
asyncio glue for a TCP/TLS client (`connect_spdy`, the HTTP/1.1 upgrade kubectl and the kubelet
use) is in `spdy_client.py`; the frame codec in `spdy_frames.py`.

Flow control: the Go peers (moby/spdystream: kubectl, kubelet, containerd) neither send
WINDOW_UPDATE nor honour windows, so enforcing SPDY/3.1's 64 KiB windows against them would
stall every stream after 64 KiB. Send windows are therefore enforced only once the peer shows
it does flow control (it sent a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting), and we always
send WINDOW_UPDATEs as the application consumes data, so a peer that enforces is never stalled.
Receive-side memory is bounded by pausing the transport (`pause_reading`) when too much is
buffered and unread. A session starts by sending SETTINGS (its initial window) and a session
WINDOW_UPDATE, so it must be created only once the transport carries SPDY.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pocketkube.streams import spdy_frames as fr
from pocketkube.streams.spdy_frames import SpdyProtocolError  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

# Largest DATA frame we send. client-go's spdystream pays per frame (a channel hand-off per frame):
# 256 KiB frames instead of 64 KiB cut kubectl's CPU per forwarded GB by ~30 %.
MAX_CHUNK = 256 * 1024
# The receive window we advertise (SETTINGS for streams, a WINDOW_UPDATE for the session) right
# at the start: large, so that a peer that does flow control needs a WINDOW_UPDATE only every
# 8 MiB instead of every 32 KiB (memory is bounded by pausing the transport, not by windows).
RECV_WINDOW = 16 * 1024 * 1024
PAUSE_ABOVE = 4 * 1024 * 1024  # unread bytes buffered over all streams before pausing the peer
RESUME_BELOW = 1024 * 1024


class SpdyError(ConnectionError):
    """The session or stream is gone (closed, reset, refused, protocol error)."""


class SpdyStreamError(SpdyError):
    def __init__(self, message: str, status: int = fr.CANCEL) -> None:
        super().__init__(message)
        self.status = status


class SpdyUpgradeError(SpdyError):
    """The HTTP/1.1 upgrade to SPDY/3.1 was answered with something other than 101."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"unable to upgrade connection: {body}" if body else
                         f"unable to upgrade connection: HTTP {status}")
        self.status = status
        self.body = body


class SpdyStream:
    """One stream of a session. `read()` returns b"" after the peer's FIN or RST; `write` is
    synchronous (it frames and hands bytes to the session) and `drain()` waits for room."""

    def __init__(self, session: SpdySession, stream_id: int, headers: dict[str, str], *,
                 incoming: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.reply_headers: dict[str, str] = {}
        self.incoming = incoming
        self.replied = False
        self.reset_status: int | None = None  # set when either side reset the stream
        self.local_closed = False
        self.remote_closed = False
        self._buf: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._unacked = 0  # consumed bytes not yet given back with a WINDOW_UPDATE
        self._readable = asyncio.Event()
        self._send_window = session._peer_initial_window
        self._out: collections.deque[bytes] = collections.deque()
        self._out_fin = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._reply_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.headers}>"

    # -- application side -----------------------------------------------------------------

    def reply(self, headers: dict[str, str] | None = None, *, fin: bool = False) -> None:
        """Accept a stream the peer opened (SYN_REPLY)."""
        if self.replied or not self.incoming or self._dead():
            return
        self.replied = True
        self.session._send(fr.encode_syn_reply(self.session._enc,
                                               fr.SynReply(self.id, headers or {}, fin)))
        if fin:
            self.local_closed = True
            self._maybe_done()

    async def read(self, n: int = -1) -> bytes:
        while not self._buf:
            if self.remote_closed or self.reset_status is not None or self.session.is_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        if n < 0 or n >= self._buffered:
            data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
            self._buf.clear()
        else:
            parts, size = [], 0
            while size < n:
                chunk = self._buf.popleft()
                if size + len(chunk) > n:
                    cut = n - size
                    self._buf.appendleft(chunk[cut:])
                    chunk = chunk[:cut]
                parts.append(chunk)
                size += len(chunk)
            data = b"".join(parts)
        self._buffered -= len(data)
        self.session._consumed(self, len(data))
        return data

    def write(self, data: bytes) -> None:
        if self.local_closed or self.reset_status is not None or self.session.is_closed:
            raise SpdyStreamError(f"stream {self.id} is closed for writing")
        if not data:
            return
        self._autoreply()
        self._out.append(bytes(data))
        self._flush()

    async def drain(self) -> None:
        while self._out and self.reset_status is None and not self.session.is_closed:
            self._writable.clear()
            await self._writable.wait()
        if self.reset_status is not None:
            raise SpdyStreamError(f"stream {self.id} was reset", self.reset_status)
        await self.session._drain_transport()

    def close_write(self) -> None:
        """Half-close (FIN): no more data from us; reading goes on."""
        if self.local_closed or self.reset_status is not None or self.session.is_closed:
            return
        self._autoreply()
        self.local_closed = True
        self._out_fin = True
        self._flush()

    def reset(self, status: int = fr.CANCEL) -> None:
        if self._dead():
            return
        self.session._send(fr.encode_rst_stream(self.id, status))
        self._on_reset(status)

    @property
    def done(self) -> bool:
        return self._dead() or (self.local_closed and self.remote_closed and not self._out)

    # -- session side ---------------------------------------------------------------------

    def _dead(self) -> bool:
        return self.reset_status is not None or self.session.is_closed

    def _autoreply(self) -> None:
        if self.incoming and not self.replied:
            self.reply()

    def _on_data(self, data: bytes, fin: bool) -> None:
        if data:
            self._buf.append(data)
            self._buffered += len(data)
            self.session._buffered_delta(len(data))
        if fin:
            self.remote_closed = True
        self._readable.set()
        if fin:
            self._maybe_done()

    def _on_reset(self, status: int, *, keep_received: bool = False) -> None:
        self.reset_status = status
        self.local_closed = self.remote_closed = True
        if not keep_received:
            self.session._buffered_delta(-self._buffered)
            self._buf.clear()
            self._buffered = 0
        self._out.clear()
        self._readable.set()
        self._writable.set()
        if self._reply_waiter is not None and not self._reply_waiter.done():
            self._reply_waiter.set_exception(
                SpdyStreamError(f"stream {self.id} was reset by the peer (status {status})",
                                status))
        self.session._forget(self)

    def _on_session_end(self) -> None:
        self._readable.set()
        self._writable.set()
        if self._reply_waiter is not None and not self._reply_waiter.done():
            self._reply_waiter.set_exception(SpdyError("SPDY session closed"))

    def _flush(self) -> None:
        s = self.session
        while self._out:
            room = MAX_CHUNK
            if s._flow:
                room = min(room, self._send_window, s._send_window)
                if room <= 0:
                    return
            chunk = self._out[0]
            if len(chunk) > room:
                self._out[0] = chunk[room:]
                chunk = chunk[:room]
            else:
                self._out.popleft()
            self._send_window -= len(chunk)
            s._send_window -= len(chunk)
            fin = self._out_fin and not self._out
            s._send(fr.encode_data(self.id, chunk, fin))
            if fin:
                self._out_fin = False
        if self._out_fin:
            self._out_fin = False
            s._send(fr.encode_data(self.id, b"", True))
        self._writable.set()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.local_closed and self.remote_closed and not self._out:
            self.session._forget(self)


class SpdySession:
    def __init__(self, write: Callable[[bytes], None], *, client: bool,
                 on_stream: Callable[[SpdyStream], None] | None = None,
                 drain: Callable[[], Awaitable[None]] | None = None,
                 pause_reading: Callable[[bool], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        """`write` takes bytes for the peer; `drain` (optional) waits until the transport has
        room; `pause_reading(True/False)` (optional) stops and restarts reading the transport;
        `on_close` runs once when the session ends (close, EOF or protocol error)."""
        self._write = write
        self.client = client
        self.on_stream = on_stream
        self._drain = drain
        self._pause_reading = pause_reading
        self._on_close = on_close
        self._parser = fr.FrameParser()
        self._enc = fr.HeaderEncoder()
        self._streams: dict[int, SpdyStream] = {}
        self._next_id = 1 if client else 2
        self._next_ping = 1 if client else 2
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._last_peer_id = 0
        self._goaway_received = False
        self._goaway_sent = False
        self._flow = False
        self._peer_initial_window = fr.DEFAULT_WINDOW
        self._send_window = fr.DEFAULT_WINDOW
        self._unacked = 0
        self._buffered = 0
        self._paused = False
        self.is_closed = False
        self.error: str | None = None
        self.closed = asyncio.Event()
        self._send(fr.encode_settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: RECV_WINDOW}))
        self._send(fr.encode_window_update(0, RECV_WINDOW - fr.DEFAULT_WINDOW))

    @property
    def streams(self) -> dict[int, SpdyStream]:
        return dict(self._streams)

    # -- input ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.is_closed or not data:
            return
        try:
            frames = self._parser.feed(data)
        except SpdyProtocolError as e:
            self._protocol_error(str(e))
            return
        for frame in frames:
            if self.is_closed:
                return
            try:
                self._handle(frame)
            except Exception:  # a bug in a handler must not kill the whole connection silently
                log.exception("SPDY frame handling failed: %r", frame)
                self._protocol_error("internal error", fr.GOAWAY_INTERNAL_ERROR)
                return

    def feed_eof(self) -> None:
        self._end()

    def _handle(self, f: fr.Frame) -> None:
        match f:
            case fr.DataFrame():
                stream = self._streams.get(f.stream_id)
                if stream is None or stream.reset_status is not None:
                    # a stream we reset or finished: the peer had not seen it yet; the bytes
                    # still count against the session window, so give them back
                    self._consumed(None, len(f.data))
                    return
                if stream.remote_closed:
                    self._consumed(None, len(f.data))
                    stream.reset(fr.STREAM_ALREADY_CLOSED)
                    return
                stream._on_data(f.data, f.fin)
            case fr.SynStream():
                self._on_syn_stream(f)
            case fr.SynReply():
                stream = self._streams.get(f.stream_id)
                if stream is None or stream.incoming or stream.replied:
                    return
                stream.replied = True
                stream.reply_headers = f.headers
                if stream._reply_waiter is not None and not stream._reply_waiter.done():
                    stream._reply_waiter.set_result(None)
                if f.fin:
                    stream._on_data(b"", True)
            case fr.Headers():
                stream = self._streams.get(f.stream_id)
                if stream is not None:
                    stream.reply_headers.update(f.headers)
                    if f.fin:
                        stream._on_data(b"", True)
            case fr.RstStream():
                stream = self._streams.get(f.stream_id)
                if stream is not None:
                    # What arrived before the reset stays readable: a Kubernetes streaming server
                    # writes the exec's Status on the error stream, then resets every stream.
                    stream._on_reset(f.status, keep_received=True)
            case fr.Settings():
                window = f.values.get(fr.SETTINGS_INITIAL_WINDOW_SIZE)
                if window is not None:
                    self._flow = True
                    delta = window - self._peer_initial_window
                    self._peer_initial_window = window
                    for stream in self._streams.values():
                        stream._send_window += delta
                    self._flush_all()
            case fr.Ping():
                if (f.id & 1) != (self._next_ping & 1):
                    self._send(fr.encode_ping(f.id))  # the peer's ping: echo it
                else:
                    waiter = self._pings.pop(f.id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
            case fr.GoAway():
                self._goaway_received = True
                for stream in list(self._streams.values()):
                    if not stream.incoming and stream.id > f.last_good_id:
                        stream._on_reset(fr.REFUSED_STREAM)
                if not self._streams:
                    self._end()
            case fr.WindowUpdate():
                self._flow = True
                if f.stream_id == 0:
                    self._send_window += f.delta
                    self._flush_all()
                elif (stream := self._streams.get(f.stream_id)) is not None:
                    stream._send_window += f.delta
                    stream._flush()
            case fr.UnknownControl():
                pass

    def _on_syn_stream(self, f: fr.SynStream) -> None:
        peer_parity = 0 if self.client else 1
        if f.stream_id % 2 != peer_parity or f.stream_id <= self._last_peer_id:
            self._send(fr.encode_rst_stream(f.stream_id, fr.PROTOCOL_ERROR))
            return
        self._last_peer_id = f.stream_id
        if self._goaway_sent or self.on_stream is None:
            self._send(fr.encode_rst_stream(f.stream_id, fr.REFUSED_STREAM))
            return
        stream = SpdyStream(self, f.stream_id, f.headers, incoming=True)
        stream.remote_closed = f.fin or f.unidirectional
        stream.local_closed = f.unidirectional
        self._streams[f.stream_id] = stream
        try:
            self.on_stream(stream)
        except Exception:
            log.exception("SPDY stream handler failed for %r", stream)
            stream.reset(fr.INTERNAL_ERROR)

    # -- output ---------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if not self.is_closed:
            self._write(data)

    async def _drain_transport(self) -> None:
        if self._drain is not None and not self.is_closed:
            await self._drain()

    def _flush_all(self) -> None:
        for stream in list(self._streams.values()):
            if stream._out:
                stream._flush()

    def _consumed(self, stream: SpdyStream | None, n: int) -> None:
        """The application took n bytes: give them back to the peer's send windows."""
        if n <= 0:
            return
        if stream is not None:
            self._buffered_delta(-n)
            if not stream.remote_closed and stream.reset_status is None:
                stream._unacked += n
                if stream._unacked >= RECV_WINDOW // 2:
                    self._send(fr.encode_window_update(stream.id, stream._unacked))
                    stream._unacked = 0
        self._unacked += n
        if self._unacked >= RECV_WINDOW // 2:
            self._send(fr.encode_window_update(0, self._unacked))
            self._unacked = 0

    def _buffered_delta(self, n: int) -> None:
        self._buffered += n
        if self._pause_reading is None:
            return
        if not self._paused and self._buffered > PAUSE_ABOVE:
            self._paused = True
            self._pause_reading(True)
        elif self._paused and self._buffered < RESUME_BELOW:
            self._paused = False
            self._pause_reading(False)

    def _forget(self, stream: SpdyStream) -> None:
        self._streams.pop(stream.id, None)
        if self._goaway_received and not self._streams:
            self._end()

    # -- application side -----------------------------------------------------------------

    async def open_stream(self, headers: dict[str, str], *, fin: bool = False) -> SpdyStream:
        """SYN_STREAM, then wait for the peer's SYN_REPLY (SpdyStreamError if it resets)."""
        if self.is_closed or self._goaway_received or self._goaway_sent:
            raise SpdyError("SPDY session closed")
        stream_id = self._next_id
        if stream_id > fr.MAX_STREAM_ID:
            raise SpdyError("SPDY stream ids exhausted")
        self._next_id += 2
        stream = SpdyStream(self, stream_id, dict(headers), incoming=False)
        stream.local_closed = fin
        stream._reply_waiter = asyncio.get_running_loop().create_future()
        self._streams[stream_id] = stream
        self._send(fr.encode_syn_stream(self._enc, fr.SynStream(stream_id, stream.headers, fin)))
        try:
            await stream._reply_waiter
        except asyncio.CancelledError:
            stream.reset()
            raise
        return stream

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip of a PING, in seconds."""
        if self.is_closed:
            raise SpdyError("SPDY session closed")
        loop = asyncio.get_running_loop()
        ping_id = self._next_ping
        self._next_ping += 2
        waiter = self._pings[ping_id] = loop.create_future()
        start = loop.time()
        self._send(fr.encode_ping(ping_id))
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            self._pings.pop(ping_id, None)
        return loop.time() - start

    def close(self) -> None:
        """GOAWAY, then end every stream (readers get b"", writers SpdyError)."""
        if self.is_closed:
            return
        if not self._goaway_sent:
            self._goaway_sent = True
            self._send(fr.encode_goaway(self._last_peer_id, fr.GOAWAY_OK))
        self._end()

    def _protocol_error(self, message: str, status: int = fr.GOAWAY_PROTOCOL_ERROR) -> None:
        log.info("SPDY session error: %s", message)
        self.error = message
        if not self._goaway_sent:
            self._goaway_sent = True
            self._send(fr.encode_goaway(self._last_peer_id, status))
        self._end()

    def _end(self) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        for stream in list(self._streams.values()):
            stream._on_session_end()
        self._streams.clear()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(SpdyError("SPDY session closed"))
        self._pings.clear()
        if self._paused and self._pause_reading is not None:
            self._paused = False
            with contextlib.suppress(Exception):
                self._pause_reading(False)
        self.closed.set()
        if self._on_close is not None:
            self._on_close()


async def connect_spdy(url: str, headers: dict[str, str], *, protocols: list[str],
                       ssl=None, method: str = "POST",
                       timeout: float = 30.0) -> tuple[SpdySession, str]:
    """Client role over a fresh TCP (or TLS) connection with kubectl's HTTP/1.1 upgrade.
    Returns the session and the protocol the server chose (X-Stream-Protocol-Version)."""
    from pocketkube.streams.spdy_client import connect

    return await connect(url, headers, protocols=protocols, ssl=ssl, method=method,
                         timeout=timeout)
