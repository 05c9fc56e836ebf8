"""The kubelet's wiring: this node's pods from an informer, one PodWorker per pod, status writes.

The Kubelet owns what the pod workers share: the runtime (chosen by the agent's wiring and
passed in, seen only through the runtime interface; it owns the pods' sandboxes and IPs), the
image manager (pulls and their back-off), the crash-loop and sandbox back-offs, the event
recorder, the Service informer (for service link variables) and the volume manager (whose
watches of ConfigMaps and Secrets wake the pods that mount them; a periodic check evicts pods
whose disk emptyDir outgrew its sizeLimit).
Events yield to pod status writes: while any status write is in flight the recorder waits, so
during a burst of pod starts the statuses (which make pods Ready) go first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pocketkube.agent.envvars import EnvError
from pocketkube.agent.kubelet.image_manager import ImageManager
from pocketkube.agent.kubelet.pod_workers import PodWorker, crash_loop_backoff, sandbox_backoff
from pocketkube.agent.kubelet.pull_secrets import RegistryKey, keyring, pull_secret_names
from pocketkube.agent.kubelet.stats import UsageSampler
from pocketkube.agent.kubelet.volumes import VolumeManager
from pocketkube.agent.runtime.interface import RegistryAuth, Runtime
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.interface import Client

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
SERVICES = BY_PLURAL[("", "services")]
ENV_SOURCES = {"ConfigMap": BY_PLURAL[("", "configmaps")], "Secret": BY_PLURAL[("", "secrets")]}
SHUTDOWN_GRACE = 3.0
EVENTS_DRAIN_TIMEOUT = 2.0
EVENT_WRITES_IN_FLIGHT = 4  # a burst of pod starts writes its events over a few connections
EMPTY_DIR_CHECK_PERIOD = 10.0  # the eviction manager's housekeeping interval


class Kubelet:
    """Watches this node's pods (spec.nodeName=<node>) and runs one PodWorker per pod."""

    def __init__(self, client: Client, runtime: Runtime, node_name: str, node_ip: str,
                 allocatable: dict[str, str] | None = None, clock: Callable[[], float] = time.time,
                 volumes_root: Path | None = None) -> None:
        self.client = client
        self.runtime = runtime
        self.node_name = node_name
        self.node_ip = node_ip
        self.allocatable = allocatable or {}
        self.clock = clock
        self.backoff = crash_loop_backoff(clock)
        self.images = ImageManager(runtime, crash_loop_backoff(clock))
        self.sandbox_backoff = sandbox_backoff(clock)
        self._status_writes = 0
        self._no_status_writes = asyncio.Event()
        self._no_status_writes.set()
        self.events = EventRecorder(client, "kubelet", host=node_name, quiet=self._no_status_writes,
                                    max_in_flight=EVENT_WRITES_IN_FLIGHT)
        self.pod_informer = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.service_informer = Informer(client, SERVICES)
        root = volumes_root or Path(tempfile.gettempdir()) / f"pocketkube-volumes-{os.getpid()}"
        self.volumes = VolumeManager(client, root, node_ip=node_ip, allocatable=self.allocatable,
                                     on_change=self._wake, clock=clock)
        self.workers: dict[str, PodWorker] = {}
        self.sampler: UsageSampler | None = None  # set by the agent's wiring (it knows its own process)
        self._finished: set[str] = set()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Re-adopt what still runs, sync the pod list, and remove pods the API no longer has."""
        await self.runtime.adopt_all()
        self.runtime.on_sandbox_lost(self._on_sandbox_lost)
        self.pod_informer.add_handlers(self._on_pod, lambda _old, new: self._on_pod(new), self._on_pod_deleted)
        self._tasks = [asyncio.create_task(self.pod_informer.run(), name="pod informer"),
                       asyncio.create_task(self.service_informer.run(), name="service informer"),
                       asyncio.create_task(self._check_empty_dirs(), name="emptyDir usage")]
        await self.pod_informer.synced.wait()
        await self._remove_orphans()

    async def _remove_orphans(self) -> None:
        known = {p["metadata"].get("uid") for p in self.pod_informer.list()}
        for uid in set(self.runtime.pods()) - known:
            if uid not in self.workers:
                log.info("removing pod %s: it no longer exists in the API", uid)
                await self.runtime.remove_pod(uid)
        await self.volumes.remove_orphans(known | set(self.workers))

    def _wake(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.wake.set()

    async def _check_empty_dirs(self) -> None:
        while True:
            await asyncio.sleep(EMPTY_DIR_CHECK_PERIOD)
            for worker in list(self.workers.values()):
                try:
                    message = await asyncio.to_thread(self.volumes.exceeded_empty_dirs, worker.pod)
                except Exception:  # noqa: BLE001 - one pod's odd volume must not stop the checks
                    log.exception("emptyDir usage check of %s failed", worker.key)
                    continue
                if message:
                    worker.evict(message)

    @contextmanager
    def status_write(self) -> Iterator[None]:
        self._status_writes += 1
        self._no_status_writes.clear()
        try:
            yield
        finally:
            self._status_writes -= 1
            if not self._status_writes:
                self._no_status_writes.set()

    async def services_synced(self) -> None:
        await self.service_informer.synced.wait()

    def services(self) -> list[dict]:
        return self.service_informer.list()

    async def env_objects(self, namespace: str, refs: set[tuple[str, str]]) -> dict[tuple[str, str], dict | None]:
        """The named ConfigMaps and Secrets of a namespace (None: not found), read from the API as
        the node identity; any other failure is an EnvError, so the container waits and retries."""
        async def one(kind: str, name: str) -> dict | None:
            try:
                return await self.client.get(ENV_SOURCES[kind], namespace, name)
            except errors.NotFound:
                return None
            except errors.ApiError as e:
                raise EnvError(f"couldn't get {kind.lower()} {namespace}/{name}: {e}") from e
        keys = sorted(refs)
        found = await asyncio.gather(*(one(kind, name) for kind, name in keys))
        return dict(zip(keys, found))

    async def pull_keyring(self, pod: dict) -> tuple[list[tuple[RegistryKey, RegistryAuth]], list[str]]:
        """The registry credentials of the pod's image pull secrets, and the names of those that
        could not be read. A ServiceAccount's secrets are already in the pod: the ServiceAccount
        admission copies them there at create, so the kubelet never reads accounts."""
        namespace = pod["metadata"].get("namespace", "")
        secrets, missing = [], []
        for name in pull_secret_names(pod):
            try:
                secrets.append(await self.client.get(ENV_SOURCES["Secret"], namespace, name))
            except errors.ApiError:
                missing.append(name)
        return keyring(secrets), missing
    async def stats_summary(self) -> dict:
        pods = {p["metadata"]["uid"]: p for p in self.pod_informer.list()}
        if self.sampler is None:
            return {"node": {"nodeName": self.node_name}, "pods": []}
        return await self.sampler.summary(self.node_name, pods)

    def find_pod(self, namespace: str, name: str) -> dict | None:
        return self.pod_informer.get(f"{namespace}/{name}")

    def _on_pod(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
        elif uid not in self._finished:
            self.workers[uid] = PodWorker(self, pod)

    def _on_sandbox_lost(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.sandbox_lost()

    def _on_pod_deleted(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        self._finished.discard(uid)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.mark_gone()
        elif uid in self.runtime.pods():
            asyncio.create_task(self._remove_orphans())

    def worker_done(self, worker: PodWorker) -> None:
        self.workers.pop(worker.uid, None)
        if not worker.gone:
            self._finished.add(worker.uid)

    async def shutdown(self, kill_pods: bool) -> None:
        """Stop watching; with kill_pods, also stop every container (a short grace, then SIGKILL)."""
        for t in self._tasks:
            t.cancel()
        workers = list(self.workers.values())
        for w in workers:
            w.detach()
        if kill_pods:
            await asyncio.gather(*(w.stop_containers(min(w._grace(), SHUTDOWN_GRACE)) for w in workers),
                                 return_exceptions=True)
            await asyncio.gather(*(self.runtime.stop(rec, SHUTDOWN_GRACE) for _, rec in self.runtime.running()),
                                 return_exceptions=True)
        await self.events.flush(EVENTS_DRAIN_TIMEOUT)
        await self.events.stop()
        await asyncio.gather(*self._tasks, *(w.task for w in workers), return_exceptions=True)
        await self.volumes.stop()
        if kill_pods:  # nothing runs on them any more; a restarted agent sets them up again
            for w in workers:
                await self.volumes.tear_down(w.uid)
        self.workers.clear()
