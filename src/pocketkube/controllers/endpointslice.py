"""EndpointSlice controller: service/pod/node/slice informers → sync_service(key) → plan → writes.

Mirrors pkg/controller/endpointslice. Handlers only map an event to the keys of the services
it concerns (a pod to the services of its namespace whose selector matches it, before and after
a label change) and stamp each key with the time the change was seen; the work queue merges a
burst into one sync. `sync` reads the caches, lets `endpointslice_plan.plan_slices` decide,
and writes the creates, updates and deletes concurrently. Nothing polls: a change is written
as soon as a worker picks the key up.

The stamp becomes the `endpoints.kubernetes.io/last-change-trigger-time` annotation, from
which the proxy measures network programming latency. Upstream takes it from the pod's Ready
transition time, which the API carries only to the second; the time this controller saw the
change is within a watch delay of it and precise to the nanosecond.

Reading our own writes: the cache may not yet hold a slice we just wrote, and a sync on that
cache would create it twice. `SliceTracker` remembers the resourceVersion of every slice we
wrote or deleted; a sync that finds the cache behind raises `StaleCache` and is retried with
back-off once the informer catches up (upstream's EndpointSliceTracker, with resourceVersions
in place of generations).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import format_rfc3339_nano
from pocketkube.client.events import WARNING, EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers, split_key
from pocketkube.controllers.endpointslice_plan import (
    MAX_ENDPOINTS_PER_SLICE,
    SERVICE_NAME_LABEL,
    is_managed_slice,
    is_pod_ready,
    plan_slices,
    pod_ips,
)

__all__ = [
    "EndpointSliceController",
    "ServiceIndex",
    "SliceTracker",
    "StaleCache",
    "TriggerTimes",
    "pod_endpoints_changed",
]

log = logging.getLogger(__name__)

SERVICES = BY_PLURAL[("", "services")]
PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
ENDPOINTSLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]


class StaleCache(errors.Conflict):
    """The slice cache has not caught up with our own writes yet; retry shortly."""


def _namespace(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace", "")


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def pod_endpoints_changed(old: dict, new: dict) -> bool:
    """Whether a pod update can change any endpoint built from it (podEndpointsChanged)."""
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    os_, ns_ = old.get("spec") or {}, new.get("spec") or {}
    terminal = ("Succeeded", "Failed")
    return (om.get("deletionTimestamp") != nm.get("deletionTimestamp")
            or is_pod_ready(old) != is_pod_ready(new)
            or pod_ips(old) != pod_ips(new)
            or ((old.get("status") or {}).get("phase") in terminal) != ((new.get("status") or {}).get("phase") in terminal)
            or any(os_.get(k) != ns_.get(k) for k in ("nodeName", "hostname", "subdomain")))


class ServiceIndex:
    """Pods by namespace and by label, and the services of a namespace selecting a pod, from the
    informers' caches (kept in step by handlers): a sync reads only the pods carrying the
    rarest of its selector's labels, not the whole namespace."""

    def __init__(self, services: Informer, pods: Informer) -> None:
        self.services = services
        self._pods: dict[str, dict[str, dict]] = {}
        self._pods_by_label: dict[tuple[str, str, str], dict[str, dict]] = {}
        self._services: dict[str, dict[str, dict]] = {}
        for pod in pods.list():
            self._add_pod(pod)
        for svc in services.list():
            self._put(self._services, svc)
        pods.add_handlers(self._add_pod, self._replace_pod, self._remove_pod)
        services.add_handlers(lambda o: self._put(self._services, o), lambda _, o: self._put(self._services, o),
                              lambda o: self._drop(self._services, o))

    @staticmethod
    def _put(index: dict, obj: dict) -> None:
        index.setdefault(_namespace(obj), {})[obj["metadata"]["name"]] = obj

    @staticmethod
    def _drop(index: dict, obj: dict) -> None:
        index.get(_namespace(obj), {}).pop(obj["metadata"]["name"], None)

    def _add_pod(self, pod: dict) -> None:
        self._put(self._pods, pod)
        ns, name = _namespace(pod), pod["metadata"]["name"]
        for k, v in _labels(pod).items():
            self._pods_by_label.setdefault((ns, k, v), {})[name] = pod

    def _remove_pod(self, pod: dict) -> None:
        self._drop(self._pods, pod)
        ns, name = _namespace(pod), pod["metadata"]["name"]
        for k, v in _labels(pod).items():
            bucket = self._pods_by_label.get((ns, k, v))
            if bucket is not None:
                bucket.pop(name, None)
                if not bucket:
                    del self._pods_by_label[(ns, k, v)]

    def _replace_pod(self, old: dict, new: dict) -> None:
        self._remove_pod(old)
        self._add_pod(new)

    def pods_for(self, service: dict) -> list[dict]:
        """A superset of the pods the service selects (the plan checks the whole selector)."""
        ns = _namespace(service)
        selector = (service.get("spec") or {}).get("selector")
        if selector is None:
            return []
        if not selector:
            return list(self._pods.get(ns, {}).values())
        buckets = [self._pods_by_label.get((ns, k, v), {}) for k, v in selector.items()]
        return list(min(buckets, key=len).values())

    def services_selecting(self, pod: dict) -> list[dict]:
        labels = _labels(pod)
        out = []
        for svc in self._services.get(_namespace(pod), {}).values():
            selector = (svc.get("spec") or {}).get("selector")
            if selector is not None and all(labels.get(k) == v for k, v in selector.items()):
                out.append(svc)
        return out

    def service_keys_for_pod_change(self, old: dict | None, new: dict | None) -> set[str]:
        """Keys of the services concerned by a pod add (old None), update or delete (new None)."""
        if old is not None and new is not None:
            if _labels(old) == _labels(new) and not pod_endpoints_changed(old, new):
                return set()
            if _labels(old) == _labels(new):
                old = None  # only the current matches matter
        return {object_key(s) for p in (old, new) if p is not None for s in self.services_selecting(p)}


class TriggerTimes:
    """The earliest not-yet-synced change per service key, in wall-clock nanoseconds."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._pending: dict[str, int] = {}

    def observe(self, key: str) -> None:
        self._pending.setdefault(key, self._clock())

    def take(self, key: str) -> int | None:
        return self._pending.pop(key, None)

    def restore(self, key: str, ns: int | None) -> None:
        """Put back a stamp taken by a sync that failed, keeping the earliest."""
        if ns is not None:
            self._pending[key] = min(ns, self._pending.get(key, ns))


_DELETION_EXPECTED = -1


def _rv(obj: dict) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class SliceTracker:
    """resourceVersions of the slices this controller wrote, per service key (by slice uid)."""

    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, int]] = {}

    def written(self, service_key: str, slice_: dict) -> None:
        self._by_service.setdefault(service_key, {})[slice_["metadata"]["uid"]] = _rv(slice_)

    def expect_deletion(self, service_key: str, slice_: dict) -> None:
        self._by_service.setdefault(service_key, {})[slice_["metadata"]["uid"]] = _DELETION_EXPECTED

    def should_sync(self, service_key: str, slice_: dict) -> bool:
        """A cached slice changed by someone else (or never written by us) needs a sync."""
        seen = self._by_service.get(service_key, {}).get(slice_["metadata"].get("uid"))
        return seen is None or (seen != _DELETION_EXPECTED and _rv(slice_) > seen)

    def deletion_observed(self, service_key: str, slice_: dict) -> bool:
        """Forget a deleted slice; True when we deleted it ourselves."""
        versions = self._by_service.get(service_key, {})
        expected = versions.pop(slice_["metadata"].get("uid"), None) == _DELETION_EXPECTED
        if not versions:
            self._by_service.pop(service_key, None)
        return expected

    def stale(self, service_key: str, cached: Iterable[dict]) -> bool:
        versions = self._by_service.get(service_key)
        if not versions:
            return False
        present = {}
        for s in cached:
            uid = s["metadata"].get("uid")
            present[uid] = s
            seen = versions.get(uid)
            if seen is not None and (seen == _DELETION_EXPECTED or seen > _rv(s)):
                return True
        return any(v != _DELETION_EXPECTED and uid not in present for uid, v in versions.items())


class ServiceKeyedController(Controller):
    """What the EndpointSlice and Endpoints controllers share: keyed by Service, woken by the
    Service and by changes of the pods it selects. Each wake-up stamps the key's trigger time;
    a sync takes the stamp and puts it back when it fails."""

    def _watch_services_and_pods(self, services: Informer, pods: Informer, clock: Callable[[], int]) -> None:
        self.index = ServiceIndex(services, pods)
        self.trigger_times = TriggerTimes(clock)
        services.add_handlers(self._on_service, lambda _, new: self._on_service(new), self._on_service)
        pods.add_handlers(lambda p: self._on_pod(None, p), self._on_pod, lambda p: self._on_pod(p, None))

    def _changed(self, key: str) -> None:
        self.trigger_times.observe(key)
        self.queue.add(key)

    def _on_service(self, svc: dict) -> None:
        self._changed(object_key(svc))

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        for key in self.index.service_keys_for_pod_change(old, new):
            self._changed(key)

    async def sync(self, key: str) -> None:
        stamp = self.trigger_times.take(key)
        try:
            await self.sync_service(key, stamp)
        except BaseException:
            self.trigger_times.restore(key, stamp)
            raise

    async def sync_service(self, key: str, stamp: int | None = None) -> None:
        raise NotImplementedError


class EndpointSliceController(ServiceKeyedController):
    name = "endpointslice-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 5,
                 max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.client = client
        self.recorder = recorder
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.services = informers.get(SERVICES)
        self.pods = informers.get(PODS)
        self.nodes = informers.get(NODES)
        self.slices = informers.get(ENDPOINTSLICES)
        super().__init__([self.services, self.pods, self.nodes, self.slices], workers=workers)
        self.tracker = SliceTracker()
        self._slices_by_service: dict[str, dict[str, dict]] = {}
        self._waiting_for_node: dict[str, set[str]] = {}
        for s in self.slices.list():
            self._index_slice(s)
        self._watch_services_and_pods(self.services, self.pods, clock)
        self.nodes.add_handlers(self._on_node)
        self.slices.add_handlers(self._on_slice_add, self._on_slice_update, self._on_slice_delete)

    # ---- handlers: keys only ----

    def _on_node(self, node: dict) -> None:
        for key in self._waiting_for_node.pop(node["metadata"]["name"], ()):
            self.queue.add(key)

    @staticmethod
    def _service_key_of(slice_: dict) -> str | None:
        name = _labels(slice_).get(SERVICE_NAME_LABEL)
        return f"{_namespace(slice_)}/{name}" if name else None

    def _index_slice(self, slice_: dict) -> None:
        key = self._service_key_of(slice_)
        if key is not None:
            self._slices_by_service.setdefault(key, {})[slice_["metadata"]["name"]] = slice_

    def _unindex_slice(self, slice_: dict) -> None:
        key = self._service_key_of(slice_)
        if key is not None:
            by_name = self._slices_by_service.get(key, {})
            by_name.pop(slice_["metadata"]["name"], None)
            if not by_name:
                self._slices_by_service.pop(key, None)

    def _on_slice_add(self, slice_: dict) -> None:
        self._index_slice(slice_)
        key = self._service_key_of(slice_)
        if key is not None and is_managed_slice(slice_) and self.tracker.should_sync(key, slice_):
            self.queue.add(key)

    def _on_slice_update(self, old: dict, new: dict) -> None:
        self._unindex_slice(old)
        self._index_slice(new)
        old_key, new_key = self._service_key_of(old), self._service_key_of(new)
        if old_key != new_key or is_managed_slice(old) != is_managed_slice(new):
            for key in {old_key, new_key} - {None}:
                self.queue.add(key)  # type: ignore[arg-type]
        elif new_key is not None and is_managed_slice(new) and self.tracker.should_sync(new_key, new):
            self.queue.add(new_key)

    def _on_slice_delete(self, slice_: dict) -> None:
        self._unindex_slice(slice_)
        key = self._service_key_of(slice_)
        if key is not None and is_managed_slice(slice_) and not self.tracker.deletion_observed(key, slice_):
            self.queue.add(key)  # someone else deleted one of ours: put it back

    # ---- sync ----

    def slices_of(self, key: str) -> list[dict]:
        return list(self._slices_by_service.get(key, {}).values())

    async def sync_service(self, key: str, stamp: int | None = None) -> None:
        existing = self.slices_of(key)
        if self.tracker.stale(key, existing):
            raise StaleCache(f"endpointslice cache for service {key} is behind this controller's writes")
        svc = self.services.get(key)
        if svc is None:
            await self._delete_all(key, [s for s in existing if is_managed_slice(s)])
            return
        plan = plan_slices(svc, self.index.pods_for(svc), self.nodes.cache, existing,
                           trigger_time=format_rfc3339_nano(stamp) if stamp else None,
                           max_per_slice=self.max_endpoints_per_slice)
        for node in plan.missing_nodes:
            self._waiting_for_node.setdefault(node, set()).add(key)
        if not plan.empty:
            await self._apply(key, svc, plan.create, plan.update, plan.delete)

    async def _apply(self, key: str, svc: dict, create: list[dict], update: list[dict], delete: list[dict]) -> None:
        namespace, _ = split_key(key)
        for s in delete:
            self.tracker.expect_deletion(key, s)
        results = await asyncio.gather(
            *(self._write(key, self.client.create(ENDPOINTSLICES, s, namespace)) for s in create),
            *(self._write(key, self.client.update(ENDPOINTSLICES, s)) for s in update),
            *(self._delete(namespace, s) for s in delete), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            if any(not isinstance(f, (errors.Conflict, errors.NotFound, errors.AlreadyExists)) for f in failures):
                self.recorder.event(svc, WARNING, "FailedToUpdateEndpointSlices",
                                    f"Error updating Endpoint Slices for Service {key}: {failures[0]}", res=SERVICES)
            raise failures[0]

    async def _write(self, key: str, call: Awaitable[dict]) -> None:
        self.tracker.written(key, await call)

    async def _delete(self, namespace: str, slice_: dict) -> None:
        try:
            await self.client.delete(ENDPOINTSLICES, namespace, slice_["metadata"]["name"])
        except errors.NotFound:
            pass

    async def _delete_all(self, key: str, slices: list[dict]) -> None:
        namespace, _ = split_key(key)
        for s in slices:
            self.tracker.expect_deletion(key, s)
        results = await asyncio.gather(*(self._delete(namespace, s) for s in slices), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
