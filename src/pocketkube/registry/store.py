"""The generic object store: Kubernetes object semantics for every resource.

It owns what every kind shares — uid, creationTimestamp, generation, resourceVersion and
optimistic concurrency, the status/spec split, finalizers and graceful deletion, list and
watch with selectors — and asks the kind's Strategy (registry/strategy.py) for everything
that differs: defaulting and validation, the update endpoints, the grace period, deletion in
phases, and the hooks for side effects that must be transactional with the write. It sees
storage only through the Backend contract (storage/interface.py), never a concrete backend.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson

from pocketkube.api import errors
from pocketkube.api.meta import new_uid
from pocketkube.api.resources import Resource
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.registry import codec, listing
from pocketkube.registry.allocators.stored import AllocationRaced
from pocketkube.registry.leasemanager import TTLLeases
from pocketkube.registry.strategy import STATUS, Admission, Merge, Strategy, UpdatePath
from pocketkube.registry.watchhub import TRIGGER_FIELDS, TriggerHub
from pocketkube.storage.interface import (
    Backend,
    Compacted,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    RevisionMismatch,
    TooLarge,
    Unavailable,
)

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_PROPAGATION_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}


class _NoTransaction:
    """What a kind without side effects 'allocates': nothing to persist, commit or revert."""

    async def persist(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def revert(self) -> None:
        pass


_NO_TRANSACTION = _NoTransaction()


async def _persist(txn) -> None:
    """A hook transaction's allocations made durable before the write, when it has any to."""
    persist = getattr(txn, "persist", None)
    if persist is not None:
        await persist()


# Tries of a write whose allocation another API server raced (registry/allocators/stored.py).
_ALLOCATION_ATTEMPTS = 32


@dataclass
class ListResult:
    items: list[bytes]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    value: bytes
    revision: int

    def object(self) -> dict:
        return orjson.loads(self.value)


Filter = Callable[[dict], bool]
INITIAL_EVENTS_END = "INITIAL_EVENTS_END"  # marks the end of the synthetic ADDED events


def _strip_for_compare(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


# Metadata only the server sets: a client's update can never change them.
SYSTEM_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                   "namespace", "generation")


def carry_over_system_fields(new: dict, old: dict, *, has_status: bool) -> None:
    """Give an updated object the system metadata of the stored one, and its status when the
    kind has a status subresource (a spec update never writes status), as upstream's
    PrepareForUpdate does."""
    om, nm = old["metadata"], new.setdefault("metadata", {})
    for field in SYSTEM_METADATA:
        if field in om:
            nm[field] = om[field]
        else:
            nm.pop(field, None)
    nm["name"] = om["name"]
    if has_status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)


def bump_generation(new: dict, old: dict) -> None:
    """metadata.generation counts changes of everything but metadata and status."""
    om = old["metadata"]
    if "generation" in om and _strip_for_compare(new) != _strip_for_compare(old):
        new["metadata"]["generation"] = om["generation"] + 1


def generate_name(prefix: str) -> str:
    return prefix + "".join(random.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))


class ObjectStore:
    def __init__(self, res: Resource, backend: Backend, strategy: Strategy) -> None:
        self.res = res
        self._backend = backend
        self.strategy = strategy
        self.hooks = strategy.hooks
        self.has_status = "status" in res.subresources
        self.keep_status_on_create = strategy.keeps_status_on_create or not self.has_status
        self.updates: dict[str, UpdatePath] = dict(strategy.updates)
        if self.has_status:
            self.updates.setdefault("status", STATUS)
        # Admission plugins that see other kinds (LimitRanger, ResourceQuota), wired by the
        # registry: mutate after defaulting, then admit after validation, just before the write.
        self.admission: list[Admission] = []
        # Counts creates and deletes of this kind: a cache of which objects exist (admission's
        # view of LimitRanges and quotas) is current while the count is unchanged.
        self.membership = 0
        self._hubs: dict[str, TriggerHub] = {}  # prefix → shared watch by trigger (pods by node)
        # A kind whose objects expire (Events) writes them under store leases (leasemanager.py).
        self.ttl_leases: TTLLeases | None = None

    def current_revision(self) -> int:
        """The store's latest revision: where a list or a watch from "now" stands."""
        return self._backend.current_revision()

    # ---- reads ----
    def _key(self, namespace: str, name: str) -> str:
        return codec.key_for(self.res, namespace, name)

    def get_bytes(self, namespace: str, name: str) -> bytes:
        kv = self._backend.get_now(self._key(namespace, name))
        if kv is None:
            raise errors.NotFound.object(self.res.plural, name, self.res.group)
        return kv.value

    def get(self, namespace: str, name: str) -> dict:
        return orjson.loads(self.get_bytes(namespace, name))

    def try_get(self, namespace: str, name: str) -> dict | None:
        kv = self._backend.get_now(self._key(namespace, name))
        return orjson.loads(kv.value) if kv else None

    def list(self, namespace: str = "", *, match: Filter | None = None) -> ListResult:
        """Every object (under the namespace) in the in-memory state, for the server's own reads."""
        prefix = codec.prefix_for(self.res, namespace)
        rev = self._backend.current_revision()
        items = [kv.value for kv in self._backend.range_now(prefix)
                 if match is None or match(orjson.loads(kv.value))]
        return ListResult(items, rev)

    async def list_page(self, namespace: str = "", *, match: Filter | None = None, limit: int = 0,
                        continue_token: str = "", resource_version: str = "",
                        resource_version_match: str = "") -> ListResult:
        """A LIST as kube-apiserver serves one: at the revision its options name, one page of
        `limit` matches with a continue token pinning that revision (snapshot paging)."""
        prefix = codec.prefix_for(self.res, namespace)
        listing.validate_list_options(resource_version, resource_version_match, continue_token)
        plan = listing.plan_read(prefix, resource_version=resource_version, match=resource_version_match,
                                 continue_token=continue_token, limit=limit)
        try:
            return await self._read_pages(prefix, plan, match, max(limit, 0))
        except Compacted:
            raise listing.expired(plan.start if plan.from_continue else "", prefix) from None
        except FutureRevision as e:
            raise errors.Timeout.resource_version_too_large(e.requested, e.current) from None
        except Unavailable as e:
            raise errors.StorageError(str(e)) from None

    async def _read_pages(self, prefix: str, plan: listing.ReadPlan, match: Filter | None,
                          limit: int) -> ListResult:
        backend = self._backend
        rev = plan.revision
        if plan.consistent or plan.minimum:
            latest = await backend.consistent_revision()
            if plan.minimum > latest:
                raise FutureRevision(plan.minimum, latest)
            if plan.consistent:
                rev = latest
            await backend.wait_for(max(rev, plan.minimum))
        start, fetch = plan.start or prefix, limit
        items: list[bytes] = []
        last_key, more, count = "", False, 0
        while True:
            page = await backend.range_at(prefix, rev, start=start, limit=fetch)
            rev, count = page.revision, page.count  # later pages read at the first one's revision
            more = page.more
            for kv in page.kvs:
                if limit and len(items) == limit:
                    more = True
                    break
                last_key = kv.key
                if match is None or match(orjson.loads(kv.value)):
                    items.append(kv.value)
            if not more or not limit or len(items) >= limit:
                break
            # A selector dropped some: fetch on from the last key seen, in growing pages.
            fetch = min(fetch * 2, max(listing.MAX_FETCH, limit))
            start = last_key + "\x00"
        if not more:
            return ListResult(items, rev)
        token = listing.encode_continue(last_key + "\x00", prefix, rev)
        # count covers the keys from this fetch's start: exact only when nothing was filtered out
        remaining = count - limit if match is None else None
        return ListResult(items, rev, token, remaining)

    def list_objects(self, namespace: str = "", match: Filter | None = None) -> list[dict]:
        return [orjson.loads(v) for v in self.list(namespace, match=match).items]

    # ---- create ----
    def prepare_create(self, obj: dict, namespace: str) -> dict:
        obj = copy.deepcopy(obj)
        m = obj.get("metadata")
        if not isinstance(m, dict):
            m = {}
            obj["metadata"] = m
        if self.res.namespaced:
            body_ns = m.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request")
            m["namespace"] = namespace or body_ns or "default"
        else:
            m.pop("namespace", None)
        if not m.get("name") and isinstance(m.get("generateName"), str) and m["generateName"]:
            m["name"] = generate_name(m["generateName"])
        obj["apiVersion"] = self.res.api_version
        obj["kind"] = self.res.kind
        for field in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "selfLink", "managedFields"):
            m.pop(field, None)
        m["uid"] = new_uid()
        m["creationTimestamp"] = now_rfc3339()
        if self.strategy.tracks_generation:
            m["generation"] = 1
        else:
            m.pop("generation", None)
        if not self.keep_status_on_create:
            obj.pop("status", None)
        self.strategy.default(obj)
        return obj

    def validate_create(self, obj: dict) -> None:
        errs = self.strategy.validate(obj)
        if errs:
            raise errors.Invalid(self.res.kind, obj["metadata"].get("name", ""), errs, self.res.group)

    async def create(self, obj: dict, namespace: str = "", *, dry_run: bool = False) -> dict:
        requested = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        requested_name = requested.get("name") if isinstance(requested.get("name"), str) else ""
        obj = self.prepare_create(obj, namespace)
        if self.strategy.admit is not None:
            self.strategy.admit(obj, requested_name)
        for plugin in self.admission:
            plugin.mutate(self.res, obj)
        for _ in range(_ALLOCATION_ATTEMPTS - 1 if self.hooks.may_race else 0):
            try:  # on a fresh copy: allocation fills the object in
                return await self._create(copy.deepcopy(obj), dry_run)
            except AllocationRaced:
                continue  # another API server took a value we picked: pick again
        return await self._create(obj, dry_run)

    async def _create(self, obj: dict, dry_run: bool) -> dict:
        name = obj["metadata"].get("name", "")
        key = self._key(obj["metadata"].get("namespace", ""), name)
        # Allocation comes first, as in Kubernetes: re-creating a Service with a fixed nodePort
        # reports the port as already allocated, not the name as already existing.
        txn = self.hooks.before_create(obj) or _NO_TRANSACTION
        try:
            self.validate_create(obj)
            if self._backend.get_now(key) is not None:
                raise errors.AlreadyExists.object(self.res.plural, name, self.res.group)
            for plugin in self.admission:
                await plugin.admit(self.res, obj, dry_run)
            if dry_run:
                txn.revert()
                return obj
            await _persist(txn)
            try:
                kv = await self._write(self._put(self._backend.create, key, codec.encode_at(obj)), name)
            finally:
                self.membership += 1
        except BaseException:  # cancellation too: an allocation must not outlive a failed write
            txn.revert()
            raise
        txn.commit()
        return orjson.loads(kv.value)

    async def _put(self, write, key: str, value, *args) -> KeyValue:
        """backend.create/update, under the kind's TTL lease when its objects expire."""
        if self.ttl_leases is None:
            return await write(key, value, *args)
        lease = await self.ttl_leases.lease()
        try:
            return await write(key, value, *args, lease=lease)
        except LeaseNotFound:  # gone early (revoked by hand, a store restored): a new one
            self.ttl_leases.forget(lease)
            return await write(key, value, *args, lease=await self.ttl_leases.lease())

    async def _write(self, operation, name: str) -> KeyValue:
        """A store write, its errors in the API's terms."""
        try:
            return await operation
        except KeyExists:
            raise errors.AlreadyExists.object(self.res.plural, name, self.res.group) from None
        except RevisionMismatch:
            raise errors.Conflict.modified(self.res.plural, name, self.res.group) from None
        except KeyNotFound:
            raise errors.NotFound.object(self.res.plural, name, self.res.group) from None
        except Unavailable as e:
            raise errors.StorageError(str(e)) from None
        except TooLarge as e:
            raise errors.RequestEntityTooLarge(f"Request entity too large: {e}") from None

    # ---- update ----
    def _read(self, key: str, name: str) -> tuple[KeyValue, dict]:
        """The stored record and its object; NotFound when there is none."""
        kv = self._backend.get_now(key)
        if kv is None:
            raise errors.NotFound.object(self.res.plural, name, self.res.group)
        return kv, orjson.loads(kv.value)

    def _require_version(self, meta: dict, kv: KeyValue, name: str) -> None:
        """A resourceVersion in the written metadata, when set, must be the stored one."""
        rv = meta.get("resourceVersion")
        if rv not in (None, "") and str(rv) != str(kv.mod_revision):
            raise errors.Conflict.modified(self.res.plural, name, self.res.group)

    async def update(self, namespace: str, name: str, new: dict, *, subresource: str = "",
                     dry_run: bool = False) -> dict:
        """PUT semantics: the body replaces the object; its resourceVersion, if set, must match."""
        key = self._key(namespace, name)
        kv, old = self._read(key, name)
        new = copy.deepcopy(new)
        nm = new.get("metadata")
        if not isinstance(nm, dict):
            raise errors.BadRequest("metadata is required")
        if nm.get("name", name) != name:
            raise errors.BadRequest(
                f"the name of the object ({nm.get('name')}) does not match the name on the URL ({name})")
        self._require_version(nm, kv, name)
        return await self._write_update(key, kv.mod_revision, old, new, subresource, dry_run)

    async def guaranteed_update(self, namespace: str, name: str, mutate: Callable[[dict], dict], *,
                                subresource: str = "", dry_run: bool = False) -> dict:
        """Read-modify-write, retried on a concurrent write (PATCH, scale, binding)."""
        key = self._key(namespace, name)
        for _ in range(20):
            kv, old = self._read(key, name)
            new = mutate(copy.deepcopy(old))
            nm = new.get("metadata") if isinstance(new, dict) else None
            if not isinstance(nm, dict):
                raise errors.BadRequest("metadata must be an object")
            self._require_version(nm, kv, name)
            try:
                return await self._write_update(key, kv.mod_revision, old, new, subresource, dry_run)
            except errors.Conflict:
                # Retry on the fresh object: a resourceVersion the patch merely carried over
                # matches again; one the client set on purpose no longer does, and fails above.
                continue
        raise errors.Conflict.modified(self.res.plural, name, self.res.group)

    def _update_path(self, subresource: str) -> UpdatePath:
        path = self.updates.get(subresource)
        if path is None:
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
        return path

    def _merge_update(self, old: dict, new: dict, path: UpdatePath) -> dict:
        new.setdefault("metadata", {})
        if path.merge is Merge.RAW:
            return new
        if path.merge is Merge.STATUS:
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            if path.prepare is not None:
                path.prepare(merged, old)
            return merged
        new["apiVersion"] = self.res.api_version
        new["kind"] = self.res.kind
        carry_over_system_fields(new, old, has_status=self.has_status)
        if path.prepare is not None:
            path.prepare(new, old)
        self.strategy.default(new)
        bump_generation(new, old)
        return new

    async def _write_update(self, key: str, mod_rev: int, old: dict, new: dict, subresource: str,
                            dry_run: bool) -> dict:
        for _ in range(_ALLOCATION_ATTEMPTS - 1 if self.hooks.may_race else 0):
            try:
                return await self._write_update_once(key, mod_rev, old, copy.deepcopy(new), subresource, dry_run)
            except AllocationRaced:
                continue
        return await self._write_update_once(key, mod_rev, old, new, subresource, dry_run)

    async def _write_update_once(self, key: str, mod_rev: int, old: dict, new: dict, subresource: str,
                                 dry_run: bool) -> dict:
        path = self._update_path(subresource)
        new = self._merge_update(old, new, path)
        txn = (self.hooks.before_update(new, old) if path.allocates else None) or _NO_TRANSACTION
        name = old["metadata"]["name"]
        try:
            validate_update = path.validate_update or self.strategy.validate_update
            errs = validate_update(new, old) if path.validate else []
            if errs:
                raise errors.Invalid(self.res.kind, name, errs, self.res.group)
            new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion", "")
            if new == old:
                txn.revert()
                return old  # a no-op update keeps the resourceVersion, as Kubernetes does
            if self.strategy.should_delete_on_update(new, old):
                txn.revert()
                return new if dry_run else await self._delete_now(key, mod_rev, old)
            if dry_run:
                txn.revert()
                return new
            await _persist(txn)
            kv = await self._write(self._put(self._backend.update, key, codec.encode_at(new), mod_rev), name)
        except BaseException:
            txn.revert()
            raise
        txn.commit()
        return orjson.loads(kv.value)

    # ---- delete ----
    async def delete(self, namespace: str, name: str, *, grace_period: int | None = None,
                     preconditions: dict | None = None, dry_run: bool = False,
                     propagation: str | None = None) -> tuple[dict, bool]:
        """Returns (object, deleted_now). Not deleted now: graceful, finalizers or a phased delete pending.

        Orphan and Foreground propagation leave the object with the `orphan` or
        `foregroundDeletion` finalizer; the garbage collector finishes the job, as in Kubernetes.
        A delete that loses a race to another one answers NotFound, as upstream's store does.
        """
        key = self._key(namespace, name)
        for _ in range(20):
            kv, obj = self._read(key, name)
            m = obj["metadata"]
            self._check_preconditions(preconditions, m, kv, name)
            if self.strategy.begin_delete is not None:
                before = copy.deepcopy(obj)
                if self.strategy.begin_delete(obj):
                    if obj == before or dry_run:
                        return obj, False
                    written = await self._replace(key, obj, kv.mod_revision)
                    if written is None:
                        continue
                    return written, False
            grace = self.strategy.grace_period(obj, grace_period)
            if dry_run:
                return obj, True
            finalizer = _PROPAGATION_FINALIZERS.get(propagation or "")
            if finalizer and finalizer not in (m.get("finalizers") or []):
                m["finalizers"] = [*(m.get("finalizers") or []), finalizer]
            if not m.get("finalizers") and grace == 0:
                try:
                    return await self._delete_now(key, kv.mod_revision, obj), True
                except errors.Conflict:
                    continue
            if m.get("deletionTimestamp") and not self._shortens(m, grace):
                return obj, False  # already terminating
            m["deletionTimestamp"] = now_rfc3339(time.time() + grace)
            m["deletionGracePeriodSeconds"] = grace
            written = await self._replace(key, obj, kv.mod_revision)
            if written is None:
                continue
            return written, False
        raise errors.Conflict.modified(self.res.plural, name, self.res.group)

    def _check_preconditions(self, preconditions: dict | None, m: dict, kv: KeyValue, name: str) -> None:
        if not preconditions:
            return
        if preconditions.get("uid") and preconditions["uid"] != m.get("uid"):
            raise errors.Conflict(
                f'Precondition failed: UID in precondition: {preconditions["uid"]}, '
                f'UID in object meta: {m.get("uid")}', {"name": name, "kind": self.res.plural})
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != str(kv.mod_revision):
            raise errors.Conflict.modified(self.res.plural, name, self.res.group)

    async def _replace(self, key: str, obj: dict, mod_rev: int) -> dict | None:
        """Write a delete's mark on the object; None when it changed or went meanwhile (read again)."""
        try:
            kv = await self._put(self._backend.update, key, codec.encode_at(obj), mod_rev)
        except (RevisionMismatch, KeyNotFound):
            return None
        except Unavailable as e:
            raise errors.StorageError(str(e)) from None
        except TooLarge as e:
            raise errors.RequestEntityTooLarge(f"Request entity too large: {e}") from None
        return orjson.loads(kv.value)

    @staticmethod
    def _shortens(m: dict, grace: int) -> bool:
        return grace < int(m.get("deletionGracePeriodSeconds") or 0)

    async def _delete_now(self, key: str, mod_rev: int, obj: dict) -> dict:
        try:
            kv = await self._write(self._backend.delete(key, mod_rev), obj["metadata"]["name"])
        finally:
            self.membership += 1
        done = self.hooks.after_delete(obj)
        if done is not None:  # the Service allocator writes its releases (awaitable)
            await done
        return codec.decode(codec.with_resource_version(kv.value, kv.mod_revision))

    async def delete_expired(self, expired: Filter) -> int:
        """Delete every object `expired` picks straight from storage, as an etcd lease expiring
        does: no finalizers, no grace, no hooks. An object written meanwhile is kept (its new
        version is judged next time). Returns how many went."""
        gone = 0
        for kv in self._backend.range_now(codec.prefix_for(self.res, "")):
            try:
                if not expired(orjson.loads(kv.value)):
                    continue
            except orjson.JSONDecodeError:
                continue
            try:
                await self._backend.delete(kv.key, kv.mod_revision)
                gone += 1
            except (KeyNotFound, RevisionMismatch):
                pass
            finally:
                self.membership += 1
        return gone

    # ---- watch ----
    async def watch(self, namespace: str, from_revision: int, *, match: Filter | None = None,
                    send_initial: bool = False) -> AsyncIterator[WatchEvent]:
        """Kubernetes watch semantics over the store's events, with selector transitions."""
        prefix = codec.prefix_for(self.res, namespace)
        if send_initial:
            from_revision = self._backend.current_revision()
            for kv in sorted(self._backend.range_now(prefix), key=lambda kv: kv.key):
                if match is None or match(orjson.loads(kv.value)):
                    yield WatchEvent("ADDED", kv.value, kv.mod_revision)
            yield WatchEvent(INITIAL_EVENTS_END, b"", from_revision)
        try:
            async for ev in self._watch_source(prefix, from_revision, getattr(match, "trigger", None)):
                cur_ok = match is None or match(orjson.loads(ev.kv.value))
                if ev.type == "DELETE":
                    if cur_ok:
                        yield WatchEvent("DELETED", codec.with_resource_version(ev.kv.value, ev.revision),
                                         ev.revision)
                    continue
                prev_ok = ev.prev is not None and (match is None or match(orjson.loads(ev.prev.value)))
                if cur_ok:
                    yield WatchEvent("MODIFIED" if prev_ok else "ADDED", ev.kv.value, ev.revision)
                elif prev_ok:
                    yield WatchEvent("DELETED", ev.kv.value, ev.revision)
        except Compacted as e:
            raise errors.Gone(
                f"too old resource version: {e.requested} ({e.compacted})") from None

    def _watch_source(self, prefix: str, from_revision: int, trigger: str | None) -> AsyncIterator[Event]:
        """Storage events after from_revision; a watcher whose selector pins the kind's trigger
        field (match.trigger, set by the API handlers) gets them from the shared hub, filtered."""
        field = TRIGGER_FIELDS.get(self.res.kind)
        if trigger is not None and field is not None:
            hub = self._hubs.get(prefix)
            if hub is None:
                hub = self._hubs[prefix] = TriggerHub(self._backend, prefix, field[1])
            sub = hub.subscribe(trigger, from_revision)
            if sub is not None:
                return hub.events(sub)
        return self._backend.watch(prefix, from_revision)
