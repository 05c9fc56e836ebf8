"""RBAC PolicyRules as data, and the pure decisions over them: whether a rule allows a request
(upstream's rbac.RuleAllows: verbs × API groups × resources × resource names, or non-resource
URLs), whether a set of rules covers another (escalation prevention), and the compact wording
of a rule that escalation errors use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Request(Protocol):
    """What a rule is matched against (apiserver.authz.Attributes has these)."""
    verb: str
    api_group: str
    resource: str
    subresource: str
    name: str
    path: str

    @property
    def is_resource_request(self) -> bool: ...


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


@dataclass(frozen=True)
class PolicyRule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    @classmethod
    def parse(cls, rule: Any) -> PolicyRule:
        r = rule if isinstance(rule, dict) else {}
        return cls(_strs(r.get("verbs")), _strs(r.get("apiGroups")), _strs(r.get("resources")),
                   _strs(r.get("resourceNames")), _strs(r.get("nonResourceURLs")))

    def to_dict(self) -> dict:
        out: dict[str, list[str]] = {"verbs": list(self.verbs)}
        for key, values in (("apiGroups", self.api_groups), ("resources", self.resources),
                            ("resourceNames", self.resource_names), ("nonResourceURLs", self.urls)):
            if values:
                out[key] = list(values)
        return out

    def allows(self, a: Request) -> bool:
        if "*" not in self.verbs and a.verb not in self.verbs:
            return False
        if not a.is_resource_request:
            return any(url_matches(u, a.path) for u in self.urls)
        if "*" not in self.api_groups and a.api_group not in self.api_groups:
            return False
        if not resource_matches(self.resources, a.resource, a.subresource):
            return False
        return not self.resource_names or a.name in self.resource_names


def url_matches(rule_url: str, path: str) -> bool:
    return rule_url == "*" or rule_url == path or (rule_url.endswith("*") and path.startswith(rule_url[:-1]))


def resource_matches(rule_resources: tuple[str, ...], resource: str, subresource: str) -> bool:
    """"*" matches anything, "pods/log" that subresource, "*/scale" the scale of any resource."""
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule_resources:
        if r == "*" or r == combined:
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def allowed_by(rules: tuple[PolicyRule, ...] | list[PolicyRule], a: Request) -> bool:
    return any(r.allows(a) for r in rules)


# ---- coverage (escalation prevention) ----

def breakdown(rule: PolicyRule) -> list[PolicyRule]:
    """A rule as rules of one verb, one group, one resource and at most one name each."""
    out: list[PolicyRule] = []
    if rule.urls:
        return [PolicyRule(verbs=(v,), urls=(u,)) for v in rule.verbs for u in rule.urls]
    for g in rule.api_groups:
        for r in rule.resources:
            for v in rule.verbs:
                if rule.resource_names:
                    out.extend(PolicyRule((v,), (g,), (r,), (n,)) for n in rule.resource_names)
                else:
                    out.append(PolicyRule((v,), (g,), (r,)))
    return out


def _covers_resource(owner: tuple[str, ...], resource: str) -> bool:
    if "*" in owner or resource in owner:
        return True
    # an owner's "*/scale" covers "deployments/scale"
    if "/" in resource and not resource.startswith("*/"):
        return "*/" + resource.split("/", 1)[1] in owner
    return False


def rule_covers(owner: PolicyRule, sub: PolicyRule) -> bool:
    """Whether `owner` grants everything the atomic rule `sub` does (upstream ruleCovers)."""
    if "*" not in owner.verbs and not set(sub.verbs) <= set(owner.verbs):
        return False
    if sub.urls:
        return all(any(url_covers(o, u) for o in owner.urls) for u in sub.urls)
    if owner.urls and not owner.api_groups:
        return False
    if "*" not in owner.api_groups and not set(sub.api_groups) <= set(owner.api_groups):
        return False
    if not all(_covers_resource(owner.resources, r) for r in sub.resources):
        return False
    if owner.resource_names:
        return bool(sub.resource_names) and set(sub.resource_names) <= set(owner.resource_names)
    return True


def url_covers(owner: str, url: str) -> bool:
    if owner == "*" or owner == url:
        return True
    return owner.endswith("*") and url.startswith(owner[:-1])


def uncovered(owner: list[PolicyRule] | tuple[PolicyRule, ...], requested: list[PolicyRule]) -> list[PolicyRule]:
    """The parts of `requested` that no rule of `owner` grants, compacted and sorted as
    upstream's ConfirmNoEscalation lists them."""
    missing: list[PolicyRule] = []
    for rule in requested:
        for sub in breakdown(rule):
            if not any(rule_covers(o, sub) for o in owner) and sub not in missing:
                missing.append(sub)
    return sorted(compact(missing), key=compact_string)


def compact(rules: list[PolicyRule]) -> list[PolicyRule]:
    """Merge the verbs of rules naming the same single group and resource (no names)."""
    merged: dict[tuple, list[str]] = {}
    rest: list[PolicyRule] = []
    for r in rules:
        if not r.urls and not r.resource_names and len(r.api_groups) == 1 and len(r.resources) == 1:
            verbs = merged.setdefault((r.api_groups, r.resources), [])
            verbs.extend(v for v in r.verbs if v not in verbs)
        else:
            rest.append(r)
    return [PolicyRule(tuple(v), g, r) for (g, r), v in merged.items()] + rest


def _go_quoted(values: tuple[str, ...]) -> str:
    import json

    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def compact_string(r: PolicyRule) -> str:
    """`{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}`: Go's %q of each non-empty list."""
    parts = [f"{label}:{_go_quoted(values)}" for label, values in (
        ("APIGroups", r.api_groups), ("Resources", r.resources), ("NonResourceURLs", r.urls),
        ("ResourceNames", r.resource_names), ("Verbs", r.verbs)) if values]
    return "{" + ", ".join(parts) + "}"
