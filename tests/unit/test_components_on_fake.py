"""The scheduler and the ReplicaSet controller driven through the fake client: no server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from async_waits import until

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.replicaset import ReplicaSetController
from pocketkube.scheduler.scheduler import Scheduler, SchedulerSettings
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
EVENTS = BY_PLURAL[("", "events")]
REPLICASETS = BY_PLURAL[("apps", "replicasets")]


def node(name: str, pods: int = 110) -> dict:
    return {"metadata": {"name": name}, "status": {
        "allocatable": {"pods": str(pods)}, "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}


def node_of(fake: FakeClient, name: str) -> str | None:
    return next((deep_get(p, "spec", "nodeName") for p in fake.objects(PODS) if p["metadata"]["name"] == name), None)


@pytest.fixture
async def scheduler() -> AsyncIterator:
    started: list[Scheduler] = []

    async def start(fake: FakeClient) -> Scheduler:
        s = Scheduler(fake, SchedulerSettings(initial_backoff=0.01, max_backoff=0.02, seed=1))
        await s.start()
        started.append(s)
        return s
    yield start
    for s in started:
        await s.stop()


async def test_scheduler_spreads_pods_and_binds_them(scheduler):
    fake = FakeClient((NODES, node("n1")), (NODES, node("n2")))
    await scheduler(fake)
    for i in range(6):
        await fake.create(PODS, pod(f"p{i}"))
    await until(lambda: all(node_of(fake, f"p{i}") for i in range(6)), "every pod bound")
    placed = [node_of(fake, f"p{i}") for i in range(6)]
    assert sorted(placed) == ["n1"] * 3 + ["n2"] * 3
    assert len(fake.actions_of("bind")) == 6
    await until(lambda: len([e for e in fake.objects(EVENTS) if e["reason"] == "Scheduled"]) == 6, "events")


async def test_unschedulable_pod_is_marked_then_placed_when_a_node_fits(scheduler):
    fake = FakeClient((NODES, node("full", pods=0)))
    await scheduler(fake)
    await fake.create(PODS, pod("p", nodeSelector={"disk": "ssd"}))

    def condition() -> dict | None:
        p = fake.objects(PODS)[0]
        return next((c for c in deep_get(p, "status", "conditions", default=None) or []
                     if c["type"] == "PodScheduled"), None)
    cond = await until(condition, "PodScheduled=False")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert cond["message"].startswith("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
    await fake.create(NODES, {**node("fast"), "metadata": {"name": "fast", "labels": {"disk": "ssd"}}})
    assert await until(lambda: node_of(fake, "p"), "the pod bound") == "fast"


async def test_failed_binding_is_retried_with_back_off(scheduler):
    fake = FakeClient((NODES, node("n1")))
    fake.fail_next("bind", errors.ServiceUnavailable("down"))
    await scheduler(fake)
    await fake.create(PODS, pod("p"))
    assert await until(lambda: node_of(fake, "p"), "the pod bound") == "n1"
    assert len(fake.actions_of("bind")) == 2


@pytest.fixture
async def replicaset_controller() -> AsyncIterator:
    fake = FakeClient()
    async with controllers_on(fake, lambda informers, recorder: ReplicaSetController(fake, informers, recorder, workers=2),
                              component="replicaset-controller"):
        yield fake


def replicaset(replicas: int) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns"}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


async def test_replicaset_controller_creates_scales_down_and_reports(replicaset_controller):
    fake = replicaset_controller
    rs = await fake.create(REPLICASETS, replicaset(3))
    pods = await until(lambda: len(fake.objects(PODS)) == 3 and fake.objects(PODS), "three pods")
    for p in pods:
        assert p["metadata"]["name"].startswith("web-")
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("ReplicaSet", rs["metadata"]["uid"], True)
    await until(lambda: deep_get(fake.objects(REPLICASETS)[0], "status", "replicas") == 3, "status.replicas")

    current = fake.objects(REPLICASETS)[0]
    await fake.update(REPLICASETS, {**current, "spec": {**current["spec"], "replicas": 1}})
    await until(lambda: len(fake.objects(PODS)) == 1, "scaled down to one pod")
    await until(lambda: deep_get(fake.objects(REPLICASETS)[0], "status", "replicas") == 1, "status.replicas")
    assert len(fake.actions_of("delete", "pods")) == 2


async def test_replicaset_controller_replaces_a_deleted_pod(replicaset_controller):
    fake = replicaset_controller
    await fake.create(REPLICASETS, replicaset(2))
    await until(lambda: len(fake.objects(PODS)) == 2, "two pods")
    victim = fake.objects(PODS)[0]["metadata"]["name"]
    await fake.delete(PODS, "ns", victim)
    await until(lambda: len(fake.objects(PODS)) == 2 and victim not in {
        p["metadata"]["name"] for p in fake.objects(PODS)}, "a replacement")


SERVICES = BY_PLURAL[("", "services")]


def lb_service(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec}}


def ingress_ip(fake: FakeClient, name: str) -> str | None:
    svc = next((s for s in fake.objects(SERVICES) if s["metadata"]["name"] == name), {})
    ingress = deep_get(svc, "status", "loadBalancer", "ingress", default=None) or []
    return ingress[0]["ip"] if ingress else None


async def test_loadbalancer_controller_hands_out_the_pool_in_order():
    from pocketkube.controllers.loadbalancer import CONDITION_TYPE, LoadBalancerController

    fake = FakeClient((SERVICES, {**lb_service("old"), "status": {"loadBalancer": {"ingress": [{"ip": "127.201.0.3"}]}}}))
    async with controllers_on(fake, lambda informers, recorder: LoadBalancerController(
            fake, informers, recorder, pool="127.201.0.0/29"), component="service-lb-controller"):
        assert await until(lambda: ingress_ip(fake, "old") == "127.201.0.3", "the old IP kept")
        for name in ("a", "b", "c", "d"):
            await fake.create(SERVICES, lb_service(name))
            await until(lambda name=name: ingress_ip(fake, name), f"an IP for {name}")
        assert [ingress_ip(fake, n) for n in "abcd"] == ["127.201.0.2", "127.201.0.4", "127.201.0.5", "127.201.0.6"]
        await fake.create(SERVICES, lb_service("e"))

        def failed() -> bool:
            svc = next(s for s in fake.objects(SERVICES) if s["metadata"]["name"] == "e")
            return any(c["type"] == CONDITION_TYPE and c["status"] == "False"
                       for c in deep_get(svc, "status", "conditions", default=None) or [])
        await until(failed, "AllocationFailed on e")
        await fake.delete(SERVICES, "ns", "b")
        assert await until(lambda: ingress_ip(fake, "e"), "e gets b's IP") == "127.201.0.4"
