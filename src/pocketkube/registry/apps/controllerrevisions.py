"""ControllerRevision validation (apps/v1): data is mandatory and never changes. The revision number
may change, as upstream: a rollback renumbers an old revision to the newest (history.UpdateControllerRevision)."""

from __future__ import annotations

from pocketkube.api.fields import FieldError, Path, invalid, required
from pocketkube.api.validation import dns1123_subdomain_errors
from pocketkube.registry.core.pods.typed import get_int, nonnegative
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import IMMUTABLE, validate_object_meta, validate_object_meta_update


def validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    if obj.get("data") is None:
        errs.append(required(Path("data"), "data is mandatory"))
    errs.extend(nonnegative(get_int(obj, "revision", Path(), errs), Path("revision")))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(new, old) + validate(new)
    if new.get("data") != old.get("data"):
        errs.append(invalid(Path("data"), new.get("data"), IMMUTABLE))
    return errs


def strategy() -> Strategy:
    return Strategy(lambda obj: None, validate, validate_update, status_via_main=True)
