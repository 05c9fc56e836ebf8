"""ReplicationController defaulting and validation (v1), worded as pkg/apis/core/validation words
them. The selector is an equality map; unlike the apps kinds it may change after create."""

from __future__ import annotations

from pocketkube.api.fields import FieldError, Path, required
from pocketkube.api.selectors import LabelSelector
from pocketkube.api.validation import validate_labels
from pocketkube.registry.apps.replicasets import default_template, template_errors, workload_spec
from pocketkube.registry.core.pods.typed import get_dict, get_int, nonnegative
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import validate_object_meta_update


def default(obj: dict) -> None:
    """SetDefaults_ReplicationController: selector and labels default to the template's labels."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    template = spec.get("template")
    labels = ((template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None) or {}
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_template(spec)


def selector_of(spec: dict) -> LabelSelector:
    """The equality selector as a LabelSelector (an empty map selects nothing, as the controller treats it)."""
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector:
        return LabelSelector.nothing()
    return LabelSelector.from_dict({"matchLabels": selector})


def validate(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = workload_spec(obj, errs)
    if spec is None:
        return errs
    path = Path("spec")
    errs.extend(nonnegative(get_int(spec, "minReadySeconds", path, errs), path.child("minReadySeconds")))
    selector = get_dict(spec, "selector", path, errs)
    if not selector:
        errs.append(required(path.child("selector")))
    label_errs = validate_labels(selector, path.child("selector"))
    errs.extend(label_errs)
    errs.extend(nonnegative(get_int(spec, "replicas", path, errs), path.child("replicas")))
    # an empty or invalid selector is reported above; the template is then checked without it
    parsed = LabelSelector.from_dict({"matchLabels": selector} if selector and not label_errs else {})
    errs.extend(template_errors(spec.get("template"), parsed, path.child("template"), "ReplicationController"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate(new) + validate_object_meta_update(new, old)


def strategy() -> Strategy:
    return Strategy(default, validate, validate_update, tracks_generation=True)
