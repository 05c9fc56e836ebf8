"""The client role of SPDY/3.1 over TCP/TLS: the HTTP/1.1 upgrade kubectl's and the kubelet's
SPDY round-tripper perform (a request with `Connection: Upgrade`, `Upgrade: SPDY/3.1` and one
`X-Stream-Protocol-Version` per protocol offered), then the session on the same connection."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from pocketkube.streams.spdy import SpdyError, SpdySession, SpdyUpgradeError

MAX_RESPONSE_HEAD = 64 * 1024
MAX_ERROR_BODY = 64 * 1024


def build_upgrade_request(method: str, target: str, host: str, headers: dict[str, str],
                          protocols: list[str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: Upgrade",
             "Upgrade: SPDY/3.1", "Content-Length: 0"]
    lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    skip = {"host", "connection", "upgrade", "content-length", "x-stream-protocol-version"}
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in skip]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and (lower-cased) headers of an HTTP/1.1 response head (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise SpdyError(f"malformed HTTP response: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(parts[1]), headers


class _UpgradeProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.session: SpdySession | None = None
        self.response: asyncio.Future[tuple[int, dict[str, str], bytes]] = loop.create_future()
        self._buf = bytearray()
        self._status: int | None = None
        self._headers: dict[str, str] = {}
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)
            return
        self._buf += data
        if self._status is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_RESPONSE_HEAD:
                    self._fail(SpdyError("HTTP response head too large"))
                return
            try:
                self._status, self._headers = parse_response_head(bytes(self._buf[:end]))
            except SpdyError as e:
                self._fail(e)
                return
            del self._buf[:end + 4]
            if self._status == 101:
                self._start_session()
                return
        self._maybe_error_done()

    def _start_session(self) -> None:
        transport = self.transport
        assert transport is not None
        self.session = SpdySession(self._write, client=True, drain=self._drain,
                                   pause_reading=self._pause_reading, on_close=transport.close)
        rest, self._buf = bytes(self._buf), bytearray()
        if not self.response.done():
            self.response.set_result((101, self._headers, b""))
        if rest:
            self.session.feed(rest)

    def _maybe_error_done(self, eof: bool = False) -> None:
        length = self._headers.get("content-length")
        want = int(length) if length and length.isdigit() else None
        if eof or (want is not None and len(self._buf) >= want) or \
                len(self._buf) >= MAX_ERROR_BODY:
            body = bytes(self._buf[:want if want is not None else MAX_ERROR_BODY])
            if not self.response.done():
                self.response.set_result((self._status or 0, self._headers, body))

    def _fail(self, exc: BaseException) -> None:
        if not self.response.done():
            self.response.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool | None:
        if self.session is not None:
            self.session.feed_eof()
        elif self._status is not None:
            self._maybe_error_done(eof=True)
        else:
            self._fail(SpdyError("connection closed before the upgrade response"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.feed_eof()
        elif not self.response.done():
            self._fail(SpdyError(f"connection lost during the upgrade: {exc or 'EOF'}"))
        self._write_paused = False
        self._wake_drain()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _pause_reading(self, pause: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(RuntimeError):
            (self.transport.pause_reading if pause else self.transport.resume_reading)()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    async def _drain(self) -> None:
        if self._write_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter


async def connect(url: str, headers: dict[str, str], *, protocols: list[str], ssl=None,
                  method: str = "POST", timeout: float = 30.0) -> tuple[SpdySession, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or "localhost"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    loop = asyncio.get_running_loop()
    if secure and ssl is None:
        ssl = True
    transport, proto = await asyncio.wait_for(
        loop.create_connection(lambda: _UpgradeProtocol(loop), host, port,
                               ssl=ssl if secure else None), timeout)
    try:
        transport.write(build_upgrade_request(method, target, netloc, headers, protocols))
        status, resp_headers, body = await asyncio.wait_for(asyncio.shield(proto.response),
                                                            timeout)
    except BaseException:
        transport.close()
        raise
    if status != 101:
        transport.close()
        raise SpdyUpgradeError(status, body.decode("utf-8", "replace").strip())
    assert proto.session is not None
    return proto.session, resp_headers.get("x-stream-protocol-version", "")
