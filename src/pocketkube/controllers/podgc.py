"""Pod garbage collector (pkg/controller/podgc of 1.32), every `period` seconds:

- terminated pods (Succeeded/Failed) beyond `terminated_pod_threshold` go, evicted ones first,
  then the oldest (`--terminated-pod-gc-threshold`, 12500 upstream; ≤ 0 disables it);
- orphaned pods, bound to a node that no longer exists (confirmed by a live read after a
  quarantine, as the informer may lag), are marked Failed with a DisruptionTarget condition
  (DeletionByPodGC) and force-deleted;
- terminating pods on a NotReady node tainted `node.kubernetes.io/out-of-service`, and
  terminating pods never scheduled, are force-deleted.
The choices are pure functions; the controller only reads caches and writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["DEFAULT_THRESHOLD", "PodGCController", "orphaned", "terminated_to_delete", "terminating_to_delete"]

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
DEFAULT_THRESHOLD = 12500
GC_PERIOD = 20.0
QUARANTINE = 40.0  # how long a node must stay missing before its pods are orphans
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
_KEY = "podgc"


def _terminal(pod: dict) -> bool:
    return deep_get(pod, "status", "phase") in ("Succeeded", "Failed")


def _created(pod: dict) -> float:
    return parse_rfc3339(deep_get(pod, "metadata", "creationTimestamp")) or 0.0


def terminated_to_delete(pods: list[dict], threshold: int) -> list[dict]:
    """gcTerminated: the terminated pods beyond the threshold, evicted then oldest first."""
    if threshold <= 0:
        return []
    done = [p for p in pods if _terminal(p)]
    excess = len(done) - threshold
    if excess <= 0:
        return []
    done.sort(key=lambda p: (deep_get(p, "status", "reason") != "Evicted", _created(p),
                             deep_get(p, "metadata", "name", default="")))
    return done[:excess]


def _node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in deep_get(node, "status", "conditions", default=None) or [])


def terminating_to_delete(pods: list[dict], nodes: dict[str, dict]) -> list[dict]:
    """gcTerminating + gcUnscheduledTerminating: terminating pods that no kubelet will finish."""
    out = []
    for p in pods:
        if not deep_get(p, "metadata", "deletionTimestamp") or _terminal(p):
            continue
        node_name = deep_get(p, "spec", "nodeName")
        if not node_name:
            out.append(p)
            continue
        node = nodes.get(node_name)
        if node is not None and not _node_ready(node) and any(
                t.get("key") == OUT_OF_SERVICE for t in deep_get(node, "spec", "taints", default=None) or []):
            out.append(p)
    return sorted(out, key=_created)


def orphaned(pods: list[dict], nodes: dict[str, dict]) -> dict[str, list[dict]]:
    """Pods bound to nodes absent from the cache, by node name."""
    out: dict[str, list[dict]] = {}
    for p in pods:
        node_name = deep_get(p, "spec", "nodeName")
        if node_name and node_name not in nodes:
            out.setdefault(node_name, []).append(p)
    return out


class PodGCController(Controller):
    name = "pod-garbage-collector"

    def __init__(self, client: Client, informers: SharedInformers, *,
                 terminated_pod_threshold: int = DEFAULT_THRESHOLD, period: float = GC_PERIOD,
                 quarantine: float = QUARANTINE, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.pod_informer = informers.get(PODS)
        self.node_informer = informers.get(NODES)
        super().__init__([self.pod_informer, self.node_informer], workers=1)
        self.threshold = terminated_pod_threshold
        self.period = period
        self.quarantine = quarantine
        self.clock = clock
        self._missing_since: dict[str, float] = {}
        self.queue.add(_KEY)

    async def sync(self, key: str) -> None:
        try:
            await self._collect()
        finally:
            self.queue.add_after(_KEY, self.period)

    async def _collect(self) -> None:
        pods = self.pod_informer.list()
        nodes = {n["metadata"]["name"]: n for n in self.node_informer.list()}
        for p in terminated_to_delete(pods, self.threshold):
            await self._delete(p)
        for p in terminating_to_delete(pods, nodes):
            await self._delete(p)
        await self._collect_orphans(orphaned(pods, nodes))

    async def _collect_orphans(self, by_node: dict[str, list[dict]]) -> None:
        now = self.clock()
        for name in list(self._missing_since):
            if name not in by_node:
                del self._missing_since[name]
        for name, pods in by_node.items():
            since = self._missing_since.setdefault(name, now)
            if now - since < self.quarantine:
                continue
            try:
                await self.client.get(NODES, "", name)
                continue  # it exists: the cache was behind
            except errors.NotFound:
                pass
            for p in pods:
                await self._fail_and_delete(p, "PodGC: node no longer exists")

    async def _fail_and_delete(self, pod: dict, message: str) -> None:
        if not _terminal(pod):
            status = dict(pod.get("status") or {})
            status["phase"] = "Failed"
            status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"] + [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC", "message": message,
                 "lastTransitionTime": now_rfc3339()}]
            try:
                await self.client.update_status(PODS, {**pod, "status": status})
            except errors.NotFound:
                return
            except errors.Conflict:
                pass  # deleted anyway below; the phase is only informative
        await self._delete(pod)

    async def _delete(self, pod: dict) -> None:
        m = pod["metadata"]
        log.info("%s: deleting pod %s/%s", self.name, m.get("namespace"), m.get("name"))
        try:
            await self.client.delete(PODS, m["namespace"], m["name"], grace_period=0,
                                     preconditions={"uid": m["uid"]})
        except errors.NotFound:
            return
