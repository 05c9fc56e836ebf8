"""A synchronous `write(bytes)` over an async `send(bytes)`, for protocols whose state machine
writes synchronously (the SPDY session) but whose transport is awaited (a WebSocket carrying it)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable


class AsyncWriter:
    """Adapts an async `send(bytes)` (a WebSocket's send_bytes) to the session's synchronous
    `write`: bytes are queued and sent in order by one task, coalesced up to `max_message`."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], *,
                 max_message: int = 1024 * 1024, high_water: int = 4 * 1024 * 1024) -> None:
        # Few large messages: each costs a WebSocket frame, a TLS record and a syscall here and a
        # message hand-off in the client; a 4 MiB queue keeps the pipe full between wake-ups.
        self._send = send
        self._max = max_message
        self._high = high_water
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    def write(self, data: bytes) -> None:
        if self._closed or self.error is not None:
            return
        self._queue.append(data)
        self._queued += len(data)
        self._idle.clear()
        if self._queued > self._high:
            self._room.clear()
        self._wakeup.set()

    async def drain(self) -> None:
        """Wait until the queue is below its high-water mark."""
        await self._until(self._room)
        if self.error is not None:
            raise ConnectionError(f"transport failed: {self.error}")

    async def flush(self) -> None:
        """Wait until everything queued so far was sent."""
        await self._until(self._idle)

    async def aclose(self) -> None:
        """Send what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task

    def abort(self) -> None:
        self._closed = True
        self._task.cancel()

    async def _until(self, event: asyncio.Event) -> None:
        if event.is_set() or self._task.done():
            return
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([self._task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _run(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    parts, size = [], 0
                    while self._queue and size < self._max:
                        chunk = self._queue.popleft()
                        parts.append(chunk)
                        size += len(chunk)
                    self._queued -= size
                    await self._send(b"".join(parts))
                    if self._queued <= self._high // 2:
                        self._room.set()
                self._room.set()
                self._idle.set()
                if self._closed:
                    return
        except Exception as e:  # the transport broke: writers see it on drain
            self.error = e
        finally:
            self._room.set()
            self._idle.set()
