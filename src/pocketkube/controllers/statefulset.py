"""StatefulSet controller: ordered, named pods with their own claims, rolled out by revision.

sync(key) mirrors pkg/controller/statefulset: syncStatefulSet:
  cache lookup → claim pods → the update revision (the current template's ControllerRevision)
  and the current one (status.currentRevision) → one step of statefulset_plan.next_step: claims
  then pods created, finished / condemned / outdated pods deleted → status → prune history.
Pods have fixed names, so a stale cache costs an AlreadyExists or NotFound and a retry, never a
duplicate; no expectations are needed (upstream has none either).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.selectors import LabelSelector
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers.base import (
    Controller,
    SharedInformers,
    apply_claims,
    cached_controller,
    fresh_owner_check,
    owner_reference,
    owners_selecting,
    plan_claims,
    split_key,
    write_status,
)
from pocketkube.controllers.history import (
    CONTROLLER_REVISIONS,
    ensure_revision,
    owned_revisions,
    prune_revisions,
)
from pocketkube.controllers.podcontrol import PODS
from pocketkube.controllers.statefulset_plan import (
    STATEFULSETS,
    claims_for,
    claims_to_retarget,
    next_step,
    ordinal_of,
    pod_revision,
    set_at_revision,
    stateful_pod,
    status_of,
)

__all__ = ["StatefulSetController"]

log = logging.getLogger(__name__)

CLAIMS = BY_PLURAL[("", "persistentvolumeclaims")]


class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 2,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.sts_informer = informers.get(STATEFULSETS)
        self.pod_informer = informers.get(PODS)
        self.rev_informer = informers.get(CONTROLLER_REVISIONS)
        self.claim_informer = informers.get(CLAIMS)
        super().__init__([self.sts_informer, self.pod_informer, self.rev_informer, self.claim_informer],
                         workers=workers)
        self.recorder = recorder
        self.clock = clock
        self.watch_own_kind(self.sts_informer)
        self.pod_informer.add_handlers(self._on_pod, lambda old, new: self._on_pod(new, old), self._on_pod)

    def _on_pod(self, pod: dict, old: dict | None = None) -> None:
        if old is not None and old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
            return
        for p in (pod, old) if old is not None else (pod,):
            owner = cached_controller(self.sts_informer, p, "StatefulSet")
            if owner is not None:
                self.enqueue(owner)
                return
        for sts in owners_selecting(self.sts_informer, pod):  # an orphan: the sets that may adopt it
            self.enqueue(sts)

    async def sync(self, key: str) -> None:
        sts = self.sts_informer.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        namespace, _ = split_key(key)
        candidates = [p for p in self.pod_informer.list() if p["metadata"].get("namespace") == namespace]
        pods = await apply_claims(self.client, PODS, sts, STATEFULSETS, plan_claims(sts, _selector(sts), candidates),
                                  fresh_owner_check(self.client, STATEFULSETS, sts))
        revisions = owned_revisions(sts, [r for r in self.rev_informer.list()
                                          if r["metadata"].get("namespace") == namespace])
        update, revisions, collision = await ensure_revision(self.client, sts, STATEFULSETS, revisions)
        update_name = update["metadata"]["name"]
        current = next((r for r in revisions if r["metadata"]["name"] == deep_get(sts, "status", "currentRevision")),
                       update)
        current_name = current["metadata"]["name"]
        now = self.clock()
        step = next_step(sts, pods, update_name, now)
        current_set = set_at_revision(sts, current)
        for pod in step.relabel:
            await self.client.update(PODS, pod)
        claims = [c for c in self.claim_informer.list() if c["metadata"].get("namespace") == namespace]
        for claim in claims_to_retarget(sts, claims):
            await self.client.update(CLAIMS, claim)
        for ordinal, on_update in step.create:
            if on_update:
                await self._create(sts, ordinal, sts, update_name)
            else:
                await self._create(sts, ordinal, current_set, current_name)
        for pod in step.delete:
            if pod in step.condemned:
                await self._release_claims_with(sts, pod)
            await self._delete(sts, pod)
        status = status_of(sts, pods, current_name, update_name, now)
        if collision is not None:
            status["collisionCount"] = collision
        await write_status(self.client, STATEFULSETS, sts, status)
        live = {current_name, update_name} | {pod_revision(p) for p in pods}
        await prune_revisions(self.client, revisions, live,
                              int(deep_get(sts, "spec", "revisionHistoryLimit", default=10)))
        if step.wait_available:
            self.queue.add_after(key, int(deep_get(sts, "spec", "minReadySeconds", default=0) or 0))

    async def _create(self, sts: dict, ordinal: int, source: dict, revision_name: str) -> None:
        """The ordinal's claims (those missing), then its pod (createPersistentVolumeClaims + CreateStatefulPod)."""
        pod = stateful_pod(source, ordinal, revision_name)
        name = pod["metadata"]["name"]
        for claim in claims_for(sts, ordinal):
            try:
                await self.client.create(CLAIMS, claim, sts["metadata"]["namespace"])
            except errors.AlreadyExists:
                continue
            except errors.ApiError as e:
                self._event(sts, WARNING, "FailedCreate", f"create Claim {claim['metadata']['name']} for Pod {name} "
                            f"in StatefulSet {sts['metadata']['name']} failed error: {e}")
                raise
            self._event(sts, NORMAL, "SuccessfulCreate", f"create Claim {claim['metadata']['name']} Pod {name} "
                        f"in StatefulSet {sts['metadata']['name']} success")
        await self._pod_call("create", sts, pod, self.client.create(PODS, pod, sts["metadata"]["namespace"]),
                             errors.AlreadyExists)

    async def _delete(self, sts: dict, pod: dict) -> None:
        m = pod["metadata"]
        await self._pod_call("delete", sts, pod,
                             self.client.delete(PODS, m["namespace"], m["name"], preconditions={"uid": m["uid"]}),
                             errors.NotFound)

    async def _pod_call(self, verb: str, sts: dict, pod: dict, call: Awaitable,
                        behind: type[errors.ApiError]) -> None:
        """A pod create or delete with upstream's Events (recordPodEvent); the error `behind` (a create
        that finds the pod, a delete that does not) means the cache was behind and is no failure."""
        what = f"{verb} Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']}"
        reason = verb.capitalize()
        try:
            await call
        except behind:
            return
        except errors.ApiError as e:
            self._event(sts, WARNING, f"Failed{reason}", f"{what} failed error: {e}")
            raise
        self._event(sts, NORMAL, f"Successful{reason}", f"{what} successful")

    async def _release_claims_with(self, sts: dict, pod: dict) -> None:
        """whenScaled: Delete: a condemned pod's claims become the pod's, so they go with it."""
        if deep_get(sts, "spec", "persistentVolumeClaimRetentionPolicy", "whenScaled", default="Retain") != "Delete":
            return
        ordinal = ordinal_of(sts, pod)
        ref = {**owner_reference(pod, PODS), "controller": False}
        for claim in claims_for(sts, ordinal if ordinal is not None else -1):
            try:
                stored = await self.client.get(CLAIMS, claim["metadata"]["namespace"], claim["metadata"]["name"])
            except errors.NotFound:
                continue
            refs = stored["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == ref["uid"] for r in refs):
                stored["metadata"]["ownerReferences"] = [*refs, ref]
                await self.client.update(CLAIMS, stored)

    def _event(self, sts: dict, type_: str, reason: str, message: str) -> None:
        self.recorder.event(sts, type_, reason, message, res=STATEFULSETS)


def _selector(sts: dict) -> LabelSelector:
    try:
        return LabelSelector.from_dict(deep_get(sts, "spec", "selector"))
    except ValueError:
        return LabelSelector.nothing()
