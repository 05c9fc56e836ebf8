"""authentication.k8s.io/v1 messages kubectl sends as protobuf (`kubectl create token`), with
the field numbers of k8s.io/api's authentication/v1 generated.proto."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    OBJECT_META,
    Field,
    Kind,
    Message,
    _int,
    _message,
    _string,
    _strings,
)

_BOUND_OBJECT_REFERENCE = Message(
    "BoundObjectReference", _string(1, "kind"), _string(2, "apiVersion"), _string(3, "name"),
    _string(4, "uid"))
# Go: Audiences has no omitempty, ExpirationSeconds and BoundObjectRef are pointers.
_TOKEN_REQUEST_SPEC = Message(
    "TokenRequestSpec", Field(1, "audiences", Kind.STRING, repeated=True),
    _int(4, "expirationSeconds", True), _message(3, "boundObjectRef", _BOUND_OBJECT_REFERENCE))
_TOKEN_REQUEST_STATUS = Message(
    "TokenRequestStatus", _string(1, "token", True), Field(2, "expirationTimestamp", Kind.TIME))
TOKEN_REQUEST = Message(
    "TokenRequest", _message(1, "metadata", OBJECT_META), _message(2, "spec", _TOKEN_REQUEST_SPEC),
    _message(3, "status", _TOKEN_REQUEST_STATUS))
TOKEN_REVIEW = Message(
    "TokenReview", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message("TokenReviewSpec", _string(1, "token"), _strings(2, "audiences"))))

SCHEMAS = {
    ("authentication.k8s.io/v1", "TokenRequest"): TOKEN_REQUEST,
    ("authentication.k8s.io/v1", "TokenReview"): TOKEN_REVIEW,
}
