"""OpenAPI, as the apiserver uses it: the documents it serves and the field validation it performs.

Both read the same upstream schemas (apiserver/schemas.py) but answer different questions:

* `documents`: the `/openapi/v3` root and per-group-version documents that kubectl reads
  (patch operations, the `fieldValidation` parameter, component schemas for `kubectl explain`);
* `field_validation`: unknown and duplicate fields in a request body for `fieldValidation=Strict|Warn`,
  with the strict decoder's paths and texts.

The names callers use are re-exported here, so `from pocketkube.apiserver import openapi` keeps
working for both halves.
"""

from __future__ import annotations

from pocketkube.apiserver.openapi.documents import (
    openapi_v3_document,
    openapi_v3_document_bytes,
    openapi_v3_root,
)
from pocketkube.apiserver.openapi.field_validation import (
    MAX_STRICT_ERRORS,
    cannot_handle_message,
    field_errors,
    go_quote,
    strict_decoding_error,
    strict_error_message,
    unknown_fields,
    warning_texts,
)

__all__ = [
    "MAX_STRICT_ERRORS",
    "cannot_handle_message",
    "field_errors",
    "go_quote",
    "openapi_v3_document",
    "openapi_v3_document_bytes",
    "openapi_v3_root",
    "strict_decoding_error",
    "strict_error_message",
    "unknown_fields",
    "warning_texts",
]
