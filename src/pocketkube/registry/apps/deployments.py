"""Deployment defaulting and validation (apps/v1), worded as pkg/apis/apps/validation words them."""

from __future__ import annotations

import re
from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, not_supported, required
from pocketkube.api.validation import is_int, regex_error, wrong_type
from pocketkube.registry.apps.replicasets import (
    default_strategy,
    default_template,
    validate_workload,
    validate_workload_update,
)
from pocketkube.registry.core.pods.typed import get_dict, get_int, nonnegative
from pocketkube.registry.validation import get_str

STRATEGIES = ["Recreate", "RollingUpdate"]
_PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"


def default(obj: dict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_strategy(spec, "strategy", {"maxUnavailable": "25%", "maxSurge": "25%"})
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_template(spec)


def validate(obj: dict) -> list[FieldError]:
    errs = validate_workload(obj, "deployment")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs
    path = Path("spec")
    errs.extend(_strategy_errors(get_dict(spec, "strategy", path, errs), path.child("strategy")))
    history = get_int(spec, "revisionHistoryLimit", path, errs)
    errs.extend(nonnegative(history, path.child("revisionHistoryLimit")))
    deadline = get_int(spec, "progressDeadlineSeconds", path, errs)
    if deadline is not None:
        errs.extend(nonnegative(deadline, path.child("progressDeadlineSeconds")))
        min_ready = spec.get("minReadySeconds") if is_int(spec.get("minReadySeconds")) else 0
        if deadline <= min_ready:
            errs.append(invalid(path.child("progressDeadlineSeconds"), deadline, "must be greater than minReadySeconds"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate(new) + validate_workload_update(new, old)


def _strategy_errors(strategy: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    kind = get_str(strategy, "type", path, errs)
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(forbidden(path.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            errs.append(required(path.child("rollingUpdate"), "this should be defaulted and never be nil"))
        elif not isinstance(rolling, dict):
            errs.append(wrong_type(path.child("rollingUpdate"), rolling, "object"))
        else:
            errs.extend(_rolling_update_errors(rolling, path.child("rollingUpdate")))
    elif kind or strategy.get("type") is None:
        errs.append(not_supported(path.child("type"), kind, STRATEGIES))
    return errs


def _rolling_update_errors(rolling: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    max_unavailable, max_surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs.extend(int_or_percent_errors(max_unavailable, path.child("maxUnavailable")))
    errs.extend(int_or_percent_errors(max_surge, path.child("maxSurge")))
    if int_or_percent_value(max_unavailable) == 0 and int_or_percent_value(max_surge) == 0:
        errs.append(invalid(path.child("maxUnavailable"), max_unavailable, "may not be 0 when `maxSurge` is 0"))
    if isinstance(max_unavailable, str) and (int_or_percent_value(max_unavailable) or 0) > 100:
        errs.append(invalid(path.child("maxUnavailable"), max_unavailable, "must not be greater than 100%"))
    return errs


def int_or_percent_errors(value: Any, path: Path) -> list[FieldError]:
    if value is None:
        return []
    if is_int(value):
        return nonnegative(value, path)
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            return [invalid(path, value, regex_error(_PERCENT_MSG, "[0-9]+%", "1%", "93%"))]
        return []
    return [invalid(path, value, "must be an integer or percentage (e.g '5%')")]


def int_or_percent_value(value: Any) -> int | None:
    if is_int(value):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+%", value):
        return int(value[:-1])
    return None
