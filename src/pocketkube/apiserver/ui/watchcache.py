"""One in-process list+watch per kind the live map reads, shared by every open page.

Each kind's cache lists its store and then follows its watch (re-listing after a 410, as an
informer does), holding the decoded objects. Listeners subscribe by Service key: a change to a
Service, to an EndpointSlice naming it, to any pod of its namespace or to any Node notifies the
keys it may affect, and each stream debounces those into `topology` events. Started on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from pocketkube.api import errors
from pocketkube.registry.store import INITIAL_EVENTS_END

log = logging.getLogger(__name__)
KINDS = {"nodes": ("", "nodes"), "services": ("", "services"),
         "endpointslices": ("discovery.k8s.io", "endpointslices"), "pods": ("", "pods"), "events": ("", "events")}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ANY = "*"
Listener = Callable[[], None]


def affected(kind: str, obj: dict) -> tuple[str, str]:
    """The Service key (namespace, name) a change may affect; ANY for a wildcard."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace", "")
    if kind == "services":
        return ns, meta.get("name", "")
    if kind == "endpointslices":
        return ns, (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, ANY)
    if kind == "pods":
        return ns, ANY
    return ANY, ANY  # nodes


class KindCache:
    def __init__(self, kind: str, store, on_change: Callable[[str, dict], None]) -> None:
        self.kind = kind
        self.store = store
        self.on_change = on_change
        self.objects: dict[tuple[str, str], dict] = {}
        self.revision = 0
        self.synced = asyncio.Event()

    def items(self, namespace: str = "") -> list[dict]:
        return [o for (ns, _), o in self.objects.items() if not namespace or ns == namespace]

    def get(self, namespace: str, name: str) -> dict | None:
        return self.objects.get((namespace, name))

    async def run(self) -> None:
        while True:
            try:
                await self._list_and_watch()
            except errors.Gone:
                log.info("ui watch cache: %s watch expired, re-listing", self.kind)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the cache alive; the next list repairs it
                log.exception("ui watch cache: %s watch failed", self.kind)
                await asyncio.sleep(1.0)

    async def _list_and_watch(self) -> None:
        fresh: dict[tuple[str, str], dict] = {}
        initial = True
        source = self.store.watch("", 0, send_initial=True)
        try:
            async for ev in source:
                if ev.type == INITIAL_EVENTS_END:
                    old, self.objects, initial = self.objects, fresh, False
                    self.revision = max(self.revision, ev.revision)
                    for key in old.keys() | fresh.keys():  # what changed while nobody watched
                        if old.get(key) != fresh.get(key):
                            self.on_change(self.kind, fresh.get(key) or old[key])
                    self.synced.set()
                    continue
                obj = orjson.loads(ev.value)
                meta = obj["metadata"]
                key = (meta.get("namespace", ""), meta["name"])
                if initial:
                    fresh[key] = obj
                    continue
                self.revision = max(self.revision, ev.revision)
                if ev.type == "DELETED":
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = obj
                self.on_change(self.kind, obj)
        finally:
            await source.aclose()


class WatchCache:
    def __init__(self, registry) -> None:
        self.registry = registry
        self.kinds = {k: KindCache(k, registry.store(*gr), self._changed) for k, gr in KINDS.items()}
        self._tasks: list[asyncio.Task] = []
        self._listeners: dict[tuple[str, str], set[Listener]] = {}

    def __getitem__(self, kind: str) -> KindCache:
        return self.kinds[kind]

    @property
    def revision(self) -> int:
        return max(c.revision for c in self.kinds.values())

    async def ready(self) -> None:
        """Start the watches on first use; wait until every kind has listed."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(c.run(), name=f"ui-cache-{k}") for k, c in self.kinds.items()]
        await asyncio.gather(*(c.synced.wait() for c in self.kinds.values()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def subscribe(self, namespace: str, name: str, listener: Listener) -> Callable[[], None]:
        """Call `listener` on changes that may affect Service namespace/name; returns the unsubscribe."""
        key = (namespace, name)
        self._listeners.setdefault(key, set()).add(listener)

        def unsubscribe() -> None:
            group = self._listeners.get(key)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[key]
        return unsubscribe

    def _changed(self, kind: str, obj: dict) -> None:
        if kind == "events":
            return
        ns, name = affected(kind, obj)
        for (lns, lname), group in list(self._listeners.items()):
            if (ns in (ANY, lns) or lns == ANY) and (name in (ANY, lname) or lname == ANY):
                for listener in list(group):
                    listener()
