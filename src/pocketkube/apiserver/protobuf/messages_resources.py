"""Protobuf schemas of the resource-bounding kinds kubectl sends: `kubectl create quota` (v1
ResourceQuota), `kubectl create pdb` (policy/v1 PodDisruptionBudget) and the Eviction that
`kubectl drain` POSTs (policy/v1), with k8s.io/api's generated.proto field numbers."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    _CONDITION,
    _LABEL_SELECTOR,
    OBJECT_META,
    Kind,
    Message,
    _bool,
    _int,
    _message,
    _of,
    _string,
    _strings,
)

_PRECONDITIONS = Message("Preconditions", _string(1, "uid", True), _string(2, "resourceVersion", True))
DELETE_OPTIONS = Message(
    "DeleteOptions", _int(1, "gracePeriodSeconds", True), _message(2, "preconditions", _PRECONDITIONS),
    _bool(3, "orphanDependents", True), _string(4, "propagationPolicy", True), _strings(5, "dryRun"),
    _bool(6, "ignoreStoreReadErrorWithClusterBreakingPotential", True))
EVICTION = Message("Eviction", _message(1, "metadata", OBJECT_META), _message(2, "deleteOptions", DELETE_OPTIONS))

PDB = Message(
    "PodDisruptionBudget", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message(
        "PodDisruptionBudgetSpec", _of(Kind.INT_OR_STRING, 1, "minAvailable"),
        _message(2, "selector", _LABEL_SELECTOR), _of(Kind.INT_OR_STRING, 3, "maxUnavailable"),
        _string(4, "unhealthyPodEvictionPolicy", True))),
    _message(3, "status", Message(
        "PodDisruptionBudgetStatus", _int(1, "observedGeneration"), _int(3, "disruptionsAllowed", True),
        _int(4, "currentHealthy", True), _int(5, "desiredHealthy", True), _int(6, "expectedPods", True),
        _message(7, "conditions", _CONDITION, repeated=True))))

_SCOPE_SELECTOR = Message(
    "ScopeSelector", _message(1, "matchExpressions", Message(
        "ScopedResourceSelectorRequirement", _string(1, "scopeName", True), _string(2, "operator", True),
        _strings(3, "values")), repeated=True))
RESOURCE_QUOTA = Message(
    "ResourceQuota", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message(
        "ResourceQuotaSpec", _of(Kind.QUANTITY_MAP, 1, "hard"), _strings(2, "scopes"),
        _message(3, "scopeSelector", _SCOPE_SELECTOR))),
    _message(3, "status", Message(
        "ResourceQuotaStatus", _of(Kind.QUANTITY_MAP, 1, "hard"), _of(Kind.QUANTITY_MAP, 2, "used"))))

SCHEMAS = {
    ("v1", "ResourceQuota"): RESOURCE_QUOTA,
    ("policy/v1", "PodDisruptionBudget"): PDB,
    ("policy/v1", "Eviction"): EVICTION,
}
