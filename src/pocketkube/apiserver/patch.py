"""PATCH bodies: JSON patch, JSON merge patch, strategic merge patch, and a server-side-apply stand-in.

`apply_patch` turns (live object, patch body) into the patched object, or raises an ApiError with the
status Kubernetes answers for that mistake: bad input is always a 4xx, never another exception.

Strategic merge patch needs each field's patch strategy and merge key (the `patchStrategy` and
`patchMergeKey` tags of the Go types). We read them from the upstream schemas of the release we
serve (apiserver/schemas.py: `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`) instead of
retyping a table, walking the schema alongside the object. A kind without a schema still patches:
maps merge, lists are replaced.

Server-side apply (`application/apply-patch+yaml`) is approximated: the body is the caller's full
intent and is merged onto the live object like a strategic merge patch. Field ownership
(managedFields, conflicts, removal of fields a manager stopped applying) is not modelled.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Hashable
from typing import Any

import jsonpatch
import jsonpointer
import orjson
import yaml

from pocketkube.api.errors import ApiError, BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from pocketkube.apiserver.schemas import definitions

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)

MAX_JSON_PATCH_OPERATIONS = 10000

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ELEMENT_ORDER = "$setElementOrder/"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"

Json = Any
Schema = dict[str, Any] | None  # a resolved schema node; None when the type is unknown


class PatchRejected(ApiError):
    """422 for a well-formed patch that cannot be applied (failed `test`, missing path).

    Kubernetes answers these with its generic 422 Status, without the underlying error text; the
    text is kept in `cause` for logs.
    """
    code, reason = 422, "Invalid"

    def __init__(self, cause: str) -> None:
        super().__init__("the server rejected our request due to an error in our request", {})
        self.cause = cause


def apply_patch(content_type: str, original: dict, patch_body: bytes, kind: str) -> dict:
    """Apply a PATCH body of the given Content-Type to `original` (left untouched); return the result."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    apply = _APPLIERS.get(media_type)
    if apply is None:
        raise UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(PATCH_CONTENT_TYPES))
    try:
        patched = apply(copy.deepcopy(original), patch_body, kind)
    except RecursionError:
        raise BadRequest("error decoding patch: the patch is nested too deeply") from None
    if not isinstance(patched, dict):
        raise BadRequest(f"error decoding patch: the patched document is a JSON {_json_type(patched)}, "
                         "not an object")
    return patched


# --- decoding -------------------------------------------------------------------------------------

def _decode_json(body: bytes) -> Json:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"error decoding patch: {e}") from None


def _decode_object(body: bytes) -> dict:
    value = _decode_json(body)
    if not isinstance(value, dict):
        raise BadRequest(_go_unmarshal_error(value, "map[string]interface {}"))
    return value


class _JsonCompatibleYamlLoader(yaml.SafeLoader):
    """YAML read the way Kubernetes reads it: a JSON document in YAML syntax.

    Timestamps stay strings, and aliases are refused (an alias bomb would expand without bound).
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not supported",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


_JsonCompatibleYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _decode_yaml_object(body: bytes) -> dict:
    try:
        value = orjson.loads(body)  # kubectl sends JSON; YAML parsing is the fallback
    except orjson.JSONDecodeError:
        try:
            value = _as_json(yaml.load(body, Loader=_JsonCompatibleYamlLoader))
        except yaml.YAMLError as e:
            raise BadRequest(f"error decoding YAML: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"error decoding YAML: the body is a {_json_type(value)}, not an object")
    return value


def _as_json(value: Any) -> Json:
    """The JSON value of a YAML document; YAML-only values (binary, explicit timestamps) are refused."""
    if isinstance(value, dict):
        return {_as_json_key(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"error decoding YAML: {value} is not a JSON number")
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        raise BadRequest(f"error decoding YAML: {value} does not fit in 64 bits")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise BadRequest(f"error decoding YAML: a {type(value).__name__} value cannot be converted to JSON")


def _as_json_key(key: Any) -> str:
    # sigs.k8s.io/yaml turns scalar keys into their JSON text: 1 -> "1", true -> "true"
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return orjson.dumps(_as_json(key)).decode()
    raise BadRequest(f"error decoding YAML: a {type(key).__name__} cannot be a map key")


# --- JSON patch (RFC 6902) ------------------------------------------------------------------------

def _apply_json_patch(original: dict, body: bytes, kind: str) -> Json:
    operations = _decode_json(body)
    if operations is None:  # Go decodes `null` into an empty patch
        return original
    if not isinstance(operations, list):
        raise BadRequest(_go_unmarshal_error(operations, "jsonpatch.Patch"))
    for op in operations:
        if not isinstance(op, dict):
            raise BadRequest(_go_unmarshal_error(op, "jsonpatch.Operation"))
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise RequestEntityTooLarge(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}")
    try:
        return jsonpatch.JsonPatch(operations).apply(original, in_place=True)
    # The library reports malformed operations (missing members, wrong types) with plain Python
    # exceptions as well as its own; all of them are a patch that cannot be applied.
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
            KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise PatchRejected(str(e)) from None


# --- JSON merge patch (RFC 7386) ------------------------------------------------------------------

def _apply_merge_patch(original: dict, body: bytes, kind: str) -> Json:
    patch = _decode_json(body)
    if not isinstance(patch, dict):
        raise BadRequest(_go_unmarshal_error(patch, "map[string]interface {}"))
    return _merge_patch(original, patch)


def _merge_patch(target: Json, patch: Json) -> Json:
    if not isinstance(patch, dict):
        return patch
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# --- strategic merge patch ------------------------------------------------------------------------

def _apply_strategic_merge_patch(original: dict, body: bytes, kind: str) -> Json:
    return _merge_map(original, _decode_object(body), _root_schema(kind))


def _apply_server_side_apply(original: dict, body: bytes, kind: str) -> Json:
    return _merge_map(original, _decode_yaml_object(body), _root_schema(kind))


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
    raise BadRequest(f"unknown patch type: {_go_repr(directive)} in map: {_go_repr(patch)}")


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
        raise BadRequest(_bad_arg_type("[]interface {}", current))
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
            raise BadRequest(f"unknown patch type: {_go_repr(directive)} in map: {_go_repr(item)}")
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
                raise BadRequest(_bad_arg_type("[]interface {}", value))
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
        raise BadRequest(f"The order in patch list:\n{_go_repr(patch_list)}\n doesn't match "
                         f"{_SET_ELEMENT_ORDER} list:\n{_go_repr(order)}\n")


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
    kinds = {_json_type(item) for item in items}
    if "array" in kinds:
        raise PatchRejected("lists of lists are not supported")
    if len(kinds) > 1:
        raise BadRequest(f"list element types are not identical: {_go_repr(items)}")
    if not kinds:
        return None
    return "map" if kinds == {"object"} else "scalar"


def _merge_key_func(merge_key: str) -> Callable[[Json], Hashable]:
    def key_of(item: Json) -> Hashable:
        if not isinstance(item, dict):
            raise BadRequest(_bad_arg_type("map[string]interface {}", item))
        if merge_key not in item:
            raise BadRequest(f"map: {_go_repr(item)} does not contain declared merge key: {merge_key}")
        return _scalar_key(item[merge_key])
    return key_of


def _scalar_key(value: Json) -> Hashable:
    """A hashable identity for a JSON scalar: 1 and 1.0 are equal, true and 1 are not."""
    if isinstance(value, (dict, list)):
        raise BadRequest(f"cannot use {_go_repr(value)} as a merge key or primitive list element")
    return (_json_type(value), value)


# --- patch metadata from the upstream schemas -----------------------------------------------------

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


# --- error text -----------------------------------------------------------------------------------

def _json_type(value: Json) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "null"


def _go_unmarshal_error(value: Json, go_type: str) -> str:
    return f"json: cannot unmarshal {_json_type(value)} into Go value of type {go_type}"


_GO_TYPES = {"object": "map[string]interface {}", "array": "[]interface {}", "string": "string",
             "bool": "bool", "number": "float64", "null": "<nil>"}


def _bad_arg_type(expected: str, actual: Json) -> str:
    return f"expected a {expected}, but received a {_GO_TYPES[_json_type(actual)]}"


def _go_repr(value: Json) -> str:
    """A value as Go's %v prints decoded JSON, for messages that match Kubernetes'."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_repr(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_repr(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_APPLIERS: dict[str, Callable[[dict, bytes, str], Json]] = {
    JSON_PATCH: _apply_json_patch,
    MERGE_PATCH: _apply_merge_patch,
    STRATEGIC_MERGE_PATCH: _apply_strategic_merge_patch,
    APPLY_PATCH: _apply_server_side_apply,
}
