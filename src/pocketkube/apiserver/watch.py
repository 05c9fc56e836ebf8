"""Watch streams: framing, initial events, bookmarks, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.registry.store import INITIAL_EVENTS_END, ObjectStore, WatchEvent

BOOKMARK_INTERVAL = 30.0
_END = object()


async def _pump(source, queue: asyncio.Queue) -> None:
    try:
        async for ev in source:
            await queue.put(ev)
    except errors.ApiError as e:
        await queue.put(e)
    finally:
        await queue.put(_END)


def _frame(type_: str, obj_json: bytes) -> bytes:
    return b'{"type":"' + type_.encode() + b'","object":' + obj_json + b"}\n"


def _bookmark(store: ObjectStore, rev: int, initial_end: bool) -> bytes:
    meta: dict = {"resourceVersion": str(rev)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": store.res.kind, "apiVersion": store.res.api_version, "metadata": meta}
    return _frame("BOOKMARK", orjson.dumps(obj))


def _parse_resource_version(value: str) -> int:
    # Resource versions are unsigned: "-5" is malformed, not merely old.
    if not value.isdigit():
        raise errors.BadRequest(f'invalid resource version: "{value}"')
    return int(value)


async def serve_watch(request: web.Request, store: ObjectStore, namespace: str, match,
                      resource_version: str, timeout: float | None, bookmarks: bool,
                      send_initial_events: bool, render: Callable[[WatchEvent, bool], bytes]) -> web.StreamResponse:
    """Stream events as `{"type","object"}` lines; render(event, first) gives the object JSON."""
    if resource_version in ("", "0") or send_initial_events:
        from_rev, initial = store.current_revision(), True
    else:
        from_rev, initial = _parse_resource_version(resource_version), False
    queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
    source = store.watch(namespace, from_rev, match=match, send_initial=initial)
    pump = asyncio.create_task(_pump(source, queue))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    deadline = time.monotonic() + timeout if timeout else None
    first = True
    last_rev = from_rev
    try:
        while True:
            wait = BOOKMARK_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            try:
                item = await asyncio.wait_for(queue.get(), timeout=wait)
            except TimeoutError:
                if bookmarks and queue.empty():
                    await resp.write(_bookmark(store, last_rev, False))
                continue
            if item is _END:
                break
            if isinstance(item, errors.ApiError):
                await resp.write(_frame("ERROR", orjson.dumps(item.status())))
                break
            last_rev = max(last_rev, item.revision)
            if item.type == INITIAL_EVENTS_END:
                if send_initial_events:
                    await resp.write(_bookmark(store, item.revision, True))
                continue
            await resp.write(_frame(item.type, render(item, first)))
            first = False
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await source.aclose()
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
    return resp
