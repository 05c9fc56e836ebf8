"""Upstream's RBAC post-start hook: at start the bootstrap ClusterRoles and ClusterRoleBindings
are created if missing; existing ones that carry rbac.authorization.kubernetes.io/autoupdate
(anything but "false") get the rules, labels, annotations and subjects they are missing, and
nothing they have is taken away. Aggregated roles keep the rules their controller wrote."""

from __future__ import annotations

import logging

from pocketkube.api import errors
from pocketkube.apiserver.rbac import policy
from pocketkube.registry.rbac.rules import PolicyRule, uncovered
from pocketkube.registry.registry import Registry

log = logging.getLogger(__name__)
GROUP = policy.GROUP


def reconciled_role(existing: dict, expected: dict) -> dict | None:
    """The existing role with what it misses of `expected`; None when nothing changes (pure)."""
    if (existing["metadata"].get("annotations") or {}).get(policy.AUTOUPDATE) == "false":
        return None
    out = _merged_meta(existing, expected)
    if "aggregationRule" in expected:
        have = (existing.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        want = [s for s in expected["aggregationRule"]["clusterRoleSelectors"] if s not in have]
        if want:
            out["aggregationRule"] = {"clusterRoleSelectors": have + want}
    else:
        have_rules = [PolicyRule.parse(r) for r in existing.get("rules") or []]
        missing = uncovered(have_rules, [PolicyRule.parse(r) for r in expected["rules"]])
        if missing:
            out["rules"] = list(existing.get("rules") or []) + [r.to_dict() for r in missing]
    return out if out != existing else None


def reconciled_binding(existing: dict, expected: dict) -> dict | None:
    if (existing["metadata"].get("annotations") or {}).get(policy.AUTOUPDATE) == "false":
        return None
    out = _merged_meta(existing, expected)
    subjects = list(existing.get("subjects") or [])
    out["subjects"] = subjects + [s for s in expected["subjects"] if s not in subjects]
    return out if out != existing else None


def _merged_meta(existing: dict, expected: dict) -> dict:
    out = {**existing, "metadata": dict(existing["metadata"])}
    for key in ("labels", "annotations"):
        out["metadata"][key] = {**(expected["metadata"].get(key) or {}), **(existing["metadata"].get(key) or {})}
    return out


async def reconcile(registry: Registry) -> None:
    """Create or complete the bootstrap policy; a failure is logged, the server still starts."""
    roles = registry.store(GROUP, "clusterroles")
    bindings = registry.store(GROUP, "clusterrolebindings")
    for store, objects, merge in ((roles, policy.cluster_roles(), reconciled_role),
                                  (bindings, policy.cluster_role_bindings(), reconciled_binding)):
        for obj in objects:
            name = obj["metadata"]["name"]
            try:
                existing = store.try_get("", name)
                if existing is None:
                    await store.create(obj)
                    continue
                if store is bindings and existing.get("roleRef") != obj["roleRef"]:
                    if (existing["metadata"].get("annotations") or {}).get(policy.AUTOUPDATE) != "false":
                        await store.delete("", name)  # roleRef is immutable: recreate, as upstream
                        await store.create(obj)
                    continue
                updated = merge(existing, obj)
                if updated is not None:
                    await store.update("", name, updated)
            except errors.ApiError as e:
                log.warning("RBAC bootstrap policy: %s %s: %s", store.res.kind, name, e.message)
