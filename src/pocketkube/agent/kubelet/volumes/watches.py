"""The kubelet's watch-based object cache (pkg/kubelet/util/manager/watch_based_manager.go): one
watch per ConfigMap or Secret that a pod on this node references (a field selector on its name),
shared by every pod referencing it and stopped when the last of them goes. A change wakes those
pods, whose volumes are rewritten."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pocketkube.api.resources import Resource
from pocketkube.client.informer import Informer
from pocketkube.client.interface import Client

log = logging.getLogger(__name__)

Ref = tuple[str, str, str]  # (plural, namespace, name)


@dataclass
class _Watch:
    informer: Informer
    task: asyncio.Task
    uids: set[str] = field(default_factory=set)


class ObjectWatches:
    def __init__(self, client: Client, resources: dict[str, Resource], on_change: Callable[[str], None]) -> None:
        self.client = client
        self.resources = resources  # plural → Resource
        self.on_change = on_change  # called with each referencing pod's uid
        self._watches: dict[Ref, _Watch] = {}
        self._by_pod: dict[str, set[Ref]] = {}

    def reference(self, uid: str, refs: set[Ref]) -> None:
        """`uid` references exactly `refs` now: start missing watches, release the others."""
        old = self._by_pod.get(uid, set())
        for ref in refs - old:
            w = self._watches.get(ref)
            if w is None:
                w = self._start(ref)
            w.uids.add(uid)
        for ref in old - refs:
            self._release(uid, ref)
        self._by_pod[uid] = set(refs)

    def forget(self, uid: str) -> None:
        for ref in self._by_pod.pop(uid, set()):
            self._release(uid, ref)

    def _start(self, ref: Ref) -> _Watch:
        plural, ns, name = ref
        inf = Informer(self.client, self.resources[plural], namespace=ns, field_selector=f"metadata.name={name}")
        w = _Watch(inf, asyncio.create_task(inf.run(), name=f"watch {plural} {ns}/{name}"))

        def changed(*_objs: dict) -> None:
            for uid in list(w.uids):
                self.on_change(uid)
        inf.add_handlers(changed, changed, changed)
        self._watches[ref] = w
        return w

    def _release(self, uid: str, ref: Ref) -> None:
        w = self._watches.get(ref)
        if w is None:
            return
        w.uids.discard(uid)
        if not w.uids:
            w.task.cancel()
            del self._watches[ref]

    async def wait_synced(self, refs: set[Ref], timeout: float) -> Ref | None:
        """Wait until every watch has listed; the first that did not within `timeout`, or None."""
        pending = [(ref, self._watches[ref].informer) for ref in refs if ref in self._watches]
        try:
            async with asyncio.timeout(timeout):
                for _ref, inf in pending:
                    await inf.synced.wait()
        except TimeoutError:
            return next(ref for ref, inf in pending if not inf.synced.is_set())
        return None

    def get(self, ref: Ref) -> dict | None:
        w = self._watches.get(ref)
        return w.informer.get(f"{ref[1]}/{ref[2]}") if w is not None else None

    async def stop(self) -> None:
        tasks = [w.task for w in self._watches.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watches.clear()
        self._by_pod.clear()
