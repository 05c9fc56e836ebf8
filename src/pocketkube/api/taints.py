"""Taints and tolerations: the well-known node taints and the matching rules (pure).

Both the scheduler (TaintToleration filter) and the node lifecycle controller (which taints a
node's state calls for, and how long a pod tolerates a NoExecute taint) decide with these, so
the rules live in the vocabulary layer rather than in either component
(mirrors k8s.io/api/core/v1 toleration.go and the taint keys of well_known_taints.go).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "NOT_READY_TAINT",
    "UNREACHABLE_TAINT",
    "UNSCHEDULABLE_TAINT",
    "find_untolerated_taint",
    "node_ready_status",
    "tolerates",
]

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates(toleration: dict, taint: dict) -> bool:
    """ToleratesTaint: effect and key must match (empty means any); Exists ignores the value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(toleration.get("key")) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def find_untolerated_taint(taints: Iterable[dict], tolerations: list[dict], effects: tuple[str, ...]) -> dict | None:
    """The first taint with one of `effects` that no toleration tolerates, or None."""
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def node_ready_status(node: dict) -> str:
    """The status of the node's Ready condition: "True", "False", or "Unknown" (also when absent)."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"
