"""Decode the Kubernetes protobuf request bodies that kubectl's generator commands POST.

`kubectl create namespace|deployment|service ...` send `application/vnd.kubernetes.protobuf`
with no JSON fallback. The body is the magic `k8s\\x00` followed by a `runtime.Unknown`
envelope whose `raw` field is the object, encoded per k8s.io/api's generated.proto.

We turn that into the exact dict the JSON API would have received, so the rest of the server
only ever sees JSON-shaped objects. The output follows Go's encoding/json rules for the Go types
behind the proto: a zero scalar is dropped unless its Go field is a pointer or lacks
`omitempty` (`keep_zero`); a nested message that is present on the wire is always emitted,
since gogo writes non-pointer structs unconditionally and JSON never omits them either.

Only decoding is implemented: responses are always JSON.

Modules: wire.py (the wire format), messages.py (the schemas), decoding.py (schemas applied to
the wire, and the request-body entry point).
"""

from __future__ import annotations

from pocketkube.apiserver.protobuf.decoding import decode_body, decode_message
from pocketkube.apiserver.protobuf.messages import SCHEMAS
from pocketkube.apiserver.protobuf.wire import MAGIC, iter_fields

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

__all__ = ["MAGIC", "MEDIA_TYPE", "SCHEMAS", "decode_body", "decode_message", "iter_fields"]
