"""core/v1 ConfigMap, Secret and ServiceAccount as protobuf (k8s.io/api core/v1 generated.proto),
for `kubectl create configmap|secret|serviceaccount`. Secret.data and ConfigMap.binaryData are
map<string, bytes>: decoded to base64 strings, as their JSON form."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    _LOCAL_OBJECT_REFERENCE,
    OBJECT_META,
    Field,
    Kind,
    Message,
    _bool,
    _message,
    _string,
)

CONFIG_MAP = Message(
    "ConfigMap", _message(1, "metadata", OBJECT_META), _bool(4, "immutable", True),
    Field(2, "data", Kind.STRING_MAP), Field(3, "binaryData", Kind.BYTES_MAP))
SECRET = Message(
    "Secret", _message(1, "metadata", OBJECT_META), _bool(5, "immutable", True),
    Field(2, "data", Kind.BYTES_MAP), Field(4, "stringData", Kind.STRING_MAP), _string(3, "type"))
_OBJECT_REFERENCE = Message(
    "ObjectReference", _string(1, "kind"), _string(2, "namespace"), _string(3, "name"),
    _string(4, "uid"), _string(5, "apiVersion"), _string(6, "resourceVersion"), _string(7, "fieldPath"))
SERVICE_ACCOUNT = Message(
    "ServiceAccount", _message(1, "metadata", OBJECT_META),
    _message(2, "secrets", _OBJECT_REFERENCE, repeated=True),
    _message(3, "imagePullSecrets", _LOCAL_OBJECT_REFERENCE, repeated=True),
    _bool(4, "automountServiceAccountToken", True))

SCHEMAS: dict[tuple[str, str], Message] = {
    ("v1", "ConfigMap"): CONFIG_MAP,
    ("v1", "Secret"): SECRET,
    ("v1", "ServiceAccount"): SERVICE_ACCOUNT,
}
