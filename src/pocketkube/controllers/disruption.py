"""The disruption controller: keeps each PodDisruptionBudget's status (currentHealthy,
desiredHealthy, expectedPods, disruptionsAllowed, the DisruptionAllowed condition) in step with
its pods, and forgets evictions whose pod never went (upstream pkg/controller/disruption).
Decisions are in disruption_plan.py; this module does the I/O."""

from __future__ import annotations

import time

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers
from pocketkube.controllers.disruption_plan import budget_status, selector_of

PDBS = BY_PLURAL[("policy", "poddisruptionbudgets")]
PODS = BY_PLURAL[("", "pods")]
SCALABLE = {("apps/v1", "ReplicaSet"): BY_PLURAL[("apps", "replicasets")],
            ("apps/v1", "StatefulSet"): BY_PLURAL[("apps", "statefulsets")],
            ("v1", "ReplicationController"): BY_PLURAL[("", "replicationcontrollers")]}


class DisruptionController(Controller):
    name = "disruption-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 2) -> None:
        self.client = client
        self.pdbs = informers.get(PDBS)
        self.pods = informers.get(PODS)
        self.replicasets = informers.get(BY_PLURAL[("apps", "replicasets")])
        super().__init__([self.pdbs, self.pods, self.replicasets], workers=workers)
        self.pdbs.add_handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        self.pods.add_handlers(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_changed(new)
        if (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {}):
            self._pod_changed(old)

    def _pod_changed(self, pod: dict) -> None:
        ns, labels = pod["metadata"].get("namespace"), pod["metadata"].get("labels") or {}
        for pdb in self.pdbs.list():
            if pdb["metadata"].get("namespace") == ns and selector_of(pdb).matches(labels):
                self.enqueue(pdb)

    async def _scale_of(self, ref: dict, namespace: str) -> int | None:
        res = SCALABLE.get((ref.get("apiVersion"), ref.get("kind")))
        if res is None:
            return None
        owner = self.replicasets.get(f"{namespace}/{ref.get('name')}") if res.plural == "replicasets" else None
        if owner is None:
            try:
                owner = await self.client.get(res, namespace, ref.get("name", ""))
            except errors.NotFound:
                return None
        return int((owner.get("spec") or {}).get("replicas", 1))

    async def sync(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None or pdb["metadata"].get("deletionTimestamp"):
            return
        namespace = pdb["metadata"]["namespace"]
        pods = [p for p in self.pods.list() if p["metadata"].get("namespace") == namespace]
        scales: dict[str, int | None] = {}
        for p in pods:
            for ref in p["metadata"].get("ownerReferences") or []:
                if ref.get("controller") and ref.get("uid") not in scales:
                    scales[ref.get("uid")] = await self._scale_of(ref, namespace)
        status, next_expiry = budget_status(pdb, pods, lambda ref: scales.get(ref.get("uid")), time.time(),
                                            now_rfc3339())
        if status != pdb.get("status"):
            try:
                await self.client.update_status(PDBS, {**pdb, "status": status})
            except errors.NotFound:
                return
        if next_expiry is not None:
            self.queue.add_after(key, max(0.1, next_expiry - time.time()))
