"""The Job controller's decisions, as pure functions (pkg/controller/job/job_controller.go,
indexed_job_utils.go, pod_failure_policy.go, backoff_utils.go of 1.32).

Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer: a pod that finishes is
first recorded in status.uncountedTerminatedPods, then loses its finalizer, then moves into the
succeeded/failed counters, so a pod is counted exactly once even if the controller restarts or
the pod is deleted meanwhile. Terminal conditions are delayed as 1.32 delays them (its
JobPodReplacementPolicy/JobSuccessPolicy gates are on): FailureTarget or SuccessCriteriaMet
first, then Failed or Complete once no pod of the Job is still terminating.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from pocketkube.api.meta import deep_get
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
DEFAULT_BACKOFF = 10.0  # the first delay before recreating a failed pod; doubles per failure
MAX_BACKOFF = 360.0

REASON_BACKOFF = "BackoffLimitExceeded"
REASON_DEADLINE = "DeadlineExceeded"
REASON_POLICY = "PodFailurePolicy"
REASON_COMPLETIONS = "CompletionsReached"
MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_COMPLETIONS = "Reached expected number of succeeded pods"


# ---- pods ----

def phase(pod: dict) -> str:
    return deep_get(pod, "status", "phase", default="") or ""


def has_finalizer(pod: dict) -> bool:
    return TRACKING_FINALIZER in (deep_get(pod, "metadata", "finalizers", default=None) or [])


def only_replace_failed(job: dict) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_failed(pod: dict, job: dict) -> bool:
    """isPodFailed: Failed, or (unless only failed pods are replaced) deleted before succeeding."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(deep_get(pod, "metadata", "deletionTimestamp")) and phase(pod) != "Succeeded"


def is_active(pod: dict) -> bool:
    return phase(pod) not in ("Succeeded", "Failed") and not deep_get(pod, "metadata", "deletionTimestamp")


def is_terminating(pod: dict) -> bool:
    return phase(pod) not in ("Succeeded", "Failed") and bool(deep_get(pod, "metadata", "deletionTimestamp"))


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in deep_get(pod, "status", "conditions", default=None) or [])


def completion_index(pod: dict) -> int | None:
    value = (deep_get(pod, "metadata", "annotations", default=None) or {}).get(COMPLETION_INDEX)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def finish_time(pod: dict) -> float | None:
    """When the pod's last container terminated (or the pod was deleted)."""
    times = [parse_rfc3339(deep_get(s, "state", "terminated", "finishedAt"))
             for s in deep_get(pod, "status", "containerStatuses", default=None) or []]
    times = [t for t in times if t is not None]
    if times:
        return max(times)
    return parse_rfc3339(deep_get(pod, "metadata", "deletionTimestamp"))


# ---- completed indexes: "1,3-5,7" ----

def parse_indexes(text: str | None, completions: int) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            continue
        out.update(i for i in range(first, last + 1) if 0 <= i < completions)
    return out


def format_indexes(indexes: set[int]) -> str:
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(n) for n in ordered[i:j + 1])
        i = j + 1
    return ",".join(parts)


# ---- pod failure policy ----

def match_pod_failure_policy(job: dict, pod: dict) -> tuple[str, str] | None:
    """The (action, FailJob message) of the first rule matching a Failed pod; None: Count by default."""
    rules = deep_get(job, "spec", "podFailurePolicy", "rules", default=None) or []
    ns, name = deep_get(pod, "metadata", "namespace"), deep_get(pod, "metadata", "name")
    for i, rule in enumerate(rules):
        action = rule.get("action")
        codes = rule.get("onExitCodes")
        if codes is not None:
            statuses = ((deep_get(pod, "status", "initContainerStatuses", default=None) or [])
                        + (deep_get(pod, "status", "containerStatuses", default=None) or []))
            for s in statuses:
                code = deep_get(s, "state", "terminated", "exitCode")
                if code in (None, 0) or (codes.get("containerName") not in (None, s.get("name"))):
                    continue
                if (code in codes.get("values", [])) == (codes.get("operator") == "In"):
                    return action, (f"Container {s.get('name')} for pod {ns}/{name} failed with exit code {code} "
                                    f"matching {action} rule at index {i}")
        for pattern in rule.get("onPodConditions") or []:
            for c in deep_get(pod, "status", "conditions", default=None) or []:
                if c.get("type") == pattern.get("type") and c.get("status") == (pattern.get("status") or "True"):
                    return action, f"Pod {ns}/{name} has condition {c.get('type')} matching {action} rule at index {i}"
    return None


# ---- back-off ----

def backoff_remaining(pods: list[dict], now: float, base: float = DEFAULT_BACKOFF,
                      cap: float = MAX_BACKOFF) -> float:
    """Seconds to wait before creating pods after failures: base·2^(failures since the last
    success − 1), capped, counted from the last failure (backoffRecord.getRemainingTime)."""
    last_success = max((finish_time(p) or 0.0 for p in pods if phase(p) == "Succeeded"), default=0.0)
    failures = [t for p in pods if phase(p) == "Failed" and (t := finish_time(p)) is not None and t > last_success]
    if not failures:
        return 0.0
    delay = min(cap, base * 2 ** (len(failures) - 1))
    return max(0.0, delay - (now - max(failures)))


def restarts_exceed_limit(job: dict, active: list[dict]) -> bool:
    """pastBackoffLimitOnFailure: with OnFailure, container restarts count toward backoffLimit."""
    if deep_get(job, "spec", "template", "spec", "restartPolicy") != "OnFailure":
        return False
    restarts = sum(s.get("restartCount") or 0 for p in active if phase(p) in ("Pending", "Running", "")
                   for s in (deep_get(p, "status", "initContainerStatuses", default=None) or [])
                   + (deep_get(p, "status", "containerStatuses", default=None) or []))
    limit = deep_get(job, "spec", "backoffLimit", default=6)
    return restarts > 0 if limit == 0 else restarts >= limit


# ---- conditions ----

def condition(job: dict, type_: str) -> dict | None:
    return next((c for c in deep_get(job, "status", "conditions", default=None) or [] if c.get("type") == type_), None)


def is_true(job: dict, type_: str) -> bool:
    c = condition(job, type_)
    return c is not None and c.get("status") == "True"


def is_finished(job: dict) -> bool:
    return is_true(job, "Complete") or is_true(job, "Failed")


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> dict:
    ts = now_rfc3339(now)
    return {"type": type_, "status": status, "lastProbeTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def ensure_condition(conditions: list[dict], cond: dict) -> bool:
    """Set `cond` in place (a status flip resets the transition time); True when something changed."""
    for i, c in enumerate(conditions):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"] and c.get("reason") == cond["reason"] \
                    and c.get("message") == cond["message"]:
                return False
            conditions[i] = cond
            return True
    conditions.append(cond)
    return True


# ---- pods to create ----

def pod_from_template(job: dict, owner_ref: dict, index: int | None) -> dict:
    """A new pod of `job` (with the tracking finalizer; for Indexed Jobs its completion index as
    annotation, label, hostname and the JOB_COMPLETION_INDEX env var through the downward API)."""
    template = copy.deepcopy(deep_get(job, "spec", "template", default=None) or {})
    tmeta = template.get("metadata") or {}
    name = job["metadata"]["name"]
    meta: dict = {"generateName": f"{name}-" if index is None else f"{name}-{index}-",
                  "namespace": job["metadata"]["namespace"], "ownerReferences": [owner_ref],
                  "finalizers": [*(tmeta.get("finalizers") or []), TRACKING_FINALIZER]}
    for key in ("labels", "annotations"):
        meta[key] = dict(tmeta.get(key) or {})
    spec = template.get("spec") or {}
    if index is not None:
        meta["annotations"][COMPLETION_INDEX] = str(index)
        meta["labels"][COMPLETION_INDEX] = str(index)
        spec.setdefault("hostname", f"{name}-{index}")
        env = {"name": INDEX_ENV, "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if not any(e.get("name") == INDEX_ENV for e in c.get("env") or []):
                c["env"] = [*(c.get("env") or []), copy.deepcopy(env)]
    for key in ("labels", "annotations"):
        if not meta[key]:
            del meta[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


@dataclass
class ActivePlan:
    create: list[int | None] = field(default_factory=list)  # completion indexes (None: NonIndexed)
    delete: list[dict] = field(default_factory=list)


def plan_active(job: dict, active: list[dict], succeeded: int, done_indexes: set[int]) -> ActivePlan:
    """manageJob: how many pods to add (and which indexes) or which to remove to reach the
    wanted parallelism given what has succeeded."""
    spec = job.get("spec") or {}
    parallelism = spec.get("parallelism") or 0
    completions = spec.get("completions")
    plan = ActivePlan()
    if spec.get("completionMode") == "Indexed":
        by_index: dict[int, list[dict]] = {}
        for p in active:
            idx = completion_index(p)
            if idx is None or idx >= (completions or 0) or idx in done_indexes:
                plan.delete.append(p)  # out of range, duplicated or already done
            else:
                by_index.setdefault(idx, []).append(p)
        for pods in by_index.values():
            plan.delete.extend(pods[1:])
        running = len(by_index)
        if running > parallelism:
            plan.delete.extend(by_index[i][0] for i in sorted(by_index, reverse=True)[:running - parallelism])
            return plan
        pending = [i for i in range(completions or 0) if i not in done_indexes and i not in by_index]
        plan.create = list(pending[:max(0, parallelism - running)])
        return plan
    if completions is None:
        want = 0 if succeeded > 0 else parallelism  # a work queue: once one succeeds, no new pods
        want = max(want, len(active)) if succeeded > 0 else want
    else:
        want = max(0, min(parallelism, completions - succeeded))
    if len(active) > want:
        plan.delete = sorted(active, key=_deletion_rank)[:len(active) - want]
    elif len(active) < want:
        plan.create = [None] * (want - len(active))
    return plan


def _deletion_rank(pod: dict) -> tuple:
    """Unscheduled, then pending, then not ready pods go first (a subset of ActivePods' order)."""
    return (bool(deep_get(pod, "spec", "nodeName")), phase(pod) == "Running", is_ready(pod),
            -(parse_rfc3339(deep_get(pod, "metadata", "creationTimestamp")) or 0.0))


def past_active_deadline(job: dict, now: float) -> bool:
    deadline = deep_get(job, "spec", "activeDeadlineSeconds")
    start = parse_rfc3339(deep_get(job, "status", "startTime"))
    if deadline is None or start is None or deep_get(job, "spec", "suspend"):
        return False
    return now - start >= deadline


def is_complete(job: dict, succeeded: int, active: int, done_indexes: set[int]) -> bool:
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed":
        return completions is not None and len(done_indexes) >= completions
    if completions is None:
        return succeeded > 0 and active == 0
    return succeeded >= completions and active == 0


def is_stale(job: dict, superseded: dict[str, set[str]], key: str) -> bool:
    """Whether the cached `job` is a version our own status writes already replaced (the informer
    has not caught up). Once it shows another version, the record of replaced ones is dropped."""
    seen = superseded.get(key)
    if not seen:
        return False
    if deep_get(job, "metadata", "resourceVersion", default="") in seen:
        return True
    del superseded[key]
    return False
