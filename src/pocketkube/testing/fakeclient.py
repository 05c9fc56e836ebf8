"""An in-memory Client (pocketkube.client.interface) for unit tests: no server, same semantics.

Controllers, the scheduler and informers run against it exactly as against the API server:

- one resourceVersion counter for every kind, as etcd's revision; every write bumps it, and a
  no-op update keeps the old one;
- update with a stale resourceVersion → Conflict; missing object → NotFound; a taken name →
  AlreadyExists; `metadata.generateName` gets a random suffix; uid, creationTimestamp and
  (Deployment, ReplicaSet, Pod, Namespace) generation are set by the "server";
- kinds with a status subresource: update() keeps the stored status, update_status() changes
  only the status, and create() drops the status (Nodes keep theirs, as the agent registers
  them with one);
- patch() applies merge, strategic-merge and JSON patches with the API server's own code;
- delete(): preconditions (uid, resourceVersion) → Conflict; finalizers, or a pod bound to a
  node with a grace period, leave the object with a deletionTimestamp (the kubelet, or an
  update removing the last finalizer, finishes the delete); bind() sets spec.nodeName and
  PodScheduled=True once;
- list/watch honour namespace, label and field selectors (the API server's parsers); a watch
  replays the events after its resourceVersion, then follows live writes, turning a change
  across the selector into ADDED/DELETED; a watch from before `compact()` raises Gone.

Not modelled: admission, validation, defaulting, namespace existence, the garbage collector,
bookmarks. Tests steer failures with `fail_next(verb, error)` and `disconnect_watches()`
(every open watch ends with ServiceUnavailable, as when the API server restarts), and read
`actions` to see what a component wrote.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL, Resource
from pocketkube.api.selectors import FieldSelector, LabelSelector
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.apiserver.patch import apply_patch
from pocketkube.client.interface import MERGE_PATCH
from pocketkube.registry.store import bump_generation, carry_over_system_fields, generate_name

__all__ = ["Action", "FakeClient"]

_GENERATION_KINDS = {"Deployment", "ReplicaSet", "Pod", "Namespace"}
_PODS = BY_PLURAL[("", "pods")]
_CLOSED = object()  # queued to a watch to end it


@dataclass(frozen=True)
class Action:
    """One call a component made: verb, resource plural, namespace, name, subresource, and the
    resourceVersion a watch started from."""
    verb: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    resource_version: str = ""


@dataclass(frozen=True)
class _Event:
    revision: int
    res: Resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict
    prev: dict | None


Match = Callable[[dict], bool]


class _Watch:
    def __init__(self, res: Resource, namespace: str, match: Match) -> None:
        self.res, self.namespace, self.match = res, namespace, match
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def offer(self, ev: _Event) -> None:
        translated = _translate(ev, self.res, self.namespace, self.match)
        if translated is not None:
            self.queue.put_nowait(translated)


def _namespace_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace", "")


def _translate(ev: _Event, res: Resource, namespace: str, match: Match) -> tuple[str, dict] | None:
    """The event as this watch sees it: a change across the selector is an ADDED or DELETED."""
    if ev.res != res or (namespace and _namespace_of(ev.obj) != namespace):
        return None
    now_ok = match(ev.obj)
    if ev.type != "MODIFIED":
        return (ev.type, copy.deepcopy(ev.obj)) if now_ok else None
    before_ok = ev.prev is not None and match(ev.prev)
    if now_ok:
        return ("MODIFIED" if before_ok else "ADDED"), copy.deepcopy(ev.obj)
    return ("DELETED", copy.deepcopy(ev.obj)) if before_ok else None


class FakeClient:
    """In-memory implementation of pocketkube.client.interface.Client."""

    def __init__(self, *objects: tuple[Resource, dict], clock: Callable[[], float] | None = None) -> None:
        # What stamps creationTimestamp: a test that runs its controller on a fake clock passes the
        # same clock, so objects are not created "after" the test's own instants.
        self._clock = clock
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self._revision = 1
        self._log: list[_Event] = []
        self._compacted = 0  # watches from a revision below this get Gone
        self._watches: set[_Watch] = set()
        self._failures: dict[str, list[errors.ApiError]] = {}
        self.actions: list[Action] = []
        # (plural, subresource) → handler(namespace, name, body) answering create_subresource
        self.subresource_handlers: dict[tuple[str, str], Any] = {}
        for res, obj in objects:
            self.seed(res, obj)

    # ---- test controls ----

    def seed(self, res: Resource, obj: dict) -> dict:
        """Store an object as if created (status kept), without recording an action."""
        return self._create(res, obj, _namespace_of(obj), keep_status=True)

    def fail_next(self, verb: str, error: errors.ApiError) -> None:
        """The next call of `verb` (get, list, watch, create, update, patch, delete, bind) raises `error`."""
        self._failures.setdefault(verb, []).append(error)

    def compact(self, revision: int | None = None) -> None:
        """Forget the events up to `revision` (default: all so far); older watches get Gone."""
        revision = self._revision if revision is None else revision
        self._compacted = revision
        self._log = [ev for ev in self._log if ev.revision > revision]

    def disconnect_watches(self) -> None:
        """End every open watch with ServiceUnavailable, as an API server restart does."""
        for w in self._watches:
            w.queue.put_nowait(_CLOSED)

    def actions_of(self, verb: str, resource: str | None = None) -> list[Action]:
        return [a for a in self.actions if a.verb == verb and (resource is None or a.resource == resource)]

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    def objects(self, res: Resource, namespace: str = "") -> list[dict]:
        """The stored objects of `res` (copies), without recording an action."""
        return [copy.deepcopy(o) for (ns, _), o in sorted(self._table(res).items())
                if not namespace or ns == namespace]

    # ---- internals ----

    def _record(self, verb: str, res: Resource, namespace: str = "", name: str = "", subresource: str = "",
                resource_version: str = "") -> None:
        self.actions.append(Action(verb, res.plural, namespace, name, subresource, resource_version))
        pending = self._failures.get(verb)
        if pending:
            raise pending.pop(0)

    def _table(self, res: Resource) -> dict[tuple[str, str], dict]:
        return self._objects.setdefault((res.group, res.plural), {})

    def _key(self, res: Resource, namespace: str, name: str) -> tuple[str, str]:
        return (namespace if res.namespaced else "", name)

    def _stored(self, res: Resource, namespace: str, name: str) -> dict:
        obj = self._table(res).get(self._key(res, namespace, name))
        if obj is None:
            raise errors.NotFound.object(res.plural, name, res.group)
        return obj

    def _commit(self, res: Resource, type_: str, obj: dict, prev: dict | None) -> dict:
        """Store (or drop, for DELETED) `obj` at a new revision and tell the watches."""
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        key = self._key(res, _namespace_of(obj), obj["metadata"]["name"])
        if type_ == "DELETED":
            self._table(res).pop(key, None)
        else:
            self._table(res)[key] = obj
        ev = _Event(self._revision, res, type_, copy.deepcopy(obj), prev)
        self._log.append(ev)
        for w in self._watches:
            w.offer(ev)
        return copy.deepcopy(obj)

    def _create(self, res: Resource, obj: dict, namespace: str, *, keep_status: bool) -> dict:
        obj = copy.deepcopy(obj)
        m = obj.setdefault("metadata", {})
        if res.namespaced:
            if m.get("namespace") and namespace and m["namespace"] != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request")
            m["namespace"] = namespace or m.get("namespace") or "default"
        else:
            m.pop("namespace", None)
        if not m.get("name") and m.get("generateName"):
            m["name"] = generate_name(m["generateName"])
        if not m.get("name"):
            raise errors.BadRequest("name or generateName is required")
        if self._key(res, m.get("namespace", ""), m["name"]) in self._table(res):
            raise errors.AlreadyExists.object(res.plural, m["name"], res.group)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            m.pop(field, None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now_rfc3339(self._clock()) if self._clock else now_rfc3339()
        if res.kind in _GENERATION_KINDS:
            m["generation"] = 1
        if not keep_status and "status" in res.subresources and res.kind != "Node":
            obj.pop("status", None)
        return self._commit(res, "ADDED", obj, None)

    def _write(self, res: Resource, old: dict, new: dict) -> dict:
        """Store an updated object; a no-op keeps the resourceVersion; the last finalizer
        removed from an object being deleted deletes it."""
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._commit(res, "DELETED", new, old)
        return self._commit(res, "MODIFIED", new, old)

    def _merged(self, res: Resource, old: dict, new: dict, subresource: str) -> dict:
        """What an update of `subresource` makes of `old`, as the registry does."""
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = copy.deepcopy(new.get("status", {}))
            return merged
        new = copy.deepcopy(new)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        carry_over_system_fields(new, copy.deepcopy(old), has_status="status" in res.subresources)
        bump_generation(new, old)
        return new

    @staticmethod
    def _matcher(res: Resource, label_selector: str, field_selector: str) -> Match:
        try:
            labels = LabelSelector.parse(label_selector) if label_selector else None
            fields = FieldSelector.parse(field_selector, res.kind) if field_selector else None
        except ValueError as e:
            raise errors.BadRequest(str(e)) from None

        def match(obj: dict) -> bool:
            return ((labels is None or labels.matches((obj.get("metadata") or {}).get("labels")))
                    and (fields is None or fields.matches(obj)))
        return match

    # ---- the Client protocol ----

    async def get(self, res: Resource, namespace: str, name: str, subresource: str = "") -> dict:
        self._record("get", res, namespace, name, subresource)
        return copy.deepcopy(self._stored(res, namespace, name))

    async def list(self, res: Resource, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> tuple[list[dict], str]:
        self._record("list", res, namespace)
        match = self._matcher(res, label_selector, field_selector)
        return [o for o in self.objects(res, namespace) if match(o)], str(self._revision)

    async def watch(self, res: Resource, namespace: str = "", resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    timeout_seconds: int | None = None) -> AsyncIterator[tuple[str, dict]]:
        self._record("watch", res, namespace, resource_version=resource_version)
        match = self._matcher(res, label_selector, field_selector)
        w = _Watch(res, namespace, match)
        if resource_version in ("", "0"):  # current state as ADDED events, then live
            for obj in self.objects(res, namespace):
                if match(obj):
                    w.queue.put_nowait(("ADDED", obj))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise errors.BadRequest(f"invalid resource version: {resource_version}") from None
            if since < self._compacted:
                raise errors.Gone(f"too old resource version: {since} ({self._compacted})")
            for ev in self._log:
                if ev.revision > since:
                    w.offer(ev)
        self._watches.add(w)
        deadline = None if not timeout_seconds else time.monotonic() + timeout_seconds
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    # that races with an item arriving, and the watcher would never stop.
                    async with asyncio.timeout(remaining):
                        item = await w.queue.get()
                except TimeoutError:
                    return
                if item is _CLOSED:
                    raise errors.ServiceUnavailable(f"watch of {res.plural} interrupted: disconnected")
                yield item
        finally:
            self._watches.discard(w)

    async def create(self, res: Resource, obj: dict, namespace: str = "") -> dict:
        ns = namespace or _namespace_of(obj)
        self._record("create", res, ns, (obj.get("metadata") or {}).get("name", ""))
        return self._create(res, obj, ns, keep_status=False)

    async def create_subresource(self, res: Resource, namespace: str, name: str, subresource: str,
                                 body: dict) -> dict:
        self._record("create", res, namespace, name, subresource)
        handler = self.subresource_handlers.get((res.plural, subresource))
        if handler is None:
            raise errors.NotFound(f"the server could not find the requested resource ({res.plural}/{subresource})")
        return handler(namespace, name, body)

    async def update(self, res: Resource, obj: dict, subresource: str = "") -> dict:
        m = obj.get("metadata") or {}
        self._record("update", res, m.get("namespace", ""), m.get("name", ""), subresource)
        old = self._stored(res, m.get("namespace", ""), m.get("name", ""))
        rv = m.get("resourceVersion")
        if rv not in (None, "") and str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.Conflict.modified(res.plural, m["name"], res.group)
        return self._write(res, old, self._merged(res, old, obj, subresource))

    async def update_status(self, res: Resource, obj: dict) -> dict:
        return await self.update(res, obj, "status")

    async def patch(self, res: Resource, namespace: str, name: str, patch: Any,
                    content_type: str = MERGE_PATCH, subresource: str = "") -> dict:
        self._record("patch", res, namespace, name, subresource)
        old = self._stored(res, namespace, name)
        body = patch if isinstance(patch, bytes) else orjson.dumps(patch)
        patched = apply_patch(content_type, copy.deepcopy(old), body, res.kind)
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        if rv not in (None, "") and str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.Conflict.modified(res.plural, name, res.group)
        return self._write(res, old, self._merged(res, old, patched, subresource))

    async def delete(self, res: Resource, namespace: str, name: str, grace_period: int | None = None,
                     propagation: str | None = None, preconditions: dict | None = None) -> Any:
        self._record("delete", res, namespace, name)
        old = self._stored(res, namespace, name)
        m = old["metadata"]
        if preconditions and preconditions.get("uid") and preconditions["uid"] != m.get("uid"):
            raise errors.Conflict(f'Precondition failed: UID in precondition: {preconditions["uid"]}, '
                                  f'UID in object meta: {m.get("uid")}', {"name": name, "kind": res.plural})
        if preconditions and preconditions.get("resourceVersion") not in (None, "", m["resourceVersion"]):
            raise errors.Conflict.modified(res.plural, name, res.group)
        grace = _grace_period(res, old, grace_period)
        if not m.get("finalizers") and grace == 0:
            return self._commit(res, "DELETED", copy.deepcopy(old), old)
        if m.get("deletionTimestamp"):
            return copy.deepcopy(old)
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_rfc3339(time.time() + grace)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        return self._commit(res, "MODIFIED", new, old)

    async def bind(self, namespace: str, pod: str, node: str) -> None:
        self._record("bind", _PODS, namespace, pod, "binding")
        old = self._stored(_PODS, namespace, pod)
        if old["metadata"].get("deletionTimestamp"):
            raise errors.Conflict(f"pod {pod} is being deleted, cannot be assigned to a host",
                                  {"name": pod, "kind": "pods"})
        current = (old.get("spec") or {}).get("nodeName")
        if current:
            raise errors.Conflict(f'pod {pod} is already assigned to node "{current}"', {"name": pod, "kind": "pods"})
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["nodeName"] = node
        status = new.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}]
        self._write(_PODS, old, new)

    async def close(self) -> None:
        for w in self._watches:
            w.queue.put_nowait(_CLOSED)


def _grace_period(res: Resource, obj: dict, requested: int | None) -> int:
    """Only a pod bound to a node and not finished terminates gracefully (its kubelet ends it)."""
    spec = obj.get("spec") or {}
    if res.kind != "Pod" or not spec.get("nodeName") or (obj.get("status") or {}).get("phase") in (
            "Succeeded", "Failed"):
        return 0
    return max(0, int(spec.get("terminationGracePeriodSeconds", 30) if requested is None else requested))
