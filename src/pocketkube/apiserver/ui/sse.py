"""Server-Sent Events: framing (pure) and the bounds on open streams.

A stream's events go through a bounded queue: a client that stops reading fills it, and then
the stream is closed rather than buffered without end (the browser's EventSource reconnects and
gets a fresh snapshot). Streams are capped per user and in age, and all end at shutdown.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

# Tests shrink the queue through this (filling 64 events behind full socket buffers takes long).
QUEUE_ENV = "POCKETKUBE_UI_STREAM_QUEUE"
QUEUE_EVENTS = int(os.environ.get(QUEUE_ENV, "64"))
MAX_STREAMS_PER_USER = 32
MAX_AGE_SECONDS = 30 * 60
RETRY_MS = 2000
KEEPALIVE_SECONDS = 15.0


def frame(event: str | None, data, event_id: str | None = None) -> bytes:
    """One event. `data` (a str, bytes or JSON-able value) is split into `data:` lines, so a
    newline in it cannot end the event early or forge a field."""
    if not isinstance(data, (str, bytes)):
        data = orjson.dumps(data)
    text = data.decode() if isinstance(data, bytes) else data
    out = []
    if event:
        out.append(f"event: {_field(event)}")
    if event_id is not None:
        out.append(f"id: {_field(event_id)}")
    out.extend(f"data: {line}" for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return ("\n".join(out) + "\n\n").encode()


def _field(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def comment(text: str) -> bytes:
    return f": {_field(text)}\n\n".encode()


def retry(ms: int = RETRY_MS) -> bytes:
    return f"retry: {int(ms)}\n\n".encode()


class StreamClosed(Exception):
    """The stream was closed: its client lagged, it grew too old, or the server is stopping."""


CLOSE = object()


@dataclass(eq=False)
class Stream:
    """One open event stream: a bounded queue of encoded events, closed when a put finds it full."""
    user: str
    max_events: int = QUEUE_EVENTS
    opened: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue = field(init=False)
    closed: str = ""  # why, once closed
    on_overflow: Callable[[], object] | None = None  # drops the connection of a client that lags

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.max_events + 1)  # +1: room for the close marker

    def put(self, chunk: bytes) -> bool:
        """Queue `chunk`; False (and the stream closed) when the client is too far behind."""
        if self.closed:
            return False
        if self.queue.qsize() >= self.max_events:
            self.close("client too slow")
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        self.queue.put_nowait(chunk)
        return True

    def close(self, why: str) -> None:
        if not self.closed:
            self.closed = why
            try:
                self.queue.put_nowait(CLOSE)
            except asyncio.QueueFull:
                pass

    def queued_bytes(self) -> int:
        return sum(len(c) for c in self.queue._queue if isinstance(c, bytes))  # noqa: SLF001 - a gauge


class Streams:
    """Every open stream, capped per user; `close_all` at shutdown."""

    def __init__(self, per_user: int = MAX_STREAMS_PER_USER) -> None:
        self.per_user = per_user
        self.open: set[Stream] = set()

    def count(self, user: str) -> int:
        return sum(1 for s in self.open if s.user == user)

    def add(self, stream: Stream) -> bool:
        if self.count(stream.user) >= self.per_user:
            return False
        self.open.add(stream)
        return True

    def remove(self, stream: Stream) -> None:
        self.open.discard(stream)

    def close_all(self, why: str = "server shutting down") -> None:
        for s in list(self.open):
            s.close(why)
