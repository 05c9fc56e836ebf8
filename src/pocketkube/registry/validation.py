"""ObjectMeta validation shared by every kind: name/namespace rules, annotations, owners, finalizers.

Messages match apimachinery's `pkg/api/validation` word for word, because kubectl users and e2e
tests compare them. Every validator tolerates wrong JSON types: a bad type becomes a FieldError on
that field, never an exception (user input must not 500).

The name and label formats themselves (DNS-1123, qualified names, label values, ...) are
vocabulary shared with label selectors, so they live in `pocketkube.api.validation`; kind modules
import them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, required, too_long
from pocketkube.api.validation import (
    dns1123_label_errors,
    is_int,
    qualified_name_errors,
    validate_labels,
    wrong_type,
)

__all__ = [
    # ObjectMeta validation (this module)
    "IMMUTABLE", "TOTAL_ANNOTATION_SIZE_LIMIT", "get_spec", "get_str", "validate_annotations", "validate_finalizers",
    "validate_object_meta", "validate_object_meta_update", "validate_owner_references",
]

IMMUTABLE = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

_STANDARD_FINALIZERS = ("orphan", "foregroundDeletion")


def validate_annotations(annotations: Any, path: Path) -> list[FieldError]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [wrong_type(path, annotations, "object")]
    errs: list[FieldError] = []
    total = 0
    for key, value in annotations.items():
        errs.extend(invalid(path, key, m) for m in qualified_name_errors(str(key).lower()))
        if not isinstance(value, str):
            errs.append(wrong_type(path.key(str(key)), value, "string"))
            continue
        total += len(str(key).encode()) + len(value.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _mask_trailing_dash(name: str) -> str:
    """generateName prefixes may end in '-'. Upstream drops the last two characters and appends
    'a' (the character before the dash goes unchecked); we keep that quirk for identical results."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_owner_references(refs: Any, path: Path) -> list[FieldError]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [wrong_type(path, refs, "array")]
    errs: list[FieldError] = []
    controller = ""
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            errs.append(wrong_type(path.index(i), ref, "object"))
            continue
        errs.extend(_owner_reference_errors(ref, path))
        if ref.get("controller") is True:
            current = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller:
                errs.append(invalid(path, refs, "Only one reference can have Controller set to true. "
                                                f'Found "true" in references for {controller} and {current}'))
            else:
                controller = current
    return errs


def _owner_reference_errors(ref: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, expected in (("apiVersion", str), ("kind", str), ("name", str), ("uid", str),
                          ("controller", bool), ("blockOwnerDeletion", bool)):
        if key in ref and ref[key] is not None and not isinstance(ref[key], expected):
            errs.append(wrong_type(path.child(key), ref[key], "string" if expected is str else "boolean"))
    if errs:
        return errs
    api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
    # schema.ParseGroupVersion: "v1" or "group/version"; anything else has no version.
    parts = api_version.split("/")
    version = parts[-1] if len(parts) <= 2 else ""
    if not version:
        errs.append(invalid(path.child("apiVersion"), api_version, "version must not be empty"))
    if not kind:
        errs.append(invalid(path.child("kind"), kind, "kind must not be empty"))
    if not ref.get("name"):
        errs.append(invalid(path.child("name"), ref.get("name") or "", "name must not be empty"))
    if not ref.get("uid"):
        errs.append(invalid(path.child("uid"), ref.get("uid") or "", "uid must not be empty"))
    return errs


def validate_finalizers(finalizers: Any, path: Path) -> list[FieldError]:
    if finalizers is None:
        return []
    if not isinstance(finalizers, list):
        return [wrong_type(path, finalizers, "array")]
    errs: list[FieldError] = []
    for i, finalizer in enumerate(finalizers):
        if not isinstance(finalizer, str):
            errs.append(wrong_type(path.index(i), finalizer, "string"))
            continue
        errs.extend(invalid(path, finalizer, m) for m in qualified_name_errors(finalizer))
    if all(f in finalizers for f in _STANDARD_FINALIZERS):
        errs.append(invalid(path, finalizers, "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


def get_str(parent: dict, key: str, path: Path, errs: list[FieldError]) -> str:
    """parent[key] as a string ("" when absent); a wrong type is recorded in errs."""
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        errs.append(wrong_type(path.child(key), value, "string"))
        return ""
    return value


def get_spec(obj: dict, errs: list[FieldError]) -> dict | None:
    """obj.spec ({} when absent); None, with the error recorded, when it is not an object."""
    spec = obj.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        errs.append(wrong_type(Path("spec"), spec, "object"))
        return None
    return spec


def validate_object_meta(obj: dict, namespaced: bool,
                         name_errors: Callable[[str], list[str]]) -> list[FieldError]:
    """ValidateObjectMeta: name/generateName, namespace, generation, labels, annotations, owners, finalizers."""
    path = Path("metadata")
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        return [wrong_type(path, meta, "object")]
    errs: list[FieldError] = []
    generate_name = get_str(meta, "generateName", path, errs)
    name = get_str(meta, "name", path, errs)
    if generate_name:
        errs.extend(invalid(path.child("generateName"), generate_name, m)
                    for m in name_errors(_mask_trailing_dash(generate_name)))
    if name:
        errs.extend(invalid(path.child("name"), name, m) for m in name_errors(name))
    elif not generate_name and not _has_wrong_type(meta, "name"):
        errs.append(required(path.child("name"), "name or generateName is required"))
    namespace = get_str(meta, "namespace", path, errs)
    if namespaced:
        if not namespace and not _has_wrong_type(meta, "namespace"):
            errs.append(required(path.child("namespace")))
        elif namespace:
            errs.extend(invalid(path.child("namespace"), namespace, m) for m in dns1123_label_errors(namespace))
    elif namespace:
        errs.append(forbidden(path.child("namespace"), "not allowed on this type"))
    errs.extend(_generation_errors(meta, path))
    errs.extend(validate_labels(meta.get("labels"), path.child("labels")))
    errs.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    errs.extend(validate_owner_references(meta.get("ownerReferences"), path.child("ownerReferences")))
    errs.extend(validate_finalizers(meta.get("finalizers"), path.child("finalizers")))
    return errs


def _has_wrong_type(meta: dict, key: str) -> bool:
    return meta.get(key) is not None and not isinstance(meta.get(key), str)


def _generation_errors(meta: dict, path: Path) -> list[FieldError]:
    generation = meta.get("generation")
    if generation is None:
        return []
    if not is_int(generation):
        return [wrong_type(path.child("generation"), generation, "integer")]
    if generation < 0:
        return [invalid(path.child("generation"), generation, "must be greater than or equal to 0")]
    return []


def validate_object_meta_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateObjectMetaUpdate's immutability rules (labels etc. are checked by validate_object_meta)."""
    path = Path("metadata")
    new_meta = new.get("metadata") if isinstance(new, dict) else None
    old_meta = old.get("metadata") if isinstance(old, dict) else None
    if not isinstance(new_meta, dict):
        return [] if new_meta is None else [wrong_type(path, new_meta, "object")]
    if not isinstance(old_meta, dict):
        old_meta = {}
    errs: list[FieldError] = []
    if old_meta.get("deletionTimestamp"):
        errs.extend(_no_new_finalizers(new_meta.get("finalizers"), old_meta.get("finalizers"), path.child("finalizers")))
    new_gen, old_gen = new_meta.get("generation"), old_meta.get("generation")
    if is_int(new_gen) and is_int(old_gen) and new_gen < old_gen:
        errs.append(invalid(path.child("generation"), new_gen, "must not be decremented"))
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if (new_meta.get(key) or None) != (old_meta.get(key) or None):
            errs.append(invalid(path.child(key), new_meta.get(key) or "", IMMUTABLE))
    return errs


def _no_new_finalizers(new: Any, old: Any, path: Path) -> list[FieldError]:
    new_set = set(f for f in new if isinstance(f, str)) if isinstance(new, list) else set()
    old_set = set(f for f in old if isinstance(f, str)) if isinstance(old, list) else set()
    extra = sorted(new_set - old_set)
    if extra:
        return [forbidden(path, f"no new finalizers can be added if the object is being deleted, found new "
                                f"finalizers {_go_string_slice(extra)}")]
    return []


def _go_string_slice(items: list[str]) -> str:
    """Go's %#v of a []string, which upstream uses in this message."""
    return "[]string{" + ", ".join(f'"{i}"' for i in items) + "}"
