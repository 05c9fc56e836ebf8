"""The per-node Service proxy: Services + EndpointSlices → one model → the node's data plane.

Syncs are coalesced, not rate limited: a change wakes the sync loop, which applies everything
that changed since its last pass, so at most one sync is in flight and a burst costs one or
two syncs. The model is maintained incrementally (only Services whose object or slices
changed are rebuilt) and unchanged entries keep their identity, so data planes can skip them
cheaply. While the API server is unreachable the informers retry and keep their caches: the
data plane keeps serving the last model and is never cleared because of an API error.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.api.traffic import TrafficSnapshot
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.proxy.model import SERVICE_NAME_LABEL, Model, ServiceEntry, build_model
from pocketkube.proxy.provider import DataPlane
from pocketkube.proxy.traffic_metrics import TrafficCollector
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

SERVICES = BY_PLURAL[("", "services")]
ENDPOINT_SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

SYNC_BUCKETS = tuple(0.0005 * 2 ** i for i in range(16))  # 0.5 ms .. ~16 s
PROGRAMMING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60,
                       120, 300)


class ProxyMetrics:
    """One node agent's proxy metrics, in their own registry (several agents share a process in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
            buckets=SYNC_BUCKETS, registry=self.registry)
        self.programming_duration = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds", buckets=PROGRAMMING_BUCKETS,
            registry=self.registry)
        self.last_sync = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                               "The last time proxy rules were successfully synced", registry=self.registry)
        self.traffic = TrafficCollector()  # the pocketkube_proxy_* families, as of the last read
        self.registry.register(self.traffic)  # type: ignore[arg-type]

    def text(self) -> bytes:
        return generate_latest(self.registry)


def _slice_service(slc: dict) -> str | None:
    meta = slc.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{name}" if name else None


def _trigger_time(slc: dict) -> str:
    return ((slc.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION, "")


class ServiceProxy:
    def __init__(self, client: Client, node_name: str, node_ip: str, data_plane: DataPlane,
                 metrics: ProxyMetrics | None = None, *, retry_backoff: Backoff | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.data_plane = data_plane
        self.metrics = metrics or ProxyMetrics()
        # Wait before re-applying after a data plane error: 0.1 s doubling to 5 s.
        self.retry_backoff = retry_backoff or Backoff(initial=0.1, maximum=5.0)
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINT_SLICES)
        self.model: Model = {}
        self.syncs = 0  # completed applies, for tests and status
        self._slices_by_service: dict[str, dict[str, dict]] = {}
        self._entries_by_service: dict[str, dict[tuple[str, str], ServiceEntry]] = {}
        self._dirty: set[str] = set()
        self._triggers: list[float] = []
        self._wake = asyncio.Event()
        self._live = False  # past the initial listing: trigger times are real changes
        self._stopping = False
        self._informer_tasks: list[asyncio.Task] = []
        self._done = asyncio.Event()
        self._run_task: asyncio.Task | None = None
        self.services.add_handlers(self._on_service, lambda _old, new: self._on_service(new), self._on_service)
        self.slices.add_handlers(self._on_slice_add, self._on_slice_update, self._on_slice_delete)

    # ---- informer handlers: index and mark dirty; the sync loop does the work ----
    def _mark(self, service_key: str | None) -> None:
        if service_key:
            self._dirty.add(service_key)
            self._wake.set()

    def _on_service(self, svc: dict) -> None:
        self._mark(object_key(svc))

    def _index_slice(self, slc: dict) -> None:
        svc = _slice_service(slc)
        if svc:
            self._slices_by_service.setdefault(svc, {})[object_key(slc)] = slc
        self._mark(svc)

    def _unindex_slice(self, slc: dict) -> None:
        svc = _slice_service(slc)
        if svc:
            group = self._slices_by_service.get(svc, {})
            group.pop(object_key(slc), None)
            if not group:
                self._slices_by_service.pop(svc, None)
        self._mark(svc)

    def _note_trigger(self, value: str) -> None:
        if self._live and value:
            at = parse_rfc3339(value)
            if at is not None:
                self._triggers.append(at)

    def _on_slice_add(self, slc: dict) -> None:
        self._index_slice(slc)
        self._note_trigger(_trigger_time(slc))

    def _on_slice_update(self, old: dict, new: dict) -> None:
        self._unindex_slice(old)
        self._index_slice(new)
        if _trigger_time(new) != _trigger_time(old):
            self._note_trigger(_trigger_time(new))

    def _on_slice_delete(self, slc: dict) -> None:
        self._unindex_slice(slc)

    # ---- the sync loop ----
    def _rebuild(self, service_key: str) -> None:
        old = self._entries_by_service.pop(service_key, {})
        for key in old:
            self.model.pop(key, None)
        svc = self.services.get(service_key)
        if svc is None:
            return
        fresh = build_model([svc], self._slices_by_service.get(service_key, {}).values())
        for key, entry in fresh.items():
            previous = old.get(key)
            if previous is not None and previous == entry:
                fresh[key] = previous  # keep identity: planes skip unchanged entries by `is`
        self._entries_by_service[service_key] = fresh
        self.model.update(fresh)

    async def _sync(self) -> bool:
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, set()
        triggers, self._triggers = self._triggers, []
        for service_key in dirty:
            self._rebuild(service_key)
        try:
            await self.data_plane.apply(dict(self.model))
        except Exception:
            log.exception("%s data plane failed to apply the model", self.data_plane.name)
            self._triggers = triggers + self._triggers
            return False
        applied = time.time()
        self.metrics.sync_duration.observe(time.perf_counter() - started)
        self.metrics.last_sync.set(applied)
        for at in triggers:
            self.metrics.programming_duration.observe(max(0.0, applied - at))
        self.syncs += 1
        return True

    async def _sync_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if await self._sync():
                self.retry_backoff.reset()
                continue
            await asyncio.sleep(self.retry_backoff.next())
            self._wake.set()

    async def run(self) -> None:
        """Start the data plane, wait for both caches, then keep the data plane in sync until stop()."""
        self._run_task = asyncio.current_task()
        try:
            await self.data_plane.start()
            loop = asyncio.get_running_loop()
            self._informer_tasks = [loop.create_task(i.run()) for i in (self.services, self.slices)]
            await self.services.synced.wait()
            await self.slices.synced.wait()
            self._live = True
            self._dirty.update(self.services.cache)
            self._wake.set()
            await self._sync_loop()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            for task in self._informer_tasks:
                task.cancel()
            await asyncio.gather(*self._informer_tasks, return_exceptions=True)
            await self.data_plane.stop()
            self._done.set()

    async def stop(self) -> None:
        """Stop syncing and remove everything the data plane opened (waits for run() to finish)."""
        self._stopping = True
        self._wake.set()
        if self._run_task is None:
            return
        if not self._live:  # still waiting for the first listing (API server unreachable)
            self._run_task.cancel()
        await self._done.wait()

    async def traffic(self) -> TrafficSnapshot:
        """The data plane's cumulative traffic counts now (empty for a plane that counts nothing)."""
        read = getattr(self.data_plane, "traffic", None)
        if read is None:
            return TrafficSnapshot(self.node_name, self.data_plane.name, time.time())
        snap = await read()
        self.metrics.traffic.snapshot = snap
        return snap

    def metrics_text(self) -> bytes:
        """Prometheus text; the traffic families as of the last traffic() read."""
        return self.metrics.text()

    async def prometheus_text(self) -> bytes:
        """Prometheus text with the traffic counts read now (what the agent's /metrics serves)."""
        await self.traffic()
        return self.metrics.text()
