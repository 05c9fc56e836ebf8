"""apply_patch: one PATCH body, by Content-Type, onto the live object.

The four patch types Kubernetes accepts each have their module (json_patch.py, strategic.py);
this picks one by media type, works on a deep copy, and turns what Python could still raise
(a body nested too deep, a result that is not an object) into the Status Kubernetes answers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from pocketkube.api.errors import BadRequest, UnsupportedMediaType
from pocketkube.apiserver.patch.common import Json, json_type
from pocketkube.apiserver.patch.json_patch import apply_json_patch, apply_merge_patch
from pocketkube.apiserver.patch.strategic import apply_server_side_apply, apply_strategic_merge_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)


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
        raise BadRequest(f"error decoding patch: the patched document is a JSON {json_type(patched)}, "
                         "not an object")
    return patched


_APPLIERS: dict[str, Callable[[dict, bytes, str], Json]] = {
    JSON_PATCH: apply_json_patch,
    MERGE_PATCH: apply_merge_patch,
    STRATEGIC_MERGE_PATCH: apply_strategic_merge_patch,
    APPLY_PATCH: apply_server_side_apply,
}
