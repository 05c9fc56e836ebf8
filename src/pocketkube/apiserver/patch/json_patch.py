"""JSON patch (RFC 6902, via the jsonpatch library) and JSON merge patch (RFC 7386).

Neither needs to know the kind: a JSON patch is a list of operations on paths, a merge patch a
partial document where null deletes. Kubernetes' limits and messages apply: at most
MAX_JSON_PATCH_OPERATIONS operations (413 beyond), malformed operations and failed `test`s a 422.
"""

from __future__ import annotations

import jsonpatch
import jsonpointer

from pocketkube.api.errors import BadRequest, RequestEntityTooLarge
from pocketkube.apiserver.patch.common import Json, PatchRejected, decode_json, go_unmarshal_error

MAX_JSON_PATCH_OPERATIONS = 10000


def apply_json_patch(original: dict, body: bytes, kind: str) -> Json:
    operations = decode_json(body)
    if operations is None:  # Go decodes `null` into an empty patch
        return original
    if not isinstance(operations, list):
        raise BadRequest(go_unmarshal_error(operations, "jsonpatch.Patch"))
    for op in operations:
        if not isinstance(op, dict):
            raise BadRequest(go_unmarshal_error(op, "jsonpatch.Operation"))
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


def apply_merge_patch(original: dict, body: bytes, kind: str) -> Json:
    patch = decode_json(body)
    if not isinstance(patch, dict):
        raise BadRequest(go_unmarshal_error(patch, "map[string]interface {}"))
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
