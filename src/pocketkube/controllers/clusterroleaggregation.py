"""ClusterRole aggregation (upstream pkg/controller/clusterroleaggregation): a ClusterRole with an
aggregationRule holds the union of the rules of every ClusterRole its selectors match, in name
order, each rule once. Any ClusterRole change may change some union, so every aggregated role
is looked at again then.

`aggregated_rules` is the pure decision; `sync` reads the cache and writes through the API.
"""

from __future__ import annotations

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.selectors.labels import LabelSelector
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["ClusterRoleAggregationController", "aggregated_rules"]

CLUSTER_ROLES = BY_PLURAL[("rbac.authorization.k8s.io", "clusterroles")]


def _selectors(role: dict) -> list[LabelSelector]:
    rule = role.get("aggregationRule")
    out = []
    for sel in (rule.get("clusterRoleSelectors") or []) if isinstance(rule, dict) else []:
        try:
            out.append(LabelSelector.from_dict(sel))
        except ValueError:
            continue  # validation refuses such selectors; one stored earlier matches nothing
    return out


def aggregated_rules(role: dict, cluster_roles: list[dict]) -> list[dict]:
    """The rules `role` aggregates from `cluster_roles` (itself excluded)."""
    selectors = _selectors(role)
    name = role["metadata"]["name"]
    rules: list[dict] = []
    for other in sorted(cluster_roles, key=lambda r: r["metadata"]["name"]):
        if other["metadata"]["name"] == name:
            continue
        labels = other["metadata"].get("labels") or {}
        if not any(s.matches(labels) for s in selectors):
            continue
        for r in other.get("rules") or []:
            if r not in rules:
                rules.append(r)
    return rules


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 1) -> None:
        self.client = client
        self.roles = informers.get(CLUSTER_ROLES)
        super().__init__([self.roles], workers=workers)
        self.roles.add_handlers(on_add=self._changed, on_update=lambda old, new: self._changed(new),
                                on_delete=self._changed)

    def _changed(self, role: dict) -> None:
        for r in self.roles.list():
            if r.get("aggregationRule"):
                self.enqueue(r)

    async def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregated_rules(role, self.roles.list())
        if rules == (role.get("rules") or []):
            return
        try:
            await self.client.update(CLUSTER_ROLES, {**role, "rules": rules})
        except errors.NotFound:
            return
