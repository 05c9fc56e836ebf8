"""Node lifecycle: notice nodes that stopped heartbeating, taint them, evict their pods.

Mirrors pkg/controller/nodelifecycle (monitorNodeHealth, TaintNodesByCondition) and the
taint-eviction controller, reduced to what a small cluster needs:

- A heartbeat is a change of the node's Lease (kube-node-lease/<node>) renewTime or of its
  Ready condition's lastHeartbeatTime, timed with the controller's own clock when observed
  (so clock skew between machines does not matter).
- No heartbeat for `grace_period`: every node condition becomes Unknown (reason
  NodeStatusUnknown, "Kubelet stopped posting node status."), the node's pods are marked not
  Ready, and an event NodeNotReady is recorded.
- Taints follow the node's state: unreachable (no heartbeat) or not-ready (Ready=False) with
  effects NoSchedule and NoExecute; unschedulable:NoSchedule for cordoned nodes. They go
  when the state clears; a resumed heartbeat clears `unreachable` at once, and the kubelet
  sets Ready again itself.
- A pod on a node with a NoExecute taint is deleted (force, grace 0) once the taint is older
  than the pod tolerates: its tolerationSeconds, forever for a toleration without seconds,
  and `eviction_timeout` when it has no toleration (what upstream's DefaultTolerationSeconds
  admission plugin would have added). Its ReplicaSet then replaces it elsewhere.

Every node is re-examined each `monitor_period`, and at once on node and lease changes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.taints import (
    NOT_READY_TAINT,
    UNREACHABLE_TAINT,
    UNSCHEDULABLE_TAINT,
    node_ready_status,
    tolerates,
)
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = [
    "LEASE_NAMESPACE",
    "NodeLifecycleController",
    "NodeLifecycleSettings",
    "desired_taints",
    "eviction_delay",
    "unknown_conditions",
]

log = logging.getLogger(__name__)

NODES = BY_PLURAL[("", "nodes")]
PODS = BY_PLURAL[("", "pods")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
LEASE_NAMESPACE = "kube-node-lease"
_MANAGED_TAINTS = {NOT_READY_TAINT, UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT}


@dataclass(frozen=True)
class NodeLifecycleSettings:
    grace_period: float = 40.0  # --node-monitor-grace-period
    # For pods without a toleration of the taint. The API server's DefaultTolerationSeconds
    # admission gives most pods explicit 300 s tolerations, which are respected instead.
    eviction_timeout: float = 300.0
    monitor_period: float = 5.0  # --node-monitor-period


# ---- decisions (pure) ----

def unknown_conditions(node: dict, now: float) -> list[dict]:
    """The node's conditions after the kubelet went silent: all Unknown, heartbeat times kept."""
    ts = now_rfc3339(now)
    conditions = copy.deepcopy(deep_get(node, "status", "conditions", default=None) or [])
    if not any(c.get("type") == "Ready" for c in conditions):
        conditions.append({"type": "Ready", "status": "Unknown", "lastHeartbeatTime": ts, "lastTransitionTime": ts,
                           "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status."})
    for c in conditions:
        if c.get("status") != "Unknown":
            c.update(status="Unknown", lastTransitionTime=ts, reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.")
    return conditions


def desired_taints(node: dict, reachable: bool, now: float) -> list[dict]:
    """The node's taints with the managed ones (not-ready, unreachable, unschedulable) made to match
    its state; NoExecute taints keep the time they were first added."""
    current = deep_get(node, "spec", "taints", default=None) or []
    ready = node_ready_status(node)
    wanted: list[tuple[str, str]] = []
    if not reachable:
        wanted += [(UNREACHABLE_TAINT, "NoSchedule"), (UNREACHABLE_TAINT, "NoExecute")]
    elif ready == "False":
        wanted += [(NOT_READY_TAINT, "NoSchedule"), (NOT_READY_TAINT, "NoExecute")]
    if deep_get(node, "spec", "unschedulable"):
        wanted.append((UNSCHEDULABLE_TAINT, "NoSchedule"))
    kept = [t for t in current if t.get("key") not in _MANAGED_TAINTS or (t.get("key"), t.get("effect")) in wanted]
    have = {(t.get("key"), t.get("effect")) for t in kept}
    for key, effect in wanted:
        if (key, effect) not in have:
            taint = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = now_rfc3339(now)
            kept.append(taint)
    return kept


def eviction_delay(pod: dict, taint: dict, default_seconds: float) -> float | None:
    """Seconds the pod may stay after `taint` (NoExecute) was added; None means forever."""
    matching = [t for t in deep_get(pod, "spec", "tolerations", default=None) or []
                if tolerates(t, taint) and t.get("effect") in ("", None, "NoExecute")]
    if not matching:
        return default_seconds
    seconds = [t.get("tolerationSeconds") for t in matching]
    if any(s is None for s in seconds):
        return None
    return max(0.0, float(min(seconds)))


def _eviction_deadline(pod: dict, taints: list[dict], default_seconds: float) -> float | None:
    """Wall-clock time at which the pod must go, or None when it tolerates every NoExecute taint forever."""
    deadlines = []
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        delay = eviction_delay(pod, taint, default_seconds)
        if delay is not None:
            added = parse_rfc3339(taint.get("timeAdded"), default=time.time())
            deadlines.append(added + delay)
    return min(deadlines) if deadlines else None


# ---- the controller ----

class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder,
                 eviction_recorder: EventRecorder, settings: NodeLifecycleSettings = NodeLifecycleSettings(), *,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.settings = settings
        self.node_informer = informers.get(NODES)
        self.lease_informer = informers.get(LEASES, LEASE_NAMESPACE)
        self.pod_informer = informers.get(PODS)
        super().__init__([self.node_informer, self.lease_informer, self.pod_informer], workers=2)
        self.recorder = recorder
        self.eviction_recorder = eviction_recorder
        self.clock = clock
        self.monotonic = monotonic
        self._beats: dict[tuple[str, str], str] = {}  # (node, "lease" or "status") → last heartbeat seen
        self._heard_at: dict[str, float] = {}  # node → local time of its last heartbeat
        self.node_informer.add_handlers(self._on_node, lambda old, new: self._on_node(new), self._on_node_delete)
        self.lease_informer.add_handlers(self._on_lease, lambda old, new: self._on_lease(new))

    def _heartbeat(self, node_name: str, source: str, beat: str) -> None:
        if beat and self._beats.get((node_name, source)) != beat:
            self._beats[(node_name, source)] = beat
            self._heard_at[node_name] = self.monotonic()

    def _on_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        ready = next((c for c in deep_get(node, "status", "conditions", default=None) or []
                      if c.get("type") == "Ready"), {})
        self._heard_at.setdefault(name, self.monotonic())  # first sight: the grace period starts now
        self._heartbeat(name, "status", str(ready.get("lastHeartbeatTime") or ""))
        self.queue.add(name)

    def _on_node_delete(self, node: dict) -> None:
        name = node["metadata"]["name"]
        self._heard_at.pop(name, None)
        self._beats = {k: v for k, v in self._beats.items() if k[0] != name}

    def _on_lease(self, lease: dict) -> None:
        name = lease["metadata"]["name"]
        renew = deep_get(lease, "spec", "renewTime") or ""
        self._heartbeat(name, "lease", renew)
        self.queue.add(name)

    async def run(self) -> None:
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            await super().run()
        finally:
            ticker.cancel()

    async def _tick(self) -> None:
        """Re-examine every node periodically: silence produces no events to react to."""
        await self.node_informer.synced.wait()
        while True:
            for node in self.node_informer.list():
                self.queue.add(node["metadata"]["name"])
            await asyncio.sleep(self.settings.monitor_period)

    def reachable(self, node_name: str) -> bool:
        seen = self._heard_at.get(node_name)
        return seen is None or self.monotonic() - seen <= self.settings.grace_period

    async def sync(self, key: str) -> None:
        node = self.node_informer.get(key)
        if node is None:
            return
        now = self.clock()
        reachable = self.reachable(key)
        if not reachable and not self._marked_unknown(node):
            node = await self._mark_unknown(node, now)
        taints = desired_taints(node, reachable, now)
        if taints != (deep_get(node, "spec", "taints", default=None) or []):
            node = await self._write_taints(node, taints)
        await self._evict(node, now)
        if not reachable or any(t.get("effect") == "NoExecute" for t in taints):
            self.queue.add_after(key, min(self.settings.monitor_period, 1.0))

    @staticmethod
    def _marked_unknown(node: dict) -> bool:
        return all(c.get("status") == "Unknown" for c in deep_get(node, "status", "conditions", default=None) or []) \
            and any(c.get("type") == "Ready" for c in deep_get(node, "status", "conditions", default=None) or [])

    async def _mark_unknown(self, node: dict, now: float) -> dict:
        name = node["metadata"]["name"]
        log.info("%s: node %s stopped posting status", self.name, name)
        updated = await self.client.update_status(NODES, {**node, "status": {
            **(node.get("status") or {}), "conditions": unknown_conditions(node, now)}})
        self.recorder.event(node, NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady", res=NODES)
        await self._mark_pods_not_ready(name, now)
        return updated

    async def _mark_pods_not_ready(self, node_name: str, now: float) -> None:
        for pod in self._pods_on(node_name):
            conditions = deep_get(pod, "status", "conditions", default=None) or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                continue
            ts = now_rfc3339(now)
            new_conditions = [({**c, "status": "False", "lastTransitionTime": ts}
                               if c.get("type") == "Ready" else c) for c in conditions]
            try:
                await self.client.update_status(PODS, {**pod, "status": {**pod["status"], "conditions": new_conditions}})
            except (errors.NotFound, errors.Conflict):
                continue  # gone or changed: the next pass looks again
            self.recorder.event(pod, WARNING, "NodeNotReady", "Node is not ready", res=PODS)

    async def _write_taints(self, node: dict, taints: list[dict]) -> dict:
        updated = copy.deepcopy(node)
        updated.setdefault("spec", {})["taints"] = taints
        if not taints:
            del updated["spec"]["taints"]
        return await self.client.update(NODES, updated)

    def _pods_on(self, node_name: str) -> list[dict]:
        return [p for p in self.pod_informer.list() if deep_get(p, "spec", "nodeName") == node_name]

    async def _evict(self, node: dict, now: float) -> None:
        taints = deep_get(node, "spec", "taints", default=None) or []
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return
        for pod in self._pods_on(node["metadata"]["name"]):
            deadline = _eviction_deadline(pod, taints, self.settings.eviction_timeout)
            if deadline is None or deadline > now:
                continue
            m = pod["metadata"]
            if not m.get("deletionTimestamp"):
                self.eviction_recorder.event(pod, NORMAL, "TaintManagerEviction",
                                             f"Marking for deletion Pod {m['namespace']}/{m['name']}", res=PODS)
            try:
                await self.client.delete(PODS, m["namespace"], m["name"], grace_period=0,
                                         preconditions={"uid": m["uid"]})
            except errors.NotFound:
                continue
