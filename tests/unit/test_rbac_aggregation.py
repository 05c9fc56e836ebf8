"""The ClusterRole aggregation controller: its pure union, and the controller on a FakeClient."""

from __future__ import annotations

from async_waits import until

from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.clusterroleaggregation import ClusterRoleAggregationController, aggregated_rules
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

CR = BY_PLURAL[("rbac.authorization.k8s.io", "clusterroles")]
AGG = "rbac.authorization.k8s.io/aggregate-to-view"


def cr(name: str, rules: list[dict] | None = None, labels: dict | None = None, selector: dict | None = None) -> dict:
    obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name, "labels": labels or {}}, "rules": rules or []}
    if selector is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": selector}]}
    return obj


def r(verb: str, resource: str) -> dict:
    return {"verbs": [verb], "apiGroups": [""], "resources": [resource]}


def test_union_in_name_order_each_rule_once_without_itself():
    view = cr("view", [r("get", "stale")], {AGG: "true"}, selector={AGG: "true"})
    b = cr("b", [r("get", "pods"), r("list", "pods")], {AGG: "true"})
    a = cr("a", [r("list", "pods"), r("get", "services")], {AGG: "true"})
    other = cr("other", [r("delete", "pods")])
    assert aggregated_rules(view, [view, b, a, other]) == [r("list", "pods"), r("get", "services"), r("get", "pods")]
    assert aggregated_rules(cr("x", selector={"no": "match"}), [a, b]) == []


async def test_controller_keeps_the_union_current():
    fake = FakeClient((CR, cr("view", selector={AGG: "true"})), (CR, cr("a", [r("get", "pods")], {AGG: "true"})))

    def view_rules() -> list[dict]:
        return next(o for o in fake.objects(CR) if o["metadata"]["name"] == "view").get("rules") or []
    async with controllers_on(fake, lambda informers, _: ClusterRoleAggregationController(fake, informers)):
        await until(lambda: view_rules() == [r("get", "pods")], "view aggregates a")
        await fake.create(CR, cr("b", [r("get", "secrets")], {AGG: "true"}))
        await until(lambda: view_rules() == [r("get", "pods"), r("get", "secrets")], "view aggregates b")
        await fake.delete(CR, "", "a")
        await until(lambda: view_rules() == [r("get", "secrets")], "a's rules leave view")
