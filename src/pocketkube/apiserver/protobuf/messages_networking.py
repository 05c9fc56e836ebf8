"""networking.k8s.io/v1 messages (k8s.io/api networking/v1 generated.proto): what
`kubectl create ingress` sends, and IngressClass. Status messages are left out: a generator
command never sends one, and unknown field numbers are skipped."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    OBJECT_META,
    Message,
    _inline,
    _int,
    _message,
    _string,
    _strings,
)

_TYPED_LOCAL_REF = Message("TypedLocalObjectReference", _string(1, "apiGroup", True), _string(2, "kind", True),
                           _string(3, "name", True))
_BACKEND = Message(
    "IngressBackend",
    _message(4, "service", Message(
        "IngressServiceBackend", _string(1, "name", True),
        _message(2, "port", Message("ServiceBackendPort", _string(1, "name"), _int(2, "number"))))),
    _message(3, "resource", _TYPED_LOCAL_REF))
_HTTP_PATH = Message("HTTPIngressPath", _string(1, "path"), _string(3, "pathType", True),
                     _message(2, "backend", _BACKEND))
_RULE_VALUE = Message("IngressRuleValue", _message(1, "http", Message(
    "HTTPIngressRuleValue", _message(1, "paths", _HTTP_PATH, repeated=True))))
_SPEC = Message(
    "IngressSpec", _string(4, "ingressClassName", True), _message(1, "defaultBackend", _BACKEND),
    _message(2, "tls", Message("IngressTLS", _strings(1, "hosts"), _string(2, "secretName")), repeated=True),
    _message(3, "rules", Message("IngressRule", _string(1, "host"), _inline(2, _RULE_VALUE)), repeated=True))
INGRESS = Message("Ingress", _message(1, "metadata", OBJECT_META), _message(2, "spec", _SPEC))
_PARAMETERS = Message("IngressClassParametersReference", _string(1, "apiGroup", True), _string(2, "kind", True),
                      _string(3, "name", True), _string(4, "scope", True), _string(5, "namespace", True))
INGRESS_CLASS = Message("IngressClass", _message(1, "metadata", OBJECT_META), _message(2, "spec", Message(
    "IngressClassSpec", _string(1, "controller"), _message(2, "parameters", _PARAMETERS))))

SCHEMAS = {
    ("networking.k8s.io/v1", "Ingress"): INGRESS,
    ("networking.k8s.io/v1", "IngressClass"): INGRESS_CLASS,
}
