"""StatefulSet decisions (pure; mirrors pkg/controller/statefulset: stateful_set_control.go and
stateful_set_utils.go).

Pods are `<set>-<ordinal>` with a stable hostname (`subdomain` = serviceName) and one
PersistentVolumeClaim per volumeClaimTemplate, `<template>-<set>-<ordinal>`, made before the pod.
`next_step` decides what one sync does, as updateStatefulSet does:

  1. ordinals in range, lowest first: create a missing pod, delete a finished one; with
     OrderedReady stop at the first pod that is missing, terminating or not Running and Ready
  2. pods beyond the range, highest ordinal first (OrderedReady: one at a time, all others healthy)
  3. RollingUpdate: the highest in-range ordinal ≥ partition not on the update revision is deleted
     (it comes back on the update revision), one at a time, waiting for each to be healthy
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.base import owner_reference
from pocketkube.controllers.history import REVISION_HASH_LABEL, observed, template_of
from pocketkube.controllers.replicaset import is_pod_available, is_pod_ready

__all__ = [
    "POD_INDEX_LABEL",
    "POD_NAME_LABEL",
    "STATEFULSETS",
    "Step",
    "claim_name",
    "claims_for",
    "claims_to_retarget",
    "next_step",
    "ordinal_of",
    "set_at_revision",
    "stateful_pod",
    "status_of",
]

STATEFULSETS = BY_PLURAL[("apps", "statefulsets")]
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"(.*)-([0-9]+)$")


def ordinal_of(sts: dict, pod: dict) -> int | None:
    """The pod's ordinal when its name is `<set>-<n>` (getParentNameAndOrdinal), else None."""
    match = _ORDINAL.fullmatch(pod["metadata"].get("name", ""))
    if match is None or match.group(1) != sts["metadata"]["name"]:
        return None
    return int(match.group(2))


def claim_name(template_name: str, set_name: str, ordinal: int) -> str:
    return f"{template_name}-{set_name}-{ordinal}"


def start_ordinal(sts: dict) -> int:
    return int(deep_get(sts, "spec", "ordinals", "start", default=0) or 0)


def replicas_of(sts: dict) -> int:
    return int(deep_get(sts, "spec", "replicas", default=1))


def set_at_revision(sts: dict, revision: dict) -> dict:
    """The set with the revision's template (ApplyRevision)."""
    out = copy.deepcopy(sts)
    out["spec"]["template"] = template_of(revision)
    return out


def _retention(sts: dict, key: str) -> str:
    return deep_get(sts, "spec", "persistentVolumeClaimRetentionPolicy", key, default="Retain") or "Retain"


def claims_for(sts: dict, ordinal: int) -> list[dict]:
    """The PVCs of one ordinal: the templates named for it, labelled with the set's selector labels;
    owned by the set when whenDeleted is Delete (deleted with it by the garbage collector)."""
    name = sts["metadata"]["name"]
    selector_labels = deep_get(sts, "spec", "selector", "matchLabels", default=None) or {}
    out = []
    for tmpl in deep_get(sts, "spec", "volumeClaimTemplates", default=None) or []:
        meta = tmpl.get("metadata") or {}
        labels = {**(meta.get("labels") or {}), **selector_labels}
        claim_meta: dict = {"name": claim_name(meta.get("name", ""), name, ordinal),
                            "namespace": sts["metadata"]["namespace"], "labels": labels}
        if meta.get("annotations"):
            claim_meta["annotations"] = dict(meta["annotations"])
        if _retention(sts, "whenDeleted") == "Delete":
            claim_meta["ownerReferences"] = [{**owner_reference(sts, STATEFULSETS), "controller": False}]
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim_meta,
                    "spec": copy.deepcopy(tmpl.get("spec") or {})})
    return out


def claims_to_retarget(sts: dict, claims: list[dict]) -> list[dict]:
    """The set's existing claims with the set's owner reference added or removed to follow
    whenDeleted (a policy changed after they were made; upstream's claimsMatchRetentionPolicy)."""
    uid = sts["metadata"]["uid"]
    want = _retention(sts, "whenDeleted") == "Delete"
    start, count = start_ordinal(sts), replicas_of(sts)
    names = {claim_name((t.get("metadata") or {}).get("name", ""), sts["metadata"]["name"], o)
             for t in deep_get(sts, "spec", "volumeClaimTemplates", default=None) or []
             for o in range(start, start + count)}
    out = []
    for claim in claims:
        if claim["metadata"].get("name") not in names or claim["metadata"].get("deletionTimestamp"):
            continue
        refs = claim["metadata"].get("ownerReferences") or []
        if any(r.get("uid") == uid for r in refs) == want:
            continue
        fixed = copy.deepcopy(claim)
        kept = [r for r in refs if r.get("uid") != uid]
        fixed["metadata"]["ownerReferences"] = kept + ([{**owner_reference(sts, STATEFULSETS), "controller": False}]
                                                       if want else [])
        out.append(fixed)
    return out


def stateful_pod(sts: dict, ordinal: int, revision_name: str) -> dict:
    """The pod of one ordinal from `sts`'s template (newStatefulSetPod + setPodRevision)."""
    name = f"{sts['metadata']['name']}-{ordinal}"
    template = deep_get(sts, "spec", "template", default=None) or {}
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), **identity_labels(sts, ordinal), REVISION_HASH_LABEL: revision_name}
    meta: dict = {"name": name, "namespace": sts["metadata"]["namespace"], "labels": labels,
                  "ownerReferences": [owner_reference(sts, STATEFULSETS)]}
    for key in ("annotations", "finalizers"):
        if tmeta.get(key):
            meta[key] = copy.deepcopy(tmeta[key])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["hostname"] = name
    if deep_get(sts, "spec", "serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    claims = {(t.get("metadata") or {}).get("name", "") for t in deep_get(sts, "spec", "volumeClaimTemplates",
                                                                            default=None) or []}
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
    volumes += [{"name": c, "persistentVolumeClaim": {"claimName": claim_name(c, sts["metadata"]["name"], ordinal)}}
                for c in sorted(claims)]
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def identity_labels(sts: dict, ordinal: int) -> dict[str, str]:
    name = f"{sts['metadata']['name']}-{ordinal}"
    return {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)}


def with_identity(sts: dict, pod: dict) -> dict | None:
    """The pod with its identity labels restored when one is missing or wrong (updateStatefulPod's
    identityMatches), else None: an adopted or relabelled pod gets them back."""
    ordinal = ordinal_of(sts, pod)
    labels = deep_get(pod, "metadata", "labels", default=None) or {}
    wanted = identity_labels(sts, ordinal if ordinal is not None else -1)
    if ordinal is None or all(labels.get(k) == v for k, v in wanted.items()):
        return None
    fixed = copy.deepcopy(pod)
    fixed["metadata"]["labels"] = {**labels, **wanted}
    return fixed


def pod_revision(pod: dict) -> str:
    return (deep_get(pod, "metadata", "labels", default=None) or {}).get(REVISION_HASH_LABEL, "")


def _terminating(pod: dict) -> bool:
    return bool(deep_get(pod, "metadata", "deletionTimestamp"))


def _finished(pod: dict) -> bool:
    return deep_get(pod, "status", "phase") in ("Failed", "Succeeded")


def running_and_ready(pod: dict) -> bool:
    return deep_get(pod, "status", "phase") == "Running" and is_pod_ready(pod)


def _healthy(pod: dict, min_ready: int, now: float) -> bool:
    return running_and_ready(pod) and not _terminating(pod) and is_pod_available(pod, min_ready, now)


@dataclass
class Step:
    create: list[tuple[int, bool]] = field(default_factory=list)  # (ordinal, on the update revision)
    delete: list[dict] = field(default_factory=list)
    condemned: list[dict] = field(default_factory=list)  # the deletes that are scale-downs
    relabel: list[dict] = field(default_factory=list)  # live pods with their identity labels restored
    wait_available: bool = False  # a pod is ready but not yet available for minReadySeconds


def _split(sts: dict, pods: list[dict]) -> tuple[dict[int, dict], list[dict]]:
    start, count = start_ordinal(sts), replicas_of(sts)
    in_range: dict[int, dict] = {}
    condemned: list[tuple[int, dict]] = []
    for p in pods:
        ordinal = ordinal_of(sts, p)
        if ordinal is None:
            continue
        if start <= ordinal < start + count:
            in_range[ordinal] = p
        else:
            condemned.append((ordinal, p))
    return in_range, [p for _, p in sorted(condemned, key=lambda c: -c[0])]


def _partition(sts: dict) -> int:
    strategy = deep_get(sts, "spec", "updateStrategy", default=None) or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    return int((strategy.get("rollingUpdate") or {}).get("partition") or 0)


def next_step(sts: dict, pods: list[dict], update_revision: str, now: float) -> Step:
    """What this sync does for the set's claimed pods (updateStatefulSet, without maxUnavailable)."""
    step = Step()
    monotonic = deep_get(sts, "spec", "podManagementPolicy", default="OrderedReady") != "Parallel"
    min_ready = int(deep_get(sts, "spec", "minReadySeconds", default=0) or 0)
    start, count, partition = start_ordinal(sts), replicas_of(sts), _partition(sts)
    in_range, condemned = _split(sts, pods)
    rolling = (deep_get(sts, "spec", "updateStrategy", "type", default="RollingUpdate") == "RollingUpdate")
    step.relabel = [fixed for p in in_range.values() if not _terminating(p)
                    and (fixed := with_identity(sts, p)) is not None]
    for i in range(count):
        pod = in_range.get(start + i)
        if pod is None:
            step.create.append((start + i, not (rolling and i < partition)))
            if monotonic:
                return step
        elif _finished(pod) and not _terminating(pod):
            step.delete.append(pod)
            if monotonic:
                return step
        elif monotonic and not _healthy(pod, min_ready, now):
            step.wait_available = running_and_ready(pod) and not _terminating(pod)
            return step
    unhealthy = [p for p in condemned if not _healthy(p, min_ready, now)]
    for pod in condemned:
        if _terminating(pod):
            if monotonic:
                return step
            continue
        if monotonic and unhealthy and unhealthy[0] is not pod:
            return step
        step.delete.append(pod)
        step.condemned.append(pod)
        if monotonic:
            return step
    if not rolling or step.create or step.delete:
        return step
    for i in range(count - 1, partition - 1, -1):
        pod = in_range.get(start + i)
        if pod is None:
            continue
        if pod_revision(pod) != update_revision and not _terminating(pod):
            step.delete.append(pod)
            return step
        if not _healthy(pod, min_ready, now):
            return step
    return step


def status_of(sts: dict, pods: list[dict], current_revision: str, update_revision: str, now: float) -> dict:
    """computeReplicaStatus plus completeRollingUpdate."""
    min_ready = int(deep_get(sts, "spec", "minReadySeconds", default=0) or 0)
    replicas = ready = available = current = updated = 0
    for p in pods:
        if ordinal_of(sts, p) is None:
            continue
        replicas += 1
        if running_and_ready(p):
            ready += 1
            available += is_pod_available(p, min_ready, now)
        if not _terminating(p):
            current += pod_revision(p) == current_revision
            updated += pod_revision(p) == update_revision
    rolling = deep_get(sts, "spec", "updateStrategy", "type", default="RollingUpdate") == "RollingUpdate"
    if rolling and updated == replicas and ready == replicas:
        current, current_revision = updated, update_revision
    status: dict = {"replicas": replicas}
    for key, value in (("readyReplicas", ready), ("currentReplicas", current), ("updatedReplicas", updated),
                       ("currentRevision", current_revision), ("updateRevision", update_revision)):
        if value:
            status[key] = value  # omitempty, as upstream serializes
    status["availableReplicas"] = available
    return observed(sts, status)
