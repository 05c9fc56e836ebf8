"""Deployment controller: roll a pod template out through ReplicaSets.

sync(key) mirrors pkg/controller/deployment: syncDeployment:
  claim ReplicaSets → deleting? status only → paused? scale only → scaling event (a replica
  count differs from an RS's desired-replicas annotation)? proportional scale → otherwise roll
  out with Recreate or RollingUpdate → status, conditions, old-revision cleanup.

The new ReplicaSet is the one whose template equals the Deployment's (ignoring the
`pod-template-hash` label); it is named `<deployment>-<hash>`, where the hash is FNV-32a of
the template's canonical JSON (plus the collision count) rendered like upstream's
SafeEncodeString. Revisions live in the `deployment.kubernetes.io/revision` annotation of each
ReplicaSet and of the Deployment, so `kubectl rollout history/undo/status` work unchanged.

The rollout arithmetic (`resolve_fenceposts`, `new_rs_replicas`, `old_rs_scale_down`,
`proportional_scale`, `calculate_status`, `progress_conditions`, ...) is pure; the controller
only reads caches and writes what they decide.

Where pocketkube's API server differs from upstream: a status update does not persist
metadata, so the revision annotation is written with a merge patch on the main resource.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from pocketkube.api import errors
from pocketkube.api.meta import controller_ref, deep_get, now_rfc3339, parse_rfc3339
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.selectors import LabelSelector
from pocketkube.client.informer import object_key
from pocketkube.client.rest import Client
from pocketkube.controllers.base import (
    Controller,
    SharedInformers,
    apply_claims,
    fresh_owner_check,
    owner_reference,
    plan_claims,
    split_key,
)
from pocketkube.controllers.events import NORMAL, WARNING, EventRecorder

__all__ = [
    "DESIRED_REPLICAS",
    "HASH_LABEL",
    "MAX_REPLICAS",
    "REVISION",
    "DeploymentController",
    "calculate_status",
    "compute_hash",
    "equal_ignore_hash",
    "find_new_rs",
    "max_surge",
    "max_unavailable",
    "new_rs_annotations",
    "new_rs_replicas",
    "old_rs_scale_down",
    "progress_conditions",
    "proportional_scale",
    "replica_sets_to_clean",
    "resolve_fenceposts",
    "safe_encode",
    "scaled_value",
    "set_condition",
]

log = logging.getLogger(__name__)

DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]
REPLICASETS = BY_PLURAL[("apps", "replicasets")]
PODS = BY_PLURAL[("", "pods")]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
               MAX_REPLICAS, "deprecated.deployment.rollback.to"}
_REVISION_HISTORY_CHARS = 2000
_NO_DEADLINE = 2**31 - 1
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


# ---- template hash and identity (pure) ----

def _fnv32a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """Map each character onto an alphabet without vowels or look-alikes (rand.SafeEncodeString)."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in s)


def _canonical(value: Any) -> Any:
    """Drop null, empty-map and empty-list fields: Go's semantic equality and hashing do not see
    them (kubectl rollout undo sends `creationTimestamp: null`, for one)."""
    if isinstance(value, dict):
        out = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    h = _fnv32a(orjson.dumps(_canonical(template), option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = _fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode(str(h))


def _without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(t1: dict, t2: dict) -> bool:
    return _canonical(_without_hash(t1)) == _canonical(_without_hash(t2))


def _created(obj: dict) -> tuple[float, str]:
    ts = deep_get(obj, "metadata", "creationTimestamp")
    return (parse_rfc3339(ts) if ts else 0.0, deep_get(obj, "metadata", "name", default=""))


def find_new_rs(d: dict, rss: list[dict]) -> dict | None:
    """The oldest ReplicaSet whose template is the Deployment's (several can match after a hash collision)."""
    template = deep_get(d, "spec", "template", default=None) or {}
    for rs in sorted(rss, key=_created):
        if equal_ignore_hash(deep_get(rs, "spec", "template", default=None) or {}, template):
            return rs
    return None


def revision(obj: dict) -> int:
    try:
        return int((deep_get(obj, "metadata", "annotations", default=None) or {}).get(REVISION, 0))
    except (TypeError, ValueError):
        return 0


# ---- replica arithmetic (pure; mirrors deployment/util/deployment_util.go) ----

def _replicas(obj: dict) -> int:
    return int(deep_get(obj, "spec", "replicas", default=1))


def _status(obj: dict, field: str) -> int:
    return int(deep_get(obj, "status", field, default=0) or 0)


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An int, or a percentage of `total` rounded up or down (GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
        scaled = percent * total
        return -(-scaled // 100) if round_up else scaled // 100
    raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")


def _rolling(d: dict) -> dict | None:
    strategy = deep_get(d, "spec", "strategy", default=None) or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def resolve_fenceposts(surge: Any, unavailable: Any, desired: int) -> tuple[int, int]:
    """Surge rounds up, unavailability rounds down; both 0 would deadlock, so unavailable becomes 1."""
    s = scaled_value("25%" if surge is None else surge, desired, True)
    u = scaled_value("25%" if unavailable is None else unavailable, desired, False)
    return (s, 1) if s == 0 and u == 0 else (s, u)


def max_surge(d: dict) -> int:
    ru = _rolling(d)
    if ru is None:
        return 0
    return resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), _replicas(d))[0]


def max_unavailable(d: dict) -> int:
    ru = _rolling(d)
    if ru is None or _replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), _replicas(d))[1], _replicas(d))


def new_rs_replicas(d: dict, all_rss: list[dict], new_rs: dict) -> int:
    """How far the new ReplicaSet may scale up now (NewRSNewReplicas)."""
    if _rolling(d) is None:
        return _replicas(d)
    current = sum(_replicas(rs) for rs in all_rss)
    max_total = _replicas(d) + max_surge(d)
    if current >= max_total:
        return _replicas(new_rs)
    return _replicas(new_rs) + min(max_total - current, _replicas(d) - _replicas(new_rs))


def old_rs_scale_down(d: dict, old_rss: list[dict], new_rs: dict | None) -> dict[str, int]:
    """New sizes for old ReplicaSets in one rolling step (reconcileOldReplicaSets): first drop their
    unavailable pods, then available ones while availability stays above the minimum."""
    active = [rs for rs in old_rss if _replicas(rs) > 0]
    if not active:
        return {}
    original = {rs["metadata"]["name"]: _replicas(rs) for rs in active}
    sizes = dict(original)
    all_pods = sum(sizes.values()) + (_replicas(new_rs) if new_rs else 0)
    min_available = _replicas(d) - max_unavailable(d)
    new_unavailable = (_replicas(new_rs) - _status(new_rs, "availableReplicas")) if new_rs else 0
    budget = all_pods - min_available - new_unavailable
    if budget <= 0:
        return {}
    ordered = sorted(active, key=_created)
    cleaned = 0
    for rs in ordered:  # 1. unhealthy replicas, oldest ReplicaSet first
        name = rs["metadata"]["name"]
        unhealthy = sizes[name] - _status(rs, "availableReplicas")
        if cleaned >= budget:
            break
        if unhealthy <= 0:
            continue
        step = min(budget - cleaned, unhealthy)
        sizes[name] -= step
        cleaned += step
    available = sum(_status(rs, "availableReplicas") for rs in active) + (
        _status(new_rs, "availableReplicas") if new_rs else 0)
    can_remove = max(available - min_available, 0)
    removed = 0
    for rs in ordered:  # 2. healthy replicas, keeping min_available
        name = rs["metadata"]["name"]
        if removed >= can_remove:
            break
        if sizes[name] == 0:
            continue
        step = min(sizes[name], can_remove - removed)
        sizes[name] -= step
        removed += step
    return {name: size for name, size in sizes.items() if size != original[name]}


def _annotation_int(rs: dict, key: str) -> int | None:
    try:
        return int((deep_get(rs, "metadata", "annotations", default=None) or {})[key])
    except (KeyError, TypeError, ValueError):
        return None


def proportional_scale(d: dict, new_rs: dict | None, old_rss: list[dict]) -> tuple[dict[str, int], str]:
    """New sizes when the Deployment was scaled mid-rollout: spread the change over the active
    ReplicaSets in proportion to their size (DeploymentController.scale). Returns (sizes, "up"/"down")."""
    active = [rs for rs in [*old_rss, *([new_rs] if new_rs else [])] if _replicas(rs) > 0]
    allowed = _replicas(d) + max_surge(d) if _replicas(d) > 0 else 0
    to_add = allowed - sum(_replicas(rs) for rs in active)
    if to_add == 0 or not active:
        return {}, ""
    # Bigger first; among equals the newer when growing, the older when shrinking.
    if to_add > 0:
        active.sort(key=lambda rs: (-_replicas(rs), -_created(rs)[0]))
    else:
        active.sort(key=lambda rs: (-_replicas(rs), _created(rs)[0]))
    sizes: dict[str, int] = {}
    added = 0
    for rs in active:
        proportion = 0
        if to_add != added:
            if _replicas(d) == 0:
                fraction = -_replicas(rs)
            else:
                annotated = _annotation_int(rs, MAX_REPLICAS) or _status(d, "replicas")
                target = _replicas(rs) * (_replicas(d) + max_surge(d)) / annotated if annotated else _replicas(rs)
                fraction = int(target + 0.5) - _replicas(rs)  # round half away from zero (sizes >= 0)
            proportion = min(fraction, to_add - added) if to_add > 0 else max(fraction, to_add - added)
        sizes[rs["metadata"]["name"]] = _replicas(rs) + proportion
        added += proportion
    if to_add != added:  # leftovers go to the first (largest) ReplicaSet
        first = active[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes, "up" if to_add > 0 else "down"


def replica_sets_to_clean(d: dict, old_rss: list[dict]) -> list[dict]:
    """Old, empty ReplicaSets beyond revisionHistoryLimit, lowest revision first."""
    limit = deep_get(d, "spec", "revisionHistoryLimit")
    if limit is None:
        return []
    alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
    excess = len(alive) - int(limit)
    if excess <= 0:
        return []
    alive.sort(key=lambda rs: (revision(rs), _created(rs)))
    return [rs for rs in alive[:excess]
            if _status(rs, "replicas") == 0 and _replicas(rs) == 0
            and deep_get(rs, "metadata", "generation", default=0) <= _status(rs, "observedGeneration")]


def new_rs_annotations(d: dict, rs: dict, new_revision: int, exists: bool) -> dict[str, str] | None:
    """The ReplicaSet's annotations after SetNewReplicaSetAnnotations, or None when unchanged."""
    old = dict(deep_get(rs, "metadata", "annotations", default=None) or {})
    ann = dict(old)
    for k, v in (deep_get(d, "metadata", "annotations", default=None) or {}).items():
        if k not in _NOT_COPIED:
            ann[k] = v
    old_revision = revision(rs)
    if old_revision < new_revision:
        ann[REVISION] = str(new_revision)
        if REVISION in old:  # a rollback to this ReplicaSet: remember where it was
            history = [r for r in ann.get(REVISION_HISTORY, "").split(",") if r] + [str(old_revision)]
            while len(",".join(history)) > _REVISION_HISTORY_CHARS:
                history.pop(0)
            ann[REVISION_HISTORY] = ",".join(history)
    if not exists:
        ann[DESIRED_REPLICAS] = str(_replicas(d))
        ann[MAX_REPLICAS] = str(_replicas(d) + max_surge(d))
    return ann if ann != old else None


# ---- status and conditions (pure; mirrors deployment/sync.go and progress.go) ----

def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> dict:
    ts = now_rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def _condition(conditions: list[dict], type_: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def set_condition(conditions: list[dict], cond: dict) -> list[dict]:
    """SetDeploymentCondition: same status and reason is no change; same status keeps the transition time."""
    current = _condition(conditions, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return conditions
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime", cond["lastTransitionTime"])}
    return [c for c in conditions if c.get("type") != cond["type"]] + [cond]


def calculate_status(d: dict, all_rss: list[dict], new_rs: dict | None, now: float) -> dict:
    available = sum(_status(rs, "availableReplicas") for rs in all_rss)
    status: dict = {
        "observedGeneration": deep_get(d, "metadata", "generation", default=0),
        "replicas": sum(_status(rs, "replicas") for rs in all_rss),
        "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(sum(_replicas(rs) for rs in all_rss) - available, 0),
    }
    status = {k: v for k, v in status.items() if v or k == "observedGeneration"}  # omitempty
    if deep_get(d, "status", "collisionCount") is not None:
        status["collisionCount"] = d["status"]["collisionCount"]
    conditions = list(deep_get(d, "status", "conditions", default=None) or [])
    if available >= _replicas(d) - max_unavailable(d):
        cond = new_condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now)
    else:
        cond = new_condition("Available", "False", "MinimumReplicasUnavailable",
                             "Deployment does not have minimum availability.", now)
    status["conditions"] = set_condition(conditions, cond)
    return status


def has_progress_deadline(d: dict) -> bool:
    deadline = deep_get(d, "spec", "progressDeadlineSeconds")
    return deadline is not None and int(deadline) != _NO_DEADLINE


def is_complete(d: dict, status: dict) -> bool:
    n = _replicas(d)
    return (status.get("updatedReplicas", 0) == n and status.get("replicas", 0) == n
            and status.get("availableReplicas", 0) == n
            and status.get("observedGeneration", 0) >= deep_get(d, "metadata", "generation", default=0))


def _is_progressing(d: dict, status: dict) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return (status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or new_old < old_old
            or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or status.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def _timed_out(d: dict, status: dict, now: float) -> bool:
    cond = _condition(status.get("conditions") or [], "Progressing")
    if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_rfc3339(cond.get("lastUpdateTime") or cond.get("lastTransitionTime") or now_rfc3339(now))
    return since + int(deep_get(d, "spec", "progressDeadlineSeconds")) < now


def progress_conditions(d: dict, status: dict, new_rs: dict | None, now: float) -> list[dict]:
    """The Progressing condition after a rollout step (syncRolloutStatus)."""
    conditions = list(status.get("conditions") or [])
    if not has_progress_deadline(d):
        return [c for c in conditions if c.get("type") != "Progressing"]
    current = _condition(conditions, "Progressing")
    complete_before = (status.get("replicas", 0) == status.get("updatedReplicas", 0) and current is not None
                       and current.get("reason") == "NewReplicaSetAvailable")
    if complete_before:
        return conditions
    rs_name = new_rs["metadata"]["name"] if new_rs else ""
    if is_complete(d, status):
        message = f'ReplicaSet "{rs_name}" has successfully progressed.' if new_rs else \
            "Deployment has successfully progressed."
        return set_condition(conditions, new_condition("Progressing", "True", "NewReplicaSetAvailable", message, now))
    if _is_progressing(d, status):
        message = f'ReplicaSet "{rs_name}" is progressing.' if new_rs else "Deployment is progressing."
        cond = new_condition("Progressing", "True", "ReplicaSetUpdated", message, now)
        if current is not None and current.get("status") == "True":
            cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
        return [c for c in conditions if c.get("type") != "Progressing"] + [cond]
    if _timed_out(d, {**status, "conditions": conditions}, now):
        message = f'ReplicaSet "{rs_name}" has timed out progressing.' if new_rs else \
            "Deployment has timed out progressing."
        return set_condition(conditions, new_condition("Progressing", "False", "ProgressDeadlineExceeded", message, now))
    return conditions


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
        self.d_informer.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.rs_informer.add_handlers(self._on_rs_add, self._on_rs_update, self._on_rs_delete)
        self.pod_informer.add_handlers(on_delete=self._on_pod_delete)

    # ---- handlers ----

    def _owner_of(self, rs: dict) -> dict | None:
        ref = controller_ref(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.d_informer.get(f"{rs['metadata'].get('namespace', '')}/{ref.get('name')}")
        return d if d is not None and d["metadata"].get("uid") == ref.get("uid") else None

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
            desired = _annotation_int(rs, DESIRED_REPLICAS)
            if _replicas(rs) > 0 and desired is not None and desired != _replicas(self.d):
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
            if has_progress_deadline(self.d) and _condition(self._conditions(), "Progressing") is None:
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
        if _replicas(created) > 0:
            self._event(NORMAL, "ScalingReplicaSet",
                        f"Scaled up replica set {created['metadata']['name']} from 0 to {_replicas(created)}")
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
        if new is not None and _replicas(new) != _replicas(self.d):
            grow = _replicas(new) < _replicas(self.d)
            target = new_rs_replicas(self.d, self.rss, new) if grow else _replicas(self.d)
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
            if _replicas(rs) > 0:
                scaled |= await self.scale(rs, 0)
        if scaled or self._old_pods_running(new):
            return await self.sync_status(new, rollout=True)
        if new is None:
            new, _ = await self.sync_revision(create=True)
        if new is not None:
            await self.scale(new, _replicas(self.d))
        if is_complete(self.d, self.original_status):
            await self._cleanup(new)
        await self.sync_status(new, rollout=True)

    def _old_pods_running(self, new: dict | None) -> bool:
        old = self._others(new)
        if sum(_status(rs, "replicas") for rs in old) > 0:
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
        cond = _condition(self._conditions(), "Progressing")
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        paused_reported = cond is not None and cond.get("reason") == "DeploymentPaused"
        if deep_get(self.d, "spec", "paused") and not paused_reported:
            self._set(new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", self.now))
        elif not deep_get(self.d, "spec", "paused") and paused_reported:
            self._set(new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", self.now))

    async def _scale_proportionally(self, new: dict | None, old: list[dict]) -> None:
        active = [rs for rs in [*old, *([new] if new else [])] if _replicas(rs) > 0]
        if len(active) <= 1:  # FindActiveOrLatest: the one ReplicaSet that should hold every replica
            latest = new or (max(old, key=_created) if old else None)
            target = active[0] if active else latest
            if target is not None and _replicas(target) != _replicas(self.d):
                await self.scale(target, _replicas(self.d))
            return
        if (new is not None and _annotation_int(new, DESIRED_REPLICAS) == _replicas(self.d)
                and _status(new, "availableReplicas") == _replicas(self.d) and _replicas(new) == _replicas(self.d)):
            for rs in old:  # saturated: the old ones can go
                if _replicas(rs) > 0:
                    await self.scale(rs, 0)
            return
        if _rolling(self.d) is None:
            return
        sizes, op = proportional_scale(self.d, new, old)
        for rs in active:
            await self.scale(rs, sizes.get(rs["metadata"]["name"], _replicas(rs)), op)

    async def scale(self, rs: dict, size: int, op: str = "") -> bool:
        """Resize `rs` (and refresh its replica annotations); True when its size changed."""
        desired, most = _replicas(self.d), _replicas(self.d) + max_surge(self.d)
        ann = deep_get(rs, "metadata", "annotations", default=None) or {}
        size_changed = _replicas(rs) != size
        if not size_changed and ann.get(DESIRED_REPLICAS) == str(desired) and ann.get(MAX_REPLICAS) == str(most):
            return False
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = size
        updated["metadata"]["annotations"] = {**ann, DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(most)}
        self._replace(await self.client.update(REPLICASETS, updated))
        if size_changed:
            op = op or ("up" if size > _replicas(rs) else "down")
            self._event(NORMAL, "ScalingReplicaSet",
                        f"Scaled {op} replica set {rs['metadata']['name']} from {_replicas(rs)} to {size}")
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
        cond = _condition(status.get("conditions") or [], "Progressing")
        if cond is None or not has_progress_deadline(self.d) or is_complete(self.d, status):
            return
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return
        since = parse_rfc3339(cond.get("lastUpdateTime") or now_rfc3339(self.now))
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
