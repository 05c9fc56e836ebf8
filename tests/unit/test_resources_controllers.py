"""The disruption and resource quota controllers driven through the fake client: no server."""

from __future__ import annotations

import pytest
from async_waits import until

from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.disruption import DisruptionController
from pocketkube.controllers.resourcequota import ResourceQuotaController
from pocketkube.testing.controllers import ControllerRunner
from pocketkube.testing.fakeclient import FakeClient

PODS = BY_PLURAL[("", "pods")]
PDBS = BY_PLURAL[("policy", "poddisruptionbudgets")]
QUOTAS = BY_PLURAL[("", "resourcequotas")]


def pod(name: str, ready: bool = True, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.fixture
async def run():
    runner = ControllerRunner()
    yield lambda controller_cls, fake, **kw: runner.start(fake, lambda informers, _: controller_cls(fake, informers, **kw))
    await runner.close()


def status_of(fake: FakeClient, res, name: str) -> dict:
    return next((o.get("status") or {}) for o in fake.objects(res) if o["metadata"]["name"] == name)


async def test_disruption_controller_follows_pod_readiness(run):
    budget = {"metadata": {"name": "b", "namespace": "ns", "generation": 1},
              "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    fake = FakeClient((PODS, pod("a")), (PODS, pod("b")), (PDBS, budget))
    await run(DisruptionController, fake)
    await until(lambda: status_of(fake, PDBS, "b").get("disruptionsAllowed") == 1, "one disruption allowed")
    s = status_of(fake, PDBS, "b")
    assert (s["currentHealthy"], s["desiredHealthy"], s["expectedPods"], s["observedGeneration"]) == (2, 1, 2, 1)
    current = next(p for p in fake.objects(PODS) if p["metadata"]["name"] == "b")
    current["status"]["conditions"][0]["status"] = "False"
    await fake.update_status(PODS, current)
    await until(lambda: status_of(fake, PDBS, "b").get("disruptionsAllowed") == 0, "no disruption allowed")
    assert status_of(fake, PDBS, "b")["conditions"][0]["reason"] == "InsufficientPods"


async def test_quota_controller_gives_back_finished_and_deleted_pods(run):
    rq = {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": {"pods": "5", "requests.cpu": "1"}}}
    fake = FakeClient((PODS, pod("a")), (PODS, pod("b")), (QUOTAS, rq))
    await run(ResourceQuotaController, fake, confirm_delay=0.01)
    await until(lambda: status_of(fake, QUOTAS, "q").get("used") == {"pods": "2", "requests.cpu": "200m"},
                "the usage of two pods")
    done = next(p for p in fake.objects(PODS) if p["metadata"]["name"] == "a")
    done["status"]["phase"] = "Succeeded"
    await fake.update_status(PODS, done)
    await until(lambda: status_of(fake, QUOTAS, "q").get("used") == {"pods": "1", "requests.cpu": "100m"},
                "the finished pod given back")
    await fake.delete(PODS, "ns", "b")
    await until(lambda: status_of(fake, QUOTAS, "q").get("used") == {"pods": "0", "requests.cpu": "0"},
                "the deleted pod given back")
    assert status_of(fake, QUOTAS, "q")["hard"] == rq["spec"]["hard"]
