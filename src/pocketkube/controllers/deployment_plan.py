"""Pure Deployment rollout decisions (mirrors pkg/controller/deployment/util and the decision
halves of sync.go, rolling.go and progress.go).

- Identity: the pod-template hash (FNV-32a of the template's canonical JSON plus the collision
  count, rendered like upstream's SafeEncodeString) and template equality ignoring that label;
  the new ReplicaSet is the oldest one whose template equals the Deployment's.
- Arithmetic: maxSurge rounds up, maxUnavailable rounds down, both 0 becomes unavailable 1;
  how far the new ReplicaSet may grow, how far old ones may shrink, proportional scaling.
- Bookkeeping: revision annotations, old revisions to delete, status and conditions.

Everything takes and returns plain dicts; nothing here does I/O.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from pocketkube.api.meta import deep_get
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339

__all__ = [
    "DESIRED_REPLICAS", "HASH_LABEL", "MAX_REPLICAS", "REVISION", "REVISION_HISTORY", "annotation_int",
    "calculate_status", "compute_hash", "created_at", "equal_ignore_hash", "find_new_rs", "get_condition",
    "has_progress_deadline", "is_complete", "max_surge", "max_unavailable", "new_condition", "new_rs_annotations",
    "new_rs_replicas", "old_rs_scale_down", "progress_conditions", "proportional_scale", "replica_sets_to_clean",
    "resolve_fenceposts", "revision", "rolling_update", "safe_encode", "scaled_value", "set_condition",
    "spec_replicas", "status_count",
]

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


def semantically_equal(a: Any, b: Any) -> bool:
    """Equal once null and empty fields are dropped (apiequality.Semantic.DeepEqual of decoded objects)."""
    return _canonical(a) == _canonical(b)


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


def created_at(obj: dict) -> tuple[float, str]:
    ts = deep_get(obj, "metadata", "creationTimestamp")
    return (parse_rfc3339(ts, default=0.0), deep_get(obj, "metadata", "name", default=""))


def find_new_rs(d: dict, rss: list[dict]) -> dict | None:
    """The oldest ReplicaSet whose template is the Deployment's (several can match after a hash collision)."""
    template = deep_get(d, "spec", "template", default=None) or {}
    for rs in sorted(rss, key=created_at):
        if equal_ignore_hash(deep_get(rs, "spec", "template", default=None) or {}, template):
            return rs
    return None


def revision(obj: dict) -> int:
    try:
        return int((deep_get(obj, "metadata", "annotations", default=None) or {}).get(REVISION, 0))
    except (TypeError, ValueError):
        return 0


# ---- replica arithmetic (pure; mirrors deployment/util/deployment_util.go) ----

def spec_replicas(obj: dict) -> int:
    return int(deep_get(obj, "spec", "replicas", default=1))


def status_count(obj: dict, field: str) -> int:
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


def rolling_update(d: dict) -> dict | None:
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
    ru = rolling_update(d)
    if ru is None:
        return 0
    return resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), spec_replicas(d))[0]


def max_unavailable(d: dict) -> int:
    ru = rolling_update(d)
    if ru is None or spec_replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), spec_replicas(d))[1], spec_replicas(d))


def new_rs_replicas(d: dict, all_rss: list[dict], new_rs: dict) -> int:
    """How far the new ReplicaSet may scale up now (NewRSNewReplicas)."""
    if rolling_update(d) is None:
        return spec_replicas(d)
    current = sum(spec_replicas(rs) for rs in all_rss)
    max_total = spec_replicas(d) + max_surge(d)
    if current >= max_total:
        return spec_replicas(new_rs)
    return spec_replicas(new_rs) + min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))


def old_rs_scale_down(d: dict, old_rss: list[dict], new_rs: dict | None) -> dict[str, int]:
    """New sizes for old ReplicaSets in one rolling step (reconcileOldReplicaSets): first drop their
    unavailable pods, then available ones while availability stays above the minimum."""
    active = [rs for rs in old_rss if spec_replicas(rs) > 0]
    if not active:
        return {}
    original = {rs["metadata"]["name"]: spec_replicas(rs) for rs in active}
    sizes = dict(original)
    all_pods = sum(sizes.values()) + (spec_replicas(new_rs) if new_rs else 0)
    min_available = spec_replicas(d) - max_unavailable(d)
    new_unavailable = (spec_replicas(new_rs) - status_count(new_rs, "availableReplicas")) if new_rs else 0
    budget = all_pods - min_available - new_unavailable
    if budget <= 0:
        return {}
    ordered = sorted(active, key=created_at)
    cleaned = 0
    for rs in ordered:  # 1. unhealthy replicas, oldest ReplicaSet first
        name = rs["metadata"]["name"]
        unhealthy = sizes[name] - status_count(rs, "availableReplicas")
        if cleaned >= budget:
            break
        if unhealthy <= 0:
            continue
        step = min(budget - cleaned, unhealthy)
        sizes[name] -= step
        cleaned += step
    available = sum(status_count(rs, "availableReplicas") for rs in active) + (
        status_count(new_rs, "availableReplicas") if new_rs else 0)
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


def annotation_int(rs: dict, key: str) -> int | None:
    try:
        return int((deep_get(rs, "metadata", "annotations", default=None) or {})[key])
    except (KeyError, TypeError, ValueError):
        return None


def proportional_scale(d: dict, new_rs: dict | None, old_rss: list[dict]) -> tuple[dict[str, int], str]:
    """New sizes when the Deployment was scaled mid-rollout: spread the change over the active
    ReplicaSets in proportion to their size (DeploymentController.scale). Returns (sizes, "up"/"down")."""
    active = [rs for rs in [*old_rss, *([new_rs] if new_rs else [])] if spec_replicas(rs) > 0]
    allowed = spec_replicas(d) + max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - sum(spec_replicas(rs) for rs in active)
    if to_add == 0 or not active:
        return {}, ""
    # Bigger first; among equals the newer when growing, the older when shrinking.
    if to_add > 0:
        active.sort(key=lambda rs: (-spec_replicas(rs), -created_at(rs)[0]))
    else:
        active.sort(key=lambda rs: (-spec_replicas(rs), created_at(rs)[0]))
    sizes: dict[str, int] = {}
    added = 0
    for rs in active:
        proportion = 0
        if to_add != added:
            if spec_replicas(d) == 0:
                fraction = -spec_replicas(rs)
            else:
                annotated = annotation_int(rs, MAX_REPLICAS) or status_count(d, "replicas")
                target = spec_replicas(rs) * (spec_replicas(d) + max_surge(d)) / annotated if annotated else spec_replicas(rs)
                fraction = int(target + 0.5) - spec_replicas(rs)  # round half away from zero (sizes >= 0)
            proportion = min(fraction, to_add - added) if to_add > 0 else max(fraction, to_add - added)
        sizes[rs["metadata"]["name"]] = spec_replicas(rs) + proportion
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
    alive.sort(key=lambda rs: (revision(rs), created_at(rs)))
    return [rs for rs in alive[:excess]
            if status_count(rs, "replicas") == 0 and spec_replicas(rs) == 0
            and deep_get(rs, "metadata", "generation", default=0) <= status_count(rs, "observedGeneration")]


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
        ann[DESIRED_REPLICAS] = str(spec_replicas(d))
        ann[MAX_REPLICAS] = str(spec_replicas(d) + max_surge(d))
    return ann if ann != old else None


# ---- status and conditions (pure; mirrors deployment/sync.go and progress.go) ----

def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> dict:
    ts = now_rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def get_condition(conditions: list[dict], type_: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def set_condition(conditions: list[dict], cond: dict) -> list[dict]:
    """SetDeploymentCondition: same status and reason is no change; same status keeps the transition time."""
    current = get_condition(conditions, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return conditions
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime", cond["lastTransitionTime"])}
    return [c for c in conditions if c.get("type") != cond["type"]] + [cond]


def calculate_status(d: dict, all_rss: list[dict], new_rs: dict | None, now: float) -> dict:
    available = sum(status_count(rs, "availableReplicas") for rs in all_rss)
    status: dict = {
        "observedGeneration": deep_get(d, "metadata", "generation", default=0),
        "replicas": sum(status_count(rs, "replicas") for rs in all_rss),
        "updatedReplicas": status_count(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": sum(status_count(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(sum(spec_replicas(rs) for rs in all_rss) - available, 0),
    }
    status = {k: v for k, v in status.items() if v or k == "observedGeneration"}  # omitempty
    if deep_get(d, "status", "collisionCount") is not None:
        status["collisionCount"] = d["status"]["collisionCount"]
    conditions = list(deep_get(d, "status", "conditions", default=None) or [])
    if available >= spec_replicas(d) - max_unavailable(d):
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
    n = spec_replicas(d)
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
    cond = get_condition(status.get("conditions") or [], "Progressing")
    if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_rfc3339(cond.get("lastUpdateTime") or cond.get("lastTransitionTime"), default=now)
    return since + int(deep_get(d, "spec", "progressDeadlineSeconds")) < now


def progress_conditions(d: dict, status: dict, new_rs: dict | None, now: float) -> list[dict]:
    """The Progressing condition after a rollout step (syncRolloutStatus)."""
    conditions = list(status.get("conditions") or [])
    if not has_progress_deadline(d):
        return [c for c in conditions if c.get("type") != "Progressing"]
    current = get_condition(conditions, "Progressing")
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
