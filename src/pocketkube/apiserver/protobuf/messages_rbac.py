"""rbac.authorization.k8s.io/v1 messages (k8s.io/api rbac/v1 generated.proto), as
`kubectl create role|clusterrole|rolebinding|clusterrolebinding` send them."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    _LABEL_SELECTOR,
    OBJECT_META,
    Message,
    _message,
    _string,
    _strings,
)

_POLICY_RULE = Message(
    "PolicyRule", _strings(1, "verbs"), _strings(2, "apiGroups"), _strings(3, "resources"),
    _strings(4, "resourceNames"), _strings(5, "nonResourceURLs"))
_SUBJECT = Message("Subject", _string(1, "kind", True), _string(2, "apiGroup"), _string(3, "name", True),
                   _string(4, "namespace"))
_ROLE_REF = Message("RoleRef", _string(1, "apiGroup", True), _string(2, "kind", True), _string(3, "name", True))
_AGGREGATION_RULE = Message("AggregationRule", _message(1, "clusterRoleSelectors", _LABEL_SELECTOR, repeated=True))

ROLE = Message("Role", _message(1, "metadata", OBJECT_META), _message(2, "rules", _POLICY_RULE, repeated=True))
CLUSTER_ROLE = Message("ClusterRole", _message(1, "metadata", OBJECT_META),
                       _message(2, "rules", _POLICY_RULE, repeated=True),
                       _message(3, "aggregationRule", _AGGREGATION_RULE))
_BINDING_FIELDS = (_message(1, "metadata", OBJECT_META), _message(2, "subjects", _SUBJECT, repeated=True),
                   _message(3, "roleRef", _ROLE_REF))
ROLE_BINDING = Message("RoleBinding", *_BINDING_FIELDS)
CLUSTER_ROLE_BINDING = Message("ClusterRoleBinding", *_BINDING_FIELDS)

SCHEMAS = {
    ("rbac.authorization.k8s.io/v1", "Role"): ROLE,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): CLUSTER_ROLE,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ROLE_BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): CLUSTER_ROLE_BINDING,
}
