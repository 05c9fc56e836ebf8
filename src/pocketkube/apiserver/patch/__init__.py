"""PATCH bodies: JSON patch, JSON merge patch, strategic merge patch, and a server-side-apply stand-in.

`apply_patch` turns (live object, patch body) into the patched object, or raises an ApiError with the
status Kubernetes answers for that mistake: bad input is always a 4xx, never another exception.

* dispatch.py: apply_patch, choosing by Content-Type;
* json_patch.py: RFC 6902 JSON patch and RFC 7386 merge patch (kind-agnostic);
* strategic.py: strategic merge patch and apply, driven by the upstream schemas' patch tags;
* common.py: body decoding, PatchRejected and Go-worded error texts they share.
"""

from __future__ import annotations

from pocketkube.apiserver.patch.common import PatchRejected
from pocketkube.apiserver.patch.dispatch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_CONTENT_TYPES,
    STRATEGIC_MERGE_PATCH,
    apply_patch,
)
from pocketkube.apiserver.patch.json_patch import MAX_JSON_PATCH_OPERATIONS

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MAX_JSON_PATCH_OPERATIONS",
    "MERGE_PATCH",
    "PATCH_CONTENT_TYPES",
    "STRATEGIC_MERGE_PATCH",
    "PatchRejected",
    "apply_patch",
]
