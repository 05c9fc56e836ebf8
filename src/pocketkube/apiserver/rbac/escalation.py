"""Escalation prevention (upstream's policybased RBAC storage): a user may write a Role or
ClusterRole only with rules they already hold (or the `escalate` verb on it), and a binding
only to a role whose rules they hold (or the `bind` verb on it). system:masters is exempt."""

from __future__ import annotations

import json
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.registry.rbac.index import PolicyIndex
from pocketkube.registry.rbac.rules import PolicyRule, compact_string, uncovered

GROUP = "rbac.authorization.k8s.io"
ROLE_KINDS = {"roles": "Role", "clusterroles": "ClusterRole"}
BINDING_KINDS = {"rolebindings": "RoleBinding", "clusterrolebindings": "ClusterRoleBinding"}
_FULL_AUTHORITY = [PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), urls=("*",))]

# can(verb, resource, namespace, name): whether the writer may do that (the authorizer)
Can = Callable[[str, str, str, str], bool]
# holds(namespace): every rule the writer has there
Holds = Callable[[str], tuple[PolicyRule, ...]]


def _rules(obj: dict | None) -> list[PolicyRule]:
    rules = (obj or {}).get("rules")
    return [PolicyRule.parse(r) for r in rules] if isinstance(rules, list) else []


def _forbidden(resource: str, name: str, why: str) -> errors.Forbidden:
    what = f"{resource}.{GROUP}"
    msg = f'{what} "{name}" is forbidden: {why}' if name else f"{what} is forbidden: {why}"
    return errors.Forbidden(msg, {"name": name, "group": GROUP, "kind": resource} if name else
                            {"group": GROUP, "kind": resource})


def _go_strings(values: tuple[str, ...]) -> str:
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def escalation_message(user: str, groups: tuple[str, ...], missing: list[PolicyRule]) -> str:
    return (f"user {json.dumps(user)} (groups={_go_strings(groups)}) is attempting to grant RBAC permissions "
            "not currently held:\n" + "\n".join(compact_string(r) for r in missing))


def check_write(resource: str, namespace: str, new: dict, old: dict | None, user: str, groups: tuple[str, ...],
                policy: PolicyIndex, can: Can, holds: Holds) -> None:
    """Raise Forbidden when writing `new` (over `old`, for an update) would escalate."""
    name = str((new.get("metadata") or {}).get("name") or "")
    if resource in ROLE_KINDS:
        if old is not None and _rules(new) == _rules(old) and new.get("aggregationRule") == old.get("aggregationRule"):
            return
        if can("escalate", resource, namespace, name):
            return
        owner = holds(namespace)
        missing = uncovered(owner, _rules(new))
        if missing:
            raise _forbidden(resource, name, escalation_message(user, groups, missing))
        if new.get("aggregationRule") is not None and uncovered(owner, _FULL_AUTHORITY):
            raise _forbidden(resource, name, "must have cluster-admin privileges to use the aggregationRule")
        return
    ref = new.get("roleRef") if isinstance(new.get("roleRef"), dict) else {}
    if old is not None and ref == old.get("roleRef"):
        return
    kind, ref_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
    ref_resource = {"Role": "roles", "ClusterRole": "clusterroles"}.get(kind)
    if ref_resource is None or str(ref.get("apiGroup") or GROUP) != GROUP:
        return  # validation refuses it
    if can("bind", ref_resource, namespace, ref_name):
        return
    rules = policy.role_rules(kind, namespace, ref_name)
    if rules is None:
        raise _forbidden(resource, name, f'{ref_resource}.{GROUP} "{ref_name}" not found')
    missing = uncovered(holds(namespace), list(rules))
    if missing:
        raise _forbidden(resource, name, escalation_message(user, groups, missing))
