"""Pod update validation: what a pod update may change (images, activeDeadlineSeconds,
added tolerations, a negative terminationGracePeriodSeconds set to 1), worded as upstream's
ValidatePodUpdate words the rest."""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid
from pocketkube.api.validation import is_int
from pocketkube.registry.core.pods.validation import validate
from pocketkube.registry.validation import validate_object_meta_update

UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate(new) + validate_object_meta_update(new, old)
    new_spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    errs.extend(_spec_update_errors(new_spec, old_spec, Path("spec")))
    return errs


def _container_update_errors(new: Any, old: Any, path: Path) -> tuple[list[FieldError], bool]:
    new = new if isinstance(new, list) else []
    old = old if isinstance(old, list) else []
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    return [], False


def _spec_update_errors(new: dict, old: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        container_errs, stop = _container_update_errors(new.get(key), old.get(key), path.child(key))
        errs.extend(container_errs)
        if stop:
            return errs
    errs.extend(_deadline_update_errors(new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds"),
                                        path.child("activeDeadlineSeconds")))
    errs.extend(_toleration_update_errors(new.get("tolerations"), old.get("tolerations"), path.child("tolerations")))
    munged = _munge_updatable(new, old)
    if munged != old:
        errs.append(forbidden(path, UPDATE_FORBIDDEN + "\n" + "\n".join(_diff(munged, old, "spec"))))
    return errs


def _deadline_update_errors(new: Any, old: Any, path: Path) -> list[FieldError]:
    if is_int(new):
        if new < 0 or new > 2**31 - 1:
            return [invalid(path, new, "must be between 0 and 2147483647, inclusive")]
        if is_int(old) and old < new:
            return [invalid(path, new, "must be less than or equal to previous value")]
        return []
    if new is None and old is not None:
        return [invalid(path, None, "must not update from a positive integer to nil value")]
    return []


def _toleration_update_errors(new: Any, old: Any, path: Path) -> list[FieldError]:
    """Existing tolerations may only change their tolerationSeconds."""
    new = [t for t in new if isinstance(t, dict)] if isinstance(new, list) else []
    old = [t for t in old if isinstance(t, dict)] if isinstance(old, list) else []
    for o in old:
        core = {k: v for k, v in o.items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in n.items() if k != "tolerationSeconds"} == core for n in new):
            return [forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return []


def _munge_updatable(new: dict, old: dict) -> dict:
    """A copy of the new spec with every field users may change reset to the old value."""
    munged = dict(new)
    for key in ("containers", "initContainers"):
        if isinstance(new.get(key), list) and isinstance(old.get(key), list):
            munged[key] = [_with_image(n, o) for n, o in zip(new[key], old[key])]
    for key in ("activeDeadlineSeconds", "tolerations"):
        _copy_key(munged, old, key)
    new_grace, old_grace = new.get("terminationGracePeriodSeconds"), old.get("terminationGracePeriodSeconds")
    if is_int(old_grace) and old_grace < 0 and new_grace == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    return munged


def _with_image(new: Any, old: Any) -> Any:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    out = dict(new)
    _copy_key(out, old, "image")
    return out


def _copy_key(target: dict, source: dict, key: str) -> None:
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)


def _diff(new: Any, old: Any, path: str) -> list[str]:
    """Changed leaves as `-`/`+` lines, standing in for upstream's struct diff."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: list[str] = []
        for key in sorted(set(new) | set(old), key=str):
            out.extend(_diff(new.get(key), old.get(key), f"{path}.{key}"))
        return out
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        out = []
        for i, (n, o) in enumerate(zip(new, old)):
            out.extend(_diff(n, o, f"{path}[{i}]"))
        return out
    if new == old:
        return []
    return [f"- {path}: {old!r}", f"+ {path}: {new!r}"]
