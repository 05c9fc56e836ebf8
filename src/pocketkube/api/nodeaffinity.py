"""Node selection terms: nodeSelector and required node affinity against a Node (pure).

The scheduler (NodeAffinity filter) and the DaemonSet controller (which nodes should run a
daemon pod) decide with the same rules, so they live in the vocabulary layer
(mirrors k8s.io/component-helpers/scheduling/corev1/nodeaffinity).
"""

from __future__ import annotations

__all__ = ["matches_node_selector_term", "pod_matches_node_affinity"]


def _requirement_matches(req: dict, source: dict) -> bool:
    key, operator, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    present, value = key in source, source.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            left, right = int(value), int(values[0])
        except (TypeError, ValueError):
            return False
        return left > right if operator == "Gt" else left < right
    return False


def matches_node_selector_term(term: dict, node: dict) -> bool:
    """A nodeSelectorTerm: every matchExpressions (labels) and matchFields (metadata.name) requirement holds."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False  # an empty term matches nothing
    return (all(_requirement_matches(r, labels) for r in exprs)
            and all(_requirement_matches(r, fields) for r in field_exprs))


def pod_matches_node_affinity(pod_spec: dict, node: dict) -> bool:
    """GetRequiredNodeAffinity(pod).Match(node): the nodeSelector and any required term."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(matches_node_selector_term(t, node) for t in required.get("nodeSelectorTerms") or [])
