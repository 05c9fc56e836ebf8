"""certificates.k8s.io/v1 CertificateSigningRequest as protobuf (k8s.io/api certificates/v1
generated.proto), which `kubectl certificate approve|deny` sends to the approval subresource."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    OBJECT_META,
    Field,
    Kind,
    Message,
    _int,
    _message,
    _of,
    _string,
    _strings,
)

_CONDITION = Message(
    "CertificateSigningRequestCondition", _string(1, "type"), _string(6, "status"), _string(2, "reason"),
    _string(3, "message"), _of(Kind.TIME, 4, "lastUpdateTime"), _of(Kind.TIME, 5, "lastTransitionTime"))
# spec.extra (map<string, ExtraValue>) is left out: the server records the requester itself.
_SPEC = Message(
    "CertificateSigningRequestSpec", Field(1, "request", Kind.BASE64), _string(7, "signerName"),
    _int(8, "expirationSeconds", True), _strings(5, "usages"), _string(2, "username"), _string(3, "uid"),
    _strings(4, "groups"))
_STATUS = Message(
    "CertificateSigningRequestStatus", _message(1, "conditions", _CONDITION, repeated=True),
    Field(2, "certificate", Kind.BASE64))
CSR = Message("CertificateSigningRequest", _message(1, "metadata", OBJECT_META), _message(2, "spec", _SPEC),
              _message(3, "status", _STATUS))

SCHEMAS = {("certificates.k8s.io/v1", "CertificateSigningRequest"): CSR}
