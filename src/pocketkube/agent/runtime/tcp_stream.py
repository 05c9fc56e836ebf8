"""A forwarded TCP connection to a pod (a PortStream), without asyncio's StreamReader.

StreamReader copies every byte twice (into its bytearray, then out of it); a port-forward relays
hundreds of MB/s, and those copies were a quarter of the agent's CPU. Here the chunks the event
loop reads are handed on as they are, with reading paused while HIGH_WATER bytes wait unread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket

HIGH_WATER = 4 * 1024 * 1024  # unread bytes buffered before the pod's socket is paused
# Out going: the transport's buffer may hold this much before writers wait (the default 64 KiB
# makes every large message wait for the socket).
WRITE_HIGH_WATER = 4 * 1024 * 1024


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.transport: asyncio.Transport | None = None
        self.readable = asyncio.Event()
        self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        self.readable.set()
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self.readable.set()
        return True  # keep our half open: the client may still be sending

    def connection_lost(self, exc) -> None:
        self.eof = True
        self.readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def take(self) -> bytes:
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if not self.chunks:
            self.readable.clear()
        if self._paused and self.buffered <= HIGH_WATER // 2 and self.transport is not None:
            self._paused = False
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()
        return data

    async def writable(self) -> None:
        await self._writable.wait()


class TcpPortStream:
    """A forwarded connection: a TCP connection from the agent to the pod. A failed connect
    raises StreamError in the runtime instead of setting `error`."""

    error = None

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpPortStream:
        """Raises OSError as the connect does."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_Protocol, host, port)
        return cls(transport, protocol)

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> TcpPortStream:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_Protocol, sock=sock)
        return cls(transport, protocol)

    async def read(self) -> bytes:
        """The pod's next bytes, as read; b"" once it half-closed or the connection is gone."""
        p = self._protocol
        while not p.chunks:
            if p.eof:
                return b""
            await p.readable.wait()
        return p.take()

    async def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("the connection to the pod is closed")
        self._transport.write(data)
        await self._protocol.writable()

    async def write_eof(self) -> None:
        if not self._transport.is_closing() and self._transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self._transport.write_eof()

    async def close(self) -> None:
        self._transport.close()


def connect_error(host: str, port: int, e: OSError) -> str:
    """The kubelet's words for a failed dial, with the pod's address as the namespace."""
    reason = os.strerror(e.errno).lower() if e.errno else str(e)
    return (f'failed to connect to localhost:{port} inside namespace "{host}", '
            f"IPv4: dial tcp4 {host}:{port}: connect: {reason}")
