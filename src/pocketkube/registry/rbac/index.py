"""The RBAC authorizer's view of the cluster's policy, kept in memory and updated by the
stores' own writes (each RBAC kind's Strategy hooks commit into it), so a request's decision
never scans the bindings: bindings are indexed by subject, and each (user, groups, namespace)'s
rules are resolved once and cached until the policy changes.

Subjects: a User binding names the user, a Group binding a group, a ServiceAccount binding the
user system:serviceaccount:<namespace>:<name> (a RoleBinding's subject without a namespace is
in the binding's own namespace, as upstream's appliesToUser)."""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.registry.rbac.rules import PolicyRule
from pocketkube.registry.strategy import Hooks

SA_PREFIX = "system:serviceaccount:"
_CACHE_LIMIT = 20_000


@dataclass(frozen=True)
class Binding:
    namespace: str  # "" for a ClusterRoleBinding
    ref_kind: str
    ref_name: str
    users: tuple[str, ...]
    groups: tuple[str, ...]


def _binding(obj: dict) -> Binding:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
    users, groups = [], []
    for s in obj.get("subjects") or []:
        if not isinstance(s, dict):
            continue
        kind, name = s.get("kind"), str(s.get("name") or "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            users.append(f"{SA_PREFIX}{s.get('namespace') or ns}:{name}")
    return Binding(ns, str(ref.get("kind") or ""), str(ref.get("name") or ""), tuple(users), tuple(groups))


def _rules(obj: dict) -> tuple[PolicyRule, ...]:
    rules = obj.get("rules")
    return tuple(PolicyRule.parse(r) for r in rules) if isinstance(rules, list) else ()


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class PolicyIndex:
    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], tuple[PolicyRule, ...]] = {}
        self.cluster_roles: dict[str, tuple[PolicyRule, ...]] = {}
        self.bindings: dict[tuple[str, str, str], Binding] = {}  # (kind, namespace, name)
        self._by_user: dict[str, set[tuple[str, str, str]]] = {}
        self._by_group: dict[str, set[tuple[str, str, str]]] = {}
        self._cache: dict[tuple, tuple[PolicyRule, ...]] = {}

    # ---- writes (from the stores' hooks) ----
    def set_role(self, kind: str, obj: dict) -> None:
        ns, name = _key(obj)
        if kind == "ClusterRole":
            self.cluster_roles[name] = _rules(obj)
        else:
            self.roles[(ns, name)] = _rules(obj)
        self._cache.clear()

    def delete_role(self, kind: str, obj: dict) -> None:
        ns, name = _key(obj)
        if kind == "ClusterRole":
            self.cluster_roles.pop(name, None)
        else:
            self.roles.pop((ns, name), None)
        self._cache.clear()

    def set_binding(self, kind: str, obj: dict) -> None:
        self.delete_binding(kind, obj)
        key = (kind, *_key(obj))
        b = self.bindings[key] = _binding(obj)
        for u in b.users:
            self._by_user.setdefault(u, set()).add(key)
        for g in b.groups:
            self._by_group.setdefault(g, set()).add(key)

    def delete_binding(self, kind: str, obj: dict) -> None:
        key = (kind, *_key(obj))
        old = self.bindings.pop(key, None)
        if old is not None:
            for index, names in ((self._by_user, old.users), (self._by_group, old.groups)):
                for n in names:
                    index.get(n, set()).discard(key)
                    if not index.get(n, True):
                        del index[n]
        self._cache.clear()

    # ---- reads ----
    def role_rules(self, kind: str, namespace: str, name: str) -> tuple[PolicyRule, ...] | None:
        """The rules a roleRef names, None when that role does not exist."""
        if kind == "ClusterRole":
            return self.cluster_roles.get(name)
        return self.roles.get((namespace, name))

    def _applying(self, user: str, groups: tuple[str, ...], namespace: str) -> list[Binding]:
        """The bindings naming the user or a group of theirs that apply in `namespace`:
        ClusterRoleBindings first, then the namespace's RoleBindings, each in name order."""
        keys = set(self._by_user.get(user, ()))
        for g in groups:
            keys |= self._by_group.get(g, set())
        return [self.bindings[k] for k in sorted(keys, key=lambda k: (k[0] != "ClusterRoleBinding", k))
                if not self.bindings[k].namespace or self.bindings[k].namespace == namespace]

    def missing_roles(self, user: str, groups: tuple[str, ...], namespace: str) -> list[str]:
        """What upstream's RBAC authorizer reports when it denies: bindings to absent roles."""
        return [f'{b.ref_kind.lower()}.rbac.authorization.k8s.io "{b.ref_name}" not found'
                for b in self._applying(user, groups, namespace)
                if self.role_rules(b.ref_kind, b.namespace, b.ref_name) is None]

    def rules_for(self, user: str, groups: tuple[str, ...], namespace: str) -> tuple[PolicyRule, ...]:
        """Every rule bound to the user (or a group of theirs) cluster-wide, plus those bound in
        `namespace` ("" = cluster scope only)."""
        key = (user, groups, namespace)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rules: list[PolicyRule] = []
        for b in self._applying(user, groups, namespace):
            rules.extend(self.role_rules(b.ref_kind, b.namespace, b.ref_name) or ())
        result = tuple(dict.fromkeys(rules))
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result


class _Commit:
    def __init__(self, apply) -> None:
        self._apply = apply

    def commit(self) -> None:
        self._apply()

    def revert(self) -> None:
        pass


class IndexHooks(Hooks):
    """Keeps a PolicyIndex current with one RBAC kind's writes (applied when a write commits)."""

    def __init__(self, index: PolicyIndex, kind: str) -> None:
        self.index, self.kind = index, kind
        self._binding = kind.endswith("Binding")

    def _set(self, obj: dict) -> None:
        (self.index.set_binding if self._binding else self.index.set_role)(self.kind, obj)

    def before_create(self, obj: dict) -> _Commit:
        return _Commit(lambda: self._set(obj))

    def before_update(self, new: dict, old: dict) -> _Commit:
        return _Commit(lambda: self._set(new))

    def after_delete(self, obj: dict) -> None:
        (self.index.delete_binding if self._binding else self.index.delete_role)(self.kind, obj)

    def repair(self, stored: list[dict]) -> list[str]:
        for obj in stored:
            self._set(obj)
        return []
