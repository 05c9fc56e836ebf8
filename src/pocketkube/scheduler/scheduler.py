"""The scheduler: give every unscheduled pod a node, and POST its binding.

Pods and nodes come from informers. Unscheduled pods (no spec.nodeName, our schedulerName,
not terminating or finished) wait in an active queue; one loop drains it without sleeping,
deciding one pod at a time against node counts that include the pods it has just placed
("assumed", as upstream's scheduler cache), so a burst of 100 pods spreads evenly and is
decided in one pass. Those counts live in a NodeCache updated from pod and node events, not
rebuilt per pass; each pod filters only a rotating sample of a large cluster's nodes
(percentageOfNodesToScore, see plugins.select_node). Bindings go out concurrently; a failed
binding forgets the assumption and retries the pod.

Pods with PersistentVolumeClaims are checked against the volume caches (volumebinding.py); for
a WaitForFirstConsumer claim the chosen node is written to the claim (selected-node) and the pod
is bound only once the PV controller has bound its claims, as upstream's VolumeBinding PreBind.

A pod that fits nowhere stays Pending with PodScheduled=False/Unschedulable and a
FailedScheduling Warning carrying upstream's message; it is retried after a per-pod back-off
(1 s doubling to 10 s) and at once when a node is added or changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.api.volumes import ANN_SELECTED_NODE, pod_claim_names
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.scheduler import volumebinding as vb
from pocketkube.scheduler.cache import NodeCache
from pocketkube.scheduler.plugins import Decision, NodeInfo, prefilter_message, select_node
from pocketkube.util.backoff import Backoff

__all__ = ["Scheduler", "SchedulerSettings", "needs_scheduling"]

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
PVCS = BY_PLURAL[("", "persistentvolumeclaims")]
PVS = BY_PLURAL[("", "persistentvolumes")]
STORAGE_CLASSES = BY_PLURAL[("storage.k8s.io", "storageclasses")]
BIND_TIMEOUT_MESSAGE = 'running PreBind plugin "VolumeBinding": binding volumes: context deadline exceeded'


@dataclass(frozen=True)
class SchedulerSettings:
    scheduler_name: str = "default-scheduler"
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    bind_concurrency: int = 32
    seed: int | None = None
    # How long a pod waits for its claims to be bound before it is retried (upstream: 600 s).
    volume_bind_timeout: float = 120.0
    # Upstream's percentageOfNodesToScore: 0 = adaptive (50 % − nodes/125, at least 5 %/100 nodes).
    percentage_of_nodes_to_score: int = 0


def needs_scheduling(pod: dict, scheduler_name: str = "default-scheduler") -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and (spec.get("schedulerName") or "default-scheduler") == scheduler_name
            and not deep_get(pod, "metadata", "deletionTimestamp")
            and deep_get(pod, "status", "phase") not in ("Succeeded", "Failed"))


def _terminal(pod: dict) -> bool:
    return deep_get(pod, "status", "phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(self, client: Client, settings: SchedulerSettings = SchedulerSettings(), *,
                 pod_informer: Informer | None = None, node_informer: Informer | None = None,
                 volume_informers: tuple[Informer, Informer, Informer] | None = None) -> None:
        self.client = client
        self.settings = settings
        self.pods = pod_informer or Informer(client, PODS)
        self.nodes = node_informer or Informer(client, NODES)
        # Claims, volumes and classes (shared with the controllers when given).
        self.claims, self.volumes, self.classes = volume_informers or (
            Informer(client, PVCS), Informer(client, PVS), Informer(client, STORAGE_CLASSES))
        self._own_informers = [i for i, given in ((self.pods, pod_informer), (self.nodes, node_informer),
                                                  (self.claims, volume_informers), (self.volumes, volume_informers),
                                                  (self.classes, volume_informers)) if not given]
        self._claim_waiters: set[asyncio.Event] = set()
        # Claims given a node by a decision whose selected-node write the cache does not show yet
        # (upstream's assume cache): later decisions must pick the same node.
        self._selected: dict[str, str] = {}
        self.recorder = EventRecorder(client, settings.scheduler_name)
        self._rng = random.Random(settings.seed)
        self._active: dict[str, None] = {}  # insertion-ordered set of pod keys
        self._wakeup = asyncio.Event()
        self._unschedulable: set[str] = set()
        self._backoff = Backoff(initial=settings.initial_backoff, maximum=settings.max_backoff)  # per pod key
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._assumed: dict[str, str] = {}  # pod key → node, until the informer shows the binding
        self.cache = NodeCache()  # per-node counts of bound and assumed pods
        self._next_start = 0  # where the next pod's filtering starts (upstream's nextStartNodeIndex)
        self._binds = asyncio.Semaphore(settings.bind_concurrency)
        self._tasks: list[asyncio.Task] = []
        self.pods.add_handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handlers(self._on_node_change, lambda old, new: self._on_node_change(new),
                                lambda node: self.cache.remove_node(node["metadata"]["name"]))
        for informer in (self.claims, self.volumes, self.classes):
            informer.add_handlers(self._on_storage_change, lambda old, new: self._on_storage_change(new))

    def _on_storage_change(self, obj: dict) -> None:
        for waiter in self._claim_waiters:
            waiter.set()
        self._retry_unschedulable()

    # ---- lifecycle ----

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(i.run(), name=f"scheduler-informer-{i.res.plural}")
                       for i in self._own_informers]
        self._tasks.append(loop.create_task(self._run(), name="scheduler-loop"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._retry_timers.values():
            timer.cancel()
        await self.recorder.stop()

    # ---- handlers ----

    def _activate(self, key: str) -> None:
        self._unschedulable.discard(key)
        timer = self._retry_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._active[key] = None
        self._wakeup.set()

    def _account(self, key: str) -> None:
        """Count the pod on its node (bound or assumed) in the cache, or nowhere."""
        pod = self.pods.get(key)
        node = None if pod is None or _terminal(pod) else (
            deep_get(pod, "spec", "nodeName") or self._assumed.get(key))
        self.cache.place(key, pod, node)

    def _on_pod_add(self, pod: dict) -> None:
        self._account(object_key(pod))
        if needs_scheduling(pod, self.settings.scheduler_name):
            self._activate(object_key(pod))

    def _on_pod_update(self, old: dict, new: dict) -> None:
        key = object_key(new)
        if deep_get(new, "spec", "nodeName"):
            self._assumed.pop(key, None)
        self._account(key)
        if deep_get(new, "spec", "nodeName"):
            self._forget(key)
            if _terminal(new) and not _terminal(old):
                self._retry_unschedulable()  # its requests no longer count on the node
            return
        if not needs_scheduling(new, self.settings.scheduler_name):
            self._forget(key)
            return
        # Our own status writes (PodScheduled=False) must not retrigger scheduling.
        if old.get("spec") != new.get("spec") or deep_get(old, "metadata", "labels") != deep_get(
                new, "metadata", "labels") or key not in self._unschedulable:
            self._activate(key)

    def _on_pod_delete(self, pod: dict) -> None:
        key = object_key(pod)
        self._assumed.pop(key, None)
        self._account(key)
        self._forget(key)
        if deep_get(pod, "spec", "nodeName"):
            self._retry_unschedulable()  # room was freed

    def _on_node_change(self, node: dict) -> None:
        self.cache.set_node(node)
        self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in list(self._unschedulable):
            self._activate(key)

    def _forget(self, key: str) -> None:
        self._active.pop(key, None)
        self._unschedulable.discard(key)
        self._backoff.reset(key)
        timer = self._retry_timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    # ---- the scheduling loop ----

    async def _run(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in (self.pods, self.nodes, self.claims, self.volumes,
                                                          self.classes)))
        log.info("scheduler: caches synced")
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                self._schedule_pending()
            except Exception:  # the loop must survive anything
                log.exception("scheduler: scheduling pass failed")
                await asyncio.sleep(self.settings.initial_backoff)
                self._wakeup.set()

    def _volume_state(self, *, assumed: bool = True, pods: bool = True) -> vb.VolumeState:
        """The storage caches as a VolumeState; `assumed`: with the node choices not yet visible,
        `pods`: with the ReadWriteOncePod claims in use (a walk over every pod)."""
        claims = {object_key(c): c for c in self.claims.list()}
        for key, node in list(self._selected.items()):
            pvc = claims.get(key)
            if pvc is None or deep_get(pvc, "spec", "volumeName") or deep_get(
                    pvc, "metadata", "annotations", ANN_SELECTED_NODE) == node:
                del self._selected[key]  # the cache has caught up
            elif assumed:
                m = pvc["metadata"]
                claims[key] = {**pvc, "metadata": {**m, "annotations": {**(m.get("annotations") or {}),
                                                                        ANN_SELECTED_NODE: node}}}
        state = vb.VolumeState(claims=claims,
                               volumes={v["metadata"]["name"]: v for v in self.volumes.list()},
                               classes={c["metadata"]["name"]: c for c in self.classes.list()})
        for pod in self.pods.list() if pods else ():
            if (deep_get(pod, "spec", "nodeName") or object_key(pod) in self._assumed) and not _terminal(pod):
                ns = pod["metadata"].get("namespace", "")
                state.rwop_in_use.update(f"{ns}/{name}" for name, pvc in state.claims_of(pod)
                                         if pvc and "ReadWriteOncePod" in (deep_get(pvc, "spec", "accessModes") or []))
        return state

    def _assume_volumes(self, pod: dict, node: str, state: vb.VolumeState) -> None:
        """Record in `state` (and for later passes) what binding `pod` to `node` implies: its unbound
        claims get that node, its ReadWriteOncePod claims are in use."""
        for pvc in vb.claims_to_select(pod, node, state):
            key = object_key(pvc)
            self._selected[key] = node
            m = pvc["metadata"]
            state.claims[key] = {**pvc, "metadata": {**m, "annotations": {**(m.get("annotations") or {}),
                                                                          ANN_SELECTED_NODE: node}}}
        ns = pod["metadata"].get("namespace", "")
        state.rwop_in_use.update(f"{ns}/{name}" for name, pvc in state.claims_of(pod)
                                 if pvc and "ReadWriteOncePod" in (deep_get(pvc, "spec", "accessModes") or []))

    def _decide(self, pod: dict, ordered: list[NodeInfo], volumes: vb.VolumeState | None) -> Decision:
        extra = None
        if volumes is not None and pod_claim_names(pod):
            reason = vb.prefilter_volumes(pod, volumes)
            if reason is not None:
                return Decision(None, prefilter_message(len(ordered), reason))
            extra = lambda node: vb.filter_volumes(pod, node, volumes)  # noqa: E731
        decision = select_node(pod, ordered, self._rng, extra_filter=extra, start=self._next_start,
                               percentage=self.settings.percentage_of_nodes_to_score)
        if ordered:
            self._next_start = (self._next_start + decision.processed) % len(ordered)
        return decision

    def _schedule_pending(self) -> None:
        keys = list(self._active)
        self._active.clear()
        ordered = self.cache.ordered()
        volumes: vb.VolumeState | None = None
        for key in keys:
            pod = self.pods.get(key)
            if pod is None or not needs_scheduling(pod, self.settings.scheduler_name) or key in self._assumed:
                continue
            if volumes is None and pod_claim_names(pod):
                volumes = self._volume_state()
            decision = self._decide(pod, ordered, volumes)
            if decision.node is None:
                self._unschedulable_pod(key, pod, decision.message)
                continue
            self._assumed[key] = decision.node
            self._account(key)
            if volumes is not None and pod_claim_names(pod):
                self._assume_volumes(pod, decision.node, volumes)
            self._tasks.append(asyncio.get_running_loop().create_task(self._bind(key, pod, decision.node)))
        self._tasks = [t for t in self._tasks if not t.done()]

    async def _bind(self, key: str, pod: dict, node: str) -> None:
        m = pod["metadata"]
        try:
            # Waiting for volumes holds no bind slot: a slow provisioner must not stall other pods.
            if pod_claim_names(pod) and not await self._bind_volumes(pod, node):
                self._assumed.pop(key, None)
                self._account(key)
                self._unschedulable_pod(key, pod, BIND_TIMEOUT_MESSAGE)
                return
            async with self._binds:
                await self.client.bind(m["namespace"], m["name"], node)
        except (errors.NotFound, errors.Conflict) as e:
            # Gone, or bound by someone else meanwhile: the informer will tell us which.
            log.debug("scheduler: binding %s to %s: %s", key, node, e)
            self._assumed.pop(key, None)
            self._account(key)
            return
        except errors.ApiError as e:
            log.warning("scheduler: binding %s to %s failed: %s; retrying", key, node, e)
            self._assumed.pop(key, None)
            self._account(key)
            self._retry_later(key)
            return
        self._backoff.reset(key)
        self.recorder.event(pod, NORMAL, "Scheduled", f"Successfully assigned {m['namespace']}/{m['name']} to {node}",
                            res=PODS)

    async def _bind_volumes(self, pod: dict, node: str) -> bool:
        """PreBind: name the node on the pod's unbound claims, then wait until the PV controller
        (and a provisioner) have bound them all; False when that takes too long."""
        try:
            for pvc in vb.claims_to_select(pod, node, self._volume_state(assumed=False, pods=False)):
                m = pvc["metadata"]
                await self.client.patch(PVCS, m["namespace"], m["name"],
                                        {"metadata": {"annotations": {ANN_SELECTED_NODE: node}}})
        except errors.ApiError:
            ns = pod["metadata"].get("namespace", "")
            for name in pod_claim_names(pod):  # the choice did not stick: forget it
                self._selected.pop(f"{ns}/{name}", None)
            raise
        waiter = asyncio.Event()
        self._claim_waiters.add(waiter)
        deadline = asyncio.get_running_loop().time() + self.settings.volume_bind_timeout
        try:
            while not vb.pod_volumes_bound(pod, self._volume_state(pods=False)):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return False
                waiter.clear()
                try:
                    await asyncio.wait_for(waiter.wait(), remaining)
                except TimeoutError:
                    return False
            return True
        finally:
            self._claim_waiters.discard(waiter)

    def _unschedulable_pod(self, key: str, pod: dict, message: str) -> None:
        self.recorder.event(pod, WARNING, "FailedScheduling", message, res=PODS)
        self._unschedulable.add(key)
        self._retry_later(key)
        self._tasks.append(asyncio.get_running_loop().create_task(self._mark_unschedulable(pod, message)))

    def _retry_later(self, key: str) -> None:
        delay = self._backoff.next(key)
        old = self._retry_timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._unschedulable.add(key)
        self._retry_timers[key] = asyncio.get_running_loop().call_later(delay, self._activate, key)

    async def _mark_unschedulable(self, pod: dict, message: str) -> None:
        """PodScheduled=False, reason Unschedulable, unless the pod already says exactly that."""
        conditions = list(deep_get(pod, "status", "conditions", default=None) or [])
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current is not None and current.get("status") == "False" and current.get("message") == message:
            return
        cond = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                "lastTransitionTime": (current or {}).get("lastTransitionTime") if (current or {}).get(
                    "status") == "False" else now_rfc3339(),
                "reason": "Unschedulable", "message": message}
        conditions = [c for c in conditions if c.get("type") != "PodScheduled"] + [cond]
        status = {**(pod.get("status") or {}), "conditions": conditions}
        status.setdefault("phase", "Pending")
        try:
            await self.client.update_status(PODS, {**pod, "status": status})
        except errors.ApiError as e:
            log.debug("scheduler: cannot mark %s unschedulable: %s", object_key(pod), e)
