"""ReplicaSet defaulting and validation (apps/v1), plus the selector/template checks it shares
with Deployment, worded as pkg/apis/apps/validation words them."""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, invalid, not_supported, required
from pocketkube.api.selectors import LabelSelector, validate_label_selector
from pocketkube.api.validation import dns1123_subdomain_errors, validate_labels
from pocketkube.registry.core.pods.defaults import default_pod_spec
from pocketkube.registry.core.pods.typed import get_int, nonnegative
from pocketkube.registry.core.pods.validation import validate_template
from pocketkube.registry.validation import (
    IMMUTABLE,
    get_spec,
    validate_annotations,
    validate_object_meta,
    validate_object_meta_update,
)


def default(obj: dict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_template(spec)


def default_template(spec: dict) -> None:
    """Pod defaults inside spec.template.spec (a template gets no admission defaults)."""
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def default_strategy(spec: dict, key: str, rolling_defaults: dict) -> None:
    """An update strategy defaulted to RollingUpdate, whose rollingUpdate gets `rolling_defaults`
    for its unset fields (Deployment's strategy, DaemonSet's and StatefulSet's updateStrategy)."""
    strategy = spec.get(key)
    if strategy is None:
        strategy = spec[key] = {}
    if not isinstance(strategy, dict):
        return
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] != "RollingUpdate":
        return
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        rolling = strategy["rollingUpdate"] = {}
    if isinstance(rolling, dict):
        for field, value in rolling_defaults.items():
            if rolling.get(field) is None:
                rolling[field] = value


def workload_spec(obj: dict, errs: list[FieldError]) -> dict | None:
    """ObjectMeta's errors appended to `errs`; the spec to validate ({} when absent), None when not an object."""
    errs.extend(validate_object_meta(obj, True, dns1123_subdomain_errors))
    return get_spec(obj, errs)


def validate(obj: dict) -> list[FieldError]:
    return validate_workload(obj, "deployment")


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate(new) + validate_workload_update(new, old)


def validate_workload(obj: dict, kind_word: str, kind: str = "ReplicaSet") -> list[FieldError]:
    """ObjectMeta, replicas, minReadySeconds, selector and template, common to the apps workloads.

    `kind_word` names the kind in "empty selector is invalid for <kind>" (upstream says
    "deployment" for ReplicaSets too); `kind` in the activeDeadlineSeconds message."""
    errs: list[FieldError] = []
    spec = workload_spec(obj, errs)
    if spec is None:
        return errs
    path = Path("spec")
    replicas = get_int(spec, "replicas", path, errs)
    errs.extend(nonnegative(replicas, path.child("replicas")))
    errs.extend(nonnegative(get_int(spec, "minReadySeconds", path, errs), path.child("minReadySeconds")))
    selector = selector_errors(spec.get("selector"), path.child("selector"), kind_word, errs)
    if selector is not None:
        errs.extend(template_errors(spec.get("template"), selector, path.child("template"), kind))
    return errs


def selector_errors(selector_dict: Any, selector_path: Path, kind_word: str,
                    errs: list[FieldError]) -> LabelSelector | None:
    """A required, non-empty LabelSelector: its errors appended to `errs`; the parsed selector or None."""
    if selector_dict is None:
        errs.append(required(selector_path))
    else:
        errs.extend(validate_label_selector(selector_dict, selector_path))
        if isinstance(selector_dict, dict) and not (selector_dict.get("matchLabels")
                                                    or selector_dict.get("matchExpressions")):
            errs.append(invalid(selector_path, selector_dict, f"empty selector is invalid for {kind_word}"))
    selector = _as_selector(selector_dict)
    if selector is None:
        errs.append(invalid(selector_path, selector_dict, "invalid label selector"))
    return selector


def _as_selector(selector_dict: Any) -> LabelSelector | None:
    try:
        return LabelSelector.from_dict(selector_dict)
    except ValueError:
        return None


def template_errors(template: Any, selector: LabelSelector, path: Path, kind: str = "ReplicaSet",
                    full: bool = True) -> list[FieldError]:
    """ValidatePodTemplateSpecForReplicaSet: labels match the selector, restartPolicy Always.
    `full` False checks only the template's metadata (StatefulSet templates, as upstream)."""
    if not isinstance(template, dict):
        return validate_template(template, path)
    errs: list[FieldError] = []
    meta = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    if not selector.empty and not selector.matches(labels):
        errs.append(invalid(path.child("metadata", "labels"), labels, "`selector` does not match template `labels`"))
    if full:
        errs.extend(validate_template(template, path))
    else:
        errs.extend(validate_labels(meta.get("labels"), path.child("labels")))
        errs.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    spec = template.get("spec") if isinstance(template.get("spec"), dict) else {}
    policy = spec.get("restartPolicy")
    if isinstance(policy, str) and policy != "Always":
        errs.append(not_supported(path.child("spec", "restartPolicy"), policy, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        detail = "must not be specified" if kind == "StatefulSet" else f"activeDeadlineSeconds in {kind} is not Supported"
        errs.append(invalid(path.child("spec", "activeDeadlineSeconds"), spec["activeDeadlineSeconds"], detail))
    return errs


def validate_workload_update(new: dict, old: dict) -> list[FieldError]:
    """ObjectMeta immutability and the apps/v1 rule that spec.selector never changes."""
    errs = validate_object_meta_update(new, old)
    new_spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    if new_spec.get("selector") != old_spec.get("selector"):
        errs.append(invalid(Path("spec", "selector"), new_spec.get("selector"), IMMUTABLE))
    return errs
