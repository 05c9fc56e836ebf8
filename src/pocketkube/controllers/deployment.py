"""Deployment controller: roll a pod template out through ReplicaSets.

sync(key) mirrors pkg/controller/deployment: syncDeployment:
  claim ReplicaSets → deleting? status only → paused? scale only → scaling event (a replica
  count differs from an RS's desired-replicas annotation)? proportional scale → otherwise roll
  out with Recreate or RollingUpdate → status, conditions, old-revision cleanup.

The new ReplicaSet is named `<deployment>-<pod-template-hash>`. Revisions live in the
`deployment.kubernetes.io/revision` annotation of each ReplicaSet and of the Deployment, so
`kubectl rollout status/history/undo/pause/resume` work unchanged. Every decision comes from
the pure functions in deployment_plan.py; this module reads caches and writes what they decide.

Where pocketkube's API server differs from upstream: a status update does not persist
metadata, so the revision annotation is written with a merge patch on the main resource.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.meta import controller_ref, deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.selectors import LabelSelector
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.informer import object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import (
    Controller,
    SharedInformers,
    apply_claims,
    cached_controller,
    fresh_owner_check,
    owner_reference,
    plan_claims,
    split_key,
)
from pocketkube.controllers.deployment_plan import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    annotation_int,
    calculate_status,
    compute_hash,
    created_at,
    equal_ignore_hash,
    find_new_rs,
    get_condition,
    has_progress_deadline,
    is_complete,
    max_surge,
    new_condition,
    new_rs_annotations,
    new_rs_replicas,
    old_rs_scale_down,
    progress_conditions,
    proportional_scale,
    replica_sets_to_clean,
    revision,
    rolling_update,
    set_condition,
    spec_replicas,
    status_count,
)

__all__ = ["DeploymentController"]

log = logging.getLogger(__name__)

DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]
REPLICASETS = BY_PLURAL[("apps", "replicasets")]
PODS = BY_PLURAL[("", "pods")]

# ---- the controller ----

class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 5,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.d_informer = informers.get(DEPLOYMENTS)
        self.rs_informer = informers.get(REPLICASETS)
        self.pod_informer = informers.get(PODS)
        super().__init__([self.d_informer, self.rs_informer, self.pod_informer], workers=workers)
        self.recorder = recorder
        self.clock = clock
        self.watch_own_kind(self.d_informer)
        self.rs_informer.add_handlers(self._on_rs_add, self._on_rs_update, self._on_rs_delete)
        self.pod_informer.add_handlers(on_delete=self._on_pod_delete)

    # ---- handlers ----

    def _owner_of(self, rs: dict) -> dict | None:
        return cached_controller(self.d_informer, rs, "Deployment")

    def _matching_deployments(self, rs: dict) -> list[dict]:
        out = []
        for d in self.d_informer.list():
            if d["metadata"].get("namespace") != rs["metadata"].get("namespace"):
                continue
            try:
                selector = LabelSelector.from_dict(deep_get(d, "spec", "selector"))
            except ValueError:
                continue
            if not selector.empty and selector.matches(rs["metadata"].get("labels")):
                out.append(d)
        return out

    def _on_rs_add(self, rs: dict) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)
        elif controller_ref(rs) is None:
            for d in self._matching_deployments(rs):
                self.enqueue(d)

    def _on_rs_update(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if controller_ref(old) != controller_ref(new):
            old_d = self._owner_of(old)
            if old_d is not None:
                self.enqueue(old_d)
        d = self._owner_of(new)
        if d is not None:
            self.enqueue(d)
        elif controller_ref(new) is None:
            for d in self._matching_deployments(new):
                self.enqueue(d)

    def _on_rs_delete(self, rs: dict) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)

    def _on_pod_delete(self, pod: dict) -> None:
        # Recreate waits for every old pod to be gone before it scales the new ReplicaSet up.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(f"{pod['metadata'].get('namespace', '')}/{ref.get('name')}")
        d = self._owner_of(rs) if rs is not None else None
        if d is not None and deep_get(d, "spec", "strategy", "type") == "Recreate":
            self.enqueue(d)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        cached = self.d_informer.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        rollout = _Rollout(self, d)
        selector_dict = deep_get(d, "spec", "selector")
        try:
            selector = LabelSelector.from_dict(selector_dict)
        except ValueError as e:
            log.warning("%s: %s has an invalid selector: %s", self.name, key, e)
            return
        if selector.empty:
            self.recorder.event(d, WARNING, "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.",
                                res=DEPLOYMENTS)
            if deep_get(d, "status", "observedGeneration", default=0) < deep_get(d, "metadata", "generation", default=0):
                await self.client.update_status(DEPLOYMENTS, {**d, "status": {
                    **(d.get("status") or {}), "observedGeneration": d["metadata"]["generation"]}})
            return
        namespace, _ = split_key(key)
        candidates = [rs for rs in self.rs_informer.list() if rs["metadata"].get("namespace") == namespace]
        rollout.rss = await apply_claims(self.client, REPLICASETS, d, DEPLOYMENTS, plan_claims(d, selector, candidates),
                                         fresh_owner_check(self.client, DEPLOYMENTS, d))
        rollout.check_paused_conditions()
        if d["metadata"].get("deletionTimestamp"):
            await rollout.status_only()
        elif deep_get(d, "spec", "paused"):
            await rollout.paused()
        elif rollout.is_scaling_event():
            await rollout.scale_only()
        elif deep_get(d, "spec", "strategy", "type") == "Recreate":
            await rollout.recreate()
        else:
            await rollout.rolling()


class _Rollout:
    """One sync of one Deployment: its ReplicaSets, the writes made so far, and the status to write."""

    def __init__(self, ctl: DeploymentController, d: dict) -> None:
        self.ctl = ctl
        self.client = ctl.client
        self.d = d
        self.original_status = copy.deepcopy(d.get("status") or {})
        self.rss: list[dict] = []
        self.now = ctl.clock()

    # ---- finding and creating the new ReplicaSet ----

    def split(self) -> tuple[dict | None, list[dict]]:
        new = find_new_rs(self.d, self.rss)
        return new, [rs for rs in self.rss if rs is not new]

    def is_scaling_event(self) -> bool:
        new, old = self.split()
        for rs in [*old, *([new] if new else [])]:
            desired = annotation_int(rs, DESIRED_REPLICAS)
            if spec_replicas(rs) > 0 and desired is not None and desired != spec_replicas(self.d):
                return True
        return False

    async def sync_revision(self, create: bool) -> tuple[dict | None, list[dict]]:
        """getAllReplicaSetsAndSyncRevision: the new RS (created when asked) with the newest revision."""
        new, old = self.split()
        next_revision = max((revision(rs) for rs in old), default=0) + 1
        if new is not None:
            ann = new_rs_annotations(self.d, new, next_revision, exists=True)
            min_ready = deep_get(self.d, "spec", "minReadySeconds", default=0)
            if ann is not None or deep_get(new, "spec", "minReadySeconds", default=0) != min_ready:
                updated = copy.deepcopy(new)
                updated["metadata"]["annotations"] = ann or updated["metadata"].get("annotations") or {}
                updated["spec"]["minReadySeconds"] = min_ready
                new = self._replace(await self.client.update(REPLICASETS, updated))
            if has_progress_deadline(self.d) and get_condition(self._conditions(), "Progressing") is None:
                self._set(new_condition("Progressing", "True", "FoundNewReplicaSet",
                                        f'Found new replica set "{new["metadata"]["name"]}"', self.now))
        elif create:
            new = await self._create_new_rs(old, next_revision)
        if new is not None:
            await self._sync_deployment_revision(revision(new))
        return new, old

    async def _create_new_rs(self, old: list[dict], next_revision: int) -> dict | None:
        d = self.d
        template = copy.deepcopy(deep_get(d, "spec", "template", default=None) or {})
        pod_hash = compute_hash(template, deep_get(d, "status", "collisionCount"))
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(deep_get(d, "spec", "selector", default=None) or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        rs: dict = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{pod_hash}", "namespace": d["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [owner_reference(d, DEPLOYMENTS)]},
            "spec": {"replicas": 0, "minReadySeconds": deep_get(d, "spec", "minReadySeconds", default=0),
                     "selector": selector, "template": template},
        }
        rs["spec"]["replicas"] = new_rs_replicas(d, [*old, rs], rs)
        rs["metadata"]["annotations"] = new_rs_annotations(d, rs, next_revision, exists=False) or {}
        try:
            created = await self.client.create(REPLICASETS, rs, d["metadata"]["namespace"])
        except errors.AlreadyExists:
            existing = await self.client.get(REPLICASETS, d["metadata"]["namespace"], rs["metadata"]["name"])
            if ((controller_ref(existing) or {}).get("uid") == d["metadata"]["uid"]
                    and equal_ignore_hash(deep_get(existing, "spec", "template", default=None) or {},
                                          deep_get(d, "spec", "template", default=None) or {})):
                return self._replace(existing)  # ours: the cache was just behind
            # A different template hashed to the same name: retry with another hash.
            count = int(deep_get(d, "status", "collisionCount", default=0) or 0) + 1
            self.d.setdefault("status", {})["collisionCount"] = count
            await self.client.update_status(DEPLOYMENTS, self.d)
            raise
        self.rss.append(created)
        if spec_replicas(created) > 0:
            self._event(NORMAL, "ScalingReplicaSet",
                        f"Scaled up replica set {created['metadata']['name']} from 0 to {spec_replicas(created)}")
        if has_progress_deadline(d):
            self._set(new_condition("Progressing", "True", "NewReplicaSetCreated",
                                    f'Created new replica set "{created["metadata"]["name"]}"', self.now))
        return created

    async def _sync_deployment_revision(self, rev: int) -> None:
        annotations = deep_get(self.d, "metadata", "annotations", default=None) or {}
        if rev and annotations.get(REVISION) != str(rev):
            m = self.d["metadata"]
            patched = await self.client.patch(DEPLOYMENTS, m["namespace"], m["name"],
                                              {"metadata": {"annotations": {REVISION: str(rev)}}})
            m["annotations"] = patched["metadata"].get("annotations")
            m["resourceVersion"] = patched["metadata"].get("resourceVersion")

    # ---- strategies ----

    async def rolling(self) -> None:
        new, old = await self.sync_revision(create=True)
        if new is not None and spec_replicas(new) != spec_replicas(self.d):
            grow = spec_replicas(new) < spec_replicas(self.d)
            target = new_rs_replicas(self.d, self.rss, new) if grow else spec_replicas(self.d)
            if await self.scale(new, target):
                return await self.sync_status(new, rollout=True)
        targets = old_rs_scale_down(self.d, old, self._latest(new))
        scaled = False
        for rs in old:
            if rs["metadata"]["name"] in targets:
                scaled |= await self.scale(rs, targets[rs["metadata"]["name"]])
        if not scaled and is_complete(self.d, self.original_status):
            await self._cleanup(new)
        await self.sync_status(new, rollout=True)

    async def recreate(self) -> None:
        new, old = await self.sync_revision(create=False)
        scaled = False
        for rs in old:
            if spec_replicas(rs) > 0:
                scaled |= await self.scale(rs, 0)
        if scaled or self._old_pods_running(new):
            return await self.sync_status(new, rollout=True)
        if new is None:
            new, _ = await self.sync_revision(create=True)
        if new is not None:
            await self.scale(new, spec_replicas(self.d))
        if is_complete(self.d, self.original_status):
            await self._cleanup(new)
        await self.sync_status(new, rollout=True)

    def _old_pods_running(self, new: dict | None) -> bool:
        old = self._others(new)
        if sum(status_count(rs, "replicas") for rs in old) > 0:
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old}
        return any((controller_ref(p) or {}).get("uid") in old_uids
                   and deep_get(p, "status", "phase") not in ("Failed", "Succeeded")
                   for p in self.ctl.pod_informer.list())

    async def scale_only(self) -> None:
        new, old = await self.sync_revision(create=False)
        await self._scale_proportionally(new, old)
        await self.sync_status(new, rollout=False)

    async def paused(self) -> None:
        new, old = await self.sync_revision(create=False)
        await self._scale_proportionally(new, old)
        await self._cleanup(new)
        await self.sync_status(new, rollout=False)

    async def status_only(self) -> None:
        new, _ = self.split()
        await self.sync_status(new, rollout=False)

    def check_paused_conditions(self) -> None:
        """A paused Deployment reports Progressing=Unknown, so pausing never looks like a stall."""
        if not has_progress_deadline(self.d):
            return
        cond = get_condition(self._conditions(), "Progressing")
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        paused_reported = cond is not None and cond.get("reason") == "DeploymentPaused"
        if deep_get(self.d, "spec", "paused") and not paused_reported:
            self._set(new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", self.now))
        elif not deep_get(self.d, "spec", "paused") and paused_reported:
            self._set(new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", self.now))

    async def _scale_proportionally(self, new: dict | None, old: list[dict]) -> None:
        active = [rs for rs in [*old, *([new] if new else [])] if spec_replicas(rs) > 0]
        if len(active) <= 1:  # FindActiveOrLatest: the one ReplicaSet that should hold every replica
            latest = new or (max(old, key=created_at) if old else None)
            target = active[0] if active else latest
            if target is not None and spec_replicas(target) != spec_replicas(self.d):
                await self.scale(target, spec_replicas(self.d))
            return
        if (new is not None and annotation_int(new, DESIRED_REPLICAS) == spec_replicas(self.d)
                and status_count(new, "availableReplicas") == spec_replicas(self.d) and spec_replicas(new) == spec_replicas(self.d)):
            for rs in old:  # saturated: the old ones can go
                if spec_replicas(rs) > 0:
                    await self.scale(rs, 0)
            return
        if rolling_update(self.d) is None:
            return
        sizes, op = proportional_scale(self.d, new, old)
        for rs in active:
            await self.scale(rs, sizes.get(rs["metadata"]["name"], spec_replicas(rs)), op)

    async def scale(self, rs: dict, size: int, op: str = "") -> bool:
        """Resize `rs` (and refresh its replica annotations); True when its size changed."""
        desired, most = spec_replicas(self.d), spec_replicas(self.d) + max_surge(self.d)
        ann = deep_get(rs, "metadata", "annotations", default=None) or {}
        size_changed = spec_replicas(rs) != size
        if not size_changed and ann.get(DESIRED_REPLICAS) == str(desired) and ann.get(MAX_REPLICAS) == str(most):
            return False
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = size
        updated["metadata"]["annotations"] = {**ann, DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(most)}
        self._replace(await self.client.update(REPLICASETS, updated))
        if size_changed:
            op = op or ("up" if size > spec_replicas(rs) else "down")
            self._event(NORMAL, "ScalingReplicaSet",
                        f"Scaled {op} replica set {rs['metadata']['name']} from {spec_replicas(rs)} to {size}")
        return size_changed

    # ---- status ----

    async def sync_status(self, new: dict | None, *, rollout: bool) -> None:
        new = self._latest(new)
        all_rss = [*self._others(new), *([new] if new else [])]
        status = calculate_status(self.d, all_rss, new, self.now)
        if rollout:
            status["conditions"] = progress_conditions(self.d, status, new, self.now)
        if status != self.original_status:
            await self.client.update_status(DEPLOYMENTS, {**self.d, "status": status})
        if rollout:
            self._requeue_if_stuck(status)

    async def _cleanup(self, new: dict | None) -> None:
        for rs in replica_sets_to_clean(self.d, self._others(new)):
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"],
                                         preconditions={"uid": rs["metadata"]["uid"]})
            except errors.NotFound:
                pass

    def _requeue_if_stuck(self, status: dict) -> None:
        """Come back when the progress deadline passes, to report ProgressDeadlineExceeded."""
        cond = get_condition(status.get("conditions") or [], "Progressing")
        if cond is None or not has_progress_deadline(self.d) or is_complete(self.d, status):
            return
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return
        since = parse_rfc3339(cond.get("lastUpdateTime"), default=self.now)
        after = since + int(deep_get(self.d, "spec", "progressDeadlineSeconds")) - self.ctl.clock()
        self.ctl.queue.add_after(object_key(self.d), max(after, 0) + 1)

    # ---- small helpers ----

    def _conditions(self) -> list[dict]:
        return list(deep_get(self.d, "status", "conditions", default=None) or [])

    def _set(self, cond: dict) -> None:
        self.d.setdefault("status", {})["conditions"] = set_condition(self._conditions(), cond)

    def _latest(self, rs: dict | None) -> dict | None:
        """The newest copy of `rs` this sync holds (scaling replaces the cached object)."""
        if rs is None:
            return None
        return next((r for r in self.rss if r["metadata"]["uid"] == rs["metadata"]["uid"]), rs)

    def _others(self, new: dict | None) -> list[dict]:
        uid = new["metadata"]["uid"] if new else None
        return [r for r in self.rss if r["metadata"]["uid"] != uid]

    def _replace(self, rs: dict) -> dict:
        uid = rs["metadata"]["uid"]
        self.rss = [rs if r["metadata"]["uid"] == uid else r for r in self.rss]
        return rs

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.ctl.recorder.event(self.d, type_, reason, message, res=DEPLOYMENTS)
