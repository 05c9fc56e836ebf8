"""Strategic merge patch, and the server-side-apply stand-in built on it.

Strategic merge patch needs each field's patch strategy and merge key (the `patchStrategy` and
`patchMergeKey` tags of the Go types). We read them from the upstream schemas of the release we
serve (apiserver/schemas.py: `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`) instead
of retyping a table, walking the schema alongside the object. A kind without a schema still
patches: maps merge, lists are replaced. The directives are upstream's: `$patch`
(replace/delete/merge), `$retainKeys`, `$setElementOrder/<list>` and
`$deleteFromPrimitiveList/<list>`, with the same list ordering rules.

Server-side apply (`application/apply-patch+yaml`) is approximated: the body is the caller's full
intent and is merged onto the live object like a strategic merge patch. Field ownership
(managedFields, conflicts, removal of fields a manager stopped applying) is not modelled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any

from pocketkube.api.errors import BadRequest
from pocketkube.apiserver.patch.common import (
    Json,
    PatchRejected,
    bad_arg_type,
    decode_object,
    decode_yaml_object,
    go_repr,
    json_type,
)
from pocketkube.apiserver.schemas import definitions

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ELEMENT_ORDER = "$setElementOrder/"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
Schema = dict[str, Any] | None  # a resolved schema node; None when the type is unknown


def apply_strategic_merge_patch(original: dict, body: bytes, kind: str) -> Json:
    return _merge_map(original, decode_object(body), _root_schema(kind))


def apply_server_side_apply(original: dict, body: bytes, kind: str) -> Json:
    return _merge_map(original, decode_yaml_object(body), _root_schema(kind))


def _merge_map(original: dict, patch: dict, schema: Schema) -> dict:
    """Merge `patch` into `original` (both owned by us and modified in place); return the result."""
    if _PATCH in patch:
        return _map_directive(patch, schema)
    _apply_retain_keys(original, patch)
    _apply_element_orders(original, patch, schema)
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
            _delete_from_primitive_list(original, key.removeprefix(_DELETE_FROM_PRIMITIVE_LIST), value)
        elif value is None:
            original.pop(key, None)
        else:
            original[key] = _merge_value(original.get(key), value, _field(schema, key))
    return original


def _merge_value(current: Json, patch: Json, field: Schema) -> Json:
    """The new value of a field; `current` is None when the field is absent."""
    strategies, merge_key = _patch_meta(field)
    if isinstance(patch, dict):
        if not isinstance(current, dict) or "replace" in strategies:
            current = {}
        return _merge_map(current, patch, _resolve(field))
    if isinstance(patch, list):
        if not isinstance(current, list):
            current = []
        if "merge" in strategies:
            return _merge_list(current, patch, _items(field), merge_key)
        return _fresh_list(patch, _items(field))
    return patch


def _map_directive(patch: dict, schema: Schema) -> dict:
    directive = patch.pop(_PATCH)
    if directive == "replace":
        return _merge_map({}, patch, schema)
    if directive == "delete":
        return {}
    patch[_PATCH] = directive
    raise BadRequest(f"unknown patch type: {go_repr(directive)} in map: {go_repr(patch)}")


def _fresh_list(patch: list, item_schema: Schema) -> list:
    """A replacing list, with nulls and directives stripped from its maps."""
    return [_merge_map({}, item, item_schema) if isinstance(item, dict) else item for item in patch]


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retained = patch.pop(_RETAIN_KEYS)
    if not isinstance(retained, list):
        raise BadRequest("invalid patch format of retainKeys")
    for key, value in patch.items():
        directive = key.startswith((_SET_ELEMENT_ORDER, _DELETE_FROM_PRIMITIVE_LIST))
        if value is not None and not directive and key not in retained:
            raise BadRequest("invalid patch format of retainKeys")
    for key in [k for k in original if k not in retained]:
        del original[key]


def _delete_from_primitive_list(original: dict, key: str, to_delete: Json) -> None:
    if not isinstance(to_delete, list):
        raise BadRequest("invalid patch format of primitive list")
    current = original.get(key)
    if current is None:
        return
    if not isinstance(current, list):
        raise BadRequest(bad_arg_type("[]interface {}", current))
    doomed = {_scalar_key(v) for v in to_delete}
    original[key] = [v for v in current if _scalar_key(v) not in doomed]


def _merge_list(current: list, patch: list, item_schema: Schema, merge_key: str | None) -> list:
    """Merge a list whose patch strategy is `merge`: maps by merge key, scalars as a set."""
    if not current and not patch:
        return current
    if _element_kind(current + patch) != "map":
        merged = _dedup(current + patch)
        return _normalize_order(merged, patch, current, _scalar_key)
    if not merge_key:
        raise BadRequest("cannot merge lists without merge key for type map")
    current, patch = _apply_list_directives(current, patch, merge_key, item_schema)
    key_of = _merge_key_func(merge_key)
    positions = _first_positions(current, key_of)
    merged = list(current)
    for item in patch:
        key = key_of(item)
        if key in positions:
            merged[positions[key]] = _merge_map(merged[positions[key]], item, item_schema)
        else:
            positions[key] = len(merged)
            merged.append(_merge_map({}, item, item_schema))
    return _normalize_order(merged, patch, current, key_of)


def _apply_list_directives(current: list, patch: list, merge_key: str,
                           item_schema: Schema) -> tuple[list, list]:
    """Handle `$patch` elements; return the (current, patch) lists still to merge."""
    key_of = _merge_key_func(merge_key)
    plain, replace = [], False
    for item in patch:
        if _PATCH not in item:
            plain.append(item)
            continue
        directive = item[_PATCH]
        if directive == "delete":
            doomed = key_of(item)
            current = [c for c in current if key_of(c) != doomed]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise BadRequest("merging lists cannot yet be specified in the patch")
        else:
            raise BadRequest(f"unknown patch type: {go_repr(directive)} in map: {go_repr(item)}")
    if replace:
        return [_merge_map({}, item, item_schema) for item in plain], []
    return current, plain


def _apply_element_orders(original: dict, patch: dict, schema: Schema) -> None:
    """Process every `$setElementOrder/<list>` together with its list, removing both from `patch`."""
    for directive in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(directive)
        key = directive.removeprefix(_SET_ELEMENT_ORDER)
        if not isinstance(order, list):
            raise BadRequest("invalid patch format of setElementOrder list")
        current, patch_list = original.get(key), patch.pop(key, None)
        for value in (current, patch_list):
            if value is not None and not isinstance(value, list):
                raise BadRequest(bad_arg_type("[]interface {}", value))
        if current is None and patch_list is None:
            continue
        field = _field(schema, key)
        _, merge_key = _patch_meta(field)
        maps = _element_kind((current or []) + (patch_list or [])) == "map"
        key_of = _merge_key_func(merge_key) if maps and merge_key else _scalar_key
        _check_order_matches(patch_list or [], order, key_of)
        merged = current if patch_list is None else _merge_value(current, patch_list, field)
        original[key] = _normalize_order(merged, order, current or [], key_of)


def _check_order_matches(patch_list: list, order: list, key_of: Callable[[Json], Hashable]) -> None:
    """The patch's items must appear in `$setElementOrder` in the same relative order."""
    if not patch_list or not order:
        return
    items = [item for item in patch_list if not (isinstance(item, dict) and _PATCH in item)]
    wanted = iter(key_of(o) for o in order)
    if not all(any(key_of(item) == w for w in wanted) for item in items):
        raise BadRequest(f"The order in patch list:\n{go_repr(patch_list)}\n doesn't match "
                         f"{_SET_ELEMENT_ORDER} list:\n{go_repr(order)}\n")


def _normalize_order(merged: list, patch_order: list, server_order: list,
                     key_of: Callable[[Json], Hashable]) -> list:
    """Order a merged list as Kubernetes does.

    Items named by the patch follow the patch's order; the others keep their live order; the two
    runs are interleaved so a live item stays before a patched item it preceded on the server.
    """
    patch_pos = _first_positions(patch_order, key_of)
    server_pos = _first_positions(server_order, key_of)
    patched = sorted((i for i in merged if key_of(i) in patch_pos), key=lambda i: patch_pos[key_of(i)])
    server_only = sorted((i for i in merged if key_of(i) not in patch_pos),
                         key=lambda i: server_pos.get(key_of(i), len(server_pos)))
    result: list = []
    s = p = 0
    while s < len(server_only) and p < len(patched):
        left, right = server_pos.get(key_of(server_only[s])), server_pos.get(key_of(patched[p]))
        if left is not None and right is not None and left < right:
            result.append(server_only[s])
            s += 1
        else:
            result.append(patched[p])
            p += 1
    return result + server_only[s:] + patched[p:]


def _first_positions(items: list, key_of: Callable[[Json], Hashable]) -> dict[Hashable, int]:
    positions: dict[Hashable, int] = {}
    for index, item in enumerate(items):
        positions.setdefault(key_of(item), index)
    return positions


def _dedup(items: list) -> list:
    seen: set[Hashable] = set()
    unique = []
    for item in items:
        key = _scalar_key(item)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _element_kind(items: list) -> str | None:
    """"map" or "scalar" for a list Kubernetes can merge; lists of lists and mixed lists are refused."""
    kinds = {json_type(item) for item in items}
    if "array" in kinds:
        raise PatchRejected("lists of lists are not supported")
    if len(kinds) > 1:
        raise BadRequest(f"list element types are not identical: {go_repr(items)}")
    if not kinds:
        return None
    return "map" if kinds == {"object"} else "scalar"


def _merge_key_func(merge_key: str) -> Callable[[Json], Hashable]:
    def key_of(item: Json) -> Hashable:
        if not isinstance(item, dict):
            raise BadRequest(bad_arg_type("map[string]interface {}", item))
        if merge_key not in item:
            raise BadRequest(f"map: {go_repr(item)} does not contain declared merge key: {merge_key}")
        return _scalar_key(item[merge_key])
    return key_of


def _scalar_key(value: Json) -> Hashable:
    """A hashable identity for a JSON scalar: 1 and 1.0 are equal, true and 1 are not."""
    if isinstance(value, (dict, list)):
        raise BadRequest(f"cannot use {go_repr(value)} as a merge key or primitive list element")
    return (json_type(value), value)


@functools.cache
def _definition_for_kind(kind: str) -> str | None:
    """The schema of a kind, preferring the core group (core/v1 Event over events.k8s.io)."""
    candidates = [(gvk.get("group") != "", name) for name, schema in definitions().items()
                  for gvk in schema.get("x-kubernetes-group-version-kind", ()) if gvk.get("kind") == kind]
    return min(candidates)[1] if candidates else None


def _root_schema(kind: str) -> Schema:
    name = _definition_for_kind(kind)
    return definitions()[name] if name else None


def _resolve(node: Schema) -> Schema:
    while node is not None and "$ref" in node:
        node = definitions().get(node["$ref"].rpartition("/")[2])
    return node


def _field(schema: Schema, key: str) -> Schema:
    """The (unresolved) schema of `key` inside an object or map schema; it carries the patch tags."""
    schema = _resolve(schema)
    if schema is None:
        return None
    properties = schema.get("properties") or {}
    if key in properties:
        return properties[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _items(field: Schema) -> Schema:
    resolved = _resolve(field)
    return resolved.get("items") if resolved is not None else None


def _patch_meta(field: Schema) -> tuple[frozenset[str], str | None]:
    if field is None:
        return frozenset(), None
    strategies = frozenset(s for s in field.get("x-kubernetes-patch-strategy", "").split(",") if s)
    return strategies, field.get("x-kubernetes-patch-merge-key")
