"""DaemonSet controller: one pod per eligible node, rolled out through ControllerRevisions.

sync(key) mirrors pkg/controller/daemon: syncDaemonSet:
  cache lookup → claim pods (adopt matching orphans, release non-matching) → the revision of the
  current template (created, or an equal older one renumbered: a rollback) → when expectations
  are satisfied: the manage loop (create on nodes lacking a pod, delete on nodes that should not
  run one, failed pods, extras) plus one rolling-update step (OnDelete: none) → prune history →
  status. Decisions are daemonset_plan.py's pure functions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pocketkube.api.meta import controller_ref, deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.selectors import LabelSelector
from pocketkube.client.events import WARNING, EventRecorder
from pocketkube.client.informer import object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import (
    Controller,
    SharedInformers,
    apply_claims,
    cached_controller,
    fresh_owner_check,
    owners_selecting,
    plan_claims,
    split_key,
    write_status,
)
from pocketkube.controllers.daemonset_plan import (
    DAEMONSETS,
    daemon_pod,
    plan_nodes,
    rolling_update,
    status_of,
    target_node,
)
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.history import (
    CONTROLLER_REVISIONS,
    REVISION_HASH_LABEL,
    ensure_revision,
    owned_revisions,
    prune_revisions,
)
from pocketkube.controllers.podcontrol import PODS, create_pod, delete_pod
from pocketkube.controllers.replicaset import is_pod_available, is_pod_ready, slow_start_batch
from pocketkube.util.backoff import Backoff

__all__ = ["DaemonSetController"]

log = logging.getLogger(__name__)

NODES = BY_PLURAL[("", "nodes")]
BURST = 250  # at most this many creates per sync (upstream's burstReplicas)


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 2,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.ds_informer = informers.get(DAEMONSETS)
        self.pod_informer = informers.get(PODS)
        self.node_informer = informers.get(NODES)
        self.rev_informer = informers.get(CONTROLLER_REVISIONS)
        super().__init__([self.ds_informer, self.pod_informer, self.node_informer, self.rev_informer],
                         workers=workers)
        self.recorder = recorder
        self.expectations = Expectations()
        self.failed_pods = Backoff(initial=1.0, maximum=900.0, reset_after=1800.0)  # failedPodsBackoff
        self.clock = clock
        self.watch_own_kind(self.ds_informer, self._on_ds_delete)
        self.pod_informer.add_handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.node_informer.add_handlers(lambda node: self._enqueue_all(), self._on_node_update,
                                        lambda node: self._enqueue_all())

    # ---- handlers ----

    def _on_ds_delete(self, ds: dict) -> None:
        self.expectations.delete(object_key(ds))
        self.enqueue(ds)

    def _enqueue_all(self) -> None:
        for ds in self.ds_informer.list():
            self.enqueue(ds)

    def _on_node_update(self, old: dict, new: dict) -> None:
        """Only what changes where daemon pods should run: labels, taints, unschedulable."""
        if (old["metadata"].get("labels") != new["metadata"].get("labels")
                or old.get("spec") != new.get("spec")):
            self._enqueue_all()

    def _owner_of(self, pod: dict) -> dict | None:
        return cached_controller(self.ds_informer, pod, "DaemonSet")

    def _on_pod_add(self, pod: dict) -> None:
        ds = self._owner_of(pod)
        if ds is not None:
            self.expectations.creation_observed(object_key(ds))
            self.enqueue(ds)
        elif controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _on_pod_update(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if new["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            self._on_pod_delete(new)
            return
        ds = self._owner_of(new)
        if ds is not None:
            self.enqueue(ds)
            min_ready = int(deep_get(ds, "spec", "minReadySeconds", default=0) or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.enqueue_after(ds, min_ready + 0.5)
        elif controller_ref(new) is None:
            self._enqueue_matching(new)
        old_owner = self._owner_of(old)
        if old_owner is not None and old_owner is not ds:
            self.enqueue(old_owner)

    def _on_pod_delete(self, pod: dict) -> None:
        ds = self._owner_of(pod)
        if ds is not None:
            self.expectations.deletion_observed(object_key(ds), object_key(pod))
            self.enqueue(ds)

    def _enqueue_matching(self, pod: dict) -> None:
        for ds in owners_selecting(self.ds_informer, pod):
            self.enqueue(ds)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        ds = self.ds_informer.get(key)
        if ds is None:
            self.expectations.delete(key)
            return
        namespace, _ = split_key(key)
        try:
            selector = LabelSelector.from_dict(deep_get(ds, "spec", "selector"))
        except ValueError as e:
            log.warning("%s: %s has an invalid selector: %s", self.name, key, e)
            return
        if ds["metadata"].get("deletionTimestamp"):
            return  # the garbage collector removes its pods
        candidates = [p for p in self.pod_informer.list() if p["metadata"].get("namespace") == namespace]
        pods = await apply_claims(self.client, PODS, ds, DAEMONSETS, plan_claims(ds, selector, candidates),
                                  fresh_owner_check(self.client, DAEMONSETS, ds))
        revisions = owned_revisions(ds, [r for r in self.rev_informer.list()
                                         if r["metadata"].get("namespace") == namespace])
        current, revisions, collision = await ensure_revision(self.client, ds, DAEMONSETS, revisions)
        hash_ = (current["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL, "")
        nodes = self.node_informer.list()
        error: BaseException | None = None
        if self.expectations.satisfied(key):
            error = await self._manage(key, ds, nodes, pods, hash_)
            live_hashes = {(p["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) for p in pods}
            live = {r["metadata"]["name"] for r in revisions
                    if (r["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) in live_hashes}
            await prune_revisions(self.client, revisions, live | {current["metadata"]["name"]},
                                  int(deep_get(ds, "spec", "revisionHistoryLimit", default=10)))
        now = self.clock()
        status = status_of(ds, nodes, pods, hash_, now)
        if collision is not None:
            status["collisionCount"] = collision
        await write_status(self.client, DAEMONSETS, ds, status)
        min_ready = int(deep_get(ds, "spec", "minReadySeconds", default=0) or 0)
        if min_ready > 0 and any(is_pod_ready(p) and not is_pod_available(p, min_ready, now) for p in pods):
            self.queue.add_after(key, min_ready)
        if error is not None:
            raise error

    async def _manage(self, key: str, ds: dict, nodes: list[dict], pods: list[dict], hash_: str) -> BaseException | None:
        plan = plan_nodes(ds, nodes, pods, hash_)
        strategy = (deep_get(ds, "spec", "updateStrategy", default=None) or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate":
            step = rolling_update(ds, nodes, pods, hash_, self.clock())
            plan.create_on += [n for n in step.create_on if n not in plan.create_on]
            chosen = {p["metadata"]["uid"] for p in plan.delete}
            plan.delete += [p for p in step.delete if p["metadata"]["uid"] not in chosen]
        plan.delete = [p for p in plan.delete if not self._failed_pod_backing_off(key, ds, p)]
        create_on = plan.create_on[:BURST]
        if not create_on and not plan.delete:
            return None
        self.expectations.expect(key, len(create_on), [object_key(p) for p in plan.delete])
        results = await asyncio.gather(*(self._delete(key, ds, p) for p in plan.delete), return_exceptions=True)
        error = next((r for r in results if isinstance(r, BaseException)), None)
        queue = list(create_on)

        async def create_next() -> None:
            await create_pod(self.client, self.recorder, ds, DAEMONSETS, daemon_pod(ds, queue.pop(0), hash_))

        created, create_error = await slow_start_batch(len(create_on), 1, create_next)
        for _ in range(len(create_on) - created):
            self.expectations.creation_observed(key)  # never coming
        return error or create_error

    def _failed_pod_backing_off(self, key: str, ds: dict, pod: dict) -> bool:
        """A failed daemon pod is deleted (and replaced) at most once per back-off period per node, so
        the controller does not fight a kubelet that keeps rejecting it; an Event says so each time."""
        if deep_get(pod, "status", "phase") != "Failed":
            return False
        node = target_node(pod)
        backoff_key = f"{ds['metadata']['uid']}/{node}"
        if self.failed_pods.failures_pending(backoff_key):
            self.queue.add_after(key, self.failed_pods.remaining(backoff_key))
            return True
        self.failed_pods.next(backoff_key)
        self.recorder.event(ds, WARNING, "FailedDaemonPod",
                            f"Found failed daemon pod {object_key(pod)} on node {node}, will try to kill it",
                            res=DAEMONSETS)
        return False

    async def _delete(self, key: str, ds: dict, pod: dict) -> None:
        try:
            if not await delete_pod(self.client, self.recorder, ds, DAEMONSETS, pod):
                self.expectations.deletion_observed(key, object_key(pod))
        except Exception:
            self.expectations.deletion_observed(key, object_key(pod))
            raise
