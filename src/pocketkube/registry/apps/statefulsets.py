"""StatefulSet defaulting and validation (apps/v1), worded as pkg/apis/apps/validation words them.

Only replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
persistentVolumeClaimRetentionPolicy and minReadySeconds may change after create; the template
is checked for its labels and annotations only, as upstream (its volumes are completed by the
volumeClaimTemplates when the controller builds a pod).
"""

from __future__ import annotations

import copy

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, not_supported, required
from pocketkube.api.validation import dns1123_subdomain_errors, wrong_type
from pocketkube.registry.apps.replicasets import (
    default_strategy,
    default_template,
    selector_errors,
    template_errors,
    validate_workload_update,
    workload_spec,
)
from pocketkube.registry.core.pods.typed import dict_items, get_dict, get_int, get_list, nonnegative
from pocketkube.registry.validation import get_str

POLICIES = ("OrderedReady", "Parallel")
RETENTION = ["Delete", "Retain"]
MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
           "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
_FORBIDDEN_UPDATE = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                     "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                     "'minReadySeconds' are forbidden")


def default(obj: dict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("podManagementPolicy", "OrderedReady")
    default_strategy(spec, "updateStrategy", {"partition": 0})
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is None:
        retention = spec["persistentVolumeClaimRetentionPolicy"] = {}
    if isinstance(retention, dict):
        for key in ("whenDeleted", "whenScaled"):
            if not retention.get(key):
                retention[key] = "Retain"
    claims = spec.get("volumeClaimTemplates")
    for claim in claims if isinstance(claims, list) else []:
        if isinstance(claim, dict) and isinstance(claim.get("spec"), dict):
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            claim["spec"].setdefault("volumeMode", "Filesystem")
    default_template(spec)


def validate(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = workload_spec(obj, errs)
    if spec is None:
        return errs
    path = Path("spec")
    policy = spec.get("podManagementPolicy")
    if not policy:
        errs.append(required(path.child("podManagementPolicy")))
    elif policy not in POLICIES:
        errs.append(invalid(path.child("podManagementPolicy"), policy, "must be 'OrderedReady' or 'Parallel'"))
    errs.extend(_update_strategy_errors(get_dict(spec, "updateStrategy", path, errs), path.child("updateStrategy")))
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        errs.extend(nonnegative(get_int(spec, key, path, errs), path.child(key)))
    ordinals = get_dict(spec, "ordinals", path, errs)
    errs.extend(nonnegative(get_int(ordinals, "start", path.child("ordinals"), errs), path.child("ordinals", "start")))
    errs.extend(_retention_errors(get_dict(spec, "persistentVolumeClaimRetentionPolicy", path, errs),
                                  path.child("persistentVolumeClaimRetentionPolicy")))
    errs.extend(_claim_template_errors(get_list(spec, "volumeClaimTemplates", path, errs),
                                       path.child("volumeClaimTemplates")))
    selector = selector_errors(spec.get("selector"), path.child("selector"), "statefulset", errs)
    if selector is not None:
        errs.extend(template_errors(spec.get("template"), selector, path.child("template"), "StatefulSet",
                                    full=False))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate(new) + validate_workload_update(new, old)
    new_spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    if _fixed(new_spec) != _fixed(old_spec):
        errs.append(forbidden(Path("spec"), _FORBIDDEN_UPDATE))
    return errs


def _fixed(spec: dict) -> dict:
    fixed = {k: v for k, v in spec.items() if k not in MUTABLE and k != "selector"}  # selector: its own message
    return copy.deepcopy(fixed)


def _update_strategy_errors(strategy: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    kind = get_str(strategy, "type", path, errs)
    rolling = strategy.get("rollingUpdate")
    if not kind:
        errs.append(required(path))
    elif kind == "OnDelete":
        if rolling is not None:
            errs.append(invalid(path.child("rollingUpdate"), rolling, "only allowed for updateStrategy 'RollingUpdate'"))
    elif kind == "RollingUpdate":
        if isinstance(rolling, dict):
            rpath = path.child("rollingUpdate")
            errs.extend(nonnegative(get_int(rolling, "partition", rpath, errs), rpath.child("partition")))
        elif rolling is not None:
            errs.append(wrong_type(path.child("rollingUpdate"), rolling, "object"))
    else:
        errs.append(invalid(path, strategy, "must be 'RollingUpdate' or 'OnDelete'"))
    return errs


def _retention_errors(policy: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("whenDeleted", "whenScaled"):
        value = get_str(policy, key, path, errs)
        if value not in RETENTION:
            errs.append(not_supported(path.child(key), value, RETENTION))
    return errs


def _claim_template_errors(claims: list, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, claim in dict_items(claims, path, errs):
        cpath = path.index(i).child("metadata", "name")
        name = (claim.get("metadata") or {}).get("name") if isinstance(claim.get("metadata"), dict) else None
        if not name or not isinstance(name, str):
            errs.append(required(cpath, "name or generateName is required"))
            continue
        errs.extend(invalid(cpath, name, m) for m in dns1123_subdomain_errors(name))
        if name in seen:
            errs.append(invalid(cpath, name, "must be unique"))
        seen.add(name)
    return errs
