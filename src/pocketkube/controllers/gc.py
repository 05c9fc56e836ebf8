"""Garbage collector: cascading deletion through ownerReferences.

Mirrors pkg/controller/garbagecollector (attemptToDeleteItem, processDeletingDependentsItem,
orphanDependents) over informers of every resource that can own or be owned:

- Background: a dependent whose every owner is gone (no object with that uid; checked
  against the API server before acting, because the informers of different resources are not
  in step) is deleted. A dependent with some owners gone and others alive just loses the
  dangling references.
- Foreground: an owner being deleted with the `foregroundDeletion` finalizer has its
  dependents deleted (Foreground too, so the cascade goes all the way down); the finalizer is
  removed, and the owner goes, once no dependent with blockOwnerDeletion is left.
- Orphan: an owner being deleted with the `orphan` finalizer has its ownerReference removed
  from every dependent, then the finalizer removed.

The API server's part (setting deletionTimestamp and adding the finalizer for Foreground and
Orphan, deleting the object when its last finalizer goes) is not here.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterable

from pocketkube.api import errors
from pocketkube.api.resources import BY_KIND, Resource
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["FOREGROUND", "ORPHAN", "GarbageCollector", "owner_verdicts"]

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


def _key(res: Resource, obj: dict) -> str:
    return f"{res.group}|{res.plural}|{object_key(obj)}"


def _finalizers(obj: dict) -> list[str]:
    return (obj.get("metadata") or {}).get("finalizers") or []


def _deleting_with(obj: dict, finalizer: str) -> bool:
    m = obj.get("metadata") or {}
    return bool(m.get("deletionTimestamp")) and finalizer in _finalizers(obj)


def owner_verdicts(obj: dict, live_owner_uids: set[str], deleting_foreground: set[str]) -> tuple[list[dict], list[dict],
                                                                                                  list[dict]]:
    """Split the object's ownerReferences into (solid, dangling, waiting for dependents' deletion)."""
    solid, dangling, waiting = [], [], []
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        uid = ref.get("uid")
        if uid not in live_owner_uids:
            dangling.append(ref)
        elif uid in deleting_foreground:
            waiting.append(ref)
        else:
            solid.append(ref)
    return solid, dangling, waiting


class GarbageCollector(Controller):
    name = "garbage-collector-controller"

    def __init__(self, client: Client, informers: SharedInformers, resources: Iterable[Resource], *,
                 workers: int = 4) -> None:
        self.client = client
        self.resources = list(resources)
        self.by_resource: dict[tuple[str, str], Informer] = {}
        for res in self.resources:
            self.by_resource[(res.group, res.plural)] = informers.get(res)
        super().__init__(self.by_resource.values(), workers=workers)
        self._by_uid: dict[str, tuple[Resource, dict]] = {}
        self._dependents: dict[str, set[str]] = {}  # owner uid → dependent keys
        for res in self.resources:
            inf = self.by_resource[(res.group, res.plural)]
            inf.add_handlers(self._adder(res), self._updater(res), self._deleter(res))

    # ---- the ownership graph, kept by the handlers ----

    def _adder(self, res: Resource):
        def on_add(obj: dict) -> None:
            self._index(res, obj, None)
        return on_add

    def _updater(self, res: Resource):
        def on_update(old: dict, new: dict) -> None:
            self._index(res, new, old)
        return on_update

    def _deleter(self, res: Resource):
        def on_delete(obj: dict) -> None:
            uid = obj["metadata"].get("uid")
            if uid and self._by_uid.get(uid, (None, None))[0] is res:
                del self._by_uid[uid]
            self._unlink(_key(res, obj), obj)
            for dep in self._dependents.get(uid, ()):  # they may be orphans now
                self.queue.add(dep)
            for ref in obj["metadata"].get("ownerReferences") or []:  # a waiting owner may be free now
                self._enqueue_uid(ref.get("uid"))
        return on_delete

    def _index(self, res: Resource, obj: dict, old: dict | None) -> None:
        m = obj["metadata"]
        key = _key(res, obj)
        self._by_uid[m["uid"]] = (res, obj)
        if old is not None:
            self._unlink(key, old)
        for ref in m.get("ownerReferences") or []:
            self._dependents.setdefault(ref.get("uid"), set()).add(key)
        if m.get("ownerReferences") or _deleting_with(obj, FOREGROUND) or _deleting_with(obj, ORPHAN):
            self.queue.add(key)
        if old is not None and (old["metadata"].get("ownerReferences") != m.get("ownerReferences")
                                or m.get("deletionTimestamp")):
            for ref in [*(old["metadata"].get("ownerReferences") or []), *(m.get("ownerReferences") or [])]:
                self._enqueue_uid(ref.get("uid"))

    def _unlink(self, key: str, obj: dict) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            deps = self._dependents.get(ref.get("uid"))
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._dependents[ref.get("uid")]

    def _enqueue_uid(self, uid: str | None) -> None:
        found = self._by_uid.get(uid or "")
        if found is not None:
            self.queue.add(_key(*found))

    def _lookup(self, key: str) -> tuple[Resource, dict] | None:
        group, plural, obj_key = key.split("|", 2)
        inf = self.by_resource.get((group, plural))
        obj = inf.get(obj_key) if inf is not None else None
        return (inf.res, obj) if inf is not None and obj is not None else None

    def _dependents_of(self, uid: str) -> list[tuple[Resource, dict]]:
        return [found for key in sorted(self._dependents.get(uid, ())) if (found := self._lookup(key)) is not None]

    # ---- sync ----

    async def sync(self, key: str) -> None:
        found = self._lookup(key)
        if found is None:
            return
        res, obj = found
        if _deleting_with(obj, ORPHAN):
            await self._orphan_dependents(res, obj)
            return
        if _deleting_with(obj, FOREGROUND):
            await self._delete_dependents_first(res, obj)
        if obj["metadata"].get("ownerReferences") and not obj["metadata"].get("deletionTimestamp"):
            await self._check_owners(res, obj)

    async def _owner_alive(self, obj: dict, ref: dict) -> bool:
        """Whether the owner exists; a cache miss is confirmed with a live read (uid must match)."""
        if ref.get("uid") in self._by_uid:
            return True
        owner_res = BY_KIND.get((ref.get("apiVersion", ""), ref.get("kind", "")))
        if owner_res is None:
            return True  # a kind we do not serve: never delete on a guess
        namespace = obj["metadata"].get("namespace", "") if owner_res.namespaced else ""
        try:
            owner = await self.client.get(owner_res, namespace, ref.get("name", ""))
        except errors.NotFound:
            return False
        return owner["metadata"].get("uid") == ref.get("uid")

    async def _check_owners(self, res: Resource, obj: dict) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        alive = await asyncio.gather(*(self._owner_alive(obj, r) for r in refs))
        live_uids = {r.get("uid") for r, ok in zip(refs, alive) if ok}
        deleting = {uid for uid in live_uids
                    if uid in self._by_uid and _deleting_with(self._by_uid[uid][1], FOREGROUND)}
        solid, dangling, waiting = owner_verdicts(obj, live_uids, deleting)
        if solid:
            if dangling or waiting:
                gone = {r.get("uid") for r in [*dangling, *waiting]}
                await self._remove_owner_refs(res, obj, gone)
            return
        if not dangling and not waiting:
            return
        if waiting and self._dependents.get(obj["metadata"]["uid"]):
            policy = "Foreground"  # our owner waits for us, and we have dependents: go first with them
        elif ORPHAN in _finalizers(obj):
            policy = "Orphan"
        elif FOREGROUND in _finalizers(obj):
            policy = "Foreground"
        else:
            policy = "Background"
        # Only the version judged: the cache may be behind an update that removed the dangling
        # reference (an owner deleted with `orphan` lets go of its dependents just before its
        # DELETED event re-checks them). A newer version fails with Conflict and is judged again.
        await self._delete(res, obj, policy, exact_version=True)

    async def _delete(self, res: Resource, obj: dict, policy: str, *, exact_version: bool = False) -> None:
        m = obj["metadata"]
        log.info("%s: deleting %s %s/%s (%s)", self.name, res.kind, m.get("namespace", ""), m["name"], policy)
        preconditions = {"uid": m["uid"]}
        if exact_version:
            preconditions["resourceVersion"] = m["resourceVersion"]
        try:
            await self.client.delete(res, m.get("namespace", ""), m["name"], propagation=policy,
                                     preconditions=preconditions)
        except errors.NotFound:
            pass

    async def _remove_owner_refs(self, res: Resource, obj: dict, uids: set) -> None:
        updated = copy.deepcopy(obj)
        updated["metadata"]["ownerReferences"] = [
            r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
        try:
            await self.client.update(res, updated)
        except errors.NotFound:
            pass

    async def _remove_finalizer(self, res: Resource, obj: dict, finalizer: str) -> None:
        updated = copy.deepcopy(obj)
        updated["metadata"]["finalizers"] = [f for f in _finalizers(obj) if f != finalizer]
        try:
            await self.client.update(res, updated)
        except errors.NotFound:
            pass

    async def _live_dependents(self, res: Resource, obj: dict) -> list[tuple[Resource, dict]]:
        """Dependents as the API server has them now. Used before letting an owner go: a dependent
        created just before the owner's deletion may not be in the informers yet."""
        uid = obj["metadata"]["uid"]
        namespace = obj["metadata"].get("namespace", "") if res.namespaced else ""
        kinds = [r for r in self.resources if r.namespaced or not res.namespaced]
        listings = await asyncio.gather(*(self.client.list(r, namespace if r.namespaced else "") for r in kinds))
        return [(r, dep) for r, (items, _) in zip(kinds, listings) for dep in items
                if any(ref.get("uid") == uid for ref in dep["metadata"].get("ownerReferences") or [])]

    async def _orphan_dependents(self, res: Resource, obj: dict) -> None:
        uid = obj["metadata"]["uid"]
        for dependents in (self._dependents_of(uid), await self._live_dependents(res, obj)):
            await asyncio.gather(*(self._remove_owner_refs(dep_res, dep, {uid}) for dep_res, dep in dependents))
        await self._remove_finalizer(res, obj, ORPHAN)

    async def _delete_dependents_first(self, res: Resource, obj: dict) -> None:
        uid = obj["metadata"]["uid"]
        if await self._delete_blocking(uid, self._dependents_of(uid)):
            return  # their deletion events bring this owner back
        if await self._delete_blocking(uid, await self._live_dependents(res, obj)):
            return
        await self._remove_finalizer(res, obj, FOREGROUND)

    async def _delete_blocking(self, owner_uid: str, dependents: list[tuple[Resource, dict]]) -> bool:
        """Delete the dependents (Foreground, so the cascade goes down); True while any still blocks."""
        await asyncio.gather(*(self._delete(dep_res, dep, "Foreground") for dep_res, dep in dependents
                               if not dep["metadata"].get("deletionTimestamp")))
        return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
                   for _, dep in dependents for r in dep["metadata"].get("ownerReferences") or [])
