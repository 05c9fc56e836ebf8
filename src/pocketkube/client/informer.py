"""Informer: list, then watch from the list's resourceVersion, into a local cache with handlers.

On a 410 (history compacted) it relists; on a dropped connection it resumes the watch from the
last resourceVersion it saw, with exponential back-off, so a restarting API server costs a
reconnect, not a relist storm. The back-off is jittered: every informer of every component
loses its watch at the same moment when the API server restarts, and must not come back in
lockstep. Any event received resets it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.resources import Resource
from pocketkube.client.interface import Client
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

Handler = Callable[..., None]


def reconnect_backoff() -> Backoff:
    """0.2 s doubling to 5 s, plus up to half again at random."""
    return Backoff(initial=0.2, maximum=5.0, jitter=0.5)


def object_key(obj: dict) -> str:
    m = obj.get("metadata") or {}
    ns = m.get("namespace")
    return f"{ns}/{m.get('name')}" if ns else m.get("name", "")


class Informer:
    def __init__(self, client: Client, res: Resource, namespace: str = "", label_selector: str = "",
                 field_selector: str = "", *, backoff: Backoff | None = None) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, dict] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.backoff = backoff or reconnect_backoff()
        self._on_add: list[Handler] = []
        self._on_update: list[Handler] = []
        self._on_delete: list[Handler] = []

    def add_handlers(self, on_add: Handler | None = None, on_update: Handler | None = None,
                     on_delete: Handler | None = None) -> None:
        if on_add:
            self._on_add.append(on_add)
        if on_update:
            self._on_update.append(on_update)
        if on_delete:
            self._on_delete.append(on_delete)

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    def list(self) -> list[dict]:
        return list(self.cache.values())

    def _emit(self, handlers: list[Handler], *args: dict) -> None:
        for h in handlers:
            try:
                h(*args)
            except Exception:  # noqa: BLE001 - one bad handler must not stop the informer
                log.exception("%s informer handler failed", self.res.plural)

    def _replace(self, items: list[dict]) -> None:
        fresh = {object_key(o): o for o in items}
        for key, old in list(self.cache.items()):
            if key not in fresh:
                del self.cache[key]
                self._emit(self._on_delete, old)
        for key, obj in fresh.items():
            old = self.cache.get(key)
            self.cache[key] = obj
            if old is None:
                self._emit(self._on_add, obj)
            elif old.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit(self._on_update, old, obj)

    def _apply(self, type_: str, obj: dict) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if type_ == "BOOKMARK":
            return
        key = object_key(obj)
        old = self.cache.get(key)
        if type_ == "DELETED":
            self.cache.pop(key, None)
            self._emit(self._on_delete, old or obj)
        else:
            self.cache[key] = obj
            if old is None:
                self._emit(self._on_add, obj)
            else:
                self._emit(self._on_update, old, obj)

    def has_synced(self) -> bool:
        """Whether the first list has been applied to the cache."""
        return self.synced.is_set()

    async def run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    items, rv = await self.client.list(self.res, self.namespace, self.label_selector,
                                                       self.field_selector)
                    self._replace(items)
                    self.resource_version = rv
                    self.synced.set()
                    need_list = False
                async for type_, obj in self.client.watch(
                        self.res, self.namespace, self.resource_version, self.label_selector,
                        self.field_selector, timeout_seconds=random.randint(300, 600)):
                    self._apply(type_, obj)
                    self.backoff.reset()
            except errors.Gone:
                need_list = True
            except asyncio.CancelledError:
                raise
            except errors.ApiError as e:
                delay = self.backoff.next()
                log.debug("%s watch ended: %s; retrying in %.1fs", self.res.plural, e, delay)
                await asyncio.sleep(delay)
            except Exception:  # noqa: BLE001 - keep informing whatever happens
                delay = self.backoff.next()
                log.exception("%s informer failed; retrying in %.1fs", self.res.plural, delay)
                await asyncio.sleep(delay)
