"""Roles, ClusterRoles, RoleBindings and ClusterRoleBindings as upstream's
pkg/apis/rbac/validation validates them: verbs required, resource rules need API groups and
resources, non-resource URLs only in cluster roles and never mixed with resources, a binding's
roleRef names an RBAC role and never changes, subjects are Users, Groups or ServiceAccounts.

Every validator tolerates wrong JSON types: a bad type is a FieldError, never an exception.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, invalid, not_supported, required
from pocketkube.api.selectors.labels import validate_label_selector
from pocketkube.api.validation import dns1123_subdomain_errors, wrong_type
from pocketkube.registry.rbac.index import IndexHooks, PolicyIndex
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def path_segment_errors(name: str) -> list[str]:
    """path.IsValidPathSegmentName: RBAC names only have to be usable in a URL path."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def _strings(value: Any, path: Path, errs: list[FieldError]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errs.append(wrong_type(path, value, "array of strings"))
        return []
    return value


def policy_rule_errors(rule: Any, namespaced: bool, path: Path) -> list[FieldError]:
    """ValidatePolicyRule."""
    if not isinstance(rule, dict):
        return [wrong_type(path, rule, "object")]
    errs: list[FieldError] = []
    verbs = _strings(rule.get("verbs"), path.child("verbs"), errs)
    groups = _strings(rule.get("apiGroups"), path.child("apiGroups"), errs)
    resources = _strings(rule.get("resources"), path.child("resources"), errs)
    names = _strings(rule.get("resourceNames"), path.child("resourceNames"), errs)
    urls = _strings(rule.get("nonResourceURLs"), path.child("nonResourceURLs"), errs)
    if errs:
        return errs
    if not verbs:
        errs.append(required(path.child("verbs"), "verbs must contain at least one value"))
    if urls:
        if namespaced:
            errs.append(invalid(path.child("nonResourceURLs"), urls,
                                "namespaced rules cannot apply to non-resource URLs"))
        if groups or resources or names:
            errs.append(invalid(path.child("nonResourceURLs"), urls,
                                "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not groups:
        errs.append(required(path.child("apiGroups"), "resource rules must supply at least one api group"))
    if not resources:
        errs.append(required(path.child("resources"), "resource rules must supply at least one resource"))
    return errs


def _rules_errors(obj: dict, namespaced: bool) -> list[FieldError]:
    rules = obj.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [wrong_type(Path("rules"), rules, "array")]
    return [e for i, r in enumerate(rules) for e in policy_rule_errors(r, namespaced, Path("rules").index(i))]


def _meta_errors(obj: dict, namespaced: bool) -> list[FieldError]:
    return validate_object_meta(obj, namespaced, path_segment_errors)


def validate_role(obj: dict) -> list[FieldError]:
    return _meta_errors(obj, True) + _rules_errors(obj, True)


def validate_cluster_role(obj: dict) -> list[FieldError]:
    errs = _meta_errors(obj, False) + _rules_errors(obj, False)
    agg = obj.get("aggregationRule")
    if agg is None:
        return errs
    path = Path("aggregationRule")
    if not isinstance(agg, dict):
        return errs + [wrong_type(path, agg, "object")]
    selectors = agg.get("clusterRoleSelectors")
    if selectors is not None and not isinstance(selectors, list):
        return errs + [wrong_type(path.child("clusterRoleSelectors"), selectors, "array")]
    if not selectors:
        errs.append(required(path.child("clusterRoleSelectors"),
                             "at least one clusterRoleSelector required if aggregationRule is non-nil"))
    for i, sel in enumerate(selectors or []):
        errs.extend(validate_label_selector(sel, path.child("clusterRoleSelectors").index(i)))
    return errs


def subject_errors(subject: Any, namespaced: bool, path: Path) -> list[FieldError]:
    """ValidateRoleBindingSubject."""
    if not isinstance(subject, dict):
        return [wrong_type(path, subject, "object")]
    errs: list[FieldError] = []
    kind, name, group, ns = (subject.get(k) if isinstance(subject.get(k), str) else ""
                             for k in ("kind", "name", "apiGroup", "namespace"))
    if not name:
        errs.append(required(path.child("name")))
    if kind == "ServiceAccount":
        if name:
            errs.extend(invalid(path.child("name"), name, m) for m in dns1123_subdomain_errors(name))
        if group:
            errs.append(not_supported(path.child("apiGroup"), group, [""]))
        if not namespaced and not ns:
            errs.append(required(path.child("namespace")))
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.append(not_supported(path.child("apiGroup"), group, [GROUP]))
    else:
        errs.append(not_supported(path.child("kind"), kind, list(SUBJECT_KINDS)))
    return errs


def _binding_errors(obj: dict, namespaced: bool) -> list[FieldError]:
    errs = _meta_errors(obj, namespaced)
    ref = obj.get("roleRef")
    path = Path("roleRef")
    if not isinstance(ref, dict):
        ref = {}
    group, kind, name = (ref.get(k) if isinstance(ref.get(k), str) else "" for k in ("apiGroup", "kind", "name"))
    if group != GROUP:
        errs.append(not_supported(path.child("apiGroup"), group, [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if kind not in kinds:
        errs.append(not_supported(path.child("kind"), kind, kinds))
    if not name:
        errs.append(required(path.child("name")))
    else:
        errs.extend(invalid(path.child("name"), name, m) for m in path_segment_errors(name))
    subjects = obj.get("subjects")
    if subjects is not None and not isinstance(subjects, list):
        return errs + [wrong_type(Path("subjects"), subjects, "array")]
    for i, s in enumerate(subjects or []):
        errs.extend(subject_errors(s, namespaced, Path("subjects").index(i)))
    return errs


def validate_role_binding(obj: dict) -> list[FieldError]:
    return _binding_errors(obj, True)


def validate_cluster_role_binding(obj: dict) -> list[FieldError]:
    return _binding_errors(obj, False)


def default_binding(obj: dict) -> None:
    """SetDefaults_RoleBinding/_Subject: roleRef and User/Group subjects are in the RBAC group."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    subjects = obj.get("subjects")
    for s in subjects if isinstance(subjects, list) else []:
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


def _role_ref_immutable(new: dict, old: dict) -> list[FieldError]:
    if new.get("roleRef") != old.get("roleRef"):
        return [invalid(Path("roleRef"), new.get("roleRef"), "cannot change roleRef")]
    return []


def _strategy(validate, hooks, default=lambda obj: None, immutable_ref: bool = False) -> Strategy:
    def validate_update(new: dict, old: dict) -> list[FieldError]:
        errs = validate(new) + validate_object_meta_update(new, old)
        return errs + (_role_ref_immutable(new, old) if immutable_ref else [])
    return Strategy(default=default, validate=validate, validate_update=validate_update, status_via_main=True,
                    hooks=hooks)


def strategies(index: PolicyIndex) -> dict[str, Strategy]:
    """The four RBAC kinds' strategies; their writes keep `index` (the authorizer's) current."""
    return {
        "Role": _strategy(validate_role, IndexHooks(index, "Role")),
        "ClusterRole": _strategy(validate_cluster_role, IndexHooks(index, "ClusterRole")),
        "RoleBinding": _strategy(validate_role_binding, IndexHooks(index, "RoleBinding"), default_binding,
                                 immutable_ref=True),
        "ClusterRoleBinding": _strategy(validate_cluster_role_binding, IndexHooks(index, "ClusterRoleBinding"),
                                        default_binding, immutable_ref=True),
    }
