"""ReplicaSet controller: keep `spec.replicas` active pods matching the selector.

sync(key) mirrors pkg/controller/replicaset/replica_set.go: syncReplicaSet:
  cache lookup (gone → forget expectations) → claim pods (adopt matching orphans, release
  owned pods that no longer match) → when expectations are satisfied, create the missing pods
  in slow-start batches (1, 2, 4, …) or delete the excess, most deletable first → write status
  → requeue after minReadySeconds when pods are ready but not yet available.

Active pods are those neither terminating (deletionTimestamp) nor finished (Succeeded, Failed):
a failed pod is replaced, a terminating one no longer counts. The decision functions
(`rank_pods_for_deletion`, `calculate_status`, `pod_from_template`, the pod predicates) are pure.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

from pocketkube.api import errors
from pocketkube.api.meta import controller_ref, deep_get
from pocketkube.api.resources import BY_PLURAL, Resource
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import (
    Controller,
    SharedInformers,
    apply_claims,
    cached_controller,
    fresh_owner_check,
    label_selector_of,
    owner_reference,
    owners_selecting,
    plan_claims,
    split_key,
    write_status,
)
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.podcontrol import create_pod, delete_pod

__all__ = [
    "BURST_REPLICAS",
    "ReplicaSetController",
    "calculate_status",
    "is_pod_active",
    "is_pod_available",
    "is_pod_ready",
    "pod_from_template",
    "pod_ready_since",
    "pods_to_delete",
    "rank_pods_for_deletion",
    "slow_start_batch",
]

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
REPLICASETS = BY_PLURAL[("apps", "replicasets")]
BURST_REPLICAS = 500  # at most this many creates or deletes per sync
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


# ---- pod predicates (pure) ----

def is_pod_active(pod: dict) -> bool:
    return (not deep_get(pod, "metadata", "deletionTimestamp")
            and deep_get(pod, "status", "phase") not in ("Succeeded", "Failed"))


def _ready_condition(pod: dict) -> dict | None:
    for c in deep_get(pod, "status", "conditions", default=None) or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def pod_ready_since(pod: dict) -> float | None:
    """When the pod last became Ready (None: not ready, or no transition time)."""
    c = _ready_condition(pod)
    if c is None or c.get("status") != "True" or not c.get("lastTransitionTime"):
        return None
    return parse_rfc3339(c["lastTransitionTime"])


def is_pod_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def _restarts(pod: dict) -> int:
    return max((s.get("restartCount") or 0 for s in deep_get(pod, "status", "containerStatuses", default=None) or []),
               default=0)


def _deletion_cost(pod: dict) -> int:
    try:
        return int((deep_get(pod, "metadata", "annotations", default=None) or {}).get(DELETION_COST_ANNOTATION, 0))
    except (TypeError, ValueError):
        return 0


def _created(pod: dict) -> float | None:
    ts = deep_get(pod, "metadata", "creationTimestamp")
    return parse_rfc3339(ts)


# ---- which pods to delete (pure; mirrors pkg/controller/controller_utils.go ActivePodsWithRanks) ----

def _log_rank_diff(t1: float, t2: float, now: float) -> int:
    """LogarithmicScaleDown: compare ages in powers-of-two buckets, so near-equal ages tie."""
    def bucket(t: float) -> int:
        age_ns = (now - t) * 1e9
        return -1 if age_ns <= 0 else int(math.log2(age_ns))
    return bucket(t1) - bucket(t2)


def _more_deletable(a: dict, b: dict, rank_a: int, rank_b: int, now: float) -> bool:
    node_a, node_b = deep_get(a, "spec", "nodeName", default=""), deep_get(b, "spec", "nodeName", default="")
    if bool(node_a) != bool(node_b):
        return not node_a  # 1. unscheduled first
    phase_a = _PHASE_ORDER.get(deep_get(a, "status", "phase", default=""), 0)
    phase_b = _PHASE_ORDER.get(deep_get(b, "status", "phase", default=""), 0)
    if phase_a != phase_b:
        return phase_a < phase_b  # 2. Pending < Unknown < Running
    if is_pod_ready(a) != is_pod_ready(b):
        return not is_pod_ready(a)  # 3. not ready first
    if _deletion_cost(a) != _deletion_cost(b):
        return _deletion_cost(a) < _deletion_cost(b)  # 4. lower pod-deletion-cost first
    if rank_a != rank_b:
        return rank_a > rank_b  # 5. doubled up with related pods on one node first
    uid_a, uid_b = deep_get(a, "metadata", "uid", default=""), deep_get(b, "metadata", "uid", default="")
    if is_pod_ready(a) and is_pod_ready(b):  # 6. ready for less time first
        ra, rb = pod_ready_since(a), pod_ready_since(b)
        if ra != rb:
            if ra is None or rb is None:
                return ra is None
            diff = _log_rank_diff(ra, rb, now)
            return uid_a < uid_b if diff == 0 else diff < 0
    if _restarts(a) != _restarts(b):
        return _restarts(a) > _restarts(b)  # 7. more restarts first
    ca, cb = _created(a), _created(b)  # 8. newer first
    if ca != cb:
        if ca is None or cb is None:
            return ca is None
        diff = _log_rank_diff(ca, cb, now)
        return uid_a < uid_b if diff == 0 else diff < 0
    return uid_a < uid_b


def rank_pods_for_deletion(pods: list[dict], related: Iterable[dict], now: float) -> list[dict]:
    """`pods` sorted most deletable first; `related` (pods of sibling ReplicaSets too) sets the
    per-node rank that prefers deleting a pod doubled up on a node."""
    on_node: dict[str, int] = {}
    for p in related:
        node = deep_get(p, "spec", "nodeName", default="")
        if node and is_pod_active(p):
            on_node[node] = on_node.get(node, 0) + 1
    ranks = {id(p): on_node.get(deep_get(p, "spec", "nodeName", default=""), 0) for p in pods}

    def compare(a: dict, b: dict) -> int:
        if _more_deletable(a, b, ranks[id(a)], ranks[id(b)], now):
            return -1
        if _more_deletable(b, a, ranks[id(b)], ranks[id(a)], now):
            return 1
        return 0
    return sorted(pods, key=functools.cmp_to_key(compare))


def pods_to_delete(pods: list[dict], related: Iterable[dict], count: int, now: float) -> list[dict]:
    if count >= len(pods):
        return list(pods)
    return rank_pods_for_deletion(pods, related, now)[:count]


# ---- status and pod construction (pure) ----

def calculate_status(rs: dict, pods: list[dict], now: float, failure: tuple[str, str] | None = None) -> dict:
    """The status for `rs` given its active pods; `failure` is (reason, message) of a failed create/delete."""
    template_labels = deep_get(rs, "spec", "template", "metadata", "labels", default=None) or {}
    min_ready = int(deep_get(rs, "spec", "minReadySeconds", default=0) or 0)
    fully_labeled = ready = available = 0
    for p in pods:
        labels = deep_get(p, "metadata", "labels", default=None) or {}
        fully_labeled += all(labels.get(k) == v for k, v in template_labels.items())
        if is_pod_ready(p):
            ready += 1
            available += is_pod_available(p, min_ready, now)
    status: dict = {"replicas": len(pods)}
    for name, value in (("fullyLabeledReplicas", fully_labeled), ("readyReplicas", ready),
                        ("availableReplicas", available)):
        if value:
            status[name] = value  # omitempty, as upstream serializes
    generation = deep_get(rs, "metadata", "generation")
    if generation is not None:
        status["observedGeneration"] = generation
    conditions = [c for c in deep_get(rs, "status", "conditions", default=None) or [] if c.get("type") != "ReplicaFailure"]
    old_failure = next((c for c in deep_get(rs, "status", "conditions", default=None) or []
                        if c.get("type") == "ReplicaFailure"), None)
    if failure is not None:
        conditions.append(old_failure or {"type": "ReplicaFailure", "status": "True", "reason": failure[0],
                                          "message": failure[1], "lastTransitionTime": now_rfc3339(now)})
    if conditions:
        status["conditions"] = conditions
    return status


def pod_from_template(rs: dict, res: Resource = REPLICASETS) -> dict:
    """A new pod for `rs` (of kind `res`): the template's metadata and spec, a generated name, a controller ref."""
    template = deep_get(rs, "spec", "template", default=None) or {}
    tmeta = template.get("metadata") or {}
    meta: dict = {"generateName": rs["metadata"]["name"] + "-", "namespace": rs["metadata"]["namespace"],
                  "ownerReferences": [owner_reference(rs, res)]}
    for field in ("labels", "annotations", "finalizers"):
        if tmeta.get(field):
            meta[field] = copy.deepcopy(tmeta[field])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


async def slow_start_batch(count: int, initial: int, fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """Call fn `count` times in concurrent batches of 1, 2, 4, …, stopping after a batch with a failure,
    so that a quota or admission error costs one call, not `count`. Returns (successes, first error)."""
    done, remaining = 0, count
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(failures)
        if failures:
            return done, failures[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return done, None


# ---- the controller ----

class ReplicaSetController(Controller):
    """Also the ReplicationController's controller: a subclass sets `resource` and `selector_of`."""

    name = "replicaset-controller"
    resource: Resource = REPLICASETS

    selector_of = staticmethod(label_selector_of)

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 5,
                 burst: int = BURST_REPLICAS, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.rs_informer = informers.get(self.resource)
        self.pod_informer = informers.get(PODS)
        super().__init__([self.rs_informer, self.pod_informer], workers=workers)
        self.recorder = recorder
        self.expectations = Expectations()
        self.burst = burst
        self.clock = clock
        self.watch_own_kind(self.rs_informer, self._on_rs_delete)
        self.pod_informer.add_handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)

    # ---- handlers: compute keys only ----

    def _on_rs_delete(self, rs: dict) -> None:
        self.expectations.delete(object_key(rs))
        self.enqueue(rs)

    def _owner_of(self, pod: dict) -> dict | None:
        return cached_controller(self.rs_informer, pod, self.resource.kind)

    def _matching_replicasets(self, pod: dict) -> list[dict]:
        return owners_selecting(self.rs_informer, pod, self.selector_of)

    def _on_pod_add(self, pod: dict) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._on_pod_delete(pod)
            return
        rs = self._owner_of(pod)
        if rs is not None:
            self.expectations.creation_observed(object_key(rs))
            self.enqueue(rs)
        elif controller_ref(pod) is None:
            for rs in self._matching_replicasets(pod):
                self.enqueue(rs)

    def _on_pod_update(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if new["metadata"].get("deletionTimestamp"):
            self._on_pod_delete(new)
            if labels_changed:
                self._on_pod_delete(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and old_ref != new_ref:
            old_rs = self._owner_of(old)
            if old_rs is not None:
                self.enqueue(old_rs)
        rs = self._owner_of(new)
        if rs is not None:
            self.enqueue(rs)
            min_ready = int(deep_get(rs, "spec", "minReadySeconds", default=0) or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.enqueue_after(rs, min_ready + 0.5)  # when the pod becomes available
        elif new_ref is None and (labels_changed or old_ref != new_ref):
            for rs in self._matching_replicasets(new):
                self.enqueue(rs)

    def _on_pod_delete(self, pod: dict) -> None:
        rs = self._owner_of(pod)
        if rs is not None:
            self.expectations.deletion_observed(object_key(rs), object_key(pod))
            self.enqueue(rs)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        namespace, _ = split_key(key)
        try:
            selector = self.selector_of(rs)
        except ValueError as e:
            log.warning("%s: %s has an invalid selector: %s", self.name, key, e)
            return  # retrying cannot fix the spec; an update of the RS re-enqueues it
        needs_sync = self.expectations.satisfied(key)
        candidates = [p for p in self.pod_informer.list()
                      if p["metadata"].get("namespace") == namespace and is_pod_active(p)]
        plan = plan_claims(rs, selector, candidates)
        pods = await apply_claims(self.client, PODS, rs, self.resource, plan,
                                  fresh_owner_check(self.client, self.resource, rs))
        failure: tuple[str, str] | None = None
        manage_error: BaseException | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            failure, manage_error = await self._manage_replicas(key, rs, pods)
        now = self.clock()
        status = calculate_status(rs, pods, now, failure)
        rs = await self._write_status(rs, status)
        min_ready = int(deep_get(rs, "spec", "minReadySeconds", default=0) or 0)
        if (manage_error is None and min_ready > 0 and status.get("readyReplicas", 0) == status["replicas"]
                and status.get("availableReplicas", 0) != status["replicas"]):
            self.queue.add_after(key, min_ready)
        if manage_error is not None:
            raise manage_error

    async def _manage_replicas(self, key: str, rs: dict, pods: list[dict]) -> tuple[tuple[str, str] | None,
                                                                                    BaseException | None]:
        desired = int(deep_get(rs, "spec", "replicas", default=1))
        diff = len(pods) - desired
        if diff < 0:
            return await self._create_pods(key, rs, min(-diff, self.burst))
        if diff > 0:
            return await self._delete_pods(key, rs, pods, min(diff, self.burst))
        return None, None

    async def _create_pods(self, key: str, rs: dict, count: int) -> tuple[tuple[str, str] | None, BaseException | None]:
        self.expectations.expect_creations(key, count)

        async def create_one() -> None:
            await create_pod(self.client, self.recorder, rs, self.resource, pod_from_template(rs, self.resource))

        created, error = await slow_start_batch(count, 1, create_one)
        for _ in range(count - created):
            self.expectations.creation_observed(key)  # never coming: don't wait for them
        return (("FailedCreate", str(error)), error) if error is not None else (None, None)

    async def _delete_pods(self, key: str, rs: dict, pods: list[dict], count: int) -> tuple[tuple[str, str] | None,
                                                                                           BaseException | None]:
        victims = pods_to_delete(pods, self._related_pods(rs), count, self.clock())
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])

        async def delete_one(pod: dict) -> None:
            try:
                if not await delete_pod(self.client, self.recorder, rs, self.resource, pod):
                    self.expectations.deletion_observed(key, object_key(pod))
            except errors.ApiError:
                self.expectations.deletion_observed(key, object_key(pod))
                raise

        results = await asyncio.gather(*(delete_one(p) for p in victims), return_exceptions=True)
        error = next((r for r in results if isinstance(r, BaseException)), None)
        return (("FailedDelete", str(error)), error) if error is not None else (None, None)

    def _related_pods(self, rs: dict) -> list[dict]:
        """Active pods of every ReplicaSet with the same controller (the Deployment's other revisions)."""
        owner = controller_ref(rs)
        namespace = rs["metadata"]["namespace"]
        siblings = {rs["metadata"]["uid"]}
        if owner is not None:
            siblings |= {r["metadata"]["uid"] for r in self.rs_informer.list()
                         if r["metadata"].get("namespace") == namespace
                         and (controller_ref(r) or {}).get("uid") == owner.get("uid")}
        return [p for p in self.pod_informer.list() if p["metadata"].get("namespace") == namespace
                and is_pod_active(p) and (controller_ref(p) or {}).get("uid") in siblings]

    async def _write_status(self, rs: dict, status: dict) -> dict:
        return await write_status(self.client, self.resource, rs, status)
