"""Namespace lifecycle: a deleted namespace turns Terminating, its contents go, then it goes."""

from __future__ import annotations

import asyncio
import logging

from pocketkube.api import errors
from pocketkube.api.resources import RESOURCES
from pocketkube.api.timestamps import now_rfc3339

log = logging.getLogger(__name__)
_tasks: set[asyncio.Task] = set()


async def begin_namespace_deletion(registry, name: str, dry_run: bool = False) -> dict:
    ns_store = registry.namespaces

    def mark(ns: dict) -> dict:
        ns["metadata"].setdefault("deletionTimestamp", now_rfc3339())
        ns.setdefault("status", {})["phase"] = "Terminating"
        return ns
    already = (ns_store.try_get("", name) or {}).get("metadata", {}).get("deletionTimestamp")
    obj = await ns_store.guaranteed_update("", name, mark, "binding", dry_run)
    if not dry_run and not already:
        task = asyncio.create_task(_finalize(registry, name, obj["metadata"]["uid"]))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    return obj


async def _finalize(registry, name: str, uid: str) -> None:
    """Delete everything in the namespace, wait until it is gone, then remove the namespace.

    Bound to the namespace's uid: a namespace of the same name created afterwards is not touched.
    """
    try:
        while True:
            current = registry.namespaces.try_get("", name)
            if current is None or current["metadata"].get("uid") != uid:
                return
            remaining = 0
            for res in RESOURCES:
                if not res.namespaced:
                    continue
                store = registry.store_for(res)
                for obj in store.list_objects(name):
                    remaining += 1
                    if obj["metadata"].get("deletionTimestamp"):
                        continue
                    try:
                        await store.delete(name, obj["metadata"]["name"])
                    except errors.NotFound:
                        pass
            if remaining == 0:
                break
            await asyncio.sleep(0.5)
        await registry.namespaces.delete("", name, preconditions={"uid": uid})
    except (errors.NotFound, errors.Conflict):
        pass
    except Exception:  # noqa: BLE001 - a background task must log, not die silently
        log.exception("finalizing namespace %s failed", name)


def resume_pending(registry) -> None:
    """At startup, finish the deletion of namespaces that were Terminating when we stopped."""
    for ns in registry.namespaces.list_objects():
        if ns["metadata"].get("deletionTimestamp"):
            task = asyncio.create_task(_finalize(registry, ns["metadata"]["name"], ns["metadata"]["uid"]))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
