"""ResourceQuota: validation (upstream ValidateResourceQuota). The quota arithmetic is in
api/quota.py, shared with the quota controller."""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, invalid
from pocketkube.api.quantity import parse
from pocketkube.api.quota import INTEGER, scope_errors
from pocketkube.api.validation import dns1123_subdomain_errors, qualified_name_errors, wrong_type
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import get_spec, validate_object_meta, validate_object_meta_update


def _hard_errors(hard: Any, path: Path) -> list[FieldError]:
    if hard is None:
        return []
    if not isinstance(hard, dict):
        return [wrong_type(path, hard, "object")]
    errs: list[FieldError] = []
    for name, value in hard.items():
        qpath = path.key(name)
        errs.extend(invalid(qpath, name, m) for m in qualified_name_errors(name))
        q = parse(value)
        if q is None:
            errs.append(invalid(qpath, value, "must be a valid resource quantity"))
        elif q < 0:
            errs.append(invalid(qpath, value, "must be greater than or equal to 0"))
        elif (name in INTEGER or name.startswith("count/")) and q.denominator != 1:
            errs.append(invalid(qpath, value, "must be an integer"))
    return errs


def validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec = get_spec(obj, errs)
    if spec is None:
        return errs
    errs.extend(_hard_errors((spec or {}).get("hard"), Path("spec", "hard")))
    scopes = (spec or {}).get("scopes")
    if scopes is not None and not (isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)):
        errs.append(wrong_type(Path("spec", "scopes"), scopes, "array"))
    elif scopes:
        hard = (spec or {}).get("hard") if isinstance((spec or {}).get("hard"), dict) else {}
        errs.extend(invalid(Path("spec", "scopes"), scopes, m) for m in scope_errors(scopes, hard))
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    errs.extend(_hard_errors(status.get("hard"), Path("status", "hard")))
    errs.extend(_hard_errors(status.get("used"), Path("status", "used")))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate_object_meta_update(new, old) + validate(new)


def strategy() -> Strategy:
    return Strategy(lambda obj: None, validate, validate_update)
