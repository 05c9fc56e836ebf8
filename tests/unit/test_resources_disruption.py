"""PodDisruptionBudget validation, the disruption controller's math, and eviction's charge (pure)."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.controllers.disruption_plan import budget_status, expected_and_desired, scaled
from pocketkube.registry.policy import eviction, pdb

NOW = 1_000_000.0


def budget(**spec) -> dict:
    return {"metadata": {"name": "b", "namespace": "default", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def pod(name: str, ready: bool = True, owner: str | None = "rs1", **meta) -> dict:
    m = {"name": name, "namespace": "default", "labels": {"app": "web"}, **meta}
    if owner:
        m["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner,
                                 "controller": True}]
    return {"metadata": m, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_validation():
    msgs = [str(e) for e in pdb.validate(budget(minAvailable=1, maxUnavailable="150%"))]
    assert msgs[0].startswith("spec: Invalid value: ") and msgs[0].endswith(
        "minAvailable and maxUnavailable cannot be both set")
    assert msgs[1] == 'spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%'
    assert [str(e) for e in pdb.validate(budget(minAvailable=-1))] == [
        "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
    assert "a valid percent string" in str(pdb.validate(budget(minAvailable="x"))[0])
    assert pdb.validate(budget(minAvailable="50%")) == []


@pytest.mark.parametrize("value,total,up,out", [(2, 10, True, 2), ("50%", 3, True, 2), ("50%", 3, False, 1),
                                                ("100%", 0, True, 0)])
def test_scaled(value, total, up, out):
    assert scaled(value, total, up) == out


def test_expected_counts_controllers_for_percentages():
    pods = [pod("a"), pod("b"), pod("c", owner=None)]
    assert expected_and_desired(budget(minAvailable=2), pods, lambda ref: 5) == (3, 2)
    assert expected_and_desired(budget(minAvailable="50%"), pods, lambda ref: 5) == (6, 3)
    assert expected_and_desired(budget(maxUnavailable=1), pods, lambda ref: 5) == (6, 5)


def test_status_counts_healthy_and_allowed():
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("other")]
    pods[3]["metadata"]["labels"] = {"app": "db"}
    status, expiry = budget_status(budget(minAvailable=1), pods, lambda ref: 3, NOW, "t0")
    assert status["currentHealthy"] == 2 and status["desiredHealthy"] == 1 and status["expectedPods"] == 3
    assert status["disruptionsAllowed"] == 1 and status["observedGeneration"] == 1 and expiry is None
    assert status["conditions"][0] | {"lastTransitionTime": None} == {
        "type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "",
        "observedGeneration": 1, "lastTransitionTime": None}


def test_pending_eviction_is_not_healthy_until_it_expires():
    b = budget(minAvailable=1)
    b["status"] = {"disruptedPods": {"a": "1970-01-12T13:46:40Z"}}  # NOW
    status, expiry = budget_status(b, [pod("a"), pod("b")], lambda ref: 2, NOW + 1, "t")
    assert status["currentHealthy"] == 1 and status["disruptionsAllowed"] == 0 and expiry == NOW + 120
    status, _ = budget_status(b, [pod("a"), pod("b")], lambda ref: 2, NOW + 121, "t")
    assert status["currentHealthy"] == 2 and "disruptedPods" not in status


def test_charge_decrements_or_refuses():
    b = budget(minAvailable=1)
    b["status"] = {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1}
    out = eviction.charge(b, "a")
    assert out["status"]["disruptionsAllowed"] == 0 and "a" in out["status"]["disruptedPods"]
    assert out["status"]["conditions"][0]["reason"] == "InsufficientPods"
    with pytest.raises(errors.TooManyRequests) as e:
        eviction.charge(out, "b")
    s = e.value.status()
    assert s["code"] == 429 and s["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert s["details"]["causes"] == [{"reason": "DisruptionBudget",
                                       "message": "The disruption budget b needs 1 healthy pods and has 2 currently"}]
    stale = budget(minAvailable=1)
    with pytest.raises(errors.TooManyRequests) as e:
        eviction.charge(stale, "a")
    assert "still being processed" in e.value.status()["details"]["causes"][0]["message"]


def test_ignorable_pods():
    assert eviction.can_ignore_budget({"metadata": {}, "status": {"phase": "Pending"}})
    assert eviction.can_ignore_budget({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}})
    assert not eviction.can_ignore_budget(pod("a"))
