"""Namespace controller: a deleted namespace's content goes, then the namespace does
(mirrors pkg/controller/namespace and its namespaced-resources deleter).

DELETE of a namespace only marks it Terminating (registry/core/namespaces.py). For each namespace
with a deletionTimestamp this controller, through the API like any client, deletes every
namespaced object in it; while some remain (pods waiting for their kubelet, objects held by
finalizers) it looks again shortly. When none remain it removes its `kubernetes` finalizer
through the `namespaces/{name}/finalize` subresource, and the server deletes the namespace
once no finalizer is left. A namespace that is already finalized is deleted again, which
then completes.

The decisions (what to delete, the finalize body) are pure functions below; `sync` does I/O.
"""

from __future__ import annotations

import logging

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL, RESOURCES, Resource
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["FINALIZER", "NamespaceController", "content_resources", "finalize_body", "finalized",
           "still_to_delete"]

log = logging.getLogger(__name__)

NAMESPACES = BY_PLURAL[("", "namespaces")]
FINALIZER = "kubernetes"
RECHECK_DELAY = 0.5  # seconds between looks at content that is still terminating


def content_resources() -> tuple[Resource, ...]:
    """The namespaced resources a namespace's deletion removes."""
    return tuple(r for r in RESOURCES if r.namespaced and "delete" in r.verbs and "list" in r.verbs)


def still_to_delete(items: list[dict]) -> list[dict]:
    """The listed objects not yet being deleted (the others are on their way)."""
    return [o for o in items if not (o.get("metadata") or {}).get("deletionTimestamp")]


def finalized(ns: dict) -> bool:
    return not (ns.get("spec") or {}).get("finalizers")


def finalize_body(ns: dict, token: str = FINALIZER) -> dict:
    """The namespace to PUT to its `finalize` subresource: spec.finalizers without `token`."""
    body = {k: v for k, v in ns.items() if k != "status"}
    spec = dict(ns.get("spec") or {})
    spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != token]
    body["spec"] = spec
    return body


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 2,
                 recheck_delay: float = RECHECK_DELAY) -> None:
        self.client = client
        self.namespaces = informers.get(NAMESPACES)
        self.recheck_delay = recheck_delay
        super().__init__([self.namespaces], workers=workers)
        self.namespaces.add_handlers(on_add=self._maybe_enqueue,
                                     on_update=lambda old, new: self._maybe_enqueue(new))

    def _maybe_enqueue(self, ns: dict) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    async def sync(self, key: str) -> None:
        name = key.rpartition("/")[2]
        try:
            # The latest state, not the cache: other controllers edit terminating namespaces too.
            ns = await self.client.get(NAMESPACES, "", name)
        except errors.NotFound:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if finalized(ns):
            await self._delete(name, ns["metadata"]["uid"])
            return
        if FINALIZER not in ns["spec"]["finalizers"]:
            return  # someone else's finalizer: theirs to remove
        if await self._delete_content(name):
            self.queue.add_after(key, self.recheck_delay)
            return
        try:
            await self.client.update(NAMESPACES, finalize_body(ns), "finalize")
        except errors.NotFound:
            return
        log.info("%s: namespace %s finalized", self.name, name)

    async def _delete_content(self, namespace: str) -> bool:
        """Delete everything in the namespace; whether anything is still there."""
        remaining = False
        for res in content_resources():
            items, _ = await self.client.list(res, namespace)
            if not items:
                continue
            for obj in still_to_delete(items):
                try:
                    await self.client.delete(res, namespace, obj["metadata"]["name"])
                except errors.NotFound:
                    pass
            items, _ = await self.client.list(res, namespace)
            remaining = remaining or bool(items)
        return remaining

    async def _delete(self, name: str, uid: str) -> None:
        try:
            await self.client.delete(NAMESPACES, "", name, preconditions={"uid": uid})
        except (errors.NotFound, errors.Conflict):
            pass  # gone, or a namesake created since: not ours to delete
