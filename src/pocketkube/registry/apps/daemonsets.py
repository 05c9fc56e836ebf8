"""DaemonSet defaulting and validation (apps/v1), worded as pkg/apis/apps/validation words them.

The template generation (upstream's internal spec.templateGeneration, stored in apps/v1 as the
`deprecated.daemonset.template.generation` annotation) is server-owned: 1 at create, one more
at each update that changes spec.template. The controller labels pods with it.
"""

from __future__ import annotations

from pocketkube.api.fields import FieldError, Path, invalid, not_supported, required
from pocketkube.api.validation import wrong_type
from pocketkube.registry.apps.deployments import int_or_percent_errors, int_or_percent_value
from pocketkube.registry.apps.replicasets import (
    default_strategy,
    default_template,
    validate_workload,
    validate_workload_update,
)
from pocketkube.registry.core.pods.typed import get_dict, get_int, nonnegative
from pocketkube.registry.strategy import STATUS, Strategy, UpdatePath
from pocketkube.registry.validation import get_str

TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
UPDATE_STRATEGIES = ["OnDelete", "RollingUpdate"]


def default(obj: dict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    default_strategy(spec, "updateStrategy", {"maxUnavailable": 1, "maxSurge": 0})
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_template(spec)
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    if isinstance(annotations, dict):
        annotations.setdefault(TEMPLATE_GENERATION, "1")


def _prepare_update(new: dict, old: dict) -> None:
    """PrepareForUpdate: the template generation follows the stored one, plus one for a new template."""
    old_gen = (old["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION, "1")
    try:
        generation = int(old_gen)
    except ValueError:
        generation = 1
    if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
        generation += 1
    annotations = new["metadata"].get("annotations")
    if not isinstance(annotations, dict):
        annotations = new["metadata"]["annotations"] = {}
    annotations[TEMPLATE_GENERATION] = str(generation)


def validate(obj: dict) -> list[FieldError]:
    errs = validate_workload(obj, "daemonset", "DaemonSet")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs
    path = Path("spec")
    errs.extend(nonnegative(get_int(spec, "revisionHistoryLimit", path, errs), path.child("revisionHistoryLimit")))
    errs.extend(update_strategy_errors(get_dict(spec, "updateStrategy", path, errs), path.child("updateStrategy")))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate(new) + validate_workload_update(new, old)


def update_strategy_errors(strategy: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    kind = get_str(strategy, "type", path, errs)
    if kind == "OnDelete":
        return errs
    if kind != "RollingUpdate":
        return errs + [not_supported(path, strategy, UPDATE_STRATEGIES)]
    rolling = strategy.get("rollingUpdate")
    rpath = path.child("rollingUpdate")
    if rolling is None:
        return errs + [required(rpath)]
    if not isinstance(rolling, dict):
        return errs + [wrong_type(rpath, rolling, "object")]
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    for key, value in (("maxUnavailable", unavailable), ("maxSurge", surge)):
        errs.extend(int_or_percent_errors(value, rpath.child(key)))
        if isinstance(value, str) and (int_or_percent_value(value) or 0) > 100:
            errs.append(invalid(rpath.child(key), value, "must not be greater than 100%"))
    has_unavailable = bool(int_or_percent_value(unavailable))
    has_surge = bool(int_or_percent_value(surge))
    if has_unavailable and has_surge:
        errs.append(invalid(rpath.child("maxSurge"), surge, "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        errs.append(required(rpath.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
    return errs


def strategy() -> Strategy:
    return Strategy(default, validate, validate_update, tracks_generation=True,
                    updates={"": UpdatePath(prepare=_prepare_update), "status": STATUS})
