"""PodDisruptionBudget (policy/v1): validation as upstream's ValidatePodDisruptionBudget, and the
kind's strategy (generation tracked, status written by the disruption controller and by
evictions through the status subresource)."""

from __future__ import annotations

import re
from typing import Any

from pocketkube.api.fields import FieldError, Path, invalid, not_supported
from pocketkube.api.selectors.labels import validate_label_selector
from pocketkube.api.validation import dns1123_subdomain_errors, is_int, regex_error
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update

_PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"
POLICIES = ["AlwaysAllow", "IfHealthyBudget"]


def _int_or_percent_errors(value: Any, path: Path) -> list[FieldError]:
    """ValidateNonnegativeIntOrPercent and IsNotMoreThan100Percent."""
    if value is None:
        return []
    if is_int(value):
        return [] if value >= 0 else [invalid(path, value, "must be greater than or equal to 0")]
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            return [invalid(path, value, regex_error(_PERCENT_MSG, "[0-9]+%", "1%", "93%"))]
        if int(value[:-1]) > 100:
            return [invalid(path, value, "must not be greater than 100%")]
        return []
    return [invalid(path, value, "must be an integer or percentage (e.g '5%')")]


def validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return errs + [invalid(Path("spec"), spec, "must be an object")]
    path = Path("spec")
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(invalid(path, spec, "minAvailable and maxUnavailable cannot be both set"))
    errs.extend(_int_or_percent_errors(spec.get("minAvailable"), path.child("minAvailable")))
    errs.extend(_int_or_percent_errors(spec.get("maxUnavailable"), path.child("maxUnavailable")))
    errs.extend(validate_label_selector(spec.get("selector"), path.child("selector")))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in POLICIES:
        errs.append(not_supported(path.child("unhealthyPodEvictionPolicy"), policy, POLICIES))
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    for key in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods", "observedGeneration"):
        v = status.get(key)
        if v is not None and (not is_int(v) or v < 0):
            errs.append(invalid(Path("status", key), v, "must be greater than or equal to 0"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate_object_meta_update(new, old) + validate(new)


def strategy() -> Strategy:
    return Strategy(lambda obj: None, validate, validate_update, tracks_generation=True)
