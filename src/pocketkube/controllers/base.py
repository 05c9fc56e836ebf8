"""The controller skeleton every controller shares (mirrors pkg/controller's worker loop).

    informers ─► handlers (compute a key, enqueue) ─► WorkQueue ─► N workers ─► sync(key)

Handlers never do work. A worker takes a key, calls `sync(key)`, and on success forgets the
key's failures; on any exception it requeues the key with the queue's per-key exponential
back-off, so a controller never dies on an API error and never busy-loops. The queue
guarantees one key is never synced by two workers at once. `sync` reads from informer caches,
decides (pure functions), writes; an object gone from the cache is cleaned up and not retried.

Also here: the informer set shared by all controllers of a process, and the ControllerRef
claim logic (adopt orphans that match, release owned objects that no longer match) that the
ReplicaSet and Deployment controllers share (mirrors pkg/controller/controller_ref_manager.go).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from pocketkube.api import errors
from pocketkube.api.meta import controller_ref
from pocketkube.api.resources import Resource
from pocketkube.api.selectors import LabelSelector
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.client.workqueue import WorkQueue

__all__ = [
    "ClaimPlan",
    "Controller",
    "SharedInformers",
    "apply_claims",
    "cached_controller",
    "fresh_owner_check",
    "label_selector_of",
    "object_key",
    "owner_reference",
    "owners_selecting",
    "plan_claims",
    "split_key",
    "write_status",
]

log = logging.getLogger(__name__)


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


def owner_reference(owner: dict, res: Resource) -> dict:
    """A controller ownerReference to `owner`, blocking its foreground deletion."""
    m = owner["metadata"]
    return {"apiVersion": res.api_version, "kind": res.kind, "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def cached_controller(owners: Informer, obj: dict, kind: str) -> dict | None:
    """The `kind` object that controls `obj`, from the `owners` cache; None when there is none or
    the cached one has another uid (a namesake created after the owner was deleted)."""
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") != kind:
        return None
    owner = owners.get(f"{obj['metadata'].get('namespace', '')}/{ref.get('name')}")
    return owner if owner is not None and owner["metadata"].get("uid") == ref.get("uid") else None


def label_selector_of(owner: dict) -> LabelSelector:
    """The owner's spec.selector (a metav1.LabelSelector); ValueError when it is invalid."""
    return LabelSelector.from_dict((owner.get("spec") or {}).get("selector"))


def owners_selecting(owners: Informer, pod: dict,
                     selector_of: Callable[[dict], LabelSelector] = label_selector_of) -> list[dict]:
    """The cached owners in the pod's namespace whose selector matches it: who may adopt an orphan
    (an owner with an invalid selector adopts nothing)."""
    ns, labels = pod["metadata"].get("namespace"), pod["metadata"].get("labels")
    out = []
    for owner in owners.list():
        if owner["metadata"].get("namespace") != ns:
            continue
        try:
            if selector_of(owner).matches(labels):
                out.append(owner)
        except ValueError:
            continue
    return out


class SharedInformers:
    """One informer per (resource, namespace, selectors), shared by every controller of a process."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple, Informer] = {}
        self._tasks: list[asyncio.Task] = []
        self._started: set[tuple] = set()

    def get(self, res: Resource, namespace: str = "", field_selector: str = "") -> Informer:
        key = (res.group, res.plural, namespace, field_selector)
        if key not in self._informers:
            self._informers[key] = Informer(self.client, res, namespace, field_selector=field_selector)
        return self._informers[key]

    def start(self) -> None:
        """Run every informer not running yet (informers may be added after a first start)."""
        for key, inf in self._informers.items():
            if key not in self._started:
                self._started.add(key)
                name = "informer:" + "/".join(k for k in key if k)
                self._tasks.append(asyncio.get_running_loop().create_task(inf.run(), name=name))

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in self._informers.values())), timeout)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._started.clear()


class Controller:
    """Subclasses set `name`, register handlers on their informers, and implement `sync(key)`."""

    name = "controller"

    def __init__(self, informers: Iterable[Informer], *, workers: int = 2, queue: WorkQueue | None = None) -> None:
        self.informers = list(informers)
        self.workers = workers
        self.queue = queue or WorkQueue(base_delay=0.005, max_delay=60.0)
        self._tasks: list[asyncio.Task] = []

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    def enqueue(self, obj: dict) -> None:
        self.queue.add(object_key(obj))

    def enqueue_after(self, obj: dict, delay: float) -> None:
        self.queue.add_after(object_key(obj), delay)

    def watch_own_kind(self, informer: Informer, on_delete: Callable[[dict], None] | None = None) -> None:
        """The kind the controller syncs: each add and update enqueues the object; a delete calls
        `on_delete` (default: enqueue it too, so the sync sees it gone)."""
        informer.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), on_delete or self.enqueue)

    async def run(self) -> None:
        """Wait for the caches, then process keys until stopped."""
        await asyncio.gather(*(i.synced.wait() for i in self.informers))
        log.info("%s: caches synced, starting %d workers", self.name, self.workers)
        self._tasks = [asyncio.get_running_loop().create_task(self._worker(), name=f"{self.name}-worker-{i}")
                       for i in range(self.workers)]
        await asyncio.gather(*self._tasks)

    async def stop(self) -> None:
        await self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while (key := await self.queue.get()) is not None:
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means "retry later"
                self._log_failure(key, e)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def _log_failure(self, key: str, e: Exception) -> None:
        if isinstance(e, (errors.Conflict, errors.NotFound, errors.AlreadyExists)):
            log.debug("%s: sync %s: %s; requeued", self.name, key, e)
        elif isinstance(e, errors.ApiError):
            log.warning("%s: sync %s: %s; requeued", self.name, key, e)
        else:
            log.exception("%s: sync %s failed; requeued", self.name, key)


# ---- ControllerRef claims ----

@dataclass
class ClaimPlan:
    claimed: list[dict] = field(default_factory=list)  # owned and matching, including adopted ones
    adopt: list[dict] = field(default_factory=list)
    release: list[dict] = field(default_factory=list)


def plan_claims(owner: dict, selector: LabelSelector, candidates: Iterable[dict]) -> ClaimPlan:
    """Which candidates the owner keeps, adopts and releases (ClaimObject's decision table)."""
    plan = ClaimPlan()
    uid = owner["metadata"]["uid"]
    owner_deleting = bool(owner["metadata"].get("deletionTimestamp"))
    for obj in candidates:
        m = obj.get("metadata") or {}
        ref = controller_ref(obj)
        matches = selector.matches(m.get("labels"))
        if ref is not None:
            if ref.get("uid") != uid:
                continue  # someone else's
            if matches:
                plan.claimed.append(obj)
            elif not owner_deleting:
                plan.release.append(obj)
        elif matches and not owner_deleting and not m.get("deletionTimestamp"):
            plan.adopt.append(obj)
            plan.claimed.append(obj)
    return plan


async def apply_claims(client: Client, res: Resource, owner: dict, owner_res: Resource, plan: ClaimPlan,
                       can_adopt: Callable[[], Awaitable[bool]]) -> list[dict]:
    """Write the adoptions and releases; returns the claimed objects that are really ours now.

    Adoption and release are optimistic-concurrency updates of the cached object: a Conflict
    means the cache was stale, and the caller's sync is retried.
    """
    claimed = [o for o in plan.claimed if o not in plan.adopt]
    if plan.adopt and await can_adopt():
        results = await asyncio.gather(*(_adopt(client, res, o, owner, owner_res) for o in plan.adopt),
                                       return_exceptions=True)
        for obj, result in zip(plan.adopt, results):
            if isinstance(result, dict):
                claimed.append(result)
            elif not isinstance(result, errors.NotFound):
                raise result
    results = await asyncio.gather(*(_release(client, res, o, owner) for o in plan.release),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, errors.NotFound):
            raise result
    return claimed


async def _adopt(client: Client, res: Resource, obj: dict, owner: dict, owner_res: Resource) -> dict:
    updated = {**obj, "metadata": dict(obj["metadata"])}
    refs = [r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
    updated["metadata"]["ownerReferences"] = [*refs, owner_reference(owner, owner_res)]
    return await client.update(res, updated)


async def _release(client: Client, res: Resource, obj: dict, owner: dict) -> dict:
    updated = {**obj, "metadata": dict(obj["metadata"])}
    updated["metadata"]["ownerReferences"] = [
        r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
    return await client.update(res, updated)


def fresh_owner_check(client: Client, owner_res: Resource, owner: dict) -> Callable[[], Awaitable[bool]]:
    """RecheckDeletionTimestamp: before adopting, confirm with a live read that the owner is the
    same object and not being deleted (the cache may be behind)."""
    async def check() -> bool:
        m = owner["metadata"]
        try:
            fresh = await client.get(owner_res, m.get("namespace", ""), m["name"])
        except errors.NotFound:
            return False
        fm = fresh["metadata"]
        return fm.get("uid") == m["uid"] and not fm.get("deletionTimestamp")
    return check


async def write_status(client: Client, res: Resource, obj: dict, status: dict) -> dict:
    """Write `status` unless it is already the object's; one retry on a fresh read after a Conflict."""
    if obj.get("status") == status:
        return obj
    for attempt in range(2):
        try:
            return await client.update_status(res, {**obj, "status": status})
        except errors.Conflict:
            if attempt:
                raise
            m = obj["metadata"]
            obj = await client.get(res, m["namespace"], m["name"])
    return obj
