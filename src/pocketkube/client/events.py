"""Event recorder: core/v1 Events for what a component did, as client-go's record package.

Events are best effort. `event()` never blocks and never raises: it queues the event, and a
background task writes it. A failed write is logged and dropped. Repeating an event (same
object, type, reason, message) bumps `count` and `lastTimestamp` on the Event already written
instead of creating another, like upstream's EventCorrelator (mirrors
client-go/tools/record/events_cache.go; similar-event aggregation is not done).

Cluster-scoped objects (Nodes) get their Events in the `default` namespace, as upstream.

A component may pass `quiet`, an asyncio.Event that is set when events may be written: the
kubelet clears it while pod status writes are in flight, so that during a burst of pod starts
the statuses (which make pods Ready) reach the API server before the events about them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL, Resource
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.interface import Client

__all__ = ["NORMAL", "WARNING", "EventRecorder", "object_reference"]

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
_EVENTS = BY_PLURAL[("", "events")]
_CACHE_SIZE = 4096


def object_reference(obj: dict, res: Resource | None = None, field_path: str = "") -> dict:
    """The involvedObject of an Event; kind/apiVersion come from `res` when the object lacks them."""
    m = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind") or (res.kind if res else ""),
        "namespace": m.get("namespace", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "apiVersion": obj.get("apiVersion") or (res.api_version if res else ""),
        "resourceVersion": m.get("resourceVersion", ""),
    }
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v}


@dataclass
class _Written:
    namespace: str
    name: str
    count: int
    first_timestamp: str


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "", *,
                 quiet: asyncio.Event | None = None, max_in_flight: int | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._quiet = quiet  # writes wait while this is clear; None: never wait
        # At most this many event writes at once (None: a whole batch at once). A node agent
        # bounds it, as the kubelet's event QPS does, so a burst of pod starts does not open a
        # connection per event.
        self._in_flight = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._pending: asyncio.Queue[tuple[tuple, dict]] | None = None
        self._writer: asyncio.Task | None = None
        self._written: OrderedDict[tuple, _Written] = OrderedDict()
        self._last_ns = 0

    def event(self, obj: dict, type_: str, reason: str, message: str, *, res: Resource | None = None,
              field_path: str = "") -> None:
        ref = object_reference(obj, res, field_path)
        key = (ref.get("uid") or (ref.get("namespace"), ref.get("kind"), ref.get("name")),
               field_path, type_, reason, message)
        if self._pending is None:
            self._pending = asyncio.Queue()
        self._pending.put_nowait((key, {"ref": ref, "type": type_, "reason": reason, "message": message,
                                        "at": now_rfc3339()}))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has been written (or dropped)."""
        if self._pending is not None:
            try:
                await asyncio.wait_for(self._pending.join(), timeout)
            except TimeoutError:
                log.warning("%s: %d events not written", self.component, self._pending.qsize())

    async def stop(self) -> None:
        await self.flush(1.0)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_loop(self) -> None:
        assert self._pending is not None
        while True:
            batch = [await self._pending.get()]
            if self._quiet is not None:
                await self._quiet.wait()
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            # Distinct events go out concurrently; repeats of one event in a batch go in order.
            by_key: dict[tuple, list[dict]] = {}
            for key, item in batch:
                by_key.setdefault(key, []).append(item)
            await asyncio.gather(*(self._write_all(key, items) for key, items in by_key.items()))
            for _ in batch:
                self._pending.task_done()

    async def _write_all(self, key: tuple, items: list[dict]) -> None:
        if self._in_flight is None:
            await self._write_each(key, items)
            return
        async with self._in_flight:
            await self._write_each(key, items)

    async def _write_each(self, key: tuple, items: list[dict]) -> None:
        for item in items:
            try:
                await self._write(key, item)
            except errors.ApiError as e:
                log.info("%s: event %s %s dropped: %s", self.component, item["reason"], item["message"], e)
            except Exception:  # an event must never take a controller down
                log.exception("%s: event %s dropped", self.component, item["reason"])

    async def _write(self, key: tuple, item: dict) -> None:
        seen = self._written.get(key)
        if seen is not None:
            try:
                await self.client.patch(_EVENTS, seen.namespace, seen.name, {
                    "count": seen.count + 1, "lastTimestamp": item["at"]})
                seen.count += 1
                self._written.move_to_end(key)
                return
            except errors.NotFound:
                del self._written[key]  # expired (TTL): write a fresh one
        namespace = item["ref"].get("namespace") or "default"
        body = self._new_event(namespace, item)
        created = await self.client.create(_EVENTS, body, namespace)
        self._written[key] = _Written(namespace, created["metadata"]["name"], 1, item["at"])
        if len(self._written) > _CACHE_SIZE:
            self._written.popitem(last=False)

    def _new_event(self, namespace: str, item: dict) -> dict:
        ref = item["ref"]
        source = {"component": self.component, **({"host": self.host} if self.host else {})}
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref.get('name', 'unknown')}.{self._unique_suffix():x}",
                         "namespace": namespace},
            "involvedObject": ref,
            "reason": item["reason"], "message": item["message"], "type": item["type"],
            "source": source,
            "firstTimestamp": item["at"], "lastTimestamp": item["at"], "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }

    def _unique_suffix(self) -> int:
        # Upstream uses the wall clock in nanoseconds; keep it strictly increasing so that two
        # events for one object within a clock tick never collide.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns
