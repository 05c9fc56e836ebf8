"""The scheduler: give every unscheduled pod a node, and POST its binding.

Pods and nodes come from informers. Unscheduled pods (no spec.nodeName, our schedulerName,
not terminating or finished) wait in an active queue; one loop drains it without sleeping,
deciding one pod at a time against node counts that include the pods it has just placed
("assumed", as upstream's scheduler cache), so a burst of 100 pods spreads evenly and is
decided in one pass. Bindings go out concurrently; a failed binding forgets the assumption and
retries the pod.

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
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.scheduler.plugins import NodeInfo, select_node
from pocketkube.util.backoff import Backoff

__all__ = ["Scheduler", "SchedulerSettings", "needs_scheduling"]

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]


@dataclass(frozen=True)
class SchedulerSettings:
    scheduler_name: str = "default-scheduler"
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    bind_concurrency: int = 32
    seed: int | None = None


def needs_scheduling(pod: dict, scheduler_name: str = "default-scheduler") -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and (spec.get("schedulerName") or "default-scheduler") == scheduler_name
            and not deep_get(pod, "metadata", "deletionTimestamp")
            and deep_get(pod, "status", "phase") not in ("Succeeded", "Failed"))


def _terminal(pod: dict) -> bool:
    return deep_get(pod, "status", "phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(self, client: Client, settings: SchedulerSettings = SchedulerSettings(), *,
                 pod_informer: Informer | None = None, node_informer: Informer | None = None) -> None:
        self.client = client
        self.settings = settings
        self.pods = pod_informer or Informer(client, PODS)
        self.nodes = node_informer or Informer(client, NODES)
        self._own_informers = [i for i, given in ((self.pods, pod_informer), (self.nodes, node_informer)) if not given]
        self.recorder = EventRecorder(client, settings.scheduler_name)
        self._rng = random.Random(settings.seed)
        self._active: dict[str, None] = {}  # insertion-ordered set of pod keys
        self._wakeup = asyncio.Event()
        self._unschedulable: set[str] = set()
        self._backoff = Backoff(initial=settings.initial_backoff, maximum=settings.max_backoff)  # per pod key
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._assumed: dict[str, str] = {}  # pod key → node, until the informer shows the binding
        self._binds = asyncio.Semaphore(settings.bind_concurrency)
        self._tasks: list[asyncio.Task] = []
        self.pods.add_handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handlers(self._on_node_change, lambda old, new: self._on_node_change(new))

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

    def _on_pod_add(self, pod: dict) -> None:
        if needs_scheduling(pod, self.settings.scheduler_name):
            self._activate(object_key(pod))

    def _on_pod_update(self, old: dict, new: dict) -> None:
        key = object_key(new)
        if deep_get(new, "spec", "nodeName"):
            self._assumed.pop(key, None)
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
        self._forget(key)
        if deep_get(pod, "spec", "nodeName"):
            self._retry_unschedulable()  # room was freed

    def _on_node_change(self, node: dict) -> None:
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
        await asyncio.gather(self.pods.synced.wait(), self.nodes.synced.wait())
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

    def _node_infos(self) -> dict[str, NodeInfo]:
        infos = {n["metadata"]["name"]: NodeInfo(n) for n in self.nodes.list()}
        for pod in self.pods.list():
            node = deep_get(pod, "spec", "nodeName") or self._assumed.get(object_key(pod))
            if node in infos and not _terminal(pod):
                infos[node].add_pod(pod)
        return infos

    def _schedule_pending(self) -> None:
        keys = list(self._active)
        self._active.clear()
        infos = self._node_infos()
        ordered = sorted(infos.values(), key=lambda i: i.name)
        for key in keys:
            pod = self.pods.get(key)
            if pod is None or not needs_scheduling(pod, self.settings.scheduler_name) or key in self._assumed:
                continue
            decision = select_node(pod, ordered, self._rng)
            if decision.node is None:
                self._unschedulable_pod(key, pod, decision.message)
                continue
            self._assumed[key] = decision.node
            infos[decision.node].add_pod(pod)
            self._tasks.append(asyncio.get_running_loop().create_task(self._bind(key, pod, decision.node)))
        self._tasks = [t for t in self._tasks if not t.done()]

    async def _bind(self, key: str, pod: dict, node: str) -> None:
        m = pod["metadata"]
        async with self._binds:
            try:
                await self.client.bind(m["namespace"], m["name"], node)
            except (errors.NotFound, errors.Conflict) as e:
                # Gone, or bound by someone else meanwhile: the informer will tell us which.
                log.debug("scheduler: binding %s to %s: %s", key, node, e)
                self._assumed.pop(key, None)
                return
            except errors.ApiError as e:
                log.warning("scheduler: binding %s to %s failed: %s; retrying", key, node, e)
                self._assumed.pop(key, None)
                self._retry_later(key)
                return
        self._backoff.reset(key)
        self.recorder.event(pod, NORMAL, "Scheduled", f"Successfully assigned {m['namespace']}/{m['name']} to {node}",
                            res=PODS)

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
